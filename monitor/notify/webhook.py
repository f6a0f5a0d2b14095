"""Generic webhook: the notification as JSON, signed so receivers can trust and de-replay it.

Every request carries ``X-Accmon-Timestamp`` (unix seconds). With a ``secret``, ``signing``
picks the signature headers:

* ``hmac`` (the default, as before): ``X-Accmon-Signature: sha256=<hex HMAC-SHA256 of
  "{timestamp}.{body}">`` keyed with the secret's text, the scheme Stripe and Slack use;
  receivers check it with :func:`verify_signature`.
* ``standard-webhooks``: the Standard Webhooks headers (spec/standard-webhooks.md,
  "Signature scheme", "Webhook headers"): ``webhook-id``, ``webhook-timestamp`` and
  ``webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed with
  the base64-decoded ``whsec_`` secret, so any Standard Webhooks library verifies it.
  ``webhook-id`` is the same for every delivery of one notification (derived from its dedup
  key, kind, action and time): the spec's idempotency key, stable across retries and
  restarts, while the timestamp is the attempt's.
* ``both``: both sets (the spec's migration path), from the one ``whsec_`` secret.

The signatures cover the exact bytes sent, so the body is serialised once here and posted
pre-serialised. The body is the notification's JSON plus ``version``, ``type``
(``accmon.<kind>``) and ``timestamp`` (ISO 8601, when it happened), the top-level fields
the Standard Webhooks payload structure recommends. ``action`` may be ``trigger``,
``resolve``, ``notify`` or ``acknowledge``; receivers should ignore actions they do not know.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import aiohttp
from pydantic import Field, SecretStr, model_validator

from monitor.config_types import Duration
from monitor.notify.base import (
    Answer,
    Notification,
    NotifierSettings,
    post_json,
    type_field,
)
from monitor.timefmt import iso_ms

VERSION = 1
TIMESTAMP_HEADER = "X-Accmon-Timestamp"
SIGNATURE_HEADER = "X-Accmon-Signature"
SIGNATURE_PREFIX = "sha256="
TOLERANCE = 300.0  # seconds a receiver accepts between signing and checking
# Standard Webhooks (spec/standard-webhooks.md).
WEBHOOK_ID = "webhook-id"
WEBHOOK_TIMESTAMP = "webhook-timestamp"
WEBHOOK_SIGNATURE = "webhook-signature"
SECRET_PREFIX = "whsec_"
SECRET_BYTES = (24, 64)  # "Random. Between 24 bytes (192 bits) and 64 bytes (512 bits)"
Signing = Literal["hmac", "standard-webhooks", "both"]
# Headers only we set: a configured header of the same name, in any case, is dropped.
OWN_HEADERS = frozenset(h.lower() for h in (TIMESTAMP_HEADER, SIGNATURE_HEADER, WEBHOOK_ID,
                                            WEBHOOK_TIMESTAMP, WEBHOOK_SIGNATURE))


class WebhookConfig(NotifierSettings):
    """Any HTTP endpoint: JSON POSTs, optionally signed (`X-Accmon-Signature` HMAC, Standard
    Webhooks, or both)."""

    type: Literal["webhook"] = type_field()
    url: str = Field(description="The endpoint that receives each notification as a JSON POST.")
    secret: SecretStr | None = Field(default=None, description=(
        "The signing secret; unset: unsigned. For `standard-webhooks` and `both`, a Standard "
        "Webhooks secret: `whsec_` then 24 to 64 random bytes in base64."))
    signing: Signing = Field(default="hmac", description=(
        "`hmac`: `X-Accmon-Signature`; `standard-webhooks`: `webhook-id`, "
        "`webhook-timestamp`, `webhook-signature` (v1); `both`: all of them."))
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")
    timeout: Duration = Field(default=10.0, description="Per-request timeout.")

    @model_validator(mode="after")
    def _standard_secret(self) -> WebhookConfig:
        if self.signing != "hmac":
            if self.secret is None:
                raise ValueError(f"signing: {self.signing} needs a secret (whsec_...)")
            standard_key(self.secret.get_secret_value())  # ValueError naming the problem
        return self


class WebhookNotifier:
    """POSTs every notification to one URL."""

    config_model: ClassVar[type[WebhookConfig]] = WebhookConfig
    type: ClassVar[str] = "webhook"
    pages: ClassVar[bool] = False
    # Forwarded like every other event: a receiver may mirror the acknowledgement.
    acknowledges: ClassVar[bool] = False

    def __init__(self, name: str, config: WebhookConfig, session: aiohttp.ClientSession, *,
                 clock: Callable[[], float] = time.time):
        self.name = name
        self.config = config
        self.session = session
        self.clock = clock

    def __repr__(self) -> str:
        return f"WebhookNotifier(name={self.name!r})"

    def build_request(self, n: Notification,
                      now: float | None = None) -> tuple[str, dict[str, str], bytes]:
        """``(url, headers, body bytes)``; the signatures are over exactly these bytes."""
        body = serialise(n)
        timestamp = str(int(self.clock() if now is None else now))
        # Ours must not be overridable by a configured header, whatever its case.
        headers = {k: v for k, v in self.config.headers.items() if k.lower() not in OWN_HEADERS}
        headers[TIMESTAMP_HEADER] = timestamp
        secret = self.config.secret.get_secret_value() if self.config.secret else None
        if secret is not None and self.config.signing in ("hmac", "both"):
            headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
        if secret is not None and self.config.signing in ("standard-webhooks", "both"):
            msg_id = message_id(n)
            headers.update({WEBHOOK_ID: msg_id, WEBHOOK_TIMESTAMP: timestamp,
                            WEBHOOK_SIGNATURE: sign_standard(secret, msg_id, timestamp, body)})
        return self.config.url, headers, body

    async def send(self, n: Notification) -> Answer:
        url, headers, body = self.build_request(n)
        secret = self.config.secret.get_secret_value() if self.config.secret else ""
        return await post_json(self.session, url, None, headers=headers, data=body,
                               timeout=self.config.timeout, secrets=secret_forms(secret))


def serialise(n: Notification) -> bytes:
    """The body: the notification's JSON plus ``version``, ``type`` and ``timestamp``."""
    doc: dict[str, Any] = {"version": VERSION, "type": f"accmon.{n.kind}",
                           "timestamp": iso_ms(n.at), **n.to_json(), "action": n.action}
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


# ------------------------------------------------------------------ Standard Webhooks


def standard_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret; ValueError saying what is wrong."""
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a Standard Webhooks secret starts with whsec_ (then base64)")
    encoded = secret[len(SECRET_PREFIX):]
    try:
        # Unpadded base64 is common (the reference libraries add the padding themselves).
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the part after whsec_ is not base64") from None
    low, high = SECRET_BYTES
    if not low <= len(key) <= high:
        raise ValueError(f"the secret decodes to {len(key)} bytes; use {low} to {high} random "
                         "bytes (e.g. whsec_$(openssl rand -base64 32))")
    return key


def message_id(n: Notification) -> str:
    """``msg_<32 hex>``: the same for every delivery of this notification, different for
    any other (a reminder has its own time, a resolve its own action)."""
    identity = json.dumps([n.dedup_key, n.kind, n.action, n.at], default=str)
    return "msg_" + hashlib.sha256(identity.encode()).hexdigest()[:32]


def sign_standard(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">``."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(standard_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_standard(secret: str, headers: dict[str, str] | Any, body: bytes, now: float,
                    tolerance: float = TOLERANCE) -> bool:
    """True when one ``v1`` signature of ``webhook-signature`` signs the id, a fresh
    timestamp and ``body`` (for receivers without a Standard Webhooks library; the fakes)."""
    msg_id, timestamp = headers.get(WEBHOOK_ID), headers.get(WEBHOOK_TIMESTAMP)
    signatures = headers.get(WEBHOOK_SIGNATURE)
    if not msg_id or not timestamp or not signatures or not timestamp.isdigit():
        return False
    if abs(now - int(timestamp)) > tolerance:
        return False
    expected = sign_standard(secret, msg_id, timestamp, body).encode()
    return any(hmac.compare_digest(expected, given.encode()) for given in signatures.split())


def secret_forms(secret: str) -> tuple[str, ...]:
    """The secret as text and, for a ``whsec_`` one, its base64 part: both are blanked."""
    if secret.startswith(SECRET_PREFIX):
        return secret, secret[len(SECRET_PREFIX):]
    return (secret,)
