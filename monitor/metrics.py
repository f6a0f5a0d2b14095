"""Every Prometheus metric the monitor exports. Names are a public API (see DESIGN.md).

Per-account series are not stored as client-library children (seven children per account
would cost hundreds of MB at 100k accounts); a collector renders them at scrape time from
the live account table, like kube-state-metrics does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.model import AccountKey, AccountState, Observation, Result, State

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


class AccountCollector(Collector):
    """Renders the per-account gauges from the live account table at scrape time."""

    def __init__(self, accounts: Callable[[], Iterable[AccountView]],
                 clock: Callable[[], float] = time.time):
        self.accounts = accounts
        self.clock = clock

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: rendered fresh on every scrape

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("accmon_account_up",
                               "1 if the account is present, 0 if down or suspect; absent while "
                               "unknown", labels=["platform", "account", "protected"])
        states = GaugeMetricFamily("accmon_account_state",
                                   "State set: 1 on the account's current state",
                                   labels=["platform", "account", "state"])
        outage = GaugeMetricFamily("accmon_account_outage_seconds",
                                   "Age of the current outage (from the first absent sighting); "
                                   "0 when up", labels=["platform", "account"])
        last = GaugeMetricFamily("accmon_account_last_probe_timestamp_seconds",
                                 "When the account was last probed (any result)",
                                 labels=["platform", "account"])
        blind = GaugeMetricFamily("accmon_account_blind",
                                  "1 while only errors have been seen beyond the staleness bound",
                                  labels=["platform", "account", "protected"])
        now = self.clock()
        all_states = tuple(State)
        for view in self.accounts():
            platform, account = view.key.platform, view.key.handle
            st = view.state
            protected = "true" if view.protected else "false"
            if st.state is not State.UNKNOWN:
                up.add_metric([platform, account, protected], 1.0 if st.state is State.UP else 0.0)
            for s in all_states:
                states.add_metric([platform, account, s.value], 1.0 if st.state is s else 0.0)
            age = 0.0
            if st.state is State.DOWN and st.first_absent_at is not None:
                age = max(0.0, now - st.first_absent_at)
            outage.add_metric([platform, account], age)
            if view.last_probe_at is not None:
                last.add_metric([platform, account], view.last_probe_at)
            blind.add_metric([platform, account, protected], 1.0 if st.blind else 0.0)
        yield from (up, states, outage, last, blind)


class Metrics:
    """The process's metrics, on their own registry (tests run several monitors at once)."""

    def __init__(self, accounts: Callable[[], Iterable[AccountView]]):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.registry.register(AccountCollector(accounts))
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
        self.platform_anomaly = Gauge("accmon_platform_anomaly",
                                      "1 while a platform-wide anomaly holds pages",
                                      ["platform"], registry=r)
        self.accounts_watched = Gauge("accmon_accounts_watched", "Accounts on the watchlist",
                                      ["platform"], registry=r)
        self.transitions = Counter("accmon_transitions", "State transitions",
                                   ["platform", "from_state", "to_state"], registry=r)
        self.config_reloads = Counter("accmon_config_reloads", "Config reload attempts",
                                      ["outcome"], registry=r)
        self.scheduler_queue = Gauge("accmon_scheduler_queue_depth",
                                     "Accounts due but waiting for a worker or rate budget",
                                     ["platform"], registry=r)

    def observed(self, platform: str, obs: Observation) -> None:
        self.probes.labels(platform, obs.result.value).inc()
        if obs.result is Result.ERROR and obs.error is not None:
            self.probe_errors.labels(platform, obs.error.value).inc()
        self.probe_duration.labels(platform).observe(obs.latency)
