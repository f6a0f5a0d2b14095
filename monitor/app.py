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
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import structlog
from aiohttp import web

from monitor import anomaly, blindness, capacity, routing, sharding
from monitor import state as machine
from monitor.config import AccountConfig, Config, ConfigError, LogNotifierConfig, load_config
from monitor.health import ALL_ERRORS_FOR, PlatformHealth
from monitor.heartbeat import Heartbeat
from monitor.metrics import AccountView, Metrics
from monitor.model import (
    AbsentReason,
    AccountKey,
    AccountState,
    ErrorKind,
    Event,
    EventKind,
    Observation,
    Policy,
    Result,
    State,
)
from monitor.notify import build_notifier
from monitor.notify.base import Notification, Notifier
from monitor.notify.outbox import OutboxWorker
from monitor.probes import PROBES, Probe, Target
from monitor.scheduler import Scheduler
from monitor.store import Identity, OutboxItem, Store
from monitor.streams import JetstreamConsumer
from monitor.writer import StoreWriter, Write

log = structlog.get_logger("monitor")

INTERNAL_LOG_EVERY = 60.0  # seconds: one traceback per platform and minute, then counts
NOT_PROBED_BEHIND = "not probed: scheduler behind"
NOT_PROBED = "not probed"
UNSENT_WHY = "its outage ended before the page went out"
ANOMALY_KINDS = ("vanished", "reminder", "recovered")
BLIND_KINDS = ("blind", "sighted")
RATE_LIMIT_BACKOFF = 60.0  # a 429 without a reset time: wait this long (at most the cap)
MIN_RATE = 0.01  # requests/s: what is left of a window is spread, never starved to zero


@dataclass(slots=True)
class Watched:
    """One account on the watchlist: its config, policy and live view."""

    config: AccountConfig
    policy: Policy
    view: AccountView
    account_id: str | None
    current_handle: str | None = None  # after a rename; the id stays what we follow
    moved_to: str | None = None

    @property
    def identity(self) -> Identity:
        return Identity(self.account_id, self.current_handle, self.moved_to)

    @property
    def key(self) -> AccountKey:
        return self.view.key


class Monitor:
    """The running monitor. ``start()``, then ``stop()``; ``run_forever()`` adds signals."""

    def __init__(self, config: Config, *, config_path: str | None = None,
                 state_path: str | None = None, listen_host: str | None = None,
                 listen_port: int | None = None, shard: sharding.Shard | None = None,
                 reload_token: str | None = None):
        self.config = config
        self.shard = shard if shard is not None else config.monitor.shard
        self.reload_token = reload_token
        self.config_path = config_path
        self.state_path = state_path or config.monitor.state_path
        self.listen_host = listen_host or config.monitor.listen_host
        self.listen_port = config.monitor.listen_port if listen_port is None else listen_port
        self.accounts: dict[AccountKey, Watched] = {}
        self.streams: dict[str, JetstreamConsumer] = {}
        self._stream_tasks: dict[str, asyncio.Task[None]] = {}
        self.metrics = Metrics(self._views, lambda: self.streams)
        self.store: Store | None = None
        self.session: aiohttp.ClientSession | None = None
        self.probes: dict[str, Probe] = {}
        self.scheduler = Scheduler(self._probe, jitter=config.defaults.jitter,
                                   probe_batch=self._probe_batch, crashed=self._crashed)
        self.runner: web.AppRunner | None = None
        self.outbox: OutboxWorker | None = None
        self.port: int | None = None  # the bound HTTP port once started
        self._tasks: list[asyncio.Task[None]] = []
        self._reminded: dict[str, float] = {}  # outage dedup key -> last notified
        self.anomalies: dict[str, float] = {}  # platform -> since, while in an anomaly
        self._absent: dict[str, set[AccountKey]] = {}  # platform -> accounts suspect/down
        self._watched_per_platform: dict[str, int] = {}
        self.writer: StoreWriter | None = None
        self.own_blind: float | None = None  # since when, while most accounts are blind
        self._internal_logged: dict[str, float] = {}  # platform -> last traceback logged
        self.health: dict[str, PlatformHealth] = {}  # platform -> are its answers all errors
        self._holds_checked = False  # held pages of a hold that ended before a restart
        self._heartbeat: asyncio.Task[None] | None = None
        self.intervals: dict[str, float] = {}  # platform -> its shortest probe interval
        # Called after each committed decision: (event, transition row id or None, new state).
        self.listeners: list[Callable[[Event, int | None, AccountState], None]] = []

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self.store = Store(self.state_path)
        self.writer = StoreWriter(self.store, on_failure=self._write_failed)
        total = sum(p.concurrency for p in self.config.platforms.values())
        connector = aiohttp.TCPConnector(limit=total + 16, ttl_dns_cache=300,
                                         keepalive_timeout=60)
        # Each fetch carries its own asyncio.timeout; aiohttp's default 5-minute total
        # timeout would only add a second timer per request. Cookies are never wanted.
        self.session = aiohttp.ClientSession(connector=connector,
                                             cookie_jar=aiohttp.DummyCookieJar(),
                                             timeout=aiohttp.ClientTimeout(total=None))
        self._apply_config(self.config)
        await self._restart_outbox()  # pending rows from before a restart go out first
        await self._sync_streams()
        await self.scheduler.start()
        self._tasks.append(asyncio.create_task(self._tick_loop(), name="tick"))
        self._sync_heartbeat()
        from monitor.web import build_app  # the HTTP surface depends on the monitor, not back

        self.runner = web.AppRunner(build_app(self), access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.listen_host, self.listen_port)
        await site.start()
        sockets = site._server.sockets if site._server else ()  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1] if sockets else self.listen_port
        log.info("monitor started", accounts=len(self.accounts), platforms=len(self.probes),
                 listen=f"{self.listen_host}:{self.port}", state=self.state_path)
        self._log_watchlist()

    def _apply_config(self, config: Config) -> None:
        """Make the running monitor match ``config`` (at start and on every reload).

        Probes and lanes are rebuilt; accounts no longer listed (or no longer this shard's)
        stop being probed; new ones resume their stored state; kept ones keep their live
        state and open outages, with new thresholds and labels.
        """
        assert self.store is not None and self.session is not None
        probes: dict[str, Probe] = {}
        for name, platform in config.platforms.items():
            probe_cls = PROBES[platform.probe or name]
            probes[name] = probe_cls(platform, self.session,
                                     timeout=config.platform_timeout(name),
                                     max_body_bytes=config.platform_max_body(name))
            self.scheduler.add_lane(name, concurrency=platform.concurrency,
                                    rate=platform.rate_per_second, burst=platform.burst,
                                    batch=getattr(probes[name], "batch_size", 1))
        self.config, self.probes = config, probes
        wanted = {a.key: a for a in config.accounts if self.shard is None
                  or sharding.owns(self.shard, a.key)}
        for key in [k for k in self.accounts if k not in wanted]:
            self.scheduler.remove(key)
            del self.accounts[key]
        stored = self.store.load_accounts() if wanted.keys() - self.accounts.keys() else {}
        now = time.time()
        for key, account in wanted.items():
            policy = config.policy(account)
            watched = self.accounts.get(key)
            if watched is not None:
                watched.config, watched.policy = account, policy
                watched.view.protected = account.protected
                watched.account_id = account.id or watched.account_id
                continue
            saved = stored.get(key)
            st = machine.watching(saved.state if saved else AccountState(), now)
            account_id = account.id or (saved.account_id if saved else None)
            self.accounts[key] = Watched(
                account, policy, AccountView(key, account.protected, st), account_id,
                saved.identity.current_handle if saved else None,
                saved.identity.moved_to if saved else None)
            self.scheduler.add(key, key.platform, spread=min(policy.interval, 60.0),
                               priority=0 if account.protected else 1)
        self.metrics.accounts_watched.clear()
        self._watched_per_platform = {name: 0 for name in config.platforms}
        self._absent = {name: set() for name in config.platforms}
        for key, watched in self.accounts.items():
            self._watched_per_platform[key.platform] += 1
            if watched.view.state.state in anomaly.ABSENT_STATES:
                self._absent[key.platform].add(key)
        for name, count in self._watched_per_platform.items():
            self.metrics.accounts_watched.labels(name).set(count)
        shortest: dict[str, float] = {}
        for key, watched in self.accounts.items():
            interval = watched.policy.interval
            shortest[key.platform] = min(shortest.get(key.platform, interval), interval)
        self.intervals = shortest
        self.metrics.scheduler_interval.clear()
        for name, interval in shortest.items():
            self.metrics.scheduler_interval.labels(name).set(interval)
        self.health = {name: self.health.get(name, PlatformHealth()) for name in config.platforms}

    async def reload(self) -> list[str]:
        """Re-read the config file; apply it, or keep the running one and return the problems.

        State, open outages and pending notifications are kept either way.
        """
        if self.config_path is None:
            return ["this monitor was started without a config file"]
        try:
            config = load_config(self.config_path)
        except ConfigError as exc:
            problems = exc.render().splitlines()[1:]
            log.error("config reload rejected; keeping the running config",
                      file=self.config_path, problems=[p.strip() for p in problems])
            self.metrics.config_reloads.labels("rejected").inc()
            return [p.strip() for p in problems]
        old = self.config
        self._apply_config(config)
        if (config.notifiers, config.routing) != (old.notifiers, old.routing):
            await self._restart_outbox()
        await self._sync_streams(restart=config.streams != old.streams)
        if config.monitor.heartbeat != old.monitor.heartbeat:
            self._sync_heartbeat()
        for field in ("listen_host", "listen_port", "state_path"):
            if getattr(config.monitor, field) != getattr(old.monitor, field):
                log.warning("setting changes need a restart", setting=f"monitor.{field}")
        self.metrics.config_reloads.labels("applied").inc()
        log.info("config reloaded", file=self.config_path, accounts=len(self.accounts))
        self._log_watchlist()
        return []

    async def _restart_outbox(self) -> None:
        """New notifiers or routing: a fresh worker (pending rows stay in the store)."""
        if self.outbox is not None:
            await self.outbox.stop()
        self.outbox = OutboxWorker(lambda: self.store, self._build_notifiers(self.config),
                                   self.metrics, max_age=self.config.routing.max_age,
                                   retry_initial=self.config.routing.retry_initial,
                                   retry_max=self.config.routing.retry_max)
        await self.outbox.start()

    # ----------------------------------------------------------------- push streams

    def _stream_dids(self, platform: str) -> dict[str, AccountKey]:
        """DID -> account, for the accounts of ``platform`` whose DID is known."""
        return {w.account_id: key for key, w in self.accounts.items()
                if key.platform == platform and w.account_id
                and w.account_id.startswith("did:")}

    async def _sync_streams(self, restart: bool = False) -> None:
        """Start, stop or re-target the push streams to match the config and known DIDs."""
        assert self.session is not None and self.store is not None
        for name in [n for n in self.streams if restart or n not in self.config.streams]:
            await self._stop_stream(name)
        for name, spec in self.config.streams.items():
            dids = self._stream_dids(spec.platform)
            consumer = self.streams.get(name)
            if consumer is not None:
                if set(consumer.dids) != set(dids):
                    await consumer.update_dids(dids)  # options_update, no reconnect
                continue
            consumer = JetstreamConsumer(
                spec.url, self.session, dids=dids,
                on_observation=lambda did, obs, s=spec: self._pushed(s.platform, did, obs),
                on_identity=lambda did, handle, s=spec: self._pushed_identity(s.platform, did),
                load_cursor=lambda n=name: self._load_cursor(n),
                save_cursor=lambda value, n=name: self._save_cursor(n, value),
                rewind_seconds=spec.rewind, backoff_max=spec.backoff_max)
            self.streams[name] = consumer
            self._stream_tasks[name] = asyncio.create_task(consumer.run(), name=f"stream-{name}")

    def _load_cursor(self, name: str) -> int | None:
        return self.store.load_cursor(name) if self.store is not None else None

    def _save_cursor(self, name: str, value: int) -> None:
        """A cursor is a resume hint, not a decision: one the file refuses is skipped (the
        next one replaces it; a replay from an older cursor is deduplicated)."""
        if self.store is None:
            return
        try:
            self.store.save_cursor(name, value, time.time())
        except Exception as exc:
            self._write_failed(exc)

    async def _stop_stream(self, name: str) -> None:
        consumer = self.streams.pop(name)
        await consumer.stop()
        task = self._stream_tasks.pop(name)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    def _pushed(self, platform: str, did: str, obs: Observation) -> None:
        """A pushed account event. It may make an account suspect, never down (nor bring it
        back): one immediate poll must confirm, so a stream glitch cannot page alone."""
        key = self._stream_dids(platform).get(did)
        watched = self.accounts.get(key) if key else None
        if key is None or watched is None:
            return
        st = watched.view.state
        if (obs.result is Result.ABSENT and st.state in (State.UP, State.UNKNOWN)
                and watched.policy.failure_threshold >= 2):
            self.observe(key, obs)
        self.scheduler.schedule(key, 0.0)  # the confirming poll, now
        log.info("pushed account event", platform=platform, account=key.handle,
                 result=obs.result.value, evidence=obs.evidence)

    def _pushed_identity(self, platform: str, did: str) -> None:
        """A handle change announced on the stream: poll now, the answer tells the rename."""
        key = self._stream_dids(platform).get(did)
        if key is not None:
            self.scheduler.schedule(key, 0.0)

    def _sync_heartbeat(self) -> None:
        """Start, restart or stop the dead-man's-switch pings to match the config."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            self._heartbeat = None
        spec = self.config.monitor.heartbeat
        if spec is not None and self.session is not None:
            beat = Heartbeat(spec, self.session, self.health_problem, self.metrics)
            self._heartbeat = asyncio.create_task(beat.run(), name="heartbeat")

    def health_problem(self) -> str | None:
        """Why the monitor is not healthy enough to say so to a dead-man's switch: not
        ready, or a platform's scheduler further behind than its shortest interval."""
        problems = self.not_ready()
        if problems:
            return "; ".join(problems.values())
        for platform, (lag, _) in self.scheduler.lag().items():
            interval = self.intervals.get(platform)
            if interval is not None and lag > interval:
                return f"{platform}: scheduler {lag:.0f}s behind (interval {interval:g}s)"
        return None

    def _build_notifiers(self, config: Config) -> dict[str, Notifier]:
        assert self.session is not None
        specs = dict(config.notifiers)
        specs.setdefault(routing.IMPLICIT_LOG, LogNotifierConfig(type="log"))
        return {name: build_notifier(name, spec, self.session) for name, spec in specs.items()}

    async def stop(self) -> None:
        """Graceful: finish in-flight probes (bounded), stop serving, close the DB."""
        log.info("monitor stopping")
        for name in list(self.streams):
            await self._stop_stream(name)
        await self.scheduler.stop(self.config.monitor.shutdown_grace)
        if self.writer is not None:
            await self.writer.flush(self.config.monitor.shutdown_grace)
            await self.writer.stop()
        if self.outbox is not None:
            await self.outbox.stop()
        if self._heartbeat is not None:
            self._tasks.append(self._heartbeat)
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

    async def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then drain and exit."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
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

    @property
    def ready(self) -> bool:
        return not self.not_ready()

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

    # ----------------------------------------------------------------- the hot path

    async def _probe(self, key: object) -> float | None:
        assert isinstance(key, AccountKey)
        watched = self.accounts.get(key)
        if watched is None:
            return None
        try:
            obs = await self.probes[key.platform].check(Target(key.handle, watched.account_id))
        except Exception as exc:  # a probe bug must not end the worker (supervision)
            obs = self._internal(key.platform, "probe", exc)
        return self._take(watched, obs, spend=True)

    async def _probe_batch(self, keys: list[object]) -> dict[object, float | None]:
        """Many accounts of one platform in one request (X: 100 ids, Bluesky: 25 DIDs).

        Only accounts whose id is known can be batched; the others are probed one by one
        (that is how their id gets learned).
        """
        watched = [w for k in keys if isinstance(k, AccountKey)
                   and (w := self.accounts.get(k)) is not None]
        delays: dict[object, float | None] = {k: None for k in keys}
        by_id = {w.account_id: w for w in watched if w.account_id}
        if by_id:
            platform = next(iter(by_id.values())).key.platform
            probe: Any = self.probes[platform]
            try:
                results = await probe.check_many([Target(w.key.handle, account_id)
                                                  for account_id, w in by_id.items()])
            except Exception as exc:  # supervision, as in _probe
                failed = self._internal(platform, "batch probe", exc)
                results = dict.fromkeys(by_id, failed)
            spent = False
            for account_id, w in by_id.items():
                obs = results.get(account_id) or Observation.failed(
                    time.time(), ErrorKind.UNEXPECTED, "missing from the batch answer")
                delays[w.key] = self._take(w, obs, spend=not spent)  # one request, one
                spent = True  # budget reading
        for w in watched:
            if not w.account_id:
                delays[w.key] = await self._probe(w.key)
        return delays

    def _take(self, watched: Watched, obs: Observation, *, spend: bool) -> float:
        """Spend the budget the answer reports, decide, and say when to probe again. An
        exception anywhere in that (classification aside, which the probe owns) is counted
        as error(internal) and the account is probed again at its interval."""
        key = watched.key
        try:
            if spend:
                self._spend(key.platform, obs)
            self.observe(key, obs)
            return machine.next_delay(watched.view.state, watched.policy)
        except Exception as exc:
            self._internal(key.platform, "decision", exc)
            return watched.policy.interval

    def _crashed(self, key: object, exc: BaseException) -> float | None:
        """The scheduler's last line of supervision (our own code raised outside _take)."""
        watched = self.accounts.get(key) if isinstance(key, AccountKey) else None
        self._internal(watched.key.platform if watched else "?", "scheduling", exc)
        return watched.policy.interval if watched else None

    def _internal(self, platform: str, where: str, exc: BaseException) -> Observation:
        """Count an internal error; log its traceback at most once per platform and minute."""
        self.metrics.probe_errors.labels(platform, ErrorKind.INTERNAL.value).inc()
        now = time.monotonic()
        if now - self._internal_logged.get(platform, -INTERNAL_LOG_EVERY) >= INTERNAL_LOG_EVERY:
            self._internal_logged[platform] = now
            log.error("internal error; the account stays watched", platform=platform,
                      where=where, error=type(exc).__name__, exc_info=exc)
        return Observation.failed(time.time(), ErrorKind.INTERNAL,
                                  f"internal error in {where}: {type(exc).__name__}")

    def observe(self, key: AccountKey, obs: Observation) -> list[Event]:
        """Feed one observation (from a probe or a stream) through the state machine."""
        watched = self.accounts.get(key)
        if watched is None:
            return []
        self.metrics.observed(key.platform, obs)
        view = watched.view
        view.last_probe_at = obs.at
        if obs.result is Result.ERROR:
            view.last_error = obs
        health = self.health.get(key.platform)
        if health is not None:
            health.saw(obs)
        identity_events: list[Event] = []
        changed = False
        if obs.account_id is not None:
            obs, identity_events, changed = self._identity(watched, obs)
        new, events = machine.step(key, view.state, obs, watched.policy)
        if not (events or identity_events or changed):
            view.state = new  # the steady state: memory only, no disk, no events
            return events
        self._commit(watched, new, events + identity_events, persist=changed)
        return events

    def _identity(self, watched: Watched, obs: Observation
                  ) -> tuple[Observation, list[Event], bool]:
        """Learn the immutable id; tell renames and moves from disappearance.

        The same id under a new handle is a rename (an event, no page); a handle that now
        answers with a *different* id belongs to someone else, so for the account we watch it
        is an absence — never "present" (platforms.md: freed handles get re-registered).
        """
        key, st = watched.key, watched.view.state
        if obs.account_id is None:
            return obs, [], False
        if watched.account_id is None:
            watched.account_id = obs.account_id
            if self.config.streams and obs.account_id.startswith("did:"):
                self._tasks.append(asyncio.create_task(self._sync_streams()))  # follow it
            return obs, [], True
        if obs.account_id != watched.account_id:
            evidence = (f"handle now belongs to another account (id {obs.account_id}, "
                        f"watching id {watched.account_id})")
            return Observation.absent(obs.at, AbsentReason.RENAMED, evidence,
                                      latency=obs.latency), [], False
        events: list[Event] = []
        now_handle = obs.handle
        known = watched.current_handle or key.handle
        if (obs.result is Result.PRESENT and now_handle
                and now_handle.lower() != known.lower()):
            watched.current_handle = now_handle
            events.append(Event(EventKind.RENAMED, key, obs.at, st.state, st.state, None, {
                "old_handle": known, "new_handle": now_handle, "account_id": obs.account_id,
                "summary": f"now @{now_handle} (same id {obs.account_id}); still followed"}))
        if obs.moved_to and obs.moved_to != watched.moved_to:
            watched.moved_to = obs.moved_to
            events.append(Event(EventKind.MOVED, key, obs.at, st.state, st.state, None, {
                "moved_to": obs.moved_to, "account_id": obs.account_id,
                "summary": f"migrated to {obs.moved_to}"}))
        return obs, events, bool(events)

    def _spend(self, platform: str, obs: Observation) -> None:
        """Follow the platform's own budget: pause on 429 until its reset, and spread what is
        left of a window over the rest of it instead of spending it at once."""
        lane = self.scheduler.lanes.get(platform)
        if lane is None:
            return
        rl = obs.rate_limit
        throttled = obs.error is ErrorKind.RATE_LIMITED
        if rl is None and not throttled:
            return
        wall, mono = time.time(), time.monotonic()
        if rl is not None and rl.remaining is not None:
            self.metrics.ratelimit_remaining.labels(platform).set(rl.remaining)
        pause: float | None = None
        if rl is not None and rl.retry_after is not None:
            pause = rl.retry_after
        elif rl is not None and rl.reset_at is not None and (throttled or rl.remaining == 0):
            pause = rl.reset_at - wall
        elif throttled:
            pause = RATE_LIMIT_BACKOFF  # a 429 that does not say until when
        if pause is not None and pause > 0:
            cap = self.config.platforms[platform].max_rate_limit_pause
            added = lane.budget.pause_until(mono + min(pause, cap))
            if added > 0:
                self.metrics.ratelimit_throttled.labels(platform).inc(added)
                log.warning("rate limited: pausing platform", platform=platform,
                            seconds=round(added, 1))
            return
        configured = self.config.platforms[platform].rate_per_second
        if rl is not None and rl.remaining and rl.reset_at and rl.reset_at > wall:
            lane.budget.set_rate(min(configured, max(rl.remaining / (rl.reset_at - wall),
                                                     MIN_RATE)))
        elif lane.budget.rate != configured:
            lane.budget.set_rate(configured)

    def _commit(self, watched: Watched, new: AccountState, events: list[Event],
                *, persist: bool = False) -> None:
        """Write one decision (state, outage, pages) as one transaction, or queue it behind
        earlier writes while the state file refuses them (see :mod:`monitor.writer`)."""
        assert self.writer is not None and self.store is not None
        if new.state is not watched.view.state.state:
            absent = self._absent.setdefault(watched.key.platform, set())
            if new.state in anomaly.ABSENT_STATES:
                absent.add(watched.key)
            else:
                absent.discard(watched.key)
            # Before the decision's own pages are written: if this decision is the one that
            # makes the platform anomalous, its page is already held.
            self._check_anomaly(watched.key.platform, {watched.key: new})
        key, identity, now = watched.key, watched.identity, time.time()
        if events:
            if new.outage_id is None and any(e.kind is EventKind.VANISHED for e in events):
                new = replace(new, outage_id=self.store.next_outage_id())
            outbox, drop = self._notifications(watched, new, events, now)
            decided = new

            def apply(store: Store) -> tuple[AccountState, list[int]]:
                return store.decide(key, decided, events, identity, now, outbox, drop)

            def done(result: tuple[AccountState, list[int]]) -> None:
                if self.outbox is not None:
                    self.outbox.wake()
                for event, row_id in zip(events, result[1], strict=True):
                    for listener in self.listeners:
                        listener(event, row_id, decided)

            self.writer.submit(Write(f"decision {key}", apply, done,
                                     tuple(item for _, item in outbox)))
        elif persist:
            self.writer.submit(Write(f"identity {key}", lambda store: store.save_account(
                key, new, identity, now)))
        watched.view.state = new
        if new.blind and not watched.view.blind_reason:
            blind = next((e for e in events if e.kind is EventKind.BLIND), None)
            watched.view.blind_reason = (blind.details.get("error") if blind else None) \
                or "no answers"
        elif not new.blind:
            watched.view.blind_reason = None
        for event in events:
            self._account_for(watched, event, new)

    def _write_failed(self, exc: BaseException) -> None:
        self.metrics.store_write_failures.inc()

    def _enqueue(self, what: str, items: list[OutboxItem]) -> None:
        """Outbox rows no account decision causes (reminders, anomaly and blindness pages)."""
        assert self.writer is not None
        now = time.time()

        def done(_: object) -> None:
            if self.outbox is not None:
                self.outbox.wake()

        self.writer.submit(Write(what, lambda store: store.enqueue(items, now), done,
                                 tuple(items)))

    def _notifications(self, watched: Watched, new: AccountState, events: list[Event],
                       now: float) -> tuple[list[tuple[int, OutboxItem]], list[tuple[int, str]]]:
        """Outbox rows for a decision (``new`` carries its outage id), and the rows it makes
        moot: a page that has not gone out when its outage (or blindness) already ended is
        dropped, never delivered after the fact; an outage that short is told to chat."""
        items: list[tuple[int, OutboxItem]] = []
        drop: list[tuple[int, str]] = []
        platform = watched.key.platform
        for index, event in enumerate(events):
            n = routing.notification_for(event, watched.config, self.config, new.outage_id)
            if n is None:
                continue
            rows = routing.outbox_items(n, watched.config, self.config)
            if n.action == "resolve":
                unsent = self.store.unsent_triggers(n.dedup_key, now) if self.store else []
                if unsent:
                    drop += [(r.id, UNSENT_WHY) for r in unsent]
                    moot = {r.notifier for r in unsent}
                    rows = [item for item in rows if item.notifier not in moot]
                    in_grace = [r for r in unsent if r.status == "pending"]
                    if n.kind == "recovered" and in_grace:
                        brief = routing.brief_outage_for(
                            Notification.from_json(in_grace[0].payload), n)
                        rows += routing.outbox_items(brief, watched.config, self.config)
                    log.info("page dropped: it ended before it went out", platform=platform,
                             account=watched.key.handle, kind=n.kind, dedup_key=n.dedup_key)
            hold = self._held(platform, n.kind)
            grace = self._grace(platform, n.kind)
            items += [(index, replace(item, status="held") if hold and item.action != "notify"
                       else replace(item, delay=grace)) for item in rows]
        return items, drop

    def _grace(self, platform: str, kind: str) -> float:
        """How long a page waits before its first attempt, for a hold that may be about to
        start (0 where none can: too few accounts and no canary)."""
        if kind == "vanished":
            spec = self.config.platforms[platform].anomaly
            could_trip = spec.enabled and (
                self._watched_per_platform.get(platform, 0) >= spec.min_accounts
                or any(w.config.canary for k, w in self.accounts.items()
                       if k.platform == platform))
            return spec.hold_for if could_trip else 0.0
        if kind == "blind":
            spec_b = self.config.monitor.own_blindness
            return spec_b.hold_for if blindness.could_trip(len(self.accounts), spec_b) else 0.0
        return 0.0

    def _held(self, platform: str, kind: str) -> bool:
        """Pages held back while a hold is on: vanish pages and reminders during the
        platform's anomaly, blind pages while the monitor itself is blind."""
        if kind in ("vanished", "reminder"):
            return platform in self.anomalies
        if kind == "blind":
            return self.own_blind is not None
        return False

    def _check_anomaly(self, platform: str,
                       pending: dict[AccountKey, AccountState] | None = None) -> None:
        """Trip or clear the platform's anomaly; one page each way, held pages released."""
        spec = self.config.platforms.get(platform)
        if spec is None or self.store is None:
            return
        now = time.time()
        pending = pending or {}
        absent = self._absent.setdefault(platform, set())
        members = [(pending.get(k, self.accounts[k].view.state), self.accounts[k].config.canary)
                   for k in absent | pending.keys() if k in self.accounts]
        total = self._watched_per_platform.get(platform, 0)
        verdict = anomaly.evaluate(members, total, now, spec.anomaly)
        since = self.anomalies.get(platform)
        if verdict.active and since is None:
            onsets = [st.first_absent_at for st, _ in members
                      if st.state in anomaly.ABSENT_STATES and st.first_absent_at is not None]
            since = min(onsets, default=now)  # stable across restarts: one dedup key
            self.anomalies[platform] = since
            self._hold(ANOMALY_KINDS, platform)  # pages still in their grace
            self._hold_page(routing.anomaly_notification(platform, since, verdict.reason,
                                                         True, now),
                            routing.anomaly_owner(platform, self.config))
            log.error("platform anomaly: holding vanish pages", platform=platform,
                      reason=verdict.reason)
        elif not verdict.active and since is not None:
            del self.anomalies[platform]
            self._hold_page(routing.anomaly_notification(platform, since, "", False, now),
                            routing.anomaly_owner(platform, self.config))
            self._release(ANOMALY_KINDS, platform, "platform anomaly cleared")
        self.metrics.platform_anomaly.labels(platform).set(1 if verdict.active else 0)

    def _check_own_blindness(self) -> None:
        """Trip or clear our own blindness: one page each way, blind pages held meanwhile."""
        spec = self.config.monitor.own_blindness
        verdict = blindness.evaluate(
            (blindness.BlindAccount(k.platform, w.view.state, w.view.blind_reason)
             for k, w in self.accounts.items()), len(self.accounts), spec)
        now = time.time()
        owner = routing.anomaly_owner("*", self.config)
        if verdict.active and self.own_blind is None:
            self.own_blind = verdict.since if verdict.since is not None else now
            self._hold(BLIND_KINDS, None)
            self._hold_page(routing.monitor_blind_notification(
                self.own_blind, verdict.summary, True, now,
                {"platforms": verdict.platforms, "errors": verdict.kinds,
                 "blind": verdict.blind, "watched": verdict.total}), owner)
            log.error("monitor blind: most accounts blind at once; holding their blind pages",
                      blind=verdict.blind, watched=verdict.total, platforms=verdict.platforms,
                      errors=verdict.kinds)
        elif not verdict.active and self.own_blind is not None:
            since, self.own_blind = self.own_blind, None
            self._hold_page(routing.monitor_blind_notification(since, "", False, now, {}),
                            owner)
            self._release(BLIND_KINDS, None, "monitor sees again")
        self.metrics.monitor_blind.set(1 if self.own_blind is not None else 0)

    def _hold(self, kinds: tuple[str, ...], platform: str | None) -> None:
        assert self.writer is not None
        self.writer.submit(Write(f"hold {kinds}", lambda store: store.hold_pending(
            kinds, platform)))

    def _release(self, kinds: tuple[str, ...], platform: str | None, why: str) -> None:
        assert self.writer is not None
        now = time.time()

        def done(counts: tuple[int, int]) -> None:
            log.warning(why + "; held pages re-evaluated", platform=platform,
                        released_pages=counts[0], dropped_pages=counts[1])
            if self.outbox is not None:
                self.outbox.wake()

        self.writer.submit(Write(f"release {kinds}", lambda store: store.release_held(
            kinds, now, platform), done))

    def _hold_page(self, n: Notification, owner: AccountConfig) -> None:
        """An anomaly's or blindness' own page, once: after a restart the same hold (same
        start, same dedup key) is not paged again when its trigger already went out."""
        assert self.store is not None
        if n.action == "trigger" and self.store.last_action(n.dedup_key) == "trigger":
            return
        self._enqueue(f"{n.kind} {n.action}", routing.outbox_items(n, owner, self.config))

    def _release_stale_holds(self) -> None:
        """Once after start: pages held by a hold that ended while we were stopped."""
        assert self.store is not None
        self._holds_checked = True
        for platform in self.config.platforms:
            if platform not in self.anomalies and self.store.held_count(ANOMALY_KINDS,
                                                                        platform):
                self._release(ANOMALY_KINDS, platform, "platform anomaly ended while stopped")
        if self.own_blind is None and self.store.held_count(BLIND_KINDS):
            self._release(BLIND_KINDS, None, "monitor blindness ended while stopped")

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
            try:
                self._tick(time.time())
            except Exception as exc:  # the watcher of the watcher must not die either
                self._internal("*", "tick", exc)

    def _tick(self, now: float) -> None:
        for platform in self.config.platforms:
            self._check_anomaly(platform)  # windows expire, canaries come back
        for name, lane in self.scheduler.lanes.items():
            self.metrics.scheduler_queue.labels(name).set(lane.queue.qsize())
        for name, (worst, overdue) in self.scheduler.lag().items():
            self.metrics.scheduler_lag.labels(name).set(worst)
            self.metrics.accounts_overdue.labels(name).set(overdue)
        starved: set[object] | None = None  # accounts our own backlog keeps from a probe
        for watched in list(self.accounts.values()):
            try:
                new, events = machine.tick(watched.key, watched.view.state, now,
                                           watched.policy)
                if events:
                    if starved is None:
                        starved = self.scheduler.waiting()
                    why = (NOT_PROBED_BEHIND if watched.key in starved else NOT_PROBED)
                    new, events = machine.tick(watched.key, watched.view.state, now,
                                               watched.policy, why)
                if events or new is not watched.view.state:
                    self._commit(watched, new, events)
                if new.state is State.DOWN and new.outage_id is not None:
                    self._remind(watched, new, now)
            except Exception as exc:
                self._internal(watched.key.platform, "tick", exc)
        self._check_own_blindness()
        if not self._holds_checked:
            self._release_stale_holds()
        self._warn_error_only_platforms(now)

    def _warn_error_only_platforms(self, now: float) -> None:
        for platform, health in self.health.items():
            warning = health.due_warning(now)
            if warning is not None:
                kind, count, hint = warning
                log.warning("every answer from this platform is an error", platform=platform,
                            error=kind, errors=count, seconds=ALL_ERRORS_FOR, hint=hint)

    def _remind(self, watched: Watched, st: AccountState, now: float) -> None:
        """While an outage stays open, notify again every ``routing.reminder_interval``."""
        every = self.config.routing.reminder_interval
        if not every or self.store is None or st.outage_id is None:
            return
        key = routing.outage_key(watched.key, st.outage_id)
        if self._held(watched.key.platform, "reminder") or self.store.has_held(key):
            return  # its page is held: no reminders for a page nobody got
        last = self._reminded.get(key)
        if last is None:  # first look since start: ask the outbox, it survives restarts
            last = self.store.last_notified(key) or st.since or now
            self._reminded[key] = last
        if now - last < every:
            return
        n = routing.reminder_for(watched.key, watched.config, self.config, st.outage_id,
                                 st.first_absent_at, st.reason.value if st.reason else None, now)
        self._enqueue(f"reminder {watched.key}",
                      routing.outbox_items(n, watched.config, self.config))
        self._reminded[key] = now
        log.info("reminder queued", platform=watched.key.platform, account=watched.key.handle,
                 outage_id=st.outage_id)

    def _log_watchlist(self) -> None:
        """Say what is watched, when the first answers are due and whether each platform's
        budget keeps up, so a first run does not look dead until staleness."""
        loads = {load.platform: load for load in capacity.estimate(self.config, self.shard)}
        for platform in self.config.platforms:
            watched = [w for k, w in self.accounts.items() if k.platform == platform]
            if not watched:
                continue
            interval = self.intervals.get(platform, 0.0)
            load = loads.get(platform)
            log.info("watching", platform=platform, accounts=len(watched),
                     protected=sum(w.config.protected for w in watched),
                     interval_seconds=interval,
                     first_results_within_seconds=round(min(interval, 60.0), 1),
                     needed_requests_per_second=round(load.needed_rps, 3) if load else None)
            if load is not None and not load.ok:
                log.warning("this platform's budget cannot keep up with its watchlist",
                            platform=platform, detail=load.render())

    # ----------------------------------------------------------------- views

    def _views(self) -> Iterator[AccountView]:
        return (w.view for w in self.accounts.values())

    def account_json(self, watched: Watched) -> dict[str, object]:
        st, key = watched.view.state, watched.key
        return {
            "platform": key.platform, "account": key.handle, "account_id": watched.account_id,
            "current_handle": watched.current_handle or key.handle,
            "moved_to": watched.moved_to,
            "state": st.state.value, "reason": st.reason.value if st.reason else None,
            "protected": watched.config.protected, "team": watched.config.team,
            "owner": watched.config.owner, "labels": watched.config.labels,
            "since": st.since, "blind": st.blind, "outage_id": st.outage_id,
            "last_present_at": st.last_present_at, "first_absent_at": st.first_absent_at,
            "last_probe_at": watched.view.last_probe_at,
            "blind_reason": watched.view.blind_reason if st.blind else None,
            "last_error": None if (err := watched.view.last_error) is None else {
                "kind": str(err.error), "evidence": err.evidence, "at": err.at},
        }

