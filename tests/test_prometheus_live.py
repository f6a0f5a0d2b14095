"""Every dashboard query and every alert rule, evaluated by a real Prometheus scraping a real
monitor.

A monitor runs in-process against a fake Mastodon with alice present (protected), carol gone
(protected) and dave gone (not protected), once in each mode of monitor.metrics.per_account
(`all` names all three, `protected` alice and carol, `none` nobody). Its live scrape must
pass ``promtool check metrics``. Debian's ``prometheus`` scrapes it every 250 ms on loopback
with both rule files loaded. Then each PromQL expression of each dashboard panel (template
variables substituted) and each rule goes through ``/api/v1/query``: it must parse,
reference only exported metrics, and return data unless the scenario explains why not; the
figures must be the same in every mode, and the vanish alerts must fire in every mode (per
account where the account is named, per platform from the counts where it is not).

A second scenario pages through a loopback PagerDuty that answers 503: the protected account
vanishes, the page waits in the outbox, and Prometheus must fire OutboxStuck (from a copy of
the shipped rules with its 3-minute thresholds cut to seconds), then clear it once the pager
is back and the page delivered.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from monitor.fakes.mastodon import FakeMastodon
from monitor.fakes.pagers import FakePagerDuty
from monitor.model import State
from tests.conftest import (
    free_port,
    mastodon_config,
    running_monitor,
    scrape,
    state_of,
    wait_for,
)
from tests.test_paging import paging_config
from tests.test_prometheus_rules import (
    JOB,
    PROMETHEUS_CONFIG,
    RULE_FILES,
    allowed_series,
    coming_series,
    load_dashboards,
    load_rules,
    metric_names,
    panel_queries,
    require_tool,
    substitute,
    variable_promql,
    variable_queries,
)

pytestmark = pytest.mark.slow

SCRAPE = "250ms"
VALUES = {"datasource": "prometheus", "platform": "masto", "account": "alice|carol|dave",
          "notifier": ".*"}

# Panels that may come back empty in this scenario, and why. Every other query must return
# data. Queries on metrics marked "coming" in EXPORTED may be empty as well.
MAY_BE_EMPTY = {
    ("accmon-overview", "Outage duration in range"):
        "no outage has ended yet: the histogram has no series before the first recovery",
    ("accmon-overview", "p90 outage duration by platform and protection"): "same",
    ("accmon-overview", "Finished outages in range"): "same",
    ("accmon-overview", "Outage duration distribution"): "same",
    ("accmon-overview", "Config reloads"): "no reload happened (no series until the first)",
    ("accmon-probes", "Errors by kind"): "the fake answers without errors",
    ("accmon-probes", "Scheduler queue depth"): "no worker waits at this load (the gauge "
                                                "has no series until the scheduler sets it)",
    ("accmon-probes", "Platform anomaly"): "no anomaly (no series until the first)",
    # The notification pipeline is optional wiring: the counters have no series until a
    # notifier delivered something, the gauges none until a notifier is configured.
    ("accmon-notifications", "Deliveries by outcome"): "no delivery yet",
    ("accmon-notifications", "Delivered by action"): "no delivery yet",
    ("accmon-notifications", "Failure ratio"): "no delivery yet",
    ("accmon-notifications", "Outbox pending"): "no notifier configured",
}
MODES = ("all", "protected", "none")
# The accounts each mode names (has per-account series for).
NAMED = {"all": {"alice", "carol", "dave"}, "protected": {"alice", "carol"}, "none": set()}
PER_ACCOUNT_SERIES = {"accmon_account_up", "accmon_account_state",
                      "accmon_account_outage_seconds", "accmon_account_blind"}
# Each rule's expression in this scenario, per mode: the accounts it returns ("?": a sample
# without an account label, i.e. counted on the platform; empty: must not fire).
RULE_RESULTS = {
    "all": {"ProtectedAccountVanished": {"carol"}, "AccountVanished": {"dave"}},
    "protected": {"ProtectedAccountVanished": {"carol"}, "AccountVanished": {"?"}},
    "none": {"ProtectedAccountVanished": {"?"}, "AccountVanished": {"?"}},
}
for _mode in MODES:
    RULE_RESULTS[_mode]["Watchdog"] = {"?"}  # vector(1): one sample, no labels at all


# ------------------------------------------------------------------ prometheus, for real


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _config(monitor_port: int, rule_files: list[Path] | None = None,
            alertmanager: str | None = None) -> dict[str, Any]:
    """The example prometheus.yml, fast and pointed at the monitor (and an Alertmanager, if
    given) on loopback."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"] = {"scrape_interval": SCRAPE, "scrape_timeout": SCRAPE,
                        "evaluation_interval": SCRAPE}
    config["rule_files"] = [str(p.resolve()) for p in rule_files] if rule_files else [
        str((PROMETHEUS_CONFIG.parent / f).resolve()) for f in config["rule_files"]]
    config.pop("alerting", None)
    if alertmanager:
        config["alerting"] = {"alertmanagers": [{"static_configs": [
            {"targets": [alertmanager.removeprefix("http://")]}]}]}
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == JOB]
    job["static_configs"] = [{"targets": [f"127.0.0.1:{monitor_port}"]}]
    return config


@pytest.fixture
def start_prometheus(tmp_path: Path) -> Iterator[Callable[..., Prometheus]]:
    """Start Debian's prometheus scraping a monitor port; killed when the test ends."""
    binary = require_tool("prometheus")
    started: list[Prometheus] = []

    def start(monitor_port: int, rule_files: list[Path] | None = None,
              alertmanager: str | None = None) -> Prometheus:
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump(_config(monitor_port, rule_files, alertmanager)))
        port = free_port()
        log = tmp_path / "prometheus.log"
        process = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn",
             # An alert sent before the Alertmanager is discovered is dropped; resend it
             # within a second (default: a minute).
             "--rules.alert.resend-delay=1s"],
            stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        started.append(Prometheus(f"http://127.0.0.1:{port}", process, log))
        return started[-1]

    yield start
    for prom in started:
        if prom.process.poll() is None:
            prom.process.send_signal(signal.SIGTERM)
            try:
                prom.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                prom.process.kill()
                prom.process.wait(timeout=5)


async def _get(http: aiohttp.ClientSession, prom: Prometheus, path: str,
               **params: str) -> dict[str, Any]:
    # Queries go as POST forms (long expressions); the other endpoints only answer GET.
    request = http.post(prom.url + path, data=params) if params else http.get(prom.url + path)
    async with request as resp:
        body = await resp.json(content_type=None)
    assert body.get("status") == "success", f"{path} {params}: {body}"
    return body["data"]  # type: ignore[no-any-return]


async def query(http: aiohttp.ClientSession, prom: Prometheus, expr: str) -> list[dict[str, Any]]:
    """An instant query's vector (a scalar comes back as one unlabelled sample)."""
    data = await _get(http, prom, "/api/v1/query", query=expr, time=f"{time.time():.3f}")
    if data["resultType"] in ("scalar", "string"):
        return [{"metric": {}, "value": data["result"]}]
    return data["result"]  # type: ignore[no-any-return]


async def until(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = await check()
        except (aiohttp.ClientError, AssertionError) as exc:
            last = exc
        else:
            if last:
                return last
        await asyncio.sleep(0.25)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def by_account(result: list[dict[str, Any]]) -> dict[str, float]:
    return {s["metric"].get("account", ""): float(s["value"][1]) for s in result}


def value(result: list[dict[str, Any]]) -> float:
    (sample,) = result
    return float(sample["value"][1])


# ------------------------------------------------------------------ the test


@pytest.mark.parametrize("mode", MODES)
async def test_every_dashboard_query_and_rule_on_a_real_prometheus(
        state_file: str, start_prometheus: Callable[[int], Prometheus], mode: str) -> None:
    fake = FakeMastodon({"alice": "present", "carol": "gone", "dave": "gone"})
    async with fake.running() as base:
        config = mastodon_config(base, ["alice", "carol", "dave"], state_path=state_file)
        config = config.replace("handle: dave\n    protected: true",
                                "handle: dave\n    protected: false")
        # A 1 s interval, not the 100 ms one: SchedulerLagging compares the lag with the
        # interval, and a busy machine (a parallel test run) lags 100 ms at times.
        config = config.replace("interval: 100ms", "interval: 1s")
        config = config.replace("monitor:\n", f"monitor:\n  metrics:\n    per_account: {mode}\n", 1)
        async with running_monitor(config) as monitor:
            assert monitor.metrics.per_account() == mode, (
                "monitor/app.py must pass monitor.metrics.per_account to Metrics")
            await wait_for(lambda: (state_of(monitor, "masto", "alice") is State.UP
                                    and state_of(monitor, "masto", "carol") is State.DOWN
                                    and state_of(monitor, "masto", "dave") is State.DOWN),
                           what="alice up, carol and dave down")
            _promtool_checks(await scrape(monitor.port or 0), mode)
            prom = start_prometheus(monitor.port or 0)
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                try:
                    await _scenario(http, prom, mode)
                except BaseException:
                    print("prometheus log:\n" + prom.output())
                    raise


def _promtool_checks(text: str, mode: str) -> None:
    """The live scrape passes `promtool check metrics` (its parser and lint), has no
    `_created` series, and names exactly the mode's accounts."""
    result = subprocess.run([require_tool("promtool"), "check", "metrics"], input=text,
                            capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stdout + result.stderr) == (0, ""), result
    assert "_created" not in text
    named = {line.split('account="')[1].split('"')[0] for line in text.splitlines()
             if line.split("{")[0] in PER_ACCOUNT_SERIES}
    assert named == NAMED[mode]


async def _ready(http: aiohttp.ClientSession, prom: Prometheus) -> None:
    async def ready() -> bool:
        if prom.process.poll() is not None:
            pytest.fail("prometheus exited:\n" + prom.output())
        async with http.get(prom.url + "/-/ready") as resp:
            return resp.status == 200

    await until("prometheus ready", ready)


async def _scenario(http: aiohttp.ClientSession, prom: Prometheus, mode: str) -> None:
    await _ready(http, prom)

    async def scraped_enough() -> bool:
        # Enough samples for rate() over 1m, and the rules evaluated at least once since.
        n = await query(http, prom, f'count_over_time(up{{job="{JOB}"}}[1m])')
        groups = (await _get(http, prom, "/api/v1/rules"))["groups"]
        evaluated = all(not r["lastEvaluation"].startswith("0001")
                        for g in groups for r in g["rules"])
        return bool(n) and value(n) >= 6 and evaluated

    await until("six scrapes and one rule evaluation", scraped_enough)
    assert value(await query(http, prom, f'up{{job="{JOB}"}}')) == 1.0

    allowed, coming = allowed_series(), coming_series()
    results: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    empty: list[str] = []
    checked = 0
    for board in load_dashboards().values():
        for q in panel_queries(board):
            expr = substitute(q.expr, VALUES)
            names = metric_names(expr)
            assert names <= allowed, f"{q}: unexported metrics {names - allowed}"
            result = await query(http, prom, expr)
            results[(q.dashboard, q.panel, q.ref)] = result
            checked += 1
            if not result:
                empty.append(f"{q.dashboard}: {q.panel} [{q.ref}]")
                unnamed = mode == "none" and names & PER_ACCOUNT_SERIES
                assert (q.dashboard, q.panel) in MAY_BE_EMPTY or names & coming or unnamed, (
                    f"{q} returned nothing:\n{expr}")
        for var, raw in variable_queries(board).items():
            result = await query(http, prom, substitute(variable_promql(raw), VALUES))
            labels = {s["metric"].get(var) for s in result}
            if var == "platform":
                assert labels == {"masto"}, (board["uid"], var, result)
            elif var == "account":
                assert labels == NAMED[mode], (board["uid"], var, result)
    assert checked > 40
    unused = {key for key in MAY_BE_EMPTY
              if not any(k[:2] == key for k in results)}
    assert unused == set(), "MAY_BE_EMPTY names panels that do not exist"
    print(f"{checked} dashboard queries; empty in this scenario ({mode}): {empty}")

    _dashboard_says_what_happened(results, mode)
    await _rules_agree(http, prom, mode)


def _dashboard_says_what_happened(results: dict[tuple[str, str, str], list[Any]],
                                  mode: str) -> None:
    def panel(uid: str, title: str, ref: str = "A") -> list[dict[str, Any]]:
        return results[(uid, title, ref)]

    def named(accounts: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in accounts.items() if k in NAMED[mode]}

    ov = "accmon-overview"
    down = panel(ov, "Accounts down now")
    assert set(by_account(down)) == {"carol", "dave"} & NAMED[mode], down
    assert {s["metric"]["account"]: s["metric"]["protected"] for s in down} == named({
        "carol": "true", "dave": "false"})
    assert all(age > 0 for age in by_account(down).values())
    priority = by_account(panel(ov, "Accounts down now", "B"))
    if mode == "all":
        assert priority["carol"] > 1e9 > priority["dave"] > 0, "protected sorts first"
    assert value(panel(ov, "Down, not named")) == 2 - len(set(by_account(down)))
    # The figures are the counts: the same in every mode.
    assert value(panel(ov, "Down (protected)")) == 1
    assert value(panel(ov, "Down")) == 2
    assert value(panel(ov, "Suspect")) == 0
    assert value(panel(ov, "Blind")) == 0
    assert value(panel(ov, "Watched")) == 3
    # The outages began before Prometheus' first scrape: increase() counts from there.
    assert value(panel(ov, "Outages, last 24h")) == 0
    by_state = {s["metric"]["state"]: float(s["value"][1])
                for s in panel(ov, "Accounts by state")}
    assert by_state == {"unknown": 0, "up": 1, "suspect": 0, "down": 2}

    acc = "accmon-account"
    assert by_account(panel(acc, "State")) == named({"alice": 1, "carol": 3, "dave": 3})
    assert by_account(panel(acc, "Now", "A")) == named({"alice": 1, "carol": 3, "dave": 3})
    assert by_account(panel(acc, "Blind")) == named({"alice": 0, "carol": 0, "dave": 0})
    assert by_account(panel(acc, "Now", "D")) == named({"alice": 0, "carol": 0, "dave": 0})
    outage = by_account(panel(acc, "Current outage age"))
    assert set(outage) == NAMED[mode]
    assert outage.get("alice", 0) == 0 and all(outage[a] > 0 for a in outage if a != "alice")
    within = by_account(panel(acc, "Now", "C"))
    assert set(within) == NAMED[mode] and all(0 <= age < 10 for age in within.values())
    (platform_within,) = panel(acc, "Probed within, on the platform")
    assert platform_within["metric"]["platform"] == "masto"
    assert 0 <= float(platform_within["value"][1]) < 10

    pr = "accmon-probes"
    results_seen = {s["metric"]["result"] for s in panel(pr, "Probe answers by result")}
    assert results_seen == {"present", "absent"}
    assert value(panel(pr, "Error ratio")) == 0
    for ref in "ABC":
        (latency,) = panel(pr, "Probe latency", ref)
        assert 0 < float(latency["value"][1]) < 1, latency
    (oldest,) = panel(pr, "Oldest last probe")
    assert 0 <= float(oldest["value"][1]) < 10, oldest


async def _rules_agree(http: aiohttp.ClientSession, prom: Prometheus, mode: str) -> None:
    allowed = allowed_series()
    expected_results = RULE_RESULTS[mode]
    for rule in load_rules():
        assert metric_names(rule.expr) <= allowed, rule.alert
        result = await query(http, prom, rule.expr)
        accounts = {s["metric"].get("account", "?") for s in result}
        assert accounts == expected_results.get(rule.alert, set()), (rule.alert, result)
        if rule.alert.endswith("AccountVanished") and accounts == {"?"}:
            (counted,) = result  # one per platform, its value how many
            assert (counted["metric"]["platform"], value(result)) == ("masto", 1), counted

    groups = (await _get(http, prom, "/api/v1/rules"))["groups"]
    health = {r["name"]: (r["health"], r.get("lastError", "")) for g in groups
              for r in g["rules"]}
    assert set(health) == {r.alert for r in load_rules()}
    assert {name for name, (h, _) in health.items() if h != "ok"} == set(), health

    async def firing() -> set[tuple[str, str, str]]:
        alerts = (await _get(http, prom, "/api/v1/alerts"))["alerts"]
        return {(a["labels"]["alertname"], a["labels"].get("account", ""),
                 a["labels"]["severity"]) for a in alerts if a["state"] == "firing"}

    def who(alert: str) -> str:
        (account,) = expected_results[alert]
        return "" if account == "?" else account

    expected = {("ProtectedAccountVanished", who("ProtectedAccountVanished"), "critical"),
                ("AccountVanished", who("AccountVanished"), "warning"),
                ("Watchdog", "", "none")}
    got = await until("the vanished accounts' alerts firing",
                      lambda: _matches(firing, expected))
    assert got == expected


async def _matches(fetch: Callable[[], Any], expected: set[Any]) -> set[Any] | None:
    got = await fetch()
    return got if got == expected else None



# ------------------------------------------------------------------ a pager outage, live

# OutboxStuck as shipped waits for a page older than 180 s, for 2 m. The copy loaded here
# waits for 2 s, for 1 s: the same expression, at a test's pace.
OUTBOX_STUCK_SHIPPED = ("> 180", "2m")
OUTBOX_STUCK_FAST = ("> 2", "1s")


def fast_outbox_rules(tmp_path: Path) -> Path:
    """monitor-rules.yml with only OutboxStuck's age threshold and `for` shortened."""
    source = RULE_FILES[0]
    doc = yaml.safe_load(source.read_text())
    (rule,) = [r for g in doc["groups"] for r in g["rules"] if r.get("alert") == "OutboxStuck"]
    threshold, wait = OUTBOX_STUCK_SHIPPED
    assert rule["expr"].count(threshold) == 1 and rule["for"] == wait, (
        "OutboxStuck changed shape: update OUTBOX_STUCK_SHIPPED", rule)
    rule["expr"] = rule["expr"].replace(threshold, OUTBOX_STUCK_FAST[0])
    rule["for"] = OUTBOX_STUCK_FAST[1]
    copy = tmp_path / source.name
    copy.write_text(yaml.safe_dump(doc, sort_keys=False))
    return copy


async def test_outbox_stuck_fires_while_the_pager_answers_503_then_clears(
        tmp_path: Path, state_file: str,
        start_prometheus: Callable[..., Prometheus]) -> None:
    masto, pd = FakeMastodon({"alice": "present", "bob": "present"}), FakePagerDuty()
    async with masto.running() as m_url, pd.running() as pd_url:
        config = paging_config(m_url, pd_url, ["alice", "bob"], state_file)
        async with running_monitor(config) as monitor:
            await wait_for(lambda: state_of(monitor, "masto", "alice") is State.UP, what="up")
            prom = start_prometheus(monitor.port or 0,
                                    [fast_outbox_rules(tmp_path), RULE_FILES[1]])
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
                try:
                    await _ready(http, prom)
                    await _pager_outage(http, prom, monitor, masto, pd)
                except BaseException:
                    print("prometheus log:\n" + prom.output())
                    raise


async def _pager_outage(http: aiohttp.ClientSession, prom: Prometheus, monitor: Any,
                        masto: FakeMastodon, pd: FakePagerDuty) -> None:
    async def alerts(name: str) -> list[dict[str, Any]]:
        found = (await _get(http, prom, "/api/v1/alerts"))["alerts"]
        return [a for a in found if a["labels"]["alertname"] == name and a["state"] == "firing"]

    async def quiet() -> bool:
        return not await alerts("OutboxStuck")

    await until("the first scrape", lambda: query(http, prom, f'up{{job="{JOB}"}} == 1'))
    assert await quiet(), "nothing waits yet"

    pd.script(*([503] * 100_000))  # the pager is down until healed below
    masto.set_state("alice", "suspended")
    await wait_for(lambda: state_of(monitor, "masto", "alice") is State.DOWN, what="down")

    stuck = await until("OutboxStuck firing", lambda: alerts("OutboxStuck"), timeout=30)
    (alert,) = stuck
    assert (alert["labels"]["notifier"], alert["labels"]["severity"]) == ("pd", "critical")
    assert alert["labels"]["job"] == JOB
    pending = await query(http, prom, 'accmon_outbox_pending{notifier="pd"}')
    assert value(pending) == 1
    age = await query(http, prom, 'accmon_outbox_oldest_pending_seconds{notifier="pd"}')
    assert value(age) > 2
    vanished = await until("ProtectedAccountVanished firing for alice",
                           lambda: alerts("ProtectedAccountVanished"))
    assert {a["labels"]["account"] for a in vanished} == {"alice"}
    assert pd.accepted == [] and len(pd.requests) > 1  # refused, retried, not delivered

    pd._script.clear()  # the pager is back
    await wait_for(lambda: pd.accepted, timeout=10, what="the page delivered")
    await until("OutboxStuck cleared", quiet, timeout=30)
    assert value(await query(http, prom, 'accmon_outbox_pending{notifier="pd"}')) == 0
