"""The outbox gauges are live while a page waits: ``accmon_outbox_pending`` and
``accmon_outbox_oldest_pending_seconds`` must show a notification stuck behind a sick pager
(and its age growing) for as long as it waits, or the OutboxStuck alert can never fire.

Before, both were refreshed only when a delivery finished: during a pager outage they read
0 throughout. Here the monitor pages a loopback PagerDuty that answers 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from monitor.app import Monitor
from monitor.fakes.mastodon import FakeMastodon
from monitor.fakes.pagers import FakePagerDuty, Scripted
from monitor.model import State
from tests.conftest import running_monitor, scrape, state_of, wait_for
from tests.test_e2e import metric
from tests.test_paging import paging_config, triggers


async def gauges(mon: Monitor) -> tuple[float, float]:
    """(pending, oldest pending age) of the "pd" notifier, as a scrape of /metrics says."""
    text = await scrape(mon.port or 0)
    return (metric(text, "accmon_outbox_pending", notifier="pd"),
            metric(text, "accmon_outbox_oldest_pending_seconds", notifier="pd"))


async def poll(mon: Monitor, ok: Callable[[float, float], bool], what: str,
               timeout: float = 10.0) -> tuple[float, float]:
    """Scrape until ``ok(pending, age)``; returns the gauges that satisfied it."""
    deadline = time.monotonic() + timeout
    seen: list[tuple[float, float]] = []
    while time.monotonic() < deadline:
        seen.append(await gauges(mon))
        if ok(*seen[-1]):
            return seen[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last {seen[-3:]}")


@pytest.mark.slow
async def test_the_gauges_show_a_page_waiting_through_a_pager_outage(state_file: str) -> None:
    masto, pd = FakeMastodon({"alice": "present"}), FakePagerDuty()
    async with masto.running() as m_url, pd.running() as pd_url:
        async with running_monitor(paging_config(m_url, pd_url, ["alice"], state_file)) as mon:
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="up")
            assert await gauges(mon) == (0, 0)
            pd.script(*([503] * 100_000))  # down until healed below
            masto.set_state("alice", "suspended")
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.DOWN, what="down")

            _, age = await poll(mon, lambda n, _age: n == 1, "the page counted as pending")
            await poll(mon, lambda n, a: n == 1 and a >= age + 1.5,
                       "the pending page's age growing")
            assert len(pd.requests) >= 2 and pd.accepted == []  # retried, never delivered

            pd._script.clear()  # the pager is healthy again
            await wait_for(lambda: pd.accepted, what="the page delivered")
            assert await poll(mon, lambda n, a: n == 0 and a == 0, "the gauges back to 0") \
                == (0, 0)
        assert len(triggers(pd, pd.accepted[0]["dedup_key"])) == 1


@pytest.mark.slow
async def test_the_age_grows_while_a_delivery_waits_out_a_long_retry_after(
        state_file: str) -> None:
    """No attempt, no delivery for 30 s: only the periodic refresh can move the gauges."""
    masto, pd = FakeMastodon({"alice": "present"}), FakePagerDuty()
    async with masto.running() as m_url, pd.running() as pd_url, \
            running_monitor(paging_config(m_url, pd_url, ["alice"], state_file)) as mon:
        await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="up")
        pd.script(Scripted(503, retry_after=30))
        masto.set_state("alice", "gone")
        await wait_for(lambda: len(pd.requests) == 1, what="the first attempt")
        await poll(mon, lambda n, a: n == 1 and a >= 2.0, "the age past 2 s")
        assert len(pd.requests) == 1  # still waiting out Retry-After: nothing retried
