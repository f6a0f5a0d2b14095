"""A dead-man's switch for teams without Prometheus: ping a URL while we are healthy.

Healthchecks.io, Cronitor, Dead Man's Snitch and most on-call tools take a ping URL and page
when the pings stop. The monitor pings ``monitor.heartbeat.url`` every ``interval`` only
while it is healthy (ready, and no platform's scheduler further behind than its interval),
so a dead process, a hung event loop, an unwritable state file and a watcher that fell
behind all end up as the same page from outside. The URL usually carries its own secret: it
never reaches a log line, a metric or an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import aiohttp
import structlog

from monitor.config import HeartbeatConfig
from monitor.metrics import Metrics

log = structlog.get_logger("monitor.heartbeat")


class Heartbeat:
    """Pings while ``problem()`` is None; says once in the log why it stopped pinging."""

    def __init__(self, spec: HeartbeatConfig, session: aiohttp.ClientSession,
                 problem: Callable[[], str | None], metrics: Metrics):
        self.spec, self.session, self.problem, self.metrics = spec, session, problem, metrics
        self._silent_for: str | None = None  # the problem we last logged

    async def run(self) -> None:
        while True:
            await self.beat()
            await asyncio.sleep(self.spec.interval)

    async def beat(self) -> str:
        """One ping (or a skipped one); returns the outcome: sent, skipped or failed."""
        problem = self.problem()
        if problem is not None:
            if problem != self._silent_for:
                log.warning("heartbeat withheld: the monitor is not healthy", reason=problem)
                self._silent_for = problem
            return self._count("skipped")
        if self._silent_for is not None:
            log.info("heartbeat resumed")
            self._silent_for = None
        url = self.spec.url.get_secret_value()
        try:
            async with asyncio.timeout(self.spec.timeout), \
                    self.session.request(self.spec.method, url,
                                         allow_redirects=False) as resp:
                await resp.read()
                ok = resp.status < 400
                status = resp.status
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            log.warning("heartbeat ping failed", error=type(exc).__name__)
            return self._count("failed")
        if not ok:
            log.warning("heartbeat ping refused", status=status)
            return self._count("failed")
        return self._count("sent")

    def _count(self, outcome: str) -> str:
        self.metrics.heartbeats.labels(outcome).inc()
        return outcome


def restart(task: asyncio.Task[None] | None, spec: HeartbeatConfig | None,
            session: aiohttp.ClientSession, problem: Callable[[], str | None],
            metrics: Metrics) -> asyncio.Task[None] | None:
    """Stop the running pings (if any) and start them anew for ``spec`` (None: off)."""
    if task is not None:
        task.cancel()
    if spec is None:
        return None
    return asyncio.create_task(Heartbeat(spec, session, problem, metrics).run(),
                               name="heartbeat")
