"""Every Prometheus metric the monitor exports. Names are a public API (docs/architecture.md).

Per-account series are not stored as client-library children (seven children per account
would cost hundreds of MB at 100k accounts): :func:`render_accounts` writes them at scrape
time straight from the live account table, like kube-state-metrics does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.model import AccountKey, AccountState, Observation, Result, State

if TYPE_CHECKING:
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


def _escape(value: str) -> str:
    """Label-value escaping of the Prometheus text format."""
    return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")


# (name, type, help) of the per-account families, in exposition order.
ACCOUNT_FAMILIES = (
    ("accmon_account_up", "gauge",
     "1 if the account is present, 0 if down or suspect; absent while unknown"),
    ("accmon_account_state", "gauge", "State set: 1 on the account's current state"),
    ("accmon_account_outage_seconds", "gauge",
     "Age of the current outage (from the first absent sighting); 0 when up"),
    ("accmon_account_last_probe_timestamp_seconds", "gauge",
     "When the account was last probed (any result)"),
    ("accmon_account_blind", "gauge",
     "1 while only errors have been seen beyond the staleness bound"),
)


def render_accounts(views: Iterable[AccountView], now: float,
                    chunk: int = 2000) -> Iterator[bytes]:
    """The per-account families in text format 0.0.4, streamed in chunks.

    Written by hand rather than through client-library Metric objects: at 100k accounts
    those would be ~800k sample objects (hundreds of MB) built for every scrape.
    """
    rows = [(f'platform="{_escape(v.key.platform)}",account="{_escape(v.key.handle)}"', v)
            for v in views]
    states = tuple(State)
    for name, kind, text in ACCOUNT_FAMILIES:
        out = [f"# HELP {name} {text}\n# TYPE {name} {kind}\n"]
        for i, (labels, view) in enumerate(rows, 1):
            st = view.state
            if name == "accmon_account_up":
                if st.state is not State.UNKNOWN:
                    protected = "true" if view.protected else "false"
                    value = "1.0" if st.state is State.UP else "0.0"
                    out.append(f'{name}{{{labels},protected="{protected}"}} {value}\n')
            elif name == "accmon_account_state":
                out.extend(f'{name}{{{labels},state="{s.value}"}} '
                           f'{"1.0" if st.state is s else "0.0"}\n' for s in states)
            elif name == "accmon_account_outage_seconds":
                age = 0.0
                if st.state is State.DOWN and st.first_absent_at is not None:
                    age = max(0.0, now - st.first_absent_at)
                out.append(f"{name}{{{labels}}} {age!r}\n")
            elif name == "accmon_account_last_probe_timestamp_seconds":
                if view.last_probe_at is not None:
                    out.append(f"{name}{{{labels}}} {view.last_probe_at!r}\n")
            else:
                protected = "true" if view.protected else "false"
                out.append(f'{name}{{{labels},protected="{protected}"}} '
                           f'{"1.0" if st.blind else "0.0"}\n')
            if i % chunk == 0:
                yield "".join(out).encode()
                out = []
        if out:
            yield "".join(out).encode()


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
                 streams: Callable[[], Mapping[str, Any]] = dict):
        self.accounts = accounts
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        r.register(StreamCollector(streams))
        self.build_info = Gauge("accmon_build_info", "Always 1; the version label says which",
                                ["version"], registry=r)
        self.build_info.labels(__version__).set(1)
        self.probes = Counter("accmon_probes", "Probe answers by classification",
                              ["platform", "result"], registry=r)
        self.probe_errors = Counter("accmon_probe_errors", "Probe errors by kind",
                                    ["platform", "kind"], registry=r)
        self.probe_duration = Histogram("accmon_probe_duration_seconds",
                                        "Time from request to classified answer", ["platform"],
                                        buckets=PROBE_BUCKETS, registry=r)
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
        self._children: dict[tuple[str, Result], tuple[Any, Any]] = {}
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

    def refresh_availability(self, store: Store, keys: Iterable[AccountKey], now: float, *,
                             still_absent_at: Mapping[AccountKey, float] | None = None
                             ) -> None:
        """Set the per-platform availability gauges from the state file (a few hundred ms
        for 10,000 accounts, so once a minute from a background task, never per scrape).
        A platform with nothing observed in a window has no sample: no data is not 100 %."""
        from monitor import reports

        report = reports.availability(store, keys, now, still_absent_at=still_absent_at)
        self.availability_lower.clear()
        self.availability_upper.clear()
        for row in report["platforms"]:
            for window, figures in row["availability"].items():
                if figures["lower"] is not None:
                    self.availability_lower.labels(row["platform"], window).set(
                        figures["lower"])
                if figures["upper"] is not None:
                    self.availability_upper.labels(row["platform"], window).set(
                        figures["upper"])

    def exposition(self, now: float | None = None) -> Iterator[bytes]:
        """The whole /metrics body: client-library metrics, then the per-account families."""
        yield generate_latest(self.registry)
        yield from render_accounts(self.accounts(), time.time() if now is None else now)

    def observed(self, platform: str, obs: Observation, *, timed: bool = True) -> None:
        """Count one answer (the hot path: label children are cached); its latency goes to
        the duration histogram unless it was no request (``timed=False``: a stream event)."""
        cached = self._children.get((platform, obs.result))
        if cached is None:
            cached = (self.probes.labels(platform, obs.result.value),
                      self.probe_duration.labels(platform))
            self._children[(platform, obs.result)] = cached
        cached[0].inc()
        if timed:
            cached[1].observe(obs.latency)
        if obs.result is Result.ERROR and obs.error is not None:
            self.probe_errors.labels(platform, obs.error.value).inc()
