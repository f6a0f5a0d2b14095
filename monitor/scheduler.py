"""When to probe what: jittered per-account timing, per-platform concurrency and rate budgets.

Every account's next due time sits in a slot of :attr:`Scheduler.slot_width` seconds (a
calendar queue: a dict of slots and a small heap of slot numbers, so a million accounts cost
one list entry each, not a million-entry heap to sift per probe, nor a million sleeping
tasks); a slot that has begun joins a small exact heap. What the scheduler files is the
owner's own object (:class:`Schedulable`: the watchlist's account, which carries these few
fields itself) or, for a bare key, an :class:`Entry` made for it. One event-loop timer,
armed for the next due time, moves due accounts onto their platform's queue (no dispatcher
task to wake per probe), at most once per ``timer_slack`` when they crowd; each platform
has ``concurrency`` workers, and every request first takes its turn from the platform's rate
budget (GCRA, i.e. a token bucket without a timer). An account is in exactly one place at a
time — a slot, a queue or a worker — so a slow platform can never pile up duplicate probes
of one account.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import random
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import structlog

from monitor.budget import BudgetPlan

log = structlog.get_logger("monitor.scheduler")

Clock = Callable[[], float]


class RateBudget:
    """Generic cell-rate algorithm: ``rate`` requests/s sustained, bursts of ``burst``."""

    def __init__(self, rate: float, burst: int = 1, clock: Clock = time.monotonic):
        self.rate, self.burst = rate, max(burst, 1)
        self.interval = 1.0 / rate
        self.tolerance = (self.burst - 1) * self.interval
        self.clock = clock
        self._tat = 0.0  # theoretical arrival time of the next request

    def set_rate(self, rate: float) -> None:
        """Change the sustained rate (e.g. to what a platform says is left of its window)."""
        self.rate = rate
        self.interval = 1.0 / rate
        self.tolerance = (self.burst - 1) * self.interval

    def reserve(self) -> float:
        """Take the next slot; return how long to wait before using it."""
        now = self.clock()
        tat = self._tat if self._tat > now else now
        self._tat = tat + self.interval
        wait = tat - self.tolerance - now
        return wait if wait > 0.0 else 0.0

    def pause_until(self, when: float) -> float:
        """Spend no budget before ``when`` (monotonic), e.g. after a 429 with a reset time.

        Returns how many seconds of pause this added (0 when already paused that long)."""
        before = max(self._tat - self.tolerance, self.clock())
        self._tat = max(self._tat, when + self.tolerance)
        return max(0.0, when - before)

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


# probe(key) -> seconds until the next probe of key (None: stop probing it)
ProbeFn = Callable[[Hashable], Awaitable[float | None]]
# probe_batch(keys) -> the same for each key, in order, for platforms that look up many
# accounts at once
BatchFn = Callable[[list[Hashable]], Awaitable[Sequence[float | None]]]


# index(key) -> the owner's entry for key (see Scheduler.file), or None
Index = Callable[[Hashable], "Schedulable | None"]
# crashed(key, exc) -> seconds until the next probe of key, after a probe raised
CrashFn = Callable[[Hashable, BaseException], float | None]
CRASH_DELAY = 60.0  # the default retry after a probe that raised
# A worker that raised outside its probe (a bug of ours, or of an owner's entry) starts
# again after this long: a lane never silently loses a worker.
WORKER_RESTART_DELAY = 1.0


class Schedulable(Protocol):
    """One watched key's place in the scheduler. The heap, the queues and the workers pass
    this object around, not the key (an AccountKey's dataclass ``__hash__`` costs ~0.7 us,
    and the hot path looked keys up a dozen times a probe). The scheduler keeps no index of
    these: an owner that has an object per key already (the watchlist's
    :class:`~monitor.watchlist.Watched`) gives that one to :meth:`Scheduler.file`, so a
    million accounts are not also a million entries and a dict of them (132 bytes an
    account). It need not be hashable: the scheduler keys nothing by it."""

    @property
    def key(self) -> Hashable: ...  # what the probe is called with

    lane: str | None  # its lane; None while not filed: nothing probes it (again)
    priority: int  # 0 (protected) before 1 when a lane's budget is short
    slot: int  # the slot it waits in, NEAR, or NOWHERE (queued, in flight, not filed)
    token: int  # which item of the near heap is its own, while NEAR


class Entry:
    """A :class:`Schedulable` for a bare key (:meth:`Scheduler.add`)."""

    __slots__ = ("key", "lane", "priority", "slot", "token")

    def __init__(self, key: Hashable):
        self.key = key
        self.lane: str | None = None
        self.priority = 1
        self.slot = NOWHERE
        self.token = 0


NOWHERE, NEAR = -1, -2  # Schedulable.slot: in no slot; in the near heap


class _Bucket(list[Schedulable]):
    """The entries due in one slot, their due times beside them as machine floats (a float
    object per account is 24 bytes; a million accounts wait in slots most of the time), and
    the slot's number: one int object that every entry waiting in it refers to (each
    ``math.ceil`` makes a new one: 32 bytes an account, 32 MB at a million). An entry
    filed in one slot twice is there twice; its last filing is the one in force, and comes
    first out of :meth:`waiting`."""

    __slots__ = ("dues", "slot")

    def __init__(self, slot: int):
        super().__init__()
        self.slot = slot
        self.dues = array("d")

    def add(self, entry: Schedulable, due: float) -> None:
        self.append(entry)
        self.dues.append(due)

    def waiting(self) -> Iterator[tuple[Schedulable, float]]:
        """(entry, due) of the ones still waiting here, last filed first: the caller that
        moves an entry out (its ``slot`` changes) skips its older filings by that."""
        slot, dues = self.slot, self.dues
        for i in range(len(self) - 1, -1, -1):
            entry = self[i]
            if entry.slot == slot and entry.lane is not None:
                yield entry, dues[i]


# (entry, due): due is when the account fell due (monotonic), for the lag
QueueItem = tuple[Schedulable, float]


class TwoLevelQueue:
    """Due accounts, priority 0 (protected) before 1, FIFO within each: O(1), unlike a heap.

    asyncio.Queue's put and get are half a dozen Python calls each (``full()``,
    ``_wakeup_next``, an Event cleared per put); this is the part of it the workers use."""

    def __init__(self) -> None:
        self._levels: tuple[deque[QueueItem], deque[QueueItem]] = (deque(), deque())
        self._getters: deque[asyncio.Future[None]] = deque()

    def qsize(self) -> int:
        return len(self._levels[0]) + len(self._levels[1])

    def empty(self) -> bool:
        return not (self._levels[0] or self._levels[1])

    def put_nowait(self, item: QueueItem) -> None:
        self._levels[0 if item[0].priority <= 0 else 1].append(item)
        getters = self._getters
        while getters:
            getter = getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    def get_nowait(self) -> QueueItem:
        """The next item; raises IndexError when there is none."""
        high, low = self._levels
        return (high or low).popleft()

    async def get(self) -> QueueItem:
        while not (self._levels[0] or self._levels[1]):
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                with contextlib.suppress(ValueError):
                    self._getters.remove(getter)
                if not self.empty() and not getter.cancelled():
                    self._wake_next()  # woken and cancelled at once: pass the item on
                raise
        return self.get_nowait()

    def _wake_next(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    def items(self) -> Iterator[QueueItem]:
        """Every waiting item, protected ones first (for the lag figures; not the hot path)."""
        yield from self._levels[0]
        yield from self._levels[1]


@dataclass
class Lane:
    """One platform: its queue, its workers and its budget."""

    name: str
    concurrency: int
    budget: RateBudget
    batch: int = 1  # accounts per request where the platform has a batch lookup
    # How long a batch waits to fill up. Short on purpose: batches fill by themselves when
    # the budget is short (due accounts queue up behind it), which is when batching pays.
    linger: float = 0.02
    # One worker fills a batch at a time, so concurrent workers do not split it in pieces.
    collecting: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Due accounts: protected ones (priority 0) go first when budget is short.
    queue: TwoLevelQueue = field(default_factory=TwoLevelQueue)
    in_flight: int = 0
    # Accounts a worker took from the queue but holds until the budget allows: still
    # overdue (id(entry) -> entry, when it fell due), for the lag figures.
    held: dict[int, tuple[Schedulable, float]] = field(default_factory=dict)


T = TypeVar("T")


class Deadlines(Generic[T]):
    """Items filed by the moment they next need a look, in buckets of ``granularity``
    seconds: O(1) to file, and a look takes only the buckets it has reached, so a periodic
    check of a million accounts touches the few whose moment came, not all of them.

    :meth:`take` may hand an item over up to one bucket early (never late), and an item
    filed twice comes out twice: the caller checks each one, and files it again for its
    next moment."""

    def __init__(self, granularity: float):
        self.granularity = granularity
        self._buckets: dict[int, list[T]] = {}
        self._order: list[int] = []  # the bucket numbers, a min-heap

    def __len__(self) -> int:
        return sum(len(items) for items in self._buckets.values())

    def file(self, item: T, at: float) -> None:
        bucket = math.floor(at / self.granularity)
        items = self._buckets.get(bucket)
        if items is None:
            items = self._buckets[bucket] = []
            heapq.heappush(self._order, bucket)
        items.append(item)

    def take(self, now: float) -> list[T]:
        """Every item filed for a bucket that has begun by ``now``."""
        reached = math.floor(now / self.granularity)
        taken: list[T] = []
        order, buckets = self._order, self._buckets
        while order and order[0] <= reached:
            taken += buckets.pop(heapq.heappop(order))
        return taken


def _log_crash(key: Hashable, exc: BaseException) -> float:
    log.error("probe raised; rescheduled", account=str(key), exc_info=exc)
    return CRASH_DELAY


class Scheduler:
    """Runs ``probe(key)`` for every added key, forever, at the delays it returns.

    Due times are coalesced: after the timer queued accounts it fires again no sooner than
    :attr:`timer_slack` later, so when accounts crowd one may be dispatched up to that
    late, never early (alone, it goes out on time). A million accounts every 5 minutes
    fall due 3,333 times a second: a loop wake-up each cost ~100 us of CPU (a third of a
    core) where 50 a second do the same work; and sifting a million-entry heap cost ~10 us
    a probe in cache misses alone, hence the slots.
    """

    timer_slack = 0.02  # seconds
    # The calendar's slot: one second holds what falls due in it (3,333 accounts at a
    # million every 5 minutes, 278 every hour), so the slots are a few thousand lists, not
    # a list, a dict entry and a heap item for each 20 ms (38 bytes an account at a
    # million); a begun slot's accounts join the near heap, which goes by exact due times.
    slot_width = 1.0  # seconds

    def __init__(self, probe: ProbeFn, *, jitter: float = 0.1, clock: Clock = time.monotonic,
                 rng: random.Random | None = None, probe_batch: BatchFn | None = None,
                 crashed: CrashFn | None = None, index: Index | None = None):
        self.probe = probe
        self.probe_batch = probe_batch
        # Supervision: a probe that raises ends neither its worker nor its account's probing.
        self.crashed: CrashFn = crashed or _log_crash
        self.jitter = jitter
        self.clock = clock
        self.rng = rng or random.Random()
        self.lanes: dict[str, Lane] = {}
        self._entries: dict[Hashable, Entry] = {}  # the bare keys' entries (add())
        # The owner's entries by key, for schedule() and remove() of a key it filed
        self.index = index
        self._filed = 0  # entries filed, bare or the owner's
        # slot number -> entries due in it (slot n ends at n * slot_width); an entry
        # rescheduled meanwhile may sit in an older slot too, and is skipped there.
        self._slots: dict[int, _Bucket] = {}
        self._slot_heap: list[int] = []  # the slot numbers of _slots, a min-heap
        self._near: list[tuple[float, int, Schedulable]] = []  # (due, token, entry) of begun slots
        self._near_upto = -1  # the last slot moved into the near heap
        self._tokens = itertools.count(1)
        self._dispatched_at = float("-inf")  # when the timer last queued an account
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")  # when the armed timer fires
        self._tasks: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Task[None] | None] = set()  # workers inside a probe
        self._stopping = False
        self.running = False

    # ----------------------------------------------------------------- set-up

    def add_lane(self, name: str, *, concurrency: int, rate: float, burst: int,
                 batch: int = 1) -> None:
        if name in self.lanes:
            lane = self.lanes[name]
            lane.budget = RateBudget(rate, burst, self.clock)
            lane.concurrency = concurrency  # applies to workers started from now on
            lane.batch = batch
            return
        self.lanes[name] = Lane(name, concurrency, RateBudget(rate, burst, self.clock),
                                batch=batch)
        if self.running:
            self._start_lane(self.lanes[name])

    def add(self, key: Hashable, lane: str, *, spread: float, priority: int = 1) -> None:
        """Watch ``key``; its first probe falls at a random point within ``spread`` seconds,
        so a restart with thousands of accounts is not a thundering herd. Lower ``priority``
        goes first when a platform's budget cannot keep up."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = Entry(key)
        self.file(entry, lane, spread=spread, priority=priority)

    def file(self, entry: Schedulable, lane: str, *, spread: float, priority: int = 1) -> None:
        """Watch the owner's ``entry`` as :meth:`add` watches a key; the owner keeps it (the
        scheduler holds it only while it waits or is probed) and drops it with
        :meth:`drop`."""
        if entry.lane is None:
            self._filed += 1
        entry.lane, entry.priority = lane, priority
        self.reschedule(entry, self.rng.uniform(0, spread))

    def prioritize(self, entry: Schedulable, priority: int) -> None:
        """Change a filed entry's ``priority`` (a reload protects or unprotects its
        account). It counts from the next time the entry falls due: one already queued
        keeps its place."""
        entry.priority = priority

    def apply_budget(self, lane: str, plan: BudgetPlan) -> float:
        """Follow a platform's own budget (:func:`monitor.budget.plan`): pause the lane, or
        change its sustained rate. Returns how many seconds of pause this added."""
        found = self.lanes.get(lane)
        if found is None:
            return 0.0
        if plan.pause is not None:
            return found.budget.pause_until(self.clock() + plan.pause)
        if plan.rate is not None and plan.rate != found.budget.rate:
            found.budget.set_rate(plan.rate)
        return 0.0

    def rate(self, lane: str) -> float:
        """The lane's sustained request rate in force."""
        return self.lanes[lane].budget.rate

    def remove(self, key: Hashable) -> None:
        """Stop probing ``key`` (a queued or in-flight probe finishes, then it is dropped)."""
        entry = self._entries.pop(key, None) or self._owned(key)
        if entry is not None:
            self.drop(entry)

    def drop(self, entry: Schedulable) -> None:
        """Stop probing the owner's ``entry`` (see :meth:`remove`)."""
        if entry.lane is not None:
            self._filed -= 1
        entry.lane, entry.slot = None, NOWHERE

    def schedule(self, key: Hashable, delay: float) -> None:
        """(Re)schedule ``key`` to be probed ``delay`` seconds from now."""
        entry = self._entries.get(key) or self._owned(key)
        if entry is not None:
            self.reschedule(entry, delay)

    def _owned(self, key: Hashable) -> Schedulable | None:
        return self.index(key) if self.index is not None else None

    def reschedule(self, entry: Schedulable, delay: float) -> None:
        """Due ``delay`` seconds from now: into the near heap if its slot has begun, else
        into its slot; where it waited before, it is skipped (superseded). Nothing for an
        entry not filed."""
        if entry.lane is None:
            return
        slack = self.timer_slack
        due = self.clock() + (delay if delay > 0.0 else 0.0)
        slot = math.ceil(due / self.slot_width)
        if slot <= self._near_upto:
            entry.slot, token = NEAR, next(self._tokens)
            entry.token = token
            heapq.heappush(self._near, (due, token, entry))
            fire = max(due, self._dispatched_at + slack)
        else:
            bucket = self._slots.get(slot)
            if bucket is None:
                bucket = self._slots[slot] = _Bucket(slot)
                heapq.heappush(self._slot_heap, slot)
            entry.slot = bucket.slot
            bucket.add(entry, due)
            fire = (slot - 1) * self.slot_width  # when the slot begins, it joins the near heap
        if fire < self._timer_at and self.running:
            self._arm(fire)

    def jittered(self, delay: float) -> float:
        return delay * self.rng.uniform(1 - self.jitter, 1 + self.jitter)

    def __len__(self) -> int:
        return self._filed

    def lag(self, slack: float = 1.0) -> dict[str, tuple[float, int]]:
        """Per lane: (how far past due its most overdue account is, in seconds; how many
        accounts are more than ``slack`` past due). Accounts waiting in a lane's queue (for
        a worker or for rate budget) and ones whose due time passed without a dispatch both
        count; one being probed right now does not. O(accounts waiting), for a periodic
        gauge, not the hot path."""
        now = self.clock()
        out = {name: (0.0, 0) for name in self.lanes}
        for name, lane in self.lanes.items():
            worst, count = 0.0, 0
            for _, due in self._waiting_in(lane):
                late = now - due
                worst = max(worst, late)
                count += late > slack
            out[name] = (worst, count)
        for entry, due in self._overdue(now - slack):
            lane_name = entry.lane
            if lane_name is None or lane_name not in out:
                continue
            worst, count = out[lane_name]
            out[lane_name] = (max(worst, now - due), count + 1)
        return out

    def _waiting_in(self, lane: Lane) -> Iterator[tuple[Hashable, float]]:
        """(key, when it fell due) of every still-watched account in ``lane``'s queue or
        held there for budget."""
        for entry, due in lane.queue.items():
            if entry.lane is not None:
                yield entry.key, due
        for entry, due in lane.held.values():
            if entry.lane is not None:
                yield entry.key, due

    def _overdue(self, before: float) -> Iterator[tuple[Schedulable, float]]:
        """(entry, due) of the entries still waiting though due before ``before``: the near
        heap's, then the slots', by a walk of the slot heap that prunes at the first later
        slot (a child never comes before its parent): O(overdue), not O(accounts). Normally
        empty: the timer dispatches accounts as they fall due, unless the loop stalls."""
        for due, token, entry in self._near:
            if due < before and entry.slot == NEAR and entry.token == token:
                yield entry, due
        heap, stack = self._slot_heap, [0]
        last = math.ceil(before / self.slot_width)  # later slots hold nothing due before
        while stack:
            i = stack.pop()
            if i < len(heap) and heap[i] <= last:
                seen: set[int] = set()  # an entry filed in one slot twice counts once
                for entry, due in self._slots[heap[i]].waiting():
                    if id(entry) not in seen:
                        seen.add(id(entry))
                        if due < before:
                            yield entry, due
                stack += (2 * i + 1, 2 * i + 2)

    def waiting(self, slack: float = 1.0) -> set[Hashable]:
        """Accounts waiting in their lane's queue (due, but no worker or no budget took
        them yet) for more than ``slack`` seconds: the ones our own backlog starves."""
        now = self.clock()
        return {key for lane in self.lanes.values() for key, due in self._waiting_in(lane)
                if now - due > slack}

    # ----------------------------------------------------------------- running

    async def start(self) -> None:
        self.running = True
        for lane in self.lanes.values():
            self._start_lane(lane)
        self._dispatch()

    def _start_lane(self, lane: Lane) -> None:
        for i in range(lane.concurrency):
            self._tasks.append(asyncio.create_task(self._supervised(lane),
                                                   name=f"{lane.name}-{i}"))

    async def _supervised(self, lane: Lane) -> None:
        """Run one worker of ``lane``; when it raises outside a probe (:meth:`_work`
        supervises the probe itself), log it and start it again, so a lane never silently
        runs short of workers. The account it held, if any, is not rescheduled: its
        staleness bound makes it blind ("not probed"), which is alerted on."""
        while not self._stopping:
            try:
                await self._work(lane)
            except Exception as exc:
                log.error("scheduler worker failed; starting it again", lane=lane.name,
                          restart_in_seconds=WORKER_RESTART_DELAY, exc_info=exc)
                await asyncio.sleep(WORKER_RESTART_DELAY)

    def _arm(self, due: float) -> None:
        """Fire :meth:`_dispatch` at ``due`` (monotonic), replacing a later timer."""
        if self._timer is not None:
            self._timer.cancel()
        loop = asyncio.get_running_loop()
        self._timer_at = due
        self._timer = loop.call_later(max(0.0, due - self.clock()), self._dispatch)

    def _dispatch(self) -> None:
        """Timer callback: the slots that have begun join the near heap; every account due
        is queued; re-arm for the next due time (no sooner than ``timer_slack`` after this
        dispatch when it queued any) or the next slot's beginning."""
        self._timer, self._timer_at = None, float("inf")
        if self._stopping:
            return
        now, slack = self.clock(), self.timer_slack
        near, push, pop = self._near, heapq.heappush, heapq.heappop
        begun = self._last_begun(now)
        heap, slots = self._slot_heap, self._slots
        while heap and heap[0] <= begun:
            slot = pop(heap)
            for entry, due in slots.pop(slot).waiting():  # (superseded ones skipped)
                entry.slot, token = NEAR, next(self._tokens)
                entry.token = token
                push(near, (due, token, entry))
        self._near_upto = max(self._near_upto, begun)
        lanes, queued = self.lanes, False
        while near and near[0][0] <= now:
            due, token, entry = pop(near)
            if entry.slot != NEAR or entry.token != token or entry.lane is None:
                continue  # superseded by a later schedule(), or removed
            entry.slot, entry.token = NOWHERE, 0  # (its token, an int of its own, goes)
            lanes[entry.lane].queue.put_nowait((entry, due))
            queued = True
        if queued:
            self._dispatched_at = now
        fire = max(near[0][0], self._dispatched_at + slack) if near else float("inf")
        if heap:
            fire = min(fire, (heap[0] - 1) * self.slot_width)
        if fire != float("inf"):
            self._arm(fire)

    def _last_begun(self, now: float) -> int:
        """The last slot that has begun by ``now``: the largest n with (n - 1) * width <=
        now, in the very float arithmetic reschedule and _dispatch arm the timer with (a
        division alone can land one slot off, and the timer would fire for ever)."""
        width = self.slot_width
        n = math.floor(now / width) + 1
        while n * width <= now:
            n += 1
        while (n - 1) * width > now:
            n -= 1
        return n

    async def _take(self, lane: Lane) -> Schedulable:
        """The next due, still-watched account of ``lane``, once the budget allows a request
        for it (held meanwhile, for the lag figures)."""
        queue = lane.queue
        while True:
            entry, due = queue.get_nowait() if not queue.empty() else await queue.get()
            if entry.lane is not None:
                wait = lane.budget.reserve()
                if wait > 0:
                    await self._hold(lane, entry, due, wait)
                return entry

    async def _hold(self, lane: Lane, entry: Schedulable, due: float, wait: float) -> None:
        """Hold ``entry`` until its request slot (``wait`` seconds): still overdue meanwhile,
        for the lag figures."""
        lane.held[id(entry)] = entry, due
        try:
            await asyncio.sleep(wait)
        finally:
            del lane.held[id(entry)]

    async def _work(self, lane: Lane) -> None:
        """One worker of a lane, forever. Nothing a probe raises ends it (supervision): the
        account is handed to :attr:`crashed` and rescheduled at the delay it returns.

        The common case, an account queued and budget to spare, awaits nothing before the
        probe itself (no coroutine, no task switch): see :meth:`_take` for the rest."""
        me = asyncio.current_task()
        busy, jitter, queue, uniform = self._busy, self.jitter, lane.queue, self.rng.uniform
        while not self._stopping:
            if lane.batch > 1 and self.probe_batch is not None:
                await self._work_batch(lane, me)
                continue
            if queue.empty():
                entry = await self._take(lane)
            else:
                entry, due = queue.get_nowait()
                if entry.lane is None:
                    continue
                wait = lane.budget.reserve()
                if wait > 0:
                    await self._hold(lane, entry, due, wait)
            if self._stopping:
                return
            lane.in_flight += 1
            busy.add(me)
            try:
                delay = await self.probe(entry.key)
            except Exception as exc:  # supervision: see the docstring
                delay = self._crash(entry.key, exc)
            finally:
                lane.in_flight -= 1
                busy.discard(me)
            if delay is not None and not self._stopping:
                # jittered(), inlined: the same draw from the same generator
                self.reschedule(entry, delay * uniform(1 - jitter, 1 + jitter))

    def _crash(self, key: Hashable, exc: BaseException) -> float | None:
        try:
            return self.crashed(key, exc)
        except Exception:  # the crash handler itself failed: keep watching
            return CRASH_DELAY

    async def _work_batch(self, lane: Lane, me: asyncio.Task[None] | None) -> None:
        """Collect up to ``lane.batch`` due accounts (waiting at most ``linger``), then ask
        the platform about all of them in one request and one unit of budget."""
        assert self.probe_batch is not None
        async with lane.collecting:
            entries = await self._collect(lane)
        if not entries or self._stopping:
            return
        keys = [entry.key for entry in entries]
        lane.in_flight += 1
        self._busy.add(me)
        try:
            delays = await self.probe_batch(keys)
            if len(delays) != len(keys):
                raise ValueError(f"probe_batch gave {len(delays)} delays for {len(keys)} keys")
        except Exception as exc:  # supervision, as in _work
            delays = [self._crash(key, exc) for key in keys]
        finally:
            lane.in_flight -= 1
            self._busy.discard(me)
        if self._stopping:
            return
        jitter, uniform = self.jitter, self.rng.uniform
        for entry, delay in zip(entries, delays, strict=True):
            if delay is not None:  # jittered(), inlined as in _work
                self.reschedule(entry, delay * uniform(1 - jitter, 1 + jitter))

    async def _collect(self, lane: Lane) -> list[Schedulable]:
        """The first due account, then the budget, then whatever came due meanwhile: when
        the budget is short, every request leaves with a full batch."""
        entries = [await self._take(lane)]
        queue = lane.queue
        deadline = self.clock() + lane.linger
        while len(entries) < lane.batch:
            try:
                if queue.empty():
                    wait = deadline - self.clock()
                    if wait <= 0:
                        break
                    async with asyncio.timeout(wait):  # not wait_for: it can eat a cancel
                        entry, _ = await queue.get()
                else:
                    entry, _ = queue.get_nowait()
            except TimeoutError:
                break
            if entry.lane is not None:
                entries.append(entry)
        return entries

    async def stop(self, grace: float = 5.0) -> None:
        """Stop dispatching; give in-flight probes ``grace`` seconds to finish, then cancel."""
        self._stopping = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, float("inf")
        busy = {task for task in self._busy if task is not None}
        if busy:
            await asyncio.wait(busy, timeout=grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        self.running = False
