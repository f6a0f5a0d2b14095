"""Wiring and lifecycle: config -> probes -> state machine -> store -> metrics, and signals.

The hot path of one probe is: one HTTP request, one pure classification
(:mod:`monitor.probes`), one pure state step (:mod:`monitor.state`); SQLite is written only
when the step decides something.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import aiohttp
import structlog
from aiohttp import web

from monitor import routing
from monitor import state as machine
from monitor.config import AccountConfig, Config, LogNotifierConfig
from monitor.metrics import AccountView, Metrics
from monitor.model import (
    AccountKey,
    AccountState,
    Event,
    EventKind,
    Observation,
    Policy,
    State,
)
from monitor.notify import build_notifier
from monitor.notify.base import Notifier
from monitor.notify.outbox import OutboxWorker
from monitor.probes import PROBES, Probe, Target
from monitor.scheduler import Scheduler
from monitor.store import OutboxItem, Store

log = structlog.get_logger("monitor")


@dataclass(slots=True)
class Watched:
    """One account on the watchlist: its config, policy and live view."""

    config: AccountConfig
    policy: Policy
    view: AccountView
    account_id: str | None

    @property
    def key(self) -> AccountKey:
        return self.view.key


class Monitor:
    """The running monitor. ``start()``, then ``stop()``; ``run_forever()`` adds signals."""

    def __init__(self, config: Config, *, config_path: str | None = None,
                 state_path: str | None = None, listen_host: str | None = None,
                 listen_port: int | None = None):
        self.config = config
        self.config_path = config_path
        self.state_path = state_path or config.monitor.state_path
        self.listen_host = listen_host or config.monitor.listen_host
        self.listen_port = config.monitor.listen_port if listen_port is None else listen_port
        self.accounts: dict[AccountKey, Watched] = {}
        self.metrics = Metrics(self._views)
        self.store: Store | None = None
        self.session: aiohttp.ClientSession | None = None
        self.probes: dict[str, Probe] = {}
        self.scheduler = Scheduler(self._probe, jitter=config.defaults.jitter)
        self.runner: web.AppRunner | None = None
        self.outbox: OutboxWorker | None = None
        self.port: int | None = None  # the bound HTTP port once started
        self.started_at = time.time()
        self._tasks: list[asyncio.Task[None]] = []
        self._reminded: dict[str, float] = {}  # outage dedup key -> last notified
        # Called after each committed decision: (event, transition row id or None, new state).
        self.listeners: list[Callable[[Event, int | None, AccountState], None]] = []
        self._stopped = asyncio.Event()

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.store = Store(self.state_path)
        total = sum(p.concurrency for p in self.config.platforms.values())
        connector = aiohttp.TCPConnector(limit=total + 16, ttl_dns_cache=300,
                                         keepalive_timeout=60)
        # Each fetch carries its own asyncio.timeout; aiohttp's default 5-minute total
        # timeout would only add a second timer per request. Cookies are never wanted.
        self.session = aiohttp.ClientSession(connector=connector,
                                             cookie_jar=aiohttp.DummyCookieJar(),
                                             timeout=aiohttp.ClientTimeout(total=None))
        self._apply_config(self.config)
        self.outbox = OutboxWorker(lambda: self.store, self._build_notifiers(self.config),
                                   self.metrics, max_age=self.config.routing.max_age,
                                   retry_initial=self.config.routing.retry_initial,
                                   retry_max=self.config.routing.retry_max)
        await self.outbox.start()  # pending rows from before a restart go out first
        await self.scheduler.start()
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="tick"))
        from monitor.web import build_app  # the HTTP surface depends on the monitor, not back

        self.runner = web.AppRunner(build_app(self), access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.listen_host, self.listen_port)
        await site.start()
        sockets = site._server.sockets if site._server else ()  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1] if sockets else self.listen_port
        log.info("monitor started", accounts=len(self.accounts), platforms=len(self.probes),
                 listen=f"{self.listen_host}:{self.port}", state=self.state_path)

    def _apply_config(self, config: Config) -> None:
        """Build probes, lanes and the watchlist from ``config``, resuming stored state."""
        assert self.store is not None and self.session is not None
        self.config = config
        for name, platform in config.platforms.items():
            probe_cls = PROBES[platform.probe or name]
            self.probes[name] = probe_cls(platform, self.session,
                                          timeout=config.platform_timeout(name),
                                          max_body_bytes=config.platform_max_body(name))
            self.scheduler.add_lane(name, concurrency=platform.concurrency,
                                    rate=platform.rate_per_second, burst=platform.burst)
        stored = self.store.load_accounts()
        for account in config.accounts:
            key = account.key
            saved = stored.get(key)
            st = saved.state if saved else AccountState()
            account_id = account.id or (saved.account_id if saved else None)
            policy = config.policy(account)
            self.accounts[key] = Watched(account, policy,
                                         AccountView(key, account.protected, st), account_id)
            self.scheduler.add(key, key.platform, spread=min(policy.interval, 60.0))
        for name in config.platforms:
            count = sum(1 for k in self.accounts if k.platform == name)
            self.metrics.accounts_watched.labels(name).set(count)

    def _build_notifiers(self, config: Config) -> dict[str, Notifier]:
        assert self.session is not None
        specs = dict(config.notifiers)
        specs.setdefault(routing.IMPLICIT_LOG, LogNotifierConfig(type="log"))
        return {name: build_notifier(name, spec, self.session) for name, spec in specs.items()}

    async def stop(self) -> None:
        """Graceful: finish in-flight probes (bounded), stop serving, close the DB."""
        log.info("monitor stopping")
        await self.scheduler.stop(self.config.monitor.shutdown_grace)
        if self.outbox is not None:
            await self.outbox.stop()
        for task in self._tasks:
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
        self._stopped.set()

    async def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then drain and exit."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await self.stop()

    @property
    def ready(self) -> bool:
        return self.store is not None and self.scheduler.running

    # ----------------------------------------------------------------- the hot path

    async def _probe(self, key: object) -> float | None:
        assert isinstance(key, AccountKey)
        watched = self.accounts.get(key)
        if watched is None:
            return None
        obs = await self.probes[key.platform].check(Target(key.handle, watched.account_id))
        self.observe(key, obs)
        return machine.next_delay(watched.view.state, watched.policy)

    def observe(self, key: AccountKey, obs: Observation) -> list[Event]:
        """Feed one observation (from a probe or a stream) through the state machine."""
        watched = self.accounts.get(key)
        if watched is None:
            return []
        self.metrics.observed(key.platform, obs)
        watched.view.last_probe_at = obs.at
        new, events = machine.step(key, watched.view.state, obs, watched.policy)
        learned = obs.account_id is not None and watched.account_id is None
        if learned:
            watched.account_id = obs.account_id
        self._commit(watched, new, events, persist=learned)
        return events

    def _commit(self, watched: Watched, new: AccountState, events: list[Event],
                *, persist: bool = False) -> None:
        ids: list[int | None] = [None] * len(events)
        if events and self.store is not None:
            new, ids = self.store.decide(watched.key, new, events, watched.account_id,
                                          time.time(),
                                          lambda st: self._notifications(watched, st, events))
            if self.outbox is not None:
                self.outbox.wake()
        elif persist and self.store is not None:
            self.store.save_account(watched.key, new, watched.account_id, time.time())
        watched.view.state = new
        for event, row_id in zip(events, ids, strict=True):
            self._account_for(watched, event, new)
            for listener in self.listeners:
                listener(event, row_id, new)

    def _notifications(self, watched: Watched, new: AccountState,
                       events: list[Event]) -> list[tuple[int, OutboxItem]]:
        """Outbox rows for a decision; ``new`` carries the outage id the store just assigned."""
        items: list[tuple[int, OutboxItem]] = []
        for index, event in enumerate(events):
            n = routing.notification_for(event, watched.config, self.config, new.outage_id)
            if n is not None:
                items += [(index, item) for item in
                          routing.outbox_items(n, watched.config, self.config)]
        return items

    def _account_for(self, watched: Watched, event: Event, new: AccountState) -> None:
        """Metrics and one log line per decision."""
        key = watched.key
        fields = {"platform": key.platform, "account": key.handle,
                  "protected": watched.config.protected,
                  "from_state": event.old_state.value, "to_state": event.new_state.value}
        if event.reason is not None:
            fields["reason"] = event.reason.value
        if event.kind is EventKind.TRANSITION:
            self.metrics.transitions.labels(key.platform, event.old_state.value,
                                            event.new_state.value).inc()
            log.info("transition", outage_id=new.outage_id or event.details.get("outage_id"),
                     **fields)
        elif event.kind is EventKind.VANISHED:
            self.metrics.outages.labels(key.platform, str(event.reason)).inc()
            log.warning("account vanished", outage_id=new.outage_id, **fields)
        elif event.kind is EventKind.RECOVERED:
            duration = event.details.get("duration")
            if duration is not None:
                self.metrics.outage_duration.labels(
                    key.platform, "true" if watched.config.protected else "false"
                ).observe(duration)
            log.info("account recovered", outage_id=event.details.get("outage_id"),
                     duration_seconds=duration, **fields)
        elif event.kind is EventKind.BLIND:
            log.warning("monitoring blind", **fields, details=event.details)
        else:
            log.info(event.kind.value, **fields, details=event.details)

    async def _tick_loop(self) -> None:
        """Staleness is time passing without answers: check it even when probes hang."""
        shortest = min((w.policy.staleness for w in self.accounts.values()), default=20.0)
        shortest = min(shortest, self.config.routing.reminder_interval or shortest)
        period = max(0.05, min(5.0, shortest / 4))
        while True:
            await asyncio.sleep(period)
            now = time.time()
            for watched in list(self.accounts.values()):
                new, events = machine.tick(watched.key, watched.view.state, now, watched.policy)
                if events or new is not watched.view.state:
                    self._commit(watched, new, events)
                if new.state is State.DOWN and new.outage_id is not None:
                    self._remind(watched, new, now)

    def _remind(self, watched: Watched, st: AccountState, now: float) -> None:
        """While an outage stays open, notify again every ``routing.reminder_interval``."""
        every = self.config.routing.reminder_interval
        if not every or self.store is None or st.outage_id is None:
            return
        key = routing.outage_key(watched.key, st.outage_id)
        last = self._reminded.get(key)
        if last is None:  # first look since start: ask the outbox, it survives restarts
            last = self.store.last_notified(key) or st.since or now
            self._reminded[key] = last
        if now - last < every:
            return
        n = routing.reminder_for(watched.key, watched.config, self.config, st.outage_id,
                                 st.first_absent_at, st.reason.value if st.reason else None, now)
        self.store.enqueue(routing.outbox_items(n, watched.config, self.config), now)
        self._reminded[key] = now
        log.info("reminder queued", platform=watched.key.platform, account=watched.key.handle,
                 outage_id=st.outage_id)
        if self.outbox is not None:
            self.outbox.wake()

    # ----------------------------------------------------------------- views

    def _views(self) -> Iterator[AccountView]:
        return (w.view for w in self.accounts.values())

    def account_json(self, watched: Watched) -> dict[str, object]:
        st, key = watched.view.state, watched.key
        return {
            "platform": key.platform, "account": key.handle, "account_id": watched.account_id,
            "state": st.state.value, "reason": st.reason.value if st.reason else None,
            "protected": watched.config.protected, "team": watched.config.team,
            "owner": watched.config.owner, "labels": watched.config.labels,
            "since": st.since, "blind": st.blind, "outage_id": st.outage_id,
            "last_present_at": st.last_present_at, "first_absent_at": st.first_absent_at,
            "last_probe_at": watched.view.last_probe_at,
        }

