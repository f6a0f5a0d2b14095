"""On call through the running monitor and a PagerDuty fake: silences and maintenance windows
suppress pages, never observations; acks stop reminders; additions join the watchlist."""

from __future__ import annotations

import time

from monitor.app import Monitor
from monitor.fakes.mastodon import FakeMastodon
from monitor.fakes.pagers import FakePagerDuty
from monitor.matchers import Matcher
from monitor.model import AccountKey, State
from monitor.silences import Silence
from monitor.store import OutboxStatus
from tests.conftest import quiet, running_monitor, scrape, state_of, wait_for
from tests.test_e2e import metric
from tests.test_paging import paging_config, resolves, triggers


def silence(*matchers: Matcher, minutes: float = 60) -> Silence:
    now = time.time()
    return Silence(f"s-{now}", matchers, now, now + minutes * 60, "alice",
                   "planned deactivation", now, now)


def outage_key(mon: Monitor, handle: str) -> str:
    outage = mon.accounts[AccountKey("masto", handle)].state.outage_id
    return f"accmon/masto/{handle}/outage-{outage}"


def statuses(mon: Monitor) -> list[str]:
    assert mon.store is not None
    return [r.status for r in mon.store.outbox_rows("pd")]


async def test_a_silenced_account_is_watched_but_not_paged_until_the_silence_ends(
        state_file: str) -> None:
    masto, pd = FakeMastodon({"alice": "present", "bob": "present"}), FakePagerDuty()
    async with masto.running() as m_url, pd.running() as pd_url:
        config = paging_config(m_url, pd_url, ["alice", "bob"], state_file)
        async with running_monitor(config) as mon:
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="up")
            s = mon.silencing.add(silence(Matcher("account", "alice")), "alice", "127.0.0.1")
            masto.set_state("alice", "gone")
            masto.set_state("bob", "suspended")
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.DOWN, what="down")
            # bob is not silenced: his page goes out; alice's is kept back, not sent.
            await wait_for(lambda: triggers(pd, outage_key(mon, "bob")), what="bob paged")
            await wait_for(lambda: OutboxStatus.SILENCED in statuses(mon), what="kept back")
            await quiet(mon, ["alice", "bob"])
            assert triggers(pd, outage_key(mon, "alice")) == []
            assert mon.store is not None
            # Still watched: alice's outage is recorded like bob's.
            assert {o.key.handle for o in mon.store.outages(open_only=True)} == {"alice", "bob"}
            text = await scrape(mon.port or 0)
            assert metric(text, "accmon_notifications_suppressed_total", reason="silence",
                          kind="vanished") == 1
            assert metric(text, "accmon_silences", state="active") == 1
            # The silence ends while alice is still gone: her page goes out, once.
            mon.silencing.expire(s.id, "alice", None)
            await wait_for(lambda: triggers(pd, outage_key(mon, "alice")), what="paged late")
            await quiet(mon, ["alice"])
            key = outage_key(mon, "alice")
            assert len(triggers(pd, key)) == 1
            masto.set_state("alice", "present")
            await wait_for(lambda: resolves(pd, key), what="resolved")


async def test_an_outage_that_ends_inside_the_silence_never_pages(state_file: str) -> None:
    masto, pd = FakeMastodon({"alice": "present"}), FakePagerDuty()
    async with masto.running() as m_url, pd.running() as pd_url:
        async with running_monitor(paging_config(m_url, pd_url, ["alice"], state_file)) as mon:
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="up")
            s = mon.silencing.add(silence(Matcher("team", ""), Matcher("platform", "masto")),
                                  "alice", None)
            masto.set_state("alice", "gone")
            await wait_for(lambda: OutboxStatus.SILENCED in statuses(mon), what="kept back")
            masto.set_state("alice", "present")
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="back")
            await wait_for(lambda: statuses(mon) == [OutboxStatus.DROPPED], what="dropped")
            mon.silencing.expire(s.id, "alice", None)
            await quiet(mon, ["alice"])
            assert statuses(mon) == [OutboxStatus.DROPPED]
        assert pd.requests == []


async def test_a_page_open_before_the_silence_is_left_open_and_resolved_truthfully(
        state_file: str) -> None:
    masto, pd = FakeMastodon({"alice": "present"}), FakePagerDuty()
    async with masto.running() as m_url, pd.running() as pd_url:
        config = paging_config(m_url, pd_url, ["alice"], state_file).replace(
            "reminder_interval: null", "reminder_interval: 300ms")
        async with running_monitor(config) as mon:
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="up")
            masto.set_state("alice", "gone")
            await wait_for(lambda: triggers(pd, outage_key(mon, "alice")), what="paged")
            key = outage_key(mon, "alice")
            mon.silencing.add(silence(Matcher("account", "alice")), "alice", None)
            sent = len(pd.accepted)
            await quiet(mon, ["alice"])
            await quiet(mon, ["alice"])  # reminders would come every 300 ms
            assert len(pd.accepted) == sent  # no faked resolve, no reminder
            assert len(pd.open_incidents()) == 1
            text = await scrape(mon.port or 0)
            assert (metric(text, "accmon_notifications_suppressed_total", reason="silence",
                           kind="reminder") or 0) >= 1
            masto.set_state("alice", "present")
            await wait_for(lambda: resolves(pd, key), what="resolved")
            assert pd.open_incidents() == []


async def test_a_maintenance_window_keeps_pages_back_until_it_leaves_the_config(
        state_file: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime, timedelta

    from monitor.config import parse_config

    masto, pd = FakeMastodon({"alice": "present"}), FakePagerDuty()
    start = datetime.now(UTC) - timedelta(minutes=5)
    window = f"""
maintenance:
  - name: masto-migration
    matchers: ['platform="masto"', 'protected="true"']
    starts: {start.isoformat()}
    ends: {(start + timedelta(hours=2)).isoformat()}
"""
    async with masto.running() as m_url, pd.running() as pd_url:
        plain = paging_config(m_url, pd_url, ["alice"], state_file)
        cfg = tmp_path / "monitor.yaml"
        cfg.write_text(plain + window)
        mon = Monitor(parse_config(cfg.read_text(), str(cfg), env={}), config_path=str(cfg))
        await mon.start()
        try:
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="up")
            text = await scrape(mon.port or 0)
            assert metric(text, "accmon_maintenance_window_active",
                          window="masto-migration") == 1
            masto.set_state("alice", "gone")
            await wait_for(lambda: OutboxStatus.SILENCED in statuses(mon), what="kept back")
            await quiet(mon, ["alice"])
            assert pd.requests == []
            text = await scrape(mon.port or 0)
            assert metric(text, "accmon_notifications_suppressed_total",
                          reason="maintenance", kind="vanished") == 1
            cfg.write_text(plain)  # the window is taken out: its page is due now
            assert await mon.reload() == []
            await wait_for(lambda: triggers(pd, outage_key(mon, "alice")), what="paged")
            await quiet(mon, ["alice"])
            assert len(pd.accepted) == 1
        finally:
            await mon.stop()


async def test_an_ack_stops_reminders_and_reaches_pagerduty_once(state_file: str) -> None:
    masto, pd = FakeMastodon({"alice": "present"}), FakePagerDuty()
    async with masto.running() as m_url, pd.running() as pd_url:
        config = paging_config(m_url, pd_url, ["alice"], state_file).replace(
            "reminder_interval: null", "reminder_interval: 300ms")
        async with running_monitor(config) as mon:
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="up")
            masto.set_state("alice", "gone")
            await pd.wait_for(2, timeout=10)  # the page and a first reminder
            key = outage_key(mon, "alice")
            outage = mon.accounts[AccountKey("masto", "alice")].state.outage_id
            assert outage is not None
            result = await mon.acknowledge(outage, "bob", "on it", "127.0.0.1")
            assert result.status == "acknowledged"
            assert result.outage is not None and result.outage.acked_by == "bob"
            await wait_for(lambda: [e for e in pd.accepted
                                    if e["event_action"] == "acknowledge"], what="PD ack")
            sent = len(pd.accepted)
            await quiet(mon, ["alice"])
            await quiet(mon, ["alice"])  # reminders came every 300 ms before the ack
            assert len(pd.accepted) == sent
            again = await mon.acknowledge(outage, "carol", None, None)
            assert again.status == "already" and again.outage is not None
            assert again.outage.acked_by == "bob"
            assert [e["event_action"] for e in pd.accepted].count("acknowledge") == 1
            assert mon.store is not None
            assert [(a["actor"], a["action"]) for a in mon.store.audit_log()] == [
                ("bob", "outage.ack")]
            masto.set_state("alice", "present")
            await wait_for(lambda: resolves(pd, key), what="resolved")
            closed = await mon.acknowledge(outage, "dave", None, None)
            assert closed.status == "closed"
            unknown = await mon.acknowledge(outage + 100, "dave", None, None)
            assert unknown.status == "unknown"


async def test_an_addition_counts_in_the_capacity_estimate(state_file: str) -> None:
    from monitor import capacity

    masto = FakeMastodon({"alice": "present", "carol": "present"})
    async with masto.running() as m_url:
        config = paging_config(m_url, "http://127.0.0.1:9", ["alice"], state_file)
        async with running_monitor(config) as mon:
            before = {load.platform: load for load in capacity.estimate(mon.config, None)}
            mon.additions.add({"platform": "masto", "handle": "carol", "protected": True},
                              "bob", None)
            after = {load.platform: load for load in capacity.estimate(mon.config, None)}
            assert after["masto"].accounts == before["masto"].accounts + 1
            await wait_for(lambda: state_of(mon, "masto", "carol") is State.UP, what="up")
            assert mon.accounts[AccountKey("masto", "carol")].source == "api"
