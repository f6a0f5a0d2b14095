"""ntfy against its fake over real loopback HTTP: the JSON publish form, field by field.

The shared behaviour (trigger then resolve accepted, 5xx retryable, a documented 4xx
permanent, no secret in an echoed error) is tests/test_notifier_contract.py's; here is what
only ntfy does: priorities, tags, the 4,096-byte message, action buttons, protected topics.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.config import ConfigError, parse_config
from monitor.fakes.pagers import FakeNtfy, Scripted
from monitor.notify.base import DeliveryError, Notification, Severity
from monitor.notify.ntfy import NtfyConfig, NtfyNotifier
from monitor.routing import notifiers_for

TOPIC = "accmon-pages-7f3a"
TOKEN = "tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2"
VANISHED = Notification(
    kind="vanished", action="trigger", dedup_key="accmon/masto/alice/outage-17",
    platform="masto", account="alice",
    summary="PROTECTED masto/alice vanished (suspended); confirmed after 2 absent checks",
    severity="critical", at=1_700_000_000.0, protected=True, reason="suspended", outage_id=17,
    details={"first_seen_absent_at": "2023-11-14T22:12:20Z", "evidence": "HTTP 200 suspended"},
    links=[{"href": "https://masto.example/@alice", "text": "profile"},
           {"href": "https://runbooks.example/vanished", "text": "runbook"}])


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def ntfy() -> AsyncIterator[tuple[FakeNtfy, str]]:
    fake = FakeNtfy(token=TOKEN)
    async with fake.running() as url:
        yield fake, url


def notifier(session: aiohttp.ClientSession, server: str, **extra: Any) -> NtfyNotifier:
    config = NtfyConfig.model_validate({"type": "ntfy", "server": server, "topic": TOPIC,
                                        "token": TOKEN, "timeout": 2.0, **extra})
    return NtfyNotifier("phone", config, session)


async def failure(n: NtfyNotifier, notification: Notification = VANISHED) -> DeliveryError:
    with pytest.raises(DeliveryError) as info:
        await n.send(notification)
    return info.value


async def test_a_vanish_is_published_in_the_json_form_with_every_field(
        ntfy: tuple[FakeNtfy, str], session: aiohttp.ClientSession) -> None:
    fake, url = ntfy
    sender = notifier(session, url + "/")
    target, headers, body = sender.build_request(VANISHED)
    assert target == f"{url}/"  # the root URL, not the topic's: the JSON form
    assert headers == {"Authorization": f"Bearer {TOKEN}"}
    doc = json.loads(body)
    assert next(iter(doc)) == "topic"
    assert doc == {
        "topic": TOPIC,
        "title": "Account vanished: masto/alice",
        "message": VANISHED.summary + "\nfirst_seen_absent_at: 2023-11-14T22:12:20Z"
                                      "\nevidence: HTTP 200 suspended",
        "priority": 5,
        "tags": ["rotating_light", "masto", "vanished", "suspended", "protected"],
        "click": "https://masto.example/@alice",
        "actions": [{"action": "view", "label": "profile", "url": "https://masto.example/@alice"},
                    {"action": "view", "label": "runbook",
                     "url": "https://runbooks.example/vanished"}],
    }
    await sender.send(VANISHED)
    assert fake.messages == {TOPIC: [doc]}


@pytest.mark.parametrize(("severity", "priority"), [
    ("critical", 5), ("error", 4), ("warning", 3), ("info", 2)])
def test_priority_follows_severity(session: aiohttp.ClientSession, severity: Severity,
                                   priority: int) -> None:
    _, _, body = notifier(session, "http://ntfy.test").build_request(
        replace(VANISHED, severity=severity))
    assert json.loads(body)["priority"] == priority


async def test_a_resolve_is_one_more_message_with_a_check_mark(
        ntfy: tuple[FakeNtfy, str], session: aiohttp.ClientSession) -> None:
    fake, url = ntfy
    resolve = replace(VANISHED, kind="recovered", action="resolve", severity="info",
                      summary="PROTECTED masto/alice is back after 5m03s", details={})
    await notifier(session, url).send(VANISHED)
    await notifier(session, url).send(resolve)
    first, second = fake.messages[TOPIC]
    assert (second["title"], second["priority"], second["tags"][0]) == \
        ("Account recovered: masto/alice", 2, "white_check_mark")
    assert first["tags"][0] == "rotating_light"


async def test_a_long_message_is_cut_to_4096_bytes_on_a_character_boundary(
        ntfy: tuple[FakeNtfy, str], session: aiohttp.ClientSession) -> None:
    fake, url = ntfy
    await notifier(session, url).send(replace(VANISHED, summary="é" * 5000, details={}))
    message = fake.messages[TOPIC][0]["message"]
    assert len(message.encode()) <= 4096
    assert message.endswith("…") and set(message[:-1]) == {"é"}


async def test_the_fake_refuses_what_ntfy_refuses(
        ntfy: tuple[FakeNtfy, str], session: aiohttp.ClientSession) -> None:
    _, url = ntfy
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for doc, code in [({"topic": "no/slash", "message": "x"}, 40009),
                      ({"topic": TOPIC, "message": "x" * 4097}, 40014),
                      ({"topic": TOPIC, "priority": 6}, 40007),
                      ({"topic": TOPIC, "tags": ["a,b"]}, 40017),
                      ({"topic": TOPIC, "actions": [{"action": "view", "label": "x"}]}, 40018)]:
        async with session.post(url + "/", json=doc, headers=auth) as resp:
            assert (resp.status, (await resp.json())["code"]) == (400, code), doc


async def test_commas_never_split_a_tag_and_at_most_three_actions(
        ntfy: tuple[FakeNtfy, str], session: aiohttp.ClientSession) -> None:
    fake, url = ntfy
    links = [{"href": f"https://example.test/{i}", "text": f"link {i}"} for i in range(5)]
    await notifier(session, url).send(replace(VANISHED, platform="eu,west", links=links))
    doc = fake.messages[TOPIC][0]
    assert doc["tags"][1] == "eu west"
    assert [a["url"] for a in doc["actions"]] == [link["href"] for link in links[:3]]


async def test_a_protected_topic_refuses_a_missing_or_wrong_token_permanently(
        ntfy: tuple[FakeNtfy, str], session: aiohttp.ClientSession) -> None:
    fake, url = ntfy
    anonymous = await failure(notifier(session, url, token=None))
    wrong = await failure(notifier(session, url, token="tk_wrong"))
    assert [(e.status, e.permanent) for e in (anonymous, wrong)] == [(403, True), (401, True)]
    assert "forbidden" in str(anonymous) and "unauthorized" in str(wrong)
    assert all(TOPIC not in str(e) and "tk_" not in str(e) for e in (anonymous, wrong))
    assert fake.accepted == []


async def test_limits_are_retried_when_ntfy_asks_and_a_too_large_body_is_not(
        ntfy: tuple[FakeNtfy, str], session: aiohttp.ClientSession) -> None:
    fake, url = ntfy
    fake.script(Scripted(429, retry_after=7), 413)
    limited = await failure(notifier(session, url))
    too_large = await failure(notifier(session, url))
    assert (limited.permanent, limited.retry_after) == (False, 7)
    assert (too_large.permanent, too_large.status) == (True, 413)


def config_with(notifiers: str) -> Any:
    return parse_config(f"""
platforms: {{masto: {{base_url: "https://masto.example", probe: mastodon}}}}
accounts: [{{platform: masto, handle: alice, protected: true}}]
notifiers: {notifiers}
""", env={})


def test_ntfy_pages_a_protected_vanish_and_chat_gets_the_rest() -> None:
    # Before providers said whether they page, a vanish with ntfy configured went to the log.
    config = config_with(f'{{phone: {{type: ntfy, topic: "{TOPIC}"}}, '
                         'chat: {type: slack, webhook_url: "https://hooks.slack.test/x"}}')
    alice = config.accounts[0]
    assert notifiers_for(VANISHED, alice, config) == ["phone"]
    renamed = replace(VANISHED, kind="renamed", action="notify", severity="warning")
    assert notifiers_for(renamed, alice, config) == ["chat"]


def test_the_topic_can_come_from_a_file_and_a_bad_one_is_a_config_problem(
        tmp_path: Path) -> None:
    secret = tmp_path / "topic"
    secret.write_text(TOPIC + "\n")
    config = config_with(f'{{phone: {{type: ntfy, topic_file: "{secret}"}}}}')
    assert config.notifiers["phone"].topic.get_secret_value() == TOPIC  # type: ignore[attr-defined]
    # The path is the one the reader wrote (not the union's tag, notifiers.phone.ntfy.topic).
    with pytest.raises(ConfigError, match=r"notifiers\.phone\.topic: .*1 to 64 "
                                          r"letters") as info:
        config_with('{phone: {type: ntfy, topic: "alerts/with a space"}}')
    assert "with a space" not in str(info.value)
