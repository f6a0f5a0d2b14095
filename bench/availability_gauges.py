#!/usr/bin/env python3
"""One refresh of the per-platform availability gauges: the old path against the new.

    .venv/bin/python bench/availability_gauges.py [--sizes 10000,100000,1000000]

For each size, a state file (WAL, on a temp directory) holds that many accounts on four
platforms: first decisions spread over the last 200 days (about half before the 90-day
window), 0.5 % never decided, 20 API additions, 0.1 % with an outage in the window (a
third still open, some across a window's edge), and three gaps between runs (a crash, a
restart). Each path runs in a forked child on its own read connection, as the monitor's
refresh thread does; timed there: wall and CPU seconds of one refresh, and the peak RSS it
added (``VmHWM`` after, minus the RSS before, the peak reset through ``clear_refs``):

- ``old``: ``reports.availability(store, keys, ...)``, the per-account table the gauges
  were read from (what every refresh cost);
- ``new first``: ``reports.PlatformSums.refresh`` on fresh views: every watch start read
  (chunks of ``reports.LOOKUP_CHUNK`` keys), as after a start;
- ``new steady``: the next refresh on the same views: only the starts not settled and the
  accounts with outages are read; the rest is a pass over the views (its Python
  allocations' peak too, from tracemalloc in a run of its own);
- ``loop side``: what the event loop does before handing the refresh over: the old key
  list and live sightings over every view, against the new snapshot of the table and
  sightings of the absent accounts only.

Both paths' figures are compared (the largest relative difference is printed). A
benchmark, not a test: the machine is shared and noisy, so compare within a run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor import reports  # noqa: E402
from monitor.metrics import AccountView  # noqa: E402
from monitor.model import AccountKey, AccountState, State  # noqa: E402
from monitor.store import AuditEntry, Store  # noqa: E402

DAY = 86_400.0
PLATFORMS = ("x", "bsky", "mastodon", "github")
STEADY = AccountState(State.UP)


def key_of(i: int) -> AccountKey:
    return AccountKey(PLATFORMS[i % 4], f"user{i:07d}")


def fill(path: Path, n: int, now: float) -> dict[AccountKey, float]:
    """The history; returns the open outages' live sightings (still_absent_at)."""
    rng = random.Random(n)
    store = Store(path)
    first = {i: now - rng.uniform(0.01, 200) * DAY for i in range(n) if i % 200 != 7}
    with store.transaction():
        store.db.executemany(
            "INSERT INTO transitions (platform, handle, kind, at, old_state, new_state,"
            " reason, outage_id, details) VALUES (?, ?, 'transition', ?, 'unknown', 'up',"
            " NULL, NULL, '{}')",
            ((key_of(i).platform, key_of(i).handle, at) for i, at in first.items()))
    for i in range(20):  # API additions, a day before their first decision
        key = key_of(i * 37 + 3)
        store.add_watch({"platform": key.platform, "handle": key.handle},
                        AuditEntry("bench", "watch.add", str(key)),
                        now=first.get(i * 37 + 3, now) - DAY)
    later: dict[AccountKey, float] = {}
    down = [i for i in range(0, n, 1000) if i in first]
    with store.transaction():
        for n_out, i in enumerate(down):
            key = key_of(i)
            absent = max(first[i] + 60, now - rng.uniform(0, 95) * DAY)
            recovered = None if n_out % 3 == 0 else absent + rng.uniform(300, 3 * DAY)
            store.db.execute(
                "INSERT INTO outages (platform, handle, reason, last_seen_present_at,"
                " first_seen_absent_at, confirmed_at, last_seen_absent_at, recovered_at)"
                " VALUES (?, ?, 'suspended', ?, ?, ?, ?, ?)",
                (key.platform, key.handle, absent - 120, absent, absent + 60,
                 absent + 60 if recovered is None else recovered - 30,
                 None if recovered is None or recovered >= now else recovered))
            if recovered is None:
                later[key] = now - 30
    crash = store.start_run(now - 300 * DAY)
    store.run_alive(crash, now - 40 * DAY)
    clean = store.start_run(now - 40 * DAY + 3600)
    store.stop_run(clean, now - 2 * DAY)
    store.run_alive(store.start_run(now - 2 * DAY + 600), now - 10)
    store.db.execute("ANALYZE")
    store.close()
    return later


def status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith(field + ":"))
    return int(line.split()[1])


def in_child(work: Callable[[], Any]) -> dict[str, Any]:
    """Run ``work`` in a forked child: its wall and CPU seconds, the RSS it added, and
    what it returned (JSON)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # the peak RSS starts again from here (not the parent's)
        before = status_kb("VmRSS")
        wall, cpu = time.perf_counter(), time.process_time()
        result = work()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        peak = status_kb("VmHWM")
        with os.fdopen(write, "w") as out:
            json.dump({"wall": wall, "cpu": cpu, "rss_mb": max(0, peak - before) / 1024,
                       "result": result}, out)
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as got:
        body = got.read()
    os.waitpid(pid, 0)
    return json.loads(body)  # type: ignore[no-any-return]


def old_path(path: Path, keys: list[AccountKey], now: float,
             later: dict[AccountKey, float]) -> dict[str, Any]:
    store = Store(path)
    report = reports.availability(store, keys, now, still_absent_at=later)
    store.close()
    return {row["platform"]: {w: [f["lower"], f["upper"], f["observed"]]
                              for w, f in row["availability"].items()}
            for row in report["platforms"]}


def new_path(path: Path, views: list[AccountView], now: float,
             later: dict[AccountKey, float], sums: reports.PlatformSums) -> dict[str, Any]:
    store = Store(path)
    figures = sums.refresh(store, views, now, still_absent_at=later)
    store.close()
    return {p: {w: [a.lower, a.upper, a.observed] for w, a in by.items()}
            for p, by in figures.items()}


def worst_difference(a: dict[str, Any], b: dict[str, Any]) -> float:
    assert a.keys() == b.keys()
    worst = 0.0
    for p in a:
        for w in a[p]:
            for x, y in zip(a[p][w], b[p][w], strict=True):
                assert (x is None) == (y is None), (p, w)
                if x is not None and x != y:
                    worst = max(worst, abs(x - y) / max(abs(x), abs(y)))
    return worst


def loop_side(views: list[AccountView], absent_keys: set[AccountKey]) -> tuple[float, float]:
    """Milliseconds on the event loop before the hand-over: old, new."""
    table = {v.key: SimpleNamespace(view=v) for v in views}
    absent = {"all": absent_keys}
    t = time.perf_counter()
    keys = list(table)
    reports.still_absent(table.values())
    old = time.perf_counter() - t
    t = time.perf_counter()
    watched = list(table.values())
    reports.still_absent(table[k] for ks in absent.values() for k in ks if k in table)
    new = time.perf_counter() - t
    del keys, watched
    return old * 1000, new * 1000


def traced_peak_mb(work: Callable[[], Any]) -> float:
    """The peak of Python allocations while ``work`` runs (tracemalloc: slow, so apart
    from the timed runs; RSS misses memory the allocator had already taken and freed)."""
    tracemalloc.start()
    work()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def first_then_steady(path: Path, views: list[AccountView], now: float,
                      later: dict[AccountKey, float]) -> dict[str, Any]:
    """The new path's first refresh on fresh views, then the next one a minute on."""
    sums = reports.PlatformSums()
    t0, c0 = time.perf_counter(), time.process_time()
    got = new_path(path, views, now, later, sums)
    t1, c1 = time.perf_counter(), time.process_time()
    again = new_path(path, views, now + 60, later, sums)
    t2, c2 = time.perf_counter(), time.process_time()
    return {"first": [t1 - t0, c1 - c0], "steady": [t2 - t1, c2 - c1],
            "figures": got, "again": again}


def one_size(n: int, now: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "state.db"
        t = time.perf_counter()
        later = fill(path, n, now)
        built = time.perf_counter() - t
        keys = [key_of(i) for i in range(n)]
        views = [AccountView(k, False, STEADY) for k in keys]
        old = in_child(lambda: old_path(path, keys, now, later))
        new = in_child(lambda: first_then_steady(path, views, now, later))
        # the steady refresh's own peak: settle the views here, then time one in a child
        sums = reports.PlatformSums()
        new_path(path, views, now, later, sums)
        steady = in_child(lambda: new_path(path, views, now + 60, later, sums))
        traced = in_child(lambda: traced_peak_mb(
            lambda: new_path(path, views, now + 60, later, sums)))
        ms_old, ms_new = loop_side(views, set(later))
    r = new["result"]
    print(f"{n:>9,} {'old':<11} {old['wall']:>8.3f} {old['cpu']:>7.3f} {old['rss_mb']:>8.1f}")
    print(f"{n:>9,} {'new first':<11} {r['first'][0]:>8.3f} {r['first'][1]:>7.3f} "
          f"{new['rss_mb']:>8.1f}")
    print(f"{n:>9,} {'new steady':<11} {steady['wall']:>8.3f} {steady['cpu']:>7.3f} "
          f"{steady['rss_mb']:>8.1f}  (tracemalloc peak {traced['result']:.1f} MB)")
    print(f"{'':>9} old/steady wall {old['wall'] / steady['wall']:.0f}x, old/first "
          f"{old['wall'] / r['first'][0]:.1f}x; figures: worst relative difference "
          f"{worst_difference(old['result'], r['figures']):.1e} (steady a minute on vs "
          f"first: {worst_difference(r['figures'], r['again']):.1e}); loop side "
          f"{ms_old:.1f} ms -> {ms_new:.2f} ms; history written in {built:.1f} s",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    args = parser.parse_args()
    now = time.time()
    print(f"{'accounts':>9} {'path':<11} {'wall s':>8} {'cpu s':>7} {'+RSS MB':>8}")
    for n in (int(s) for s in args.sizes.split(",")):
        one_size(n, now)


if __name__ == "__main__":
    main()
