"""The shell of silences and maintenance windows: the book of silences, the outbox's gate,
and the release of pages kept back once nothing covers them any more.

The pure rules are :mod:`monitor.silences`. Here the silences live in memory (the state file
holds them across restarts, each change written with its audit row), the outbox worker asks
:meth:`SilenceBook.gate` before each delivery, and :meth:`SilenceBook.release_due` (run on
every tick) sends, once, each kept-back page whose silence or window ended while its outage
is still open. An outage that ended meanwhile has already dropped its kept-back page (the
recovery finds it among the unsent triggers, :mod:`monitor.pages`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from monitor.maintenance import MaintenanceWindow
from monitor.matchers import subject_labels
from monitor.metrics import Metrics
from monitor.notify.base import Notification
from monitor.silences import Silence, Suppression, Verdict, suppression, verdict
from monitor.store import AuditEntry, Store

log = structlog.get_logger("monitor")


def labels_of(n: Notification) -> dict[str, str]:
    """The label set silences match for a notification (its account's labels)."""
    return subject_labels(n.platform, n.account, n.team, n.protected, n.labels)


class SilenceBook:
    """Every silence (active, pending and recently expired) and the config's windows."""

    def __init__(self, store: Callable[[], Store | None], metrics: Metrics,
                 clock: Callable[[], float] = time.time):
        self.store, self.metrics, self.clock = store, metrics, clock
        self.silences: dict[str, Silence] = {}
        self.windows: Sequence[MaintenanceWindow] = ()

    def load(self, store: Store, keep_expired: float) -> None:
        now = self.clock()
        self.silences = {s.id: s for s in store.load_silences(expired_after=now - keep_expired)}
        self.count()

    def configure(self, windows: Sequence[MaintenanceWindow]) -> None:
        gone = {w.name for w in self.windows} - {w.name for w in windows}
        for name in gone:  # a window removed from the config no longer has a series
            self.metrics.maintenance_active.remove(name)
        self.windows = tuple(windows)
        self.count()

    # ----------------------------------------------------------------- the API's side

    def all(self, now: float | None = None) -> list[Silence]:
        """Newest first, as ``amtool silence query`` lists them."""
        return sorted(self.silences.values(), key=lambda s: s.created_at, reverse=True)

    def get(self, silence_id: str) -> Silence | None:
        return self.silences.get(silence_id)

    def add(self, silence: Silence, actor: str, remote: str | None) -> Silence:
        """Store a new silence (written before it takes effect, with its audit row)."""
        self._store().save_silence(silence, AuditEntry(
            actor, "silence.create", silence.id,
            {"matchers": [str(m) for m in silence.matchers], "startsAt": silence.starts_at,
             "endsAt": silence.ends_at, "comment": silence.comment}, remote))
        self.silences[silence.id] = silence
        self.count()
        log.info("silence created", silence_id=silence.id, created_by=silence.created_by,
                 matchers=[str(m) for m in silence.matchers], ends_at=silence.ends_at)
        return silence

    def expire(self, silence_id: str, actor: str, remote: str | None) -> Silence | None:
        """End a silence now (kept, as Alertmanager keeps them); None when unknown. What it
        kept back goes out at the next tick if its outage is still open."""
        silence = self.silences.get(silence_id)
        if silence is None:
            return None
        now = self.clock()
        if silence.state(now) == "expired":
            return silence
        ended = silence.expired_at(now)
        self._store().save_silence(ended, AuditEntry(actor, "silence.expire", silence.id, {},
                                                     remote))
        self.silences[silence.id] = ended
        self.count()
        log.info("silence expired", silence_id=silence.id, actor=actor)
        return ended

    def _store(self) -> Store:
        store = self.store()
        if store is None:
            raise RuntimeError("the monitor is not running")
        return store

    # ----------------------------------------------------------------- the pages' side

    def covering(self, labels: dict[str, str], now: float | None = None) -> Suppression | None:
        return suppression(labels, self.silences.values(), self.windows,
                           self.clock() if now is None else now)

    def gate(self, n: Notification) -> tuple[Verdict, Suppression | None]:
        """What the outbox does with ``n`` now: send it, keep it back, or drop it."""
        covered = self.covering(labels_of(n))
        if covered is None:
            return "send", None
        what = verdict(n.kind, n.action)
        if what != "send":
            self.metrics.notifications_suppressed.labels(covered.reason, n.kind).inc()
        return what, covered

    def release_due(self, store: Store, now: float) -> int:
        """Send, once, the kept-back pages nothing covers any more; returns how many."""
        due = []
        for row in store.silenced_rows():
            n = Notification.from_json(row.payload)
            if self.covering(labels_of(n), now) is None:
                due.append(row.id)
        if due:
            released = store.release_silenced(due, now)
            log.warning("silence over: kept-back pages go out now", pages=released)
            return released
        return 0

    def count(self) -> None:
        now = self.clock()
        states = {"active": 0, "pending": 0, "expired": 0}
        for s in self.silences.values():
            states[s.state(now)] += 1
        for state, n in states.items():
            self.metrics.silences.labels(state).set(n)
        for window in self.windows:
            on = window.active_at(now) is not None
            self.metrics.maintenance_active.labels(window.name).set(1 if on else 0)

    def account(self, platform: str, handle: str, team: str | None, protected: bool,
                labels: dict[str, str]) -> Suppression | None:
        """What covers one watched account now (for the API's account views)."""
        return self.covering(subject_labels(platform, handle, team, protected, labels))
