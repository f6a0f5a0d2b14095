"""Prometheus Alertmanager API v2: alerts posted to every replica of an HA cluster.

Alertmanager identifies an alert by its *label set*, so labels here are a property of the
alert, identical at trigger, every re-send and resolve: ``alertname`` from the kind's family
(``recovered`` resolves ``AccountVanished``), ``dedup_key``, ``platform``, ``account``,
``severity``, ``team`` and the account's labels. Things that change while an alert fires
(reason, summary, evidence) are annotations. Routing sends resolves with severity ``info``,
so the ``severity`` label is derived from the family and ``protected``, not from the
message; it still follows ``n.severity`` for kinds that are never resolved (renames).

A firing alert carries ``endsAt`` = now + ``ends_at_after``: if this monitor dies, its
alerts expire instead of paging forever, which is why the outbox worker re-posts firing
alerts every ``resend_interval`` (:meth:`AlertmanagerNotifier.firing_payload`). A resolve
posts ``endsAt`` = now, which resolves at once (clocks must agree: an ``endsAt`` still in
Alertmanager's future merges into the firing alert, which then lapses on its own).
Delivery succeeds when at least one replica accepted (they gossip the rest); it fails
retryably unless every replica refused the payload itself.

Alertmanager has no acknowledged state (a silence is how its users acknowledge), and posting
the alert again would only re-assert it, so an ``acknowledge`` sends nothing.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar, Literal

import aiohttp
from pydantic import Field

from monitor.config_types import Duration
from monitor.notify.base import (
    NO_HTTP,
    Answer,
    DeliveryError,
    Notification,
    NotifierSettings,
    detail_lines,
    post_json,
    type_field,
)
from monitor.timefmt import iso_ms

# The alert a notification is about: resolving and repeating kinds name their trigger's.
ALERTNAMES = {
    "vanished": "AccountVanished",
    "reminder": "AccountVanished",
    "recovered": "AccountVanished",
    "blind": "MonitoringBlind",
    "sighted": "MonitoringBlind",
    "platform_anomaly": "PlatformAnomaly",
    "renamed": "AccountRenamed",
    "moved": "AccountMoved",
    "test": "AccountMonitorTestPage",  # notify-test: trigger and resolve, both "page"
}
_LABEL_NAME = re.compile(r"[^a-zA-Z0-9_]")
RESERVED = frozenset({"alertname", "dedup_key", "platform", "account", "severity", "team"})


class AlertmanagerConfig(NotifierSettings):
    """Prometheus Alertmanager API v2: the recommended path for HA pairs of monitors (see
    Scale-out)."""

    type: Literal["alertmanager"] = type_field()
    urls: list[str] = Field(min_length=1, description=(
        "Every replica of the Alertmanager cluster; a delivery succeeds when one accepts."))
    resend_interval: Duration = Field(default=60.0,
                                      description="How often firing alerts are re-posted.")
    ends_at_after: Duration = Field(default=300.0, description=(
        "Firing alerts carry `endsAt` = now + this, so a dead monitor's alerts expire."))
    generator_url: str | None = Field(
        default=None, description="The `generatorURL` of every alert (a link back).")
    timeout: Duration = Field(default=10.0, description="Per-request timeout.")


class AlertmanagerNotifier:
    """Posts to ``{url}/api/v2/alerts`` on every configured replica."""

    config_model: ClassVar[type[AlertmanagerConfig]] = AlertmanagerConfig
    type: ClassVar[str] = "alertmanager"
    pages: ClassVar[bool] = True
    acknowledges: ClassVar[bool] = False

    def __init__(self, name: str, config: AlertmanagerConfig, session: aiohttp.ClientSession,
                 *, clock: Callable[[], float] = time.time):
        self.name = name
        self.config = config
        self.session = session
        self.clock = clock
        self.resend_interval = config.resend_interval  # read by the outbox worker
        self.endpoints = [f"{url.rstrip('/')}/api/v2/alerts" for url in config.urls]

    def build_request(self, n: Notification,
                      now: float | None = None) -> tuple[list[str], dict[str, str],
                                                         list[dict[str, Any]]]:
        """``(urls, headers, body)``: the same one-alert list goes to every replica."""
        now = self.clock() if now is None else now
        body = self.resolved_payload(n, now) if n.action == "resolve" \
            else self.firing_payload(n, now)
        return self.endpoints, {}, body

    def firing_payload(self, n: Notification, now: float) -> list[dict[str, Any]]:
        """The body that (re-)asserts ``n`` as firing until now + ``ends_at_after``."""
        return [self._alert(n, now + self.config.ends_at_after)]

    def resolved_payload(self, n: Notification, now: float) -> list[dict[str, Any]]:
        """The body that resolves ``n``'s alert at once (``endsAt`` = now)."""
        return [self._alert(n, now)]

    def _alert(self, n: Notification, ends_at: float) -> dict[str, Any]:
        starts_at = min(outage_start(n), ends_at)  # Alertmanager refuses endsAt < startsAt
        alert: dict[str, Any] = {
            "labels": alert_labels(n),
            "annotations": alert_annotations(n),
            "startsAt": iso_ms(starts_at),
            "endsAt": iso_ms(ends_at),
        }
        if self.config.generator_url:
            alert["generatorURL"] = self.config.generator_url
        return alert

    async def send(self, n: Notification) -> Answer:
        if n.action == "acknowledge":
            return Answer(NO_HTTP, "not sent: Alertmanager has no acknowledgements "
                                   "(silence the alert there instead)")
        urls, headers, body = self.build_request(n)
        results = await asyncio.gather(
            *(post_json(self.session, url, body, headers=headers, timeout=self.config.timeout)
              for url in urls),
            return_exceptions=True)
        errors: list[tuple[int, DeliveryError]] = []
        for i, result in enumerate(results):
            if not isinstance(result, BaseException):
                # One replica has it; gossip tells the others. By index, like errors.
                return Answer.of(result.status, f"alertmanager[{i}]: {result.body}")
            if not isinstance(result, DeliveryError):
                raise result
            errors.append((i, result))
        raise _all_failed(errors)


def _all_failed(errors: list[tuple[int, DeliveryError]]) -> DeliveryError:
    # Replicas by index, not URL: an Alertmanager URL may embed basic-auth credentials.
    detail = "; ".join(f"alertmanager[{i}]: {e}" for i, e in errors)
    waits = [e.retry_after for _, e in errors if e.retry_after is not None]
    return DeliveryError(f"every Alertmanager failed ({detail})",
                         permanent=all(e.permanent for _, e in errors),
                         retry_after=min(waits) if waits else None,
                         status=errors[0][1].status)


def alertname(kind: str) -> str:
    return ALERTNAMES.get(kind) or "Account" + "".join(p.capitalize() for p in kind.split("_"))


def label_severity(n: Notification) -> str:
    """``page``/``warning``/``info``: the same for an alert's trigger and its resolve.

    "page" wakes someone: a protected account gone, a platform-wide anomaly. Blindness is a
    monitoring problem, not an outage.
    """
    name = alertname(n.kind)
    if name == "AccountVanished":
        return "page" if n.protected else "warning"
    if name == "MonitoringBlind":
        return "warning"
    if name in ("PlatformAnomaly", "AccountMonitorTestPage"):
        return "page"
    return {"critical": "page", "info": "info"}.get(n.severity, "warning")


def alert_labels(n: Notification) -> dict[str, str]:
    """The alert's identity. Account labels are sanitised to Prometheus label names and
    never override ours."""
    labels = {label_name(k): str(v) for k, v in n.labels.items()}
    labels = {k: v for k, v in labels.items() if k not in RESERVED and v}
    labels.update(alertname=alertname(n.kind), dedup_key=n.dedup_key, platform=n.platform,
                  account=n.account, severity=label_severity(n))
    if n.team:
        labels["team"] = n.team
    return labels


def label_name(key: str) -> str:
    name = _LABEL_NAME.sub("_", key)
    return f"_{name}" if not name or name[0].isdigit() else name


def alert_annotations(n: Notification) -> dict[str, str]:
    """What may change while the alert fires (summary, description, reason, owner, links as
    ``*_url``): annotations, not labels, so they never split one alert into two."""
    out = {"summary": n.summary, "description": _description(n)}
    if n.reason:
        out["reason"] = n.reason
    if n.owner:
        out["owner"] = n.owner
    runbook = next((link["href"] for link in n.links
                    if link.get("href") and "runbook" in (link.get("text") or "").lower()), None)
    if runbook:
        out["runbook_url"] = runbook
    for link in n.links:
        if link.get("href") and link["href"] != runbook:
            out.setdefault(f"{label_name(link.get('text') or 'link')}_url", link["href"])
    return out


def _description(n: Notification) -> str:
    return "\n".join([n.summary, *detail_lines(n)])


def outage_start(n: Notification) -> float:
    """When the trouble began: the first absent sighting if known, else the event time."""
    for key in ("first_seen_absent_at", "first_absent_at"):
        value = n.details.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return n.at
