#!/usr/bin/env python3
"""Throughput and memory of the monitor, measured against a bare aiohttp loop in the same run.

    .venv/bin/python bench/throughput.py [--concurrency 32] [--seconds 10] [--sizes 10000,100000]

1. Starts a target on loopback: nginx (Debian's package; `apt-get install nginx`) when it is
   on the PATH, else the fake site (then the Python target, not the client, may be the limit).
2. Probes/s of a bare aiohttp GET loop with C workers, then of the monitor (the real
   scheduler, probe, classification, state machine and metrics; SQLite on a temp file)
   watching N accounts that are always due, at the same concurrency, in steady state (after
   every account's first sighting). Rounds alternate bare/monitor, each in a fresh process;
   prints each round, the median ratio of probes/s and of probes per CPU-second.
3. Peak RSS of a monitor process watching 10k and 100k accounts (each probed, /metrics
   scraped), one child process per size.

A benchmark, not a test: machines are shared and noisy, so compare ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BODY = '{"id":"1","username":"bench"}'

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        default_type application/json;
        location / {{ return 200 '{body}'; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_target(workdir: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if nginx:
        conf = workdir / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=workdir, port=port, body=BODY))
        proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(workdir)],
                                stderr=subprocess.DEVNULL)
        kind = "nginx"
    else:
        proc = subprocess.Popen([sys.executable, "-m", "monitor.fakes.site", "--port", str(port)],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kind = "fake site (python; install nginx for a faster target)"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"http://127.0.0.1:{port}", kind
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("target did not start")


# ----------------------------------------------------------------------- bare loop


async def bare_loop(base: str, concurrency: int, seconds: float) -> tuple[float, float]:
    """The floor: C workers doing GET + read body + status check, nothing else.

    Returns (probes/s, CPU microseconds per probe)."""
    connector = aiohttp.TCPConnector(limit=concurrency + 16)
    count = 0
    async with aiohttp.ClientSession(connector=connector) as session:
        stop_at = time.monotonic() + seconds

        async def worker(i: int) -> None:
            nonlocal count
            n = 0
            while time.monotonic() < stop_at:
                async with asyncio.timeout(10):
                    async with session.get(f"{base}/u{n % 1000}_{i}") as resp:
                        await resp.read()
                        if resp.status == 200:
                            count += 1
                n += 1

        started, cpu = time.monotonic(), time.process_time()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        cpu = time.process_time() - cpu
        return count / (time.monotonic() - started), cpu / max(count, 1) * 1e6


# ----------------------------------------------------------------------- the monitor


def bench_config(base: str, accounts: int, concurrency: int, interval: str, state: str) -> str:
    rows = "".join(f"  - {{platform: bench, handle: u{i}}}\n" for i in range(accounts))
    return f"""
monitor:
  listen_port: 0
  state_path: {state}
  log_level: warning
  log_format: json
defaults:
  interval: {interval}
  confirm_interval: {interval}
  staleness: 1h
  timeout: 10s
platforms:
  bench:
    probe: http
    base_url: {base}
    concurrency: {concurrency}
    rate_per_second: 1000000
    burst: 1000
    rules:
      url: "{{base_url}}/{{handle}}"
      present:
        - status: 200
accounts:
{rows}"""


def probes_total(monitor: object) -> float:
    # Read the counter itself: a registry lookup would render every per-account series.
    counter = monitor.metrics.probes.labels("bench", "present")  # type: ignore[attr-defined]
    return float(counter._value.get())


async def monitor_loop(base: str, concurrency: int, seconds: float, accounts: int,
                       workdir: Path) -> tuple[float, float]:
    from monitor.app import Monitor
    from monitor.config import parse_config
    from monitor.logs import configure
    from monitor.model import State

    configure("json", "warning")
    text = bench_config(base, accounts, concurrency, "1ms", str(workdir / "tp.db"))
    monitor = Monitor(parse_config(text, "bench.yaml", env={}))
    await monitor.start()
    try:
        # Warm-up until every account is past `unknown` (its first sighting is a decision
        # written to SQLite): what we measure is the steady state of a long-lived monitor.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and any(
                w.view.state.state is State.UNKNOWN for w in monitor.accounts.values()):
            await asyncio.sleep(0.2)
        before, started, cpu = probes_total(monitor), time.monotonic(), time.process_time()
        await asyncio.sleep(seconds)
        count = probes_total(monitor) - before
        cpu = time.process_time() - cpu
        return count / (time.monotonic() - started), cpu / max(count, 1) * 1e6
    finally:
        await monitor.stop()


# ----------------------------------------------------------------------- memory


async def rss_child(base: str, accounts: int, seconds: float, workdir: Path) -> dict[str, float]:
    """Runs in a child process: watch N accounts with a realistic 60 s interval."""
    from monitor.app import Monitor
    from monitor.config import parse_config
    from monitor.logs import configure
    from monitor.model import State

    configure("json", "warning")
    t0 = time.monotonic()
    text = bench_config(base, accounts, 64, "60s", str(workdir / f"rss{accounts}.db"))
    monitor = Monitor(parse_config(text, "bench.yaml", env={}))
    del text
    await monitor.start()
    loaded = time.monotonic() - t0
    after_load = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # First probes are spread over the first minute; compress that for the benchmark, then
    # wait until every account has been probed and decided (each first sighting is a
    # decision written to SQLite), and scrape /metrics once.
    for watched in monitor.accounts.values():
        monitor.scheduler.schedule(watched.key, seconds * 0.5 * (hash(watched.key) % 1000) / 1000)
    deadline = time.monotonic() + 4 * seconds
    while time.monotonic() < deadline and any(
            w.view.state.state is State.UNKNOWN for w in monitor.accounts.values()):
        await asyncio.sleep(0.5)
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{monitor.port}/metrics") as resp:
        scraped = len(await resp.read())
    probed = probes_total(monitor)
    current = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    await monitor.stop()
    return {"accounts": accounts, "probed": probed, "load_seconds": loaded,
            "metrics_bytes": scraped, "after_load_mb": after_load,
            "current_rss_mb": current / 2**20,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


# ----------------------------------------------------------------------- driver


def child(kind: str, base: str, workdir: Path, args: argparse.Namespace) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--loop-child", kind, "--base", base, "--workdir",
         str(workdir), "--seconds", str(args.seconds), "--concurrency", str(args.concurrency),
         "--accounts", str(args.accounts)],
        capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--accounts", type=int, default=10000,
                        help="accounts watched in the throughput run")
    parser.add_argument("--sizes", default="10000,100000", help="watchlist sizes for peak RSS")
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating bare/monitor rounds; the median ratio is reported")
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--loop-child", choices=["bare", "monitor"], help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.loop_child:
        workdir = Path(args.workdir)
        rate, cpu = asyncio.run(
            bare_loop(args.base, args.concurrency, args.seconds) if args.loop_child == "bare"
            else monitor_loop(args.base, args.concurrency, args.seconds, args.accounts, workdir))
        print(json.dumps({"rate": rate, "cpu_us": cpu}))
        return 0

    if args.rss_child:
        result = asyncio.run(rss_child(args.base, args.rss_child, args.seconds,
                                       Path(args.workdir)))
        print(json.dumps(result))
        return 0

    with tempfile.TemporaryDirectory(prefix="accmon-bench-") as tmp:
        workdir = Path(tmp)
        target, base, kind = start_target(workdir)
        try:
            print(f"target: {kind} at {base}; concurrency {args.concurrency}; "
                  f"{args.seconds:g}s per run; {os.cpu_count()} CPUs")
            ratios, cpu_ratios = [], []
            for r in range(1, args.rounds + 1):
                # Each measurement in a fresh process, bare and monitor back to back, so a
                # noisy neighbour hits both sides of one ratio alike.
                bare, mon = (child(kind_, base, workdir, args)
                             for kind_ in ("bare", "monitor"))
                ratios.append(mon["rate"] / bare["rate"])
                cpu_ratios.append(bare["cpu_us"] / mon["cpu_us"])
                print(f"round {r}: bare {bare['rate']:7.0f} probes/s ({bare['cpu_us']:4.0f} us CPU"
                      f"/probe) | monitor, {args.accounts} accounts: {mon['rate']:7.0f} probes/s "
                      f"({mon['cpu_us']:4.0f} us CPU/probe) | ratio {ratios[-1]:.2f}")
            print(f"median ratio monitor/bare, probes/s:        {statistics.median(ratios):.2f}"
                  "   (target >= 0.80)")
            print(f"median ratio monitor/bare, probes/CPU-second: "
                  f"{statistics.median(cpu_ratios):.2f}")
            for size in (int(s) for s in args.sizes.split(",") if s):
                out = subprocess.run(
                    [sys.executable, __file__, "--rss-child", str(size), "--base", base,
                     "--workdir", str(workdir), "--seconds", str(max(args.seconds, 20.0))],
                    capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"{size:>7} accounts: peak RSS {r['peak_rss_mb']:6.1f} MB"
                      f"{' (target < 400 MB)' if size >= 100000 else ''}; "
                      f"peak after config+start {r['after_load_mb']:.0f} MB "
                      f"({r['load_seconds']:.1f}s); RSS with all probed {r['current_rss_mb']:.0f}"
                      f" MB; probes {r['probed']:.0f}; /metrics {r['metrics_bytes'] / 1e6:.1f} MB")
        finally:
            target.send_signal(signal.SIGTERM)
            target.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
