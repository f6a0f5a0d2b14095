"""The dead-man's switch: pings while healthy, none while not, the URL's secret never shown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from structlog.testing import capture_logs

from monitor.fakes.mastodon import FakeMastodon
from tests.conftest import mastodon_config, running_monitor, wait_for

SECRET = "9f0c6e0e-4b5f-4c4e-9c1a-5d4f3f2b1a00"  # a Healthchecks ping UUID


@asynccontextmanager
async def ping_receiver(status: int = 200) -> AsyncIterator[tuple[str, list[str]]]:
    pings: list[str] = []

    async def ping(request: web.Request) -> web.Response:
        pings.append(request.path)
        return web.Response(status=status, text="OK")

    app = web.Application()
    app.router.add_get("/ping/{uuid}", ping)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/ping/{SECRET}", pings
    finally:
        await runner.cleanup()


async def test_pings_while_healthy_and_stops_when_the_watcher_stops(tmp_path: Path) -> None:
    masto = FakeMastodon({"alice": "present"})
    async with masto.running() as base, ping_receiver() as (url, pings):
        extra = f"  heartbeat: {{url: '{url}', interval: 100ms, timeout: 1s}}\n"
        text = mastodon_config(base, ["alice"], state_path=str(tmp_path / "s.db")).replace(
            "  shutdown_grace: 2s\n", "  shutdown_grace: 2s\n" + extra)
        with capture_logs() as logs:
            async with running_monitor(text) as mon:
                await wait_for(lambda: len(pings) >= 3, what="three pings")
                # The scheduler stops (as if it had died): the monitor is not ready, so the
                # switch hears nothing more and pages from outside.
                await mon.scheduler.stop(grace=0.1)
                registry = mon.metrics.registry
                await wait_for(lambda: (registry.get_sample_value(
                    "accmon_heartbeats_total", {"outcome": "skipped"}) or 0) >= 2,
                    what="pings withheld")
                before = len(pings)
                await wait_for(lambda: (registry.get_sample_value(
                    "accmon_heartbeats_total", {"outcome": "skipped"}) or 0) >= 4,
                    what="still withheld")
                assert len(pings) == before
                assert registry.get_sample_value("accmon_heartbeats_total",
                                                 {"outcome": "sent"}) == before
    assert all(p == f"/ping/{SECRET}" for p in pings)
    withheld = [e for e in logs if e["event"].startswith("heartbeat withheld")]
    assert len(withheld) == 1 and "scheduler" in withheld[0]["reason"]
    assert SECRET not in repr(logs)


async def test_a_refused_ping_is_counted_and_logged_without_its_url(tmp_path: Path) -> None:
    masto = FakeMastodon({"alice": "present"})
    async with masto.running() as base, ping_receiver(status=404) as (url, _pings):
        extra = f"  heartbeat: {{url: '{url}', interval: 100ms}}\n"
        text = mastodon_config(base, ["alice"], state_path=str(tmp_path / "s.db")).replace(
            "  shutdown_grace: 2s\n", "  shutdown_grace: 2s\n" + extra)
        with capture_logs() as logs:
            async with running_monitor(text) as mon:
                await wait_for(lambda: (mon.metrics.registry.get_sample_value(
                    "accmon_heartbeats_total", {"outcome": "failed"}) or 0) >= 2,
                    what="refused pings counted")
    assert any(e["event"] == "heartbeat ping refused" and e["status"] == 404 for e in logs)
    assert SECRET not in repr(logs)
