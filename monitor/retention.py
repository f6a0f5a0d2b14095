"""Bounded history: prune what the state file no longer needs, in small batches.

Issue 10 measured the state file growing 8.5 MB an hour under a flapping soak (about 6 GB
in 30 days) because nothing was ever deleted. Here each table keeps what is younger than
its retention (``monitor.retention`` in the config), and never:

* an unsent notification (pending, held, silenced), nor the delivered trigger that is still
  the last word of its incident (Alertmanager's firing alerts are re-sent from it);
* an open outage;
* the newest transition of an account.

Each batch is one short transaction of at most ``batch`` rows, so a decision waits behind
at most one of them; :func:`prune` yields to the event loop between batches. Deleted pages
go to SQLite's free list and are reused by new rows, so the file stops growing once the
oldest rows kept are as old as the retention (it does not shrink; ``VACUUM`` offline does).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import structlog

from monitor.store import PruneCursor, PruneStep, Store, retryable

log = structlog.get_logger("monitor")

DAY = 86400.0


class RetentionSettings(Protocol):
    """What pruning reads: durations in seconds (None: keep forever), how often, how many
    rows per transaction. ``config.monitor.retention`` is one; so is
    :class:`RetentionPolicy`."""

    @property
    def transitions(self) -> float | None: ...
    @property
    def outbox(self) -> float | None: ...
    @property
    def outages(self) -> float | None: ...
    @property
    def audit(self) -> float | None: ...
    @property
    def silences(self) -> float | None: ...
    @property
    def interval(self) -> float: ...
    @property
    def batch(self) -> int: ...


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """The documented defaults (the config's ``monitor.retention`` has the same fields)."""

    transitions: float | None = 90 * DAY  # the events history SSE replays
    outbox: float | None = 90 * DAY  # finished notifications: delivered, failed, dropped
    outages: float | None = 400 * DAY  # recovered ones: availability reports look back a year
    audit: float | None = 400 * DAY
    silences: float | None = 30 * DAY  # after they end
    interval: float = 600.0
    batch: int = 500


Pruner = Callable[[Store, float, int, PruneCursor | None], PruneStep]

# In this order: outbox rows go before the transitions they point at.
PRUNERS: dict[str, Pruner] = {
    "outbox": Store.prune_outbox,
    "transitions": Store.prune_transitions,
    "outages": Store.prune_outages,
    "audit": Store.prune_audit,
    "silences": Store.prune_silences,
}


def batches(store: Store, policy: RetentionSettings, now: float) -> Iterator[tuple[str, int]]:
    """One (table, rows deleted) per committed batch, table after table, until nothing
    older than its retention is left that may go."""
    size = max(1, int(policy.batch))
    for table, prune_batch in PRUNERS.items():
        keep: float | None = getattr(policy, table)
        if keep is None:
            continue
        cursor: PruneCursor | None = None
        while True:
            deleted, cursor = prune_batch(store, now - keep, size, cursor)
            yield table, deleted
            if cursor is None:
                break


def prune_once(store: Store, policy: RetentionSettings, now: float) -> dict[str, int]:
    """Prune everything due at ``now`` without yielding (tests, the CLI); rows deleted per
    table."""
    counts = dict.fromkeys(PRUNERS, 0)
    for table, deleted in batches(store, policy, now):
        counts[table] += deleted
    return counts


async def prune(store: Store, policy: RetentionSettings, now: float) -> dict[str, int]:
    """Like :func:`prune_once`, letting the event loop run between batches. A state file
    that refuses the write (locked, full) ends this round early: the rows are still there
    next time, and the decision path, which retries its own writes, is not disturbed."""
    counts = dict.fromkeys(PRUNERS, 0)
    try:
        for table, deleted in batches(store, policy, now):
            counts[table] += deleted
            await asyncio.sleep(0)
    except Exception as exc:
        if not retryable(exc):
            raise
        log.warning("pruning stopped early: the state file refused a write; next round "
                    "retries", error=str(exc), pruned=counts)
    return counts


async def prune_forever(store: Callable[[], Store | None],
                        policy: Callable[[], RetentionSettings],
                        clock: Callable[[], float],
                        pruned: Callable[[dict[str, int]], None] = lambda _: None) -> None:
    """Prune every ``policy().interval`` until cancelled (the app's periodic task).
    Getters, so a reload's new policy and a reopened store are picked up; ``pruned``
    hears the rows deleted per table (for the metrics)."""
    while True:
        current, settings = store(), policy()
        if current is not None:
            try:
                counts = await prune(current, settings, clock())
            except Exception as exc:  # a bug in one round must not end pruning for good
                log.error("pruning failed", exc_info=exc)
            else:
                pruned(counts)
                if any(counts.values()):
                    log.info("history pruned", **{f"{t}_rows": n for t, n in counts.items()})
        await asyncio.sleep(settings.interval)
