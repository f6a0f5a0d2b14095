"""The monitor's record of when it was watching at all: one ``runs`` row per process.

Availability needs to know the time nobody watched (between a stop and the next start, or
after a crash): an outage row cannot say what happened while the monitor was not running,
so :mod:`monitor.reports` counts those gaps as unknown (possibly down). A run is written
when watching starts, its ``alive_at`` is moved on every :data:`ALIVE_PERIOD`, and a clean
stop sets ``stopped_at``; a crash (SIGKILL, power loss) leaves ``stopped_at`` NULL and the
last ``alive_at``, at most a period old, bounds the run.

Writing the record must never stop the monitor: a write the file refuses (locked, full) is
logged and tried again at the next period; the start row, if it could not be written at
start, is written then with the real start time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from monitor.store import Store, retryable

log = structlog.get_logger("monitor")

ALIVE_PERIOD = 60.0  # seconds between alive_at writes; a crash loses at most this much


class RunRecord:
    """This process's run row: :meth:`start`, then :meth:`keep_alive` as a task, then
    :meth:`stop` before the store closes."""

    def __init__(self, period: float = ALIVE_PERIOD):
        self.period = period
        self.run_id: int | None = None
        self.started_at: float | None = None

    def start(self, store: Store, now: float) -> int | None:
        """Watching begins now: write the run's row (None when the file refused it; the
        next alive tick writes it with this start time)."""
        self.started_at = now
        return self._ensure_row(store, now)

    def alive(self, store: Store, now: float) -> None:
        """Still watching at ``now``."""
        if self._ensure_row(store, now) is None:
            return
        assert self.run_id is not None
        self._write("alive", lambda: store.run_alive(self.run_id or 0, now))

    def stop(self, store: Store | None, now: float) -> None:
        """A clean stop: the run watched until ``now``."""
        if store is None or self._ensure_row(store, now) is None:
            return
        self._write("stop", lambda: store.stop_run(self.run_id or 0, now))

    async def keep_alive(self, store_of: Callable[[], Store | None],
                         clock: Callable[[], float],
                         then: Callable[[float], None] | None = None) -> None:
        """Forever: every period, move ``alive_at`` on, then call ``then(now)`` (e.g. the
        availability gauges, which need refreshing about as often). ``then`` also runs
        once at once, so the gauges exist from the start. Nothing raised here ends it."""
        self._then(then, clock())
        while True:
            await asyncio.sleep(self.period)
            store, now = store_of(), clock()
            if store is not None:
                try:
                    self.alive(store, now)
                except Exception:  # a bug here must not end the record
                    log.exception("run record: alive failed")
            self._then(then, now)

    # ----------------------------------------------------------------- internals

    def _ensure_row(self, store: Store, now: float) -> int | None:
        if self.run_id is None:
            started = now if self.started_at is None else self.started_at
            self.started_at = started
            self._write("start", lambda: setattr(self, "run_id", store.start_run(started)))
        return self.run_id

    @staticmethod
    def _write(what: str, write: Callable[[], object]) -> None:
        try:
            write()
        except Exception as exc:
            if not retryable(exc):
                raise
            log.warning("run record not written; trying again in a minute", write=what,
                        error=str(exc))

    @staticmethod
    def _then(then: Callable[[float], None] | None, now: float) -> None:
        if then is None:
            return
        try:
            then(now)
        except Exception:
            log.exception("run record: periodic refresh failed")
