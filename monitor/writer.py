"""Writes to the state file in order, and keeps every write that the disk refuses.

A decision (a transition, its outage row and its pages) must never be lost because the
state file is locked by another process, the disk is full or an I/O error happened: it is
kept in memory, in order, and retried with backoff until the file takes it. Everything
written after a refused write waits behind it, so the file never sees writes out of order
(a resolve before its trigger, say). Meanwhile :attr:`StoreWriter.failing` says why, which
``/readyz`` reports, and ``accmon_store_write_failures_total`` counts each refused attempt.

Only errors of the file are retried. A write that fails for any other reason (a bug: a
constraint violated, a value that does not serialise) would fail forever and block every
write behind it, so it is logged with its traceback and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from monitor.store import OutboxItem, OutboxStatus, Store, retryable

log = structlog.get_logger("monitor.writer")

@dataclass(slots=True)
class Write:
    """One write: ``apply(store)`` in a transaction, then ``done(result)`` once committed."""

    what: str
    apply: Callable[[Store], Any]
    done: Callable[[Any], None] | None = None
    outbox: tuple[OutboxItem, ...] = ()  # the rows it writes, for :meth:`StoreWriter.holds`


class StoreWriter:
    """Applies writes now when it can, later (in order, with backoff) when it cannot."""

    def __init__(self, store: Store, *, on_failure: Callable[[BaseException], None],
                 retry_initial: float = 0.1, retry_max: float = 5.0):
        self.store = store
        self.on_failure = on_failure
        self.retry_initial, self.retry_max = retry_initial, retry_max
        self.backlog: deque[Write] = deque()
        self.failing: str | None = None  # why the backlog cannot be written, while it cannot
        self._retry: asyncio.Task[None] | None = None

    def submit(self, write: Write) -> bool:
        """Apply ``write`` now, or queue it behind earlier ones; True when committed now."""
        if self.backlog or not self._try(write):
            self.backlog.append(write)
            self._start_retry()
            return False
        return True

    def holds(self, dedup_key: str) -> bool:
        """True when a queued write holds back a page of ``dedup_key``."""
        return any(item.dedup_key == dedup_key and item.status is OutboxStatus.HELD
                   for write in self.backlog for item in write.outbox)

    def _try(self, write: Write) -> bool:
        """One attempt: True when committed (or skipped as a bug), False to retry later."""
        try:
            result = write.apply(self.store)
        except Exception as exc:  # classified just below
            if retryable(exc):
                self._failed(write, exc)
                return False
            log.error("store write failed and was skipped (a bug, not the disk)",
                      write=write.what, exc_info=exc)
            return True
        if self.failing is not None:
            log.warning("state file writable again", backlog=len(self.backlog))
            self.failing = None
        if write.done is not None:
            try:
                write.done(result)
            except Exception as exc:  # after-commit work must not undo it
                log.error("after-commit step failed", write=write.what, exc_info=exc)
        return True

    def _failed(self, write: Write, exc: BaseException) -> None:
        first = self.failing is None
        self.failing = f"state file not writable: {exc}"
        self.on_failure(exc)
        if first:
            log.error("state file not writable; keeping decisions in memory and retrying",
                      file=self.store.path, error=str(exc), write=write.what)

    def _start_retry(self) -> None:
        if self._retry is None or self._retry.done():
            self._retry = asyncio.get_running_loop().create_task(self._drain(),
                                                                 name="store-retry")

    async def _drain(self) -> None:
        delay = self.retry_initial
        while self.backlog:
            await asyncio.sleep(delay)
            while self.backlog and self._try(self.backlog[0]):
                self.backlog.popleft()
            delay = min(delay * 2, self.retry_max)

    async def flush(self, timeout: float) -> bool:
        """Try to write the backlog before shutting down; False when some is still unwritten."""
        if self._retry is not None and not self._retry.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._retry), timeout)
        if self.backlog:
            log.error("stopping with decisions the state file did not take",
                      unwritten=len(self.backlog), error=self.failing)
        return not self.backlog

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            await asyncio.gather(self._retry, return_exceptions=True)
