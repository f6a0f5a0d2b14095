"""Acknowledgements through every notifier, against the fakes over real loopback HTTP.

PagerDuty and Opsgenie have an acknowledged state and get it set (Events API v2
``acknowledge``; ``POST /v2/alerts/{alias}/acknowledge?identifierType=alias``). Chat and
push receivers get one short line, the webhook the event itself, the log a line, and
Alertmanager nothing at all (re-posting would re-assert the alert).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from monitor.fakes.pagers import (
    FakeAlertmanager,
    FakeNtfy,
    FakeOpsgenie,
    FakePagerDuty,
    FakeSlack,
    FakeWebhook,
)
from monitor.notify.alertmanager import AlertmanagerConfig, AlertmanagerNotifier
from monitor.notify.base import Answer, Notification
from monitor.notify.log import LogNotifier, LogNotifierConfig
from monitor.notify.ntfy import NtfyConfig, NtfyNotifier
from monitor.notify.opsgenie import OpsgenieConfig, OpsgenieNotifier
from monitor.notify.pagerduty import PagerDutyConfig, PagerDutyNotifier
from monitor.notify.slack import SlackConfig, SlackNotifier
from monitor.notify.webhook import WebhookConfig, WebhookNotifier

AT = 1_700_000_000.0
ROUTING_KEY = "R0ut1ngKey0123456789abcdefABCDEF"
GENIE_KEY = "eb243592-faa2-4ba2-a551q-1afdf565c889"
DEDUP = "accmon/masto/alice/outage-17"
TRIGGER = Notification(
    kind="vanished", action="trigger", dedup_key=DEDUP, platform="masto", account="alice",
    summary="PROTECTED masto/alice vanished (suspended)", severity="critical", at=AT,
    protected=True, reason="suspended", outage_id=17)


def ack(**details: Any) -> Notification:
    """An acknowledgement as the design builds it: the outage's key, who, when, comment."""
    return replace(TRIGGER, kind="acknowledged", action="acknowledge", severity="info",
                   at=AT + 60, summary="PROTECTED masto/alice: acknowledged by carol",
                   details={"acknowledged_by": "carol",
                            "acknowledged_at": "2023-11-14T22:14:20Z",
                            "comment": "on it", **details})


RESOLVE = replace(TRIGGER, kind="recovered", action="resolve", severity="info", at=AT + 300,
                  summary="PROTECTED masto/alice is back after 5m")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


# =========================================================================== PagerDuty


def pagerduty(url: str, session: aiohttp.ClientSession) -> PagerDutyNotifier:
    config = PagerDutyConfig.model_validate({"type": "pagerduty", "routing_key": ROUTING_KEY,
                                             "url": f"{url}/v2/enqueue", "timeout": 2.0})
    return PagerDutyNotifier("pd", config, session)


async def test_pagerduty_acknowledge_is_the_bare_event_and_acknowledges_the_incident(
        session: aiohttp.ClientSession) -> None:
    fake = FakePagerDuty()
    async with fake.running() as url:
        notifier = pagerduty(url, session)
        _, _, body = notifier.build_request(ack())
        # 02-Trigger-Events.md's acknowledge example: routing_key, dedup_key, event_action.
        assert body == {"routing_key": ROUTING_KEY, "event_action": "acknowledge",
                        "dedup_key": DEDUP}
        await notifier.send(TRIGGER)
        answer = await notifier.send(ack())
        assert fake.incidents[DEDUP].status == "acknowledged"
        # A reminder re-triggers the same key: it stays acknowledged (no new notification).
        await notifier.send(replace(TRIGGER, kind="reminder", at=AT + 3600))
        assert fake.incidents[DEDUP].status == "acknowledged"
        await notifier.send(RESOLVE)
    assert answer.status == 202 and '"Event processed"' in answer.body
    assert ROUTING_KEY not in answer.body
    assert fake.incidents[DEDUP].status == "resolved"
    assert fake.dropped == []


async def test_pagerduty_acknowledge_without_an_open_incident_is_accepted_and_dropped(
        session: aiohttp.ClientSession) -> None:
    # As documented: "Acknowledge or resolve events without a currently open alert will not
    # create a new one" -- and the API still answers 202, so it is not a delivery failure.
    fake = FakePagerDuty()
    async with fake.running() as url:
        answer = await pagerduty(url, session).send(ack())
    assert answer.status == 202
    assert fake.incidents == {} and [e["event_action"] for e in fake.dropped] == ["acknowledge"]


# =========================================================================== Opsgenie


def opsgenie(url: str, session: aiohttp.ClientSession) -> OpsgenieNotifier:
    config = OpsgenieConfig.model_validate({"type": "opsgenie", "api_key": GENIE_KEY,
                                            "base_url": url, "timeout": 2.0})
    return OpsgenieNotifier("og", config, session)


async def test_opsgenie_acknowledge_by_alias_carries_user_source_and_note(
        session: aiohttp.ClientSession) -> None:
    fake = FakeOpsgenie(GENIE_KEY)
    async with fake.running() as url:
        notifier = opsgenie(url, session)
        target, headers, body = notifier.build_request(ack())
        assert target == (f"{url}/v2/alerts/accmon%2Fmasto%2Falice%2Foutage-17/acknowledge"
                          "?identifierType=alias")
        assert headers == {"Authorization": f"GenieKey {GENIE_KEY}"}
        assert body == {"user": "carol", "source": "account-monitor", "note": "on it"}
        await notifier.send(TRIGGER)
        answer = await notifier.send(ack())
        alert = fake.alerts[DEDUP]
        assert (alert.status, alert.acknowledged, alert.ack_user, alert.ack_note) == \
            ("open", True, "carol", "on it")
        await notifier.send(RESOLVE)
    assert answer.status == 202 and "Request will be processed" in answer.body
    assert fake.alerts[DEDUP].status == "closed"
    assert fake.acks == [(DEDUP, body)]


async def test_opsgenie_acknowledge_fits_the_100_character_user_and_never_sends_a_bare_note(
        session: aiohttp.ClientSession) -> None:
    fake = FakeOpsgenie(GENIE_KEY)
    async with fake.running() as url:
        await opsgenie(url, session).send(ack(acknowledged_by="c" * 300, comment=""))
    (_, body), = fake.acks
    assert len(body["user"]) == 100 and body["user"].endswith("…")
    assert body["note"] == "acknowledged through account-monitor"


async def test_opsgenie_acknowledge_of_an_unknown_alias_is_still_accepted(
        session: aiohttp.ClientSession) -> None:
    # Opsgenie processes alert actions asynchronously: 202 now, the failure later.
    fake = FakeOpsgenie(GENIE_KEY)
    async with fake.running() as url:
        answer = await opsgenie(url, session).send(ack())
    assert answer.status == 202 and fake.alerts == {}


# =========================================================================== chat and push


async def test_slack_posts_one_escaped_line_saying_who_acknowledged(
        session: aiohttp.ClientSession) -> None:
    fake = FakeSlack()
    async with fake.running() as url:
        config = SlackConfig.model_validate({"type": "slack", "webhook_url": f"{url}/hook"})
        notifier = SlackNotifier("chat", config, session)
        await notifier.send(ack(acknowledged_by="<!channel>", comment="a & b"))
    (message,) = fake.accepted
    assert message["text"] == "Acknowledged masto/alice by &lt;!channel&gt;: a &amp; b"
    section = message["blocks"][0]["text"]["text"]
    assert section == (":raised_hand: *Acknowledged* masto/alice by *&lt;!channel&gt;*: "
                       "a &amp; b")
    assert "<" not in message["text"] + section  # no mention, no link can be smuggled in


async def test_ntfy_acknowledge_is_a_quiet_push(session: aiohttp.ClientSession) -> None:
    fake = FakeNtfy()
    async with fake.running() as url:
        config = NtfyConfig.model_validate({"type": "ntfy", "server": url,
                                            "topic": "accmon-ack-test"})
        await NtfyNotifier("phone", config, session).send(ack())
    (message,) = fake.accepted
    assert message["priority"] == 2  # no sound: the others learn it without being woken
    assert message["tags"][0] == "raised_hand"
    assert message["title"] == "Acknowledged: masto/alice"
    assert "acknowledged_by: carol" in message["message"]


async def test_webhook_forwards_the_acknowledgement(session: aiohttp.ClientSession) -> None:
    fake = FakeWebhook()
    async with fake.running() as url:
        await WebhookNotifier("hook", WebhookConfig(type="webhook", url=f"{url}/in"),
                              session).send(ack())
    (doc,) = fake.accepted
    assert (doc["action"], doc["type"], doc["dedup_key"]) == \
        ("acknowledge", "accmon.acknowledged", DEDUP)
    assert doc["details"]["acknowledged_by"] == "carol"


async def test_alertmanager_sends_nothing_for_an_acknowledgement(
        session: aiohttp.ClientSession) -> None:
    fake = FakeAlertmanager()
    async with fake.running() as url:
        notifier = AlertmanagerNotifier(
            "am", AlertmanagerConfig(type="alertmanager", urls=[url]), session)
        await notifier.send(TRIGGER)
        answer = await notifier.send(ack())
        assert len(fake.requests) == 1  # the trigger only
        assert len(fake.firing()) == 1
    assert answer == Answer(0, answer.body) and "silence" in answer.body


async def test_log_notifier_logs_the_acknowledgement() -> None:
    with capture_logs() as logs:
        answer = await LogNotifier("log", LogNotifierConfig(type="log")).send(ack())
    assert [(e["action"], e["kind"]) for e in logs] == [("acknowledge", "acknowledged")]
    assert answer.status == 0
