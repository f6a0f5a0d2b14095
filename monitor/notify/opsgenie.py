"""Opsgenie Alert API: create an alert per outage (alias = dedup key), close it by alias.

Opsgenie answers 202 and processes asynchronously, so a 202 means "queued", not "paged".
Severity to priority: ``critical``/``error`` use the configured priority; ``warning`` is at
most P3 and ``info`` is P5, so an FYI never outranks a page. Atlassian has announced
Opsgenie's end of sale and support (in favour of Jira Service Management), so this module
stays small. The API key is blanked out of every error message.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, Literal
from urllib.parse import quote

import aiohttp
from pydantic import Field, SecretStr

from monitor.config_types import Duration
from monitor.notify.base import (
    Notification,
    NotifierSettings,
    bounded_key,
    detail_lines,
    post_json,
    truncate,
    type_field,
)

BASE_URLS = {"us": "https://api.opsgenie.com", "eu": "https://api.eu.opsgenie.com"}
MESSAGE_MAX = 130
ALIAS_MAX = 512
DESCRIPTION_MAX = 15000
NOTE_MAX = 25000
ENTITY_MAX = 512
TAGS_MAX = 20  # Opsgenie keeps at most 20 tags of at most 50 characters each
TAG_MAX = 50
DETAIL_VALUE_MAX = 8000
SOURCE = "account-monitor"


class OpsgenieConfig(NotifierSettings):
    """Opsgenie Alert API; alerts are deduplicated by `alias` (one per outage)."""

    type: Literal["opsgenie"] = type_field()
    api_key: SecretStr = Field(description="An Opsgenie API integration key.")
    region: Literal["us", "eu"] = Field(default="us", description="The API region: `us` or `eu`.")
    base_url: str | None = Field(default=None, description="The API root, overriding `region` "
                                                           "(proxies, tests).")
    priority: Literal["P1", "P2", "P3", "P4", "P5"] = Field(
        default="P1", description="The priority of created alerts.")
    responders: list[dict[str, str]] = Field(
        default_factory=list, description="Responders as Opsgenie takes them: each with `type` "
                                          "and `id`, `name` or `username`.")
    timeout: Duration = Field(default=10.0, description="Per-request timeout.")


class OpsgenieNotifier:
    """Creates and closes alerts through one API integration."""

    config_model: ClassVar[type[OpsgenieConfig]] = OpsgenieConfig
    type: ClassVar[str] = "opsgenie"
    pages: ClassVar[bool] = True

    def __init__(self, name: str, config: OpsgenieConfig, session: aiohttp.ClientSession):
        self.name = name
        self.config = config
        self.session = session
        self.base_url = (config.base_url or BASE_URLS[config.region]).rstrip("/")

    def build_request(self, n: Notification) -> tuple[str, dict[str, str], dict[str, Any]]:
        """``(url, headers, body)``: a create for trigger/notify, a close-by-alias for resolve."""
        headers = {"Authorization": f"GenieKey {self.config.api_key.get_secret_value()}"}
        alias = bounded_key(n.dedup_key, ALIAS_MAX)
        if n.action == "resolve":
            # The alias is a path segment: dedup keys contain "/", so quote everything.
            url = f"{self.base_url}/v2/alerts/{quote(alias, safe='')}/close?identifierType=alias"
            body = {"source": SOURCE, "user": SOURCE, "note": truncate(n.summary, NOTE_MAX)}
            return url, headers, body
        return f"{self.base_url}/v2/alerts", headers, self.alert_body(n, alias)

    def alert_body(self, n: Notification, alias: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "message": truncate(n.summary, MESSAGE_MAX),
            "alias": alias,
            "description": truncate(description(n), DESCRIPTION_MAX),
            "tags": tags(n),
            "details": flat_details(n),
            "entity": truncate(f"{n.platform}/{n.account}", ENTITY_MAX),
            "source": SOURCE,
            "priority": priority(n.severity, self.config.priority),
        }
        if self.config.responders:
            body["responders"] = [dict(r) for r in self.config.responders]
        return body

    async def send(self, n: Notification) -> None:
        url, headers, body = self.build_request(n)
        await post_json(self.session, url, body, headers=headers, timeout=self.config.timeout,
                        secrets=(self.config.api_key.get_secret_value(),))


def priority(severity: str, configured: str) -> str:
    """critical/error -> configured; warning -> configured but at most P3; info -> P5."""
    level = int(configured[1])
    if severity == "warning":
        level = max(level, 3)
    elif severity == "info":
        level = 5
    return f"P{level}"


def tags(n: Notification) -> list[str]:
    """Platform, kind, reason, team, then ``key:value`` labels; de-duplicated and capped."""
    wanted = [n.platform, n.kind, n.reason, n.team, "protected" if n.protected else None,
              *(f"{k}:{v}" for k, v in sorted(n.labels.items()))]
    out: list[str] = []
    for tag in wanted:
        if tag and (cut := truncate(tag, TAG_MAX)) not in out:
            out.append(cut)
    return out[:TAGS_MAX]


def flat_details(n: Notification) -> dict[str, str]:
    """Opsgenie's ``details`` is a map of strings: nested values become JSON text."""
    merged: dict[str, Any] = {
        "account": n.account, "platform": n.platform, "kind": n.kind,
        "protected": n.protected, "reason": n.reason, "outage_id": n.outage_id,
        "team": n.team, "owner": n.owner,
        **{f"label.{k}": v for k, v in n.labels.items()},
        **n.details,
    }
    return {k: truncate(v if isinstance(v, str) else json.dumps(v, default=str),
                        DETAIL_VALUE_MAX)
            for k, v in merged.items() if v is not None}


def description(n: Notification) -> str:
    lines = [n.summary, ""]
    lines += detail_lines(n)
    lines += [f"{link.get('text') or 'link'}: {link['href']}" for link in n.links
              if link.get("href")]
    return "\n".join(lines).strip()
