"""PagerDuty Events API v2: one incident per outage, keyed by the notification's dedup key.

``trigger`` opens (or, with the same key, re-asserts) an incident; ``resolve`` closes it;
``notify`` is sent as a trigger under its own, unique key (an FYI incident). PagerDuty
answers 202 when it accepted the event, 400 for an invalid event (permanent: retrying the
same body cannot help), 429 when throttled and 5xx when sick (both retried by the worker).
The routing key travels in the body, so it is blanked out of every error message.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import aiohttp
from pydantic import Field, SecretStr

from monitor.config_types import Duration
from monitor.notify.base import (
    Notification,
    NotifierSettings,
    bounded_key,
    post_json,
    truncate,
    type_field,
)
from monitor.timefmt import iso_ms

SUMMARY_MAX = 1024
DEDUP_KEY_MAX = 255
CLIENT = "account-monitor"


class PagerDutyConfig(NotifierSettings):
    """PagerDuty Events API v2; incidents are deduplicated by `dedup_key` (one per outage)."""

    type: Literal["pagerduty"] = type_field()
    routing_key: SecretStr = Field(
        description="The 32-character Events API v2 integration key.")
    url: str = Field(default="https://events.pagerduty.com/v2/enqueue",
                     description="The Events API endpoint (EU accounts, proxies, tests).")
    timeout: Duration = Field(default=10.0, description="Per-request timeout.")


class PagerDutyNotifier:
    """Sends Events API v2 events to one integration (one routing key)."""

    config_model: ClassVar[type[PagerDutyConfig]] = PagerDutyConfig
    type: ClassVar[str] = "pagerduty"
    pages: ClassVar[bool] = True

    def __init__(self, name: str, config: PagerDutyConfig, session: aiohttp.ClientSession):
        self.name = name
        self.config = config
        self.session = session

    def build_request(self, n: Notification) -> tuple[str, dict[str, str], dict[str, Any]]:
        """``(url, headers, body)`` for one notification; pure, so tests read it field by field."""
        return self.config.url, {}, event_body(n, self.config.routing_key.get_secret_value())

    async def send(self, n: Notification) -> None:
        url, headers, body = self.build_request(n)
        await post_json(self.session, url, body, headers=headers, timeout=self.config.timeout,
                        secrets=(self.config.routing_key.get_secret_value(),))


def event_body(n: Notification, routing_key: str) -> dict[str, Any]:
    """The Events API v2 body: a resolve carries only its key, a trigger the whole payload."""
    dedup_key = bounded_key(n.dedup_key, DEDUP_KEY_MAX)
    if n.action == "resolve":
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": dedup_key}
    body: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": "trigger",  # "notify" too: its dedup key is unique per event
        "dedup_key": dedup_key,
        "payload": {
            "summary": truncate(n.summary, SUMMARY_MAX),
            "source": f"account-monitor/{n.platform}",
            "severity": n.severity,
            "timestamp": iso_ms(n.at),
            "component": n.account,
            "group": n.platform,
            "class": n.kind,
            "custom_details": custom_details(n),
        },
        "client": CLIENT,
    }
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
