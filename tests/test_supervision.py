"""The watcher never goes quiet: no exception ends a worker, no refused write loses a page.

Real monitor, real Mastodon fake and PagerDuty fake on loopback, a real SQLite file locked by
another process. The one stand-in is a probe class whose classifier raises for one handle,
standing for any bug (a RecursionError from a hostile body, say) that escapes a probe.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from monitor import probes
from monitor.fakes.mastodon import FakeMastodon
from monitor.fakes.pagers import FakePagerDuty
from monitor.fakes.recorded import Recording
from monitor.model import AccountKey, State
from monitor.probes.base import Answer, Target
from monitor.probes.mastodon import MastodonProbe
from tests.conftest import running_monitor, state_of, wait_for
from tests.test_e2e import metric
from tests.test_paging import paging_config, triggers

# How long another process holds the state file locked (the reproduction: 15 s).
LOCK_SECONDS = float(os.environ.get("ACCMON_TEST_LOCK_SECONDS", "15"))


class BuggyMastodonProbe(MastodonProbe):
    """Mastodon, except that classifying the account ``deep`` raises, as a bug would."""

    name = "buggy-mastodon"

    def classify(self, answer: Answer, target: Target, at: float) -> Any:
        if target.handle == "deep":
            raise RecursionError("maximum recursion depth exceeded while decoding")
        return super().classify(answer, target, at)


@pytest.fixture
def buggy_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(probes.PROBES, BuggyMastodonProbe.name, BuggyMastodonProbe)


def exposition(mon: Any) -> str:
    return b"".join(mon.metrics.exposition()).decode()


def probed_at(mon: Any, handle: str) -> float:
    return mon.accounts[AccountKey("masto", handle)].last_probe_at or 0.0


async def test_an_exception_in_a_probe_ends_no_worker(buggy_probe: None,
                                                       state_file: str) -> None:
    handles = ["deep", "alice", "bob", "carol"]
    masto = FakeMastodon(dict.fromkeys(handles, "present"))
    async with masto.running() as url:
        text = paging_config(url, "http://127.0.0.1:9", handles, state_file).replace(
            "    probe: mastodon\n", "    probe: buggy-mastodon\n").replace(
            "    concurrency: 8\n", "    concurrency: 1\n")  # one worker: a death stops all
        with capture_logs() as logs:
            async with running_monitor(text) as mon:
                await wait_for(lambda: all(state_of(mon, "masto", h) is State.UP
                                           for h in handles[1:]), what="others up")
                # The buggy account is retried at its interval, again and again...
                await wait_for(lambda: (metric(exposition(mon), "accmon_probe_errors_total",
                                               platform="masto", kind="internal") or 0) >= 5,
                               what="five internal errors")
                # ...and every other account keeps being probed by the one worker.
                mark = time.time()
                await wait_for(lambda: all(probed_at(mon, h) > mark for h in handles[1:]),
                               what="others probed again")
                deep = mon.accounts[AccountKey("masto", "deep")]
                assert deep.state.state is State.UNKNOWN  # never toward down
                assert deep.last_error is not None
                assert deep.last_error.error == "internal"
                assert "RecursionError" in deep.last_error.evidence
                assert mon.ready
    tracebacks = [e for e in logs if e["event"].startswith("internal error")]
    assert len(tracebacks) == 1  # one per platform and minute, the rest are counted
    assert tracebacks[0]["platform"] == "masto"


LOCKER = textwrap.dedent("""
    import sqlite3, sys, time
    db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
    db.execute("BEGIN EXCLUSIVE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    db.execute("COMMIT")
    print("released", flush=True)
""")


@pytest.mark.slow
async def test_a_locked_state_file_delays_the_page_and_loses_nothing(state_file: str) -> None:
    handles = ["alice", "bob", "carol", "dave"]
    masto, pd = FakeMastodon(dict.fromkeys(handles, "present")), FakePagerDuty()
    async with masto.running() as m_url, pd.running() as pd_url, \
            running_monitor(paging_config(m_url, pd_url, handles, state_file)) as mon:
            await wait_for(lambda: all(state_of(mon, "masto", h) is State.UP
                                       for h in handles), what="all up")
            locker = await asyncio.create_subprocess_exec(
                sys.executable, "-c", LOCKER, state_file, str(LOCK_SECONDS),
                stdout=asyncio.subprocess.PIPE)
            try:
                assert locker.stdout is not None
                assert (await locker.stdout.readline()).strip() == b"locked"
                locked_at = time.monotonic()
                masto.set_state("alice", "suspended")
                alice = mon.accounts[AccountKey("masto", "alice")]
                await wait_for(lambda: alice.working.state is State.DOWN,
                               what="alice decided down (in memory)")
                # The decision could not be written: kept, retried, and reported.
                assert mon.writer is not None and mon.writer.backlog
                assert not mon.ready
                assert "state file not writable" in mon.not_ready()["store"]
                async with aiohttp.ClientSession() as http, \
                        http.get(f"http://127.0.0.1:{mon.port}/readyz") as resp:
                    assert resp.status == 503
                    body = await resp.json()
                assert body["checks"]["store"] is False
                assert "database is locked" in body["problems"]["store"]
                assert (metric(exposition(mon), "accmon_store_write_failures_total") or 0) >= 1
                # A decision is shown only once it is committed: metrics, API and status
                # page still say up, though probing goes on from down.
                assert state_of(mon, "masto", "alice") is State.UP
                assert metric(exposition(mon), "accmon_account_up", account="alice") == 1
                assert not metric(exposition(mon), "accmon_outages_total", platform="masto")
                async with aiohttp.ClientSession() as http, \
                        http.get(f"http://127.0.0.1:{mon.port}/api/v1/watchlist") as resp:
                    shown = {a["handle"]: a["state"] for a in (await resp.json())["accounts"]}
                assert shown["alice"] == "up"
                # Meanwhile every other account is still probed, on time.
                for _ in range(3):
                    mark = time.time()
                    await wait_for(lambda m=mark: all(probed_at(mon, h) > m
                                                      for h in handles[1:]),
                                   timeout=2.0, what="others probed during the lock")
                assert pd.accepted == []  # nothing paged from a decision not yet written
                # The lock lifts: the decision and its page arrive, exactly once.
                await asyncio.wait_for(locker.wait(), timeout=LOCK_SECONDS + 10)
                await wait_for(lambda: mon.ready, timeout=10, what="ready again")
                assert state_of(mon, "masto", "alice") is State.DOWN  # committed: shown
                assert alice.ahead is None and alice.working is alice.state
                assert metric(exposition(mon), "accmon_account_up", account="alice") == 0
                assert metric(exposition(mon), "accmon_outages_total", platform="masto") == 1
                assert time.monotonic() - locked_at >= LOCK_SECONDS
                outage = mon.accounts[AccountKey("masto", "alice")].state.outage_id
                key = f"accmon/masto/alice/outage-{outage}"
                # (four accounts: a vanish page also waits out the anomaly grace, 15 s from
                # the decision, which a long enough lock has already used up)
                await pd.wait_for(1, timeout=25)
                assert len(triggers(pd, key)) == 1
                assert mon.store is not None
                stored = mon.store.outages(handle="alice")
                assert [o.id for o in stored] == [outage]
                assert stored[0].recovered_at is None
            finally:
                if locker.returncode is None:
                    locker.kill()
                    await locker.wait()


async def test_deep_json_for_one_account_leaves_every_other_account_probed(
        state_file: str) -> None:
    """The reproduction from the field: one account's answer is 200k nested arrays."""
    handles = ["deep", "alice", "bob", "carol"]
    masto = FakeMastodon(dict.fromkeys(handles, "present"))
    masto.serve_recorded("deep", Recording(
        path=Path("deep.json"), platform="mastodon", status=200,
        headers={"Content-Type": "application/json; charset=utf-8"},
        body="[" * 200_000 + "]" * 200_000, source={}, expected={}))
    async with masto.running() as url:
        text = paging_config(url, "http://127.0.0.1:9", handles, state_file).replace(
            "    concurrency: 8\n", "    concurrency: 1\n")
        async with running_monitor(text) as mon:
            await wait_for(lambda: all(state_of(mon, "masto", h) is State.UP
                                       for h in handles[1:]), what="others up")
            await wait_for(lambda: (metric(exposition(mon), "accmon_probe_errors_total",
                                           platform="masto", kind="parse") or 0) >= 3,
                           what="deep answered three times")
            for _ in range(3):
                mark = time.time()
                await wait_for(lambda m=mark: all(probed_at(mon, h) > m for h in handles[1:]),
                               timeout=2.0, what="others probed on time")
            deep = mon.accounts[AccountKey("masto", "deep")]
            assert deep.state.state is State.UNKNOWN
            assert deep.last_error is not None and deep.last_error.error == "parse"
            assert metric(exposition(mon), "accmon_probe_errors_total", platform="masto",
                          kind="internal") is None


class LockingPagerDuty(FakePagerDuty):
    """PagerDuty that, before answering the first event, has another process lock the
    monitor's state file for ``seconds``: the outbox cannot record that delivery at once."""

    def __init__(self, state_file: str, seconds: float) -> None:
        super().__init__()
        self.state_file, self.seconds = state_file, seconds
        self.locker: asyncio.subprocess.Process | None = None

    async def _enqueue(self, request: web.Request) -> web.Response:
        if self.locker is None:
            self.locker = await asyncio.create_subprocess_exec(
                sys.executable, "-c", LOCKER, self.state_file, str(self.seconds),
                stdout=asyncio.subprocess.PIPE)
            assert self.locker.stdout is not None
            assert (await self.locker.stdout.readline()).strip() == b"locked"
        return await super()._enqueue(request)


@pytest.mark.slow
async def test_a_page_sent_while_the_file_is_locked_is_recorded_once_not_resent(
        state_file: str) -> None:
    handles = ["alice", "bob"]  # two: no anomaly grace, the page goes out at once
    masto = FakeMastodon(dict.fromkeys(handles, "present"))
    pd = LockingPagerDuty(state_file, 1.0)  # past the 200 ms busy timeout: writes fail
    async with masto.running() as m_url, pd.running() as pd_url, \
            running_monitor(paging_config(m_url, pd_url, handles, state_file).replace(
                "timeout: 300ms", "timeout: 10s")) as mon:
        await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="up")
        masto.set_state("alice", "suspended")
        await wait_for(lambda: pd.locker is not None, what="the page, and the lock")
        assert pd.locker is not None
        try:
            await asyncio.wait_for(pd.locker.wait(), timeout=15)
        finally:
            if pd.locker.returncode is None:
                pd.locker.kill()
                await pd.locker.wait()
        assert mon.store is not None
        store = mon.store
        await wait_for(lambda: [r.status for r in store.outbox_rows()] == ["delivered"],
                       what="the delivery recorded")
        assert (metric(exposition(mon), "accmon_store_write_failures_total") or 0) >= 1
        assert len(pd.accepted) == 1 and pd.accepted[0]["event_action"] == "trigger"
        masto.set_state("alice", "present")
        await wait_for(lambda: len(pd.accepted) == 2, what="the resolve")
        assert [e["event_action"] for e in pd.accepted] == ["trigger", "resolve"]
