"""The outbox worker: delivers what the store committed, at least once, in order, durably.

Rows are written in the same transaction as the decision that causes them
(:meth:`monitor.store.Store.decide`), so a crash can neither lose nor invent a page. Here,
one task per notifier takes that notifier's *oldest* pending row and delivers it:

- retryable failures (timeouts, 408/429/5xx) are retried with exponential backoff and
  jitter (tenacity), honouring ``Retry-After``; every attempt is written back
  (``attempts``, ``next_attempt_at``), so a restart resumes the schedule instead of
  hammering a sick pager;
- permanent failures (other 4xx) are marked ``failed`` at once, logged and counted;
- a row older than ``routing.max_age`` is given up: marked ``failed``, logged, counted;
- ``accmon_outbox_pending`` / ``accmon_outbox_oldest_pending_seconds`` stay live meanwhile:
  refreshed on every commit (``wake()``), every retry and every second while rows wait.

Strict order per notifier means a resolve never overtakes its trigger. Redelivery after a
crash reuses the row's dedup key, which pagers collapse. A notifier that is
:class:`~monitor.notify.base.Resending` (Alertmanager) wants firing alerts re-sent;
:meth:`OutboxWorker._resend_firing` does that for delivered, unresolved triggers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    wait_exponential_jitter,
)

from monitor.metrics import Metrics
from monitor.notify.base import DeliveryError, Notification, Notifier, Resending
from monitor.store import OutboxRow, Store, retryable

if TYPE_CHECKING:
    from monitor.silences import Suppression

log = structlog.get_logger("outbox")

# Whether a notification may go out now: "send", "defer" (kept back) or "drop", and why.
Gate = Callable[[Notification], "tuple[str, Suppression | None]"]


STORE_RETRY_INITIAL = 0.1  # seconds: recording an outcome the state file refused
STORE_RETRY_MAX = 5.0
GAUGE_REFRESH = 1.0  # seconds between gauge refreshes while anything is pending
GAUGE_IDLE = 5.0  # ... and while nothing is (a row committed without wake() shows by then)


class OutboxWorker:
    """Delivers pending outbox rows to their notifiers until stopped."""

    def __init__(self, store: Callable[[], Store | None], notifiers: Mapping[str, Notifier],
                 metrics: Metrics, *, max_age: float, retry_initial: float, retry_max: float,
                 clock: Callable[[], float] = time.time, gate: Gate | None = None,
                 quorum: Callable[[Notification], bool] | None = None):
        self.store = store
        self.notifiers = dict(notifiers)
        self.metrics = metrics
        self.max_age = max_age
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.clock = clock
        self.gate, self.quorum = gate, quorum
        self._wake: dict[str, asyncio.Event] = {}
        self._gauges_due = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        for name, notifier in self.notifiers.items():
            self._wake[name] = asyncio.Event()
            self._tasks.append(asyncio.create_task(self._deliver_loop(name, notifier),
                                                   name=f"outbox-{name}"))
            if isinstance(notifier, Resending):
                self._tasks.append(asyncio.create_task(
                    self._resend_firing(name, notifier, notifier.resend_interval),
                    name=f"resend-{name}"))
        self.refresh_gauges()
        self._tasks.append(asyncio.create_task(self._gauge_loop(), name="outbox-gauges"))

    def wake(self) -> None:
        """Something was committed: look now rather than at the next poll, and count it."""
        for event in self._wake.values():
            event.set()
        self._gauges_due.set()

    async def stop(self) -> None:
        """Stop at once: an interrupted delivery stays pending and is redone after restart."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    # ----------------------------------------------------------------- delivery

    async def _deliver_loop(self, name: str, notifier: Notifier) -> None:
        """Deliver one notifier's rows in order, forever: nothing ends this loop (a store
        that cannot be read is waited out, a notifier bug fails that one row)."""
        wake = self._wake[name]
        while True:
            try:
                await self._deliver_next(name, notifier, wake)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox loop error; retrying", notifier=name)
                await asyncio.sleep(STORE_RETRY_MAX)

    async def _deliver_next(self, name: str, notifier: Notifier, wake: asyncio.Event) -> None:
        store = self.store()
        row = store.outbox_head(name) if store is not None else None
        if row is None:
            await _wait(wake, 5.0)
            return
        delay = row.next_attempt_at - self.clock()
        if delay > 0:  # a retry scheduled before a restart: keep to it
            await _wait(wake, delay)
            return
        if row.attempts == 0 and self._gated(store, row):
            return
        try:
            await self._deliver(name, notifier, row)
        except asyncio.CancelledError:
            raise
        except Exception:  # a notifier bug must not stop the pipeline
            log.exception("delivery crashed", notifier=name, outbox_id=row.id)
            await self._finish(row, "failed", row.attempts + 1, "internal error")
        self._gauges_due.set()

    def _gated(self, store: Store | None, row: OutboxRow) -> bool:
        """Whether the row is not to be sent now. A silence or maintenance window covering
        its account keeps a trigger back (sent once it ends, :mod:`monitor.silencing`) and
        drops a reminder or notice; then a vanish page without the other vantages' verdict
        waits for it (:mod:`monitor.peers`). (A row already tried was sent once, maybe
        received: it is finished as it began.)"""
        if store is None or (self.gate is None and self.quorum is None):
            return False
        n = Notification.from_json(row.payload)
        what, covered = self.gate(n) if self.gate is not None else ("send", None)
        if what != "send" and covered is not None:
            why = covered.describe()
            if what == "defer":
                store.silence_row(row.id, why, self.clock())
            else:
                store.drop_row(row.id, f"suppressed by {why}", self.clock())
            log.info("notification suppressed", notifier=row.notifier, outbox_id=row.id,
                     dedup_key=row.dedup_key, action=row.action, kept_back=what == "defer",
                     by=why)
        elif self.quorum is not None and not self.quorum(n):
            store.await_quorum(row.id, self.clock())
            log.info("vanish page waits for the other vantages", notifier=row.notifier,
                     outbox_id=row.id, dedup_key=row.dedup_key)
        else:
            return False
        self._gauges_due.set()
        return True

    async def _deliver(self, name: str, notifier: Notifier, row: OutboxRow) -> None:
        notification = Notification.from_json(row.payload)
        deadline = row.created_at + self.max_age
        attempts = row.attempts
        # initial, 2x, 4x ... capped at retry_max, plus up to one `initial` of jitter so a
        # fleet of monitors does not retry a recovering pager in lockstep.
        backoff = wait_exponential_jitter(multiplier=self.retry_initial, max=self.retry_max,
                                          jitter=self.retry_initial)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            pause = backoff(state)
            if isinstance(exc, DeliveryError) and exc.retry_after is not None:
                pause = max(pause, exc.retry_after)  # the receiver's own wish comes first
            return min(pause, max(0.0, deadline - self.clock()))

        def give_up(state: RetryCallState) -> bool:
            return self.clock() >= deadline

        def record(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            pause = state.next_action.sleep if state.next_action else 0.0
            self.metrics.notifications.labels(name, row.action, "retried").inc()
            log.warning("delivery failed, will retry", notifier=name, outbox_id=row.id,
                        dedup_key=row.dedup_key, attempt=attempts + state.attempt_number,
                        retry_in=round(pause, 3), error=str(exc))
            store = self.store()
            try:  # the schedule on disk only spares a restart retrying at once
                if store is not None:
                    store.outbox_retry(row.id, attempts + state.attempt_number,
                                       self.clock() + pause, str(exc))
            except Exception as write_error:
                if not retryable(write_error):
                    raise
                self.metrics.store_write_failures.inc()
            self._gauges_due.set()  # the gauge task counts it (an error there is not ours)

        tried = 0
        try:
            async for attempt in AsyncRetrying(
                    retry=retry_if_exception(
                        lambda e: isinstance(e, DeliveryError) and not e.permanent),
                    wait=wait, stop=give_up, before_sleep=record, reraise=True):
                with attempt:
                    tried = attempt.retry_state.attempt_number
                    if self.clock() >= deadline:
                        raise DeliveryError(f"older than max_age ({self.max_age:g}s)",
                                            permanent=True)
                    await notifier.send(notification)
        except DeliveryError as exc:
            error = str(exc) if exc.permanent else (
                f"gave up after max_age ({self.max_age:g}s); last error: {exc}")
            log.error("notification not delivered", notifier=name, outbox_id=row.id,
                      dedup_key=row.dedup_key, kind=notification.kind, error=error,
                      attempts=attempts + tried)
            self.metrics.notifications.labels(name, row.action, "failed").inc()
            await self._finish(row, "failed", attempts + tried, error)
            return
        self.metrics.notifications.labels(name, row.action, "sent").inc()
        log.info("notification delivered", notifier=name, outbox_id=row.id,
                 dedup_key=row.dedup_key, kind=notification.kind, action=row.action,
                 attempts=attempts + tried)
        await self._finish(row, "delivered", attempts + tried, None)

    async def _finish(self, row: OutboxRow, status: str, attempts: int,
                      error: str | None) -> None:
        """Record the outcome, waiting out a state file that refuses the write: a page sent
        but not recorded as sent would be sent again. (Stopped meanwhile, the row stays
        pending and is redelivered with its dedup key: at least once, never lost.)"""
        delay = STORE_RETRY_INITIAL
        while True:
            store = self.store()
            try:
                if store is not None:
                    store.outbox_finish(row.id, status, attempts, self.clock(), error)
                return
            except Exception as exc:
                if not retryable(exc):
                    raise
                self.metrics.store_write_failures.inc()
                if delay == STORE_RETRY_INITIAL:
                    log.warning("outcome of a delivery not recorded yet; retrying",
                                outbox_id=row.id, status=status, error=str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, STORE_RETRY_MAX)

    # ----------------------------------------------------------------- gauges, re-sends

    def refresh_gauges(self) -> bool:
        """Set ``accmon_outbox_pending`` and ``..._oldest_pending_seconds`` from the store.

        Two grouped queries over the partial index of pending rows, so it is cheap enough to
        run every :data:`GAUGE_REFRESH` while a page waits. Returns whether anything is
        pending.
        """
        store = self.store()
        if store is None:
            return False
        pending = store.outbox_pending()
        oldest = store.outbox_oldest_pending()
        now = self.clock()
        for name in self.notifiers:
            self.metrics.outbox_pending.labels(name).set(pending.get(name, 0))
            age = max(0.0, now - oldest[name]) if name in oldest else 0.0
            self.metrics.outbox_oldest_pending.labels(name).set(age)
        return any(pending.get(name) for name in self.notifiers)

    async def _gauge_loop(self) -> None:
        """Keep the gauges live while deliveries wait or retry.

        A delivery can sit in backoff (or behind a long ``Retry-After``) for minutes; the
        gauges must show the page waiting and its age growing all that time, or the
        ``OutboxStuck`` alert, which reads them, can never fire. ``wake()`` (a commit) asks
        for a refresh at once; bursts of commits fold into one refresh.
        """
        while True:
            try:
                busy = self.refresh_gauges()
            except Exception:  # a locked or closing store: try again next period
                log.exception("refreshing the outbox gauges failed")
                busy = True
            await _wait(self._gauges_due, GAUGE_REFRESH if busy else GAUGE_IDLE)

    async def _resend_firing(self, name: str, notifier: Notifier, interval: float) -> None:
        """Alertmanager expires alerts whose endsAt passes: re-assert firing ones."""
        while True:
            await asyncio.sleep(interval)
            store = self.store()
            if store is None:
                continue
            for row in store.outbox_firing(name):
                try:
                    await notifier.send(Notification.from_json(row.payload))
                    self.metrics.notifications.labels(name, "refresh", "sent").inc()
                except DeliveryError as exc:
                    self.metrics.notifications.labels(name, "refresh", "failed").inc()
                    log.warning("re-sending a firing alert failed", notifier=name,
                                dedup_key=row.dedup_key, error=str(exc))


async def _wait(event: asyncio.Event, timeout: float) -> None:
    # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancel that arrives as
    # the event is set, and then stop() waits for this task forever.
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await event.wait()
    event.clear()
