"""PagerDuty FYIs (renamed, moved, brief_outage) as Change Events, against the fake.

PagerDuty's developer docs (events-API-v2/03-Change-Events.md): ``POST
https://events.pagerduty.com/v2/change/enqueue`` with ``routing_key`` and ``payload``
(``summary`` required, at most 1,024 characters; ``source``, ``timestamp``,
``custom_details``) and ``links``. They never open an incident or notify anyone.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from monitor.fakes.pagers import FakePagerDuty, validate_pagerduty_change
from monitor.notify.base import DeliveryError, Notification
from monitor.notify.pagerduty import PagerDutyConfig, PagerDutyNotifier, change_events_url

ROUTING_KEY = "R0ut1ngKey0123456789abcdefABCDEF"
AT = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def fyi(kind: str = "renamed", **changes: Any) -> Notification:
    fields: dict[str, Any] = {
        "kind": kind, "action": "notify", "dedup_key": f"accmon/x/alice/{kind}-1700000000",
        "platform": "x", "account": "alice", "summary": "x/alice renamed: @alice -> @alice2",
        "severity": "warning", "at": AT, "protected": True, "team": "trust", "outage_id": None,
        "details": {"old_handle": "alice", "new_handle": "alice2"},
        "links": [{"href": "https://x.example/alice2", "text": "profile"},
                  {"href": "https://runbooks.example/renamed"}],
        **changes}
    return Notification(**fields)


def notifier(session: aiohttp.ClientSession, **config: Any) -> PagerDutyNotifier:
    settings = PagerDutyConfig.model_validate({"type": "pagerduty", "routing_key": ROUTING_KEY,
                                               "timeout": 2.0, **config})
    return PagerDutyNotifier("pd", settings, session)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.mark.parametrize(("events_url", "change_url"), [
    ("https://events.pagerduty.com/v2/enqueue", "https://events.pagerduty.com/v2/change/enqueue"),
    ("https://events.eu.pagerduty.com/v2/enqueue/",
     "https://events.eu.pagerduty.com/v2/change/enqueue"),
    # A proxy mounted under a path keeps its prefix; any other path falls back to the origin.
    ("http://proxy:8080/pd/v2/enqueue", "http://proxy:8080/pd/v2/change/enqueue"),
    ("http://relay.example/events?x=1", "http://relay.example/v2/change/enqueue"),
])
def test_the_change_url_is_derived_from_the_events_url(events_url: str,
                                                       change_url: str) -> None:
    assert change_events_url(events_url) == change_url


def test_a_configured_change_url_wins(session: aiohttp.ClientSession) -> None:
    pd = notifier(session, url="http://a.example/v2/enqueue",
                  change_url="http://b.example/changes")
    assert pd.build_request(fyi())[0] == "http://b.example/changes"
    assert pd.build_request(fyi(action="trigger"))[0] == "http://a.example/v2/enqueue"


@pytest.mark.parametrize("kind", ["renamed", "moved", "brief_outage"])
async def test_an_fyi_is_a_change_event_with_every_field_and_opens_nothing(
        session: aiohttp.ClientSession, kind: str) -> None:
    fake = FakePagerDuty()
    async with fake.running() as url:
        pd = notifier(session, url=f"{url}/v2/enqueue")
        target, headers, body = pd.build_request(fyi(kind))
        answer = await pd.send(fyi(kind))
    assert target == f"{url}/v2/change/enqueue" and headers == {}
    assert body == {
        "routing_key": ROUTING_KEY,
        "payload": {
            "summary": "x/alice renamed: @alice -> @alice2",
            "source": "account-monitor/x",
            "timestamp": "2023-11-14T22:13:20.000Z",
            "custom_details": {"kind": kind, "old_handle": "alice", "new_handle": "alice2",
                               "account": "alice", "platform": "x", "protected": True,
                               "team": "trust"}},
        "links": [{"href": "https://x.example/alice2", "text": "profile"},
                  {"href": "https://runbooks.example/renamed",
                   "text": "https://runbooks.example/renamed"}]}
    assert fake.changes == [body]
    assert fake.incidents == {} and fake.open_incidents() == []
    assert answer.status == 202 and ROUTING_KEY not in answer.body


async def test_a_change_summary_is_cut_to_1024_characters(
        session: aiohttp.ClientSession) -> None:
    fake = FakePagerDuty()
    async with fake.running() as url:
        await notifier(session, url=f"{url}/v2/enqueue").send(fyi(summary="s" * 3000))
    summary = fake.changes[0]["payload"]["summary"]
    assert len(summary) == 1024 and summary.endswith("…")


async def test_a_refused_change_event_is_permanent_and_hides_the_routing_key(
        session: aiohttp.ClientSession) -> None:
    fake = FakePagerDuty()
    short = ROUTING_KEY[:31]
    async with fake.running() as url:
        pd = PagerDutyNotifier("pd", PagerDutyConfig.model_validate(
            {"type": "pagerduty", "routing_key": short, "url": f"{url}/v2/enqueue"}), session)
        with pytest.raises(DeliveryError) as info:
            await pd.send(fyi())
    assert (info.value.permanent, info.value.status) == (True, 400)
    assert "routing_key" in str(info.value) and short not in str(info.value)
    assert fake.changes == []


def test_the_fake_checks_change_events_as_documented() -> None:
    good = {"routing_key": ROUTING_KEY, "payload": {"summary": "Merge Pull Request"}}
    assert validate_pagerduty_change(good) == []  # source, timestamp, links are optional
    assert validate_pagerduty_change({"routing_key": ROUTING_KEY}) == ["'payload' is required"]
    assert validate_pagerduty_change(
        {**good, "payload": {"summary": "x" * 1025}}) == [
        "'payload.summary' must be at most 1024 characters"]
    assert validate_pagerduty_change(
        {**good, "payload": {"summary": "s", "timestamp": "yesterday"}}) == [
        "'payload.timestamp' must be ISO 8601"]
