"""Push streams (Bluesky Jetstream) in the shell: which DIDs to follow, what a push may do.

A pushed account event may make an account *suspect*, never down (nor bring it back): it
asks the scheduler for one immediate poll, and only a poll can confirm. So a stream glitch
(a replay, a relay's mistake) can never page alone. The consumer's cursor lives in the
state file; one the file refuses is skipped (the next replaces it; replays are deduplicated).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial

import aiohttp
import structlog

from monitor.config import Config
from monitor.decisions import Decisions
from monitor.metrics import Metrics
from monitor.model import Observation, Result, State
from monitor.scheduler import Scheduler
from monitor.store import Store
from monitor.streams import JetstreamConsumer
from monitor.watchlist import Watchlist

log = structlog.get_logger("monitor")


class Streams:
    def __init__(self, watchlist: Watchlist, decisions: Decisions, scheduler: Scheduler,
                 store: Store, metrics: Metrics):
        self.watchlist, self.decisions, self.scheduler = watchlist, decisions, scheduler
        self.store, self.metrics = store, metrics
        self.consumers: dict[str, JetstreamConsumer] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def sync(self, config: Config, session: aiohttp.ClientSession,
                   restart: bool = False) -> None:
        """Start, stop or re-target the streams to match the config and the known DIDs."""
        for name in [n for n in self.consumers if restart or n not in config.streams]:
            await self._stop(name)
        for name, spec in config.streams.items():
            dids = self.watchlist.dids(spec.platform)
            consumer = self.consumers.get(name)
            if consumer is not None:
                if set(consumer.dids) != set(dids):
                    await consumer.update_dids(dids)  # options_update, no reconnect
                continue
            consumer = JetstreamConsumer(
                spec.url, session, dids=dids,
                on_observation=self._pushed_to(spec.platform),
                on_identity=partial(self._poll, spec.platform),
                load_cursor=partial(self.store.load_cursor, name),
                save_cursor=partial(self._save_cursor, name),
                rewind_seconds=spec.rewind, backoff_max=spec.backoff_max)
            self.consumers[name] = consumer
            self._tasks[name] = asyncio.create_task(consumer.run(), name=f"stream-{name}")

    def _pushed_to(self, platform: str) -> Callable[[str, Observation], None]:
        def pushed(did: str, obs: Observation) -> None:
            key = self.watchlist.dids(platform).get(did)
            watched = self.watchlist.get(key)
            if key is None or watched is None:
                return
            st = watched.working
            if (obs.result is Result.ABSENT and st.state in (State.UP, State.UNKNOWN)
                    and watched.policy.failure_threshold >= 2):
                self.decisions.observe(key, obs, probed=False)
            self.scheduler.reschedule(watched, 0.0)  # the confirming poll, now
            log.info("pushed account event", platform=platform, account=key.handle,
                     result=obs.result.value, evidence=obs.evidence)
        return pushed

    def _poll(self, platform: str, did: str, handle: str | None = None) -> None:
        """A handle change announced on the stream: poll now, the answer tells the rename."""
        watched = self.watchlist.get(self.watchlist.dids(platform).get(did))
        if watched is not None:
            self.scheduler.reschedule(watched, 0.0)

    def _save_cursor(self, name: str, value: int) -> None:
        try:
            self.store.save_cursor(name, value, time.time())
        except Exception:
            self.metrics.store_write_failures.inc()

    async def _stop(self, name: str) -> None:
        consumer = self.consumers.pop(name)
        await consumer.stop()
        task = self._tasks.pop(name)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    async def stop(self) -> None:
        for name in list(self.consumers):
            await self._stop(name)
