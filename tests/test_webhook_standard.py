"""The webhook notifier's Standard Webhooks signing, verified by the reference library.

spec/standard-webhooks.md: ``webhook-id`` (the same for every retry of one event),
``webhook-timestamp`` (the attempt's unix seconds) and ``webhook-signature: v1,<base64
HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with the base64 part of a ``whsec_``
secret of 24 to 64 bytes. Verification here is ``standardwebhooks.Webhook.verify``, the
spec's own Python library, over the bytes and headers the receiver really got.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import replace
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from monitor.config import ConfigError, parse_config
from monitor.fakes.pagers import FakeWebhook, Received
from monitor.notify.base import DeliveryError, Notification
from monitor.notify.webhook import (
    WebhookConfig,
    WebhookNotifier,
    message_id,
    verify_signature,
    verify_standard,
)

KEY = bytes(range(32))
SECRET = "whsec_" + base64.b64encode(KEY).decode()
PLATFORMS = """
platforms: {x: {base_url: "http://127.0.0.1:9", probe: http,
                rules: {present: [{status: 200}]}}}
accounts: [{platform: x, handle: alice}]
"""
VANISHED = Notification(
    kind="vanished", action="trigger", dedup_key="accmon/x/alice/outage-3", platform="x",
    account="alice", summary="PROTECTED x/alice vanished (suspended) — ünïcode “quotes”",
    severity="critical", at=1_700_000_000.0, protected=True, reason="suspended", outage_id=3,
    details={"evidence": "HTTP 404"})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def notifier(session: aiohttp.ClientSession, url: str, signing: str = "standard-webhooks",
             secret: str | None = SECRET, **extra: Any) -> WebhookNotifier:
    config = WebhookConfig.model_validate({"type": "webhook", "url": url, "secret": secret,
                                           "signing": signing, "timeout": 2.0, **extra})
    return WebhookNotifier("hook", config, session)


def library_verifies(request: Received, secret: str = SECRET) -> Any:
    """What the reference library returns for the request as it arrived (raises if bad)."""
    return Webhook(secret).verify(request.body, dict(request.headers))


def webhook_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("webhook-")}


async def test_standard_webhooks_signature_verifies_with_the_reference_library(
        session: aiohttp.ClientSession) -> None:
    fake = FakeWebhook(SECRET, signing="standard-webhooks")
    async with fake.running() as url:
        answer = await notifier(session, f"{url}/in").send(VANISHED)
    (request,) = fake.requests
    assert answer.status == 200 and request.status == 200
    assert library_verifies(request) == fake.accepted[0]
    headers = webhook_headers(request.headers)
    assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert headers["webhook-id"] == message_id(VANISHED)
    assert headers["webhook-id"].startswith("msg_") and "." not in headers["webhook-id"]
    assert headers["webhook-signature"].startswith("v1,")
    assert headers["webhook-timestamp"] == request.headers["X-Accmon-Timestamp"]
    assert "X-Accmon-Signature" not in request.headers  # standard-webhooks only


async def test_both_sends_both_signatures_from_the_one_secret(
        session: aiohttp.ClientSession) -> None:
    fake = FakeWebhook(SECRET, signing="both")
    async with fake.running() as url:
        await notifier(session, f"{url}/in", signing="both").send(VANISHED)
    (request,) = fake.requests
    library_verifies(request)
    assert verify_signature(SECRET, request.headers["X-Accmon-Timestamp"], request.body,
                            request.headers["X-Accmon-Signature"], time.time())


def test_hmac_stays_the_default_and_sends_no_standard_headers(
        session: aiohttp.ClientSession) -> None:
    config = WebhookConfig.model_validate({"type": "webhook", "url": "http://r.example",
                                           "secret": "plain-old-secret"})
    assert config.signing == "hmac"
    _, headers, _ = WebhookNotifier("hook", config, session).build_request(VANISHED)
    assert webhook_headers(headers) == {}
    assert headers["X-Accmon-Signature"].startswith("sha256=")


def test_a_tampered_body_a_wrong_secret_or_a_stale_attempt_fail_the_library(
        session: aiohttp.ClientSession) -> None:
    now = time.time()
    _, headers, body = notifier(session, "http://r.example").build_request(VANISHED, now=now)
    Webhook(SECRET).verify(body, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b'"alice"', b'"mallory"'), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(bytes(32)).decode()).verify(body, headers)
    _, stale, body = notifier(session, "http://r.example").build_request(VANISHED,
                                                                          now=now - 600)
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, stale)
    # Our own checker (the fakes') agrees with the library on all of these.
    assert verify_standard(SECRET, headers, body, now)
    assert not verify_standard(SECRET, headers, body.replace(b"alice", b"bob"), now)
    assert not verify_standard(SECRET, stale, body, now)


async def test_webhook_id_is_stable_across_retries_and_restarts_the_timestamp_is_not(
        session: aiohttp.ClientSession) -> None:
    fake = FakeWebhook(SECRET, signing="standard-webhooks")
    async with fake.running() as url:
        fake.script(503)
        with pytest.raises(DeliveryError):
            await notifier(session, f"{url}/in").send(VANISHED)
        # The outbox keeps the notification as JSON; a restarted monitor rebuilds it.
        stored = Notification.from_json(json.loads(json.dumps(VANISHED.to_json())))
        await notifier(session, f"{url}/in").send(stored)
        await notifier(session, f"{url}/in").send(stored)  # delivered, but sent again
    first, second, third = (webhook_headers(r.headers) for r in fake.requests)
    assert first["webhook-id"] == second["webhook-id"] == third["webhook-id"]
    assert fake.ids[first["webhook-id"]] == 2  # the 503 never reached the receiver's check
    assert len(fake.accepted) == 1  # an idempotent receiver processed it once
    library_verifies(fake.requests[1])
    library_verifies(fake.requests[2])


def test_each_attempt_is_signed_at_its_own_time(session: aiohttp.ClientSession) -> None:
    hook = notifier(session, "http://r.example")
    _, early, body = hook.build_request(VANISHED, now=1_700_000_000)
    _, late, _ = hook.build_request(VANISHED, now=1_700_000_090)
    assert early["webhook-id"] == late["webhook-id"]
    assert (early["webhook-timestamp"], late["webhook-timestamp"]) == \
        ("1700000000", "1700000090")
    assert early["webhook-signature"] != late["webhook-signature"]
    assert verify_standard(SECRET, late, body, now=1_700_000_100)


@pytest.mark.parametrize("other", [
    replace(VANISHED, kind="reminder", at=VANISHED.at + 3600),
    replace(VANISHED, kind="recovered", action="resolve", at=VANISHED.at + 300),
    replace(VANISHED, kind="acknowledged", action="acknowledge", at=VANISHED.at + 60),
    replace(VANISHED, dedup_key="accmon/x/alice/outage-4"),
])
def test_every_other_notification_has_another_id(other: Notification) -> None:
    assert message_id(other) != message_id(VANISHED)


def test_an_unpadded_secret_works_as_the_library_reads_it(
        session: aiohttp.ClientSession) -> None:
    unpadded = "whsec_" + base64.b64encode(bytes(range(40))).decode().rstrip("=")
    assert not unpadded.endswith("=")
    _, headers, body = notifier(session, "http://r.example", secret=unpadded).build_request(
        VANISHED, now=time.time())
    Webhook(unpadded).verify(body, headers)


def test_configured_headers_cannot_forge_the_standard_ones(
        session: aiohttp.ClientSession) -> None:
    hook = notifier(session, "http://r.example",
                    headers={"Webhook-Id": "msg_forged", "WEBHOOK-SIGNATURE": "v1,forged",
                             "webhook-timestamp": "1"})
    _, headers, body = hook.build_request(VANISHED, now=time.time())
    assert list(webhook_headers(headers).values()).count("msg_forged") == 0
    assert len([k for k in headers if k.lower() == "webhook-signature"]) == 1
    Webhook(SECRET).verify(body, headers)


@pytest.mark.parametrize(("entry", "problem"), [
    ({"signing": "standard-webhooks"}, "needs a secret (whsec_...)"),
    ({"signing": "both", "secret": "plain-old-secret"}, "starts with whsec_"),
    ({"signing": "standard-webhooks", "secret": "whsec_not base64!"}, "is not base64"),
    ({"signing": "standard-webhooks", "secret": "whsec_" + base64.b64encode(b"short").decode()},
     "decodes to 5 bytes; use 24 to 64"),
    ({"signing": "ed25519", "secret": SECRET}, "signing"),
])
def test_a_bad_signing_config_is_a_clear_config_error(entry: dict[str, Any],
                                                      problem: str) -> None:
    hook = {"type": "webhook", "url": "http://r.example/in", **entry}
    with pytest.raises(ConfigError) as info:
        parse_config(PLATFORMS + f"notifiers: {json.dumps({'hook': hook})}\n", env={})
    text = info.value.render()
    assert "notifiers.hook" in text and problem in text
    assert SECRET not in text


async def test_neither_form_of_the_secret_reaches_an_error(
        session: aiohttp.ClientSession) -> None:
    async def echo(request: web.Request) -> web.Response:
        # A hostile receiver that somehow knows the secret and echoes both of its forms.
        return web.Response(status=400, text=f"{SECRET} {SECRET[6:]}")
    app = web.Application()
    app.router.add_post("/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        with pytest.raises(DeliveryError) as info:
            await notifier(session, f"http://{host}:{port}/in", signing="both").send(VANISHED)
    finally:
        await runner.cleanup()
    assert SECRET[6:] not in str(info.value) and "[redacted]" in str(info.value)
