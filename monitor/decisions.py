"""The shell of a decision: runs the pure steps for one observation, writes the result once.

For one observation the pure steps are, in order: identity (:mod:`monitor.identity`), the
state step (:mod:`monitor.state`), the platform-anomaly and own-blindness verdicts
(:mod:`monitor.anomaly`, :mod:`monitor.blindness`, :mod:`monitor.holds`) and the pages to
write (:mod:`monitor.pages`). This module only gathers their inputs (the watchlist, one
outbox look-up) and hands the result to the writer as one :meth:`Store.decide` call, then
counts it, logs it and tells the event bus once it is committed. Time passing without
answers (staleness, reminders, holds that expire) is :meth:`Decisions.tick`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import Any

import structlog

from monitor import anomaly, blindness, holds, identity, logs, pages, routing
from monitor import state as machine
from monitor.config import Config
from monitor.events import EventBus
from monitor.health import ALL_ERRORS_FOR, PlatformHealth
from monitor.matchers import subject_labels
from monitor.metrics import Metrics
from monitor.model import (
    AccountKey,
    AccountState,
    ErrorKind,
    Event,
    EventKind,
    Observation,
    Result,
    State,
)
from monitor.scheduler import Deadlines
from monitor.silences import Suppression
from monitor.store import OutboxItem, Store
from monitor.watchlist import Watched, Watchlist
from monitor.writer import StoreWriter, Write

log = structlog.get_logger("monitor")

# First sightings (unknown -> a state) logged one by one per minute; the rest at debug,
# counted in one "first sightings" line a minute (a fresh big watchlist has one per account).
FIRST_SIGHTINGS_LOGGED = 50

NOT_PROBED_BEHIND = "not probed: scheduler behind"
NOT_PROBED = "not probed"


class Decisions:
    """Decides for the watchlist; every write goes through ``writer``, in order."""

    def __init__(self, config: Config, watchlist: Watchlist, store: Store,
                 writer: StoreWriter, metrics: Metrics, bus: EventBus,
                 wake_outbox: Callable[[], None]):
        self.config, self.watchlist, self.store, self.writer = config, watchlist, store, writer
        self.metrics, self.bus, self.wake_outbox = metrics, bus, wake_outbox
        self.holds = holds.HoldState()
        self.health: dict[str, PlatformHealth] = {}
        self.learned_did: Callable[[], None] = lambda: None  # a DID to follow on a stream
        # The silence or maintenance window covering an account's labels now, if any
        # (monitor.silencing): a covered account gets no reminders.
        self.covering: Callable[[dict[str, str]], Suppression | None] = lambda _: None
        self._reminded: dict[str, float] = {}  # outage dedup key -> last notified
        self._holds_checked = False
        self._period: float | None = None  # tick_period(), once per config
        # When each account could next go stale (state.stale_at), so a tick looks at those
        # whose moment came instead of every account; rebuilt after each configure().
        self._stale: Deadlines[Watched] | None = None
        self._blind: set[AccountKey] = set()  # blind accounts, kept by commit()
        self._first_sightings = logs.Sampled(FIRST_SIGHTINGS_LOGGED, 60.0, time.monotonic)

    def configure(self, config: Config) -> None:
        self.config, self._period, self._stale = config, None, None
        self.health = {name: self.health.get(name, PlatformHealth())
                       for name in config.platforms}

    # ----------------------------------------------------------------- one observation

    def observe(self, key: AccountKey, obs: Observation, *, probed: bool = True) -> list[Event]:
        """Feed one observation through the pure steps (``probed=False``: a pushed stream
        event, counted but not timed, since no request was made)."""
        watched = self.watchlist.accounts.get(key)
        if watched is None:
            return []
        self.metrics.observed(key.platform, obs, timed=probed)
        watched.last_probe_at = obs.at
        if obs.result is Result.ERROR:
            watched.last_error = obs
        health = self.health.get(key.platform)
        if health is not None and (health.errors_since is not None
                                   or obs.result is Result.ERROR):
            health.saw(obs)
        # Nearly every answer cannot change the identity: no Reconciled built for those (and
        # no call at all for an answer without an id, says_nothing_new's first test).
        seen = None if obs.account_id is None or identity.says_nothing_new(
            key, watched, obs) else identity.reconcile(key, watched.identity,
                                                       watched.working, obs)
        new, events = machine.step(key, watched.working,
                                   obs if seen is None else seen.observation, watched.policy)
        changed = seen is not None and seen.changed
        if not (events or changed):
            watched.stepped(new)  # the steady state: memory only, no disk, no events
            return events
        if seen is not None:
            watched.identity = seen.identity
            if seen.learned and (seen.identity.account_id or "").startswith("did:"):
                self.learned_did()  # a push stream can follow it now
            self.commit(watched, new, [*events, *seen.events], persist=changed)
        else:
            self.commit(watched, new, events)
        return events

    def commit(self, watched: Watched, new: AccountState, events: list[Event],
               *, persist: bool = False) -> None:
        """One decision: holds it starts first, then its state, outage and pages, as one
        write (queued behind earlier writes while the file refuses them). The state
        machine goes on from ``new`` at once; it is shown once committed."""
        key, now = watched.key, time.time()
        if new.state is not watched.working.state:
            self.watchlist.moved(watched, new)
            # Before the decision's own pages: if it makes the platform anomalous, its page
            # is written held.
            self.check_anomaly(key.platform, {key: new})
        if events:
            if new.outage_id is None and any(e.kind is EventKind.VANISHED for e in events):
                new = replace(new, outage_id=self.store.next_outage_id())
            written = self._pages(watched, new, events, now)
            watched.decided(new)
            self._write_decision(watched, new, events, written, now)
        elif persist:
            who = watched.identity
            watched.decided(new)
            self.writer.submit(Write(f"identity {key}", lambda store: store.save_account(
                key, new, who, now), lambda _: watched.committed(new)))
        else:
            watched.stepped(new)
        if new.blind:
            self._blind.add(key)
        else:
            self._blind.discard(key)
        if new.blind and not watched.blind_reason:
            blind = next((e for e in events if e.kind is EventKind.BLIND), None)
            why = blind.blind()["error"] if blind is not None else None
            watched.blind_reason = why or "no answers"
        elif not new.blind:
            watched.blind_reason = None

    def _pages(self, watched: Watched, new: AccountState, events: list[Event],
               now: float) -> pages.Pages:
        platform = watched.key.platform
        keys = pages.resolving_keys(events, watched.config, self.config, new.outage_id)
        unsent = {k: rows for k in keys if (rows := self.store.unsent_triggers(k, now))}
        grace = holds.grace(self.config, platform, self.watchlist.counts.get(platform, 0),
                            platform in self.watchlist.canaries, len(self.watchlist))
        planned = pages.plan(events, watched.config, self.config, new.outage_id, self.holds,
                             grace, unsent)
        for dedup_key in planned.dropped:
            log.info("page dropped: it ended before it went out", platform=platform,
                     account=watched.key.handle, dedup_key=dedup_key)
        return planned

    def _write_decision(self, watched: Watched, new: AccountState, events: list[Event],
                        planned: pages.Pages, now: float) -> None:
        key, who = watched.key, watched.identity

        def apply(store: Store) -> tuple[AccountState, list[int]]:
            return store.decide(key, new, events, who, now, planned.items, planned.drop)

        def done(result: tuple[AccountState, list[int]]) -> None:
            watched.committed(new)
            for event in events:
                self._account_for(watched, event, new)
            self.wake_outbox()
            for event, row_id in zip(events, result[1], strict=True):
                self.bus.publish(event, row_id, new)

        self.writer.submit(Write(f"decision {key}", apply, done,
                                 tuple(item for _, item in planned.items)))

    def enqueue(self, what: str, items: list[OutboxItem]) -> None:
        """Outbox rows no account decision causes (reminders, hold pages)."""
        now = time.time()
        self.writer.submit(Write(what, lambda store: store.enqueue(items, now),
                                 lambda _: self.wake_outbox(), tuple(items)))

    # ----------------------------------------------------------------- holds

    def check_anomaly(self, platform: str,
                      pending: dict[AccountKey, AccountState] | None = None) -> None:
        """Trip or clear the platform's anomaly (``pending``: states about to be written)."""
        spec = self.config.platforms.get(platform)
        if spec is None:
            return
        now, pending = time.time(), pending or {}
        accounts = self.watchlist.accounts
        members = [(pending.get(k, accounts[k].working), accounts[k].config.canary)
                   for k in self.watchlist.absent.get(platform, set()) | pending.keys()
                   if k in accounts]
        verdict = anomaly.evaluate(members, self.watchlist.counts.get(platform, 0), now,
                                   spec.anomaly)
        onsets = [st.first_absent_at for st, _ in members
                  if st.state in anomaly.ABSENT_STATES and st.first_absent_at is not None]
        self.holds, actions = holds.anomaly_step(self.holds, platform, verdict, onsets, now,
                                                 self.config)
        if actions and verdict.active:
            log.error("platform anomaly: holding vanish pages", platform=platform,
                      reason=verdict.reason, absent_recently=verdict.absent_recently,
                      threshold=verdict.threshold)
        self.execute(actions)
        self.metrics.platform_anomaly.labels(platform).set(1 if verdict.active else 0)

    def check_own_blindness(self) -> None:
        accounts = self.watchlist.accounts
        self._blind &= accounts.keys()  # removed by a reload meanwhile
        verdict = blindness.evaluate(
            (blindness.BlindAccount(w.key.platform, w.working, w.blind_reason)
             for w in map(accounts.__getitem__, self._blind)), len(self.watchlist),
            self.config.monitor.own_blindness)
        self.holds, actions = holds.blindness_step(self.holds, verdict, time.time(),
                                                   self.config)
        if actions and verdict.active:
            log.error("monitor blind: most accounts blind at once; holding their blind pages",
                      blind=verdict.blind, watched=verdict.total, platforms=verdict.platforms,
                      errors=verdict.kinds)
        self.execute(actions)
        self.metrics.monitor_blind.set(1 if self.holds.own_blind is not None else 0)

    def execute(self, actions: list[holds.Action]) -> None:
        """Carry out what a hold's start or end asks for, through the writer, in order."""
        for action in actions:
            if isinstance(action, holds.Hold):
                self.writer.submit(Write(f"hold {action.kinds}",
                                         partial(_hold, action.kinds, action.platform)))
            elif isinstance(action, holds.Release):
                self._release(action)
            else:
                self._hold_page(action)

    def _release(self, action: holds.Release) -> None:
        now = time.time()

        def done(counts: tuple[int, int]) -> None:
            log.warning(action.why + "; held pages re-evaluated", platform=action.platform,
                        released_pages=counts[0], dropped_pages=counts[1])
            self.wake_outbox()

        self.writer.submit(Write(f"release {action.kinds}", lambda store: store.release_held(
            action.kinds, now, action.platform, action.delay), done))

    def _hold_page(self, page: holds.Page) -> None:
        """A hold's own page, once: after a restart the same hold (same start, same dedup
        key) is not paged again when its trigger already went out."""
        n = page.notification
        if n.action == "trigger" and self.store.last_action(n.dedup_key) == "trigger":
            return
        self.enqueue(f"{n.kind} {n.action}", routing.outbox_items(n, page.owner, self.config))

    # ----------------------------------------------------------------- time passing

    def tick_period(self) -> float:
        """How often :meth:`tick` runs: a quarter of the shortest staleness (or reminder)
        bound, between 50 ms and 5 s. Worked out once per config, not per tick: it walks
        every account."""
        if self._period is None:
            shortest = min((w.policy.staleness for w in self.watchlist), default=20.0)
            shortest = min(shortest, self.config.routing.reminder_interval or shortest)
            self._period = max(0.05, min(5.0, shortest / 4))
        return self._period

    def tick(self, now: float, waiting: Callable[[], set[Any]]) -> None:
        """Staleness, reminders, holds and error-only platforms: what time alone decides.
        ``waiting()`` names the accounts our own backlog keeps from a probe."""
        for platform in self.config.platforms:
            self.check_anomaly(platform)  # windows expire, canaries come back
        withheld = self._first_sightings.withheld()
        if withheld:
            log.info("first sightings", more=withheld, logged="debug",
                     note=f"beyond {FIRST_SIGHTINGS_LOGGED} a minute, each transition line "
                          "from unknown goes to debug")
        starved: set[Any] | None = None
        stale = self._deadlines(now)
        accounts = self.watchlist.accounts
        for watched in stale.take(now):
            if accounts.get(watched.key) is not watched:
                continue  # removed (or replaced) by a reload since it was filed
            try:
                new, events = machine.tick(watched.key, watched.working, now,
                                           watched.policy)
                if events:
                    starved = waiting() if starved is None else starved
                    why = self._blind_why(watched, watched.key in starved)
                    new, events = machine.tick(watched.key, watched.working, now,
                                               watched.policy, why)
                if events or new is not watched.working:
                    self.commit(watched, new, events)
            except Exception as exc:  # one account's trouble must not stop the others'
                self.metrics.probe_counts.error(watched.key.platform, ErrorKind.INTERNAL)
                log.error("tick failed for one account", platform=watched.key.platform,
                          account=watched.key.handle, exc_info=exc)
            self._file(stale, watched, now)
        # Reminders: only a down account can need one, and every down account is in an
        # absent set (suspect or down).
        for key in [k for absent in self.watchlist.absent.values() for k in absent]:
            down = accounts.get(key)
            st = down.working if down is not None else None
            if down is not None and st is not None and st.state is State.DOWN \
                    and st.outage_id is not None:
                try:
                    self._remind(down, st, now)
                except Exception as exc:  # as above
                    self.metrics.probe_counts.error(key.platform, ErrorKind.INTERNAL)
                    log.error("tick failed for one account", platform=key.platform,
                              account=key.handle, exc_info=exc)
        self.check_own_blindness()
        if not self._holds_checked:
            self._holds_checked = True
            counts: dict[str | None, int] = {
                p: self.store.held_count(holds.ANOMALY_KINDS, p) for p in self.config.platforms}
            counts[None] = self.store.held_count(holds.BLIND_KINDS)
            self.execute(holds.stale_releases(self.holds, list(self.config.platforms), counts))
        for platform, health in self.health.items():
            warning = health.due_warning(now)
            if warning is not None:
                kind, count, hint = warning
                log.warning("every answer from this platform is an error", platform=platform,
                            error=kind, errors=count, seconds=ALL_ERRORS_FOR, hint=hint)

    @staticmethod
    def _blind_why(watched: Watched, starved: bool) -> str:
        """Why the tick finds ``watched`` stale: our own backlog; else the kind of the
        errors it answered with since its last decisive answer (the tick came a moment
        before the next error would have said the same: at a fresh start both fall due
        together); else not probed at all."""
        if starved:
            return NOT_PROBED_BEHIND
        st, error = watched.working, watched.last_error
        since = machine.blind_reference(st)
        if error is not None and error.error is not None and since is not None \
                and error.at >= since:
            return error.error.value
        return NOT_PROBED

    def _deadlines(self, now: float) -> Deadlines[Watched]:
        """The staleness index, built (O(accounts)) after each configure()."""
        if self._stale is None:
            self._stale = Deadlines(self.tick_period())
            for watched in self.watchlist:
                self._file(self._stale, watched, now)
            self._blind = {w.key for w in self.watchlist if w.working.blind}
        return self._stale

    @staticmethod
    def _file(stale: Deadlines[Watched], watched: Watched, now: float) -> None:
        """Next look at ``watched``: when it could go stale, or (blind now) a staleness
        bound from now; answers in between only move the moment later."""
        at = machine.stale_at(watched.working, watched.policy)
        stale.file(watched, now + watched.policy.staleness if at is None else at)

    def _remind(self, watched: Watched, st: AccountState, now: float) -> None:
        """While an outage stays open, notify again every ``routing.reminder_interval``."""
        every = self.config.routing.reminder_interval
        if not every or st.outage_id is None:
            return
        key = routing.outage_key(watched.key, st.outage_id)
        if holds.held(self.holds, watched.key.platform, "reminder") or \
                self.store.has_held(key) or self.writer.holds(key):
            return  # its page is held: no reminders for a page nobody got
        last = self._reminded.get(key)
        if last is None:  # first look since start: ask the outbox, it survives restarts
            last = self.store.last_notified(key) or st.since or now
            self._reminded[key] = last
        if now - last < every:
            return
        if self._quiet(watched, st, now):
            return
        n = routing.reminder_for(watched.key, watched.config, self.config, st.outage_id,
                                 st.first_absent_at, st.reason.value if st.reason else None, now)
        self.enqueue(f"reminder {watched.key}",
                     routing.outbox_items(n, watched.config, self.config))
        self._reminded[key] = now
        log.info("reminder queued", platform=watched.key.platform, account=watched.key.handle,
                 outage_id=st.outage_id)

    def _quiet(self, watched: Watched, st: AccountState, now: float) -> bool:
        """No reminder for an outage someone acknowledged, or while a silence or maintenance
        window covers the account (counted as suppressed; the clock restarts)."""
        a = watched.config
        covered = self.covering(subject_labels(a.platform, a.handle, a.team, a.protected,
                                               a.labels))
        if covered is not None:
            self.metrics.notifications_suppressed.labels(covered.reason, "reminder").inc()
        else:
            outage = self.store.outage(st.outage_id) if st.outage_id is not None else None
            if outage is None or outage.acked_at is None:
                return False
        self._reminded[routing.outage_key(watched.key, st.outage_id)] = now
        return True

    # ----------------------------------------------------------------- accounting

    def _account_for(self, watched: Watched, event: Event, new: AccountState) -> None:
        """Metrics and one log line per decision, once committed."""
        key = watched.key
        fields: dict[str, Any] = {"platform": key.platform, "account": key.handle,
                                  "protected": watched.config.protected,
                                  "from_state": event.old_state.value,
                                  "to_state": event.new_state.value}
        if event.reason is not None:
            fields["reason"] = event.reason.value
        if event.kind is EventKind.TRANSITION:
            self.metrics.transition(key.platform, event.old_state, event.new_state)
            if event.old_state is not State.UNKNOWN or self._first_sightings.take():
                log.info("transition", outage_id=new.outage_id or event.outage_id, **fields)
            elif logs.enabled(logging.DEBUG):
                log.debug("transition", outage_id=new.outage_id or event.outage_id, **fields)
        elif event.kind is EventKind.VANISHED:
            self.metrics.outages.labels(key.platform, str(event.reason)).inc()
            log.warning("account vanished", outage_id=new.outage_id, **fields)
        elif event.kind is EventKind.RECOVERED:
            duration = event.recovered()["duration"]
            if duration is not None:
                self.metrics.outage_duration.labels(
                    key.platform, "true" if watched.config.protected else "false"
                ).observe(duration)
            log.info("account recovered", outage_id=event.outage_id,
                     duration_seconds=duration, **fields)
        elif event.kind is EventKind.BLIND:
            log.warning("monitoring blind", **fields, details=event.details)
        else:
            log.info(event.kind.value, **fields, details=event.details)


def _hold(kinds: tuple[str, ...], platform: str | None, store: Store) -> int:
    return store.hold_pending(kinds, platform)
