#!/usr/bin/env python3
"""Decisions per second through the real writer and store: group commit vs one commit each.

    .venv/bin/python bench/decisions.py [--accounts 100000] [--vanish 10000] [--runs 3]
                                        [--before-sample 5000] [--dir DIR]

(``--accounts 0`` or ``--vanish 0`` skips that scenario.)

Each run opens a fresh state file (WAL, ``synchronous=FULL`` as the monitor runs it) in a
temp directory on DIR's disk and submits real decisions, built as ``decisions.py`` builds
them (the state machine's events, ``pages.plan`` routing a vanish to a PagerDuty notifier,
the outage id allocated before the write, ``done`` waking an outbox event and publishing to
a real ``EventBus`` with one listener), to the real ``StoreWriter``:

- first sightings: ACCOUNTS accounts unknown -> up (one transition row and one account
  row each);
- mass vanish: VANISH accounts, already suspect, go down (two transition rows, the outage,
  one outbox row for PagerDuty, the account row each).

Timed: from the first submit to the last ``done`` (every decision committed and told).
All decisions are ready at once, as when a platform-wide answer comes back for every
account; a second row offers them at a fixed rate (probe answers arriving while commits run)
and reports the latency from submit to ``done``. ``before`` is the old writer's path, kept
here only for comparison: each decision its own BEGIN IMMEDIATE ... COMMIT, done right after
(on BEFORE_SAMPLE decisions: the rate does not depend on how many). ``idle`` is one decision
alone, from submit to done: group commit must add no wait to it. Median of RUNS runs (by
wall-clock rate); "per CPU-s" is decisions per second of this process's CPU time in that
run, the figure other agents' load on a shared machine disturbs least.

A benchmark, not a test: the machine is shared and noisy; compare the ratios within a run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from monitor import holds, pages  # noqa: E402
from monitor import state as machine  # noqa: E402
from monitor.config import AccountConfig, Config, parse_config  # noqa: E402
from monitor.events import EventBus  # noqa: E402
from monitor.model import (  # noqa: E402
    AbsentReason,
    AccountKey,
    AccountState,
    Observation,
    Policy,
)
from monitor.store import Store  # noqa: E402
from monitor.writer import StoreWriter, Write  # noqa: E402

CONFIG = """
monitor: {state_path: unused.db}
defaults: {failure_threshold: 2}
notifiers:
  pd: {type: pagerduty, routing_key: R0UT1NGK3Y0123456789abcdef012345}
platforms:
  masto: {probe: mastodon, base_url: "https://mastodon.example"}
accounts:
  - {platform: masto, handle: template, protected: true}
"""
PLATFORM = "masto"


@dataclass(frozen=True, slots=True)
class Decision:
    """One decision as decisions.py hands it to the writer, minus the write itself."""

    key: AccountKey
    new: AccountState
    events: list[Any]
    planned: pages.Pages


class Told:
    """What ``done`` does in the monitor: wake the outbox, publish to the bus; here it also
    counts, so the run knows when the last decision is committed and told."""

    def __init__(self, expected: int) -> None:
        self.expected, self.count = expected, 0
        self.wake = asyncio.Event()  # the outbox worker's wake-up
        self.all_done = asyncio.Event()
        self.bus = EventBus()
        self.published: list[int | None] = []
        self.bus.subscribe(lambda event, row_id, st: self.published.append(row_id))
        self.latencies: list[float] = []

    def done_for(self, d: Decision, submitted_at: float) -> Callable[[Any], None]:
        def done(result: tuple[AccountState, list[int]]) -> None:
            self.wake.set()
            for event, row_id in zip(d.events, result[1], strict=True):
                self.bus.publish(event, row_id, d.new)
            self.latencies.append(time.perf_counter() - submitted_at)
            self.count += 1
            if self.count == self.expected:
                self.all_done.set()
        return done


def write_for(d: Decision, told: Told, submitted_at: float) -> Write:
    """The same Write as Decisions._write_decision builds."""
    key, new, events, planned = d.key, d.new, d.events, d.planned

    def apply(store: Store) -> tuple[AccountState, list[int]]:
        return store.decide(key, new, events, None, 1.0, planned.items, planned.drop)

    return Write(f"decision {key}", apply, told.done_for(d, submitted_at),
                 tuple(item for _, item in planned.items))


class OneCommitEach:
    """The writer before group commit (its happy path): apply in its own transaction,
    then done. For comparison only."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def submit(self, write: Write) -> bool:
        result = write.apply(self.store)
        if write.done is not None:
            write.done(result)
        return True


# ------------------------------------------------------------------ building decisions


def setup() -> tuple[Config, AccountConfig, Policy]:
    config = parse_config(CONFIG, "bench.yaml", env={})
    account = config.accounts[0]
    return config, account, config.policy(account)


def plan(config: Config, account: AccountConfig, new: AccountState, events: list[Any],
         watched: int) -> pages.Pages:
    grace = holds.grace(config, PLATFORM, watched, False, watched)
    return pages.plan(events, account, config, new.outage_id, holds.HoldState(), grace, {})


def first_sightings(n: int, config: Config) -> list[Decision]:
    _, account, policy = setup()
    out = []
    for i in range(n):
        key = AccountKey(PLATFORM, f"user{i}")
        new, events = machine.step(key, AccountState(), Observation.present(1.0), policy)
        out.append(Decision(key, new, events, plan(config, account, new, events, n)))
    return out


def suspects(n: int, policy: Policy) -> list[tuple[AccountKey, AccountState, list[Any]]]:
    """n accounts up, then one absent answer each: suspect (written before the clock)."""
    out = []
    for i in range(n):
        key = AccountKey(PLATFORM, f"user{i}")
        up, _ = machine.step(key, AccountState(), Observation.present(1.0), policy)
        st, events = machine.step(key, up, Observation.absent(2.0, AbsentReason.SUSPENDED),
                                  policy)
        out.append((key, st, events))
    return out


def vanishes(store: Store, config: Config, n: int) -> list[Decision]:
    """The second absent answer for each suspect: down, an outage, a page to PagerDuty."""
    _, account, policy = setup()
    with store.transaction():
        for key, st, events in suspects(n, policy):
            store.decide(key, st, events, None, 2.0)
    out = []
    for key, st, _ in suspects(n, policy):
        new, events = machine.step(key, st, Observation.absent(3.0, AbsentReason.SUSPENDED),
                                   policy)
        new = replace(new, outage_id=store.next_outage_id())  # as Decisions.commit does
        planned = plan(config, account, new, events, n)
        assert [item.notifier for _, item in planned.items] == ["pd"], planned
        out.append(Decision(key, new, events, planned))
    return out


# ------------------------------------------------------------------ one run


@dataclass(slots=True)
class Result:
    decisions: int
    seconds: float
    cpu_seconds: float  # this process's CPU time over the same span (others' load aside)
    commits: int | None
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.decisions / self.seconds

    @property
    def cpu_rate(self) -> float:
        return self.decisions / self.cpu_seconds


async def submit_all(writer: StoreWriter | OneCommitEach, decisions: list[Decision],
                     told: Told, rate: float | None) -> None:
    """All at once (rate None), or ``rate`` per second: each turn of the loop submits what
    has arrived by then, as probe answers arrive while a commit runs."""
    start = time.perf_counter()
    if rate is None:
        for d in decisions:
            writer.submit(write_for(d, told, time.perf_counter()))
        return
    sent = 0
    while sent < len(decisions):
        due = min(len(decisions), int((time.perf_counter() - start) * rate) + 1)
        for d in decisions[sent:due]:
            writer.submit(write_for(d, told, start + sent / rate))
            sent += 1
        await asyncio.sleep(0 if sent >= due else 1 / rate)


async def one_run(directory: Path, scenario: str, n: int, mode: str,
                  rate: float | None = None) -> Result:
    config, _, _ = setup()
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        store = Store(Path(tmp) / "state.db")
        assert store.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        decisions = (first_sightings(n, config) if scenario == "first sightings"
                     else vanishes(store, config, n))
        told = Told(len(decisions))
        writer: StoreWriter | OneCommitEach = (
            OneCommitEach(store) if mode == "before"
            else StoreWriter(store, on_failure=lambda exc: None))
        gc.collect()
        gc.freeze()  # the run's prepared decisions are the bench's heap, not the monitor's
        start, cpu = time.perf_counter(), time.process_time()
        await submit_all(writer, decisions, told, rate)
        await told.all_done.wait()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        gc.unfreeze()
        commits = writer.commits if isinstance(writer, StoreWriter) else None
        if isinstance(writer, StoreWriter):
            await writer.stop()
        rows = store.db.execute("SELECT COUNT(*) FROM transitions").fetchone()[0]
        expected = n if scenario == "first sightings" else 3 * n  # suspect + down + vanished
        assert rows == expected, (rows, expected)
        if scenario != "first sightings":
            assert store.outbox_pending() == {"pd": n}
        store.close()
    return Result(len(decisions), seconds, cpu, commits, told.latencies)


async def idle_latency(directory: Path, mode: str, samples: int = 50) -> list[float]:
    """One decision at a time, the writer idle in between: submit -> done, seconds."""
    config, _, _ = setup()
    out = []
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        store = Store(Path(tmp) / "state.db")
        writer: StoreWriter | OneCommitEach = (
            OneCommitEach(store) if mode == "before"
            else StoreWriter(store, on_failure=lambda exc: None))
        for d in first_sightings(samples, config):
            told = Told(1)
            writer.submit(write_for(d, told, time.perf_counter()))
            await told.all_done.wait()
            out.extend(told.latencies)
            await asyncio.sleep(0.002)  # idle again
        if isinstance(writer, StoreWriter):
            await writer.stop()
        store.close()
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    directory = Path(args.dir)
    print(f"state files under {directory} (synchronous=FULL, WAL); median of {args.runs} runs")
    print(f"{'scenario':<17} {'path':<14} {'decisions':>9} {'decisions/s':>12} "
          f"{'per CPU-s':>10} {'commits':>8} {'per commit':>10} {'p50 ms':>7} {'p99 ms':>7}")
    for scenario, n in (("first sightings", args.accounts), ("mass vanish", args.vanish)):
        if not n:  # --accounts 0 or --vanish 0: that scenario is skipped
            continue
        rows = [("before", min(n, args.before_sample), None),
                ("group commit", n, None)]
        if args.rate:
            rows.append((f"at {args.rate:,.0f}/s", n, args.rate))
        for label, count, rate in rows:
            mode = "before" if label == "before" else "after"
            runs = [await one_run(directory, scenario, count, mode, rate)
                    for _ in range(args.runs)]
            mid = sorted(runs, key=lambda r: r.rate)[len(runs) // 2]
            per = f"{mid.decisions / mid.commits:,.0f}" if mid.commits else "1"
            print(f"{scenario:<17} {label:<14} {mid.decisions:>9,} {mid.rate:>12,.0f} "
                  f"{mid.cpu_rate:>10,.0f} {mid.commits or mid.decisions:>8,} {per:>10} "
                  f"{pct(mid.latencies, 0.5) * 1000:>7.1f} {pct(mid.latencies, 0.99) * 1000:>7.1f}"
                  f"   (runs: {', '.join(f'{r.rate:,.0f}' for r in runs)})")
    for mode in ("before", "after"):
        lat = await idle_latency(directory, mode)
        print(f"{'idle, one alone':<17} {'before' if mode == 'before' else 'group commit':<14}"
              f" {len(lat):>9} {'':>12} {'':>10} {'':>8} {'':>10} {pct(lat, 0.5) * 1000:>7.1f} "
              f"{pct(lat, 0.99) * 1000:>7.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--vanish", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before-sample", type=int, default=5_000)
    parser.add_argument("--rate", type=float, default=20_000,
                        help="also offer the decisions at this rate (0: skip that row)")
    parser.add_argument("--dir", default=tempfile.gettempdir(),
                        help="where the state files go (its disk is the one measured)")
    asyncio.run(main(parser.parse_args()))
