"""How fast may we ask a platform now? Its own rate-limit headers decide. Pure.

A 429 (or a budget at zero) pauses the platform until its reset time (capped), or for
:data:`RATE_LIMIT_BACKOFF` when it does not say until when; what is left of a window is
spread over the rest of it instead of being spent at once; a budget no longer reported
goes back to the configured rate. The scheduler applies the plan
(:meth:`monitor.scheduler.Scheduler.apply_budget`).
"""

from __future__ import annotations

from dataclasses import dataclass

from monitor.model import ErrorKind, Observation

RATE_LIMIT_BACKOFF = 60.0  # a 429 without a reset time: wait this long (at most the cap)
MIN_RATE = 0.01  # requests/s: what is left of a window is spread, never starved to zero


@dataclass(frozen=True, slots=True)
class BudgetPlan:
    remaining: int | None = None  # requests left in the window, as the platform says
    pause: float | None = None  # spend nothing for this many seconds from now
    rate: float | None = None  # the sustained rate from now on (None: unchanged)


def plan(obs: Observation, now: float, configured: float, current: float,
         max_pause: float) -> BudgetPlan | None:
    """The budget change one answer asks for; None when it says nothing about budget.

    ``now`` is wall-clock (reset times are epoch seconds); ``configured`` is the platform's
    ``rate_per_second``, ``current`` the rate in force."""
    rl = obs.rate_limit
    throttled = obs.error is ErrorKind.RATE_LIMITED
    if rl is None and not throttled:
        return None
    remaining = rl.remaining if rl is not None else None
    pause: float | None = None
    if rl is not None and rl.retry_after is not None:
        pause = rl.retry_after
    elif rl is not None and rl.reset_at is not None and (throttled or rl.remaining == 0):
        pause = rl.reset_at - now
    elif throttled:
        pause = RATE_LIMIT_BACKOFF
    if pause is not None and pause > 0:
        return BudgetPlan(remaining, pause=min(pause, max_pause))
    if rl is not None and rl.remaining and rl.reset_at and rl.reset_at > now:
        spread = max(rl.remaining / (rl.reset_at - now), MIN_RATE)
        return BudgetPlan(remaining, rate=min(configured, spread))
    if current != configured:
        return BudgetPlan(remaining, rate=configured)
    return BudgetPlan(remaining)
