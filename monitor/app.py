"""Wiring and lifecycle: build the rooms from the config, start them, reload, drain, stop.

Nothing here decides. The rooms: :mod:`monitor.watchlist` (the accounts), :mod:`monitor.probing`
(scheduler -> probe -> decision), :mod:`monitor.decisions` (the pure steps chained, one write
per decision through :mod:`monitor.writer`), :mod:`monitor.streaming` (push streams), the
outbox worker, the HTTP surface and the heartbeat. See docs/architecture.md.
"""

from __future__ import annotations

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Any, Literal

import aiohttp
import structlog
from aiohttp import web as aioweb

from monitor import (
    additions,
    capacity,
    heartbeat,
    loop,
    readiness,
    reports,
    retention,
    routing,
    runs,
    sharding,
    signals,
    web,
)
from monitor.additions import Additions
from monitor.config import AccountConfig, Config, ConfigError, load_config
from monitor.decisions import Decisions
from monitor.events import EventBus
from monitor.metrics import Metrics
from monitor.model import AccountKey, Observation, Outage
from monitor.notify import acknowledges, build_notifiers
from monitor.notify.outbox import OutboxWorker
from monitor.peers import QuorumKeeper
from monitor.probing import Prober, client_session
from monitor.scheduler import Scheduler
from monitor.silencing import SilenceBook
from monitor.store import AuditEntry, Store
from monitor.streaming import Streams
from monitor.watchlist import Watched, Watchlist
from monitor.writer import StoreWriter, Write

log = structlog.get_logger("monitor")


@dataclass(frozen=True, slots=True)
class AckResult:
    """What an acknowledgement did: ``acknowledged`` now, ``already`` (by someone, kept as
    it was), ``closed`` (the outage is over) or ``unknown`` (no such outage)."""

    status: Literal["acknowledged", "already", "closed", "unknown"]
    outage: Outage | None = None


class Monitor:
    """The running monitor. ``start()``, then ``stop()``; ``run_forever()`` adds signals."""

    def __init__(self, config: Config, *, config_path: str | None = None,
                 state_path: str | None = None, listen_host: str | None = None,
                 listen_port: int | None = None, shard: sharding.Shard | None = None,
                 reload_token: str | None = None):
        self.config, self.config_path, self.reload_token = config, config_path, reload_token
        self.file_config = config  # as loaded; self.config adds the API's watchlist additions
        # gc.freeze() once started (monitor.loop.freeze_heap): only for the one monitor of a
        # real process; a test process starting many monitors would keep their cycles.
        self.freeze_heap = False
        self.shard = shard if shard is not None else config.monitor.shard
        self.state_path = state_path or config.monitor.state_path
        self.listen_host = listen_host or config.monitor.listen_host
        self.listen_port = config.monitor.listen_port if listen_port is None else listen_port
        self.watchlist, self.bus = Watchlist(), EventBus()
        self.metrics = Metrics(self.watchlist.views, lambda: self.streams,
                               per_account=lambda: self.config.monitor.metrics.per_account)
        self.scheduler = Scheduler(_not_started, jitter=config.defaults.jitter,
                                   index=self.watchlist.get)
        self.silencing = SilenceBook(lambda: self.store, self.metrics)
        self.additions = Additions(lambda: self.store, lambda: self.file_config,
                                   lambda: self.shard, self._apply_additions, {})
        self.quorum = QuorumKeeper(lambda: self.config, self.watchlist, lambda: self.store,
                                   lambda: self.writer, lambda: self.session, self.metrics,
                                   self._wake_outbox)
        self.store: Store | None = None
        self.run = runs.RunRecord()  # this process's row in the state file's runs table
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
        self._availability: asyncio.Future[None] | None = None  # the gauges' refresh
        # Transitions from before this time may have been pruned (None: none yet): the
        # gauges' refresh reads again the watch starts kept from before it.
        self._pruned_through: float | None = None

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.store = store = Store(self.state_path)
        self.run.start(store, time.time())
        self.writer = StoreWriter(store, on_failure=lambda _: self.metrics.store_write_failures
                                  .inc())
        self.decisions = Decisions(self.config, self.watchlist, store, self.writer,
                                   self.metrics, self.bus, self._wake_outbox)
        self.prober = prober = Prober(self.watchlist, self.decisions, self.scheduler,
                                      self.metrics, self.config)
        sched = self.scheduler
        sched.probe, sched.probe_batch, sched.crashed = (prober.probe, prober.probe_batch,
                                                         prober.crashed)
        self.streaming = Streams(self.watchlist, self.decisions, self.scheduler, store,
                                 self.metrics)
        self.decisions.learned_did = self._follow_dids
        self.decisions.covering = self.silencing.covering
        self.silencing.load(store, self.config.monitor.retention.silences)
        self.additions.accounts = additions.load(store, self.file_config)
        self.session = client_session(self.config)
        self._configure(self.file_config)
        await self._restart_outbox()  # pending rows from before a restart go out first
        self.quorum.resume(store)  # vanish pages that waited for votes when we stopped
        await self.streaming.sync(self.config, self.session)
        await self.scheduler.start()
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="tick"))
        self._tasks.append(asyncio.create_task(retention.prune_forever(
            lambda: self.store, lambda: self.config.monitor.retention, time.time,
            self._count_pruned), name="retention"))
        self._tasks.append(asyncio.create_task(self.run.keep_alive(
            lambda: self.store, time.time, then=self._refresh_availability), name="runs"))
        self._sync_heartbeat()
        self.runner, self.port = await web.serve(web.build_app(self), self.listen_host,
                                                 self.listen_port)
        log.info("monitor started", accounts=len(self.watchlist), platforms=len(prober.probes),
                 listen=f"{self.listen_host}:{self.port}", state=self.state_path,
                 **loop.running())
        self.watchlist.report(capacity.estimate(self.config, self.shard))
        if self.freeze_heap:  # the real process: start-up's objects live as long as it does
            loop.freeze_heap()

    def _configure(self, file_config: Config, *, at_once: bool = False) -> None:
        """Make the running monitor match the config file plus the API's additions (at
        start, on every reload and on every addition; ``at_once``: new accounts are probed
        now instead of spread over a minute)."""
        assert self.store is not None and self.session is not None
        assert self.prober is not None and self.decisions is not None
        self.file_config = file_config
        config = additions.merged(file_config, self.additions.accounts.values())
        self.prober.configure(config, self.session)
        self.config = config
        self.decisions.configure(config)
        self.silencing.configure(config.maintenance)
        wanted = self.watchlist.wanted(config, self.shard)
        fresh = wanted.keys() - self.watchlist.accounts.keys()
        removed, added = self.watchlist.apply(
            config, wanted, self.store.load_accounts() if fresh else {}, time.time())
        for gone in removed:
            self.scheduler.drop(gone)
        for watched in added:  # (their priority is set below, before any falls due)
            self.scheduler.file(watched, watched.key.platform,
                                spread=0.0 if at_once else min(watched.policy.interval, 60.0))
        listed = {a.key for a in file_config.accounts}
        for watched in self.watchlist:
            watched.source = "config" if watched.key in listed else "api"
            # Protected accounts go first when a platform's budget is short: added and kept
            # ones alike, so a reload that changes the flag changes the order too.
            self.scheduler.prioritize(watched, 0 if watched.protected else 1)
        self.metrics.watchlist(self.watchlist.counts, self.watchlist.intervals)

    def _apply_additions(self) -> None:
        """An account was added or removed through the API: apply it now, no reload."""
        self._configure(self.file_config, at_once=True)
        self.watchlist.report(capacity.estimate(self.config, self.shard))

    async def reload(self) -> list[str]:
        """Re-read the config file; apply it, or keep the running one and return the problems.

        State, open outages and pending notifications are kept either way.
        """
        if self.config_path is None:
            return ["this monitor was started without a config file"]
        try:
            # In a thread: a million-account watchlist file takes seconds to read, and
            # probing, paging and scrapes go on meanwhile.
            config = await asyncio.to_thread(load_config, self.config_path)
        except ConfigError as exc:
            problems = [p.strip() for p in exc.render().splitlines()[1:]]
            log.error("config reload rejected; keeping the running config",
                      file=self.config_path, problems=problems)
            self.metrics.config_reloads.labels("rejected").inc()
            return problems
        old = self.config
        self._configure(config)
        config = self.config
        if (config.notifiers, config.routing) != (old.notifiers, old.routing):
            await self._restart_outbox()
        assert self.streaming is not None and self.session is not None
        await self.streaming.sync(config, self.session, restart=config.streams != old.streams)
        if config.monitor.heartbeat != old.monitor.heartbeat:
            self._sync_heartbeat()
        for setting in config.monitor.needs_restart(old.monitor):
            log.warning("setting changes need a restart", setting=f"monitor.{setting}")
        self.metrics.config_reloads.labels("applied").inc()
        log.info("config reloaded", file=self.config_path, accounts=len(self.watchlist))
        self.watchlist.report(capacity.estimate(self.config, self.shard))
        return []

    async def _restart_outbox(self) -> None:
        """New notifiers or routing: a fresh worker (pending rows stay in the store)."""
        assert self.session is not None and self.store is not None
        if self.outbox is not None:
            await self.outbox.stop()
        store, policy = self.store, self.config.routing
        notifiers = build_notifiers(self.config.notifiers, self.session)
        self.outbox = OutboxWorker(lambda: store, notifiers, self.metrics,
                                   max_age=policy.max_age, retry_initial=policy.retry_initial,
                                   retry_max=policy.retry_max, gate=self.silencing.gate,
                                   quorum=self.quorum.gate)
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
        assert self.session is not None
        self._heartbeat = heartbeat.restart(self._heartbeat, self.config.monitor.heartbeat,
                                            self.session, self.health_problem, self.metrics)

    async def stop(self) -> None:
        """Graceful: finish in-flight probes (bounded), stop serving, close the DB."""
        log.info("monitor stopping")
        if self.streaming is not None:
            await self.streaming.stop()
        await self.scheduler.stop(self.config.monitor.shutdown_grace)
        await self.quorum.stop()  # an unfinished check is redone at the next start
        if self.store is not None:
            self.run.stop(self.store, time.time())  # watching ended here
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
        await signals.run_until_stopped(self.start, self.stop, self.reload)

    # ----------------------------------------------------------------- time passing

    async def _tick_loop(self) -> None:
        """Staleness is time passing without answers: check it even when probes hang."""
        assert self.decisions is not None and self.prober is not None
        decisions, prober, sched = self.decisions, self.prober, self.scheduler
        while True:
            await asyncio.sleep(decisions.tick_period())
            try:
                self.metrics.scheduling({n: lane.queue.qsize() for n, lane in
                                         sched.lanes.items()}, sched.lag())
                decisions.tick(time.time(), sched.waiting)
                self._release_silenced()
            except Exception as exc:  # the watcher of the watcher must not die either
                prober.internal("*", "tick", exc)

    def _refresh_availability(self, now: float) -> None:
        """The per-platform availability gauges, once a minute (not per scrape). Worked out
        in a thread on its own read connection (WAL lets it read beside the writer), so a
        big watchlist's figures never hold up probing; one refresh at a time. The loop
        side is a snapshot of the table (the thread must not iterate a dict the loop
        resizes) and the live sightings of the absent accounts only."""
        if self.store is None or (self._availability is not None
                                  and not self._availability.done()):
            return
        accounts = self.watchlist.accounts
        watched = list(accounts.values())
        absent = reports.still_absent(accounts[key] for keys in
                                      self.watchlist.absent.values()
                                      for key in keys if key in accounts)
        pruned = self._pruned_through
        if self.state_path == ":memory:":  # no second connection can see that file
            self.metrics.refresh_availability(self.store, watched, now,
                                              still_absent_at=absent, pruned_through=pruned)
            return
        path, metrics = self.state_path, self.metrics

        def refresh() -> None:
            reader = Store(path)
            try:
                metrics.refresh_availability(reader, watched, now,
                                             still_absent_at=absent, pruned_through=pruned)
            finally:
                reader.close()

        self._availability = asyncio.get_running_loop().run_in_executor(None, refresh)
        self._availability.add_done_callback(_log_failure)

    def _count_pruned(self, counts: dict[str, int]) -> None:
        for table, n in counts.items():
            if n:
                self.metrics.pruned_rows.labels(table).inc(n)
        keep = self.config.monitor.retention.transitions
        if counts.get("transitions") and keep is not None:
            # the round's cutoff was its start minus keep: now minus keep is at or after it
            self._pruned_through = max(self._pruned_through or -math.inf, time.time() - keep)

    def _release_silenced(self) -> None:
        """Kept-back pages whose silence or window ended go out (through the writer, so
        after any decision still queued that drops them)."""
        assert self.writer is not None and self.store is not None
        self.silencing.count()
        if not any(self.store.outbox_silenced().values()):
            return

        def done(released: int) -> None:
            if released:
                self._wake_outbox()

        self.writer.submit(Write("release silenced pages", lambda store: self.silencing
                                 .release_due(store, time.time()), done))

    # ----------------------------------------------------------------- on-call actions

    async def acknowledge(self, outage_id: int, by: str, comment: str | None,
                          remote: str | None) -> AckResult:
        """Acknowledge an open outage: reminders stop, and the providers that take an
        acknowledgement (PagerDuty, Opsgenie) get one, through the outbox."""
        assert self.store is not None
        store, now = self.store, time.time()
        outage = store.outage(outage_id)
        if outage is None:
            return AckResult("unknown")
        if outage.recovered_at is not None:
            return AckResult("closed", outage)
        if outage.acked_at is not None:
            return AckResult("already", outage)
        watched = self.watchlist.accounts.get(outage.key)
        account = watched.config if watched is not None else AccountConfig(
            platform=outage.key.platform, handle=outage.key.handle)
        n = routing.acknowledgement_for(outage, account, by, comment, now)
        items = [item for item in routing.outbox_items(n, account, self.config)
                 if item.notifier in self.config.notifiers
                 and acknowledges(self.config.notifiers[item.notifier].type)]
        done = store.acknowledge(outage_id, by, comment, now, items, AuditEntry(
            by, "outage.ack", str(outage_id), {"comment": comment} if comment else {},
            remote))
        outage = store.outage(outage_id)
        if not done:  # lost a race with a recovery or another ack
            closed = outage is None or outage.recovered_at is not None
            return AckResult("closed" if closed else "already", outage)
        self.metrics.acknowledgements.inc()
        self._wake_outbox()
        log.info("outage acknowledged", outage_id=outage_id, platform=outage.key.platform
                 if outage else None, by=by, forwarded_to=[i.notifier for i in items])
        return AckResult("acknowledged", outage)

    async def fresh_probe(self, key: AccountKey) -> Observation | None:
        """A peer vantage asks for this vantage's view of ``key`` now (quorum)."""
        if self.prober is None:
            return None
        return await self.prober.fresh(key)

    # ----------------------------------------------------------------- what others read

    def not_ready(self) -> dict[str, str]:
        """Why the monitor is not ready, per check (empty when it is)."""
        return readiness.not_ready(self.store, self.writer, self.scheduler)

    @property
    def ready(self) -> bool:
        return not self.not_ready()

    def health_problem(self) -> str | None:
        return readiness.health_problem(self.not_ready(), self.scheduler.lag(),
                                        self.watchlist.intervals)

    @property
    def accounts(self) -> dict[AccountKey, Watched]:
        return self.watchlist.accounts

    @property
    def streams(self) -> dict[str, Any]:
        return self.streaming.consumers if self.streaming is not None else {}

    @property
    def own_blind(self) -> float | None:
        return self.decisions.holds.own_blind if self.decisions is not None else None


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("availability refresh failed", exc_info=future.exception())


async def _not_started(key: object) -> float | None:
    raise RuntimeError("the monitor has not started")  # start() sets the real probe
