"""Scheduler: jittered start, per-platform concurrency and rate budgets, clean stop."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections import defaultdict
from collections.abc import Hashable

from monitor.scheduler import RateBudget, Scheduler


def test_rate_budget_allows_a_burst_then_spaces_requests() -> None:
    now = [100.0]
    budget = RateBudget(rate=10, burst=3, clock=lambda: now[0])
    waits = [budget.reserve() for _ in range(5)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest_approx(0.1) and waits[4] == pytest_approx(0.2)


def test_rate_budget_pause_until_defers_every_request() -> None:
    now = [100.0]
    budget = RateBudget(rate=10, burst=3, clock=lambda: now[0])
    budget.pause_until(130.0)
    assert budget.reserve() == pytest_approx(30.0)


def pytest_approx(x: float) -> object:
    import pytest

    return pytest.approx(x, abs=1e-9)


async def test_first_probes_are_spread_over_the_interval_not_a_herd() -> None:
    started: list[float] = []
    t0 = time.monotonic()

    async def probe(key: Hashable) -> float | None:
        started.append(time.monotonic() - t0)
        return None

    sched = Scheduler(probe, rng=random.Random(7))
    sched.add_lane("p", concurrency=50, rate=1e6, burst=1000)
    for i in range(200):
        sched.add(i, "p", spread=1.0)
    await sched.start()
    await asyncio.sleep(1.3)
    await sched.stop()
    assert len(started) == 200
    # Roughly uniform: every tenth of the second gets some, none gets a herd.
    buckets = defaultdict(int)
    for t in started:
        buckets[min(int(t * 10), 9)] += 1
    assert len(buckets) == 10 and max(buckets.values()) < 45


async def test_concurrency_limit_is_per_platform() -> None:
    in_flight: dict[str, int] = defaultdict(int)
    peak: dict[str, int] = defaultdict(int)

    async def probe(key: Hashable) -> float | None:
        lane = str(key).split(":")[0]
        in_flight[lane] += 1
        peak[lane] = max(peak[lane], in_flight[lane])
        await asyncio.sleep(0.05)
        in_flight[lane] -= 1
        return 0.01

    sched = Scheduler(probe)
    sched.add_lane("slow", concurrency=2, rate=1e6, burst=1000)
    sched.add_lane("fast", concurrency=8, rate=1e6, burst=1000)
    for i in range(20):
        sched.add(f"slow:{i}", "slow", spread=0.01)
        sched.add(f"fast:{i}", "fast", spread=0.01)
    await sched.start()
    await asyncio.sleep(0.5)
    await sched.stop()
    assert peak["slow"] == 2 and peak["fast"] == 8


async def test_rate_budget_caps_requests_per_second() -> None:
    count = 0

    async def probe(key: Hashable) -> float | None:
        nonlocal count
        count += 1
        return 0.0  # as often as allowed

    sched = Scheduler(probe)
    sched.add_lane("p", concurrency=4, rate=20, burst=1)
    for i in range(10):
        sched.add(i, "p", spread=0.0)
    await sched.start()
    await asyncio.sleep(1.0)
    await sched.stop()
    assert 15 <= count <= 25


async def test_returned_delay_reschedules_quickly_for_confirmation() -> None:
    times: list[float] = []

    async def probe(key: Hashable) -> float | None:
        times.append(time.monotonic())
        return 0.05 if len(times) < 4 else None

    sched = Scheduler(probe, jitter=0.0)
    sched.add_lane("p", concurrency=1, rate=1e6, burst=10)
    sched.add("k", "p", spread=0.0)
    await sched.start()
    await asyncio.sleep(0.5)
    await sched.stop()
    assert len(times) == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.04 < g < 0.2 for g in gaps)


async def test_stop_lets_in_flight_probes_finish() -> None:
    finished = []

    async def probe(key: Hashable) -> float | None:
        await asyncio.sleep(0.2)
        finished.append(key)
        return 60.0

    sched = Scheduler(probe)
    sched.add_lane("p", concurrency=4, rate=1e6, burst=10)
    for i in range(4):
        sched.add(i, "p", spread=0.0)
    await sched.start()
    await asyncio.sleep(0.05)
    t0 = time.monotonic()
    await sched.stop(grace=2.0)
    assert sorted(finished) == [0, 1, 2, 3]
    assert time.monotonic() - t0 < 1.0


async def test_removed_accounts_are_not_probed_again() -> None:
    seen: list[Hashable] = []

    async def probe(key: Hashable) -> float | None:
        seen.append(key)
        return 0.02

    sched = Scheduler(probe)
    sched.add_lane("p", concurrency=1, rate=1e6, burst=10)
    sched.add("a", "p", spread=0.0)
    await sched.start()
    await asyncio.sleep(0.1)
    sched.remove("a")
    n = len(seen)
    await asyncio.sleep(0.1)
    await sched.stop()
    assert n > 0 and len(seen) <= n + 1


async def test_protected_accounts_go_first_when_the_budget_is_short() -> None:
    order: list[Hashable] = []

    async def probe(key: Hashable) -> float | None:
        order.append(key)
        return None

    sched = Scheduler(probe)
    sched.add_lane("p", concurrency=1, rate=20, burst=1)
    for i in range(20):
        sched.add(f"plain{i}", "p", spread=0.0, priority=1)
    for i in range(3):
        sched.add(f"protected{i}", "p", spread=0.0, priority=0)
    await sched.start()
    await asyncio.sleep(0.4)
    await sched.stop()
    # The first request may already be on its way; right after it, the protected ones.
    assert {str(k) for k in order[1:4]} | {str(order[0])} >= {"protected0", "protected1",
                                                               "protected2"}
    assert all(str(k).startswith("protected") for k in order[1:3])


def test_rate_budget_can_follow_what_the_platform_says_is_left() -> None:
    now = [0.0]
    budget = RateBudget(rate=10, burst=1, clock=lambda: now[0])
    budget.set_rate(1)  # 60 left for the next minute
    assert budget.reserve() == 0.0
    assert budget.reserve() == pytest_approx(1.0)
    assert budget.pause_until(30.0) == pytest_approx(28.0)
    assert budget.pause_until(10.0) == 0.0  # already paused past that
