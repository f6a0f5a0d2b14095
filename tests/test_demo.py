"""The 2017 demo: offline, under 30 s, one page, one resolve, an 11-minute outage measured."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.demo import run_demo

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
async def test_demo_pages_once_resolves_once_and_measures_eleven_minutes() -> None:
    printed: list[str] = []
    result = await run_demo(speed=120.0, out=printed.append)
    assert (result.pages, result.resolves) == (1, 1)
    assert result.outage_seconds is not None and result.bounds is not None
    # One interval (a simulated minute) of uncertainty at each end, at most.
    assert abs(result.outage_seconds - 660) <= 75, result.outage_seconds
    lo, hi = result.bounds
    assert lo <= 660 <= hi and hi - lo <= 180
    steps = ["present", "deactivates", "suspect", "CONFIRMED vanished", "PAGED",
             "restores", "RECOVERED", "RESOLVED"]
    positions = [next(i for i, line in enumerate(result.lines) if step in line)
                 for step in steps]
    assert positions == sorted(positions), result.lines
    assert any("Measured outage" in line for line in printed)
    assert result.real_seconds < 30


@pytest.mark.slow
def test_demo_command_runs_within_thirty_seconds() -> None:
    started = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "monitor", "demo"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - started < 30
    assert "On-call was paged 1 time(s) and the page resolved 1 time(s)" in out.stdout
    assert "Reported in 2017: 11 minutes" in out.stdout
    assert out.stderr == ""  # the timeline is not drowned in log lines
