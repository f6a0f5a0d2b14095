"""When are pages held back, and what happens when a hold starts or ends? Pure.

Two holds exist, both so that one cause gives one page instead of N:

* a **platform anomaly** (a mass vanish, or a failing canary, see :mod:`monitor.anomaly`)
  holds the platform's vanish pages and reminders;
* the monitor's **own blindness** (most accounts blind at once, see
  :mod:`monitor.blindness`) holds every blind page.

Each hold pages once when it starts and resolves when it ends; the pages it held are then
released for accounts still gone (or blind) and dropped for the ones that came back. The
first pages of a mass event would go out before the pattern shows, so a page of a kind that
a hold could catch waits a grace period first (``hold_for``). This module is the one place
that says which kinds a hold covers, whether a page is held, and how long it waits.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from monitor import anomaly, blindness, routing
from monitor.config import AccountConfig, Config
from monitor.notify.base import Notification

ANOMALY_KINDS = ("vanished", "reminder", "recovered")
BLIND_KINDS = ("blind", "sighted")


@dataclass(frozen=True, slots=True)
class HoldState:
    """Which holds are on: platform -> since (anomalies), and since when we are blind."""

    anomalies: dict[str, float] = field(default_factory=dict)
    own_blind: float | None = None


# What the shell does when a hold starts or ends, in order.
@dataclass(frozen=True, slots=True)
class Hold:
    kinds: tuple[str, ...]
    platform: str | None  # None: every platform


@dataclass(frozen=True, slots=True)
class Release:
    kinds: tuple[str, ...]
    platform: str | None
    why: str
    # Released pages wait this long first: an account that answers within it (the hold
    # ended because accounts are answering again, and the rest follow a moment later)
    # drops its page instead of paging after the fact.
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class Page:
    notification: Notification
    owner: AccountConfig  # routed like a page of this (pseudo) account


Action = Hold | Release | Page


def held(state: HoldState, platform: str, kind: str) -> bool:
    """Whether a new page of ``kind`` for ``platform`` is written held."""
    if kind in ("vanished", "reminder"):
        return platform in state.anomalies
    if kind == "blind":
        return state.own_blind is not None
    return False


@dataclass(frozen=True, slots=True)
class Grace:
    """How long new pages wait before their first attempt, where a hold could still start."""

    vanished: float = 0.0
    blind: float = 0.0

    def of(self, kind: str) -> float:
        return self.vanished if kind == "vanished" else self.blind if kind == "blind" else 0.0


def grace(config: Config, platform: str, watched: int, has_canary: bool,
          total: int) -> Grace:
    """Grace for a platform with ``watched`` accounts (of ``total`` in all): none where no
    hold can trip (too few accounts, no canary)."""
    spec = config.platforms[platform].anomaly
    anomaly_can = spec.enabled and (watched >= spec.min_accounts or has_canary)
    blind = config.monitor.own_blindness
    return Grace(spec.hold_for if anomaly_can else 0.0,
                 blind.hold_for if blindness.could_trip(total, blind) else 0.0)


def anomaly_step(state: HoldState, platform: str, verdict: anomaly.Verdict,
                 onsets: list[float], now: float,
                 config: Config) -> tuple[HoldState, list[Action]]:
    """Start or end the platform's anomaly hold. ``onsets`` are the absent accounts' first
    absent sightings: the earliest is the anomaly's start, stable across restarts, so its
    page has one dedup key."""
    since = state.anomalies.get(platform)
    owner = routing.anomaly_owner(platform, config)
    if verdict.active and since is None:
        since = min(onsets, default=now)
        page = routing.anomaly_notification(platform, since, verdict.reason, True, now)
        return (replace(state, anomalies={**state.anomalies, platform: since}),
                [Hold(ANOMALY_KINDS, platform), Page(page, owner)])
    if not verdict.active and since is not None:
        page = routing.anomaly_notification(platform, since, "", False, now)
        rest = {p: t for p, t in state.anomalies.items() if p != platform}
        return (replace(state, anomalies=rest),
                [Page(page, owner), Release(ANOMALY_KINDS, platform, "platform anomaly cleared")])
    return state, []


def blindness_step(state: HoldState, verdict: blindness.Verdict, now: float,
                   config: Config) -> tuple[HoldState, list[Action]]:
    """Start or end the hold of our own blindness."""
    owner = routing.anomaly_owner("*", config)
    if verdict.active and state.own_blind is None:
        since = verdict.since if verdict.since is not None else now
        page = routing.monitor_blind_notification(
            since, verdict.summary, True, now,
            {"platforms": verdict.platforms, "errors": verdict.kinds,
             "blind": verdict.blind, "watched": verdict.total})
        return replace(state, own_blind=since), [Hold(BLIND_KINDS, None), Page(page, owner)]
    if not verdict.active and state.own_blind is not None:
        page = routing.monitor_blind_notification(state.own_blind, "", False, now, {})
        return (replace(state, own_blind=None),
                [Page(page, owner), Release(BLIND_KINDS, None, "monitor sees again",
                                            config.monitor.own_blindness.hold_for)])
    return state, []


def stale_releases(state: HoldState, platforms: list[str],
                   held_counts: dict[str | None, int]) -> list[Action]:
    """After a restart: release what a hold that ended while we were stopped still holds.
    ``held_counts`` maps a platform (None: the blind pages) to its held rows."""
    actions: list[Action] = [Release(ANOMALY_KINDS, p, "platform anomaly ended while stopped")
                             for p in platforms
                             if p not in state.anomalies and held_counts.get(p)]
    if state.own_blind is None and held_counts.get(None):
        actions.append(Release(BLIND_KINDS, None, "monitor blindness ended while stopped"))
    return actions
