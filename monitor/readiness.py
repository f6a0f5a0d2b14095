"""Is the monitor ready (``/readyz``), and healthy enough to tell a dead-man's switch so?"""

from __future__ import annotations

from collections.abc import Mapping

from monitor.scheduler import Scheduler
from monitor.store import Store
from monitor.writer import StoreWriter


def not_ready(store: Store | None, writer: StoreWriter | None,
              scheduler: Scheduler) -> dict[str, str]:
    """Why not ready, per check (empty when ready): the state file must be open and take
    writes (a refused write is kept and retried meanwhile), the scheduler must run."""
    problems: dict[str, str] = {}
    if store is None:
        problems["store"] = "state file not open"
    elif writer is not None and writer.failing is not None:
        problems["store"] = (f"{writer.failing}; {len(writer.backlog)} writes kept in memory "
                             "and retried")
    if not scheduler.running:
        problems["scheduler"] = "scheduler not running"
    return problems


def health_problem(problems: Mapping[str, str], lag: Mapping[str, tuple[float, int]],
                   intervals: Mapping[str, float]) -> str | None:
    """Why not healthy: not ready, or a platform's scheduler further behind than its
    shortest interval (the SchedulerLagging alert's condition). Pure."""
    if problems:
        return "; ".join(problems.values())
    for platform, (behind, _) in lag.items():
        interval = intervals.get(platform)
        if interval is not None and behind > interval:
            return f"{platform}: scheduler {behind:.0f}s behind (interval {interval:g}s)"
    return None
