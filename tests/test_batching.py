"""Batched polling where the platform allows it: X takes 100 ids a request, Bluesky 25."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from monitor.fakes.x import FakeX
from monitor.model import AccountKey, Result, State
from tests.conftest import running_monitor, state_of, wait_for


def config(base: str, handles: list[str], state: str) -> str:
    accounts = "".join(f"  - {{platform: x, handle: {h}}}\n" for h in handles)
    return f"""
monitor: {{listen_port: 0, state_path: "{state}"}}
defaults: {{interval: 1s, confirm_interval: 200ms, failure_threshold: 2, staleness: 1h,
           timeout: 2s, jitter: 0.0}}
platforms:
  x:
    probe: x
    base_url: {base}
    token: tok
    rate_per_second: 5     # one by one, at most ~5 accounts a second
    burst: 1
accounts:
{accounts}"""


async def test_known_ids_are_polled_in_batches_and_absences_still_found(tmp_path: Path) -> None:
    handles = [f"user{i}" for i in range(150)]
    x = FakeX(dict.fromkeys(handles, "present"), token="tok")
    x.budget_limit = 10**6
    async with x.running() as base, \
            running_monitor(config(base, handles, str(tmp_path / "s"))) as mon:
        for h in handles:  # learn every id now (one by one), not over a 1-s spread
            mon.accounts[AccountKey("x", h)].account_id = x.account_id(h)
        before = x.requests_total
        present = partial(mon.metrics.probe_counts.answered, "x", Result.PRESENT)
        probes_before = present()
        # 150 more answers: one by one they would take 150 requests (30 s at 5 a second);
        # in batches of up to 100 ids, a handful.
        await wait_for(lambda: present() - probes_before >= 150, timeout=20,
                       what="150 more answers")
        requests = x.requests_total - before
        assert requests <= 13, requests
        x.set_state("user42", "suspended")
        await wait_for(lambda: state_of(mon, "x", "user42") is State.DOWN, timeout=10,
                       what="user42 down via the batch lookup")
        assert state_of(mon, "x", "user7") is State.UP
