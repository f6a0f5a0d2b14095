"""Paging end to end on loopback: monitor -> outbox -> PagerDuty fake, under faults and kills."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from monitor.fakes.mastodon import FakeMastodon
from monitor.fakes.pagers import FakePagerDuty, Scripted
from monitor.model import AccountKey, State
from tests.conftest import (
    free_port,
    mastodon_config,
    quiet,
    running_monitor,
    scrape,
    state_of,
    wait_for,
)
from tests.test_e2e import _account, _wait_account, metric

ROOT = Path(__file__).resolve().parent.parent
ROUTING_KEY = "R0UT1NGK3Y0123456789abcdef012345"


def paging_config(masto: str, pd: str, handles: list[str], state_path: str,
                  routing: str = "") -> str:
    extra = f"""
notifiers:
  pd:
    type: pagerduty
    routing_key: ${{PD_ROUTING_KEY:-{ROUTING_KEY}}}
    url: {pd}/v2/enqueue
    timeout: 300ms
routing:
  retry_initial: 50ms
  retry_max: 200ms
  reminder_interval: null
{routing}"""
    return mastodon_config(masto, handles, state_path=state_path, extra=extra)


def triggers(pd: FakePagerDuty, key: str) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in pd.accepted if e["dedup_key"] == key and e["event_action"] == "trigger"]


def resolves(pd: FakePagerDuty, key: str) -> list[dict]:  # type: ignore[type-arg]
    return [e for e in pd.accepted if e["dedup_key"] == key and e["event_action"] == "resolve"]


async def test_pager_outage_then_exactly_one_trigger_and_one_resolve(state_file: str) -> None:
    masto, pd = FakeMastodon({"alice": "present"}), FakePagerDuty()
    async with masto.running() as m_url, pd.running() as pd_url:
        async with running_monitor(paging_config(m_url, pd_url, ["alice"], state_file)) as mon:
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="up")
            # The pager is sick for a while: 5xx, throttling with Retry-After, hangs.
            pd.script(500, 502, Scripted(429, retry_after=0.3), "hang", 503, 500, "hang", 500,
                      500, 500)
            masto.set_state("alice", "suspended")
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.DOWN, what="down")
            outage = mon.accounts[AccountKey("masto", "alice")].state.outage_id
            key = f"accmon/masto/alice/outage-{outage}"
            await pd.wait_for(1, timeout=15)
            await quiet(mon, ["alice"])  # nothing more should come
            assert len(triggers(pd, key)) == 1
            assert len(pd.requests) == 11  # ten refused or abandoned, then the one accepted
            event = triggers(pd, key)[0]
            assert event["routing_key"] == ROUTING_KEY
            assert event["payload"]["severity"] == "critical"
            assert "alice vanished (suspended)" in event["payload"]["summary"]

            masto.set_state("alice", "present")
            await wait_for(lambda: resolves(pd, key), what="resolve")
            await quiet(mon, ["alice"])
            assert len(resolves(pd, key)) == 1 and len(triggers(pd, key)) == 1
            assert pd.open_incidents() == []
            text = await scrape(mon.port or 0)
        assert metric(text, "accmon_notifications_total", notifier="pd", action="trigger",
                      outcome="sent") == 1
        assert metric(text, "accmon_notifications_total", notifier="pd", action="trigger",
                      outcome="retried") == 10
        assert metric(text, "accmon_outbox_pending", notifier="pd") == 0


async def test_flapping_within_the_failure_threshold_never_pages(state_file: str) -> None:
    masto, pd = FakeMastodon({"alice": "present"}), FakePagerDuty()
    async with masto.running() as m_url, pd.running() as pd_url:
        config = paging_config(m_url, pd_url, ["alice"], state_file)
        config = config.replace("failure_threshold: 2", "failure_threshold: 3")
        async with running_monitor(config) as mon:
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="up")
            for _ in range(5):
                masto.set_state("alice", "suspended")
                await wait_for(lambda: state_of(mon, "masto", "alice") is State.SUSPECT,
                               what="suspect")
                masto.set_state("alice", "present")
                await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="up")
            await quiet(mon, ["alice"])
            assert mon.store is not None and mon.store.outbox_rows("pd") == []  # none written
        assert pd.accepted == [] and pd.requests == []


async def test_a_permanent_error_is_not_retried_and_max_age_gives_up(state_file: str) -> None:
    masto_fake, pd = FakeMastodon({"alice": "present", "bob": "present"}), FakePagerDuty()
    async with masto_fake.running() as m_url, pd.running() as pd_url:
        config = paging_config(m_url, pd_url, ["alice", "bob"], state_file,
                               routing="  max_age: 1s\n")
        async with running_monitor(config) as mon:
            await wait_for(lambda: all(state_of(mon, "masto", h) is State.UP
                                       for h in ("alice", "bob")), what="up")
            pd.script(400)  # "invalid event": permanent
            masto_fake.set_state("alice", "gone")
            await wait_for(lambda: len(pd.requests) >= 1, what="first attempt")
            # The 400 is final: the row is failed at once, so nothing is left to retry...
            await wait_for(lambda: mon.store is not None
                           and [r.status for r in mon.store.outbox_rows("pd")] == ["failed"],
                           what="the refused page marked failed")
            await quiet(mon, ["alice", "bob"])  # ...and nothing more comes meanwhile
            assert len(pd.requests) == 1  # never retried

            pd.script(*([500] * 200))  # the pager is down longer than max_age
            masto_fake.set_state("bob", "gone")
            await wait_for(lambda: state_of(mon, "masto", "bob") is State.DOWN, what="bob down")
            await wait_for(lambda: mon.store is not None and not mon.store.outbox_pending(),
                           timeout=8, what="give-up")
            text = await scrape(mon.port or 0)
            rows = mon.store.outbox_rows("pd") if mon.store else []
        assert [r.status for r in rows] == ["failed", "failed"]
        assert "max_age" in (rows[1].last_error or "")
        assert metric(text, "accmon_notifications_total", notifier="pd", outcome="failed") == 2
        assert metric(text, "accmon_outbox_pending", notifier="pd") == 0


async def test_reminders_repeat_while_down_with_the_outage_key(state_file: str) -> None:
    masto, pd = FakeMastodon({"alice": "present"}), FakePagerDuty()
    async with masto.running() as m_url, pd.running() as pd_url:
        config = paging_config(m_url, pd_url, ["alice"], state_file)
        config = config.replace("reminder_interval: null", "reminder_interval: 400ms")
        async with running_monitor(config) as mon:
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="up")
            masto.set_state("alice", "gone")
            await pd.wait_for(3, timeout=10)
            outage = mon.accounts[AccountKey("masto", "alice")].state.outage_id
        key = f"accmon/masto/alice/outage-{outage}"
        summaries = [e["payload"]["summary"] for e in triggers(pd, key)]
        assert "vanished" in summaries[0] and "still gone after" in summaries[1]
        assert len(pd.open_incidents()) == 1  # PagerDuty folds reminders into one incident


# ------------------------------------------------------------------ killed mid-delivery


def _start(cfg: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ, PD_ROUTING_KEY=ROUTING_KEY)
    return subprocess.Popen([sys.executable, "-m", "monitor", "run", "--config", str(cfg),
                             "--port", str(port), "--log-format", "json"], cwd=ROOT, env=env,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def outbox(db: Path) -> list[tuple[str, str]]:
    """(dedup_key, status) of every outbox row, read from the state file itself."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return conn.execute("SELECT dedup_key, status FROM outbox ORDER BY id").fetchall()


async def _probed_again(port: int, handle: str, times: int) -> None:
    """The monitor process answered and decided ``handle`` ``times`` more times from now
    (its API's ``last_probe_at`` moved past a fresh mark that often)."""
    for _ in range(times):
        mark = time.time()

        async def answered_after(mark: float = mark) -> bool:
            row = await _account(port, handle)
            return row is not None and (row["last_probe_at"] or 0) > mark

        await wait_for(answered_after, what=f"{handle} probed again")


@pytest.mark.slow
async def test_killed_between_commit_and_delivery_pages_after_restart(tmp_path: Path) -> None:
    masto, pd = FakeMastodon({"alice": "present"}), FakePagerDuty()
    db, log = tmp_path / "state.db", tmp_path / "monitor.log"
    async with masto.running() as m_url, pd.running() as pd_url:
        cfg = tmp_path / "monitor.yaml"
        text = paging_config(m_url, pd_url, ["alice"], str(db))
        cfg.write_text(text.replace("routing_key: ${PD_ROUTING_KEY:-" + ROUTING_KEY + "}",
                                    "routing_key: ${PD_ROUTING_KEY}"))
        port = free_port()
        proc = _start(cfg, port, log)
        try:
            await _wait_account(port, "alice", "up")
            pd.script(*(["hang"] * 50))  # every delivery attempt hangs: commit, no delivery
            masto.set_state("alice", "suspended")
            down = await _wait_account(port, "alice", "down")
            await wait_for(lambda: len(pd.requests) >= 1 or None, what="delivery in flight")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=5)
            key = f"accmon/masto/alice/outage-{down['outage_id']}"
            assert outbox(db) == [(key, "pending")]
            # The dead process's requests still in the fake's socket buffer are all taken
            # while the script still says hang, not accepted once it is healthy.
            await pd.drained()
            assert pd.accepted == []

            pd.script()  # healthy again
            pd._script.clear()
            proc = _start(cfg, port, log)
            await wait_for(lambda: pd.accepted or None, timeout=15, what="delivery")
            await wait_for(lambda: outbox(db) == [(key, "delivered")],
                           what="the delivery recorded")
            # The monitor goes on deciding: two more answers, and still nothing to send.
            await _probed_again(port, "alice", times=2)
            assert outbox(db) == [(key, "delivered")]
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=8) == 0
    # Stopped with nothing pending: nothing more can have been sent, or be sent later.
    assert outbox(db) == [(key, "delivered")]
    assert [(e["event_action"], e["dedup_key"]) for e in pd.accepted] == [("trigger", key)]
    assert ROUTING_KEY not in log.read_text()  # the secret never reaches a log line
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    assert any(e.get("event") == "notification delivered" and e.get("dedup_key") == key
               for e in lines)
    assert time.time() > 0


async def test_the_fake_pager_is_drained_only_once_its_clients_connections_are_closed() -> None:
    """What the kill tests wait on before the pager turns healthy: a client's keep-alive
    connection counts until that client closes it (or dies)."""
    pd = FakePagerDuty()
    async with pd.running() as url, aiohttp.ClientSession() as session:
        event = {"routing_key": ROUTING_KEY, "event_action": "trigger", "dedup_key": "k",
                 "payload": {"summary": "s", "source": "test", "severity": "critical"}}
        async with session.post(f"{url}/v2/enqueue", json=event) as response:
            assert response.status == 202
        assert pd.open_connections() == 1  # kept alive for the next request
        with pytest.raises(TimeoutError):
            await pd.drained(timeout=0.2)
        await session.close()
        await pd.drained()
        assert pd.open_connections() == 0
