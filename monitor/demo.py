"""``account-monitor demo``: 2 November 2017, replayed offline in well under 30 seconds.

That evening a departing support employee deactivated the personal X/Twitter account of
the US president, @realDonaldTrump (id 25073877). For 11 minutes it answered "not found";
nobody's monitoring paged anyone. Here the real monitor (probe, state machine, store,
outbox, PagerDuty notifier) watches a simulated X API v2 and pages a simulated PagerDuty.

Time is compressed ``speed`` times (default 60: one simulated minute per real second); the
timeline is printed in simulated Eastern time. The times of day are illustrative; the
11-minute duration is the reported one.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from monitor.app import Monitor
from monitor.config import parse_config
from monitor.fakes.pagers import FakePagerDuty
from monitor.fakes.x import FakeX
from monitor.model import AccountKey, AccountState, Event, EventKind, State

HANDLE, USER_ID = "realDonaldTrump", "25073877"
KEY = AccountKey("x", HANDLE)
EDT = timezone(timedelta(hours=-4), "EDT")  # DST ended on 5 November 2017
# Illustrative: the account was gone for 11 minutes in the evening of 2 November 2017.
SIM_START = datetime(2017, 11, 2, 18, 50, 0, tzinfo=EDT)
GONE_AT = timedelta(minutes=3)  # into the simulation
GONE_FOR = timedelta(minutes=11)
TOKEN = "demo-bearer-token"
ROUTING_KEY = "DEMO0ROUTING0KEY0000000000000000"

CONFIG = """
monitor: {{listen_port: 0, state_path: "{state}", shutdown_grace: 1s}}
defaults:
  interval: {interval}
  confirm_interval: {confirm}
  failure_threshold: 2
  recovery_threshold: 1
  staleness: 1h
  timeout: 2s
platforms:
  x:
    probe: x
    base_url: {x_url}
    token: {token}
    profile_url: "https://x.com/{{handle}}"
    rate_per_second: 100
accounts:
  - {{platform: x, handle: {handle}, id: "{user_id}", protected: true, team: comms,
     owner: white-house-digital}}
notifiers:
  pagerduty:
    type: pagerduty
    routing_key: {routing_key}
    url: {pd_url}/v2/enqueue
routing:
  retry_initial: 50ms
  retry_max: 500ms
  reminder_interval: null
"""


@dataclass
class DemoResult:
    lines: list[str]
    outage_seconds: float | None  # simulated
    bounds: tuple[float, float] | None  # simulated
    pages: int  # PagerDuty triggers for the outage
    resolves: int
    real_seconds: float


class Clock:
    """Maps real time to the simulated evening."""

    def __init__(self, speed: float):
        self.speed = speed
        self.real_start = time.time()

    def sim(self, real: float) -> datetime:
        return SIM_START + timedelta(seconds=(real - self.real_start) * self.speed)

    def label(self, real: float) -> str:
        return self.sim(real).strftime("%H:%M:%S ET")

    def real_delay(self, sim: timedelta) -> float:
        return sim.total_seconds() / self.speed


async def run_demo(speed: float = 60.0, out: Callable[[str], None] = print) -> DemoResult:
    clock = Clock(speed)
    lines: list[str] = []

    def say(real: float, text: str) -> None:
        line = f"  {clock.label(real)}  {text}"
        lines.append(line)
        out(line)

    out(f"account-monitor demo — {SIM_START:%d %B %Y}, replayed at {speed:g}x "
        "(one simulated minute per real second at 60x)")
    out(f"Watching X @{HANDLE} (id {USER_ID}), protected: a vanish pages on-call.\n")
    x, pd = FakeX({HANDLE: (USER_ID, "present")}, token=TOKEN), FakePagerDuty()
    # X's real budget (300 lookups / 15 min) is in real minutes; the demo's minutes are
    # compressed, so give the simulated API a budget that compresses with them.
    x.budget_limit = 300 * round(speed)
    with tempfile.TemporaryDirectory(prefix="accmon-demo-") as tmp:
        async with x.running() as x_url, pd.running() as pd_url:
            text = CONFIG.format(state=Path(tmp) / "demo.db", x_url=x_url, pd_url=pd_url,
                                 token=TOKEN, routing_key=ROUTING_KEY, handle=HANDLE,
                                 user_id=USER_ID, interval=f"{60 / speed:g}s",
                                 confirm=f"{10 / speed:g}s")
            monitor = Monitor(parse_config(text, "demo", env={}))

            def on_event(event: Event, _row: int | None, st: AccountState) -> None:
                if event.kind is EventKind.TRANSITION and event.new_state is State.UP \
                        and event.old_state is State.UNKNOWN:
                    say(event.at, "probe: @realDonaldTrump present (HTTP 200, data.id "
                        f"{USER_ID})")
                elif event.kind is EventKind.TRANSITION and event.new_state is State.SUSPECT:
                    say(event.at, 'probe: "Could not find user" — suspect; re-checking in '
                        "10 s, not paging on one answer")
                elif event.kind is EventKind.VANISHED:
                    say(event.at, f"CONFIRMED vanished ({event.reason}) after "
                        f"{event.vanished()['absent_streak']} absent answers — outage "
                        f"#{st.outage_id} opened, page queued in the outbox")
                elif event.kind is EventKind.RECOVERED:
                    say(event.at, f"RECOVERED — outage #{event.outage_id} "
                        "closed, resolve queued")

            monitor.bus.subscribe(on_event)
            await monitor.start()
            try:
                await _wait(lambda: monitor.accounts[KEY].state.state is State.UP, 10)
                await asyncio.sleep(clock.real_delay(GONE_AT) - (time.time() - clock.real_start))
                x.set_state(HANDLE, "deactivated")
                gone_real = time.time()
                say(gone_real, "[simulated] a departing support employee deactivates the "
                    "account; X now answers 200 {\"errors\":[…\"Could not find user…\"]}")
                key = await _page(monitor, pd, say)
                await asyncio.sleep(clock.real_delay(GONE_FOR) - (time.time() - gone_real))
                x.set_state(HANDLE, "present")
                say(time.time(), "[simulated] X restores the account")
                await _wait(lambda: any(e["event_action"] == "resolve" for e in pd.accepted
                                        if e["dedup_key"] == key), 10)
                say(time.time(), f"PagerDuty incident {key} RESOLVED")
                assert monitor.store is not None
                (outage,) = monitor.store.outages(limit=1)
            finally:
                await monitor.stop()
    triggers = sum(1 for e in pd.accepted if e["dedup_key"] == key
                   and e["event_action"] == "trigger")
    resolves = sum(1 for e in pd.accepted if e["dedup_key"] == key
                   and e["event_action"] == "resolve")
    duration = outage.duration * speed if outage.duration is not None else None
    bounds = outage.duration_bounds
    sim_bounds = (bounds[0] * speed, bounds[1] * speed) if bounds else None
    out("")
    out(f"Measured outage: {_mmss(duration)} (vanished between {clock.label(outage.last_seen_present_at or outage.first_seen_absent_at)} "  # noqa: E501
        f"and {clock.label(outage.first_seen_absent_at)}, back between "
        f"{clock.label(outage.last_seen_absent_at or outage.first_seen_absent_at)} and "
        f"{clock.label(outage.recovered_at or 0)}; duration between "
        f"{_mmss(sim_bounds[0] if sim_bounds else None)} and "
        f"{_mmss(sim_bounds[1] if sim_bounds else None)}). Reported in 2017: 11 minutes.")
    out(f"On-call was paged {triggers} time(s) and the page resolved {resolves} time(s); "
        f"real time {time.time() - clock.real_start:.1f}s.")
    return DemoResult(lines, duration, sim_bounds, triggers, resolves,
                      time.time() - clock.real_start)


async def _page(monitor: Monitor, pd: FakePagerDuty,
                say: Callable[[float, str], None]) -> str:
    """Wait for the PagerDuty trigger; print it; return its dedup key."""
    await _wait(lambda: pd.accepted, 10)
    event = pd.accepted[0]
    say(time.time(), f"PAGED on-call via PagerDuty: \"{event['payload']['summary']}\" "
        f"(dedup_key {event['dedup_key']})")
    return str(event["dedup_key"])


async def _wait(predicate: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the demo stalled; please report this")
        await asyncio.sleep(0.01)


def _mmss(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s:02d} s"

