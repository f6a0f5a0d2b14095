"""Every Prometheus metric the monitor exports. Names are a public API (docs/architecture.md).

Per-account series are not stored as client-library children (seven children per account
would cost hundreds of MB at 100k accounts): :func:`render_accounts` writes them at scrape
time straight from the live account table, like kube-state-metrics does, beside the
aggregates of the same pass (accounts per platform, state and protected flag; blind ones;
the oldest probe), which are always there. ``monitor.metrics.per_account`` says whose
per-account series are written: every account's (`all`), the protected ones' (`protected`),
nobody's (`none`), or `auto`: `all` up to :data:`AUTO_ALL_UP_TO` watched accounts and
`protected` above. The rules and dashboards fall back to the aggregates where accounts are
not named (config/prometheus/account-rules.yml). bench/scrape.py measures a scrape.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.model import AccountKey, AccountState, Observation, State
from monitor.probecounts import ProbeCounts

if TYPE_CHECKING:
    from monitor.reports import PlatformSums
    from monitor.store import Store

# Outages last from seconds (a glitch) to days (a suspension under appeal).
OUTAGE_BUCKETS = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 86400, 259200, 604800)
PROBE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


@dataclass(slots=True)
class AccountView:
    """What the collector needs to know about one account."""

    key: AccountKey
    protected: bool
    state: AccountState
    last_probe_at: float | None = None  # wall clock of the last answer (any result)
    last_error: Observation | None = None  # the newest error answer, for the API
    blind_reason: str | None = None  # why it is blind: an error kind, or "not probed: ..."
    # "config", or "api": added through the API (monitor.additions); "" not known
    source: str = "config"
    # When the account began to be watched, as the availability gauges' refresh settled it
    # (reports.PlatformSums): NaN until then, -inf for "before anything kept". Written
    # only by that refresh; a cache, so not part of the view's equality.
    watched_from: float = field(default=math.nan, compare=False, repr=False)


def _escape(value: str) -> str:
    """Label-value escaping of the Prometheus text format."""
    if "\\" in value or "\"" in value or "\n" in value:
        return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")
    return value


# ------------------------------------------------------------------ per-account series

# `auto` exports every account's series up to this many watched accounts (this process's
# watchlist, after sharding) and only the protected accounts' above. At 10,000 accounts
# `all` is ~20,000 per-account series and ~1.5 MB a scrape (bench/scrape.py): a
# middling target for one Prometheus. Each 10,000 more cost Prometheus another ~20,000
# active series (memory for as long as they are in the head block, two hours at least,
# whether they change or not) to name accounts whose vanish is a warning the built-in
# notifier already sends and the status UI lists; the counts (`accmon_accounts`) stay.
# The protected accounts, the ones that page, keep their names in every mode but `none`.
AUTO_ALL_UP_TO = 10_000


def exported_flags(mode: str, watched: int) -> tuple[bool, ...]:
    """The `protected` values whose accounts get per-account series under ``mode``."""
    if mode == "auto":
        mode = "all" if watched <= AUTO_ALL_UP_TO else "protected"
    return {"all": (False, True), "protected": (True,)}.get(mode, ())


# (name, type, help) of the per-account families, in exposition order. Each account has
# `up` (once known) and `state` (its current state only); `outage_seconds` only while it is
# down and `blind` only while it is blind. About 145 bytes per account, so 100k accounts
# are ~15 MB a scrape (the text format repeats every label on every line: six series an
# account would be ~60 MB).
ACCOUNT_FAMILIES = (
    ("accmon_account_up", "gauge",
     "1 if the account is present, 0 if down or suspect; absent while unknown"),
    ("accmon_account_state", "gauge",
     "1 on the account's current state (the other states have no sample)"),
    ("accmon_account_outage_seconds", "gauge",
     "Age of the current outage (from the first absent sighting); only while down"),
    ("accmon_account_blind", "gauge",
     "1 while only errors have been seen beyond the staleness bound; no sample otherwise"),
)
# Always there, whatever monitor.metrics.per_account says: dashboards and rules work on them.
AGGREGATE_FAMILIES = (
    ("accmon_accounts", "gauge",
     "Watched accounts by platform, state and protected flag (every combination, 0 too)"),
    ("accmon_accounts_blind", "gauge",
     "Blind accounts (only errors beyond the staleness bound) by platform and protected flag"),
    ("accmon_accounts_oldest_probe_timestamp_seconds", "gauge",
     "When the least recently probed account of the platform was last probed (accounts "
     "not probed yet left out)"),
    ("accmon_account_series_exported", "gauge",
     "1 if accounts with this protected flag have per-account series "
     "(monitor.metrics.per_account), else 0: the rules fall back to the counts"),
)
_STATES = tuple(State)
_FLAG = {False: "false", True: "true"}
_UP_OPEN, _STATE_OPEN, _OUTAGE_OPEN, _BLIND_OPEN = (f"{name}{{" for name, _k, _t in
                                                    ACCOUNT_FAMILIES)
# The ends of the per-account lines, after the account's labels: _UP[protected][is up],
# _STATE[state], _BLIND[protected] (tuples indexed by a bool: no hashing per line).
_UP = tuple(tuple(f',protected="{_FLAG[prot]}"}} {"1.0" if up else "0.0"}\n'
                  for up in (False, True)) for prot in (False, True))
_STATE = {s: f',state="{s.value}"}} 1.0\n' for s in State}
_BLIND = tuple(f',protected="{_FLAG[prot]}"}} 1.0\n' for prot in (False, True))


def _family(name: str, kind: str, text: str) -> str:
    return f"# HELP {name} {text}\n# TYPE {name} {kind}\n"


@dataclass(slots=True)
class _Scrape:
    """One pass over the live table: the counts of every account, and the finished lines
    of the named ones (strings only: no object per account for the collector to walk)."""

    tally: dict[tuple[str, bool, State], int] = field(default_factory=dict)
    blind: dict[tuple[str, bool], int] = field(default_factory=dict)
    oldest: tuple[dict[str, float], dict[str, float]] = field(
        default_factory=lambda: ({}, {}))  # [protected][platform] -> oldest last probe
    up: list[str] = field(default_factory=list)
    state: list[str] = field(default_factory=list)
    down: list[tuple[str, float]] = field(default_factory=list)  # (labels, first absent)
    blinded: list[str] = field(default_factory=list)


def _read(views: Iterable[AccountView], named: tuple[bool, ...]) -> _Scrape:
    """Counts of every account; the lines of the ones with series of their own. Each
    account's (immutable) state is read once, so the scrape agrees with itself while the
    table changes under the chunks being sent. The hottest loop of a scrape (100k
    accounts a pass): names are bound locally and a handle is escaped only when needed."""
    seen = _Scrape()
    tally, blind, oldest = seen.tally, seen.blind, seen.oldest
    ups, states, down, blinded = seen.up, seen.state, seen.down, seen.blinded
    up_open, state_open, blind_open = _UP_OPEN, _STATE_OPEN, _BLIND_OPEN
    up_end, state_end, blind_end = _UP, _STATE, _BLIND
    st_up, st_unknown, st_down, inf = State.UP, State.UNKNOWN, State.DOWN, math.inf
    escaped: dict[str, str] = {}
    name_all, name_protected = False in named, True in named
    for view in views:
        key, st, prot = view.key, view.state, view.protected
        platform, current = key.platform, st.state
        counted = (platform, prot, current)
        tally[counted] = tally.get(counted, 0) + 1
        if st.blind:
            group = (platform, prot)
            blind[group] = blind.get(group, 0) + 1
        at = view.last_probe_at
        if at is not None:
            probed = oldest[prot]
            if at < probed.get(platform, inf):
                probed[platform] = at
        if not (name_all or (prot and name_protected)):
            continue
        label = escaped.get(platform)
        if label is None:
            label = escaped[platform] = _escape(platform)
        handle = key.handle
        if "\"" in handle or "\\" in handle or "\n" in handle:
            handle = _escape(handle)
        if current is not st_unknown:
            ups.append(f'{up_open}platform="{label}",account="{handle}"'
                       f'{up_end[prot][current is st_up]}')
        states.append(f'{state_open}platform="{label}",account="{handle}"{state_end[current]}')
        if current is st_down and st.first_absent_at is not None:
            down.append((f'platform="{label}",account="{handle}"', st.first_absent_at))
        if st.blind:
            blinded.append(f'{blind_open}platform="{label}",account="{handle}"{blind_end[prot]}')
    return seen


def _aggregates(seen: _Scrape, platforms: Iterable[str], named: tuple[bool, ...]) -> str:
    every = sorted(set(platforms) | {p for p, _prot, _st in seen.tally})
    oldest = sorted((p, prot, at) for prot in (False, True)
                    for p, at in seen.oldest[prot].items())
    out = []
    for (name, kind, text), lines in zip(AGGREGATE_FAMILIES, (
            (f'{{platform="{_escape(p)}",state="{s.value}",protected="{_FLAG[prot]}"}} '
             f'{float(seen.tally.get((p, prot, s), 0))!r}'
             for p in every for s in _STATES for prot in (False, True)),
            (f'{{platform="{_escape(p)}",protected="{_FLAG[prot]}"}} '
             f'{float(seen.blind.get((p, prot), 0))!r}'
             for p in every for prot in (False, True)),
            (f'{{platform="{_escape(p)}",protected="{_FLAG[prot]}"}} {at!r}'
             for p, prot, at in oldest),
            (f'{{protected="{_FLAG[prot]}"}} {"1.0" if prot in named else "0.0"}'
             for prot in (False, True))), strict=True):
        out.append(_family(name, kind, text))
        out.extend(f"{name}{line}\n" for line in lines)
    return "".join(out)


def render_accounts(views: Iterable[AccountView], now: float, *, per_account: str = "all",
                    platforms: Iterable[str] = (), chunk: int = 5000) -> Iterator[bytes]:
    """The account families in text format 0.0.4, streamed in chunks: the aggregates of
    every account, then the per-account series ``per_account`` names (``platforms``: the
    configured ones, so a platform without accounts still counts 0).

    Written by hand rather than through client-library Metric objects: at 100k accounts
    those would be hundreds of thousands of sample objects built for every scrape.
    """
    listed = list(views)  # the table may change while the scrape is streamed
    named = exported_flags(per_account, len(listed))
    seen = _read(listed, named)
    yield _aggregates(seen, platforms, named).encode()
    ages = [f"{_OUTAGE_OPEN}{labels}}} {max(0.0, now - since)!r}\n" for labels, since in seen.down]
    for (name, kind, text), lines in zip(
            ACCOUNT_FAMILIES, (seen.up, seen.state, ages, seen.blinded), strict=True):
        head = _family(name, kind, text)
        for start in range(0, max(len(lines), 1), chunk):
            yield (head + "".join(lines[start:start + chunk])).encode()
            head = ""


class StreamCollector(Collector):
    """Push-stream health, read from the consumers at scrape time."""

    def __init__(self, streams: Callable[[], Mapping[str, Any]]):
        self.streams = streams

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        connected = GaugeMetricFamily("accmon_stream_connected",
                                      "1 while the push stream's connection is up",
                                      labels=["stream"])
        lag = GaugeMetricFamily("accmon_stream_lag_seconds",
                                "Now minus the time of the newest event received",
                                labels=["stream"])
        events = CounterMetricFamily("accmon_stream_events", "Events received by kind",
                                     labels=["stream", "kind"])
        reconnects = CounterMetricFamily("accmon_stream_reconnects", "Reconnections",
                                         labels=["stream"])
        for name, consumer in self.streams().items():
            connected.add_metric([name], 1.0 if consumer.connected else 0.0)
            if consumer.lag_seconds is not None:
                lag.add_metric([name], consumer.lag_seconds)
            for kind, count in consumer.events.items():
                events.add_metric([name, kind], count)
            reconnects.add_metric([name], consumer.reconnects)
        yield from (connected, lag, events, reconnects)


class Metrics:
    """The process's metrics, on their own registry (tests run several monitors at once)."""

    def __init__(self, accounts: Callable[[], Iterable[AccountView]],
                 streams: Callable[[], Mapping[str, Any]] = dict,
                 per_account: Callable[[], str] | str = "auto"):
        """``per_account``: monitor.metrics.per_account, or a function returning the live
        config's (read at every scrape, so a reload applies it)."""
        # `_created` series double what every counter and histogram child costs Prometheus
        # and nothing here reads them. The switch is process-wide: the exporter is ours.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.accounts = accounts
        self.per_account = per_account if callable(per_account) else lambda: per_account
        self.platforms: tuple[str, ...] = ()  # configured, so one without accounts counts 0
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        r.register(StreamCollector(streams))
        self.build_info = Gauge("accmon_build_info", "Always 1; the version label says which",
                                ["version"], registry=r)
        self.build_info.labels(__version__).set(1)
        # accmon_probes_total, accmon_probe_errors_total, accmon_probe_duration_seconds: the
        # series every answer moves, kept as plain numbers (monitor.probecounts).
        self.probe_counts = ProbeCounts(PROBE_BUCKETS)
        r.register(self.probe_counts)
        self.outages = Counter("accmon_outages", "Confirmed outages (accounts gone down)",
                               ["platform", "reason"], registry=r)
        self.outage_duration = Histogram("accmon_outage_duration_seconds",
                                         "Duration of finished outages (first absent to first "
                                         "present sighting)", ["platform", "protected"],
                                         buckets=OUTAGE_BUCKETS, registry=r)
        self.notifications = Counter("accmon_notifications", "Notification deliveries",
                                     ["notifier", "action", "outcome"], registry=r)
        self.outbox_pending = Gauge("accmon_outbox_pending", "Notifications waiting in the outbox",
                                    ["notifier"], registry=r)
        self.outbox_oldest_pending = Gauge("accmon_outbox_oldest_pending_seconds",
                                           "Age of the oldest undelivered notification",
                                           ["notifier"], registry=r)
        self.platform_anomaly = Gauge("accmon_platform_anomaly",
                                      "1 while a platform-wide anomaly holds pages",
                                      ["platform"], registry=r)
        self.accounts_watched = Gauge("accmon_accounts_watched", "Accounts on the watchlist",
                                      ["platform"], registry=r)
        self._transitions: dict[tuple[str, State, State], Any] = {}
        self.transitions = Counter("accmon_transitions", "State transitions",
                                   ["platform", "from_state", "to_state"], registry=r)
        self.config_reloads = Counter("accmon_config_reloads", "Config reload attempts",
                                      ["outcome"], registry=r)
        self.ratelimit_remaining = Gauge("accmon_ratelimit_remaining",
                                         "Requests left in the platform's current window, as "
                                         "its headers say", ["platform"], registry=r)
        self.ratelimit_throttled = Counter("accmon_ratelimit_throttled_seconds",
                                           "Time a platform's probes were paused for its rate "
                                           "limit", ["platform"], registry=r)
        self.scheduler_queue = Gauge("accmon_scheduler_queue_depth",
                                     "Accounts due but waiting for a worker or rate budget",
                                     ["platform"], registry=r)
        self.scheduler_lag = Gauge("accmon_scheduler_lag_seconds",
                                   "How far past its due time the most overdue account is",
                                   ["platform"], registry=r)
        self.accounts_overdue = Gauge("accmon_accounts_overdue",
                                      "Accounts more than a second past their due time",
                                      ["platform"], registry=r)
        self.scheduler_interval = Gauge("accmon_scheduler_interval_seconds",
                                        "The platform's shortest configured probe interval",
                                        ["platform"], registry=r)
        self.store_write_failures = Counter("accmon_store_write_failures",
                                            "Writes the state file refused (locked, full, I/O "
                                            "error); each is kept and retried", registry=r)
        self.monitor_blind = Gauge("accmon_monitor_blind",
                                   "1 while most accounts are blind at once (our own trouble)",
                                   registry=r)
        self.silences = Gauge("accmon_silences", "Silences by state (active, pending, "
                              "expired and still kept)", ["state"], registry=r)
        self.maintenance_active = Gauge("accmon_maintenance_window_active",
                                        "1 while a maintenance window from the config is on",
                                        ["window"], registry=r)
        self.notifications_suppressed = Counter(
            "accmon_notifications_suppressed", "Notifications kept back or dropped because a "
            "silence or maintenance window covered them", ["reason", "kind"], registry=r)
        self.pruned_rows = Counter("accmon_history_pruned_rows", "Rows deleted from the state "
                                   "file by retention, by table", ["table"], registry=r)
        self.quorum_checks = Counter("accmon_quorum_checks", "Vanish pages put to the other "
                                     "vantages, by verdict (page, disagree, hold)",
                                     ["platform", "outcome"], registry=r)
        self.peer_requests = Counter("accmon_peer_requests", "Fresh probes asked of peers, "
                                     "by outcome (vote, error)", ["peer", "outcome"],
                                     registry=r)
        self.peer_probes_served = Counter("accmon_peer_probes_served", "Fresh probes done "
                                          "for peers, by outcome", ["outcome"], registry=r)
        self.vantage_disagreement = Gauge(
            "accmon_vantage_disagreement", "Accounts one vantage sees gone while another "
            "sees them present (no page while they disagree); the scrape adds `vantage`",
            ["platform", "gone_from", "present_from"], registry=r)
        self.acknowledgements = Counter("accmon_acknowledgements",
                                        "Outages acknowledged through the API or CLI",
                                        registry=r)
        self.heartbeats = Counter("accmon_heartbeats", "Dead-man's-switch pings by outcome",
                                  ["outcome"], registry=r)
        self.availability_lower = Gauge(
            "accmon_availability_lower_ratio", "A platform's availability over the window, "
            "lower bound: every second an account may have been gone counts as down (the "
            "monitor's own gaps too); refreshed every minute", ["platform", "window"],
            registry=r)
        self.availability_upper = Gauge(
            "accmon_availability_upper_ratio", "A platform's availability over the window, "
            "upper bound: only the seconds an account was certainly gone count as down; "
            "refreshed every minute", ["platform", "window"], registry=r)

    def watchlist(self, counts: Mapping[str, int], intervals: Mapping[str, float]) -> None:
        """Accounts watched and the shortest interval, per platform (after each config)."""
        self.platforms = tuple(counts)
        self.accounts_watched.clear()
        for name, count in counts.items():
            self.accounts_watched.labels(name).set(count)
        self.scheduler_interval.clear()
        for name, interval in intervals.items():
            self.scheduler_interval.labels(name).set(interval)

    def scheduling(self, queued: Mapping[str, int],
                   lag: Mapping[str, tuple[float, int]]) -> None:
        """The scheduler's self-watch gauges, per platform (every tick)."""
        for name, depth in queued.items():
            self.scheduler_queue.labels(name).set(depth)
        for name, (worst, overdue) in lag.items():
            self.scheduler_lag.labels(name).set(worst)
            self.accounts_overdue.labels(name).set(overdue)

    # What refresh_availability carries from one refresh to the next; made at the first.
    _availability_sums: PlatformSums | None = None

    def refresh_availability(self, store: Store,
                             accounts: Iterable[AccountView] | Iterable[AccountKey],
                             now: float, *,
                             still_absent_at: Mapping[AccountKey, float] | None = None,
                             pruned_through: float | None = None) -> None:
        """Set the per-platform availability gauges from the state file, once a minute from
        a background task (never per scrape). ``accounts``: the live views, which keep
        their watch starts, so a refresh costs little more than the accounts with outages
        (reports.PlatformSums); bare keys (a one-off) are read afresh each time.
        ``pruned_through``: transitions from before it may have been pruned (None: none
        were). A platform with nothing observed in a window has no sample: no data is not
        100 %."""
        from monitor import reports

        listed: list[Any] = list(accounts)
        if listed and isinstance(listed[0], AccountKey):
            # (source unknown: each start is read, as for an account added through the API)
            listed = [AccountView(key, False, AccountState(), source="")
                      for key in dict.fromkeys(listed)]
        if self._availability_sums is None:
            self._availability_sums = reports.PlatformSums()
        figures = self._availability_sums.refresh(store, listed, now,
                                                  still_absent_at=still_absent_at,
                                                  pruned_through=pruned_through)
        self.availability_lower.clear()
        self.availability_upper.clear()
        for platform, by_window in figures.items():
            for window, a in by_window.items():
                if a.lower is not None:
                    self.availability_lower.labels(platform, window).set(a.lower)
                if a.upper is not None:
                    self.availability_upper.labels(platform, window).set(a.upper)

    def exposition(self, now: float | None = None) -> Iterator[bytes]:
        """The whole /metrics body: client-library metrics, then the per-account families."""
        yield generate_latest(self.registry)
        yield from render_accounts(self.accounts(), time.time() if now is None else now,
                                   per_account=self.per_account(), platforms=self.platforms)

    def transition(self, platform: str, old: State, new: State) -> None:
        """Count one state transition (its counter child looked up once: ``labels()``
        costs ~5 us, and a fresh watchlist makes one transition per account)."""
        child = self._transitions.get((platform, old, new))
        if child is None:
            child = self._transitions[(platform, old, new)] = self.transitions.labels(
                platform, old.value, new.value)
        child.inc()

    def observed(self, platform: str, obs: Observation, *, timed: bool = True) -> None:
        """Count one answer; its latency goes to the duration histogram unless it was no
        request (``timed=False``: a stream event)."""
        self.probe_counts.observed(platform, obs, timed=timed)
