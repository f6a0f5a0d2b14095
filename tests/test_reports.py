"""monitor.reports: availability tables from a real state file, computed by hand.

Outages are written through ``Store.decide`` (the decision path's own write) and runs
through the store's run methods, all with explicit times, so every figure below is
arithmetic on the comments beside it. A real monitor stopped and started on the same state
file shows its gap as unwatched; ``history --sla`` prints the same table.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import time
from pathlib import Path

import pytest

from monitor import app as app_module
from monitor import availability as av
from monitor import cli, reports
from monitor.fakes.mastodon import FakeMastodon
from monitor.metrics import AccountView, Metrics
from monitor.model import (
    AbsentReason,
    AccountKey,
    AccountState,
    Event,
    EventKind,
    Outage,
    RecoveredDetails,
    State,
    TransitionDetails,
    VanishedDetails,
)
from monitor.runs import RunRecord
from monitor.store import AuditEntry, Run, Store, WatchStart
from tests.conftest import (
    mastodon_config,
    on_virtual_time,
    running_monitor,
    state_of,
    wait_for,
)

DAY = 86_400.0
M = 1_699_920_000.0  # 2023-11-14 00:00:00 UTC
NOW = M + 43_200  # noon: the reports below end here
S = NOW - DAY  # the 24 h window is [S, NOW)
ALICE, BOB, CAROL = AccountKey("x", "alice"), AccountKey("x", "bob"), AccountKey("mastodon",
                                                                                  "carol")


# ----------------------------------------------------------------- writing history


def first_seen(store: Store, key: AccountKey, at: float) -> None:
    """The account's first decision: unknown -> up."""
    store.decide(key, AccountState(State.UP, last_present_at=at, since=at),
                 [Event(EventKind.TRANSITION, key, at, State.UNKNOWN, State.UP,
                        details=TransitionDetails(previous_since=None))], None, at)


def outage(store: Store, key: AccountKey, *, present: float, absent: float, confirmed: float,
           last_absent: float | None = None, recovered: float | None = None) -> int:
    """An outage as the state machine decides it: confirmed (the row's last absent
    sighting is the confirmation), then, if ``recovered``, closed with ``last_absent``."""
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
    return down.outage_id


def run(store: Store, started: float, *, alive: float | None = None,
        stopped: float | None = None) -> int:
    run_id = store.start_run(started)
    if alive is not None:
        store.run_alive(run_id, alive)
    if stopped is not None:
        store.stop_run(run_id, stopped)
    return run_id


@pytest.fixture
def history(tmp_path: Path) -> Store:
    """Three accounts, two outages in reach, a crash and a restart.

    alice (x): watched since NOW-120d. Outage A0 over long before the 90 d window.
      Outage A1 across the 24 h window's start: present S-600, absent S-540 .. S+840
      (confirmed S-480), present again S+900.
    bob (x): added through the API at NOW-36h, first decided 5 s later.
    carol (mastodon): watched since NOW-30d; open outage: present NOW-7200, absent from
      NOW-7140, confirmed NOW-7080 (the row's last absent sighting).
    runs: r1 from NOW-30d-100, crashed (last alive NOW-5d); r2 NOW-5d+1200 .. NOW-3600
      (clean stop); r3 from NOW-3000, running (alive NOW-30).
      gaps: [NOW-5d, NOW-5d+1200) = 1200 s and [NOW-3600, NOW-3000) = 600 s.
    """
    store = Store(tmp_path / "state.db")
    first_seen(store, ALICE, NOW - 120 * DAY)
    outage(store, ALICE, present=NOW - 101 * DAY, absent=NOW - 101 * DAY + 60,
           confirmed=NOW - 101 * DAY + 120, last_absent=NOW - 100 * DAY - 60,
           recovered=NOW - 100 * DAY)
    first_seen(store, CAROL, NOW - 30 * DAY)
    store.add_watch({"platform": "x", "handle": "bob"}, AuditEntry("alice", "watch.add", "x/bob"),
                    now=NOW - 36 * 3600)
    first_seen(store, BOB, NOW - 36 * 3600 + 5)
    run(store, NOW - 30 * DAY - 100, alive=NOW - 5 * DAY)
    run(store, NOW - 5 * DAY + 1200, stopped=NOW - 3600)
    outage(store, ALICE, present=S - 600, absent=S - 540, confirmed=S - 480, last_absent=S + 840,
           recovered=S + 900)
    run(store, NOW - 3000, alive=NOW - 30)
    outage(store, CAROL, present=NOW - 7200, absent=NOW - 7140, confirmed=NOW - 7080)
    return store


def row_of(report: dict, key: AccountKey) -> dict:  # type: ignore[type-arg]
    (row,) = [r for r in report["accounts"] if (r["platform"], r["handle"]) == (key.platform,
                                                                               key.handle)]
    return row  # type: ignore[no-any-return]


def figures(report: dict, key: AccountKey) -> dict:  # type: ignore[type-arg]
    return row_of(report, key)["availability"]  # type: ignore[no-any-return]


def platform(report: dict, name: str) -> dict:  # type: ignore[type-arg]
    (row,) = [r for r in report["platforms"] if r["platform"] == name]
    return row["availability"]  # type: ignore[no-any-return]


def seconds(f: dict) -> tuple[float, float, float, float, int]:  # type: ignore[type-arg]
    return (f["certainly_down"], f["possibly_down"], f["unwatched"], f["observed"],
            f["outages"])


# ----------------------------------------------------------------- hand-computed tables


def test_the_table_per_account_and_platform_by_hand(history: Store) -> None:
    report = reports.availability(history, [ALICE, BOB, CAROL], NOW,
                                  still_absent_at={CAROL: NOW - 60})
    assert report["unwatched"] == [{"from": NOW - 5 * DAY, "to": NOW - 5 * DAY + 1200},
                                   {"from": NOW - 3600, "to": NOW - 3000}]
    alice, bob, carol = figures(report, ALICE), figures(report, BOB), figures(report, CAROL)

    # alice 24h [S, NOW): A1 certainly [S-540, S+840) -> [S, S+840) = 840 inside;
    # possibly [S-600, S+900) -> [S, S+900) = 900, plus the gap [NOW-3600, NOW-3000) = 600
    assert seconds(alice["24h"]) == (840, 1500, 600, DAY, 1)
    assert alice["24h"]["lower"] == pytest.approx(1 - 1500 / DAY)  # 0.982638...
    assert alice["24h"]["upper"] == pytest.approx(1 - 840 / DAY)  # 0.990277...
    assert alice["24h"]["text"] == "98.263% to 99.027%"
    assert (alice["24h"]["lower_text"], alice["24h"]["upper_text"]) == ("98.263%", "99.027%")
    # alice 7d: all of A1: certainly 540 + 840 = 1380, possibly 600 + 900 = 1500, plus both
    # gaps 1200 + 600 = 1800 -> 3300
    assert seconds(alice["7d"]) == (1380, 3300, 1800, 7 * DAY, 1)
    assert alice["7d"]["lower"] == pytest.approx(1 - 3300 / (7 * DAY))  # 0.994543...
    # 90d: the same seconds over 90 days; A0 (recovered at NOW-100d) is outside
    assert seconds(alice["90d"]) == (1380, 3300, 1800, 90 * DAY, 1)

    # bob: watched from his addition (NOW-36h, before his first decision at +5 s)
    assert row_of(report, BOB)["watched_from"] == NOW - 36 * 3600
    assert [(r["platform"], r["handle"]) for r in report["accounts"]] == [
        ("mastodon", "carol"), ("x", "alice"), ("x", "bob")]
    assert seconds(bob["24h"]) == (0, 600, 600, DAY, 0)  # only the restart gap
    assert bob["24h"]["text"] == "99.305% to 100%"  # 1 - 600/86400 = 0.993055...
    # 7d: observed since NOW-36h = 129600 s; the crash gap (NOW-5d) was before him
    assert seconds(bob["7d"]) == (0, 600, 600, 129_600, 0)
    assert seconds(bob["30d"]) == seconds(bob["7d"])

    # carol 24h: still absent at NOW-60 (the live view), so certainly [NOW-7140, NOW-60) =
    # 7080, less the gap inside it (600) = 6480; possibly [NOW-7200, NOW) = 7200 (the gap
    # is inside it)
    assert seconds(carol["24h"]) == (6480, 7200, 600, DAY, 1)
    # 7d: + the crash gap: possibly 7200 + 1200 = 8400
    assert seconds(carol["7d"]) == (6480, 8400, 1800, 7 * DAY, 1)
    # 90d: watched since NOW-30d only
    assert seconds(carol["90d"]) == (6480, 8400, 1800, 30 * DAY, 1)

    # platform x 24h: alice + bob: certainly 840 + 0, possibly 1500 + 600, observed 2 days
    x = platform(report, "x")
    assert seconds(x["24h"]) == (840, 2100, 1200, 2 * DAY, 1)
    assert x["24h"]["lower"] == pytest.approx(1 - 2100 / (2 * DAY))  # 0.987847...
    assert x["24h"]["text"] == "98.784% to 99.513%"  # upper 1 - 840/172800 = 0.995138...
    # 7d: certainly 1380, possibly 3300 + 600, observed 604800 + 129600
    assert seconds(x["7d"]) == (1380, 3900, 2400, 7 * DAY + 129_600, 1)
    assert seconds(platform(report, "mastodon")["24h"]) == (6480, 7200, 600, DAY, 1)


def test_an_open_outage_is_certain_only_to_its_row_without_the_live_sighting(
        history: Store) -> None:
    carol = figures(reports.availability(history, [CAROL], NOW), CAROL)
    # certainly [NOW-7140, NOW-7080) = 60 only; possibly unchanged
    assert seconds(carol["24h"]) == (60, 7200, 600, DAY, 1)


def test_a_window_can_end_in_the_past(history: Store) -> None:
    """The 24 h ending at S+1000: A1 is [S-86400+..) .. all of it inside, and the later
    gaps and carol's outage are not."""
    end = S + 1000
    alice = figures(reports.availability(history, [ALICE], end, {"24h": DAY}), ALICE)
    assert seconds(alice["24h"]) == (1380, 1500, 0, DAY, 1)


def test_the_outages_query_reads_only_what_touches_the_window(history: Store) -> None:
    rows = history.outages_since(NOW - 90 * DAY)
    assert [(o.key, o.recovered_at) for o in rows] == [(ALICE, S + 900), (CAROL, None)]
    assert [o.key for o in history.outages_since(NOW - 90 * DAY, ALICE)] == [ALICE]
    assert history.outages_since(S + 901, ALICE) == []  # recovered before it


def test_the_account_page_has_a_bar_of_ninety_days(history: Store) -> None:
    page = reports.account_report(history, ALICE, NOW)
    days = page["days"]
    assert len(days) == 90
    assert (days[0]["day"], days[-1]["day"]) == ("2023-08-17", "2023-11-14")
    today, yesterday = days[-1], days[-2]
    # today [M, NOW): the restart gap only
    assert (today["certainly_down"], today["possibly_down"], today["unwatched"],
            today["observed"]) == (0, 600, 600, 43_200)
    # yesterday [M-1d, M): all of A1 (S = M-12h)
    assert (yesterday["certainly_down"], yesterday["possibly_down"],
            yesterday["unwatched"], yesterday["observed"]) == (1380, 1500, 0, DAY)
    # the crash at NOW-5d = M-4d12h: in the cell [M-5d, M-4d)
    assert (days[-6]["unwatched"], days[-6]["possibly_down"]) == (1200, 1200)
    assert all(d["possibly_down"] == 0 for d in days[:-6])
    assert page["availability"]["24h"]["text"] == "98.263% to 99.027%"
    assert [o.recovered_at for o in page["outages"]] == [S + 900]
    assert page["watched_from"] == NOW - 120 * DAY


def test_an_account_with_no_decision_yet_has_no_data_not_a_perfect_record(
        history: Store) -> None:
    nobody = AccountKey("x", "nobody")
    f = figures(reports.availability(history, [nobody], NOW), nobody)
    assert (f["24h"]["lower"], f["24h"]["upper"], f["24h"]["text"]) == (None, None, "n/a")


# ----------------------------------------------------------------- the pure helpers


def test_gaps_between_runs_crashes_and_a_run_that_stopped_telling() -> None:
    runs = [Run(1, 100.0, 400.0),  # crashed: alive until 400
            Run(2, 500.0, 900.0, 900.0),  # clean stop at 900
            Run(3, 1000.0, 1990.0)]  # alive 10 s before now: still running
    assert reports.unwatched(runs, 2000.0) == [(400.0, 500.0), (900.0, 1000.0)]
    # at 2200 the last one has not been alive for 210 s (> 150): it stopped at 1990
    assert reports.unwatched(runs, 2200.0) == [(400.0, 500.0), (900.0, 1000.0),
                                               (1990.0, 2200.0)]
    # a stopped monitor: the time since it stopped nobody watched
    assert reports.unwatched([Run(1, 0.0, 50.0, 60.0)], 100.0) == [(60.0, 100.0)]
    # overlapping runs (two processes on one file) cover their union
    assert reports.unwatched([Run(1, 0.0, 500.0), Run(2, 100.0, 200.0, 200.0)], 500.0) == []
    assert reports.unwatched([], 100.0) == []  # before the first run: not known


def test_watched_from_prefers_the_first_decision_or_the_addition() -> None:
    assert reports.watched_from(WatchStart(100.0, True, None), 999.0) == 100.0
    assert reports.watched_from(WatchStart(100.0, True, 90.0), 999.0) == 90.0
    assert reports.watched_from(WatchStart(None, False, 90.0), 999.0) == 90.0
    # its first transitions were pruned: watched since before anything kept
    assert reports.watched_from(WatchStart(100.0, False, None), 999.0) is None
    assert reports.watched_from(WatchStart(), 999.0) == 999.0  # never decided: no data
    assert reports.watched_from(None, 999.0) == 999.0


def test_the_live_absent_sightings_come_from_down_accounts_only() -> None:
    views = [AccountView(ALICE, True, AccountState(State.DOWN, last_absent_at=50.0)),
             AccountView(BOB, True, AccountState(State.SUSPECT, last_absent_at=60.0)),
             AccountView(CAROL, True, AccountState(State.UP))]
    assert reports.still_absent(views) == {ALICE: 50.0}


def _random_outages(rng: random.Random, key: AccountKey, end: float) -> list[Outage]:
    rows = []
    for n in range(rng.choice([0, 0, 1, 2, 3])):
        absent = end - rng.uniform(0, 40 * DAY)
        present = None if rng.random() < 0.2 else absent - rng.uniform(1, 3600)
        confirmed = absent + rng.uniform(0, 120)
        recovered = None if rng.random() < 0.3 else confirmed + rng.uniform(1, 3 * DAY)
        rows.append(Outage(n + 1, key, "suspended", present, absent, confirmed,
                           confirmed if recovered is None else recovered - 30, recovered))
    return rows


def test_the_fast_table_gives_the_figures_of_availability_table() -> None:
    """reports.table takes shortcuts (gaps apart from an account's outages added as
    seconds, accounts without outages computed once per start); the figures must be
    availability.table's, for any history."""
    rng = random.Random(11)
    for case in range(60):
        end = 1e9
        keys = [AccountKey(rng.choice("ab"), f"h{i}") for i in range(12)]
        outages = {k: _random_outages(rng, k, end) for k in keys}
        starts = {k: end - rng.uniform(0, 60 * DAY) for k in keys if rng.random() < 0.5}
        gaps = []
        t = end - 50 * DAY
        while t < end:
            t += rng.uniform(600, 5 * DAY)
            gaps.append((t, t + rng.uniform(1, 7200)))
        later = {k: end - rng.uniform(0, 600) for k in keys if rng.random() < 0.3}
        fast = reports.table(outages, end, watched_from=starts, unwatched=gaps,
                             still_absent_at=later)
        slow = av.table(outages, end, watched_from=starts, unwatched=gaps,
                        still_absent_at=later)
        for mine, theirs in zip(fast["accounts"] + fast["platforms"],
                                slow["accounts"] + slow["platforms"], strict=True):
            for window, f in theirs["availability"].items():
                got = {name: mine["availability"][window][name] for name in f}
                assert got == pytest.approx(f, abs=1e-6), (case, theirs.get("handle"), window)


# ----------------------------------------------------------------- gauges


def test_the_gauges_carry_each_platforms_bounds(history: Store) -> None:
    metrics = Metrics(list)
    metrics.refresh_availability(history, [ALICE, BOB, CAROL], NOW,
                                 still_absent_at={CAROL: NOW - 60})
    sample = metrics.registry.get_sample_value
    assert sample("accmon_availability_lower_ratio", {"platform": "x", "window": "24h"}) \
        == pytest.approx(1 - 2100 / (2 * DAY))
    assert sample("accmon_availability_upper_ratio", {"platform": "x", "window": "24h"}) \
        == pytest.approx(1 - 840 / (2 * DAY))
    assert sample("accmon_availability_upper_ratio",
                  {"platform": "mastodon", "window": "90d"}) == pytest.approx(
                      1 - 6480 / (30 * DAY))
    # a platform no longer watched loses its series at the next refresh
    metrics.refresh_availability(history, [CAROL], NOW)
    assert sample("accmon_availability_lower_ratio", {"platform": "x", "window": "24h"}) is None


# ----------------------------------------------------------------- history --sla


def test_history_sla_prints_the_table(history: Store, capsys: pytest.CaptureFixture[str]
                                      ) -> None:
    code = cli.main(["history", "--sla", "--state", history.path, "--window", "24h",
                     "--end", "2023-11-14T12:00:00Z"])
    out = capsys.readouterr().out
    assert code == 0
    lines = out.splitlines()
    alice = next(line for line in lines if line.startswith("x/alice "))
    assert alice.split() == ["x/alice", "24h", "98.263%", "to", "99.027%", "840", "s",
                             "1500", "s", "600", "s", "86400", "s"]
    # no live view here: carol is certainly down only to the row's sighting (60 s)
    carol = next(line for line in lines if line.startswith("mastodon/carol "))
    assert carol.split()[5:7] == ["60", "s"]
    platform_x = next(line for line in lines if line.startswith("x "))
    assert "98.784% to 99.513%" in platform_x
    assert "1 gap(s), 600 s" in out  # [NOW-3600, NOW-3000), the only one in 24 h


def test_history_sla_json_is_the_report(history: Store, capsys: pytest.CaptureFixture[str]
                                        ) -> None:
    assert cli.main(["history", "--sla", "--json", "--state", history.path, "--window", "7d",
                     "--end", str(NOW), "--platform", "x"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body == reports.availability(history, [ALICE, BOB], NOW, {"7d": 7 * DAY})
    assert [r["handle"] for r in body["accounts"]] == ["alice", "bob"]
    assert seconds(body["accounts"][0]["availability"]["7d"]) == (1380, 3300, 1800, 7 * DAY, 1)


def test_history_sla_refuses_a_bad_end_in_one_line(
        history: Store, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["history", "--sla", "--state", history.path, "--end", "yesterday"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("--end: 'yesterday' is not a time") and len(err.splitlines()) == 1


# ----------------------------------------------------------------- the run record


@on_virtual_time
async def test_the_run_record_starts_stays_alive_every_minute_and_stops() -> None:
    loop = asyncio.get_running_loop()

    def clock() -> float:
        return NOW + loop.time()

    store = Store(":memory:")
    record, refreshed = RunRecord(), list[float]()
    record.start(store, clock())
    task = asyncio.create_task(record.keep_alive(lambda: store, clock, then=refreshed.append))
    await asyncio.sleep(185)
    (alive,) = store.runs_since(0.0)
    assert (alive.started_at, alive.alive_at, alive.stopped_at) == (NOW, NOW + 180, None)
    assert refreshed == [NOW, NOW + 60, NOW + 120, NOW + 180]  # at once, then each minute
    task.cancel()
    record.stop(store, clock())
    (done,) = store.runs_since(0.0)
    assert (done.alive_at, done.stopped_at) == (NOW + 185, NOW + 185)
    store.run_alive(done.id, NOW + 999)  # a stopped run is not moved on
    assert store.runs_since(0.0) == [done]


def test_a_refused_start_is_written_later_with_its_real_start(tmp_path: Path) -> None:
    """The file is locked when the monitor starts: the run record waits, it does not
    stop the monitor, and the next alive tick writes the row with the start time."""
    store = Store(tmp_path / "state.db")
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    record = RunRecord()
    assert record.start(store, NOW) is None
    other.execute("ROLLBACK")
    record.alive(store, NOW + 60)
    (row,) = store.runs_since(0.0)
    assert (row.started_at, row.alive_at, row.stopped_at) == (NOW, NOW + 60, None)
    assert record.run_id == row.id


# ----------------------------------------------------------------- a real restart


RUNS_WIRED = "RunRecord" in Path(app_module.__file__).read_text(encoding="utf-8")


@pytest.mark.skipif(not RUNS_WIRED, reason="monitor/app.py does not record runs yet "
                    "(monitor.runs.RunRecord; see the H-sla report for the calls)")
async def test_a_monitor_stopped_and_started_again_leaves_its_gap_unwatched(
        tmp_path: Path) -> None:
    key = AccountKey("masto", "alice")
    async with FakeMastodon({"alice": "present"}).running() as base:
        config = mastodon_config(base, ["alice"], state_path=str(tmp_path / "state.db"))
        async with running_monitor(config) as first:
            await wait_for(lambda: state_of(first, "masto", "alice") is State.UP,
                           what="alice up")
        async with running_monitor(config) as second:
            await wait_for(lambda: state_of(second, "masto", "alice") is State.UP,
                           what="alice up again")
            assert second.store is not None
            stopped, running = second.store.runs_since(0.0)
            assert stopped.stopped_at is not None and running.stopped_at is None
            now = time.time()
            report = reports.availability(second.store, [key], now, {"24h": DAY})
    gap = running.started_at - stopped.stopped_at
    assert gap > 0
    assert report["unwatched"] == [{"from": stopped.stopped_at, "to": running.started_at}]
    (row,) = report["accounts"]
    f = row["availability"]["24h"]
    # up all along, except while nobody watched: possibly down exactly the gap
    assert (f["certainly_down"], f["outages"]) == (0, 0)
    assert f["possibly_down"] == pytest.approx(gap) and f["unwatched"] == pytest.approx(gap)
    assert f["observed"] == pytest.approx(now - row["watched_from"])
    assert stopped.started_at <= row["watched_from"] < stopped.stopped_at
    assert f["lower"] < 1.0 and f["upper"] == 1.0
