"""Probing, supervised: the scheduler's probe functions, from request to decision.

One probe of one account (or one batch request for many): ask the platform, follow what its
answer says about our budget (:mod:`monitor.budget`), decide (:mod:`monitor.decisions`), and
say when to probe again. Nothing raised on the way ends the scheduler's worker: a probe that
raises becomes ``error(internal)`` for its account, one that fails after the answer is
counted the same way, the traceback is logged at most once per platform and minute, and the
account is probed again at its interval.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import aiohttp
import structlog

from monitor import budget
from monitor import state as machine
from monitor.config import Config
from monitor.decisions import Decisions
from monitor.metrics import Metrics
from monitor.model import AccountKey, ErrorKind, Observation
from monitor.probes import PROBES, BatchProbe, Probe, Target, batch_size_of
from monitor.scheduler import Scheduler
from monitor.watchlist import Watched, Watchlist

log = structlog.get_logger("monitor")

INTERNAL_LOG_EVERY = 60.0  # seconds: one traceback per platform and minute, then counts
PAUSE_LOG_EVERY = 10.0  # seconds: one rate-limit warning per platform, with the counts


@dataclass(slots=True)
class Pauses:
    count: int = 0
    seconds: float = 0.0
    logged_at: float = -PAUSE_LOG_EVERY


def client_session(config: Config) -> aiohttp.ClientSession:
    """The one HTTP client every probe shares."""
    total = sum(p.concurrency for p in config.platforms.values())
    # Each fetch carries its own asyncio.timeout; aiohttp's default 5-minute total timeout
    # would only add a second timer per request. Cookies are never wanted.
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=total + 16, ttl_dns_cache=300,
                                       keepalive_timeout=60),
        cookie_jar=aiohttp.DummyCookieJar(), timeout=aiohttp.ClientTimeout(total=None))


class Prober:
    def __init__(self, watchlist: Watchlist, decisions: Decisions, scheduler: Scheduler,
                 metrics: Metrics, config: Config):
        self.watchlist, self.decisions, self.scheduler = watchlist, decisions, scheduler
        self.writer = decisions.writer
        self.metrics, self.config = metrics, config
        self.probes: dict[str, Probe] = {}
        # The probes that look many accounts up at once (a runtime Protocol check is ~20 us:
        # made once per configure, not once per batch).
        self.batch_probes: dict[str, BatchProbe] = {}
        self._internal_logged: dict[str, float] = {}  # platform -> last traceback logged
        self._paused: dict[str, Pauses] = {}  # platform -> pauses since its last warning

    def configure(self, config: Config, session: aiohttp.ClientSession) -> None:
        """One probe per platform, and its scheduler lane (concurrency, budget, batch)."""
        probes: dict[str, Probe] = {}
        for name, platform in config.platforms.items():
            probe = PROBES[platform.probe or name](
                platform, session, timeout=config.platform_timeout(name),
                max_body_bytes=config.platform_max_body(name))
            probes[name] = probe
            self.scheduler.add_lane(name, concurrency=platform.concurrency,
                                    rate=platform.rate_per_second, burst=platform.burst,
                                    batch=batch_size_of(probe))
        self.config, self.probes = config, probes
        self.batch_probes = {name: probe for name, probe in probes.items()
                             if isinstance(probe, BatchProbe)}

    async def probe(self, key: object) -> float | None:
        watched = self.watchlist.accounts.get(key)  # type: ignore[call-overload]
        if watched is None:
            return None
        account = watched.key
        try:
            obs = await self.probes[account.platform].check(Target(account.handle,
                                                                   watched.account_id))
        except Exception as exc:  # a probe bug must not end the worker (supervision)
            obs = self.internal(account.platform, "probe", exc)
        delay = self._take(watched, obs, spend=True)
        if self.writer.full():
            await self.writer.room()
        return delay

    async def fresh(self, key: AccountKey) -> Observation | None:
        """Probe one watched account now, outside its schedule (a peer asks for a vote),
        and decide on the answer like any other; None when it is not watched here."""
        watched = self.watchlist.accounts.get(key)
        if watched is None:
            return None
        try:
            obs = await self.probes[key.platform].check(Target(key.handle,
                                                               watched.account_id))
        except Exception as exc:  # supervision, as in probe()
            obs = self.internal(key.platform, "probe", exc)
        self._take(watched, obs, spend=True)
        return obs

    async def probe_batch(self, keys: list[object]) -> list[float | None]:
        """Many accounts of one platform in one request (X: 100 ids, Bluesky: 25 DIDs); the
        delay until each key's next probe, in the order of ``keys`` (None: stop probing it).

        Only accounts whose id is known can be batched; the others are probed one by one
        (that is how their id gets learned).
        """
        delays: list[float | None] = [None] * len(keys)
        by_id: dict[str, tuple[int, Watched]] = {}
        singles: list[tuple[int, Watched]] = []
        for i, key in enumerate(keys):
            w = self.watchlist.get(key)
            if w is None:
                continue
            account_id = w.account_id
            if account_id:
                by_id[account_id] = (i, w)
            else:
                singles.append((i, w))
        if by_id:
            platform = next(iter(by_id.values()))[1].key.platform
            probe = self.batch_probes.get(platform)
            try:
                if probe is None:
                    raise TypeError(f"the {platform} lane batches but its probe is no BatchProbe")
                results = await probe.check_many([Target(w.key.handle, account_id)
                                                  for account_id, (_, w) in by_id.items()])
            except Exception as exc:  # supervision, as in probe()
                results = dict.fromkeys(by_id, self.internal(platform, "batch probe", exc))
            spend = True  # one request, one budget reading
            for account_id, (i, w) in by_id.items():
                obs = results.get(account_id) or Observation.failed(
                    time.time(), ErrorKind.UNEXPECTED, "missing from the batch answer")
                delays[i] = self._take(w, obs, spend=spend)
                spend = False
        for i, w in singles:
            if not w.account_id:
                delays[i] = await self.probe(w.key)
        if self.writer.full():  # the disk is behind: this worker waits for it (MAX_BACKLOG)
            await self.writer.room()
        return delays

    def _take(self, watched: Watched, obs: Observation, *, spend: bool) -> float:
        """Spend the budget the answer reports, decide, and say when to probe again."""
        try:
            if spend and (obs.rate_limit is not None or obs.error is ErrorKind.RATE_LIMITED):
                self._spend(watched.key.platform, obs)
            self.decisions.observe(watched.key, obs)
            return machine.next_delay(watched.working, watched.policy)
        except Exception as exc:
            self.internal(watched.key.platform, "decision", exc)
            return watched.policy.interval

    def _spend(self, platform: str, obs: Observation) -> None:
        spec = self.config.platforms[platform]
        plan = budget.plan(obs, time.time(), spec.rate_per_second,
                           self.scheduler.rate(platform), spec.max_rate_limit_pause)
        if plan is None:
            return
        if plan.remaining is not None:
            self.metrics.ratelimit_remaining.labels(platform).set(plan.remaining)
        added = self.scheduler.apply_budget(platform, plan)
        if added > 0:
            self.metrics.ratelimit_throttled.labels(platform).inc(added)
            self._log_pause(platform, added)

    def _log_pause(self, platform: str, added: float) -> None:
        """One warning per platform and PAUSE_LOG_EVERY, however many 429s: a budget spent
        at 100 requests/s would otherwise log a hundred lines a second."""
        now = time.monotonic()
        paused = self._paused.setdefault(platform, Pauses())
        paused.count, paused.seconds = paused.count + 1, paused.seconds + added
        if now - paused.logged_at >= PAUSE_LOG_EVERY:
            log.warning("rate limited: pausing platform", platform=platform,
                        seconds=round(added, 1), pauses=paused.count,
                        paused_seconds=round(paused.seconds, 1))
            self._paused[platform] = Pauses(logged_at=now)

    def crashed(self, key: object, exc: BaseException) -> float | None:
        """The scheduler's last line of supervision (our own code raised outside _take)."""
        watched = self.watchlist.get(key)
        self.internal(watched.key.platform if watched else "?", "scheduling", exc)
        return watched.policy.interval if watched else None

    def internal(self, platform: str, where: str, exc: BaseException) -> Observation:
        """Count an internal error; log its traceback at most once per platform and minute."""
        self.metrics.probe_counts.error(platform, ErrorKind.INTERNAL)
        now = time.monotonic()
        if now - self._internal_logged.get(platform, -INTERNAL_LOG_EVERY) >= INTERNAL_LOG_EVERY:
            self._internal_logged[platform] = now
            log.error("internal error; the account stays watched", platform=platform,
                      where=where, error=type(exc).__name__, exc_info=exc)
        return Observation.failed(time.time(), ErrorKind.INTERNAL,
                                  f"internal error in {where}: {type(exc).__name__}")
