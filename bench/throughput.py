#!/usr/bin/env python3
"""Throughput of the real monitor process against a bare aiohttp loop, and accounts per request.

    .venv/bin/python bench/throughput.py [--concurrency 32] [--seconds 15] [--rounds 3]
        [--accounts 10000] [--loops asyncio,uvloop] [--batch 100000] [--batch-seconds 10]

1. A target on loopback: nginx (Debian's package) answering every GET with an X-shaped JSON,
   else the fake site (then the Python target, not the client, may be the limit).
2. Rounds, each in fresh processes, one after the other so a noisy neighbour hits both sides
   of one ratio alike:
   - the bare loop: C workers doing GET + read body + status check, nothing else;
   - ``python -m monitor run`` (what ``account-monitor run`` runs) as a subprocess watching N
     accounts that are always due (interval 1 ms), at the same concurrency, in steady state
     (every account past its first sighting; the state file is warmed once, before the
     rounds). A window starts right after one ``/metrics`` scrape and ends with the next,
     as Prometheus would scrape every 15 s: the window pays for exactly one scrape. Probes
     come from the scrapes' ``accmon_probes_total``, CPU from ``/proc/PID/stat`` (every
     thread of the process), so nothing in the monitor measures itself.
   Per loop (``--loops``; uvloop only when importable), the median over rounds of probes/s
   and CPU-seconds per 1k probes for both, and the ratios (target: >= 0.9x the bare loop's
   probes/s and <= 1.15x its CPU per probe, on the default asyncio loop).
3. Accounts per request (``--batch N``, 0 skips): the monitor process watching N X accounts
   (ids known, so 100 per ``GET /2/users?ids=``) against ``monitor.fakes.x``, and N Bluesky
   accounts (DIDs known, 25 per ``app.bsky.actor.getProfiles``) against
   ``monitor.fakes.bluesky``, each fake in its own process. Reports accounts verified per
   API request (the fake's request count) and per CPU-second of the monitor process.

A benchmark, not a test: machines are shared and noisy, so the ratios of one run are what
count. Every figure is from real processes talking over loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BODY = '{"data":{"id":"2244994945","name":"X Dev","username":"bench"}}'
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

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


def wait_port(port: int, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port} after {seconds:g}s")


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
    wait_port(port)
    return proc, f"http://127.0.0.1:{port}", kind


def stop(proc: subprocess.Popen[Any], seconds: float = 30.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def uvloop_installed() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop  # type: ignore[no-any-return]
    return asyncio.new_event_loop


# ----------------------------------------------------------------------- bare loop


async def bare_loop(base: str, concurrency: int, seconds: float) -> tuple[int, float, float]:
    """The floor: C workers doing GET + read body + status check, nothing else.

    Returns (probes, seconds, CPU seconds)."""
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
        return count, time.monotonic() - started, time.process_time() - cpu


def bare_child(base: str, concurrency: int, seconds: float, loop: str) -> dict[str, float]:
    """A fresh process for each bare window (``--bare-child``)."""
    out = subprocess.run(
        [sys.executable, __file__, "--bare-child", loop, "--base", base,
         "--seconds", str(seconds), "--concurrency", str(concurrency)],
        capture_output=True, text=True, check=True)
    probes, wall, cpu = json.loads(out.stdout.strip().splitlines()[-1])
    return {"rate": probes / wall, "cpu_per_1k": cpu / max(probes, 1) * 1000}


# ----------------------------------------------------------------------- the monitor process


def bench_config(platforms: str, rows: Iterator[str], workdir: Path, name: str, *,
                 per_account: str | None = None, interval: str = "1ms",
                 log_level: str = "warning") -> Path:
    """A config file and its watchlist file (CSV, ``rows`` after the header), quiet logs.
    Returns the config's path."""
    csv_path = workdir / f"{name}.csv"
    with csv_path.open("w") as out:
        out.writelines(rows)
    metrics = f"  metrics:\n    per_account: {per_account}\n" if per_account else ""
    config = workdir / f"{name}.yaml"
    config.write_text(
        f"monitor:\n  listen_port: 0\n  state_path: {workdir / name}.db\n"
        f"  log_level: {log_level}\n  log_format: json\n{metrics}"
        f"defaults:\n  interval: {interval}\n  confirm_interval: {interval}\n"
        f"  staleness: 1h\n  timeout: 10s\nplatforms:\n{platforms}"
        f"accounts_file: {csv_path.name}\n")
    return config


def http_platform(base: str, concurrency: int) -> str:
    return (f"  bench:\n    probe: http\n    base_url: {base}\n    concurrency: {concurrency}\n"
            "    rate_per_second: 1000000\n    burst: 1000\n    rules:\n"
            '      url: "{base_url}/{handle}"\n      present:\n        - status: 200\n')


def http_rows(accounts: int) -> Iterator[str]:
    yield "platform,handle\n"
    yield from (f"bench,u{i}\n" for i in range(accounts))


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds of every thread of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def proc_rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident set of ``pid`` in MB, from /proc/PID/status."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) / 1024
    return found["VmRSS"], found["VmHWM"]


def samples(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels`` (a line scan: parsing
    every per-account series would cost the driver more than the monitor's render)."""
    total, prefix = 0.0, name + "{"
    wanted = [f'{k}="{v}"' for k, v in labels.items()]
    for line in text.splitlines():
        if line.startswith(prefix) and all(w in line for w in wanted):
            total += float(line.rsplit(" ", 1)[1])
    return total


@dataclass
class Scrape:
    text: str
    at: float  # monotonic, when the answer was in
    cpu: float  # the monitor's CPU seconds then
    seconds: float  # how long the scrape took


class MonitorProcess:
    """``python -m monitor run`` (the console script's entry point) as a child process."""

    def __init__(self, config: Path, workdir: Path, *, loop: str = "asyncio",
                 env: dict[str, str] | None = None):
        self.port = free_port()
        self.log = (workdir / f"monitor-{self.port}.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(config),
             "--port", str(self.port)],
            cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT,
            env={**os.environ, "ACCMON_LOOP": loop, **(env or {})})
        self.url = f"http://127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 30.0) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, seconds: float = 600.0) -> float:
        """Until /readyz says 200; returns how long that took."""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            if self.proc.poll() is not None:
                self.log.flush()
                tail = Path(self.log.name).read_text(errors="replace")[-2000:]
                raise SystemExit(f"the monitor exited with {self.proc.returncode}:\n{tail}")
            with contextlib.suppress(OSError):
                if self.get("/readyz", 5.0)[0] == 200:
                    return time.monotonic() - started
            time.sleep(0.1)
        raise SystemExit(f"the monitor was not ready within {seconds:g}s")

    def scrape(self) -> Scrape:
        started = time.monotonic()
        status, body = self.get("/metrics")
        if status != 200:
            raise SystemExit(f"/metrics answered {status}")
        at = time.monotonic()
        return Scrape(body.decode(), at, proc_cpu(self.proc.pid), at - started)

    def wait_decided(self, platform: str, seconds: float = 600.0, poll: float = 1.0) -> float:
        """Until no account of ``platform`` is ``unknown`` (each first sighting is a decision
        written to the state file); returns how long that took."""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            text = self.scrape().text
            if (samples(text, "accmon_accounts", platform=platform) > 0
                    and samples(text, "accmon_accounts", platform=platform,
                                state="unknown") == 0):
                return time.monotonic() - started
            time.sleep(poll)
        raise SystemExit(f"accounts still unknown after {seconds:g}s")

    def loop_running(self) -> str:
        """The event loop the monitor's "monitor started" line names (log_level info)."""
        self.log.flush()
        for line in Path(self.log.name).read_text(errors="replace").splitlines():
            if '"monitor started"' in line:
                return str(json.loads(line).get("loop", "?"))
        return "?"

    def stop(self) -> None:
        stop(self.proc)
        self.log.close()


def monitor_window(config: Path, workdir: Path, seconds: float, loop: str) -> dict[str, float]:
    """One round of the monitor: start, reach the steady state, one window, stop."""
    mon = MonitorProcess(config, workdir, loop=loop)
    try:
        mon.wait_ready()
        mon.wait_decided("bench")
        time.sleep(2.0)  # past the start: connections open, caches warm
        first = mon.scrape()
        time.sleep(max(0.0, seconds - first.seconds))
        last = mon.scrape()  # the window's one scrape
        probes = (samples(last.text, "accmon_probes_total", platform="bench")
                  - samples(first.text, "accmon_probes_total", platform="bench"))
        cpu = last.cpu - first.cpu
        return {"rate": probes / (last.at - first.at), "cpu_per_1k": cpu / max(probes, 1) * 1000,
                "scrape_s": last.seconds, "scrape_mb": len(last.text) / 1e6,
                "loop": mon.loop_running()}
    finally:
        mon.stop()


def warm_state(config: Path, workdir: Path) -> float:
    """First sightings once, before the rounds: later runs start in the steady state."""
    mon = MonitorProcess(config, workdir)
    try:
        mon.wait_ready()
        return mon.wait_decided("bench")
    finally:
        mon.stop()


def throughput(args: argparse.Namespace, workdir: Path, base: str) -> None:
    loops = [loop for loop in args.loops.split(",") if loop]
    if "uvloop" in loops and not uvloop_installed():
        print("uvloop: not installed (pip install '.[fast]'); measuring asyncio only")
        loops.remove("uvloop")
    # log_level info: the "monitor started" line names the loop (no line per probe then).
    config = bench_config(http_platform(base, args.concurrency), http_rows(args.accounts),
                          workdir, "throughput", log_level="info")
    print(f"first sightings of {args.accounts} accounts (state file warm-up): "
          f"{warm_state(config, workdir):.1f}s")
    results: dict[str, dict[str, list[float]]] = {
        f"{side}-{loop}": {"rate": [], "cpu_per_1k": []}
        for loop in loops for side in ("bare", "monitor")}
    paired: dict[str, dict[str, list[float]]] = {loop: {"rate": [], "cpu": []} for loop in loops}
    for r in range(1, args.rounds + 1):
        for loop in loops:
            # Back to back, the order alternating, so drift in the machine's load hits both
            # sides of a round's ratio alike.
            if r % 2:
                bare = bare_child(base, args.concurrency, args.seconds, loop)
                mon = monitor_window(config, workdir, args.seconds, loop)
            else:
                mon = monitor_window(config, workdir, args.seconds, loop)
                bare = bare_child(base, args.concurrency, args.seconds, loop)
            for side, got in (("bare", bare), ("monitor", mon)):
                for k in ("rate", "cpu_per_1k"):
                    results[f"{side}-{loop}"][k].append(got[k])
            paired[loop]["rate"].append(mon["rate"] / bare["rate"])
            paired[loop]["cpu"].append(mon["cpu_per_1k"] / bare["cpu_per_1k"])
            print(f"round {r} {loop:7}: bare {bare['rate']:7.0f} probes/s "
                  f"{bare['cpu_per_1k']:.3f} CPU-s/1k | monitor (loop {mon['loop']}) "
                  f"{mon['rate']:7.0f} probes/s {mon['cpu_per_1k']:.3f} CPU-s/1k (scrape "
                  f"{mon['scrape_mb']:.1f} MB in {mon['scrape_s']:.2f}s) | "
                  f"{paired[loop]['rate'][-1]:.2f}x probes/s, "
                  f"{paired[loop]['cpu'][-1]:.2f}x CPU/probe", flush=True)
    med = {name: {k: statistics.median(v) for k, v in got.items()}
           for name, got in results.items()}
    print(f"median of {args.rounds} rounds, {args.accounts} accounts, concurrency "
          f"{args.concurrency}, {args.seconds:g}s windows:")
    print(f"  {'system':22} {'probes/s':>9} {'CPU-s/1k':>9}")
    for name, got in med.items():
        print(f"  {name:22} {got['rate']:9.0f} {got['cpu_per_1k']:9.3f}")
    for loop in loops:
        target = "  (target >= 0.90x, <= 1.15x)" if loop == "asyncio" else ""
        print(f"  monitor/bare on {loop}, median of the rounds' ratios: "
              f"{statistics.median(paired[loop]['rate']):.2f}x probes/s, "
              f"{statistics.median(paired[loop]['cpu']):.2f}x CPU per probe{target}")
    if "uvloop" in loops and "asyncio" in loops:
        bare, mon = med["bare-asyncio"], med["monitor-uvloop"]
        print(f"  monitor on uvloop / bare on asyncio (medians): "
              f"{mon['rate'] / bare['rate']:.2f}x probes/s, "
              f"{mon['cpu_per_1k'] / bare['cpu_per_1k']:.2f}x CPU per probe")


# ----------------------------------------------------------------------- accounts per request


def fake_child(platform: str, accounts: int) -> int:
    """``--fake-child``: serve the X or Bluesky fake with N present accounts, ids known.

    The fakes' budget headers announce X's real 300 lookups per 15 minutes, which the
    monitor would rightly follow; the benchmark measures the monitor, so the fake's budget
    is raised (the headers are still sent, and still read)."""
    fake: Any
    if platform == "x":
        from monitor.fakes.x import FakeX

        fake = FakeX({f"u{i}": (x_id(i), "present") for i in range(accounts)})
    else:
        from monitor.fakes.bluesky import FakeBluesky

        fake = FakeBluesky({f"u{i}.bsky.social": (did(i), "present") for i in range(accounts)})
    return serve_fake(fake)


def serve_fake(fake: Any) -> int:
    """Serve a platform fake on ``$BENCH_FAKE_PORT`` until SIGTERM, its budget raised (see
    :func:`fake_child`)."""
    from monitor.fakes.server import serve_until_signal

    fake.budget_limit = 10**12
    port = int(os.environ["BENCH_FAKE_PORT"])
    asyncio.run(serve_until_signal(fake.running("127.0.0.1", port)))
    return 0


def x_id(i: int) -> str:
    return str(10**17 + i)


def did(i: int) -> str:
    """A did:plc of the real shape (24 base32 characters)."""
    digest = hashlib.sha256(f"bench:{i}".encode()).digest()
    return "did:plc:" + base64.b32encode(digest).decode().lower()[:24]


def batch_config(platform: str, base: str, accounts: int, workdir: Path) -> Path:
    if platform == "x":
        block = (f"  x:\n    base_url: {base}\n    token: ${{BENCH_X_TOKEN}}\n"
                 "    concurrency: 8\n    rate_per_second: 1000000\n    burst: 1000\n")
        rows = (f"x,u{i},{x_id(i)}\n" for i in range(accounts))
    else:
        block = (f"  bluesky:\n    base_url: {base}\n    concurrency: 8\n"
                 "    rate_per_second: 1000000\n    burst: 1000\n")
        rows = (f"bluesky,u{i}.bsky.social,{did(i)}\n" for i in range(accounts))
    return bench_config(block, itertools.chain(["platform,handle,id\n"], rows), workdir,
                        f"batch-{platform}", per_account="none")


def fake_requests(base: str) -> float:
    with urllib.request.urlopen(f"{base}/_control/stats", timeout=30) as resp:
        stats = json.loads(resp.read())
    return float(stats["requests_total"])


def accounts_per_request(platform: str, accounts: int, seconds: float,
                         workdir: Path) -> dict[str, float]:
    port = free_port()
    fake = subprocess.Popen([sys.executable, __file__, "--fake-child", platform,
                             "--accounts", str(accounts)], cwd=ROOT,
                            stdout=subprocess.DEVNULL,
                            env={**os.environ, "BENCH_FAKE_PORT": str(port)})
    base = f"http://127.0.0.1:{port}"
    mon = None
    try:
        wait_port(port, 120)
        config = batch_config(platform, base, accounts, workdir)
        from monitor.fakes.x import TOKEN

        mon = MonitorProcess(config, workdir, env={"BENCH_X_TOKEN": TOKEN})
        mon.wait_ready()
        decided = mon.wait_decided(platform)
        time.sleep(2.0)
        first, requests_before = mon.scrape(), fake_requests(base)
        time.sleep(seconds)
        last, requests_after = mon.scrape(), fake_requests(base)
        verified = (samples(last.text, "accmon_probes_total", platform=platform, result="present")
                    - samples(first.text, "accmon_probes_total", platform=platform,
                              result="present"))
        probed = (samples(last.text, "accmon_probes_total", platform=platform)
                  - samples(first.text, "accmon_probes_total", platform=platform))
        requests = requests_after - requests_before
        cpu = last.cpu - first.cpu
        return {"decided_s": decided, "verified": verified, "probed": probed,
                "requests": requests, "per_request": verified / max(requests, 1),
                "per_cpu_s": verified / max(cpu, 1e-9), "cpu": cpu,
                "wall": last.at - first.at}
    finally:
        if mon is not None:
            mon.stop()
        stop(fake)


def batching(args: argparse.Namespace, workdir: Path) -> None:
    for platform, size, target in (("x", 100, "  (target >= 50,000)"), ("bluesky", 25, "")):
        r = accounts_per_request(platform, args.batch, args.batch_seconds, workdir)
        print(f"{platform:7} ({size} per request), {args.batch} accounts: "
              f"{r['verified']:.0f} verified ({r['probed']:.0f} probed) in {r['wall']:.1f}s "
              f"with {r['requests']:.0f} requests = {r['per_request']:.1f} accounts/request; "
              f"{r['per_cpu_s']:,.0f} accounts per CPU-second{target} "
              f"(first sightings {r['decided_s']:.1f}s)")


# ----------------------------------------------------------------------- driver


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=15.0, help="one window")
    parser.add_argument("--accounts", type=int, default=10000,
                        help="accounts watched in the throughput run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved bare/monitor rounds; the median is reported")
    parser.add_argument("--loops", default="asyncio,uvloop",
                        help="event loops to measure (uvloop when installed)")
    parser.add_argument("--batch", type=int, default=100000,
                        help="accounts per batch platform (X, Bluesky); 0 skips")
    parser.add_argument("--batch-seconds", type=float, default=10.0)
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--bare-child", help=argparse.SUPPRESS)
    parser.add_argument("--fake-child", help=argparse.SUPPRESS)
    parser.add_argument("--base", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.bare_child:
        with asyncio.Runner(loop_factory=loop_factory(args.bare_child)) as runner:
            print(json.dumps(runner.run(bare_loop(args.base, args.concurrency, args.seconds))))
        return 0
    if args.fake_child:
        return fake_child(args.fake_child, args.accounts)

    with tempfile.TemporaryDirectory(prefix="accmon-bench-") as tmp:
        workdir = Path(tmp)
        print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")
        if not args.skip_throughput:
            target, base, kind = start_target(workdir)
            try:
                print(f"target: {kind} at {base}; concurrency {args.concurrency}; "
                      f"{args.seconds:g}s windows")
                throughput(args, workdir, base)
            finally:
                stop(target)
        if args.batch:
            batching(args, workdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
