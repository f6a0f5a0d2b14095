"""The availability gauges' sums (reports.PlatformSums): the figures of
``reports.availability(...)["platforms"]`` and of the pure ``availability.table``, without a
row per account, and with each live view keeping its watch start between refreshes.

Histories are written through the real store (``Store.decide``, the run and addition
methods, retention's own pruning) from generated specs: accounts with and without outages,
open and recovered ones, outages across window edges, crash and restart gaps, accounts
never decided, API additions before and after the first decision, pruned history, several
platforms, accounts watched only since yesterday. Then the store changes under the kept
starts (first decisions, pruning, additions made again, new outages) and a later refresh
must still agree with a fresh report.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor import availability as av
from monitor import reports
from monitor.availability import WINDOWS, Availability
from monitor.fakes.mastodon import FakeMastodon
from monitor.metrics import AccountView, Metrics
from monitor.model import (
    AbsentReason,
    AccountKey,
    AccountState,
    Event,
    EventKind,
    RecoveredDetails,
    State,
    TransitionDetails,
    VanishedDetails,
)
from monitor.store import AuditEntry, Store, WatchStart
from tests.conftest import mastodon_config, running_monitor, state_of, wait_for
from tests.test_reports import ALICE, BOB, CAROL, history  # noqa: F401 (a fixture)
from tests.test_reports import NOW as THEN

DAY = 86_400.0
NOW = 1_699_963_200.0  # 2023-11-14 12:00 UTC
PLATFORMS = ("x", "bsky", "masto")


# ----------------------------------------------------------------- writing history


def decided(store: Store, key: AccountKey, at: float, *, first: bool = True) -> None:
    """A decision to up: the account's first (from unknown) or a later one."""
    old = State.UNKNOWN if first else State.SUSPECT
    store.decide(key, AccountState(State.UP, last_present_at=at, since=at),
                 [Event(EventKind.TRANSITION, key, at, old, State.UP,
                        details=TransitionDetails(previous_since=None))], None, at)


def outage(store: Store, key: AccountKey, *, present: float | None, absent: float,
           confirmed: float, last_absent: float, recovered: float | None) -> None:
    """Confirmed at ``confirmed`` (the row's last absent sighting until it recovers), then,
    with ``recovered``, closed with ``last_absent``. ``present`` None: never seen present."""
    reason = AbsentReason.SUSPENDED
    down = AccountState(State.DOWN, absent_streak=2, reason=reason, last_present_at=present,
                        first_absent_at=absent, last_absent_at=confirmed, since=confirmed)
    vanished = VanishedDetails(last_present_at=present, first_absent_at=absent,
                               confirmed_at=confirmed, absent_streak=2, evidence="410")
    down, _ = store.decide(key, down, [
        Event(EventKind.TRANSITION, key, confirmed, State.SUSPECT, State.DOWN, reason),
        Event(EventKind.VANISHED, key, confirmed, State.SUSPECT, State.DOWN, reason,
              vanished)], None, confirmed)
    assert down.outage_id is not None
    if recovered is not None:
        details = RecoveredDetails(last_present_at=present, first_absent_at=absent,
                                   last_absent_at=last_absent, recovered_at=recovered,
                                   duration=recovered - absent, outage_id=down.outage_id)
        store.decide(key, AccountState(State.UP, last_present_at=recovered, since=recovered),
                     [Event(EventKind.TRANSITION, key, recovered, State.DOWN, State.UP),
                      Event(EventKind.RECOVERED, key, recovered, State.DOWN, State.UP,
                            details=details)], None, recovered)


def added(store: Store, key: AccountKey, at: float) -> None:
    store.add_watch({"platform": key.platform, "handle": key.handle},
                    AuditEntry("tests", "watch.add", str(key)), now=at)


def prune(store: Store, before: float) -> None:
    """Retention's own pruning of the transitions older than ``before``."""
    cursor = None
    while True:
        _, cursor = store.prune_transitions(before, 1000, cursor)
        if cursor is None:
            return


@dataclass(frozen=True)
class Spec:
    """One account: when it was first decided (None: never), whether it was added through
    the API (and how long before or after that first decision), its outages as (present
    ahead of absent or None, absent age, confirmation delay, recovery after or None)."""

    platform: str
    first: float | None  # age at the first decision, in days
    added: float | None  # addition minus first decision, in seconds (or its age, undecided)
    outages: tuple[tuple[float | None, float, float, float | None], ...]


def write(store: Store, key: AccountKey, spec: Spec, now: float) -> float | None:
    """The account's history; returns its open outage's confirmation (None: none open)."""
    first = None if spec.first is None else now - spec.first * DAY
    if spec.added is not None:
        added(store, key, (now - abs(spec.added)) if first is None else first + spec.added)
    if first is None:
        return None
    decided(store, key, first)
    open_at = None
    for present, age, delay, recovered in sorted(spec.outages, key=lambda o: -o[1]):
        absent = max(first + 1, now - age)
        confirmed = absent + delay
        if confirmed >= now:
            continue
        back = None if recovered is None else min(now - 1, confirmed + recovered)
        if open_at is not None:
            break  # one open outage at a time, the newest
        outage(store, key, present=None if present is None else absent - present,
               absent=absent, confirmed=confirmed, last_absent=confirmed if back is None
               else max(confirmed, back - 30), recovered=back)
        if back is None:
            open_at = confirmed
    return open_at


def write_runs(store: Store, gaps: Sequence[tuple[float, float]], now: float) -> None:
    """Runs with gaps between them at (age in days, length in seconds); the last one is
    running (alive a few seconds ago). A gap's run before it crashed or stopped cleanly."""
    t = now - 100 * DAY
    for n, (age, length) in enumerate(sorted(gaps, key=lambda g: -g[0])):
        stop = max(t + 60, now - age * DAY)
        run_id = store.start_run(t)
        if n % 2:
            store.stop_run(run_id, stop)
        else:
            store.run_alive(run_id, stop)
        t = min(now - 10, stop + length)
    run_id = store.start_run(t)
    store.run_alive(run_id, now - 5)


def live(store: Store, views: Sequence[AccountView]) -> list[AccountView]:
    """``views`` as the running monitor has them: each account's state as the file has it
    (the monitor decides, then writes), the API's additions marked as such."""
    stored = store.load_accounts()
    api = {AccountKey(a["platform"], a["handle"]) for a in store.watch_additions()}
    for view in views:
        saved = stored.get(view.key)
        view.state = saved.state if saved is not None else AccountState()
        view.source = "api" if view.key in api else "config"
    return list(views)


# ----------------------------------------------------------------- comparing


def same(mine: Availability, theirs: Mapping[str, object], where: object) -> None:
    for name, value in theirs.items():
        got = getattr(mine, name)
        if value is None or got is None or isinstance(value, str):
            assert got == value, (where, name)
        elif name in ("lower", "upper"):
            assert got == pytest.approx(value, rel=1e-12, abs=1e-12), (where, name)
        else:
            assert got == pytest.approx(value, rel=1e-12, abs=1e-6), (where, name)


def agree(figures: Mapping[str, Mapping[str, Availability]],
          platforms: Iterable[Mapping[str, object]], where: object) -> None:
    rows = list(platforms)
    assert list(figures) == [row["platform"] for row in rows], where
    for row in rows:
        for window, theirs in row["availability"].items():  # type: ignore[attr-defined]
            same(figures[row["platform"]][window],  # type: ignore[index]
                 {k: v for k, v in theirs.items() if k in av.Availability.__slots__},
                 (where, row["platform"], window))


def pure_table(store: Store, keys: Sequence[AccountKey], now: float,
               later: Mapping[AccountKey, float]) -> list[dict]:  # type: ignore[type-arg]
    """availability.table on what the store says, per account: the reference of all."""
    horizon = now - max(WINDOWS.values())
    rows: dict[AccountKey, list[object]] = {key: [] for key in keys}
    for o in store.outages_since(horizon):
        if o.key in rows:
            rows[o.key].append(o)
    starts = store.watch_starts(keys)
    first = {key: reports.watched_from(starts.get(key), now) for key in keys}
    gaps = reports.unwatched(store.runs_since(horizon), now)
    table = av.table(rows, now, watched_from=first, unwatched=gaps,  # type: ignore[arg-type]
                     still_absent_at=later)
    return table["platforms"]  # type: ignore[no-any-return]


# ----------------------------------------------------------------- generated histories

ages = st.floats(0.001, 95.0)
outages_of = st.tuples(st.none() | st.floats(1.0, 7200.0), st.floats(60.0, 95 * DAY),
                       st.floats(0.0, 600.0), st.none() | st.floats(1.0, 3 * DAY))
specs = st.builds(
    Spec, st.sampled_from(PLATFORMS),
    st.none() | ages | st.sampled_from([0.5, 1.0, 7.0, 30.0, 90.0, 200.0]),
    st.none() | st.floats(-3 * DAY, 3 * DAY),
    st.lists(outages_of, max_size=3).map(tuple))


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(accounts=st.lists(specs, min_size=1, max_size=25),
       gaps=st.lists(st.tuples(st.floats(0.0, 99.0), st.floats(1.0, 2 * DAY)), max_size=4),
       later_by=st.floats(1.0, 600.0),
       prune_age=st.none() | st.floats(0.5, 120.0),
       step=st.floats(0.0, 40 * DAY),
       seed=st.integers(0, 2**16))
def test_the_sums_are_the_reports_platform_figures(
        accounts: list[Spec], gaps: list[tuple[float, float]], later_by: float,
        prune_age: float | None, step: float, seed: int) -> None:
    store = Store(":memory:")
    keys = [AccountKey(spec.platform, f"h{n}") for n, spec in enumerate(accounts)]
    write_runs(store, gaps, NOW)
    later: dict[AccountKey, float] = {}
    opened = set()
    for key, spec in zip(keys, accounts, strict=True):
        open_at = write(store, key, spec, NOW)
        if open_at is not None:
            opened.add(key)
            if (seed + len(key.handle)) % 3:
                later[key] = min(NOW, open_at + later_by)
    if prune_age is not None:
        for key, spec in zip(keys, accounts, strict=True):
            if spec.first is not None and spec.first > prune_age and not spec.outages:
                decided(store, key, NOW - prune_age * DAY + 1, first=False)
        prune(store, NOW - prune_age * DAY)
    views = live(store, [AccountView(key, False, AccountState()) for key in keys])
    sums = reports.PlatformSums()
    got = sums.refresh(store, views, NOW, still_absent_at=later)
    report = reports.availability(store, keys, NOW, still_absent_at=later)
    agree(got, report["platforms"], "first")
    agree(got, pure_table(store, keys, NOW, later), "pure")

    # The file moves on under the kept starts: the undecided get decided, additions are
    # made again, history is pruned (in the window too), a new outage opens; then later.
    now = NOW + step
    for n, (key, spec) in enumerate(zip(keys, accounts, strict=True)):
        if spec.first is None and n % 2:
            decided(store, key, NOW + step / 2)
        if spec.added is not None and n % 3 == 0:
            added(store, key, NOW + step / 3)
        if n % 4 == 1 and spec.first is not None:
            decided(store, key, NOW + step / 4, first=False)
    if keys[0] not in opened and accounts[0].first is not None:
        outage(store, keys[0], present=now - 900, absent=now - 800, confirmed=now - 700,
               last_absent=now - 700, recovered=None)
    prune(store, now - (seed % 40) * DAY)
    store.run_alive(store.runs_since(0.0)[-1].id, now - 5)
    got = sums.refresh(store, live(store, views), now, still_absent_at=later,
                       pruned_through=now - (seed % 40) * DAY)
    agree(got, reports.availability(store, keys, now, still_absent_at=later)["platforms"],
          "second")


def test_the_hand_computed_history_of_test_reports(history: Store) -> None:  # noqa: F811
    """The history test_reports computes by hand gives the same platform figures."""
    store, keys = history, [ALICE, BOB, CAROL]
    later = {CAROL: THEN - 60}
    got = reports.PlatformSums().refresh(
        store, live(store, [AccountView(k, True, AccountState()) for k in keys]), THEN,
        still_absent_at=later)
    agree(got, reports.availability(store, keys, THEN, still_absent_at=later)["platforms"],
          "by hand")
    x = got["x"]["24h"]  # alice + bob: certainly 840, possibly 1500 + 600, two days
    assert (x.certainly_down, x.possibly_down, x.unwatched, x.observed, x.outages) == (
        840, 2100, 1200, 2 * DAY, 1)


# ----------------------------------------------------------------- what is read again


class CountingStore(Store):
    """A real store that records the keys each watch_starts call asks about."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.asked: list[list[AccountKey]] = []

    def watch_starts(self, keys: Iterable[AccountKey]) -> dict[AccountKey, WatchStart]:
        listed = list(keys)
        self.asked.append(listed)
        return super().watch_starts(listed)

    def take(self) -> set[AccountKey]:
        asked = {key for call in self.asked for key in call}
        self.asked.clear()
        return asked


def test_a_later_refresh_reads_only_the_starts_not_settled(
        monkeypatch: pytest.MonkeyPatch) -> None:
    store = CountingStore(":memory:")
    store.start_run(NOW - 100 * DAY)
    quiet = [AccountKey("x", f"q{i}") for i in range(40)]
    for n, key in enumerate(quiet):
        decided(store, key, NOW - (3 * n + 1) * DAY)  # q0..q29 in the 90 days, then before
    gone = AccountKey("x", "gone")
    decided(store, gone, NOW - 10 * DAY)
    outage(store, gone, present=NOW - 3000, absent=NOW - 2900, confirmed=NOW - 2800,
           last_absent=NOW - 2800, recovered=None)
    never = AccountKey("bsky", "never")
    api_first = AccountKey("bsky", "api")  # added, then decided: its start is the addition
    added(store, api_first, NOW - 2 * DAY)
    decided(store, api_first, NOW - DAY)
    blind = AccountKey("bsky", "blind")  # never decided, but blind: an event of its own
    blind_state = AccountState(State.UNKNOWN, blind=True, since=NOW - 3 * DAY)
    store.decide(blind, blind_state, [Event(EventKind.BLIND, blind, NOW - DAY, State.UNKNOWN,
                                            State.UNKNOWN)], None, NOW - DAY)
    keys = [*quiet, gone, never, api_first, blind]
    views = live(store, [AccountView(key, False, AccountState()) for key in keys])
    assert views[keys.index(blind)].state.blind
    metrics = Metrics(list)
    monkeypatch.setattr(reports, "LOOKUP_CHUNK", 16)  # several chunks

    metrics.refresh_availability(store, views, NOW)
    # every start but the one of an account from the config never decided: none is written
    assert store.take() == set(keys) - {never}
    assert max(map(len, [*store.asked, []])) <= 16
    metrics.refresh_availability(store, views, NOW + 60)
    # the addition older than its first decision, the one with an outage
    assert store.take() == {api_first, gone}
    decided(store, never, NOW + 90)
    live(store, views)
    metrics.refresh_availability(store, views, NOW + 120)
    assert store.take() == {never, api_first, gone}  # its first decision is in
    metrics.refresh_availability(store, views, NOW + 180)
    assert store.take() == {api_first, gone}  # never is settled now

    # A pruning may have taken a first decision: the kept starts inside the window (90 d)
    # that it may have reached are read again, once; those before the window give the
    # same figures either way.
    decided(store, quiet[2], NOW + 200, first=False)
    prune(store, NOW - 2.5 * DAY)  # the others keep their only row: only q2's first goes
    metrics.refresh_availability(store, views, NOW + 240, pruned_through=NOW - 2.5 * DAY)
    assert store.take() == {api_first, gone, *quiet[1:30]}  # q0 began after the cutoff
    metrics.refresh_availability(store, views, NOW + 300, pruned_through=NOW - 2.5 * DAY)
    assert store.take() == {api_first, gone}
    assert views[2].watched_from == -math.inf  # q2: before anything kept
    report = reports.availability(store, keys, NOW + 300)
    sample = metrics.registry.get_sample_value
    for row in report["platforms"]:
        for window, f in row["availability"].items():
            labels = {"platform": row["platform"], "window": window}
            assert sample("accmon_availability_lower_ratio", labels) == pytest.approx(
                f["lower"], rel=1e-12)
            assert sample("accmon_availability_upper_ratio", labels) == pytest.approx(
                f["upper"], rel=1e-12)


# ----------------------------------------------------------------- the running monitor


async def test_the_monitor_refreshes_its_gauges_from_the_live_views(tmp_path: Path) -> None:
    """A real monitor on a real file: the refresh thread settles every view's start and
    sets the gauges a fresh report gives, the down account's live sighting included."""
    path = tmp_path / "state.db"
    async with FakeMastodon({"alice": "present", "carol": "gone"}).running() as base:
        config = mastodon_config(base, ["alice", "carol"], state_path=str(path))
        async with running_monitor(config) as mon:
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP
                           and state_of(mon, "masto", "carol") is State.DOWN,
                           what="alice up and carol down")
            carol = mon.accounts[AccountKey("masto", "carol")]
            await wait_for(lambda: (carol.state.last_absent_at or 0)
                           > (carol.state.first_absent_at or math.inf) + 0.3,
                           what="carol seen absent after her confirmation")
            assert mon.writer is not None
            await mon.writer.flush(5.0)
            await wait_for(lambda: mon._availability is None or mon._availability.done(),
                           what="no refresh under way")
            now = time.time()
            # the sighting the refresh snapshots (nothing runs in between)
            absent = reports.still_absent(mon.accounts.values())
            mon._refresh_availability(now)
            assert mon._availability is not None and absent
            await mon._availability
            assert all(not math.isnan(w.watched_from) for w in mon.accounts.values())
            assert mon.store is not None
            report = reports.availability(mon.store, list(mon.accounts), now,
                                          still_absent_at=absent)
            # A pruning round tells the next refresh up to when it may have pruned.
            keep = mon.config.monitor.retention.transitions
            assert keep is not None and mon._pruned_through is None
            before = time.time()
            mon._count_pruned({"transitions": 0, "outbox": 3})
            assert mon._pruned_through is None  # no transition went
            mon._count_pruned({"transitions": 2})
            assert before - keep <= mon._pruned_through <= time.time() - keep
    sample = mon.metrics.registry.get_sample_value
    (row,) = report["platforms"]
    for window, f in row["availability"].items():
        labels = {"platform": "masto", "window": window}
        assert sample("accmon_availability_lower_ratio", labels) == pytest.approx(
            f["lower"], rel=1e-12)
        assert sample("accmon_availability_upper_ratio", labels) == pytest.approx(
            f["upper"], rel=1e-12)
    assert row["availability"]["24h"]["outages"] == 1  # carol's
    assert row["availability"]["24h"]["certainly_down"] > 0
