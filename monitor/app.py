"""Wiring and lifecycle: build the rooms from the config, start them, reload, drain, stop.

Nothing here decides. The rooms: :mod:`monitor.watchlist` (the accounts), :mod:`monitor.probing`
(scheduler -> probe -> decision), :mod:`monitor.decisions` (the pure steps chained, one write
per decision through :mod:`monitor.writer`), :mod:`monitor.streaming` (push streams), the
outbox worker, the HTTP surface and the heartbeat. See docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any

import aiohttp
import structlog
from aiohttp import web as aioweb

from monitor import capacity, sharding, views, web
from monitor.config import Config, ConfigError, LogNotifierConfig, load_config
from monitor.decisions import Decisions
from monitor.events import EventBus, Listener
from monitor.heartbeat import Heartbeat
from monitor.metrics import Metrics
from monitor.model import AccountKey, Event, Observation
from monitor.notify import build_notifier
from monitor.notify.base import Notifier
from monitor.notify.outbox import OutboxWorker
from monitor.probing import Prober
from monitor.routing import IMPLICIT_LOG
from monitor.scheduler import Scheduler
from monitor.store import Store
from monitor.streaming import Streams
from monitor.watchlist import Watched, Watchlist
from monitor.writer import StoreWriter

log = structlog.get_logger("monitor")


class Monitor:
    """The running monitor. ``start()``, then ``stop()``; ``run_forever()`` adds signals."""

    def __init__(self, config: Config, *, config_path: str | None = None,
                 state_path: str | None = None, listen_host: str | None = None,
                 listen_port: int | None = None, shard: sharding.Shard | None = None,
                 reload_token: str | None = None):
        self.config, self.config_path, self.reload_token = config, config_path, reload_token
        self.shard = shard if shard is not None else config.monitor.shard
        self.state_path = state_path or config.monitor.state_path
        self.listen_host = listen_host or config.monitor.listen_host
        self.listen_port = config.monitor.listen_port if listen_port is None else listen_port
        self.watchlist, self.bus = Watchlist(), EventBus()
        self.metrics = Metrics(self.watchlist.views, lambda: self.streams)
        self.scheduler = Scheduler(self._probe, jitter=config.defaults.jitter,
                                   probe_batch=self._probe_batch, crashed=self._crashed)
        self.store: Store | None = None
        self.writer: StoreWriter | None = None
        self.decisions: Decisions | None = None
        self.prober: Prober | None = None
        self.streaming: Streams | None = None
        self.session: aiohttp.ClientSession | None = None
        self.outbox: OutboxWorker | None = None
        self.runner: aioweb.AppRunner | None = None
        self.port: int | None = None  # the bound HTTP port once started
        self._tasks: list[asyncio.Task[Any]] = []
        self._heartbeat: asyncio.Task[None] | None = None

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.store = store = Store(self.state_path)
        self.writer = StoreWriter(store, on_failure=lambda _: self.metrics.store_write_failures
                                  .inc())
        self.decisions = Decisions(self.config, self.watchlist, store, self.writer,
                                   self.metrics, self.bus, self._wake_outbox)
        self.prober = Prober(self.watchlist, self.decisions, self.scheduler, self.metrics,
                             self.config)
        self.streaming = Streams(self.watchlist, self.decisions, self.scheduler, store,
                                 self.metrics)
        self.decisions.learned_did = self._follow_dids
        total = sum(p.concurrency for p in self.config.platforms.values())
        # Each fetch carries its own asyncio.timeout; aiohttp's default 5-minute total
        # timeout would only add a second timer per request. Cookies are never wanted.
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=total + 16, ttl_dns_cache=300,
                                           keepalive_timeout=60),
            cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=None))
        self._configure(self.config)
        await self._restart_outbox()  # pending rows from before a restart go out first
        await self.streaming.sync(self.config, self.session)
        await self.scheduler.start()
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="tick"))
        self._sync_heartbeat()
        self.runner = aioweb.AppRunner(web.build_app(self), access_log=None,
                                       handle_signals=False)
        await self.runner.setup()
        site = aioweb.TCPSite(self.runner, self.listen_host, self.listen_port)
        await site.start()
        sockets = site._server.sockets if site._server else ()  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1] if sockets else self.listen_port
        log.info("monitor started", accounts=len(self.watchlist), platforms=len(self.probes),
                 listen=f"{self.listen_host}:{self.port}", state=self.state_path)
        self._log_watchlist()

    def _configure(self, config: Config) -> None:
        """Make the running monitor match ``config`` (at start and on every reload)."""
        assert self.store is not None and self.session is not None
        assert self.prober is not None and self.decisions is not None
        self.prober.configure(config, self.session)
        self.config = config
        self.decisions.configure(config)
        wanted = self.watchlist.wanted(config, self.shard)
        fresh = wanted.keys() - self.watchlist.accounts.keys()
        removed, added = self.watchlist.apply(
            config, wanted, self.store.load_accounts() if fresh else {}, time.time())
        for key in removed:
            self.scheduler.remove(key)
        for watched in added:
            self.scheduler.add(watched.key, watched.key.platform,
                               spread=min(watched.policy.interval, 60.0),
                               priority=0 if watched.config.protected else 1)
        self.metrics.accounts_watched.clear()
        for name, count in self.watchlist.counts.items():
            self.metrics.accounts_watched.labels(name).set(count)
        self.metrics.scheduler_interval.clear()
        for name, interval in self.watchlist.intervals.items():
            self.metrics.scheduler_interval.labels(name).set(interval)

    async def reload(self) -> list[str]:
        """Re-read the config file; apply it, or keep the running one and return the problems.

        State, open outages and pending notifications are kept either way.
        """
        if self.config_path is None:
            return ["this monitor was started without a config file"]
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            problems = [p.strip() for p in exc.render().splitlines()[1:]]
            log.error("config reload rejected; keeping the running config",
                      file=self.config_path, problems=problems)
            self.metrics.config_reloads.labels("rejected").inc()
            return problems
        old = self.config
        self._configure(config)
        if (config.notifiers, config.routing) != (old.notifiers, old.routing):
            await self._restart_outbox()
        assert self.streaming is not None and self.session is not None
        await self.streaming.sync(config, self.session, restart=config.streams != old.streams)
        if config.monitor.heartbeat != old.monitor.heartbeat:
            self._sync_heartbeat()
        for field in ("listen_host", "listen_port", "state_path"):
            if getattr(config.monitor, field) != getattr(old.monitor, field):
                log.warning("setting changes need a restart", setting=f"monitor.{field}")
        self.metrics.config_reloads.labels("applied").inc()
        log.info("config reloaded", file=self.config_path, accounts=len(self.watchlist))
        self._log_watchlist()
        return []

    async def _restart_outbox(self) -> None:
        """New notifiers or routing: a fresh worker (pending rows stay in the store)."""
        assert self.session is not None and self.store is not None
        if self.outbox is not None:
            await self.outbox.stop()
        specs = dict(self.config.notifiers)
        specs.setdefault(IMPLICIT_LOG, LogNotifierConfig(type="log"))
        notifiers: dict[str, Notifier] = {name: build_notifier(name, spec, self.session)
                                          for name, spec in specs.items()}
        store, routing = self.store, self.config.routing
        self.outbox = OutboxWorker(lambda: store, notifiers, self.metrics,
                                   max_age=routing.max_age, retry_initial=routing.retry_initial,
                                   retry_max=routing.retry_max)
        await self.outbox.start()

    def _wake_outbox(self) -> None:
        if self.outbox is not None:
            self.outbox.wake()

    def _follow_dids(self) -> None:
        """A DID was learned: the push streams follow it (options_update, no reconnect)."""
        if self.config.streams and self.streaming is not None and self.session is not None:
            self._tasks.append(asyncio.create_task(self.streaming.sync(self.config,
                                                                       self.session)))

    def _sync_heartbeat(self) -> None:
        """Start, restart or stop the dead-man's-switch pings to match the config."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        spec = self.config.monitor.heartbeat
        if spec is not None and self.session is not None:
            beat = Heartbeat(spec, self.session, self.health_problem, self.metrics)
            self._heartbeat = asyncio.create_task(beat.run(), name="heartbeat")

    async def stop(self) -> None:
        """Graceful: finish in-flight probes (bounded), stop serving, close the DB."""
        log.info("monitor stopping")
        if self.streaming is not None:
            await self.streaming.stop()
        await self.scheduler.stop(self.config.monitor.shutdown_grace)
        if self.writer is not None:
            await self.writer.flush(self.config.monitor.shutdown_grace)
            await self.writer.stop()
        if self.outbox is not None:
            await self.outbox.stop()
        for task in [*self._tasks, *([self._heartbeat] if self._heartbeat else [])]:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.runner is not None:
            await self.runner.cleanup()
        if self.session is not None:
            await self.session.close()
        if self.store is not None:
            self.store.close()
            self.store = None
        log.info("monitor stopped")

    async def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then drain and exit; SIGHUP reloads."""
        loop, stop = asyncio.get_running_loop(), asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        reloads: set[asyncio.Task[list[str]]] = set()

        def hup() -> None:
            task = asyncio.create_task(self.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        loop.add_signal_handler(signal.SIGHUP, hup)
        await self.start()
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            await self.stop()

    # ----------------------------------------------------------------- probing and time

    async def _probe(self, key: object) -> float | None:
        return await self.prober.probe(key) if self.prober is not None else None

    async def _probe_batch(self, keys: list[object]) -> dict[object, float | None]:
        return await self.prober.probe_batch(keys) if self.prober is not None else {}

    def _crashed(self, key: object, exc: BaseException) -> float | None:
        return self.prober.crashed(key, exc) if self.prober is not None else None

    async def _tick_loop(self) -> None:
        """Staleness is time passing without answers: check it even when probes hang."""
        shortest = min((w.policy.staleness for w in self.watchlist), default=20.0)
        shortest = min(shortest, self.config.routing.reminder_interval or shortest)
        period = max(0.05, min(5.0, shortest / 4))
        while True:
            await asyncio.sleep(period)
            try:
                for name, lane in self.scheduler.lanes.items():
                    self.metrics.scheduler_queue.labels(name).set(lane.queue.qsize())
                for name, (worst, overdue) in self.scheduler.lag().items():
                    self.metrics.scheduler_lag.labels(name).set(worst)
                    self.metrics.accounts_overdue.labels(name).set(overdue)
                assert self.decisions is not None
                self.decisions.tick(time.time(), self.scheduler.waiting)
            except Exception as exc:  # the watcher of the watcher must not die either
                assert self.prober is not None
                self.prober.internal("*", "tick", exc)

    def _log_watchlist(self) -> None:
        """Say what is watched, when the first answers are due and whether each platform's
        budget keeps up, so a first run does not look dead until staleness."""
        for load in capacity.estimate(self.config, self.shard):
            if not load.accounts:
                continue
            interval = self.watchlist.intervals.get(load.platform, 0.0)
            log.info("watching", platform=load.platform, accounts=load.accounts,
                     protected=sum(w.config.protected for w in self.watchlist.of(load.platform)),
                     interval_seconds=interval,
                     first_results_within_seconds=round(min(interval, 60.0), 1),
                     needed_requests_per_second=round(load.needed_rps, 3))
            if not load.ok:
                log.warning("this platform's budget cannot keep up with its watchlist",
                            platform=load.platform, detail=load.render())

    # ----------------------------------------------------------------- what others read

    def not_ready(self) -> dict[str, str]:
        """Why the monitor is not ready, per check (empty when it is)."""
        problems: dict[str, str] = {}
        if self.store is None:
            problems["store"] = "state file not open"
        elif self.writer is not None and self.writer.failing is not None:
            problems["store"] = (f"{self.writer.failing}; {len(self.writer.backlog)} writes "
                                 "kept in memory and retried")
        if not self.scheduler.running:
            problems["scheduler"] = "scheduler not running"
        return problems

    @property
    def ready(self) -> bool:
        return not self.not_ready()

    def health_problem(self) -> str | None:
        """Why the monitor is not healthy enough to tell a dead-man's switch so: not ready,
        or a platform's scheduler further behind than its shortest interval."""
        problems = self.not_ready()
        if problems:
            return "; ".join(problems.values())
        for platform, (lag, _) in self.scheduler.lag().items():
            interval = self.watchlist.intervals.get(platform)
            if interval is not None and lag > interval:
                return f"{platform}: scheduler {lag:.0f}s behind (interval {interval:g}s)"
        return None

    @property
    def accounts(self) -> dict[AccountKey, Watched]:
        return self.watchlist.accounts

    @property
    def streams(self) -> dict[str, Any]:
        return self.streaming.consumers if self.streaming is not None else {}

    @property
    def listeners(self) -> list[Listener]:
        return self.bus.listeners

    @property
    def probes(self) -> dict[str, Any]:
        return self.prober.probes if self.prober is not None else {}

    @property
    def own_blind(self) -> float | None:
        return self.decisions.holds.own_blind if self.decisions is not None else None

    def observe(self, key: AccountKey, obs: Observation) -> list[Event]:
        return self.decisions.observe(key, obs) if self.decisions is not None else []

    account_json = staticmethod(views.account_json)
