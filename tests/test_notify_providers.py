"""Every notifier against its fake receiver over real loopback HTTP, payloads field by field."""

from __future__ import annotations

import asyncio
import socket
import time
import typing
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from monitor.config import NotifierConfig
from monitor.fakes.pagers import (
    CaptureServer,
    FakeAlertmanager,
    FakeOpsgenie,
    FakePagerDuty,
    FakeSlack,
    FakeWebhook,
    Scripted,
)
from monitor.metrics import Metrics
from monitor.notify import NOTIFIERS, build_notifier
from monitor.notify.alertmanager import AlertmanagerConfig, AlertmanagerNotifier
from monitor.notify.base import DeliveryError, Notification, Notifier, Resending, redact
from monitor.notify.log import LogNotifier, LogNotifierConfig
from monitor.notify.opsgenie import OpsgenieConfig, OpsgenieNotifier
from monitor.notify.outbox import OutboxWorker
from monitor.notify.pagerduty import PagerDutyConfig, PagerDutyNotifier
from monitor.notify.slack import SlackConfig, SlackNotifier, human_duration
from monitor.notify.webhook import WebhookConfig, WebhookNotifier, sign, verify_signature

AT = 1_700_000_000.0  # 2023-11-14T22:13:20Z
ROUTING_KEY = "R0ut1ngKey0123456789abcdefABCDEF"  # 32 characters, as PagerDuty's are
GENIE_KEY = "eb243592-faa2-4ba2-a551q-1afdf565c889"
SLACK_PATH = "/services/T000/B000/XXXXSECRETXXXX"
WEBHOOK_SECRET = "whsec-very-secret-value"
DEDUP = "accmon/masto/alice/outage-17"


def vanished(**changes: Any) -> Notification:
    n = Notification(
        kind="vanished", action="trigger", dedup_key=DEDUP, platform="masto", account="alice",
        summary="PROTECTED masto/alice vanished (suspended); confirmed after 2 absent checks",
        severity="critical", at=AT, protected=True, team="trust", owner="@carol",
        reason="suspended", outage_id=17, labels={"tier": "gold", "region-name": "eu"},
        details={"first_seen_absent_at": "2023-11-14T22:12:20Z",
                 "evidence": "GET /api/v1/accounts/lookup: 200 suspended=true"},
        links=[{"href": "https://masto.example/@alice", "text": "profile"},
               {"href": "https://runbooks.example/vanished", "text": "runbook"}])
    return replace(n, **changes)


def recovered(**changes: Any) -> Notification:
    # As routing builds it: same dedup key, severity "info", the outage's duration.
    return vanished(kind="recovered", action="resolve", severity="info", at=AT + 303,
                    summary="PROTECTED masto/alice is back after 5m03s (suspended)",
                    details={"duration_seconds": 303.0,
                             "first_seen_absent_at": "2023-11-14T22:12:20Z",
                             "recovered_at": "2023-11-14T22:18:23Z"}, **changes)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def closed_port_url() -> str:
    """A loopback URL nobody listens on: connection refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def echo_app(status: int = 400) -> web.Application:
    """A hostile receiver that echoes the request (path, credentials, body) in its error."""
    async def echo(request: web.Request) -> web.Response:
        body = (await request.read()).decode()
        text = f"{request.raw_path} {request.headers.get('Authorization')} {body}"
        return web.Response(status=status, text=text)
    app = web.Application()
    app.router.add_post("/{tail:.*}", echo)
    return app


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    runner = web.AppRunner(await echo_app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


def test_redact_blanks_whole_and_cut_off_secrets() -> None:
    cut = DeliveryError(f"HTTP 400: key={ROUTING_KEY} echo={ROUTING_KEY[:9]}", status=400,
                        permanent=True)
    clean = redact(cut, ROUTING_KEY)
    assert str(clean) == "HTTP 400: key=[redacted] echo=[redacted]"
    assert (clean.permanent, clean.status) == (True, 400)
    plain = DeliveryError("HTTP 500: oops")
    assert redact(plain, ROUTING_KEY) is plain


async def failure(notifier: Notifier, n: Notification) -> DeliveryError:
    with pytest.raises(DeliveryError) as info:
        await notifier.send(n)
    return info.value


# =========================================================================== registry


def test_every_notifier_config_type_has_a_class_and_every_class_a_config() -> None:
    union = typing.get_args(NotifierConfig)[0]  # Annotated[Union[...], Field] -> Union
    models = {typing.get_args(m.model_fields["type"].annotation)[0]: m
              for m in typing.get_args(union)}
    assert set(models) == set(NOTIFIERS)
    for type_name, cls in NOTIFIERS.items():
        assert cls.type == type_name
        hints = typing.get_type_hints(cls.__init__)
        assert hints["config"] is models[type_name], cls
        assert callable(getattr(cls, "send", None))


async def test_build_notifier_picks_the_class_by_config_type(
        session: aiohttp.ClientSession) -> None:
    notifier = build_notifier("ops", LogNotifierConfig(type="log"), session)
    assert isinstance(notifier, LogNotifier)
    assert notifier.name == "ops"


# =========================================================================== PagerDuty


def pagerduty(base_url: str, session: aiohttp.ClientSession, key: str = ROUTING_KEY,
              timeout: float = 2.0) -> PagerDutyNotifier:
    config = PagerDutyConfig(type="pagerduty", routing_key=key, url=f"{base_url}/v2/enqueue",
                             timeout=timeout)
    return PagerDutyNotifier("pd", config, session)


@pytest.fixture
async def pd() -> AsyncIterator[tuple[FakePagerDuty, str]]:
    fake = FakePagerDuty()
    async with fake.running() as url:
        yield fake, url


async def test_pagerduty_trigger_carries_every_field(
        pd: tuple[FakePagerDuty, str], session: aiohttp.ClientSession) -> None:
    fake, url = pd
    notifier = pagerduty(url, session)
    target, headers, body = notifier.build_request(vanished())
    assert target == f"{url}/v2/enqueue"
    assert headers == {}  # no auth header: the routing key is in the body
    assert body["routing_key"] == ROUTING_KEY
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == DEDUP
    assert body["client"] == "account-monitor"
    assert body["links"] == [{"href": "https://masto.example/@alice", "text": "profile"},
                             {"href": "https://runbooks.example/vanished", "text": "runbook"}]
    payload = body["payload"]
    assert payload["summary"] == vanished().summary
    assert payload["source"] == "account-monitor/masto"
    assert payload["severity"] == "critical"
    assert payload["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert (payload["component"], payload["group"], payload["class"]) == \
        ("alice", "masto", "vanished")
    assert payload["custom_details"] == {
        "first_seen_absent_at": "2023-11-14T22:12:20Z",
        "evidence": "GET /api/v1/accounts/lookup: 200 suspended=true",
        "account": "alice", "platform": "masto", "protected": True, "reason": "suspended",
        "outage_id": 17, "team": "trust", "owner": "@carol",
        "labels": {"tier": "gold", "region-name": "eu"}}

    await notifier.send(vanished())
    assert fake.accepted == [body]
    assert [(i.dedup_key, i.status, i.severity) for i in fake.open_incidents()] == \
        [(DEDUP, "triggered", "critical")]


async def test_pagerduty_resolve_closes_the_incident_its_trigger_opened(
        pd: tuple[FakePagerDuty, str], session: aiohttp.ClientSession) -> None:
    fake, url = pd
    notifier = pagerduty(url, session)
    await notifier.send(vanished())
    await notifier.send(vanished(kind="reminder"))  # same key: collapses into the incident
    _, _, body = notifier.build_request(recovered())
    assert body == {"routing_key": ROUTING_KEY, "event_action": "resolve", "dedup_key": DEDUP}
    await notifier.send(recovered())
    incident = fake.incidents[DEDUP]
    assert (incident.status, incident.triggers, incident.opened) == ("resolved", 2, 1)
    assert fake.trigger_count(DEDUP) == 2
    assert fake.open_incidents() == []


async def test_pagerduty_notify_is_a_change_event_not_an_incident(
        pd: tuple[FakePagerDuty, str], session: aiohttp.ClientSession) -> None:
    fake, url = pd
    n = vanished(kind="renamed", action="notify", severity="warning",
                 dedup_key="accmon/masto/alice/renamed-1700000000")
    await pagerduty(url, session).send(n)
    assert fake.requests[0].path == "/v2/change/enqueue"
    event = fake.changes[0]
    assert set(event) == {"routing_key", "payload", "links"}  # no event_action, no dedup_key
    assert event["payload"]["custom_details"]["kind"] == "renamed"
    assert fake.incidents == {}


async def test_pagerduty_summary_is_cut_to_1024_characters_with_an_ellipsis(
        pd: tuple[FakePagerDuty, str], session: aiohttp.ClientSession) -> None:
    fake, url = pd
    await pagerduty(url, session).send(vanished(summary="x" * 5000))
    summary = fake.accepted[0]["payload"]["summary"]
    assert len(summary) == 1024
    assert summary.endswith("…") and summary[:-1] == "x" * 1023


async def test_pagerduty_long_dedup_keys_stay_unique_and_match_at_resolve(
        pd: tuple[FakePagerDuty, str], session: aiohttp.ClientSession) -> None:
    fake, url = pd
    notifier = pagerduty(url, session)
    first, second = "k/" + "a" * 300 + "1", "k/" + "a" * 300 + "2"
    await notifier.send(vanished(dedup_key=first))
    await notifier.send(vanished(dedup_key=second))
    await notifier.send(recovered(dedup_key=first))
    keys = [e["dedup_key"] for e in fake.accepted]
    assert all(len(k) <= 255 for k in keys)
    assert keys[0] != keys[1] and keys[0] == keys[2]
    assert sorted(i.status for i in fake.incidents.values()) == ["resolved", "triggered"]


async def test_pagerduty_invalid_event_is_permanent_and_hides_the_routing_key(
        pd: tuple[FakePagerDuty, str], session: aiohttp.ClientSession) -> None:
    fake, url = pd
    short_key = ROUTING_KEY[:31]
    error = await failure(pagerduty(url, session, key=short_key), vanished())
    assert (error.permanent, error.status) == (True, 400)
    assert "routing_key" in str(error)  # PagerDuty's own explanation survives
    assert short_key not in str(error)
    assert fake.accepted == [] and fake.requests[0].status == 400


async def test_pagerduty_routing_key_is_redacted_even_when_a_proxy_echoes_it(
        echo_url: str, session: aiohttp.ClientSession) -> None:
    error = await failure(pagerduty(echo_url, session), vanished())
    assert error.permanent
    assert ROUTING_KEY not in str(error) and "[redacted]" in str(error)


async def test_pagerduty_throttling_is_retried_when_pagerduty_asks(
        pd: tuple[FakePagerDuty, str], session: aiohttp.ClientSession) -> None:
    fake, url = pd
    fake.script(429, retry_after=7)
    error = await failure(pagerduty(url, session), vanished())
    assert (error.permanent, error.retry_after, error.status) == (False, 7, 429)
    assert ROUTING_KEY not in str(error)


@pytest.mark.parametrize("answer", [500, 502, 503, Scripted(hang=True)])
async def test_pagerduty_server_errors_and_timeouts_are_retryable(
        pd: tuple[FakePagerDuty, str], session: aiohttp.ClientSession,
        answer: int | Scripted) -> None:
    fake, url = pd
    fake.script(answer)
    error = await failure(pagerduty(url, session, timeout=0.3), vanished())
    assert not error.permanent
    assert ROUTING_KEY not in str(error)
    await pagerduty(url, session).send(vanished())  # the script is spent: normal service
    assert len(fake.open_incidents()) == 1


# =========================================================================== Opsgenie


def opsgenie(session: aiohttp.ClientSession, base_url: str | None = None,
             key: str = GENIE_KEY, **extra: Any) -> OpsgenieNotifier:
    config = OpsgenieConfig.model_validate({"type": "opsgenie", "api_key": key,
                                            "base_url": base_url, **extra})
    return OpsgenieNotifier("og", config, session)


@pytest.fixture
async def og() -> AsyncIterator[tuple[FakeOpsgenie, str]]:
    fake = FakeOpsgenie(GENIE_KEY)
    async with fake.running() as url:
        yield fake, url


async def test_opsgenie_create_carries_every_field(
        og: tuple[FakeOpsgenie, str], session: aiohttp.ClientSession) -> None:
    fake, url = og
    notifier = opsgenie(session, url, responders=[{"type": "team", "name": "trust"}])
    target, headers, body = notifier.build_request(vanished())
    assert target == f"{url}/v2/alerts"
    assert headers == {"Authorization": f"GenieKey {GENIE_KEY}"}
    assert body["message"] == vanished().summary
    assert body["alias"] == DEDUP
    assert body["description"].startswith(vanished().summary)
    assert "runbook: https://runbooks.example/vanished" in body["description"]
    assert body["tags"] == ["masto", "vanished", "suspended", "trust", "protected",
                            "region-name:eu", "tier:gold"]
    assert body["details"] == {
        "account": "alice", "platform": "masto", "kind": "vanished", "protected": "true",
        "reason": "suspended", "outage_id": "17", "team": "trust", "owner": "@carol",
        "label.tier": "gold", "label.region-name": "eu",
        "first_seen_absent_at": "2023-11-14T22:12:20Z",
        "evidence": "GET /api/v1/accounts/lookup: 200 suspended=true"}
    assert (body["entity"], body["source"], body["priority"]) == \
        ("masto/alice", "account-monitor", "P1")
    assert body["responders"] == [{"type": "team", "name": "trust"}]

    await notifier.send(vanished())
    assert fake.accepted == [body]
    assert [(a.alias, a.status, a.priority) for a in fake.open_alerts()] == \
        [(DEDUP, "open", "P1")]


async def test_opsgenie_close_targets_the_alias_quoted_in_the_path(
        og: tuple[FakeOpsgenie, str], session: aiohttp.ClientSession) -> None:
    fake, url = og
    notifier = opsgenie(session, url)
    await notifier.send(vanished())
    await notifier.send(vanished(kind="reminder"))  # Opsgenie de-duplicates by alias
    target, _, body = notifier.build_request(recovered())
    assert target == (f"{url}/v2/alerts/accmon%2Fmasto%2Falice%2Foutage-17/close"
                      "?identifierType=alias")
    assert body == {"source": "account-monitor", "user": "account-monitor",
                    "note": recovered().summary}
    await notifier.send(recovered())
    alert = fake.alerts[DEDUP]
    assert (alert.status, alert.count, alert.close_note) == ("closed", 2, recovered().summary)
    assert fake.requests[-1].path.startswith("/v2/alerts/accmon%2Fmasto%2Falice%2Foutage-17/")


async def test_opsgenie_message_is_cut_to_130_characters(
        og: tuple[FakeOpsgenie, str], session: aiohttp.ClientSession) -> None:
    fake, url = og
    await opsgenie(session, url).send(vanished(summary="y" * 400))
    message = fake.accepted[0]["message"]
    assert len(message) == 130 and message.endswith("…")
    assert fake.accepted[0]["description"].startswith("y" * 400)  # the whole text is kept


def test_opsgenie_base_url_follows_the_region_unless_overridden(
        session: aiohttp.ClientSession) -> None:
    def url_of(**config: Any) -> str:
        return opsgenie(session, **config).build_request(vanished())[0]
    assert url_of() == "https://api.opsgenie.com/v2/alerts"
    assert url_of(region="eu") == "https://api.eu.opsgenie.com/v2/alerts"
    assert url_of(region="eu", base_url="http://proxy:8080/og/") == \
        "http://proxy:8080/og/v2/alerts"


@pytest.mark.parametrize(("severity", "configured", "expected"), [
    ("critical", "P1", "P1"), ("error", "P2", "P2"), ("warning", "P1", "P3"),
    ("warning", "P4", "P4"), ("info", "P1", "P5")])
def test_opsgenie_priority_never_lets_an_fyi_outrank_a_page(
        session: aiohttp.ClientSession, severity: str, configured: str, expected: str) -> None:
    notifier = opsgenie(session, priority=configured)
    assert notifier.build_request(vanished(severity=severity))[2]["priority"] == expected


async def test_opsgenie_wrong_key_is_permanent_and_never_shown(
        og: tuple[FakeOpsgenie, str], session: aiohttp.ClientSession) -> None:
    fake, url = og
    wrong = "00000000-0000-0000-0000-000000000000"
    error = await failure(opsgenie(session, url, key=wrong), vanished())
    assert (error.permanent, error.status) == (True, 401)
    assert wrong not in str(error) and GENIE_KEY not in str(error)
    assert fake.alerts == {}


async def test_opsgenie_key_is_redacted_when_a_proxy_echoes_the_headers(
        echo_url: str, session: aiohttp.ClientSession) -> None:
    error = await failure(opsgenie(session, echo_url), vanished())
    assert GENIE_KEY not in str(error) and "[redacted]" in str(error)


async def test_opsgenie_throttling_and_outages_are_retryable(
        og: tuple[FakeOpsgenie, str], session: aiohttp.ClientSession) -> None:
    fake, url = og
    fake.script(429, retry_after=7)
    fake.script(503)
    notifier = opsgenie(session, url)
    throttled = await failure(notifier, vanished())
    assert (throttled.permanent, throttled.retry_after) == (False, 7)
    assert not (await failure(notifier, vanished())).permanent
    await notifier.send(vanished())
    assert len(fake.open_alerts()) == 1


# =========================================================================== Slack


def slack(session: aiohttp.ClientSession, url: str) -> SlackNotifier:
    return SlackNotifier("chat", SlackConfig(type="slack", webhook_url=url, timeout=2.0),
                         session)


@pytest.fixture
async def sl() -> AsyncIterator[tuple[FakeSlack, str]]:
    fake = FakeSlack(path=SLACK_PATH)
    async with fake.running() as url:
        yield fake, url + SLACK_PATH


def block_texts(message: dict[str, Any]) -> list[str]:
    texts: list[str] = []
    for block in message["blocks"]:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts += [f["text"] for f in block.get("fields", [])]
        texts += [e["text"] for e in block.get("elements", [])]
    return texts


async def test_slack_message_names_account_platform_reason_since_evidence_and_links(
        sl: tuple[FakeSlack, str], session: aiohttp.ClientSession) -> None:
    fake, url = sl
    await slack(session, url).send(vanished())
    message = fake.accepted[0]
    assert message["text"].startswith("Account vanished: masto/alice. PROTECTED masto/alice")
    header = message["blocks"][0]
    assert header == {"type": "header", "text": {"type": "plain_text",
                                                 "text": "Account vanished: masto/alice"}}
    texts = block_texts(message)
    assert vanished().summary in texts
    for field in ("*Account*\nalice (protected)", "*Platform*\nmasto", "*Reason*\nsuspended",
                  "*Since*\n2023-11-14T22:12:20Z", "*Team*\ntrust", "*Owner*\n@carol",
                  "*Evidence*\nGET /api/v1/accounts/lookup: 200 suspended=true"):
        assert field in texts
    context = texts[-1]
    assert "<https://masto.example/@alice|profile>" in context
    assert "<https://runbooks.example/vanished|runbook>" in context
    assert DEDUP in context


async def test_slack_recovery_says_recovered_and_how_long_it_was_gone(
        sl: tuple[FakeSlack, str], session: aiohttp.ClientSession) -> None:
    fake, url = sl
    await slack(session, url).send(recovered())
    message = fake.accepted[0]
    assert message["blocks"][0]["text"]["text"] == "Account recovered: masto/alice"
    texts = block_texts(message)
    assert "*Outage duration*\n5m 03s" in texts
    assert "*Recovered at*\n2023-11-14T22:18:23Z" in texts


def test_slack_escapes_mrkdwn_control_characters(session: aiohttp.ClientSession) -> None:
    _, _, message = slack(session, "https://hooks.example/x").build_request(
        vanished(summary="<!channel> & <@U123>", account="a<b>"))
    texts = block_texts(message)
    assert "&lt;!channel&gt; &amp; &lt;@U123&gt;" in texts
    assert "*Account*\na&lt;b&gt; (protected)" in texts


@pytest.mark.parametrize(("seconds", "text"), [
    (42, "42s"), (303, "5m 03s"), (7500, "2h 05m"), (273600, "3d 4h")])
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize("status", [400, 403, 404, 410])
async def test_slack_refusals_are_permanent_and_never_show_the_url(
        sl: tuple[FakeSlack, str], session: aiohttp.ClientSession, status: int) -> None:
    fake, url = sl
    fake.script(status)
    error = await failure(slack(session, url), vanished())
    assert (error.permanent, error.status) == (True, status)
    assert "SECRET" not in str(error) and url not in str(error)


async def test_slack_archived_channel_is_permanent(session: aiohttp.ClientSession) -> None:
    fake = FakeSlack(archived=True)
    async with fake.running() as base:
        error = await failure(slack(session, base + SLACK_PATH), vanished())
    assert error.permanent and "channel_is_archived" in str(error)


async def test_slack_wrong_path_is_no_service(
        sl: tuple[FakeSlack, str], session: aiohttp.ClientSession) -> None:
    fake, url = sl
    error = await failure(slack(session, url.replace("SECRET", "WRONG")), vanished())
    assert (error.permanent, error.status) == (True, 404)
    assert "WRONG" not in str(error)
    assert fake.accepted == []


async def test_slack_url_is_redacted_even_when_echoed(
        echo_url: str, session: aiohttp.ClientSession) -> None:
    error = await failure(slack(session, echo_url + SLACK_PATH), vanished())
    assert "SECRET" not in str(error)
    assert "SECRET" not in repr(slack(session, echo_url + SLACK_PATH))


async def test_slack_rate_limit_and_timeouts_are_retryable(
        sl: tuple[FakeSlack, str], session: aiohttp.ClientSession) -> None:
    fake, url = sl
    fake.script(429, retry_after=7)
    throttled = await failure(slack(session, url), vanished())
    assert (throttled.permanent, throttled.retry_after) == (False, 7)
    fake.script("hang")
    notifier = SlackNotifier("chat", SlackConfig(type="slack", webhook_url=url, timeout=0.3),
                             session)
    slow = await failure(notifier, vanished())
    assert not slow.permanent and "SECRET" not in str(slow)


# =========================================================================== webhook


def webhook(session: aiohttp.ClientSession, url: str, secret: str | None = WEBHOOK_SECRET,
            clock: Callable[[], float] = time.time, **extra: Any) -> WebhookNotifier:
    config = WebhookConfig.model_validate({"type": "webhook", "url": url, "secret": secret,
                                           **extra})
    return WebhookNotifier("hook", config, session, clock=clock)


async def test_webhook_body_is_the_notification_with_version_and_action(
        session: aiohttp.ClientSession) -> None:
    fake = FakeWebhook(WEBHOOK_SECRET)
    async with fake.running() as url:
        notifier = webhook(session, url + "/hooks/accmon", headers={"X-Team": "trust"})
        await notifier.send(vanished())
    doc = fake.accepted[0]
    assert doc == {"version": 1, "type": "accmon.vanished",
                   "timestamp": "2023-11-14T22:13:20.000Z", **vanished().to_json()}
    assert doc["action"] == "trigger"
    assert Notification.from_json(doc) == vanished()
    headers = fake.headers[0]
    assert headers["X-Team"] == "trust"
    assert headers["Content-Type"] == "application/json"
    assert abs(int(headers["X-Accmon-Timestamp"]) - time.time()) < 5
    assert headers["X-Accmon-Signature"].startswith("sha256=")


def test_webhook_signature_verifies_and_a_tampered_body_fails(
        session: aiohttp.ClientSession) -> None:
    notifier = webhook(session, "http://receiver.example/x", clock=lambda: AT)
    _, headers, body = notifier.build_request(vanished())
    timestamp, signature = headers["X-Accmon-Timestamp"], headers["X-Accmon-Signature"]
    assert timestamp == str(int(AT))
    assert signature == sign(WEBHOOK_SECRET, timestamp, body)
    assert verify_signature(WEBHOOK_SECRET, timestamp, body, signature, now=AT + 10)
    tampered = body.replace(b'"alice"', b'"mallory"')
    assert tampered != body
    assert not verify_signature(WEBHOOK_SECRET, timestamp, tampered, signature, now=AT)
    assert not verify_signature("other-secret", timestamp, body, signature, now=AT)
    assert not verify_signature(WEBHOOK_SECRET, str(int(AT) + 1), body, signature, now=AT)
    assert not verify_signature(WEBHOOK_SECRET, timestamp, body, None, now=AT)
    assert not verify_signature(WEBHOOK_SECRET, "soon", body, signature, now=AT)


def test_webhook_signature_refuses_stale_and_future_timestamps(
        session: aiohttp.ClientSession) -> None:
    _, headers, body = webhook(session, "http://r.example", clock=lambda: AT).build_request(
        vanished())
    ts, sig = headers["X-Accmon-Timestamp"], headers["X-Accmon-Signature"]
    assert verify_signature(WEBHOOK_SECRET, ts, body, sig, now=AT + 300)
    assert not verify_signature(WEBHOOK_SECRET, ts, body, sig, now=AT + 301)
    assert not verify_signature(WEBHOOK_SECRET, ts, body, sig, now=AT - 301)
    assert verify_signature(WEBHOOK_SECRET, ts, body, sig, now=AT + 3000, tolerance=3600)


def test_webhook_without_a_secret_sends_no_signature(session: aiohttp.ClientSession) -> None:
    _, headers, _ = webhook(session, "http://r.example", secret=None).build_request(vanished())
    assert "X-Accmon-Signature" not in headers and "X-Accmon-Timestamp" in headers


def test_webhook_configured_headers_cannot_forge_ours(session: aiohttp.ClientSession) -> None:
    notifier = webhook(session, "http://r.example", clock=lambda: AT,
                       headers={"X-Accmon-Signature": "sha256=forged",
                                "x-accmon-signature": "sha256=forged-lower",
                                "X-Accmon-Timestamp": "1", "X-Team": "trust"})
    _, headers, body = notifier.build_request(vanished())
    assert headers == {"X-Team": "trust", "X-Accmon-Timestamp": str(int(AT)),
                       "X-Accmon-Signature": sign(WEBHOOK_SECRET, str(int(AT)), body)}


async def test_webhook_receiver_refuses_a_wrong_secret_permanently(
        session: aiohttp.ClientSession) -> None:
    fake = FakeWebhook("the-receivers-secret")
    async with fake.running() as url:
        error = await failure(webhook(session, url), vanished())
    assert (error.permanent, error.status) == (True, 401)
    assert fake.accepted == []
    assert WEBHOOK_SECRET not in str(error)


async def test_webhook_secret_is_redacted_when_echoed(
        echo_url: str, session: aiohttp.ClientSession) -> None:
    # A receiver that echoes cannot leak the secret: only the HMAC travels, never the key.
    error = await failure(webhook(session, echo_url), vanished())
    assert WEBHOOK_SECRET not in str(error)


async def test_webhook_failures_are_classified(session: aiohttp.ClientSession) -> None:
    fake = FakeWebhook(WEBHOOK_SECRET)
    async with fake.running() as url:
        fake.script(Scripted(429, retry_after=7), 500, 400)
        notifier = webhook(session, url)
        errors = [await failure(notifier, vanished()) for _ in range(3)]
        await notifier.send(vanished())
    assert [(e.status, e.permanent, e.retry_after) for e in errors] == \
        [(429, False, 7), (500, False, None), (400, True, None)]
    assert len(fake.accepted) == 1


async def test_webhook_unreachable_is_retryable(session: aiohttp.ClientSession) -> None:
    error = await failure(webhook(session, closed_port_url()), vanished())
    assert not error.permanent and "connection failed" in str(error)


# =========================================================================== Alertmanager


def alertmanager(session: aiohttp.ClientSession, urls: list[str], clock: Callable[[], float]
                 = time.time, **extra: Any) -> AlertmanagerNotifier:
    config = AlertmanagerConfig.model_validate({"type": "alertmanager", "urls": urls,
                                                "timeout": 1.0, **extra})
    return AlertmanagerNotifier("am", config, session, clock=clock)


def test_alertmanager_firing_alert_carries_every_field(session: aiohttp.ClientSession) -> None:
    notifier = alertmanager(session, ["http://am-0:9093/", "http://am-1:9093"],
                            ends_at_after="5m", generator_url="http://monitor:9464/")
    urls, headers, body = notifier.build_request(vanished(), now=AT)
    assert urls == ["http://am-0:9093/api/v2/alerts", "http://am-1:9093/api/v2/alerts"]
    assert headers == {}
    assert body == [{
        "labels": {"alertname": "AccountVanished", "dedup_key": DEDUP, "platform": "masto",
                   "account": "alice", "severity": "page", "team": "trust", "tier": "gold",
                   "region_name": "eu"},
        "annotations": {
            "summary": vanished().summary,
            "description": vanished().summary + "\nfirst_seen_absent_at: 2023-11-14T22:12:20Z"
                           "\nevidence: GET /api/v1/accounts/lookup: 200 suspended=true",
            "reason": "suspended", "owner": "@carol",
            "runbook_url": "https://runbooks.example/vanished",
            "profile_url": "https://masto.example/@alice"},
        "startsAt": "2023-11-14T22:12:20.000Z",  # the outage's start, not the page's
        "endsAt": "2023-11-14T22:18:20.000Z",  # now + ends_at_after
        "generatorURL": "http://monitor:9464/",
    }]
    assert notifier.firing_payload(vanished(), AT) == body
    assert notifier.resend_interval == 60.0


@pytest.mark.parametrize(("trigger", "resolve"), [
    (vanished(), recovered()),
    (vanished(kind="reminder", reason="deactivated"), recovered()),
    (vanished(kind="blind", severity="error", dedup_key="accmon/masto/alice/blind-1"),
     vanished(kind="sighted", action="resolve", severity="info",
              dedup_key="accmon/masto/alice/blind-1")),
])
def test_alertmanager_labels_are_identical_at_trigger_and_resolve(
        session: aiohttp.ClientSession, trigger: Notification, resolve: Notification) -> None:
    notifier = alertmanager(session, ["http://am:9093"])
    fired = notifier.build_request(trigger, now=AT)[2][0]["labels"]
    resolved = notifier.build_request(resolve, now=AT + 60)[2][0]["labels"]
    assert fired == resolved
    assert fired["dedup_key"] == trigger.dedup_key


async def test_alertmanager_trigger_then_resolve_resolves_the_same_alert_at_once(
        session: aiohttp.ClientSession) -> None:
    fake = FakeAlertmanager()
    async with fake.running() as url:
        notifier = alertmanager(session, [url])
        await notifier.send(vanished())
        await notifier.send(vanished(kind="reminder"))  # a re-send refreshes, not duplicates
        assert [a.labels["alertname"] for a in fake.firing()] == ["AccountVanished"]
        before = time.time()
        await notifier.send(recovered())
        after = time.time()
    assert len(fake.alerts) == 1
    (alert,) = fake.alerts.values()
    assert alert.posts == 3
    assert before - 0.001 <= alert.ends_at <= after + 0.001  # endsAt = now: resolved at once
    assert fake.firing() == []
    sent = fake.accepted[-1][0]
    assert sent["annotations"]["summary"] == recovered().summary


async def test_alertmanager_one_replica_down_is_still_delivered(
        session: aiohttp.ClientSession) -> None:
    fake = FakeAlertmanager()
    async with fake.running() as url:
        await alertmanager(session, [closed_port_url(), url]).send(vanished())
    assert len(fake.firing()) == 1


async def test_alertmanager_every_replica_down_is_retryable(
        session: aiohttp.ClientSession) -> None:
    fake = FakeAlertmanager()
    async with fake.running() as url:
        fake.script(Scripted(503, retry_after=7))
        error = await failure(alertmanager(session, [closed_port_url(), url]), vanished())
    assert not error.permanent
    assert error.retry_after == 7
    assert "alertmanager[0]: connection failed" in str(error)
    assert "alertmanager[1]: HTTP 503" in str(error)


async def test_alertmanager_refused_by_every_replica_is_permanent(
        session: aiohttp.ClientSession) -> None:
    fakes = [FakeAlertmanager(), FakeAlertmanager()]
    async with fakes[0].running() as one, fakes[1].running() as two:
        for fake in fakes:
            fake.script(400)
        error = await failure(alertmanager(session, [one, two]), vanished())
    assert error.permanent


async def test_alertmanager_accepts_our_payload_shape(session: aiohttp.ClientSession) -> None:
    fake = FakeAlertmanager()
    async with fake.running() as url:
        notifier = alertmanager(session, [url], generator_url="http://monitor:9464/")
        for n in (vanished(), vanished(kind="renamed", action="notify", severity="warning",
                                       dedup_key="accmon/masto/alice/renamed-1",
                                       labels={"1st": "x", "": "y"})):
            await notifier.send(n)
    assert [r.status for r in fake.requests] == [200, 200]
    renamed = fake.accepted[1][0]["labels"]
    assert (renamed["alertname"], renamed["severity"], renamed["_1st"]) == \
        ("AccountRenamed", "warning", "x")


async def test_alertmanager_resend_keeps_a_firing_alert_alive(
        session: aiohttp.ClientSession) -> None:
    fake = FakeAlertmanager()
    now = [time.time()]
    async with fake.running() as url:
        notifier = alertmanager(session, [url], clock=lambda: now[0], ends_at_after="2m")
        await notifier.send(vanished())
        first_end = next(iter(fake.alerts.values())).ends_at
        now[0] += 60
        await notifier.send(vanished())
    (alert,) = fake.alerts.values()
    assert alert.ends_at == pytest.approx(first_end + 60, abs=0.01)


async def test_the_outbox_re_sends_firing_alerts_only_for_resending_notifiers(
        session: aiohttp.ClientSession) -> None:
    am = alertmanager(session, [closed_port_url()], resend_interval="1h")
    pd = pagerduty(closed_port_url(), session)
    assert isinstance(am, Resending) and am.resend_interval == 3600.0
    assert not isinstance(pd, Resending)
    worker = OutboxWorker(lambda: None, {"am": am, "pd": pd}, Metrics(lambda: []),
                          max_age=60.0, retry_initial=1.0, retry_max=1.0)
    await worker.start()
    try:
        names = {task.get_name() for task in asyncio.all_tasks()}
        assert {"outbox-am", "outbox-pd", "resend-am"} <= names
        assert "resend-pd" not in names
    finally:
        await worker.stop()


# =========================================================================== log, capture


async def test_log_notifier_writes_one_line_and_never_fails(
        session: aiohttp.ClientSession) -> None:
    notifier = build_notifier("log", LogNotifierConfig(type="log"), session)
    with capture_logs() as logs:
        await notifier.send(vanished())
    assert logs == [{"event": "notification", "log_level": "info", "notifier": "log",
                     "kind": "vanished", "action": "trigger", "platform": "masto",
                     "account": "alice", "severity": "critical", "dedup_key": DEDUP,
                     "summary": vanished().summary}]


async def test_capture_server_records_any_json_post(session: aiohttp.ClientSession) -> None:
    fake = CaptureServer()
    async with fake.running() as url:
        async with session.post(url + "/am-webhook", json={"version": "4"}) as resp:
            assert resp.status == 200
        assert await fake.wait_for(1) == [{"version": "4"}]
    assert fake.posts == [("/am-webhook", {"version": "4"})]
