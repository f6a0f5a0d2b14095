"""Can each platform's budget keep up with its watchlist? A pure estimate from the config.

A platform lane makes at most ``rate_per_second`` requests a second (its token bucket) and
at most ``concurrency / latency`` (its workers, each waiting for one answer at a time).
The watchlist needs, per platform::

    polls     = sum(1 / interval of each account) / batch size
    confirms  = ceil(suspects / batch size) / shortest confirm_interval
    suspects  = max(1, SUSPECT_SHARE x accounts)

Assumptions, stated because the numbers are only as good as they are:

* **Batching** comes from the probe class (a :class:`~monitor.probes.BatchProbe`'s
  ``batch_size``: X looks up 100 ids per request, Bluesky 25 DIDs; ``probe: http`` and the
  rest one account per request), and assumes every
  account's id is known, as it is after its first probe. Batches fill exactly when the
  budget is short, the case this estimate is for.
* **Confirm checks**: an account that looks absent is re-checked every ``confirm_interval``
  until it is down or back. We budget for :data:`SUSPECT_SHARE` (0.1 %) of the accounts
  (at least one) confirming at any moment at the shortest ``confirm_interval``, batched
  like the rest (at least one request); a mass vanish needs more, briefly, and is one
  platform anomaly page anyway.
* **Latency**: :data:`ASSUMED_LATENCY` (0.5 s) per request, a pessimistic typical answer
  time of a public API (never more than the platform's timeout). A platform answering in
  its full timeout would make far fewer requests; ``accmon_probe_duration_seconds`` shows
  the real figure.
* **Utilisation**: a lane is "ok" only below :data:`MAX_UTILISATION` (80 %) of what it can
  do, leaving room for 429 pauses, jitter and re-checks.

A config that cannot keep up is valid but dangerous (accounts are probed late and queue
up): ``check-config`` prints a WARNING with the fix and still exits 0; the monitor logs the
same at start-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from monitor import sharding
from monitor.config import Config
from monitor.sharding import Shard

ASSUMED_LATENCY = 0.5  # seconds per request
SUSPECT_SHARE = 0.001  # of a platform's accounts, confirming at any moment
MAX_UTILISATION = 0.8  # of a lane's capacity; above it the lane is "short"
MAX_CONCURRENCY = 1024  # PlatformConfig.concurrency's upper bound


@dataclass(frozen=True, slots=True)
class PlatformLoad:
    """What one platform's watchlist needs against what its lane can do (requests/s)."""

    platform: str
    accounts: int
    batch_size: int
    poll_rps: float  # accounts / interval / batch
    confirm_rps: float  # the allowance for confirm checks
    rate_per_second: float  # the configured budget
    concurrency: int
    latency: float  # assumed seconds per request
    mean_interval: float  # accounts / sum(1 / interval); 0 without accounts
    shard: Shard | None = None

    @property
    def needed_rps(self) -> float:
        return self.poll_rps + self.confirm_rps

    @property
    def concurrency_rps(self) -> float:
        """What ``concurrency`` workers can do at the assumed latency."""
        return self.concurrency / self.latency

    @property
    def capacity_rps(self) -> float:
        return min(self.rate_per_second, self.concurrency_rps)

    @property
    def utilisation(self) -> float:
        return self.needed_rps / self.capacity_rps

    @property
    def headroom(self) -> float:
        """The share of the capacity left over; negative when short."""
        return 1.0 - self.utilisation

    @property
    def ok(self) -> bool:
        return self.utilisation <= MAX_UTILISATION

    @property
    def limited_by(self) -> str:
        return "rate_per_second" if self.rate_per_second <= self.concurrency_rps \
            else "concurrency"

    def fixes(self) -> list[str]:
        """Each way out, with the number that would do it (empty when ok)."""
        if self.ok:
            return []
        where = f"platforms.{self.platform}"
        target = self.needed_rps / MAX_UTILISATION
        found = []
        raise_to = []
        if self.rate_per_second < target:
            raise_to.append(f"{where}.rate_per_second to ≥ {_at_least(target)}")
        workers = math.ceil(target * self.latency)
        if self.concurrency_rps < target and workers <= MAX_CONCURRENCY:
            raise_to.append(f"{where}.concurrency to ≥ {workers}")
        if raise_to and workers <= MAX_CONCURRENCY:
            found.append("raise " + " and ".join(raise_to) + " (if the platform allows it)")
        room_for_polls = MAX_UTILISATION * self.capacity_rps - self.confirm_rps
        if room_for_polls > 0 and self.poll_rps > 0:
            longer = self.mean_interval * self.poll_rps / room_for_polls
            found.append(f"lengthen the interval to ≥ {_duration(longer)}")
        shards = math.ceil(self.needed_rps / (MAX_UTILISATION * self.capacity_rps))
        total = shards * (self.shard.count if self.shard else 1)
        found.append(f"shard the watchlist over ≥ {total} replicas (--shard I/{total}), each "
                     "with its own budget (its own IP or token)")
        return found

    def row(self) -> str:
        """One line of the capacity table."""
        verdict = "ok" if self.ok else "SHORT"
        return (f"  {self.platform:<20} {self.accounts:>8} {self.batch_size:>5} "
                f"{_num(self.needed_rps):>9} {_num(self.rate_per_second):>9} "
                f"{_num(self.concurrency_rps):>9} {self.utilisation:>6.0%}  {verdict}")

    def render(self) -> str:
        """A sentence with the numbers and, when short, the fix."""
        where = f"platform {self.platform}" + (f" (shard {self.shard})" if self.shard else "")
        text = (f"{where}: {self.accounts} account(s) need {_num(self.needed_rps)} req/s "
                f"({_num(self.poll_rps)} polling"
                + (f" in batches of {self.batch_size}" if self.batch_size > 1 else "")
                + f" + {_num(self.confirm_rps)} confirm checks); it can make "
                f"{_num(self.capacity_rps)} req/s (rate_per_second {_num(self.rate_per_second)}"
                f", concurrency {self.concurrency} at ~{self.latency:g} s each = "
                f"{_num(self.concurrency_rps)}/s)")
        if self.ok:
            return f"{text}: ok, {self.headroom:.0%} headroom"
        if self.utilisation > 1:
            verdict = (f"it cannot keep up ({self.utilisation:.0%} of it): accounts are probed "
                       "late and queue up")
        else:
            verdict = (f"{self.utilisation:.0%} of it, above {MAX_UTILISATION:.0%}: a 429 pause "
                       "or a burst of confirm checks makes accounts late")
        return f"{text}; {verdict}. Fix: " + "; or ".join(self.fixes())


HEADER = (f"  {'platform':<20} {'accounts':>8} {'batch':>5} {'needed/s':>9} {'budget/s':>9} "
          f"{'workers/s':>9} {'load':>6}")


def estimate(config: Config, shard: Shard | None = None, *,
             latency: float = ASSUMED_LATENCY) -> list[PlatformLoad]:
    """One :class:`PlatformLoad` per configured platform, in config order.

    ``shard``: count only the accounts this replica owns (default: ``monitor.shard``).
    Pure: reads the config and the probe registry's batch sizes, nothing else.
    """
    from monitor.probes import PROBES, batch_size_of  # they import config; imported late

    shard = shard if shard is not None else config.monitor.shard
    inverse: dict[str, float] = dict.fromkeys(config.platforms, 0.0)
    counts: dict[str, int] = dict.fromkeys(config.platforms, 0)
    quickest: dict[str, float] = {}
    for account in config.accounts:
        if account.platform not in counts:
            continue
        if shard is not None and not sharding.owns(shard, account.key):
            continue
        policy = config.policy(account)
        counts[account.platform] += 1
        inverse[account.platform] += 1.0 / policy.interval
        quickest[account.platform] = min(quickest.get(account.platform, math.inf),
                                         policy.confirm_interval)
    loads = []
    for name, platform in config.platforms.items():
        probe = PROBES.get(platform.probe or name)
        batch = batch_size_of(probe) if probe is not None else 1
        accounts = counts[name]
        suspects = max(1.0, SUSPECT_SHARE * accounts) if accounts else 0.0
        confirm = math.ceil(suspects / batch) / quickest[name] if accounts else 0.0
        loads.append(PlatformLoad(
            platform=name, accounts=accounts, batch_size=batch,
            poll_rps=inverse[name] / batch, confirm_rps=confirm,
            rate_per_second=platform.rate_per_second, concurrency=platform.concurrency,
            latency=min(latency, config.platform_timeout(name)),
            mean_interval=accounts / inverse[name] if accounts else 0.0, shard=shard))
    return loads


def _num(value: float) -> str:
    """A rate for people: 0.133, 2.5, 41.7, 1,250."""
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _at_least(value: float) -> str:
    """``value`` rounded *up* to 3 significant digits, as a YAML number: a suggested budget
    must be enough, not almost enough."""
    decimals = 2 - math.floor(math.log10(value))
    scale = 10.0 ** decimals
    rounded = math.ceil(value * scale - 1e-9) / scale
    text = f"{rounded:.{max(decimals, 0)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _duration(seconds: float) -> str:
    """Rounded up, in the config's own syntax: 45s, 7m, 2h5m, 3d2h."""
    if seconds <= 60:
        return f"{max(1, math.ceil(seconds))}s"
    minutes = math.ceil(seconds / 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        hours += 1 if minutes else 0
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    return f"{minutes}m"
