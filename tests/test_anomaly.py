"""Platform anomalies: one page for a mass vanish or a failing canary; individual pages held
until it clears, then sent for accounts still gone and dropped for those that came back."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor import anomaly
from monitor.config import AnomalyConfig
from monitor.fakes.mastodon import FakeMastodon
from monitor.fakes.pagers import FakePagerDuty
from monitor.model import AccountState, State
from tests.conftest import FAST_DEFAULTS, quiet, running_monitor, state_of, wait_for

NOW = 10_000.0
CFG = AnomalyConfig(fraction=0.3, min_accounts=3, window=600)


def absent(onset: float, state: State = State.DOWN) -> AccountState:
    return AccountState(state, first_absent_at=onset)


def test_a_mass_vanish_within_the_window_is_an_anomaly() -> None:
    three = [(absent(NOW - 60), False)] * 3
    verdict = anomaly.evaluate(three, 10, NOW, CFG)
    assert verdict.active and verdict.threshold == 3 and "3 of 10" in verdict.reason
    assert not anomaly.evaluate(three[:2], 10, NOW, CFG).active


def test_the_fraction_raises_the_threshold_on_big_platforms() -> None:
    many = [(absent(NOW - 1), False)] * 29
    assert anomaly.evaluate(many, 100, NOW, CFG).threshold == 30
    assert not anomaly.evaluate(many, 100, NOW, CFG).active


def test_old_absences_and_present_accounts_do_not_count() -> None:
    mixed = [(absent(NOW - 601), False)] * 5 + [(AccountState(State.UP), False)] * 5
    assert not anomaly.evaluate(mixed, 10, NOW, CFG).active


def test_one_absent_canary_is_enough_unless_disabled() -> None:
    canary = [(absent(NOW - 1, State.SUSPECT), True)]
    assert "canary" in anomaly.evaluate(canary, 50, NOW, CFG).reason
    off = AnomalyConfig(enabled=False)
    assert not anomaly.evaluate(canary, 50, NOW, off).active


def config(base: str, pd: str, handles: list[str], state: str, canary: str = "") -> str:
    accounts = "".join(f"  - {{platform: masto, handle: {h}, protected: true}}\n"
                       for h in handles)
    if canary:
        accounts += f"  - {{platform: masto, handle: {canary}, canary: true}}\n"
    return f"""
monitor: {{listen_port: 0, state_path: "{state}"}}
{FAST_DEFAULTS}
platforms:
  masto:
    probe: mastodon
    base_url: {base}
    rate_per_second: 1000
    burst: 100
    anomaly: {{min_accounts: 3, fraction: 0.3, window: 4s, hold_for: 1s}}
accounts:
{accounts}
notifiers:
  pd: {{type: pagerduty, routing_key: "0123456789abcdef0123456789abcdef", url: "{pd}/v2/enqueue"}}
routing: {{reminder_interval: null, retry_initial: 50ms, retry_max: 200ms, monitor_team: sre}}
"""


def keys(pd: FakePagerDuty, action: str) -> list[str]:
    return [e["dedup_key"] for e in pd.accepted if e["event_action"] == action]


@pytest.mark.slow
async def test_mass_vanish_pages_once_then_releases_or_drops_held_pages(tmp_path: Path) -> None:
    handles = [f"u{i}" for i in range(8)]
    masto = FakeMastodon(dict.fromkeys(handles, "present"), rate_limit=10**6)
    pd = FakePagerDuty()
    async with masto.running() as base, pd.running() as pd_url:
        async with running_monitor(config(base, pd_url, handles, str(tmp_path / "s"))) as mon:
            await wait_for(lambda: all(state_of(mon, "masto", h) is State.UP for h in handles),
                           what="up")
            for h in handles[:5]:
                masto.set_state(h, "suspended")
            await wait_for(lambda: all(state_of(mon, "masto", h) is State.DOWN
                                       for h in handles[:5]), what="5 down")
            await wait_for(lambda: keys(pd, "trigger"), what="the anomaly page")
            await quiet(mon, handles)  # the five vanish pages stay held: nothing more comes
            assert mon.store is not None
            assert sorted(r.dedup_key.split("/")[2] for r in mon.store.outbox_rows("pd")
                          if r.status == "held") == handles[:5]
            (anomaly_key,) = keys(pd, "trigger")
            assert anomaly_key.startswith("accmon/masto/anomaly-")
            assert "platform anomaly on masto" in pd.accepted[0]["payload"]["summary"]
            assert mon.metrics.registry.get_sample_value(
                "accmon_platform_anomaly", {"platform": "masto"}) == 1.0

            for h in handles[:2]:  # two come back while it is held (three stay: still on)
                masto.set_state(h, "present")
            await wait_for(lambda: all(state_of(mon, "masto", h) is State.UP
                                       for h in handles[:2]), what="two back")
            await quiet(mon, handles)
            assert keys(pd, "trigger") == [anomaly_key]
            # The window passes: the anomaly clears, pages for u2-u4 (still gone) go out.
            await wait_for(lambda: anomaly_key in keys(pd, "resolve"), timeout=20,
                           what="anomaly resolved")
            await wait_for(lambda: len(keys(pd, "trigger")) >= 4, what="released pages")
            await quiet(mon, handles)
            assert mon.store is not None
            rows = {r.dedup_key.split("/")[2]: r.status for r in mon.store.outbox_rows()
                    if "outage" in r.dedup_key}
        paged = {k.split("/")[2] for k in keys(pd, "trigger") if "outage" in k}
        assert paged == {"u2", "u3", "u4"}  # u0/u1 came back before it cleared: never paged
        assert [k for k in keys(pd, "resolve") if "outage" in k] == []
        assert rows["u0"] == rows["u1"] == "dropped"


async def test_a_failing_canary_holds_pages_until_it_is_back(tmp_path: Path) -> None:
    masto = FakeMastodon({"alice": "present", "canary": "present"}, rate_limit=10**6)
    pd = FakePagerDuty()
    async with masto.running() as base, pd.running() as pd_url:
        text = config(base, pd_url, ["alice"], str(tmp_path / "s"), canary="canary")
        async with running_monitor(text) as mon:
            await wait_for(lambda: state_of(mon, "masto", "canary") is State.UP, what="up")
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="up")
            masto.set_state("canary", "gone")
            await wait_for(lambda: keys(pd, "trigger"), what="anomaly page")
            masto.set_state("alice", "gone")
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.DOWN, what="down")
            store = mon.store
            assert store is not None
            await wait_for(lambda: [r.status for r in store.outbox_rows("pd")
                                    if "alice/outage" in r.dedup_key] == ["held"],
                           what="alice's page written held")
            await quiet(mon, ["alice", "canary"])
            assert len(keys(pd, "trigger")) == 1  # alice's page is held
            masto.set_state("canary", "present")
            await wait_for(lambda: len(keys(pd, "trigger")) == 2, what="alice paged")
        assert any("alice/outage" in k for k in keys(pd, "trigger"))
        assert len(keys(pd, "resolve")) == 1  # the anomaly's
