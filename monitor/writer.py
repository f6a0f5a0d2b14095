"""Writes to the state file in order, many per commit, and keeps every write the disk refuses.

A decision (a transition, its outage row and its pages) must never be lost because the
state file is locked by another process, the disk is full or an I/O error happened: it is
kept in memory, in order, and retried with backoff until the file takes it. Everything
written after a refused write waits behind it, so the file never sees writes out of order
(a resolve before its trigger, say). Meanwhile :attr:`StoreWriter.failing` says why, which
``/readyz`` reports, and ``accmon_store_write_failures_total`` counts each refused attempt.

Group commit: one durable commit (an fsync, ``synchronous=FULL``) costs far more than the
rows of one decision, so writes that queue up are committed together, in order, in one
``BEGIN IMMEDIATE`` … ``COMMIT`` (each store method's own transaction joins it:
:class:`monitor.store._Transaction`). It never waits to fill a batch: a write submitted
while the writer is idle is committed at once, before :meth:`StoreWriter.submit` returns;
the writes submitted after that in the same turn of the event loop (a mass vanish decides
many accounts in one turn) are committed together as soon as that turn ends, and so on
while they keep coming. A batch is bounded (:data:`MAX_BATCH` writes, or
:data:`MAX_BATCH_SECONDS` of work) so the loop is never held for long. A write's ``done``
(wake the outbox, tell the event bus) runs only after the COMMIT that holds it, in the
order the writes were submitted. The batch is applied and committed without an ``await``,
so nothing else on the loop can see its rows before they are committed: the outbox reads
the store, and sends only committed rows.

Only errors of the file are retried (the whole batch stays queued, in order). A write that
fails for any other reason (a bug: a constraint violated, a value that does not serialise)
would fail forever and block every write behind it, so it is logged with its traceback and
skipped: the batch is rolled back and the writes before it committed again without it (the
writes after it follow at the next turn). Bugs are rare; a savepoint per write would cost
every decision a third of its time instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from monitor.store import OutboxItem, OutboxStatus, Store, retryable

log = structlog.get_logger("monitor.writer")

MAX_BATCH = 1000  # writes in one commit at most
MAX_BATCH_SECONDS = 0.05  # of applying writes in one commit, at most (then commit, yield)
# Writes queued before whoever makes decisions waits for the disk (:meth:`room`): probes
# then wait in their platforms' queues (the scheduler's lag shows it) instead of their
# decisions piling up in memory: a fresh watchlist of a million decides faster than any
# disk commits, ~1 KB a queued decision.
MAX_BACKLOG = 5000


@dataclass(slots=True, eq=False)  # compared (and hashed) by identity
class Write:
    """One write: ``apply(store)`` in a transaction, then ``done(result)`` once committed."""

    what: str
    apply: Callable[[Store], Any]
    done: Callable[[Any], None] | None = None
    outbox: tuple[OutboxItem, ...] = ()  # the rows it writes, for :meth:`StoreWriter.holds`


class _Bug(Exception):
    """The write at ``index`` of a batch failed, not because of the file: skip it."""

    def __init__(self, index: int):
        super().__init__(index)
        self.index = index


class StoreWriter:
    """Applies writes now when idle, together when they queue up, later (in order, with
    backoff) when the file refuses them."""

    def __init__(self, store: Store, *, on_failure: Callable[[BaseException], None],
                 retry_initial: float = 0.1, retry_max: float = 5.0,
                 max_batch: int = MAX_BATCH, max_batch_seconds: float = MAX_BATCH_SECONDS,
                 max_backlog: int = MAX_BACKLOG):
        self.store = store
        self.on_failure = on_failure
        self.retry_initial, self.retry_max = retry_initial, retry_max
        self.max_batch, self.max_batch_seconds = max(1, max_batch), max_batch_seconds
        self.backlog: deque[Write] = deque()  # every write not committed yet, oldest first
        self.failing: str | None = None  # why the backlog cannot be written, while it cannot
        self.commits = 0  # durable commits made (each holds one batch)
        self.committed = 0  # writes committed (or skipped as bugs)
        self._retry: asyncio.Task[None] | None = None
        self._turn: asyncio.Handle | None = None  # the commit of what queues this loop turn
        self.max_backlog = max(1, max_backlog)
        self._room: list[asyncio.Future[None]] = []  # who waits in room()

    def submit(self, write: Write) -> bool:
        """Commit ``write`` now when the writer is idle, else queue it behind the earlier
        ones (committed with them when this turn of the loop ends, or by the retry while the
        file refuses writes). True when it was committed (or skipped as a bug) now."""
        self.backlog.append(write)
        if self._turn is not None:  # (a burst: this turn's commit is armed already)
            return False
        if len(self.backlog) > 1 or self._retrying() \
                or self.store.in_transaction:  # never inside someone else's transaction
            self._schedule()
            return False
        try:
            loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a script, a test): one write, one commit
            loop = None
        if loop is not None:
            # Armed before committing: whatever this commit's done callbacks, or the rest of
            # this turn, submit is queued and committed together after it.
            self._turn = loop.call_soon(self._on_turn)
        return self._commit_batch()  # a batch of this one write

    def full(self) -> bool:
        """True when whoever decides should wait in :meth:`room` before deciding more."""
        return len(self.backlog) > self.max_backlog and self.failing is None

    async def room(self) -> None:
        """Wait while the backlog is over :attr:`max_backlog` and the file takes writes.
        While it refuses them nobody waits: the decisions stay in memory, in order, as they
        must, and probing goes on (a watcher that stops watching is worse)."""
        while self.full():
            waiter = asyncio.get_running_loop().create_future()
            self._room.append(waiter)
            try:
                await waiter
            finally:
                with contextlib.suppress(ValueError):
                    self._room.remove(waiter)

    def _make_room(self) -> None:
        if self._room and not self.full():
            for waiter in self._room:
                if not waiter.done():
                    waiter.set_result(None)
            self._room.clear()

    def holds(self, dedup_key: str) -> bool:
        """True when a queued write holds back a page of ``dedup_key``."""
        return any(item.dedup_key == dedup_key and item.status is OutboxStatus.HELD
                   for write in self.backlog for item in write.outbox)

    # ----------------------------------------------------------------- one commit

    def _commit_batch(self) -> bool:
        """Commit the oldest queued writes (bounded) in one transaction, then run their
        ``done`` in order. False when the file refused it: then every write is still queued,
        in order, and the retry is running."""
        batch = self._take()
        while batch:
            try:
                results = self._apply(batch)
                break
            except _Bug as bug:
                # Rolled back, the writes before it too: commit those again without it; the
                # writes after it wait for the next turn, still in order.
                log.error("store write failed and was skipped (a bug, not the disk)",
                          write=batch[bug.index].what, exc_info=bug.__cause__)
                self.backlog.extendleft(reversed(batch[bug.index + 1:]))
                del batch[bug.index:]
                self.committed += 1
                self._schedule()
            except Exception as exc:  # the file's own trouble, by construction (see _apply)
                self.backlog.extendleft(reversed(batch))
                self._failed(batch[0], exc)
                return False
            except BaseException:
                self.backlog.extendleft(reversed(batch))
                raise
        else:
            return True
        self.commits += 1
        self.committed += len(batch)
        if self.failing is not None:
            log.warning("state file writable again", backlog=len(self.backlog))
            self.failing = None
        self._make_room()
        for write, result in zip(batch, results, strict=True):
            if write.done is not None:
                try:
                    write.done(result)
                except Exception as exc:  # after-commit work must not undo it
                    log.error("after-commit step failed", write=write.what, exc_info=exc)
        return True

    def _take(self) -> list[Write]:
        """The oldest writes, at most :attr:`max_batch` of them, out of the queue."""
        backlog, n = self.backlog, min(self.max_batch, len(self.backlog))
        return [backlog.popleft() for _ in range(n)]

    def _apply(self, batch: list[Write]) -> list[Any]:
        """Apply ``batch`` in one transaction and commit it; the results, in order. Writes
        past the time bound go back to the queue's head (``batch`` is cut to what was
        committed). Any failure rolls the whole transaction back: a file error is raised as
        it is, any other error (a bug in that write) as :class:`_Bug`.

        The store holds decisions' rows back and writes them together, at the COMMIT or
        before the next statement of another write (:class:`monitor.store._HeldRows`), so
        a row that breaks a constraint fails in a later write's turn or at the COMMIT. Then
        the batch is applied again, each decision writing its rows before the next one
        runs, to find the write it belongs to (rare: it takes a bug)."""
        try:
            return self._apply_once(batch, each=False)
        except Exception as exc:
            if retryable(exc) and not isinstance(exc, _Bug):
                raise  # the file's own trouble: the whole batch waits, whoever failed
        store = self.store
        store.hold_rows = False
        try:
            return self._apply_once(batch, each=True)
        finally:
            store.hold_rows = True

    def _apply_once(self, batch: list[Write], each: bool) -> list[Any]:
        """One attempt. A write that swallowed the failure of its own statement leaves the
        transaction aborted: ``each`` looks after every write; else the COMMIT refuses
        (``sqlite3.ProgrammingError``) and the search again with ``each`` names it."""
        store, results = self.store, []
        deadline = time.perf_counter() + self.max_batch_seconds
        with store.transaction():
            for n, write in enumerate(batch):
                if n and time.perf_counter() > deadline:
                    self.backlog.extendleft(reversed(batch[n:]))
                    del batch[n:]
                    break
                try:
                    results.append(write.apply(store))
                    if each and store.aborted:
                        raise sqlite3.ProgrammingError("the write failed inside")
                except Exception as exc:
                    if retryable(exc):
                        raise
                    raise _Bug(n) from exc
        return results

    # ----------------------------------------------------------------- scheduling

    def _on_turn(self) -> None:
        """The loop's turn after a commit: commit what queued meanwhile, and stay armed
        while writes keep coming (idle again after a turn that brought none)."""
        self._turn = None
        if self.backlog and not self._retrying():
            self._schedule()
            self._commit_batch()

    def _schedule(self) -> None:
        """Commit the queue at the loop's next turn (unless the retry has it)."""
        if self._turn is not None or self._retrying():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop: commit now, as one write at a time would
            while self.backlog and self._commit_batch():
                pass
            return
        self._turn = loop.call_soon(self._on_turn)

    def _retrying(self) -> bool:
        return self._retry is not None and not self._retry.done()

    def _failed(self, write: Write, exc: BaseException) -> None:
        first = self.failing is None
        self.failing = f"state file not writable: {exc}"
        self.on_failure(exc)
        self._make_room()  # nobody waits for a file that refuses writes
        if first:
            log.error("state file not writable; keeping decisions in memory and retrying",
                      file=self.store.path, error=str(exc), write=write.what,
                      backlog=len(self.backlog))
        self._start_retry()

    def _start_retry(self) -> None:
        if self._turn is not None:
            self._turn.cancel()
            self._turn = None
        if not self._retrying():
            with contextlib.suppress(RuntimeError):  # no loop: the next submit tries again
                self._retry = asyncio.get_running_loop().create_task(
                    self._drain(), name="store-retry")

    async def _drain(self) -> None:
        delay = self.retry_initial
        while self.backlog:
            await asyncio.sleep(delay)
            while self._commit_batch() and self.backlog:
                await _yield()  # between batches, the loop's other work
            delay = min(delay * 2, self.retry_max)

    # ----------------------------------------------------------------- shutdown

    async def flush(self, timeout: float) -> bool:
        """Try to write the backlog before shutting down; False when some is still unwritten."""
        if self._turn is not None:
            self._turn.cancel()
            self._turn = None
        while self.backlog and not self._retrying() and self._commit_batch():
            pass
        if self._retrying():
            assert self._retry is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._retry), timeout)
        if self.backlog:
            log.error("stopping with decisions the state file did not take",
                      unwritten=len(self.backlog), error=self.failing)
        return not self.backlog

    async def stop(self) -> None:
        if self._turn is not None:
            self._turn.cancel()
            self._turn = None
        if self._retry is not None:
            self._retry.cancel()
            await asyncio.gather(self._retry, return_exceptions=True)


async def _yield() -> None:
    """Let the loop run its other ready work before the next batch."""
    await asyncio.sleep(0)
