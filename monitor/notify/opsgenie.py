"""Opsgenie Alert API: create an alert per outage (alias = dedup key), acknowledge and close
it by alias (``POST /v2/alerts/{alias}/acknowledge|close?identifierType=alias`` with
``user``, ``source``, ``note``: opsgenie-oas, paths/alert.yaml, AlertActionPayload).

Opsgenie answers 202 and processes asynchronously, so a 202 means "queued", not "paged"
(an acknowledge of an alias with no open alert is accepted too, and fails later).
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
    Answer,
    Notification,
    NotifierSettings,
    ack_comment,
    acknowledged_by,
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
DETAILS_MAX = 8000  # "details ... 8 000 characters total" (Opsgenie's alert field limits)
USER_MAX = 100  # user and source of an alert action
DETAIL_FLOOR = 64  # a value shortened to fit is kept at least this long before keys go
SOURCE = "account-monitor"
# The details that say what the alert is about: never shortened or dropped to fit.
CORE_DETAILS = ("account", "platform", "kind", "protected", "reason", "outage_id")


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
    acknowledges: ClassVar[bool] = True

    def __init__(self, name: str, config: OpsgenieConfig, session: aiohttp.ClientSession):
        self.name = name
        self.config = config
        self.session = session
        self.base_url = (config.base_url or BASE_URLS[config.region]).rstrip("/")

    def build_request(self, n: Notification) -> tuple[str, dict[str, str], dict[str, Any]]:
        """``(url, headers, body)``: a create for trigger/notify, an acknowledge or close by
        alias for acknowledge/resolve."""
        headers = {"Authorization": f"GenieKey {self.config.api_key.get_secret_value()}"}
        alias = bounded_key(n.dedup_key, ALIAS_MAX)
        if n.action == "resolve":
            body = {"source": SOURCE, "user": SOURCE, "note": truncate(n.summary, NOTE_MAX)}
            return self.alert_action_url(alias, "close"), headers, body
        if n.action == "acknowledge":
            return self.alert_action_url(alias, "acknowledge"), headers, ack_body(n)
        return f"{self.base_url}/v2/alerts", headers, self.alert_body(n, alias)

    def alert_action_url(self, alias: str, action: str) -> str:
        # The alias is a path segment: dedup keys contain "/", so quote everything. Without
        # identifierType=alias Opsgenie reads the segment as an alert id.
        return f"{self.base_url}/v2/alerts/{quote(alias, safe='')}/{action}?identifierType=alias"

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

    async def send(self, n: Notification) -> Answer:
        url, headers, body = self.build_request(n)
        return await post_json(self.session, url, body, headers=headers,
                               timeout=self.config.timeout,
                               secrets=(self.config.api_key.get_secret_value(),))


def ack_body(n: Notification) -> dict[str, str]:
    """``user`` is who acknowledged (Opsgenie shows it in the alert's log), ``note`` the
    comment (or what acknowledged it, so the log line is never bare)."""
    note = ack_comment(n) or f"acknowledged through {SOURCE}"
    return {"user": truncate(acknowledged_by(n), USER_MAX), "source": SOURCE,
            "note": truncate(note, NOTE_MAX)}


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
    """Opsgenie's ``details``: a map of strings (nested values become JSON text) of at most
    :data:`DETAILS_MAX` characters in total, fitted by :func:`fit_details`."""
    merged: dict[str, Any] = {
        "account": n.account, "platform": n.platform, "kind": n.kind,
        "protected": n.protected, "reason": n.reason, "outage_id": n.outage_id,
        "team": n.team, "owner": n.owner,
        **n.details,
        **{f"label.{k}": v for k, v in n.labels.items()},
    }
    flat = {k: v if isinstance(v, str) else json.dumps(v, default=str, ensure_ascii=False)
            for k, v in merged.items() if v is not None}
    return fit_details(flat, DETAILS_MAX)


def details_size(details: dict[str, str]) -> int:
    """Characters of the map as JSON text: the strictest reading of "8 000 characters
    total" (keys, values, quotes and separators all count)."""
    return len(json.dumps(details, ensure_ascii=False, separators=(",", ":")))


def fit_details(details: dict[str, str], limit: int) -> dict[str, str]:
    """``details`` cut to ``limit`` characters in total, losing the least first.

    The :data:`CORE_DETAILS` (what the alert is about) are never touched. The others are
    capped at one common length, the longest that fits, so the longest values give way
    first and evenly (the evidence blob or a big nested detail, never a short field), down
    to :data:`DETAIL_FLOOR` characters at most; if that is not enough, whole keys are
    dropped from the end: labels first (they are tags too), then details, last first.
    Nothing is lost for good: the description repeats every detail within its own 15,000
    characters.
    """
    if details_size(details) <= limit:
        return dict(details)
    others = [k for k in details if k not in CORE_DETAILS]

    def capped(cap: int) -> dict[str, str]:
        return {k: v if k in CORE_DETAILS else truncate(v, cap) for k, v in details.items()}

    low, high = DETAIL_FLOOR, max((len(details[k]) for k in others), default=DETAIL_FLOOR)
    while low < high:  # the largest cap that fits (sizes grow with the cap)
        middle = (low + high + 1) // 2
        if details_size(capped(middle)) <= limit:
            low = middle
        else:
            high = middle - 1
    out = capped(low)
    for key in reversed(others):
        if details_size(out) <= limit:
            break
        del out[key]
    return out


def description(n: Notification) -> str:
    lines = [n.summary, ""]
    lines += detail_lines(n)
    lines += [f"{link.get('text') or 'link'}: {link['href']}" for link in n.links
              if link.get("href")]
    return "\n".join(lines).strip()
