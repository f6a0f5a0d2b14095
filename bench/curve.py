#!/usr/bin/env python3
"""Cost as the watchlist grows: probes/s and RSS at 1k, 10k, 100k and 1M accounts, and the
scheduler's idle cost at a million accounts.

    .venv/bin/python bench/curve.py [--sizes 1000,10000,100000,1000000] [--seconds 15]
    .venv/bin/python bench/curve.py --idle [--idle-accounts 1000000] [--interval 300]

1. The curve: for each size, ``python -m monitor run`` as a subprocess (the watchlist in a
   CSV ``accounts_file``) against nginx, every account always due (interval 1 ms), at
   concurrency 32. After every account's first sighting (a decision written to the state
   file), one window between two ``/metrics`` scrapes: probes/s, CPU-s per 1k probes, RSS
   then and the peak (VmHWM), the scrape's size, and the start-up time (to ``/readyz``).
   ``per_account`` is left at ``auto`` (every account's series up to 10,000, protected
   ones above), as an operator would run it.
2. The idle cost (``--idle``): the real :class:`~monitor.app.Monitor`, in this process, with
   N accounts at a 5-minute interval and each platform's probe replaced by one that answers
   ``present`` at once (probing stubbed at the Probe level: no request, no parse). Its CPU
   over a window once every account has had its first sighting, against the same pipeline
   measured per probe on a small always-due watchlist: what is left is the cost of watching
   a million accounts that is not probing them (timers, heap, queues, ticks, gauges, gc).
   Also the scheduler alone (a probe function that returns the interval at once).

A benchmark, not a test: compare within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from throughput import (  # bench/ is not a package: found through sys.path
    MonitorProcess,
    bench_config,
    http_platform,
    http_rows,
    proc_rss_mb,
    samples,
    start_target,
    stop,
)

# ----------------------------------------------------------------------- the curve


def curve_point(base: str, accounts: int, seconds: float, concurrency: int,
                workdir: Path) -> dict[str, float]:
    config = bench_config(http_platform(base, concurrency), http_rows(accounts), workdir,
                          f"curve{accounts}")
    started = time.monotonic()
    mon = MonitorProcess(config, workdir)
    try:
        ready = mon.wait_ready(1800)
        decided = mon.wait_decided("bench", 3600, poll=max(1.0, accounts / 100_000))
        time.sleep(2.0)
        first = mon.scrape()
        time.sleep(max(0.0, seconds - first.seconds))
        last = mon.scrape()
        probes = (samples(last.text, "accmon_probes_total", platform="bench")
                  - samples(first.text, "accmon_probes_total", platform="bench"))
        rss, peak = proc_rss_mb(mon.proc.pid)
        return {"accounts": accounts, "ready_s": ready, "decided_s": decided,
                "total_s": time.monotonic() - started,
                "rate": probes / (last.at - first.at),
                "cpu_per_1k": (last.cpu - first.cpu) / max(probes, 1) * 1000,
                "rss_mb": rss, "peak_mb": peak, "scrape_mb": len(last.text) / 1e6,
                "scrape_s": last.seconds}
    finally:
        mon.stop()


def curve(args: argparse.Namespace, workdir: Path) -> None:
    target, base, kind = start_target(workdir)
    try:
        print(f"target: {kind}; concurrency {args.concurrency}; {args.seconds:g}s windows; "
              "every account always due")
        print(f"{'accounts':>9} {'probes/s':>9} {'CPU-s/1k':>9} {'RSS MB':>7} {'peak MB':>8} "
              f"{'KB/acct':>8} {'ready s':>8} {'decided s':>10} {'scrape MB':>10}")
        for size in (int(s) for s in args.sizes.split(",") if s):
            r = curve_point(base, size, args.seconds, args.concurrency, workdir)
            print(f"{size:>9} {r['rate']:9.0f} {r['cpu_per_1k']:9.3f} {r['rss_mb']:7.0f} "
                  f"{r['peak_mb']:8.0f} {r['rss_mb'] * 1024 / size:8.2f} {r['ready_s']:8.1f} "
                  f"{r['decided_s']:10.1f} {r['scrape_mb']:10.2f}", flush=True)
    finally:
        stop(target)


# ----------------------------------------------------------------------- idle cost


class InstantProbe:
    """A Probe that answers ``present`` at once: no request, no classification. Registered
    as the ``instant`` probe before the config is read (probing stubbed at the Probe level:
    the scheduler, Prober, decisions, metrics and ticks are all the real ones)."""

    name = "instant"

    def __init__(self, platform: Any, session: Any, *, timeout: float,
                 max_body_bytes: int) -> None:
        from monitor.model import Observation, Result

        self._make: Callable[[float], Any] = lambda at: Observation(
            Result.PRESENT, at, evidence="stub")

    async def check(self, target: Any) -> Any:
        return self._make(time.time())


def idle_config(accounts: int, interval: float, workdir: Path, name: str) -> Path:
    platform = ("  bench:\n    probe: instant\n    base_url: http://127.0.0.1:9\n"
                "    concurrency: 32\n    rate_per_second: 1000000\n    burst: 1000\n")
    return bench_config(platform, http_rows(accounts), workdir, name,
                        interval=f"{interval:g}s")


async def stubbed_monitor(config: Path) -> Any:
    from monitor.app import Monitor
    from monitor.config import load_config
    from monitor.logs import configure
    from monitor.probes import PROBES

    PROBES["instant"] = InstantProbe  # type: ignore[assignment]
    configure("json", "warning")
    monitor = Monitor(load_config(str(config)), config_path=str(config))
    await monitor.start()
    return monitor


def probes_so_far(monitor: Any) -> float:
    from monitor.model import Result

    return float(monitor.metrics.probe_counts.answered("bench", Result.PRESENT))


async def wait_all_seen(monitor: Any, seconds: float) -> float:
    from monitor.model import State

    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if (not any(w.state.state is State.UNKNOWN for w in monitor.accounts.values())
                and (monitor.writer is None or not monitor.writer.backlog)):
            return time.monotonic() - started
        await asyncio.sleep(2.0)
    raise SystemExit("first sightings did not finish")


async def per_probe_cost(workdir: Path) -> float:
    """CPU-s per probe of the stubbed pipeline, 10k accounts always due."""
    monitor = await stubbed_monitor(idle_config(10_000, 0.001, workdir, "idle-small"))
    try:
        await wait_all_seen(monitor, 600)
        await asyncio.sleep(1.0)
        before, cpu = probes_so_far(monitor), time.process_time()
        await asyncio.sleep(5.0)
        return (time.process_time() - cpu) / (probes_so_far(monitor) - before)
    finally:
        await monitor.stop()


def thread_cpu() -> dict[str, float]:
    """CPU seconds so far of this process's main thread ("main") and of all others."""
    pid, out = os.getpid(), {"main": 0.0, "other": 0.0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        out["main" if int(tid) == pid else "other"] += (int(fields[11]) + int(fields[12])) / TICKS
    return out


TICKS = os.sysconf("SC_CLK_TCK")


async def idle_monitor(accounts: int, interval: float, seconds: float, workdir: Path,
                       *, freeze: bool, availability: bool) -> dict[str, float]:
    t0, c0 = time.monotonic(), time.process_time()
    monitor = await stubbed_monitor(idle_config(accounts, interval, workdir, "idle"))
    if not availability:  # the per-minute availability gauges, worked out in a thread
        monitor.metrics.refresh_availability = lambda *args, **kwargs: None
    started, start_cpu = time.monotonic() - t0, time.process_time() - c0
    try:
        seen = await wait_all_seen(monitor, 3600)
        # The steady state at once: each account's next probe somewhere in the coming
        # interval (as after a first interval has passed), instead of waiting for it.
        rng, sched = random.Random(1), monitor.scheduler
        for key in list(monitor.accounts):
            sched.schedule(key, rng.uniform(0, interval))
        if freeze:
            from monitor import loop

            loop.freeze_heap()
        await asyncio.sleep(5.0)
        gc_time = {0: 0.0, 1: 0.0, 2: 0.0}
        gc_count = {0: 0, 1: 0, 2: 0}
        began = [0.0]

        def on_gc(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                began[0] = time.perf_counter()
            else:
                gc_count[info["generation"]] += 1
                gc_time[info["generation"]] += time.perf_counter() - began[0]

        gc.callbacks.append(on_gc)
        before, t, cpu, threads = (probes_so_far(monitor), time.monotonic(),
                                   time.process_time(), thread_cpu())
        scrapes = await scrape_every(monitor.port, 15.0, seconds)
        wall, cpu = time.monotonic() - t, time.process_time() - cpu
        after = thread_cpu()
        gc.callbacks.remove(on_gc)
        return {"start_s": started, "start_cpu": start_cpu, "seen_s": seen,
                "rate": (probes_so_far(monitor) - before) / wall, "cpu_share": cpu / wall,
                "full_gcs": gc_count[2], "gc_share": sum(gc_time.values()) / wall,
                "scrapes": len(scrapes), "scrape_share": sum(scrapes) / wall,
                "scrape_s": max(scrapes, default=0.0), "rss_mb": proc_rss_mb(os.getpid())[0],
                "main_share": (after["main"] - threads["main"]) / wall,
                "other_share": (after["other"] - threads["other"]) / wall}
    finally:
        await monitor.stop()


async def scrape_every(port: int, every: float, seconds: float) -> list[float]:
    """/metrics every ``every`` seconds for ``seconds``, as Prometheus would; how long each
    took."""
    import aiohttp

    took: list[float] = []
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < end:
            started = time.monotonic()
            async with session.get(f"http://127.0.0.1:{port}/metrics") as resp:
                await resp.read()
            took.append(time.monotonic() - started)
            await asyncio.sleep(max(0.0, min(every - took[-1], end - time.monotonic())))
    return took


async def idle_scheduler(accounts: int, interval: float, seconds: float) -> dict[str, float]:
    """The scheduler alone: N keys, a probe function that returns the interval at once."""
    from monitor.scheduler import Scheduler

    probed = [0]

    async def probe(key: object) -> float:
        probed[0] += 1
        return interval

    sched = Scheduler(probe)
    sched.add_lane("p", concurrency=32, rate=1e6, burst=1000)
    for i in range(accounts):
        sched.add(i, "p", spread=interval)
    await sched.start()
    try:
        await asyncio.sleep(5.0)
        before, t, cpu = probed[0], time.monotonic(), time.process_time()
        await asyncio.sleep(seconds)
        wall = time.monotonic() - t
        return {"rate": (probed[0] - before) / wall,
                "cpu_share": (time.process_time() - cpu) / wall}
    finally:
        await sched.stop()


async def idle(args: argparse.Namespace, workdir: Path) -> None:
    n, interval = args.idle_accounts, args.interval
    per_probe = await per_probe_cost(workdir)
    print(f"stubbed pipeline, per probe (10k accounts always due): {per_probe * 1e6:.1f} us CPU")
    # The first as `account-monitor run` runs (cli freezes the heap once started); the
    # second without either, to show what they cost or save.
    variants = [("as the process runs (heap frozen, availability gauges on)", True, True),
                ("heap not frozen, availability gauges off", False, False)]
    for what, freeze, availability in variants:
        r = await idle_monitor(n, interval, args.seconds, workdir, freeze=freeze,
                               availability=availability)
        probing = r["rate"] * per_probe
        rest = r["main_share"] - probing - r["scrape_share"] - r["gc_share"]
        print(f"monitor, {n} accounts every {interval:g}s, probe stubbed, {what}: started in "
              f"{r['start_s']:.0f}s ({r['start_cpu']:.0f} CPU-s), first sightings "
              f"{r['seen_s']:.0f}s later, RSS {r['rss_mb']:.0f} MB; {r['rate']:.0f} probes/s; "
              f"{r['cpu_share'] * 100:.1f}% of one core: other threads (the availability "
              f"gauges) {r['other_share'] * 100:.1f}%, main {r['main_share'] * 100:.1f}% = "
              f"probing {probing * 100:.1f}% ({per_probe * 1e6:.1f} us each) + "
              f"{r['scrapes']} scrapes {r['scrape_share'] * 100:.1f}% (longest "
              f"{r['scrape_s']:.2f}s) + gc {r['gc_share'] * 100:.1f}% ({r['full_gcs']} full) "
              f"+ the rest {rest * 100:.1f}% (the idle cost; target < 5%)", flush=True)
    sched = await idle_scheduler(n, interval, args.seconds)  # last: its 1M entries stay in RSS
    print(f"scheduler alone, {n} keys every {interval:g}s, a probe function that returns at "
          f"once: {sched['rate']:.0f} probes/s (expected {n / interval:.0f}), "
          f"{sched['cpu_share'] * 100:.1f}% of one core")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--idle", action="store_true", help="the idle cost instead")
    parser.add_argument("--idle-accounts", type=int, default=1_000_000)
    parser.add_argument("--interval", type=float, default=300.0)
    parser.add_argument("--workdir", help="keep configs and state files here (a warm state "
                        "file spares the next run its first sightings)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="accmon-curve-") as tmp:
        workdir = Path(args.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
        if args.idle:
            asyncio.run(idle(args, workdir))
        else:
            curve(args, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
