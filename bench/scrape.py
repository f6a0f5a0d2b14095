#!/usr/bin/env python3
"""What one /metrics scrape costs, per `monitor.metrics.per_account` mode and watchlist size.

    .venv/bin/python bench/scrape.py [--sizes 10000,100000] [--runs 5] [--prometheus]

For each size and mode (all, protected, none; `auto` is `all` up to 10,000 accounts and
`protected` above) it renders the exposition the `/metrics` handler streams
(``Metrics.exposition``, the client-library part included) from a steady-state table and
prints the bytes (uncompressed, and gzip at zlib's default level as aiohttp sends it to
Prometheus, with the CPU the compression takes), the series, and the render time, wall
clock and CPU: the median of ``--runs`` renders, each timed alone. Two tables:

- ``issue``: the shape issue 13 measured (61.5 MB at 100k): one platform `bench`, handles
  `u0`..`u99999`, every account up.
- ``mixed``: four platforms with handles of realistic length (X 13 characters, Bluesky
  `a0000123.bsky.social`, Mastodon and GitHub 10), 1 % protected, 99 % up, 0.5 % down,
  0.2 % suspect, 0.3 % unknown, 0.5 % blind.

Then the worst cases of `all` at the largest size: every account down (a mass vanish: each
then has an outage age too) and every account blind (our own outage).

Last, the hot path: ``Metrics.observed`` per call, for a present and an error answer.

``--prometheus``: also the cost to Prometheus itself. Debian's ``prometheus`` scrapes the
mixed table once a second from a loopback server; after five scrapes it prints
``prometheus_tsdb_head_series`` and Prometheus' resident memory, per size and mode.

A benchmark, not a test: the machine is shared and noisy, so compare figures within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.metrics import AccountView, Metrics  # noqa: E402
from monitor.model import (  # noqa: E402
    AbsentReason,
    AccountKey,
    AccountState,
    ErrorKind,
    Observation,
    State,
)

NOW = 1_700_000_000.0
MODES = ("all", "protected", "none")
MIXED = (("x", "acct_{:08d}"), ("bluesky", "a{:07d}.bsky.social"),
         ("mastodon", "user{:06d}"), ("github", "dev-{:06d}"))


def issue_table(n: int) -> list[AccountView]:
    return [AccountView(AccountKey("bench", f"u{i}"), i % 100 == 0,
                        AccountState(State.UP, last_decisive_at=NOW - 1),
                        last_probe_at=NOW - i % 300) for i in range(n)]


def _mixed_state(i: int) -> AccountState:
    r = i % 1000
    if r < 5:
        return AccountState(State.DOWN, reason=AbsentReason.SUSPENDED,
                            first_absent_at=NOW - 60 - r)
    if r < 7:
        return AccountState(State.SUSPECT, reason=AbsentReason.NOT_FOUND,
                            first_absent_at=NOW - 5)
    if r < 10:
        return AccountState()
    return AccountState(State.UP, blind=r < 15)


def mixed_table(n: int) -> list[AccountView]:
    table = []
    for i in range(n):
        platform, handle = MIXED[i % len(MIXED)]
        table.append(AccountView(AccountKey(platform, handle.format(i)), i % 100 == 1,
                                 _mixed_state(i), last_probe_at=NOW - i % 300))
    return table


def all_down(n: int) -> list[AccountView]:
    return [AccountView(v.key, v.protected, AccountState(
        State.DOWN, reason=AbsentReason.SUSPENDED, first_absent_at=NOW - 600),
        last_probe_at=v.last_probe_at) for v in mixed_table(n)]


def all_blind(n: int) -> list[AccountView]:
    return [AccountView(v.key, v.protected, AccountState(State.UP, blind=True),
                        last_probe_at=v.last_probe_at) for v in mixed_table(n)]


def monitor_metrics(table: list[AccountView], mode: str) -> Metrics:
    """A Metrics as a running monitor has it: the platforms configured, the client-library
    families with a child per platform and result or error kind."""
    metrics = Metrics(lambda: table, per_account=mode)
    platforms = sorted({v.key.platform for v in table})
    metrics.watchlist({p: sum(v.key.platform == p for v in table) for p in platforms},
                      dict.fromkeys(platforms, 60.0))
    for platform in platforms:
        metrics.observed(platform, Observation.present(NOW, latency=0.2))
        metrics.observed(platform, Observation.failed(NOW, ErrorKind.TIMEOUT, latency=10))
        metrics.outage_duration.labels(platform, "false").observe(300)
    return metrics


def measure(metrics: Metrics, runs: int) -> tuple[bytes, float, float]:
    """The body and the median render time, wall clock and CPU (a collection first, so
    each run starts alike; CPU time is the steadier figure on a shared machine)."""
    wall, cpu = [], []
    body = b""
    for _ in range(runs):
        gc.collect()
        start, start_cpu = time.perf_counter(), time.process_time()
        body = b"".join(metrics.exposition(now=NOW))
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return body, statistics.median(wall), statistics.median(cpu)


def series(body: bytes) -> int:
    return sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))


def row(label: str, n: int, mode: str, figures: tuple[bytes, float, float],
        gzip: bool) -> None:
    body, wall, cpu = figures
    packed = "       -        -"
    if gzip:
        start = time.process_time()
        size = len(zlib.compress(body))
        packed = f"{size / 1e6:8.2f} {(time.process_time() - start) * 1000:8.1f}"
    print(f"{label:<10} {n:>8,} {mode:<10} {len(body) / 1e6:8.2f} {packed} "
          f"{series(body):>9,} {len(body) / max(n, 1):7.0f} {wall * 1000:8.1f} "
          f"{cpu * 1000:8.1f}")


def render_figures(sizes: list[int], runs: int) -> None:
    print(f"render: median of {runs} runs; MB = 10^6 bytes; gzip: zlib level 6, CPU ms "
          "of one run")
    print(f"{'table':<10} {'accounts':>8} {'mode':<10} {'MB':>8} {'MB gzip':>8} "
          f"{'gzip ms':>8} {'series':>9} {'B/acct':>7} {'wall ms':>8} {'CPU ms':>8}")
    tables: tuple[tuple[str, Callable[[int], list[AccountView]]], ...] = (
        ("issue", issue_table), ("mixed", mixed_table))
    for label, build in tables:
        for n in sizes:
            table = build(n)
            for mode in MODES:
                row(label, n, mode, measure(monitor_metrics(table, mode), runs),
                    gzip=mode == "all")
    worst: tuple[tuple[str, Callable[[int], list[AccountView]]], ...] = (
        ("all down", all_down), ("all blind", all_blind))
    for label, build in worst:
        n = max(sizes)
        row(label, n, "all", measure(monitor_metrics(build(n), "all"), runs), gzip=True)


# ------------------------------------------------------------------ what Prometheus pays


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def prometheus_cost(n: int, mode: str, binary: str) -> tuple[float, float]:
    """(head series, resident MB) of a Prometheus after five scrapes of the mixed table."""
    from aiohttp import ClientSession, web

    metrics = monitor_metrics(mixed_table(n), mode)

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/plain; version=0.0.4"})
        await response.prepare(request)
        for chunk in metrics.exposition():
            await response.write(chunk)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/metrics", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port, prom_port = free_port(), free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    with tempfile.TemporaryDirectory(prefix="accmon-bench-") as tmp:
        config = Path(tmp) / "prometheus.yml"
        config.write_text(
            "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
            "scrape_configs:\n  - job_name: account-monitor\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n")
        proc = await asyncio.create_subprocess_exec(
            binary, f"--config.file={config}", f"--storage.tsdb.path={tmp}/tsdb",
            f"--web.listen-address=127.0.0.1:{prom_port}", "--log.level=error",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            stdin=asyncio.subprocess.DEVNULL)
        try:
            async with ClientSession() as http:
                deadline = time.monotonic() + 120
                url = f"http://127.0.0.1:{prom_port}"
                while True:
                    if time.monotonic() > deadline:
                        raise TimeoutError("Prometheus took five scrapes longer than 120 s")
                    await asyncio.sleep(1)
                    try:
                        async with http.get(url + "/api/v1/query", params={
                                "query": 'count_over_time(up{job="account-monitor"}[1m])'
                        }) as resp:
                            result = (await resp.json())["data"]["result"]
                    except (OSError, ValueError, KeyError):
                        continue
                    if result and float(result[0]["value"][1]) >= 5:
                        break
                async with http.get(url + "/metrics") as resp:
                    text = await resp.text()
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), timeout=30)
            await runner.cleanup()
    own = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
           if line and not line.startswith("#")}
    return own["prometheus_tsdb_head_series"], own["process_resident_memory_bytes"] / 1e6


def prometheus_figures(sizes: list[int]) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        print("\n--prometheus: Debian's `prometheus` is not on the PATH (apt-get install "
              "prometheus)")
        return
    print(f"\nPrometheus after five scrapes of the mixed table ({binary}):")
    print(f"{'accounts':>8} {'mode':<10} {'head series':>11} {'RSS MB':>7}")
    for n in sizes:
        for mode in MODES:
            head, rss = asyncio.run(prometheus_cost(n, mode, binary))
            print(f"{n:>8,} {mode:<10} {head:>11,.0f} {rss:>7.0f}")


def hot_path() -> None:
    """``Metrics.observed``, called once per probe answer: microseconds per call."""
    import timeit

    metrics = Metrics(list)
    present = Observation.present(NOW, latency=0.2)
    failed = Observation.failed(NOW, ErrorKind.TIMEOUT, latency=1.0)
    figures = {name: min(timeit.repeat(lambda obs=obs: metrics.observed("x", obs),
                                       number=100_000, repeat=5)) / 100_000 * 1e6
               for name, obs in (("present", present), ("error", failed))}
    print("\nMetrics.observed (best of 5 x 100k calls): "
          + ", ".join(f"{name} {us:.2f} us" for name, us in figures.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000",
                        help="watchlist sizes, comma-separated (default 10000,100000)")
    parser.add_argument("--runs", type=int, default=5, help="renders per case (median)")
    parser.add_argument("--prometheus", action="store_true",
                        help="also what a real Prometheus holds after five scrapes")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    render_figures(sizes, args.runs)
    hot_path()
    if args.prometheus:
        prometheus_figures(sizes)


if __name__ == "__main__":
    main()
