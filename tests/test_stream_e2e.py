"""Bluesky pushed in real time: Jetstream account events reach the state machine, and one
confirming poll (not the stream alone) takes an account down."""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path

from monitor.fakes.bluesky import FakeBluesky
from monitor.fakes.jetstream import FakeJetstream
from monitor.model import AccountKey, Result, State
from tests.conftest import running_monitor, scrape, state_of, wait_for
from tests.test_e2e import metric


def config(bsky: str, jetstream: str, state: str) -> str:
    return f"""
monitor: {{listen_port: 0, state_path: "{state}", shutdown_grace: 1s}}
defaults:
  interval: 30s          # polling alone would take up to this long
  confirm_interval: 30s
  failure_threshold: 2
  staleness: 1h
  timeout: 2s
platforms:
  bluesky:
    probe: bluesky
    base_url: {bsky}
    rate_per_second: 100
accounts:
  - {{platform: bluesky, handle: alice.bsky.social, protected: true}}
  - {{platform: bluesky, handle: bob.bsky.social, protected: true}}
streams:
  jetstream:
    type: jetstream
    url: {jetstream}/subscribe
    platform: bluesky
routing: {{reminder_interval: null}}
"""


async def test_pushed_takedown_goes_down_within_a_second_and_a_glitch_never_pages(
        tmp_path: Path) -> None:
    bsky = FakeBluesky({"alice.bsky.social": "present", "bob.bsky.social": "present"})
    js = FakeJetstream()
    async with bsky.running() as b_url, js.running() as js_url:
        async with running_monitor(config(b_url, js_url, str(tmp_path / "s.db"))) as mon:
            alice, bob = AccountKey("bluesky", "alice.bsky.social"), \
                AccountKey("bluesky", "bob.bsky.social")
            for key in (alice, bob):
                mon.scheduler.schedule(key, 0.0)  # first sight now, not within 30 s
            await wait_for(lambda: all(state_of(mon, "bluesky", k.handle) is State.UP
                                       for k in (alice, bob)), what="up")
            dids = {mon.accounts[k].account_id for k in (alice, bob)}
            consumer = mon.streams["jetstream"]
            await wait_for(lambda: consumer.connected and set(consumer.dids) == dids,
                           what="subscribed to both DIDs")

            # A real takedown: the stream says so, the confirming poll agrees.
            bsky.set_state("alice.bsky.social", "takendown")
            pushed = time.monotonic()
            js.emit_account(mon.accounts[alice].account_id or "", False, "takendown")
            await wait_for(lambda: state_of(mon, "bluesky", alice.handle) is State.DOWN,
                           timeout=5, what="down")
            latency = time.monotonic() - pushed
            assert latency < 1.0, latency
            assert mon.accounts[alice].state.reason is not None

            # A glitch: the stream says deactivated, the AppView says present. No page.
            pushes = mon.streams["jetstream"].events["account"]
            js.emit_account(mon.accounts[bob].account_id or "", False, "deactivated")
            await wait_for(lambda: mon.streams["jetstream"].events["account"] > pushes,
                           what="the glitch received")
            # The push asks for one poll now; that poll's answer (present) is the verdict.
            present = partial(mon.metrics.probe_counts.answered, "bluesky", Result.PRESENT)
            answered = present()
            await wait_for(lambda: present() > answered, what="the confirming poll")
            assert state_of(mon, "bluesky", bob.handle) is State.UP
            assert mon.store is not None
            assert [o.key for o in mon.store.outages()] == [alice]
            text = await scrape(mon.port or 0)
        assert metric(text, "accmon_stream_connected", stream="jetstream") == 1.0
        assert (metric(text, "accmon_stream_events_total", stream="jetstream",
                       kind="account") or 0) >= 2


async def test_stream_cursor_is_persisted_and_resumed(tmp_path: Path) -> None:
    bsky = FakeBluesky({"alice.bsky.social": "present", "bob.bsky.social": "present"})
    js = FakeJetstream()
    state = str(tmp_path / "s.db")
    async with bsky.running() as b_url, js.running() as js_url:
        async with running_monitor(config(b_url, js_url, state)) as mon:
            key = AccountKey("bluesky", "alice.bsky.social")
            mon.scheduler.schedule(key, 0.0)
            await wait_for(lambda: mon.accounts[key].account_id, what="did learned")
            consumer = mon.streams["jetstream"]
            await wait_for(lambda: consumer.connected and consumer.dids, what="subscribed")
            js.emit_identity(mon.accounts[key].account_id or "", "alice.bsky.social")
            await wait_for(lambda: consumer.last_event_time_us, what="an event")
        assert mon.store is None  # closed; reopen to read what was saved
        from monitor.store import Store

        saved = Store(state).load_cursor("jetstream")
        assert saved is not None and saved >= (consumer.last_event_time_us or 0) - 1
        async with running_monitor(config(b_url, js_url, state)) as mon2:
            consumer2 = mon2.streams["jetstream"]
            await wait_for(lambda: len(js.queries) >= 2 and consumer2.connected,
                           what="reconnected")
            assert "cursor" in js.last_query
