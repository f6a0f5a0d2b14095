#!/usr/bin/env python3
"""Loading a big watchlist: time and peak memory of real processes, per account.

    .venv/bin/python bench/watchlist_load.py [--sizes 10000,100000,1000000]
        [--formats csv,jsonl,yaml] [--run 1000000] [--profile 100000]

1. For each size and format, a generated watchlist (X accounts with ids, 1 % protected, a
   third with a team, every one a ``tier`` label: the shape of a real list) and
   ``python -m monitor check-config`` on it as a subprocess: wall time, and peak RSS from
   ``wait4`` (the child's own ``ru_maxrss``). ``yaml`` puts the accounts under ``accounts:``;
   ``csv`` and ``jsonl`` in ``accounts_file``.
2. ``--run N`` (0 skips): ``python -m monitor run --port 0`` on the CSV watchlist of N
   accounts, with a state file in a temporary directory, stopped (SIGTERM) once it logs
   ``watching`` (the watchlist is loaded, every account scheduled, the HTTP server up, the
   first probes under way): seconds until then, peak RSS, and RSS sampled from /proc every
   0.1 s at each log line, so the step where memory goes is visible. The platform points at
   a refused loopback port with a one-hour interval: probes cost nothing but their error.
   Unless ``--no-settle``, it first runs on for the first results' window the ``watching``
   line states and 10 s more, until every account has had its first answer and holds a
   state of its own, as a long run does: RSS and peak RSS then. ``--answer present`` points
   the platform at the X fake (``monitor.fakes.x``, its own process) with every account
   present instead, and waits on until none is unknown (each first sighting a decision
   written): the steady state of a healthy watchlist.
3. Memory per watched account: the peak RSS of each run over N, and the marginal cost
   between the two largest sizes (peak difference / accounts difference), which leaves
   the interpreter and the imports out.
4. ``watchfile.read`` in this process on the largest CSV and JSON lines files, with the
   fast path (plain rows built without the model) and with every row through the model.
5. ``--profile N`` (0 skips): in this process, tracemalloc of ``load_config`` and of
   ``Monitor.start`` on N accounts, the allocations still held afterwards grouped by the
   line that made them (the top ones, in MB and bytes per account), and cProfile of
   ``Monitor.start``'s top functions by own time.

A benchmark, not a test: the machine is shared and noisy; ratios of one run count.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from throughput import (  # noqa: E402 (bench/ is found through sys.path)
    free_port,
    proc_rss_mb,
    samples,
    serve_fake,
    stop,
    wait_port,
)

from monitor.config import MAX_CONFIG_BYTES  # noqa: E402 (after the sys.path line)

PLATFORM = ("platforms:\n  x:\n    probe: x\n    base_url: http://127.0.0.1:{port}\n"
            "    token: ${{BENCH_X_TOKEN:-}}\n"
            "    rate_per_second: 100000\n    burst: 1000\n    concurrency: 16\n")


def header(state: str) -> str:
    return (f"monitor:\n  listen_port: 0\n  state_path: {state}\n  log_format: json\n"
            "defaults:\n  interval: 1h\n  staleness: 2h\n  timeout: 10s\n")


def account(i: int) -> dict[str, Any]:
    row: dict[str, Any] = {"platform": "x", "handle": f"user{i}", "id": str(10**9 + i)}
    if i % 100 == 0:
        row["protected"] = True
    if i % 3 == 0:
        row["team"] = "core"
    row["labels"] = {"tier": str(i % 5)}
    return row


def write_watchlist(directory: Path, size: int, kind: str, port: int) -> Path:
    """The config (and its accounts file) for ``size`` accounts in ``kind``."""
    config = directory / f"{kind}-{size}.yaml"
    text = header(str(directory / f"state-{kind}-{size}.db")) + PLATFORM.format(port=port)
    if kind == "yaml":
        with config.open("w") as f:
            f.write(text + "accounts:\n")
            for i in range(size):
                a = account(i)
                f.write(f"  - platform: x\n    handle: {a['handle']}\n    id: '{a['id']}'\n"
                        + ("    protected: true\n" if a.get("protected") else "")
                        + (f"    team: {a['team']}\n" if a.get("team") else "")
                        + f"    labels: {{tier: '{a['labels']['tier']}'}}\n")
                if f.tell() > MAX_CONFIG_BYTES:
                    break
        return config
    name = f"accounts-{size}.{kind}"
    with (directory / name).open("w") as f:
        if kind == "csv":
            f.write("platform,handle,id,protected,team,label.tier\n")
        for i in range(size):
            a = account(i)
            if kind == "csv":
                f.write(f"x,{a['handle']},{a['id']},{'true' if a.get('protected') else ''},"
                        f"{a.get('team', '')},{a['labels']['tier']}\n")
            else:
                f.write(json.dumps(a) + "\n")
    config.write_text(text + f"accounts_file: {name}\n")
    return config


def refused_port() -> int:
    import socket

    with socket.socket() as s:  # bound then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_child(proc: subprocess.Popen[bytes]) -> tuple[int, float]:
    """(exit status, peak RSS in MB) of a finished child, from wait4."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024


def check_config(config: Path) -> tuple[float, float]:
    """Seconds and peak RSS (MB) of ``python -m monitor check-config``."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "check-config", str(config)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    code, peak = wait_child(proc)
    seconds = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"check-config {config} failed ({code}):\n{err.decode()[:2000]}")
    return seconds, peak


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_until_watching(config: Path, state_dir: Path, settle: bool = True,
                       present: bool = False) -> dict[str, Any]:
    """``run --port 0`` until it logs ``watching`` (and, with ``settle``, for its first
    results' window and 10 s more; with ``present``, until no account is unknown); then
    SIGTERM. Times, RSS per step."""
    from monitor.fakes.x import TOKEN

    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(config), "--port", "0",
         "--state", str(state_dir / "run.db"), "--log-format", "json"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        env={**os.environ, "BENCH_X_TOKEN": TOKEN} if present else None)
    assert proc.stdout is not None
    highest = [0.0]
    done = threading.Event()

    def sample() -> None:  # the RSS curve, to place the peak among the log lines
        while not done.is_set():
            try:
                highest[0] = max(highest[0], rss_mb(proc.pid))
            except OSError:
                return
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    steps: list[tuple[str, float, float, float]] = []  # event, seconds, RSS, highest so far
    window = [0.0]  # the first results' window the "watching" line states
    listen = [""]  # host:port, from the "monitor started" line
    watching_seen = threading.Event()

    def read() -> None:  # every log line, to the end: the child never blocks on the pipe
        for raw in proc.stdout or ():
            try:
                line = json.loads(raw)
            except ValueError:
                continue
            event = line.get("event", "")
            steps.append((event, time.perf_counter() - started, rss_mb(proc.pid),
                          highest[0]))
            if event == "monitor started":
                listen[0] = str(line.get("listen", ""))
            if event == "watching":
                window[0] = float(line.get("first_results_within_seconds") or 0.0)
                watching_seen.set()
        watching_seen.set()  # (it exited first: nothing to wait for)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    watching_seen.wait()
    watching = time.perf_counter() - started
    at_watching = highest[0]
    settled: tuple[float, float] | None = None
    if settle:
        # Running: every account past its first answer (each then holds a state of its
        # own), which is what a long run keeps.
        time.sleep(window[0] + 10.0)
        if present:  # every first sighting decided, and written
            decided = time.perf_counter()
            while unknown(listen[0]) and time.perf_counter() - decided < 900:
                time.sleep(10.0)  # each scrape renders every account's view: not too often
        rss, hwm = proc_rss_mb(proc.pid)
        settled = (rss, max(highest[0], hwm))
    before_stop, highest[0] = highest[0], 0.0
    proc.send_signal(signal.SIGTERM)
    stopping = time.perf_counter()
    reader.join()
    done.set()
    code, peak = wait_child(proc)
    return {"seconds": watching, "peak": peak, "steps": steps, "code": code,
            "stop_seconds": time.perf_counter() - stopping, "at_watching": at_watching,
            "settled": settled, "window": window[0],
            "highest_before_stop": before_stop, "highest_after_stop": highest[0]}


def collapsed(steps: list[tuple[str, float, float, float]]
              ) -> list[tuple[str, float, float, float, int, float]]:
    """The log's steps with each run of one event (the first sightings' "transition" lines)
    as one: its first line's time, its last line's RSS, how many more, until when."""
    out: list[tuple[str, float, float, float, int, float]] = []
    for event, at, rss, highest in steps:
        if out and out[-1][0] == event:
            out[-1] = (event, out[-1][1], rss, highest, out[-1][4] + 1, at)
        else:
            out.append((event, at, rss, highest, 0, at))
    return out


def unknown(listen: str) -> float:
    """How many accounts the monitor at ``listen`` still has as unknown (its /metrics)."""
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=60) as resp:
        text = resp.read().decode()
    return samples(text, "accmon_accounts", state="unknown")


def fake_child(size: int) -> int:
    """``--fake-child N``: the X fake with this benchmark's N accounts, every one present."""
    from monitor.fakes.x import FakeX

    return serve_fake(FakeX({a["handle"]: (a["id"], "present")
                             for a in map(account, range(size))}))


def fast_path(directory: Path, size: int, port: int) -> None:
    """watchfile.read of the CSV and JSON lines files, with the fast path and without."""
    from monitor import watchfile

    print(f"\nwatchfile.read in this process, {size:,} accounts:")
    for kind in ("csv", "jsonl"):
        write_watchlist(directory, size, kind, port)
        path = str(directory / f"accounts-{size}.{kind}")
        seconds = {}
        for fast in (True, False):
            started = time.perf_counter()
            found = watchfile.read(path, platforms={"x"}, fast=fast)
            seconds[fast] = time.perf_counter() - started
            assert found.ok and len(found.accounts) == size
        print(f"  {kind:>5}: {seconds[True]:.1f} s with the fast path, {seconds[False]:.1f} s "
              f"with every row through the model")


def profile(size: int, directory: Path, trace: bool) -> None:
    """tracemalloc (``trace``) and cProfile of load_config and Monitor.start, in this
    process."""
    from monitor.app import Monitor
    from monitor.config import load_config

    config_path = write_watchlist(directory, size, "csv", refused_port())
    if trace:
        tracemalloc.start(1)
        before = tracemalloc.take_snapshot()
    started = time.perf_counter()
    config = load_config(config_path)
    loaded = time.perf_counter() - started
    tracing = "on, so times are inflated" if trace else "off"
    print(f"\nprofile at {size:,} accounts (CSV; tracemalloc {tracing})")
    print(f"load_config: {loaded:.1f} s" + ("; held afterwards:" if trace else ""))
    if trace:
        after_load = tracemalloc.take_snapshot()
        _top(after_load.compare_to(before, "lineno"), size)

    async def start() -> Monitor:
        monitor = Monitor(config, state_path=str(directory / "profile.db"), listen_port=0)
        await monitor.start()
        return monitor

    async def stop(monitor: Monitor) -> None:
        await monitor.stop()

    loop = asyncio.new_event_loop()
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    monitor = loop.run_until_complete(start())
    profiler.disable()
    print(f"Monitor.start: {time.perf_counter() - started:.1f} s (cProfile on)"
          + ("; held afterwards:" if trace else ""))
    if trace:
        _top(tracemalloc.take_snapshot().compare_to(after_load, "lineno"), size)
        traced, peak = tracemalloc.get_traced_memory()
        print(f"traced now {traced / 2**20:.0f} MB, traced peak {peak / 2**20:.0f} MB")
    loop.run_until_complete(stop(monitor))
    loop.close()
    tracemalloc.stop()
    print("Monitor.start, top functions by own time (cProfile):")
    stats = pstats.Stats(profiler)
    rows = sorted(stats.stats.items(),  # type: ignore[attr-defined]
                  key=lambda kv: kv[1][2], reverse=True)
    for (file, line, name), (_, calls, own, cumulative, _) in rows[:15]:
        where = f"{Path(file).name}:{line}({name})" if line else name
        print(f"  {own:6.2f} s own {cumulative:6.2f} s cum {calls:>9,} calls  {where}")
    print("Monitor.start, our functions by cumulative time:")
    ours = [row for row in rows if str(ROOT / "monitor") in row[0][0]]
    for (file, line, name), (_, calls, own, cumulative, _) in sorted(
            ours, key=lambda kv: kv[1][3], reverse=True)[:15]:
        where = f"{Path(file).relative_to(ROOT)}:{line}({name})"
        print(f"  {cumulative:6.2f} s cum {own:6.2f} s own {calls:>9,} calls  {where}")


def _top(diffs: list[tracemalloc.StatisticDiff], size: int, count: int = 12) -> None:
    for diff in diffs[:count]:
        frame = diff.traceback[0]
        file = Path(frame.filename)
        where = f"{file.relative_to(ROOT) if file.is_relative_to(ROOT) else file.name}"
        where += f":{frame.lineno}"
        print(f"  {diff.size_diff / 2**20:7.1f} MB {diff.size_diff / size:6.0f} B/account "
              f"{diff.count_diff:>9,} blocks  {where}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--formats", default="csv,jsonl,yaml")
    parser.add_argument("--run", default="10000,100000,1000000",
                        help="sizes to run (CSV), comma-separated; empty skips")
    parser.add_argument("--no-settle", action="store_true",
                        help="stop each run once it logs watching, before the first answers")
    parser.add_argument("--profile", type=int, default=100_000, help="0 skips")
    parser.add_argument("--no-trace", action="store_true",
                        help="profile without tracemalloc (times only)")
    parser.add_argument("--answer", choices=("refused", "present"), default="refused",
                        help="what the runs' X answers: a refused port (every probe an "
                        "error), or the X fake with every account present")
    parser.add_argument("--fake-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fake_child:
        return fake_child(args.fake_child)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    formats = [f for f in args.formats.split(",") if f]
    runs = [int(s) for s in args.run.split(",") if s]
    port = refused_port()
    with tempfile.TemporaryDirectory(prefix="watchlist-load-") as tmp:
        directory = Path(tmp)
        print("check-config (a subprocess; peak RSS from wait4):")
        print(f"{'format':>6} {'accounts':>10} {'seconds':>8} {'peak MB':>8} {'KB/account':>10}")
        for size in sizes:
            for kind in formats:
                config = write_watchlist(directory, size, kind, port)
                if config.stat().st_size > MAX_CONFIG_BYTES:
                    print(f"{kind:>6} {size:>10,}  skipped: {config.stat().st_size >> 20} MiB of "
                          f"YAML, over the config's {MAX_CONFIG_BYTES >> 20} MiB cap (a list "
                          "this long belongs in accounts_file)", flush=True)
                    config.unlink()
                    continue
                seconds, peak = check_config(config)
                print(f"{kind:>6} {size:>10,} {seconds:8.1f} {peak:8.0f} "
                      f"{peak * 1024 / size:10.2f}", flush=True)
                if kind != "csv":
                    for leftover in directory.glob(f"*-{size}.{kind}"):
                        leftover.unlink()
        peaks: dict[int, float] = {}
        for size in runs:
            present = args.answer == "present"
            fake = None
            if present:
                fake_port = free_port()
                fake = subprocess.Popen([sys.executable, __file__, "--fake-child", str(size)],
                                        cwd=ROOT, stdout=subprocess.DEVNULL,
                                        env={**os.environ, "BENCH_FAKE_PORT": str(fake_port)})
                wait_port(fake_port, 300)
            config = write_watchlist(directory, size, "csv", fake_port if present else port)
            state_dir = directory / f"run-{size}"
            state_dir.mkdir()
            try:
                result = run_until_watching(config, state_dir, settle=not args.no_settle,
                                            present=present)
            finally:
                if fake is not None:
                    stop(fake)
            peaks[size] = result["peak"]
            print(f"\nrun, {size:,} accounts (CSV, X {args.answer}): watching after "
                  f"{result['seconds']:.1f} s "
                  f"(peak RSS until then {result['at_watching']:.0f} MB); peak RSS of the whole "
                  f"run {result['peak']:.0f} MB ({result['peak'] * 1024 / size:.2f} KB per "
                  f"account), stopped in {result['stop_seconds']:.1f} s, exit {result['code']}")
            if result["settled"] is not None:
                now, hwm = result["settled"]
                print(f"  running, {result['window'] + 10:.0f} s after watching (every account "
                      f"past its first answer): RSS {now:.0f} MB, peak {hwm:.0f} MB "
                      f"({now * 1024 / size:.2f} KB per account)")
            for event, at, rss, highest, repeats, until in collapsed(result["steps"]):
                more = f" (and {repeats:,} more until {until:.1f} s)" if repeats else ""
                print(f"  {at:6.1f} s  RSS {rss:6.0f} MB (highest so far {highest:6.0f})  "
                      f"{event}{more}")
            print(f"  RSS sampled every 0.1 s: highest {result['highest_before_stop']:.0f} MB "
                  f"before SIGTERM, {result['highest_after_stop']:.0f} MB between SIGTERM and "
                  "exit (the column restarts at SIGTERM)")
        if len(peaks) >= 2:
            small, large = sorted(peaks)[-2:]
            marginal = (peaks[large] - peaks[small]) * 2**20 / (large - small)
            print(f"\nmarginal memory per watched account (run, {small:,} -> {large:,}): "
                  f"{marginal:,.0f} bytes")
        if sizes and "csv" in formats:
            fast_path(directory, max(sizes), port)
        if args.profile:
            profile(args.profile, directory, not args.no_trace)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
