"""Provider limits from their documentation: Opsgenie's 8,000-character ``details`` and
Slack's escaping of every mrkdwn text, the fallback ``text`` included."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest

from monitor.fakes.pagers import FakeOpsgenie, FakeSlack, validate_opsgenie_alert
from monitor.notify.base import Notification
from monitor.notify.opsgenie import (
    CORE_DETAILS,
    DETAILS_MAX,
    OpsgenieConfig,
    OpsgenieNotifier,
    details_size,
    fit_details,
    flat_details,
)
from monitor.notify.slack import SlackConfig, SlackNotifier, cut

GENIE_KEY = "eb243592-faa2-4ba2-a551q-1afdf565c889"
N = Notification(
    kind="vanished", action="trigger", dedup_key="accmon/masto/alice/outage-17",
    platform="masto", account="alice", summary="PROTECTED masto/alice vanished (suspended)",
    severity="critical", at=1_700_000_000.0, protected=True, team="trust", owner="@carol",
    reason="suspended", outage_id=17, labels={"tier": "gold"},
    details={"first_seen_absent_at": "2023-11-14T22:12:20Z", "evidence": "HTTP 200 suspended"})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def accepted_by_opsgenie(session: aiohttp.ClientSession,
                               n: Notification) -> dict[str, Any]:
    """The create body the fake accepted (it refuses more than 8,000 characters)."""
    fake = FakeOpsgenie(GENIE_KEY)
    async with fake.running() as url:
        config = OpsgenieConfig.model_validate({"type": "opsgenie", "api_key": GENIE_KEY,
                                                "base_url": url})
        await OpsgenieNotifier("og", config, session).send(n)
    (body,) = fake.accepted
    return dict(body)


# =========================================================================== Opsgenie details


def test_small_details_are_sent_whole() -> None:
    details = flat_details(N)
    assert details["evidence"] == "HTTP 200 suspended" and details["label.tier"] == "gold"
    assert details_size(details) < DETAILS_MAX


async def test_a_huge_evidence_is_shortened_first_and_everything_else_kept(
        session: aiohttp.ClientSession) -> None:
    n = replace(N, details={**N.details, "evidence": "e" * 20_000, "probe": "lookup"})
    details = (await accepted_by_opsgenie(session, n))["details"]
    assert details_size(details) <= DETAILS_MAX
    assert details["evidence"].startswith("eee") and details["evidence"].endswith("…")
    assert len(details["evidence"]) > 7000  # cut to what fits, not to nothing
    whole = flat_details(replace(N, details={**N.details, "probe": "lookup"}))
    assert {k: v for k, v in details.items() if k != "evidence"} == \
        {k: v for k, v in whole.items() if k != "evidence"}


async def test_the_longest_values_give_way_before_short_ones(
        session: aiohttp.ClientSession) -> None:
    n = replace(N, details={"a": "a" * 6000, "b": "b" * 6000, "short": "kept"})
    details = (await accepted_by_opsgenie(session, n))["details"]
    assert details_size(details) <= DETAILS_MAX
    assert details["short"] == "kept"
    assert abs(len(details["a"]) - len(details["b"])) <= 1  # both cut, evenly


async def test_when_shortening_is_not_enough_labels_go_first_and_the_core_stays(
        session: aiohttp.ClientSession) -> None:
    labels = {f"label-{i:03d}": "v" * 40 for i in range(400)}
    n = replace(N, labels=labels, details={"evidence": "HTTP 200 suspended"})
    details = (await accepted_by_opsgenie(session, n))["details"]
    assert details_size(details) <= DETAILS_MAX
    for key in CORE_DETAILS:
        assert details[key] == flat_details(N)[key]
    assert details["evidence"] == "HTTP 200 suspended"  # details outlive labels
    kept = [k for k in details if k.startswith("label.")]
    assert kept == [f"label.label-{i:03d}" for i in range(len(kept))]  # the last ones went
    assert 0 < len(kept) < 400


def test_escaped_characters_count_as_sent() -> None:
    # Quotes and backslashes double in JSON: the strict (JSON text) size still fits.
    details = fit_details({"account": "alice", "evidence": '"\\' * 6000}, DETAILS_MAX)
    assert DETAILS_MAX - 10 < details_size(details) <= DETAILS_MAX  # fitted tightly
    assert len(details["evidence"]) < DETAILS_MAX // 2  # each character is sent as two


def test_the_fake_refuses_more_than_8000_characters_of_details() -> None:
    body = {"message": "m", "details": {"k": "v" * 8000}}
    assert validate_opsgenie_alert(body) == {
        "details": "must be at most 8000 characters in total"}
    assert validate_opsgenie_alert({"message": "m", "details": {"k": "v" * 7999}}) == {}


# =========================================================================== Slack fallback


async def test_slack_fallback_text_is_escaped_like_the_blocks(
        session: aiohttp.ClientSession) -> None:
    fake = FakeSlack()
    async with fake.running() as url:
        config = SlackConfig.model_validate({"type": "slack", "webhook_url": f"{url}/hook"})
        await SlackNotifier("chat", config, session).send(
            replace(N, account="a<b>", summary="<!channel> & <@U123> <https://evil|click>"))
    (message,) = fake.accepted
    assert message["text"] == ("Account vanished: masto/a&lt;b&gt;. &lt;!channel&gt; &amp; "
                               "&lt;@U123&gt; &lt;https://evil|click&gt;")
    summary_block = message["blocks"][1]["text"]["text"]
    assert summary_block in message["text"]


def test_a_cut_never_leaves_half_an_entity() -> None:
    text = "a" * 10 + "&amp;" + "b" * 10
    for limit in range(11, 17):
        out = cut(text, limit)
        assert len(out) <= limit and out.endswith("…")
        assert "&" not in out or "&amp;" in out
    assert cut("short &amp;", 100) == "short &amp;"
