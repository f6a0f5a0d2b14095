"""Generic webhook: the notification as JSON, signed so receivers can trust and de-replay it.

Headers: ``X-Accmon-Timestamp`` (unix seconds) and, with a secret configured,
``X-Accmon-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">`` — the scheme Stripe
and Slack use. The signature covers the exact bytes sent, so the body is serialised once
here and posted pre-serialised. Receivers check it with :func:`verify_signature`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import aiohttp
from pydantic import Field, SecretStr

from monitor.config_types import Duration
from monitor.notify.base import (
    Notification,
    NotifierSettings,
    post_json,
    type_field,
)

VERSION = 1
TIMESTAMP_HEADER = "X-Accmon-Timestamp"
SIGNATURE_HEADER = "X-Accmon-Signature"
SIGNATURE_PREFIX = "sha256="
TOLERANCE = 300.0  # seconds a receiver accepts between signing and checking


class WebhookConfig(NotifierSettings):
    """Any HTTP endpoint: JSON POSTs, optionally HMAC-signed (`X-Accmon-Signature`)."""

    type: Literal["webhook"] = type_field()
    url: str = Field(description="The endpoint that receives each notification as a JSON POST.")
    secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key for `X-Accmon-Signature`; unset: unsigned.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    timeout: Duration = Field(default=10.0, description="Per-request timeout.")


class WebhookNotifier:
    """POSTs every notification to one URL."""

    config_model: ClassVar[type[WebhookConfig]] = WebhookConfig
    type: ClassVar[str] = "webhook"
    pages: ClassVar[bool] = False

    def __init__(self, name: str, config: WebhookConfig, session: aiohttp.ClientSession, *,
                 clock: Callable[[], float] = time.time):
        self.name = name
        self.config = config
        self.session = session
        self.clock = clock

    def build_request(self, n: Notification,
                      now: float | None = None) -> tuple[str, dict[str, str], bytes]:
        """``(url, headers, body bytes)``; the signature is over exactly these bytes."""
        body = serialise(n)
        timestamp = str(int(self.clock() if now is None else now))
        # Configured headers first: ours must not be overridable by a typo in the config.
        headers = {**self.config.headers, TIMESTAMP_HEADER: timestamp}
        if self.config.secret is not None:
            headers[SIGNATURE_HEADER] = sign(self.config.secret.get_secret_value(),
                                             timestamp, body)
        return self.config.url, headers, body

    async def send(self, n: Notification) -> None:
        url, headers, body = self.build_request(n)
        secret = self.config.secret.get_secret_value() if self.config.secret else ""
        await post_json(self.session, url, None, headers=headers, data=body,
                        timeout=self.config.timeout, secrets=(secret,))


def serialise(n: Notification) -> bytes:
    """The body: the notification's JSON plus a schema ``version`` (``action`` is in it)."""
    doc: dict[str, Any] = {"version": VERSION, **n.to_json(), "action": n.action}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>`` over ``b"{timestamp}." + body``."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return SIGNATURE_PREFIX + digest


def verify_signature(secret: str | bytes, timestamp: str | None, body: bytes,
                     header: str | None, now: float, tolerance: float = TOLERANCE) -> bool:
    """True when ``header`` signs ``body`` at ``timestamp`` and the timestamp is fresh.

    Constant-time comparison (no timing oracle); a timestamp further than ``tolerance``
    seconds from ``now`` either way is refused, so a captured request cannot be replayed.
    """
    if not timestamp or not header or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body).encode(), header.encode())
