"""The notifier protocol and the notification every provider renders.

A :class:`Notification` is built by :mod:`monitor.routing` from a state-machine event, stored
as JSON in the SQLite outbox in the same transaction as the decision, and handed to a
notifier by the outbox worker — possibly after a restart, so it carries everything a provider
needs (no lookups at delivery time). Providers return the receiver's :class:`Answer` (what
``notify-test`` prints; the outbox worker ignores it) or raise :class:`DeliveryError`; the
worker decides about retries.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import aiohttp
from pydantic import Field

from monitor.config_types import Strict

# trigger opens (or re-asserts) an incident, resolve closes it, acknowledge tells the pager a
# human is on it (only providers with ``acknowledges``), notify is FYI.
Action = Literal["trigger", "resolve", "notify", "acknowledge"]
Severity = Literal["critical", "error", "warning", "info"]


@dataclass(frozen=True, slots=True)
class Notification:
    """One thing to tell humans, provider-neutral and JSON-serialisable."""

    # vanished | recovered | renamed | moved | blind | sighted | reminder | platform_anomaly |
    # brief_outage | acknowledged | test ...
    kind: str
    action: Action
    dedup_key: str  # stable per incident, e.g. "accmon/x/realDonaldTrump/outage-17"
    platform: str
    account: str
    summary: str  # one line a human understands at 3 a.m.
    severity: Severity
    at: float  # when it happened (epoch seconds)
    protected: bool = False
    team: str | None = None
    owner: str | None = None
    reason: str | None = None  # suspended | deactivated | not_found | ...
    outage_id: int | None = None
    labels: dict[str, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # bounds, durations, evidence
    links: list[dict[str, str]] = field(default_factory=list)  # [{"href", "text"}]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notification:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


class DeliveryError(Exception):
    """A delivery failed. ``permanent`` failures (4xx other than 408/429) are never retried;
    ``retry_after`` (seconds) is the receiver's own wish, honoured by the worker."""

    def __init__(self, message: str, *, permanent: bool = False,
                 retry_after: float | None = None, status: int | None = None):
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after
        self.status = status


# An answer's body is for a human at a terminal (notify-test), not a log of the exchange.
ANSWER_MAX = 2048
NO_HTTP = 0  # Answer.status when nothing went over HTTP (the log; an ack a provider skips)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the receiver said to an accepted delivery: its HTTP status (``NO_HTTP``, 0, when
    nothing was sent over HTTP) and its body, at most :data:`ANSWER_MAX` characters with
    every secret of the notifier blanked (a receiver may echo the request)."""

    status: int
    body: str

    @classmethod
    def of(cls, status: int, body: str, secrets: Iterable[str] = ()) -> Answer:
        return cls(status, truncate(redact_text(body, secrets), ANSWER_MAX))

    def __str__(self) -> str:
        return f"HTTP {self.status}: {self.body}" if self.status else self.body


class Notifier(Protocol):
    """One configured destination. ``send`` returns the receiver's answer on success and
    raises DeliveryError otherwise."""

    type: ClassVar[str]
    acknowledges: ClassVar[bool]
    name: str

    async def send(self, notification: Notification) -> Answer: ...


@runtime_checkable
class Resending(Protocol):
    """A notifier whose receiver forgets a firing alert unless it is re-sent (Alertmanager
    expires alerts at ``endsAt``): the outbox re-sends delivered, unresolved triggers every
    ``resend_interval`` seconds."""

    resend_interval: float


def type_field() -> Any:
    """The ``type`` field of a provider's model: ``type: Literal["x"] = type_field()``."""
    return Field(description="Selects this notifier.")


class NotifierSettings(Strict):
    """Base of every notifier's config model. Each provider's model narrows ``type`` to its
    own ``Literal``, which is how the ``notifiers:`` union tells them apart."""

    type: str = type_field()


class NotifierClass(Protocol):
    """A registry entry: a notifier class that describes itself.

    ``type`` names it in the config; ``config_model`` is its entry in ``notifiers:``;
    ``pages`` says whether default routing sends it pages (True: it wakes someone up) or
    chat (False); ``acknowledges`` whether the receiver has an acknowledged state that an
    ``acknowledge`` notification sets (PagerDuty, Opsgenie). Calling it builds the notifier
    for one configured entry.
    """

    @property
    def config_model(self) -> type[NotifierSettings]: ...

    @property
    def type(self) -> str: ...

    @property
    def pages(self) -> bool: ...

    @property
    def acknowledges(self) -> bool: ...

    def __call__(self, name: str, config: Any, session: aiohttp.ClientSession) -> Notifier: ...


def classify_status(status: int, body: str, headers: Any) -> DeliveryError | None:
    """The shared HTTP reading: 2xx ok; 408/429/5xx retryable; other 4xx permanent.

    ``body`` is cut to 200 characters for the message; receivers must not echo secrets.
    """
    if 200 <= status < 300:
        return None
    retry_after = parse_retry_after(headers.get("Retry-After") if headers else None)
    message = f"HTTP {status}: {body[:200]}".strip()
    if status in (408, 429) or status >= 500:
        return DeliveryError(message, retry_after=retry_after, status=status)
    return DeliveryError(message, permanent=True, status=status)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (the delta form; HTTP dates are treated as unknown)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


async def post_json(session: aiohttp.ClientSession, url: str, payload: Any, *,
                    headers: dict[str, str] | None = None, timeout: float = 10.0,
                    data: bytes | None = None, secrets: Iterable[str] = ()) -> Answer:
    """POST JSON (or pre-serialised ``data``); the receiver's :class:`Answer` when 2xx, else
    raise :class:`DeliveryError`.

    Transport failures and timeouts are retryable. The URL is never put in the message:
    Slack's webhook URL is itself the secret. Every one of ``secrets`` is blanked from the
    error and from the answer (a receiver or proxy may echo the request back).
    """
    secrets = tuple(secrets)
    try:
        status, body = await _post(session, url, payload, headers=headers, timeout=timeout,
                                   data=data)
    except DeliveryError as exc:
        raise redact(exc, *secrets) from None
    return Answer.of(status, body, secrets)


async def _post(session: aiohttp.ClientSession, url: str, payload: Any, *,
                headers: dict[str, str] | None, timeout: float,
                data: bytes | None) -> tuple[int, str]:
    try:
        kwargs: dict[str, Any] = {"data": data} if data is not None else {"json": payload}
        if data is not None:
            headers = {"Content-Type": "application/json", **(headers or {})}
        async with session.post(url, headers=headers,
                                timeout=aiohttp.ClientTimeout(total=timeout), **kwargs) as resp:
            body = (await resp.content.read(64 * 1024)).decode("utf-8", errors="replace")
            error = classify_status(resp.status, body, resp.headers)
            if error is not None:
                raise error
            return resp.status, body
    except DeliveryError:
        raise
    except TimeoutError:
        raise DeliveryError(f"no answer within {timeout:g}s") from None
    except aiohttp.ClientError as exc:
        raise DeliveryError(f"connection failed: {type(exc).__name__}") from None


# ------------------------------------------------------------------ rendering helpers
# Shared by the providers: every pager caps field lengths and wants UTC ISO 8601 times.

ELLIPSIS = "…"

# What a human calls each kind of notification, for titles and headers.
TITLES = {
    "vanished": "Account vanished",
    "reminder": "Account still gone",
    "recovered": "Account recovered",
    "blind": "Monitoring blind",
    "sighted": "Monitoring restored",
    "renamed": "Account renamed",
    "moved": "Account moved",
    "platform_anomaly": "Platform anomaly",
    "brief_outage": "Brief outage",
    "acknowledged": "Acknowledged",
    "test": "Test page",
}


def headline(n: Notification) -> str:
    """``Account vanished: x/alice``: the kind in words, then the account."""
    return f"{TITLES.get(n.kind, n.kind.replace('_', ' ').capitalize())}: " \
           f"{n.platform}/{n.account}"


def acknowledged_by(n: Notification) -> str:
    """Who acknowledged (an ``acknowledge`` notification's ``details.acknowledged_by``)."""
    return str(n.details.get("acknowledged_by") or "someone")


def ack_comment(n: Notification) -> str:
    """The acknowledgement's comment, "" when none was given."""
    return str(n.details.get("comment") or "")


def detail_lines(n: Notification) -> list[str]:
    """One ``key: value`` line per detail (bounds, durations, evidence), in order."""
    return [f"{k}: {v}" for k, v in n.details.items()]


def truncate(text: str, limit: int) -> str:
    """At most ``limit`` characters, ending in an ellipsis when cut (pagers reject longer)."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def bounded_key(key: str, limit: int) -> str:
    """A dedup key of at most ``limit`` characters that stays unique when cut.

    Plain truncation could merge two long keys into one incident; a hash suffix cannot.
    The same input always gives the same output, so trigger and resolve still match.
    """
    if len(key) <= limit:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return f"{key[: limit - 17]}~{digest}"


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret blanked, a secret cut off at the very end included."""
    for secret in secrets:
        if not secret:
            continue
        text = text.replace(secret, "[redacted]")
        # An error message cuts the body at 200 characters, possibly in a secret's middle.
        for size in range(len(secret) - 1, 3, -1):
            if text.endswith(secret[:size]):
                text = text[:-size] + "[redacted]"
                break
    return text


def redact(error: DeliveryError, *secrets: str) -> DeliveryError:
    """The same error with every secret blanked: a receiver or proxy may echo the request."""
    message = redact_text(str(error), secrets)
    if message == str(error):
        return error
    return DeliveryError(message, permanent=error.permanent, retry_after=error.retry_after,
                         status=error.status)
