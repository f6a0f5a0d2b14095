"""PagerDuty Events API v2: one incident per outage, keyed by the notification's dedup key.

``trigger`` opens (or, with the same key, re-asserts) an incident; ``acknowledge`` and
``resolve`` carry only the routing and dedup keys. PagerDuty accepts both with 202 whether
or not an alert is open under the key, and drops them when none is (developer-docs,
events-API-v2/02-Trigger-Events.md, "Alert De-duplication"). ``notify`` (renamed, moved,
brief_outage) is a Change Event (``POST /v2/change/enqueue``, 03-Change-Events.md): it is
shown beside the service's incidents and never notifies anyone, which is what an FYI is.
Change Events have no dedup key, so a redelivery after a crash shows the change twice.

PagerDuty answers 202 when it accepted the event, 400 for an invalid event (permanent:
retrying the same body cannot help), 429 when throttled and 5xx when sick (both retried by
the worker); 01-Overview.md, "Response Codes & Retry Logic". The routing key travels in
the body, so it is blanked out of every error message and answer.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from pydantic import Field, SecretStr

from monitor.config_types import Duration
from monitor.notify.base import (
    Answer,
    Notification,
    NotifierSettings,
    bounded_key,
    post_json,
    truncate,
    type_field,
)
from monitor.timefmt import iso_ms

SUMMARY_MAX = 1024  # both endpoints: "The maximum permitted length of this property"
DEDUP_KEY_MAX = 255
CLIENT = "account-monitor"
EVENTS_PATH = "/v2/enqueue"
CHANGE_PATH = "/v2/change/enqueue"


class PagerDutyConfig(NotifierSettings):
    """PagerDuty Events API v2; incidents are deduplicated by `dedup_key` (one per outage).
    FYI notifications (renames, moves, brief outages) are sent as Change Events."""

    type: Literal["pagerduty"] = type_field()
    routing_key: SecretStr = Field(
        description="The 32-character Events API v2 integration key.")
    url: str = Field(default="https://events.pagerduty.com/v2/enqueue",
                     description="The Events API endpoint (EU accounts, proxies, tests).")
    change_url: str | None = Field(default=None, description=(
        "The Change Events endpoint; unset: `url` with `/v2/enqueue` replaced by "
        "`/v2/change/enqueue` (or that path on `url`'s origin)."))
    timeout: Duration = Field(default=10.0, description="Per-request timeout.")


class PagerDutyNotifier:
    """Sends Events API v2 events (and Change Events) to one integration (one routing key)."""

    config_model: ClassVar[type[PagerDutyConfig]] = PagerDutyConfig
    type: ClassVar[str] = "pagerduty"
    pages: ClassVar[bool] = True
    acknowledges: ClassVar[bool] = True

    def __init__(self, name: str, config: PagerDutyConfig, session: aiohttp.ClientSession):
        self.name = name
        self.config = config
        self.session = session
        self.change_url = config.change_url or change_events_url(config.url)

    def build_request(self, n: Notification) -> tuple[str, dict[str, str], dict[str, Any]]:
        """``(url, headers, body)`` for one notification; pure, so tests read it field by field."""
        routing_key = self.config.routing_key.get_secret_value()
        if n.action == "notify":
            return self.change_url, {}, change_body(n, routing_key)
        return self.config.url, {}, event_body(n, routing_key)

    async def send(self, n: Notification) -> Answer:
        url, headers, body = self.build_request(n)
        return await post_json(self.session, url, body, headers=headers,
                               timeout=self.config.timeout,
                               secrets=(self.config.routing_key.get_secret_value(),))


def change_events_url(events_url: str) -> str:
    """The Change Events endpoint next to ``events_url``: same origin, and the same path
    prefix when the URL ends in ``/v2/enqueue`` (a proxy mounted under a path keeps it)."""
    parts = urlsplit(events_url)
    path = parts.path.rstrip("/")
    prefix = path[: -len(EVENTS_PATH)] if path.endswith(EVENTS_PATH) else ""
    return urlunsplit((parts.scheme, parts.netloc, prefix + CHANGE_PATH, "", ""))


def event_body(n: Notification, routing_key: str) -> dict[str, Any]:
    """The Events API v2 body: acknowledge and resolve carry only their key, a trigger the
    whole payload."""
    dedup_key = bounded_key(n.dedup_key, DEDUP_KEY_MAX)
    if n.action in ("resolve", "acknowledge"):
        return {"routing_key": routing_key, "event_action": n.action, "dedup_key": dedup_key}
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": dedup_key,
        "payload": {
            "summary": truncate(n.summary, SUMMARY_MAX),
            "source": source(n),
            "severity": n.severity,
            "timestamp": iso_ms(n.at),
            "component": n.account,
            "group": n.platform,
            "class": n.kind,
            "custom_details": custom_details(n),
        },
        "client": CLIENT,
    }
    return with_links(body, n)


def change_body(n: Notification, routing_key: str) -> dict[str, Any]:
    """A Change Event: ``routing_key`` and ``payload`` (``summary`` required, at most 1,024
    characters; ``source``, ``timestamp``, ``custom_details``), plus ``links``."""
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "payload": {
            "summary": truncate(n.summary, SUMMARY_MAX),
            "source": source(n),
            "timestamp": iso_ms(n.at),
            "custom_details": {"kind": n.kind, **custom_details(n)},
        },
    }
    return with_links(body, n)


def source(n: Notification) -> str:
    return f"account-monitor/{n.platform}"


def with_links(body: dict[str, Any], n: Notification) -> dict[str, Any]:
    links = [{"href": link["href"], "text": link.get("text") or link["href"]}
             for link in n.links if link.get("href")]
    if links:
        body["links"] = links
    return body


def custom_details(n: Notification) -> dict[str, Any]:
    """What a responder needs beyond the summary, without the nulls."""
    extra: dict[str, Any] = {
        "account": n.account,
        "platform": n.platform,
        "protected": n.protected,
        "reason": n.reason,
        "outage_id": n.outage_id,
        "team": n.team,
        "owner": n.owner,
        "labels": n.labels or None,
    }
    return {**n.details, **{k: v for k, v in extra.items() if v is not None}}
