"""Scheduler: jittered start, per-platform concurrency and rate budgets, clean stop.

The scheduler takes a clock; these tests run it on virtual time (:class:`VirtualTimeLoop`,
whose clock jumps to the next timer), so every figure "per second" or "within the interval"
is exact, takes no real time and does not depend on how loaded the machine is.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections import defaultdict
from collections.abc import Hashable

import pytest

from monitor.scheduler import ProbeFn, RateBudget, Scheduler
from tests.conftest import on_virtual_time


def clock() -> float:
    """The running (virtual) loop's clock: what the scheduler's timers and sleeps run on."""
    return asyncio.get_running_loop().time()


async def until(predicate: object, *, within: float, step: float = 0.01) -> float:
    """Advance virtual time until ``predicate()`` holds; fail after ``within`` virtual
    seconds. Returns the virtual time it took."""
    assert callable(predicate)
    start = clock()
    while not predicate():
        if clock() - start > within:
            pytest.fail(f"not true within {within} virtual seconds")
        await asyncio.sleep(step)
    return clock() - start


def recording(again: float | None) -> tuple[list[Hashable], ProbeFn]:
    """A probe that records each key it is called with, in order, and asks to be called
    again ``again`` seconds later (None: not again)."""
    keys: list[Hashable] = []

    async def probe(key: Hashable) -> float | None:
        keys.append(key)
        return again

    return keys, probe


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
    return pytest.approx(x, abs=1e-9)


@on_virtual_time
async def test_virtual_time_jumps_to_the_next_timer_and_nothing_else() -> None:
    """The harness itself: an hour of sleeping is an hour on the clock, in no real time."""
    t0 = clock()
    woke: list[float] = []
    asyncio.get_running_loop().call_later(1.5, lambda: woke.append(clock()))
    await asyncio.sleep(3600)
    assert clock() - t0 == pytest_approx(3600.0)
    assert woke == [pytest_approx(t0 + 1.5)]


@on_virtual_time
async def test_first_probes_are_spread_over_the_interval_not_a_herd() -> None:
    started: list[float] = []
    t0 = clock()

    async def probe(key: Hashable) -> float | None:
        started.append(clock() - t0)
        return None

    sched = Scheduler(probe, rng=random.Random(7), clock=clock)
    sched.add_lane("p", concurrency=50, rate=1e6, burst=1000)
    for i in range(200):
        sched.add(i, "p", spread=1.0)
    await sched.start()
    await until(lambda: len(started) == 200, within=1.3)
    await sched.stop()
    assert len(started) == 200
    # Every first probe within the spread: never early, and late by at most the timer's
    # coalescing (the documented contract; 200 in a second crowd it).
    assert all(0.0 <= t <= 1.0 + Scheduler.timer_slack for t in started)
    # Roughly uniform: every tenth of the second gets some, none gets a herd.
    buckets = defaultdict(int)
    for t in started:
        buckets[min(int(t * 10), 9)] += 1
    assert len(buckets) == 10 and max(buckets.values()) < 45


@on_virtual_time
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

    sched = Scheduler(probe, clock=clock)
    sched.add_lane("slow", concurrency=2, rate=1e6, burst=1000)
    sched.add_lane("fast", concurrency=8, rate=1e6, burst=1000)
    for i in range(20):
        sched.add(f"slow:{i}", "slow", spread=0.01)
        sched.add(f"fast:{i}", "fast", spread=0.01)
    await sched.start()
    await asyncio.sleep(0.5)  # virtual: ten rounds of the slow lane's 0.05 s probes
    await sched.stop()
    assert peak["slow"] == 2 and peak["fast"] == 8


@on_virtual_time
async def test_rate_budget_caps_requests_per_second() -> None:
    sent: list[float] = []
    t0 = clock()

    async def probe(key: Hashable) -> float | None:
        sent.append(clock() - t0)
        return 0.0  # as often as allowed

    sched = Scheduler(probe, clock=clock)
    sched.add_lane("p", concurrency=4, rate=20, burst=1)
    for i in range(10):
        sched.add(i, "p", spread=0.0)
    await sched.start()
    await asyncio.sleep(1.0)
    await sched.stop()
    # Exactly one request every 1/20 s from the first, however many accounts are due:
    # the budget's slots at 0, 0.05, ... 0.95 s (and 1.0 s, if the worker took it before
    # stop() ran at that same instant).
    assert 20 <= len(sent) <= 21
    assert all(b - a == pytest.approx(0.05, abs=1e-6) for a, b in itertools.pairwise(sent))


@on_virtual_time
async def test_returned_delay_reschedules_quickly_for_confirmation() -> None:
    times: list[float] = []

    async def probe(key: Hashable) -> float | None:
        times.append(clock())
        return 0.05 if len(times) < 4 else None

    sched = Scheduler(probe, jitter=0.0, clock=clock)
    sched.add_lane("p", concurrency=1, rate=1e6, burst=10)
    sched.add("k", "p", spread=0.0)
    await sched.start()
    await asyncio.sleep(0.5)  # virtual: ten times the delay the probe asks for
    await sched.stop()
    assert len(times) == 4  # None stopped the probing
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(0.04 < g < 0.2 for g in gaps)
    assert gaps == [pytest.approx(0.05, abs=1e-6)] * 3  # without jitter: the delay asked


@on_virtual_time
async def test_stop_lets_in_flight_probes_finish() -> None:
    finished = []
    in_flight: set[Hashable] = set()

    async def probe(key: Hashable) -> float | None:
        in_flight.add(key)
        await asyncio.sleep(0.2)  # virtual: the request takes 0.2 s
        finished.append(key)
        return 60.0

    sched = Scheduler(probe, clock=clock)
    sched.add_lane("p", concurrency=4, rate=1e6, burst=10)
    for i in range(4):
        sched.add(i, "p", spread=0.0)
    await sched.start()
    await until(lambda: len(in_flight) == 4, within=0.1)
    assert finished == []  # all four are mid-request when stop() is called
    t0 = clock()
    await sched.stop(grace=2.0)
    assert sorted(finished) == [0, 1, 2, 3]
    assert clock() - t0 < 1.0
    assert clock() - t0 <= 0.2 + 1e-6  # no longer than the requests took: not the grace


@on_virtual_time
async def test_removed_accounts_are_not_probed_again() -> None:
    seen, probe = recording(0.02)
    sched = Scheduler(probe, clock=clock)
    sched.add_lane("p", concurrency=1, rate=1e6, burst=10)
    sched.add("a", "p", spread=0.0)
    sched.add("witness", "p", spread=0.0)  # probed at the same pace, never removed
    await sched.start()
    await until(lambda: seen.count("a") >= 3, within=1.0)
    sched.remove("a")
    n = seen.count("a")
    # The positive sign that "a" would have come round again: the witness, on the same
    # lane and interval, was probed five more times since.
    witnessed = seen.count("witness")
    await until(lambda: seen.count("witness") >= witnessed + 5, within=1.0)
    await sched.stop()
    assert n > 0 and seen.count("a") <= n + 1
    assert seen.count("a") == n  # with one worker nothing of "a" was in flight: never again


class Owned:
    """An owner's own object as the scheduler's entry (as the watchlist's Watched is):
    compared by value, so not hashable."""

    __slots__ = ("due", "key", "lane", "priority", "slot", "token")
    __hash__ = None  # type: ignore[assignment]
    key: str
    lane: str | None

    def __init__(self, key: str):
        self.key, self.lane, self.priority, self.slot, self.token, self.due = (
            key, None, 1, -1, 0, 0.0)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Owned) and other.key == self.key


@on_virtual_time
async def test_owner_entries_are_filed_held_found_by_key_and_dropped() -> None:
    owned = {k: Owned(k) for k in ("a", "b", "c")}
    # The next probe much later: a prompt one is schedule()'s doing.
    seen, probe = recording(10.0)
    sched = Scheduler(probe, clock=clock, index=owned.get)
    sched.add_lane("p", concurrency=1, rate=5, burst=1)  # the second waits, held for budget
    for entry in owned.values():
        sched.file(entry, "p", spread=0.0)
    assert len(sched) == 3
    t0 = clock()
    await sched.start()
    await until(lambda: len(seen) == 1, within=0.1)
    await until(lambda: len(sched.lanes["p"].held) == 1, within=0.1)
    await until(lambda: len(seen) == 3, within=1.0)  # all three, at the budget's pace
    sched.schedule("b", 0.0)  # found through the owner's index
    await until(lambda: seen.count("b") == 2, within=1.0)
    sched.drop(owned["c"])
    sched.remove("a")  # a key of the owner's, through the index too
    assert len(sched) == 1
    sched.schedule("c", 0.0)  # dropped: nothing
    # Long enough for "a" and "c" to have come round twice more, as "b" does
    await until(lambda: clock() - t0 > 25.0 and seen.count("b") >= 4, within=40.0)
    await sched.stop()
    assert seen.count("a") == 1 and seen.count("c") == 1


async def scheduled_twice_in_one_slot(first: float, last: float) -> None:
    """A key scheduled for ``first`` then ``last`` seconds into one slot goes once, at
    ``last``: the slot keeps both filings, and only the last is in force."""
    probed: list[float] = []

    async def probe(key: Hashable) -> float | None:
        probed.append(clock())
        return None  # no next probe of its own: only schedule() brings it back

    sched = Scheduler(probe, clock=clock)
    sched.add_lane("p", concurrency=1, rate=1e6, burst=10)
    sched.add("a", "p", spread=0.0)
    await sched.start()
    await until(lambda: len(probed) == 1, within=0.1)
    base = math.floor(clock() / Scheduler.slot_width) * Scheduler.slot_width + 10.0
    assert math.ceil((base + first) / Scheduler.slot_width) == math.ceil(
        (base + last) / Scheduler.slot_width)  # one slot, both times
    sched.schedule("a", base + first - clock())
    sched.schedule("a", base + last - clock())  # supersedes the first
    await until(lambda: clock() > base + 1.5, within=15.0)
    await sched.stop()
    assert len(probed) == 2, probed  # once, not at both times
    assert base + last <= probed[1] <= base + last + Scheduler.timer_slack


@on_virtual_time
async def test_a_key_scheduled_twice_in_one_slot_goes_at_the_earlier_last_time() -> None:
    await scheduled_twice_in_one_slot(0.8, 0.2)


@on_virtual_time
async def test_a_key_scheduled_twice_in_one_slot_goes_at_the_later_last_time() -> None:
    await scheduled_twice_in_one_slot(0.2, 0.8)


@on_virtual_time
async def test_protected_accounts_go_first_when_the_budget_is_short() -> None:
    order, probe = recording(None)
    sched = Scheduler(probe, clock=clock)
    sched.add_lane("p", concurrency=1, rate=20, burst=1)
    # Filed among the others, so neither filing order nor its reverse puts them first.
    protected = iter(range(3))
    for i in range(23):
        if i in (6, 11, 16):
            sched.add(f"protected{next(protected)}", "p", spread=0.0, priority=0)
        else:
            sched.add(f"plain{i}", "p", spread=0.0, priority=1)
    await sched.start()
    await until(lambda: len(order) >= 4, within=0.4)
    await sched.stop()
    # The first request may already be on its way; right after it, the protected ones.
    assert {str(k) for k in order[1:4]} | {str(order[0])} >= {"protected0", "protected1",
                                                               "protected2"}
    assert all(str(k).startswith("protected") for k in order[1:3])


@on_virtual_time
async def test_a_reprioritized_account_goes_first_from_its_next_turn() -> None:
    order, probe = recording(None)
    owned = [Owned(f"plain{i}") for i in range(20)]
    sched = Scheduler(probe, clock=clock)
    sched.add_lane("p", concurrency=1, rate=20, burst=1)
    for entry in owned:
        sched.file(entry, "p", spread=0.0, priority=1)
    sched.prioritize(owned[10], 0)  # probed tenth or so, unless a reload protects it
    await sched.start()
    await until(lambda: len(order) >= 3, within=0.4)
    await sched.stop()
    assert "plain10" in order[:2]  # the first request may already be on its way


class Faulty(Owned):
    """An owner's entry whose key raises when read: the worker fails outside the probe."""

    __slots__ = ()

    @property  # type: ignore[override]
    def key(self) -> str:
        raise RuntimeError("an owner's bug")

    @key.setter
    def key(self, value: str) -> None:
        pass


@on_virtual_time
async def test_a_worker_that_fails_outside_its_probe_is_started_again() -> None:
    probed, probe = recording(0.1)
    sched = Scheduler(probe, clock=clock)
    sched.add_lane("p", concurrency=1, rate=1000, burst=10)  # one worker: its loss stops all
    sched.file(Faulty("bad"), "p", spread=0.0)
    sched.add("good", "p", spread=0.5)
    await sched.start()
    await until(lambda: len(probed) >= 20, within=10.0)
    await sched.stop()
    assert set(probed) == {"good"}


def test_rate_budget_can_follow_what_the_platform_says_is_left() -> None:
    now = [0.0]
    budget = RateBudget(rate=10, burst=1, clock=lambda: now[0])
    budget.set_rate(1)  # 60 left for the next minute
    assert budget.reserve() == 0.0
    assert budget.reserve() == pytest_approx(1.0)
    assert budget.pause_until(30.0) == pytest_approx(28.0)
    assert budget.pause_until(10.0) == 0.0  # already paused past that
