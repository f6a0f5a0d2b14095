#!/usr/bin/env python3
"""The web UI's cost: server time to render the overview for a large watchlist, and the
overview's size on the wire for 100 accounts.

    .venv/bin/python bench/ui_render.py [--accounts 10000] [--runs 20] [--small 100]

1. A real monitor on loopback watches ``--accounts`` accounts of a fake Mastodon (about 3 %
   gone, 1 % suspended, the rest present; one probe each, spread over the first minute, then
   none for a day). Once every account has an answer, the overview is built and rendered in
   process (:func:`monitor.ui.views.overview` + the Jinja template, what ``GET /`` does
   between reading the request and writing the answer) ``--runs`` times per case: the first
   page unfiltered, a ``?q=`` filter, ``?state=down``, a late page, and the public view; the
   median and the worst are printed, then the same first page over HTTP (loopback round
   trip, gzip).
2. A second monitor with ``--small`` accounts: the overview's bytes on the wire, gzip and
   identity.

A benchmark, not a test: figures depend on the machine; the target is "well under 1 s" of
server time for one page of 100 after filtering 10,000, and under 100 KB for 100 accounts.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import structlog

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor.app import Monitor  # noqa: E402
from monitor.config import parse_config  # noqa: E402
from monitor.fakes.mastodon import FakeMastodon  # noqa: E402
from monitor.model import State  # noqa: E402
from monitor.ui import routes, views  # noqa: E402
from monitor.ui.viewer import FULL, PUBLIC, PublicScope, Viewer  # noqa: E402


def config_text(base: str, handles: list[str], state_path: str) -> str:
    accounts = "".join(
        f"  - {{platform: masto, handle: {h}, protected: {str(i % 7 == 0).lower()}"
        f"{', team: public' if i % 5 == 0 else ''}}}\n" for i, h in enumerate(handles))
    return f"""
monitor: {{listen_port: 0, state_path: {state_path}, shutdown_grace: 2s}}
defaults: {{interval: 24h, confirm_interval: 1s, failure_threshold: 1, staleness: 48h}}
ui: {{public: {{enabled: false, accounts: ['team="public"']}}}}
platforms:
  masto: {{probe: mastodon, base_url: "{base}", rate_per_second: 5000, burst: 500,
           concurrency: 64}}
accounts:
{accounts}"""


def fake_for(handles: list[str], seed: int) -> FakeMastodon:
    rng = random.Random(seed)
    states = {}
    for h in handles:
        draw = rng.random()
        states[h] = "gone" if draw < 0.03 else "suspended" if draw < 0.04 else "present"
    return FakeMastodon(states, rate_limit=10**9)


async def answered(mon: Monitor, timeout: float = 300.0) -> None:
    """Every account probed once (they start spread over a minute)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = sum(w.last_probe_at is None for w in mon.accounts.values())
        if not pending:
            return
        await asyncio.sleep(0.5)
    raise SystemExit(f"{pending} accounts still unanswered after {timeout:.0f} s")


def timed(render: Callable[[], str], runs: int) -> tuple[float, float, int]:
    seconds, size = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        size = len(render().encode())
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), max(seconds), size


async def bench_render(count: int, runs: int, seed: int) -> None:
    handles = [f"account-{i:05d}" for i in range(count)]
    async with fake_for(handles, seed).running() as base:
        with tempfile.TemporaryDirectory() as tmp:
            mon = Monitor(parse_config(config_text(base, handles, f"{tmp}/s.db"), "bench.yaml",
                                       env={}))
            await mon.start()
            try:
                started = time.monotonic()
                await answered(mon)
                states: dict[str, int] = {}
                for w in mon.accounts.values():
                    states[w.state.state.value] = states.get(w.state.state.value,
                                                                   0) + 1
                print(f"{count} accounts answered in {time.monotonic() - started:.0f} s: "
                      + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
                down = states.get(State.DOWN.value, 0)
                cases = {"first page, unfiltered": (FULL, views.Filter()),
                         "?q=account-01 (100 of them)": (FULL, views.Filter(q="account-01")),
                         f"?state=down ({down})": (FULL, views.Filter(state="down")),
                         "?page=50": (FULL, views.Filter(page=50)),
                         "public view, first page": (PUBLIC, views.Filter())}
                scope = PublicScope()
                print(f"server time per overview render ({runs} runs each, median / max):")
                for name, (viewer, flt) in cases.items():
                    def render(viewer: Viewer = viewer, flt: views.Filter = flt) -> str:
                        model = views.overview(mon, viewer, flt, time.time(), scope)
                        return routes.render("overview.html", page=model)
                    median, worst, size = timed(render, runs)
                    print(f"  {name:<32} {median * 1000:8.1f} ms / {worst * 1000:8.1f} ms"
                          f"   {size / 1024:6.1f} KiB html")
                url = f"http://127.0.0.1:{mon.port}/"
                seconds = []
                async with aiohttp.ClientSession() as http:
                    for _ in range(runs):
                        start = time.perf_counter()
                        async with http.get(url) as resp:
                            await resp.read()
                        seconds.append(time.perf_counter() - start)
                print(f"  GET / over loopback (gzip)       {statistics.median(seconds) * 1000:8.1f}"
                      f" ms / {max(seconds) * 1000:8.1f} ms")
            finally:
                await mon.stop()


async def bench_size(count: int, seed: int) -> None:
    handles = [f"account-{i:05d}" for i in range(count)]
    async with fake_for(handles, seed).running() as base:
        with tempfile.TemporaryDirectory() as tmp:
            mon = Monitor(parse_config(config_text(base, handles, f"{tmp}/s.db"), "bench.yaml",
                                       env={}))
            await mon.start()
            try:
                await answered(mon)
                sizes = {}
                for encoding in ("gzip", "identity"):
                    async with aiohttp.ClientSession(auto_decompress=False) as http, http.get(
                            f"http://127.0.0.1:{mon.port}/",
                            headers={"Accept-Encoding": encoding}) as resp:
                        sizes[encoding] = len(await resp.read())
                print(f"overview of {count} accounts on the wire: {sizes['gzip']:,} bytes gzip, "
                      f"{sizes['identity']:,} bytes identity")
            finally:
                await mon.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--small", type=int, default=100)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    asyncio.run(bench_size(args.small, args.seed))
    asyncio.run(bench_render(args.accounts, args.runs, args.seed))


if __name__ == "__main__":
    main()
