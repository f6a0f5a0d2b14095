"""Which events go to which notifiers, and what they say. Pure: config + event -> outbox items.

Default (no ``routing.routes``): a *protected* account's vanish, reminder, recovery and
blindness page every paging notifier (one whose class says ``pages = True``); everything else
— unprotected accounts, renames, moves — goes to chat (every other notifier, the log at
least). Renames never page. Which provider pages is the provider's own statement, read from
the registry: routing names no provider type.

A resolving event follows the event it resolves: a route that takes ``vanished`` also takes
``recovered`` and ``reminder``, one that takes ``blind`` also takes ``sighted`` — so a page is
never opened by one route and left open because no route takes its resolution.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from monitor.config import AccountConfig, Config, Route, RouteMatch
from monitor.model import AccountKey, Event, EventKind, Outage
from monitor.notify import FALLBACK_NAME, pages
from monitor.notify.base import Action, Notification, Severity
from monitor.quorum import Verdict
from monitor.store import OutboxItem
from monitor.timefmt import iso, span

# Events that resolve or repeat another one route like it (see module docstring).
ROUTES_LIKE = {"recovered": "vanished", "reminder": "vanished", "acknowledged": "vanished",
               "sighted": "blind"}
PAGE_WORTHY = frozenset({"vanished", "recovered", "reminder", "acknowledged", "blind", "sighted",
                         "platform_anomaly", "monitor_blind"})
IMPLICIT_LOG = FALLBACK_NAME  # the notifier every monitor has (see monitor.notify)


def outage_key(key: AccountKey, outage_id: int | None) -> str:
    """The dedup key of one outage: stable across retries and restarts, unique per outage."""
    return f"accmon/{key.platform}/{key.handle}/outage-{outage_id}"


# ------------------------------------------------------------------ building notifications


def notification_for(event: Event, account: AccountConfig, config: Config,
                     outage_id: int | None) -> Notification | None:
    """The notification an event causes, or None (plain transitions notify nobody)."""
    key = event.key
    reason = event.reason.value if event.reason else None
    who = f"{'PROTECTED ' if account.protected else ''}{key.platform}/{key.handle}"
    details: dict[str, Any] = {}
    kind: str
    action: Action
    severity: Severity
    if event.kind is EventKind.VANISHED:
        kind, action = "vanished", "trigger"
        severity = "critical" if account.protected else "warning"
        dedup = outage_key(key, outage_id)
        v = event.vanished()
        summary = (f"{who} vanished ({reason or 'gone'}); confirmed after "
                   f"{v.get('absent_streak', '?')} absent checks")
        details = {"last_seen_present_at": iso(v.get("last_present_at")),
                   "first_seen_absent_at": iso(v.get("first_absent_at")),
                   "confirmed_at": iso(v.get("confirmed_at")), "evidence": v.get("evidence")}
    elif event.kind is EventKind.RECOVERED:
        kind, action, severity = "recovered", "resolve", "info"
        r = event.recovered()
        outage_id = r.get("outage_id", outage_id)
        dedup = outage_key(key, outage_id)
        summary = f"{who} is back after {span(r.get('duration'))} ({reason or 'gone'})"
        details = {"duration_seconds": r.get("duration"),
                   "last_seen_present_at": iso(r.get("last_present_at")),
                   "first_seen_absent_at": iso(r.get("first_absent_at")),
                   "last_seen_absent_at": iso(r.get("last_absent_at")),
                   "recovered_at": iso(r.get("recovered_at"))}
    elif event.kind is EventKind.BLIND:
        kind, action = "blind", "trigger"
        severity = "error" if account.protected else "warning"
        b = event.blind()
        dedup = blind_key(key, b.get("last_decisive_at"))
        error = b.get("error")
        why = (f"{error} for {span(b.get('stale_for'))}" if error and error.startswith(
            "not probed") else f"only errors ({error or 'no answers'}) for "
            f"{span(b.get('stale_for'))}")
        summary = f"monitoring blind for {who}: {why}; its state is unknown, not vanished"
        details = {"last_decisive_at": iso(b.get("last_decisive_at")), "error": error}
    elif event.kind is EventKind.SIGHTED:
        kind, action, severity = "sighted", "resolve", "info"
        g = event.sighted()
        dedup = blind_key(key, g.get("last_decisive_at"))
        summary = f"monitoring of {who} works again after {span(g.get('unseen_for'))} blind"
    elif event.kind in (EventKind.RENAMED, EventKind.MOVED):
        kind, action, severity = event.kind.value, "notify", "warning"
        dedup = f"accmon/{key.platform}/{key.handle}/{kind}-{int(event.at)}"
        told = event.renamed() if event.kind is EventKind.RENAMED else event.moved()
        summary = f"{key.platform}/{key.handle} {kind}: {told.get('summary', '')}".rstrip(": ")
        details = dict(told)
    else:
        return None
    return Notification(
        kind=kind, action=action, dedup_key=dedup, platform=key.platform, account=key.handle,
        summary=summary, severity=severity, at=event.at, protected=account.protected,
        team=account.team, owner=account.owner, reason=reason, outage_id=outage_id,
        labels=dict(account.labels), details={k: v for k, v in details.items() if v is not None},
        links=links_for(account, config),
    )


def reminder_for(key: AccountKey, account: AccountConfig, config: Config, outage_id: int,
                 first_absent_at: float | None, reason: str | None, now: float) -> Notification:
    down_for = None if first_absent_at is None else now - first_absent_at
    who = f"{'PROTECTED ' if account.protected else ''}{key.platform}/{key.handle}"
    return Notification(
        kind="reminder", action="trigger", dedup_key=outage_key(key, outage_id),
        platform=key.platform, account=key.handle,
        summary=f"{who} still gone after {span(down_for)} ({reason or 'gone'})",
        severity="critical" if account.protected else "warning", at=now,
        protected=account.protected, team=account.team, owner=account.owner, reason=reason,
        outage_id=outage_id, labels=dict(account.labels),
        details={"first_seen_absent_at": iso(first_absent_at), "down_for_seconds": down_for},
        links=links_for(account, config))


def acknowledgement_for(outage: Outage, account: AccountConfig, by: str,
                        comment: str | None, now: float) -> Notification:
    """Someone is on it: the providers that track acknowledgements (PagerDuty, Opsgenie)
    hear it with the outage's dedup key; the monitor stops reminding."""
    key = outage.key
    who = f"{'PROTECTED ' if account.protected else ''}{key.platform}/{key.handle}"
    return Notification(
        kind="acknowledged", action="acknowledge", dedup_key=outage_key(key, outage.id),
        platform=key.platform, account=key.handle,
        summary=f"{who} outage {outage.id} acknowledged by {by}", severity="info", at=now,
        protected=account.protected, team=account.team, owner=account.owner,
        reason=outage.reason, outage_id=outage.id, labels=dict(account.labels),
        details={k: v for k, v in {"acknowledged_by": by, "acknowledged_at": iso(now),
                                   "comment": comment}.items() if v})


def disagreement_for(vanished: Notification, verdict: Verdict, now: float) -> Notification:
    """Vantages disagree about a vanish (:mod:`monitor.quorum`): information for chat,
    with each vantage's evidence, not a page."""
    return replace(
        vanished, kind="vantage_disagreement", action="notify", severity="warning", at=now,
        dedup_key=f"{vanished.dedup_key}/disagreement",
        summary=(f"{vanished.platform}/{vanished.account}: vantages disagree, not paged: "
                 f"{verdict.summary()}"),
        details={"quorum": verdict.to_json(), "evidence": vanished.details.get("evidence")})


def anomaly_notification(platform: str, since: float, reason: str, active: bool,
                         now: float) -> Notification:
    """One page for a platform-wide anomaly (and its resolution), keyed by its start."""
    return Notification(
        kind="platform_anomaly", action="trigger" if active else "resolve",
        dedup_key=f"accmon/{platform}/anomaly-{int(since)}", platform=platform, account="*",
        summary=(f"platform anomaly on {platform}: {reason}; individual vanish pages are "
                 "held until it clears" if active else
                 f"platform anomaly on {platform} cleared; held pages re-evaluated"),
        severity="critical" if active else "info", at=now, protected=True,
        details={"reason": reason, "since": iso(since)})


def brief_outage_for(vanished: Notification, recovered: Notification) -> Notification:
    """An outage that ended before its page went out (still in its grace period): on-call
    is not woken for an account that is already back, but the outage is worth a line in
    chat. Routed like a rename: never to a paging notifier by default."""
    d = recovered.details
    return replace(
        recovered, kind="brief_outage", action="notify", severity="warning",
        dedup_key=f"{vanished.dedup_key}/brief",
        summary=(f"{recovered.platform}/{recovered.account} was gone for "
                 f"{span(d.get('duration_seconds'))} ({recovered.reason or 'gone'}) and came "
                 "back before its page went out; nobody was paged"),
        details={**vanished.details, **d})


def monitor_blind_notification(since: float, summary: str, active: bool, now: float,
                               details: dict[str, Any]) -> Notification:
    """One page for the monitor's own blindness (and its resolution), keyed by its start."""
    return Notification(
        kind="monitor_blind", action="trigger" if active else "resolve",
        dedup_key=f"accmon/monitor/blind-{int(since)}", platform="*", account="*",
        summary=(f"account-monitor is blind: {summary}; per-account blind pages are held "
                 "until it clears" if active else
                 "account-monitor sees again; held blind pages re-evaluated"),
        severity="critical" if active else "info", at=now, protected=True, details=details)


def anomaly_owner(platform: str, config: Config) -> AccountConfig:
    """Anomalies are routed like a page of the team that owns the monitor."""
    return AccountConfig(platform=platform, handle="*", protected=True,
                         team=config.routing.monitor_team)


def blind_key(key: AccountKey, last_decisive_at: float | None) -> str:
    """One blind period: keyed by the last decisive answer, the same at BLIND and SIGHTED."""
    since = "never" if last_decisive_at is None else str(int(last_decisive_at))
    return f"accmon/{key.platform}/{key.handle}/blind-{since}"


def links_for(account: AccountConfig, config: Config) -> list[dict[str, str]]:
    links = []
    platform = config.platforms.get(account.platform)
    if platform is not None and platform.profile_url:
        links.append({"href": platform.profile_url.format(handle=account.handle,
                                                           id=account.id or ""),
                      "text": "profile"})
    if config.routing.runbook_url:
        links.append({"href": config.routing.runbook_url, "text": "runbook"})
    return links


# ------------------------------------------------------------------ choosing notifiers


def notifiers_for(n: Notification, account: AccountConfig, config: Config) -> list[str]:
    """Names of the notifiers this notification goes to (never empty: the log at least)."""
    if config.routing.routes:
        chosen: list[str] = []
        for route in config.routing.routes:
            if _matches(route, n, account):
                chosen += [name for name in route.notifiers if name not in chosen]
                if not route.continue_:
                    break
        return chosen or [IMPLICIT_LOG]
    paging = [name for name, spec in config.notifiers.items() if pages(spec.type)]
    chat = [name for name, spec in config.notifiers.items() if not pages(spec.type)]
    if account.protected and n.kind in PAGE_WORTHY and paging:
        return paging
    return chat or [IMPLICIT_LOG]


def _matches(route: Route, n: Notification, account: AccountConfig) -> bool:
    m: RouteMatch = route.match
    if m.protected is not None and m.protected != account.protected:
        return False
    if m.platform is not None and account.platform not in m.platform:
        return False
    if m.team is not None and account.team not in m.team:
        return False
    if any(account.labels.get(k) != v for k, v in m.labels.items()):
        return False
    if m.events is not None:
        return n.kind in m.events or ROUTES_LIKE.get(n.kind) in m.events
    return True


def outbox_items(n: Notification, account: AccountConfig, config: Config) -> list[OutboxItem]:
    return [OutboxItem(name, n.action, n.dedup_key, n.to_json())
            for name in notifiers_for(n, account, config)]
