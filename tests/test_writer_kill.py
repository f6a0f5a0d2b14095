"""Killed mid-batch: a group commit is all or nothing, and every page still goes out once.

Two real processes, each SIGKILLed while decisions are being committed together:

1. the real writer and store in a child process, stopped *inside* a batch (one of its writes
   blocks after 499 vanish decisions, pages included, were applied in the open transaction):
   after the kill the file holds none of that batch, is intact, and says those accounts are
   still suspect, so a restarted monitor decides them again;
2. ``account-monitor run`` watching 400 accounts on a fake Mastodon that all vanish at once,
   killed when some but not all of their down decisions are on disk, restarted: the fake
   PagerDuty gets exactly one trigger per account, none twice, none missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from monitor.fakes.mastodon import FakeMastodon
from monitor.fakes.pagers import FakePagerDuty
from monitor.model import AbsentReason, AccountKey, AccountState, Event, EventKind, State
from monitor.store import OutboxItem, Store
from monitor.writer import StoreWriter, Write
from tests.conftest import free_port, wait_for
from tests.test_paging import ROUTING_KEY, _probed_again, _start, paging_config

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


# ------------------------------------------------------------------ 1. the writer alone

BATCH_BLOCKS_AT = 500  # the write (of the second commit's batch) that never returns


def _suspect(key: AccountKey) -> tuple[AccountState, list[Event]]:
    st = AccountState(state=State.SUSPECT, absent_streak=1, reason=AbsentReason.SUSPENDED,
                      last_present_at=1.0, first_absent_at=2.0, last_absent_at=2.0, since=2.0)
    return st, [Event(EventKind.TRANSITION, key, 2.0, State.UP, State.SUSPECT,
                      AbsentReason.SUSPENDED)]


def _down(key: AccountKey, outage_id: int) -> tuple[AccountState, list[Event], OutboxItem]:
    st = AccountState(state=State.DOWN, absent_streak=2, reason=AbsentReason.SUSPENDED,
                      last_present_at=1.0, first_absent_at=2.0, last_absent_at=3.0, since=3.0,
                      outage_id=outage_id)
    details = {"last_present_at": 1.0, "first_absent_at": 2.0, "confirmed_at": 3.0}
    events = [Event(EventKind.TRANSITION, key, 3.0, State.SUSPECT, State.DOWN,
                    AbsentReason.SUSPENDED),
              Event(EventKind.VANISHED, key, 3.0, State.SUSPECT, State.DOWN,
                    AbsentReason.SUSPENDED, details)]  # type: ignore[arg-type]
    page = OutboxItem("pd", "trigger", f"accmon/x/{key.handle}/outage-{outage_id}",
                      {"summary": f"{key.handle} vanished"})
    return st, events, page


def child(path: str, accounts: int) -> None:
    """The child process: ``accounts`` suspects on disk, then each one's down decision
    submitted at once to the real writer: the first commits alone, the rest queue and go
    in one batch, whose write number BATCH_BLOCKS_AT blocks until the process is killed."""
    store = Store(path)
    with store.transaction():
        for i in range(accounts):
            key = AccountKey("x", f"user{i}")
            store.decide(key, *_suspect(key), None, 2.0)

    def write(i: int) -> Write:
        key = AccountKey("x", f"user{i}")
        st, events, page = _down(key, store.next_outage_id())

        def apply(s: Store) -> object:
            result = s.decide(key, st, events, None, 3.0, [(1, page)])
            if i == BATCH_BLOCKS_AT:
                print("inside the batch", flush=True)
                time.sleep(120)  # SIGKILL lands here, the transaction still open
            return result

        return Write(f"decision {key}", apply, lambda _: print(f"done {i}", flush=True))

    async def main() -> None:
        # No time bound: on a slow machine the batch must not be cut before the write
        # that blocks (the bound is tests/test_writer.py's business).
        writer = StoreWriter(store, on_failure=lambda exc: print(f"refused: {exc}"),
                             max_batch_seconds=600)
        for i in range(accounts):
            writer.submit(write(i))
        await asyncio.sleep(120)

    asyncio.run(main())


def test_killed_inside_a_batch_the_file_holds_none_of_it(tmp_path: Path) -> None:
    db, accounts = tmp_path / "state.db", 1000
    code = f"from tests.test_writer_kill import child; child({str(db)!r}, {accounts})"
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "done 0"  # the first, alone, at once
        assert proc.stdout.readline().strip() == "inside the batch"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    store = Store(db)  # reopening recovers from the WAL, as a restarted monitor does
    try:
        assert store.db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
        # The first decision is there, whole; of the 500 applied in the batch, nothing.
        assert [(o.key.handle, o.id) for o in store.outages()] == [("user0", 1)]
        assert [r.dedup_key for r in store.outbox_rows()] == ["accmon/x/user0/outage-1"]
        states = {k.handle: s.state.state for k, s in store.load_accounts().items()}
        assert states["user0"] is State.DOWN
        assert {states[f"user{i}"] for i in range(1, accounts)} == {State.SUSPECT}
        assert len(store.transitions(limit=5000)) == accounts + 2
    finally:
        store.close()


# ------------------------------------------------------------------ 2. the real monitor

ACCOUNTS = 400


def _count(db: Path, sql: str) -> int:
    with contextlib.closing(sqlite3.connect(db, timeout=5)) as conn:
        return int(conn.execute(sql).fetchone()[0])


def _up_on_disk(db: Path) -> int:
    """Accounts up in the state file, or -1 while the monitor has not made it yet."""
    if not db.exists():
        return -1
    try:
        return _count(db, "SELECT COUNT(*) FROM accounts WHERE state = 'up'")
    except sqlite3.OperationalError:  # no table yet: the monitor is still migrating it
        return -1


def _config(masto: str, pd: str, handles: list[str], db: Path) -> str:
    text = paging_config(masto, pd, handles, str(db))
    text = text.replace("routing_key: ${PD_ROUTING_KEY:-" + ROUTING_KEY + "}",
                        "routing_key: ${PD_ROUTING_KEY}")
    # Every account due together (no jitter) and many answers in flight: their decisions
    # reach the writer in the same turns of the loop, so they are committed in batches.
    # The fake pager shares this busy process with 400 accounts' answers: a delivery it is
    # slow to answer, given up and sent again, would be a second page of the outbox's own
    # making (at least once), not of the kill's.
    text = text.replace("timeout: 300ms", "timeout: 10s")
    text = text.replace("  interval: 100ms\n", "  interval: 1s\n")
    text = text.replace("  jitter: 0.1\n", "  jitter: 0.0\n")
    # Every account vanishing at once is a platform anomaly, whose hold would page once for
    # all of them: off, so that each account's own page is what is counted.
    return text.replace("    concurrency: 8\n",
                        "    concurrency: 64\n    anomaly:\n      enabled: false\n")


async def _kill_mid_vanish(proc: subprocess.Popen[bytes], db: Path) -> int:
    """SIGKILL ``proc`` once a tenth, not all, of the vanish decisions are committed (the
    rest decided or being decided, queued or in the batch being written); returns how many
    were committed."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        committed = _count(db, "SELECT COUNT(*) FROM outages")
        if ACCOUNTS // 10 <= committed < ACCOUNTS:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            return _count(db, "SELECT COUNT(*) FROM outages")
        if committed >= ACCOUNTS:
            pytest.fail("every decision was committed before the kill: nothing in flight")
        await asyncio.sleep(0.002)
    pytest.fail("no vanish decision committed within 30 s")


async def test_killed_mid_mass_vanish_every_page_goes_out_exactly_once(tmp_path: Path) -> None:
    handles = [f"user{i}" for i in range(ACCOUNTS)]
    # (a rate limit it never reaches: its headers would otherwise pace the probes)
    masto = FakeMastodon(dict.fromkeys(handles, "present"), rate_limit=10**9)
    pd = FakePagerDuty()
    db, log, cfg = tmp_path / "state.db", tmp_path / "monitor.log", tmp_path / "monitor.yaml"
    async with masto.running() as m_url, pd.running() as pd_url:
        cfg.write_text(_config(m_url, pd_url, handles, db))
        port = free_port()
        proc = _start(cfg, port, log)
        try:
            await wait_for(lambda: _up_on_disk(db) == ACCOUNTS, timeout=60,
                           what="every account up, on disk")
            # PagerDuty refuses (500, retried) until the restart: nothing is delivered
            # before the kill, so every trigger it takes is counted once, after it.
            pd.script(*([500] * 100_000))
            for h in handles:
                masto.set_state(h, "suspended")
            committed = await _kill_mid_vanish(proc, db)
            print(f"killed with {committed} of {ACCOUNTS} vanish decisions committed")
            # Each decision on disk is whole: its outage, its page, its state; no page
            # without its outage, none of the decisions still in flight.
            assert _count(db, "SELECT COUNT(*) FROM outbox") == committed
            assert _count(db, "SELECT COUNT(*) FROM accounts WHERE state = 'down'") == \
                committed
            assert _count(db, "SELECT COUNT(*) FROM outbox o JOIN outages g ON o.dedup_key ="
                              " 'accmon/masto/' || g.handle || '/outage-' || g.id") == committed
            # What the killed process sent just before it died may still sit in the fake's
            # socket buffer (this loop was blocked in the queries above): every such request
            # is taken, and refused, before the pager turns healthy, or the fake would accept
            # a page the dead process never saw accepted, and count it twice.
            await pd.drained()
            assert pd.accepted == []

            pd._script.clear()  # healthy again
            proc = _start(cfg, port, log)
            await wait_for(lambda: len({e["dedup_key"] for e in pd.accepted}) >= ACCOUNTS,
                           timeout=90, what="a page for every account")
            await wait_for(lambda: _count(db, "SELECT COUNT(*) FROM outbox WHERE status !="
                                              " 'delivered'") == 0,
                           timeout=30, what="every delivery recorded")
            await _probed_again(port, handles[0], times=2)  # it went on deciding: no more
            await _probed_again(port, handles[-1], times=2)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                assert proc.wait(timeout=15) == 0
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
    triggers = [e for e in pd.accepted if e["event_action"] == "trigger"]
    twice = [k for k, n in Counter(e["dedup_key"] for e in pd.accepted).items() if n > 1]
    assert twice == [], f"paged more than once: {twice}"
    assert len(triggers) == len(pd.accepted) == ACCOUNTS  # nothing else, nothing twice
    paged = sorted(e["dedup_key"].split("/")[2] for e in triggers)
    assert paged == sorted(handles)  # every account once
    assert _count(db, "SELECT COUNT(*) FROM outages") == ACCOUNTS
    assert _count(db, "SELECT COUNT(DISTINCT handle) FROM outages") == ACCOUNTS
    assert _count(db, "SELECT COUNT(*) FROM outbox WHERE status = 'delivered'") == ACCOUNTS
