#!/usr/bin/env python3
"""Pushed vs polled: time from a Bluesky takedown to the monitor's DOWN transition.

    .venv/bin/python bench/stream_to_down.py [--trials 15] [--interval 10]

The real monitor watches a fake Bluesky AppView. With Jetstream (a fake, on loopback), the
takedown's ``account`` event makes the account suspect and triggers one confirming poll,
which takes it down. Without it, polling finds the absence within ``interval`` and confirms
after ``confirm_interval``. Each trial takes one account down at a random moment and back up.
A benchmark, not a test: quote the command and its output.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from monitor.app import Monitor
from monitor.config import parse_config
from monitor.fakes.bluesky import FakeBluesky
from monitor.fakes.jetstream import FakeJetstream
from monitor.logs import configure
from monitor.model import AccountKey, State

HANDLE = "alice.bsky.social"
KEY = AccountKey("bluesky", HANDLE)


def config(bsky: str, js: str | None, state: str, interval: float, confirm: float) -> str:
    stream = f"streams: {{js: {{type: jetstream, url: '{js}/subscribe'}}}}" if js else ""
    return f"""
monitor: {{listen_port: 0, state_path: "{state}", log_level: error}}
defaults: {{interval: {interval}s, confirm_interval: {confirm}s, failure_threshold: 2,
           staleness: 1h, timeout: 2s, jitter: 0.1}}
platforms:
  bluesky: {{probe: bluesky, base_url: "{bsky}", rate_per_second: 100}}
accounts: [{{platform: bluesky, handle: {HANDLE}, protected: true}}]
routing: {{reminder_interval: null}}
{stream}
"""


async def until(predicate, timeout: float) -> float:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError
        await asyncio.sleep(0.001)
    return time.monotonic() - started


async def run(pushed: bool, trials: int, interval: float, confirm: float) -> list[float]:
    bsky, js = FakeBluesky({HANDLE: "present"}), FakeJetstream()
    latencies: list[float] = []
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        async with bsky.running() as b_url, js.running() as js_url:
            text = config(b_url, js_url if pushed else None, f"{tmp}/s.db", interval, confirm)
            monitor = Monitor(parse_config(text, "bench", env={}))
            await monitor.start()
            try:
                watched = monitor.accounts[KEY]
                monitor.scheduler.schedule(KEY, 0.0)
                await until(lambda: watched.state.state is State.UP, 10)
                if pushed:
                    consumer = monitor.streams["js"]
                    await until(lambda: consumer.connected and consumer.dids, 10)
                for _ in range(trials):
                    await asyncio.sleep(rng.uniform(0, interval))  # a random moment
                    bsky.set_state(HANDLE, "takendown")
                    if pushed:
                        js.emit_account(watched.account_id or "", False, "takendown")
                    latencies.append(await until(
                        lambda: watched.state.state is State.DOWN, 3 * interval + 5))
                    bsky.set_state(HANDLE, "present")
                    monitor.scheduler.schedule(KEY, 0.0)
                    await until(lambda: watched.state.state is State.UP, 10)
            finally:
                await monitor.stop()
    return latencies


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (f"{name:<34} n={len(values):<3} median={statistics.median(values) * 1000:8.1f} ms"
            f"  p95={p95 * 1000:8.1f} ms  max={max(values) * 1000:8.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--interval", type=float, default=10.0, help="polling interval (s)")
    parser.add_argument("--confirm", type=float, default=2.0, help="confirm_interval (s)")
    args = parser.parse_args()
    configure("json", "error")
    pushed = asyncio.run(run(True, args.trials, args.interval, args.confirm))
    polled = asyncio.run(run(False, args.trials, args.interval, args.confirm))
    print(f"interval {args.interval:g}s, confirm_interval {args.confirm:g}s, "
          f"failure_threshold 2, loopback fakes")
    print(summary("Jetstream push -> down", pushed))
    print(summary("polling only -> down", polled))
    print(f"median speed-up: {statistics.median(polled) / statistics.median(pushed):.0f}x; "
          f"target for push: < 1 s -> {'met' if max(pushed) < 1 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
