"""Log lines that come in floods: the first ones at their level, the rest counted."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import structlog
from structlog.testing import capture_logs

from monitor import decisions, logs
from monitor.fakes.mastodon import FakeMastodon
from monitor.logs import Sampled
from monitor.model import State
from tests.conftest import mastodon_config, running_monitor, state_of, wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_sampled_kind_lets_the_first_lines_through_then_counts_the_rest() -> None:
    clock = Clock()
    sampled = Sampled(3, 60.0, clock)
    assert [sampled.take() for _ in range(5)] == [True, True, True, False, False]
    assert sampled.withheld() == 0  # the minute is not over
    clock.now += 59.0
    assert not sampled.take()
    clock.now += 1.0
    assert not sampled.take()  # over, but not summed up yet: still counted in it
    assert sampled.withheld() == 4
    assert sampled.withheld() == 0  # told once
    assert [sampled.take() for _ in range(4)] == [True, True, True, False]
    clock.now += 600.0
    assert sampled.withheld() == 1
    clock.now += 600.0
    assert sampled.withheld() == 0
    assert sampled.take()  # a quiet period after it: a new one begins


async def test_a_fresh_watchlist_logs_the_first_sightings_of_a_minute_one_by_one_up_to_the_cap(
        tmp_path: Path) -> None:
    cap = decisions.FIRST_SIGHTINGS_LOGGED
    handles = [f"u{i}" for i in range(cap + 15)]
    masto = FakeMastodon(dict.fromkeys(handles, "present"))
    async with masto.running() as url:
        text = mastodon_config(url, handles, state_path=str(tmp_path / "s.db"))
        with capture_logs() as logs:
            async with running_monitor(text) as mon:
                await wait_for(lambda: all(state_of(mon, "masto", h) is State.UP
                                           for h in handles), what="every account up")
    firsts = [e for e in logs if e["event"] == "transition" and e["from_state"] == "unknown"]
    assert len(firsts) == len(handles)
    assert [e["log_level"] for e in firsts] == ["info"] * cap + ["debug"] * 15


def test_enabled_follows_the_configured_level(monkeypatch: pytest.MonkeyPatch) -> None:
    saved = structlog.get_config()
    monkeypatch.setattr(logs, "_min_level", logs._min_level)
    try:
        logs.configure("json", "info")
        assert logs.enabled(logging.INFO) and not logs.enabled(logging.DEBUG)
        logs.configure("json", "debug")
        assert logs.enabled(logging.DEBUG)
    finally:
        structlog.configure(**saved)
