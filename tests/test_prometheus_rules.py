"""Alert rules and Grafana dashboards: promtool checks and unit tests, and the metric contract.

``promtool`` comes from Debian's ``prometheus`` package (``dev.py`` installs it: see
``DEBIAN_PACKAGES``). When it is missing and cannot be installed (not root, or no apt-get)
these tests skip with a message, except under ``CI=true``, where they fail.

The helpers here (query extraction, template substitution, the rough PromQL metric-name
parser) are shared with ``test_prometheus_live.py``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "config" / "prometheus"
# The single-vantage set, which prometheus.yml loads (test_prometheus_live.py runs it).
RULE_FILES = (PROMETHEUS_DIR / "monitor-rules.yml", PROMETHEUS_DIR / "account-rules.yml")
# Several vantages load monitor-rules.yml and this one instead of account-rules.yml.
QUORUM_RULES = PROMETHEUS_DIR / "quorum-rules.yml"
ALL_RULE_FILES = (*RULE_FILES, QUORUM_RULES)
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
VANTAGES_CONFIG = PROMETHEUS_DIR / "prometheus-vantages.yml"
PROMTOOL_TESTS = sorted((ROOT / "tests" / "promtool").glob("*.yml"))
DASHBOARD_DIR = ROOT / "dashboards"
DASHBOARDS = sorted(DASHBOARD_DIR.glob("*.json"))
PROVISIONING = DASHBOARD_DIR / "provisioning"
README = ROOT / "README.md"
JOB = "account-monitor"

# The metrics the monitor exports (README "Metrics", docs/architecture.md): metric name -> "coming"
# (True while the monitor does not export it yet; rules and dashboards may already use it).
# Histograms are listed by base name; their _bucket/_sum/_count series are allowed too.
EXPORTED: dict[str, bool] = {
    "accmon_account_up": False,
    "accmon_account_state": False,
    "accmon_account_outage_seconds": False,
    # accmon_account_last_probe_timestamp_seconds is gone (issue 13: ~90 bytes an account
    # a scrape, changing at every probe); accmon_accounts_oldest_probe_timestamp_seconds
    # is its per-platform stand-in, /api/v1/accounts' last_probe_at the per-account one.
    "accmon_account_blind": False,
    # The counts, always there whatever monitor.metrics.per_account says.
    "accmon_accounts": False,
    "accmon_accounts_blind": False,
    "accmon_accounts_oldest_probe_timestamp_seconds": False,
    "accmon_account_series_exported": False,
    "accmon_outage_duration_seconds": False,
    "accmon_outages_total": False,
    "accmon_probes_total": False,
    "accmon_probe_errors_total": False,
    "accmon_probe_duration_seconds": False,
    "accmon_transitions_total": False,
    "accmon_notifications_total": False,
    "accmon_outbox_pending": False,
    "accmon_outbox_oldest_pending_seconds": False,
    "accmon_platform_anomaly": False,
    "accmon_accounts_watched": False,
    "accmon_build_info": False,
    "accmon_config_reloads_total": False,
    "accmon_scheduler_queue_depth": False,
    "accmon_scheduler_lag_seconds": False,
    "accmon_scheduler_interval_seconds": False,
    "accmon_accounts_overdue": False,
    "accmon_monitor_blind": False,
    "accmon_store_write_failures_total": False,
    "accmon_heartbeats_total": False,
    "accmon_ratelimit_remaining": True,
    "accmon_ratelimit_throttled_seconds_total": True,
    "accmon_stream_connected": True,
    "accmon_stream_lag_seconds": True,
    "accmon_stream_events_total": True,
}
HISTOGRAMS = ("accmon_outage_duration_seconds", "accmon_probe_duration_seconds")
# Alerts that fire all the time on purpose (the alerting pipeline's heartbeat): no
# not-firing unit test is possible, and their severity is "none" (route them to a dead man's
# switch, never to a human).
ALWAYS_FIRING = {"Watchdog"}
# Series Prometheus itself adds to every scrape job.
PROMETHEUS_SERIES = {"up"}


def allowed_series() -> set[str]:
    names = set(EXPORTED) | PROMETHEUS_SERIES
    for base in HISTOGRAMS:
        names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return names


def coming_series() -> set[str]:
    return {name for name in allowed_series()
            if any(name.startswith(c) for c, coming in EXPORTED.items() if coming)}


# ------------------------------------------------------------------ tools


def require_tool(name: str) -> str:
    """The path of a binary of Debian's prometheus package; installs it when we can."""
    found = shutil.which(name)
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        spec = importlib.util.spec_from_file_location("_accmon_dev", ROOT / "dev.py")
        assert spec is not None and spec.loader is not None
        dev = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(dev)
        dev.ensure_debian_packages()  # the same install `python3 dev.py test` does
        found = shutil.which(name)
        if found:
            return found
        pytest.fail(f"{name} is still missing after installing DEBIAN_PACKAGES from dev.py")
    message = (f"{name} is missing and cannot be installed here (needs root and apt-get): "
               "install Debian's 'prometheus' package, or run `python3 dev.py test` as root")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def test_a_missing_promtool_skips_outside_ci_and_fails_in_ci(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # not root: apt-get impossible
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="cannot be installed"):
        require_tool("promtool")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="cannot be installed"):
        require_tool("promtool")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, cwd=ROOT, timeout=120)


# ------------------------------------------------------------------ rules


@dataclass(frozen=True)
class Rule:
    file: Path
    group: str
    alert: str
    expr: str
    labels: dict[str, str]
    annotations: dict[str, str]


def load_rules(files: tuple[Path, ...] = RULE_FILES) -> list[Rule]:
    rules = []
    for path in files:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                assert "alert" in rule, f"{path.name}: only alerting rules expected, got {rule}"
                rules.append(Rule(path, group["name"], rule["alert"], rule["expr"],
                                  rule.get("labels", {}), rule.get("annotations", {})))
    return rules


# ------------------------------------------------------------------ dashboards


@dataclass(frozen=True)
class PanelQuery:
    dashboard: str  # uid
    panel: str  # title
    ref: str  # refId
    expr: str


def load_dashboards() -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in DASHBOARDS}


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' collapsed children included."""
    found = []
    for panel in board.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def panel_queries(board: dict[str, Any]) -> list[PanelQuery]:
    return [PanelQuery(board["uid"], panel["title"], target.get("refId", "?"), target["expr"])
            for panel in panels(board) for target in panel.get("targets", [])
            if target.get("expr")]


def variable_queries(board: dict[str, Any]) -> dict[str, str]:
    """Query variables: name -> query (``label_values(...)`` or PromQL)."""
    found = {}
    for var in board.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var.get("query")
            found[var["name"]] = query.get("query", "") if isinstance(query, dict) else query
    return found


# What Grafana substitutes itself; the live test uses these values.
GRAFANA_BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)(?::\w+)?\]\]")


def variables_used(text: str) -> set[str]:
    return {a or b or c for a, b, c in _VARIABLE.findall(text)}


def substitute(text: str, values: dict[str, str]) -> str:
    """Replace Grafana template variables ($x, ${x}, ${x:fmt}, [[x]]) by ``values``."""
    merged = {**GRAFANA_BUILTINS, **values}

    def one(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        if name not in merged:
            raise KeyError(f"no value for template variable ${name} in {text!r}")
        return merged[name]

    return _VARIABLE.sub(one, text)


_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.*),\s*)?(\w+)\s*\)\s*$", re.S)


def variable_promql(query: str) -> str:
    """A variable's query as PromQL: ``label_values(m{..}, l)`` -> ``group by (l) (m{..})``."""
    match = _LABEL_VALUES.match(query)
    if not match:
        return query
    selector, label = match.groups()
    if not selector:
        raise ValueError(f"label_values without a metric scans every series: {query!r}")
    return f"group by ({label}) ({selector})"


# ------------------------------------------------------------------ a rough PromQL reader

_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
             "unless", "bool", "offset", "inf", "nan", "atan2"}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENT = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or label_values query) selects, roughly.

    Drops strings, comments, label matchers, range/subquery brackets, grouping label lists, template
    variables and numbers; what is left and is neither a function call nor a keyword is a
    metric name. Good enough for our own rules and dashboards, not a parser.
    """
    text = _STRING.sub('""', expr)
    text = re.sub(r"#[^\n]*", " ", text)  # PromQL comments
    text = _VARIABLE.sub(" ", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _IDENT.finditer(text):
        name, call = match.groups()
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


def every_expression() -> list[tuple[str, str]]:
    """(where, expression) for every rule and every dashboard query and variable."""
    found = [(f"{r.file.name}: {r.alert}", r.expr) for r in load_rules(ALL_RULE_FILES)]
    for name, board in load_dashboards().items():
        found += [(f"{name}: {q.panel} [{q.ref}]", q.expr) for q in panel_queries(board)]
        found += [(f"{name}: variable {var}", query)
                  for var, query in variable_queries(board).items()]
    return found


# ================================================================== tests: promtool


def test_promtool_checks_the_rule_files() -> None:
    result = run(require_tool("promtool"), "check", "rules", *map(str, ALL_RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_example_config_and_its_rule_files() -> None:
    result = run(require_tool("promtool"), "check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert sorted(config["rule_files"]) == sorted(p.name for p in RULE_FILES)
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert JOB in jobs, "monitor-rules.yml alerts on up{job=\"account-monitor\"}"


def test_promtool_unit_tests_pass() -> None:
    assert PROMTOOL_TESTS, "tests/promtool/*.yml"
    result = run(require_tool("promtool"), "test", "rules", *map(str, PROMTOOL_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("source", PROMTOOL_TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_can_fail(tmp_path: Path, source: Path) -> None:
    """A wrong expectation must fail, in every case: the suite above is not vacuous."""
    doc = yaml.safe_load(source.read_text())
    rule_files = [str((source.parent / f).resolve()) for f in doc["rule_files"]]
    promtool = require_tool("promtool")
    for case in doc["tests"]:
        flipped = yaml.safe_load(yaml.safe_dump(case))  # a deep copy, aliases resolved
        for check in flipped.get("alert_rule_test", []):
            check["exp_alerts"] = [] if check.get("exp_alerts") else [{"exp_labels": {}}]
        broken = tmp_path / "broken.test.yml"
        broken.write_text(yaml.safe_dump({**doc, "rule_files": rule_files, "tests": [flipped]}))
        result = run(promtool, "test", "rules", str(broken))
        assert result.returncode != 0, f"{source.name}: {case['name']}: {result.stdout}"


# ================================================================== tests: rules, statically


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in PROMTOOL_TESTS:
        doc = yaml.safe_load(path.read_text())
        for case in doc["tests"]:
            assert case.get("input_series"), f"{path.name}: {case.get('name')}: input_series"
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    alerts = {rule.alert for rule in load_rules(ALL_RULE_FILES)}
    assert alerts - firing == set(), "alerts without a firing unit test"
    assert alerts - quiet - ALWAYS_FIRING == set(), "alerts without a not-firing unit test"
    assert quiet & ALWAYS_FIRING == set(), "an always-firing alert tested as quiet"
    assert (firing | quiet) - alerts == set(), "unit tests of alerts that do not exist"


def _anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file."""
    anchors = set()
    for line in doc.read_text().splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
            anchors.add(slug)
    return anchors


def test_every_rule_has_severity_summary_description_and_a_runbook_into_the_docs() -> None:
    """Runbooks live in README.md; the optional quorum rules' in docs/vantages.md."""
    rules = load_rules(ALL_RULE_FILES)
    assert len({r.alert for r in rules}) == len(rules), "alert names are unique"
    for rule in rules:
        where = f"{rule.file.name}: {rule.alert}"
        severities = ("none",) if rule.alert in ALWAYS_FIRING else ("critical", "warning",
                                                                     "info")
        assert rule.labels.get("severity") in severities, where
        for key in ("summary", "description", "runbook_url"):
            assert rule.annotations.get(key, "").strip(), f"{where}: annotation {key}"
        url = rule.annotations["runbook_url"]
        match = re.fullmatch(r"https://\S+/blob/main/(README\.md|docs/[\w-]+\.md)#([\w-]+)", url)
        assert match, f"{where}: runbook_url should point into README.md or docs/: {url}"
        doc, anchor = ROOT / match.group(1), match.group(2)
        assert doc.is_file(), f"{where}: {match.group(1)} does not exist"
        assert anchor in _anchors(doc), f"{where}: {match.group(1)} has no #{anchor}"
        assert anchor == rule.alert.lower(), f"{where}: the runbook is the alert's own section"


def test_monitor_down_alert_watches_the_scrape_job_even_when_it_vanishes() -> None:
    (rule,) = [r for r in load_rules() if r.alert == "AccountMonitorDown"]
    assert f'up{{job="{JOB}"}}' in rule.expr and "absent(" in rule.expr


def test_the_watchdog_always_fires_and_says_how_to_route_it() -> None:
    """Like kube-prometheus' Watchdog: vector(1), no `for`, severity none, dead man's switch."""
    (rule,) = [r for r in load_rules() if r.alert == "Watchdog"]
    raw = next(r for g in yaml.safe_load(rule.file.read_text())["groups"]
               for r in g["rules"] if r.get("alert") == "Watchdog")
    assert rule.expr.strip() == "vector(1)" and "for" not in raw
    assert rule.labels == {"severity": "none"}
    assert "dead man's switch" in rule.annotations["description"]
    header = rule.file.read_text().split("groups:")[0]
    assert "alertname=\"Watchdog\"" in header and "deadmansswitch" in header


# Series the monitor renders per account, only for the accounts monitor.metrics.per_account
# names; everything else (the counts among them) is there in every mode.
PER_ACCOUNT_SERIES = {"accmon_account_up", "accmon_account_state",
                      "accmon_account_outage_seconds", "accmon_account_blind"}


def test_every_single_vantage_rule_on_per_account_series_falls_back_to_the_counts() -> None:
    """In `none` mode (and for unprotected accounts under `protected`) nothing is named: a
    rule that reads per-account series must also fire from the counts, gated by
    accmon_account_series_exported so a named account never alerts twice."""
    gated = 0
    for rule in load_rules():
        names = metric_names(rule.expr)
        if not names & PER_ACCOUNT_SERIES:
            continue
        gated += 1
        assert names & {"accmon_accounts", "accmon_accounts_blind"}, rule.alert
        assert re.search(r"unless on \(job, instance, protected\)\s+"
                         r"accmon_account_series_exported == 1", rule.expr), rule.alert
        # the summary says something in both shapes: with an account, and counted
        assert "{{ if $labels.account }}" in rule.annotations["summary"], rule.alert
    assert gated == 3  # ProtectedAccountVanished, AccountVanished, MonitoringBlind


def test_the_quorum_rules_say_what_each_per_account_mode_leaves_them() -> None:
    header = QUORUM_RULES.read_text().split("groups:")[0]
    assert "monitor.metrics.per_account" in header
    for mode in ("`all`", "`protected`", "`none`"):
        assert mode in header, mode


def test_dashboard_panels_on_per_account_series_say_so() -> None:
    """The figures come from the counts; a panel that can only list named accounts says
    that per_account decides which (in its own or its dashboard's description)."""
    listing = set()
    for board in load_dashboards().values():
        for panel in panels(board):
            exprs = [t["expr"] for t in panel.get("targets", []) if t.get("expr")]
            if not any(metric_names(e) & PER_ACCOUNT_SERIES for e in exprs):
                continue
            listing.add((board["uid"], panel["title"]))
            text = panel.get("description", "") + board.get("description", "")
            assert "per_account" in text, (board["uid"], panel["title"])
    overview = {title for uid, title in listing if uid == "accmon-overview"}
    assert overview == {"Accounts down now", "Accounts the vantages disagree on"}
    assert not {title for uid, title in listing if uid == "accmon-probes"}


def test_scheduler_lag_is_compared_with_the_interval_per_instance_and_platform() -> None:
    (rule,) = [r for r in load_rules() if r.alert == "SchedulerLagging"]
    assert metric_names(rule.expr) == {"accmon_scheduler_lag_seconds",
                                       "accmon_scheduler_interval_seconds"}
    # on (platform) alone would be many-to-many with two shards of the same platform
    assert re.search(r">\s*on \(job, instance, platform\)", rule.expr), rule.expr


# ================================================================== tests: the quorum rules

QUORUM_MARK = re.compile(r"(>=|<)\s*(\d+)\s*# QUORUM$", re.M)
QUORUM_ALERTS = {"ProtectedAccountVanishedByQuorum", "AccountVanishedByQuorum",
                 "QuorumUnreachable", "VantagesBelowQuorum"}


def quorum_of(text: str) -> int:
    """The quorum the marked lines of a quorum-rules.yml say; they must all say the same."""
    found = {int(n) for _, n in QUORUM_MARK.findall(text)}
    assert len(found) == 1, f"the `# QUORUM` lines disagree: {sorted(found)}"
    return found.pop()


def with_quorum(text: str, quorum: int) -> str:
    """quorum-rules.yml with the quorum changed as docs/vantages.md says: every marked line."""
    text = QUORUM_MARK.sub(lambda m: f"{m.group(1)} {quorum}  # QUORUM", text)
    return re.sub(r"quorum of \d+", f"quorum of {quorum}", text)


def test_the_quorum_is_one_number_on_every_marked_line_and_in_every_text() -> None:
    text = QUORUM_RULES.read_text()
    quorum = quorum_of(text)
    rules = {r.alert: r for r in load_rules((QUORUM_RULES,))}
    marked = {name for name, r in rules.items() if QUORUM_MARK.search(r.expr)}
    assert marked == QUORUM_ALERTS, "the rules that compare with the quorum carry the mark"
    assert f"QUORUM is {quorum}." in text.split("groups:")[0], "the header names it"
    quoted = {int(n) for r in rules.values() for a in r.annotations.values()
              for n in re.findall(r"quorum of (\d+)", a)}
    assert quoted == {quorum}, "descriptions quote the same quorum"
    changed = with_quorum(text, 3)
    assert quorum_of(changed) == 3 and "quorum of 2" not in changed


def test_quorum_rules_count_vantages_never_series_and_ignore_unlabelled_ones() -> None:
    """An HA pair in one vantage is one vote; a target without `vantage` casts none."""
    for rule in load_rules((QUORUM_RULES,)):
        selectors = re.findall(r"\b(accmon_\w+|up)\{([^}]*)\}", rule.expr)
        assert selectors, rule.alert
        for name, matchers in selectors:
            assert 'vantage!=""' in matchers, f"{rule.alert}: {name}{{{matchers}}}"
        if rule.alert != "VantagesBelowQuorum":
            assert "by (vantage, platform" in rule.expr, rule.alert
        # the alert must not carry a per-vantage label: one vanish is one alert
        outer = re.search(r"^count by \(([^)]*)\)", rule.expr.strip())
        if outer:
            assert not {"vantage", "instance", "job"} & {
                label.strip() for label in outer.group(1).split(",")}, rule.alert


def test_the_vanish_rules_page_at_once_and_the_warnings_wait() -> None:
    raw = {r["alert"]: r for g in yaml.safe_load(QUORUM_RULES.read_text())["groups"]
           for r in g["rules"]}
    assert "for" not in raw["ProtectedAccountVanishedByQuorum"], "the monitors debounced"
    assert "for" not in raw["AccountVanishedByQuorum"]
    # Vantages confirm up to one probe interval apart: the bundled configs' longest is 5m.
    assert raw["VantageDisagreement"]["for"] == "10m"
    for name in ("QuorumUnreachable", "VantageMissing", "VantagesBelowQuorum"):
        assert raw[name]["for"] == "5m", name


@pytest.mark.parametrize("quorum", [1, 3])
def test_another_quorum_fails_the_unit_tests(tmp_path: Path, quorum: int) -> None:
    """The unit tests pin the quorum of 2: a rule set paging on one vote, or needing three,
    fails them (and with_quorum, the documented edit, produces a valid rule file)."""
    promtool = require_tool("promtool")
    rules = tmp_path / QUORUM_RULES.name
    rules.write_text(with_quorum(QUORUM_RULES.read_text(), quorum))
    assert run(promtool, "check", "rules", str(rules)).returncode == 0
    source = ROOT / "tests" / "promtool" / "quorum-rules.test.yml"
    doc = yaml.safe_load(source.read_text())
    tests = tmp_path / source.name
    tests.write_text(yaml.safe_dump({**doc, "rule_files": [str(rules)]}))
    result = run(promtool, "test", "rules", str(tests))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    if quorum == 1:  # one vote would page
        assert "two of three vantages missing" in output, output
    else:  # the two vantages left would not
        assert "one of three vantages missing" in output, output


def prometheus_configs() -> list[Path]:
    """Every bundled Prometheus config (a file with scrape_configs or rule_files)."""
    found = []
    for path in sorted([*PROMETHEUS_DIR.glob("*.yml"), *(ROOT / "deploy").rglob("*.yml"),
                        *(ROOT / "deploy").rglob("*.yaml")]):
        doc = yaml.safe_load(path.read_text())
        if isinstance(doc, dict) and ("rule_files" in doc or "scrape_configs" in doc):
            found.append(path)
    return found


def test_no_prometheus_config_loads_the_single_vantage_and_the_quorum_rules_together() -> None:
    configs = prometheus_configs()
    assert VANTAGES_CONFIG in configs and PROMETHEUS_CONFIG in configs
    for path in configs:
        names = {Path(f).name for f in yaml.safe_load(path.read_text()).get("rule_files", [])}
        assert not {"account-rules.yml", "quorum-rules.yml"} <= names, path


def test_the_vantages_config_labels_every_target_with_its_vantage() -> None:
    result = run(require_tool("promtool"), "check", "config", str(VANTAGES_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(VANTAGES_CONFIG.read_text())
    assert config["rule_files"] == ["monitor-rules.yml", "quorum-rules.yml"]
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == JOB]
    vantages = [group["labels"]["vantage"] for group in job["static_configs"]]
    assert len(vantages) >= 2 and len(set(vantages)) == len(vantages), vantages
    targets = [t for group in job["static_configs"] for t in group["targets"]]
    assert len(set(targets)) == len(targets), "a target in two vantages would vote twice"
    assert "honor_labels" not in job, "the target label must win over a scraped `vantage`"


# ================================================================== tests: the metric contract


def test_metric_name_reader() -> None:
    expr = ('histogram_quantile(0.9, sum by (le, platform) (rate(accmon_probe_duration_seconds_'
            'bucket{platform=~"$platform", x="a{b}"}[$__rate_interval])))\n'
            '/ on (job) group_left (protected) up{job="x"} * 1e9 or vector(0) > bool 0.5')
    assert metric_names(expr) == {"accmon_probe_duration_seconds_bucket", "up"}
    assert metric_names("sum(accmon_bogus_total) by (platform) + other_metric offset 5m") == {
        "accmon_bogus_total", "other_metric"}
    assert metric_names(variable_promql(
        'label_values(accmon_account_state{platform=~"$platform"}, account)')) == {
        "accmon_account_state"}


def test_rules_and_dashboards_reference_only_exported_metrics() -> None:
    allowed = allowed_series()
    expressions = every_expression()
    assert len(expressions) > 40
    unknown = {(where, name) for where, expr in expressions
               for name in metric_names(variable_promql(expr)) - allowed}
    assert unknown == set(), "metric names the monitor does not export"
    used = {name for _, expr in expressions for name in metric_names(variable_promql(expr))}
    assert not any(re.search(r"accmon_\w+", name) for name in used - allowed)


def test_the_exported_list_matches_what_the_monitor_defines() -> None:
    """Every metric not marked 'coming' is defined by monitor/metrics.py under that name."""
    from monitor.metrics import ACCOUNT_FAMILIES, AGGREGATE_FAMILIES, Metrics

    defined = {name for name, _kind, _help in (*ACCOUNT_FAMILIES, *AGGREGATE_FAMILIES)}
    for family in Metrics(list).registry.collect():
        suffix = "_total" if family.type == "counter" else ""
        defined.add(family.name + suffix)
    missing = {name for name, coming in EXPORTED.items() if not coming} - defined
    assert missing == set(), "renamed or removed metrics (names are a public API)"


# ================================================================== tests: dashboards


UIDS = {"accmon-overview", "accmon-account", "accmon-probes", "accmon-notifications"}


def test_dashboards_are_provisionable_with_a_datasource_variable() -> None:
    boards = load_dashboards()
    assert {b["uid"] for b in boards.values()} == UIDS
    for name, board in boards.items():
        assert board.get("id") is None, f"{name}: provisioned dashboards carry no numeric id"
        assert 36 <= board["schemaVersion"] <= 41, name
        assert board["title"].startswith("account-monitor / "), name
        variables = {v["name"]: v for v in board["templating"]["list"]}
        ds = variables["datasource"]
        assert (ds["type"], ds["query"]) == ("datasource", "prometheus"), name
        for var in variables.values():
            if var["type"] == "query":
                assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        ids = [p["id"] for p in panels(board)]
        assert len(ids) == len(set(ids)), f"{name}: panel ids are unique"
        for panel in panels(board):
            if panel["type"] == "row":
                continue
            where = f"{name}: {panel['title']}"
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
            assert panel["targets"], where
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}", where
                assert target["expr"].strip(), where
                assert variables_used(target["expr"]) <= set(variables) | set(
                    GRAFANA_BUILTINS), f"{where}: undefined template variable"


def test_dashboard_panels_do_not_overlap() -> None:
    for name, board in load_dashboards().items():
        cells: dict[tuple[int, int], str] = {}
        for panel in board["panels"]:
            g = panel["gridPos"]
            assert g["x"] + g["w"] <= 24, f"{name}: {panel['title']} is wider than the grid"
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    other = cells.setdefault((x, y), panel["title"])
                    assert other == panel["title"], f"{name}: {panel['title']} overlaps {other}"


def test_the_dashboards_cover_what_on_call_asks_first() -> None:
    boards = {b["uid"]: b for b in load_dashboards().values()}
    exprs = {uid: "\n".join(q.expr for q in panel_queries(b)) for uid, b in boards.items()}
    overview = exprs["accmon-overview"]
    assert "increase(accmon_outages_total[24h])" in overview
    assert "increase(accmon_outages_total[7d])" in overview
    assert "accmon_outage_duration_seconds_bucket" in overview
    assert any(p["type"] == "heatmap" for p in panels(boards["accmon-overview"]))
    (table,) = [p for p in panels(boards["accmon-overview"]) if p["title"] == "Accounts down now"]
    assert table["type"] == "table" and 'state="down"' in table["targets"][0]["expr"]
    account = boards["accmon-account"]
    assert {"platform", "account"} <= set(variable_queries(account))
    assert any(p["type"] == "state-timeline" and "accmon_account_state" in p["targets"][0]["expr"]
               for p in panels(account))
    for q in ("0.5", "0.95", "0.99"):
        assert f"histogram_quantile({q}, " in exprs["accmon-probes"]
    assert "accmon_ratelimit_remaining" in exprs["accmon-probes"]
    assert "accmon_scheduler_queue_depth" in exprs["accmon-probes"]
    assert "accmon_scheduler_lag_seconds" in exprs["accmon-probes"]
    assert "accmon_scheduler_interval_seconds" in exprs["accmon-probes"]
    assert "accmon_accounts_overdue" in exprs["accmon-probes"]
    for needle in ('outcome="sent"', 'outcome="failed"', 'outcome="retried"',
                   "accmon_outbox_pending", "accmon_outbox_oldest_pending_seconds"):
        assert needle in exprs["accmon-notifications"]


def test_the_dashboards_show_each_vantages_view() -> None:
    """Several vantages (docs/vantages.md): a row per vantage, the votes, the disagreements.
    Without a `vantage` label every query still answers (one unnamed vantage), so the
    single-vantage live test can evaluate them."""
    boards = {b["uid"]: b for b in load_dashboards().values()}
    account = {p["title"]: p for p in panels(boards["accmon-account"])}
    (by_vantage,) = account["State by vantage"]["targets"]
    assert account["State by vantage"]["type"] == "state-timeline"
    assert by_vantage["expr"].startswith("max by (vantage, platform, account) (")
    assert "{{vantage}}" in by_vantage["legendFormat"]
    assert account["State by vantage"]["fieldConfig"] == account["State"]["fieldConfig"]
    (votes,) = account["Vantages that see it gone"]["targets"]
    assert "group by (vantage, platform, account)" in votes["expr"]
    assert 'state="down"} == 1' in votes["expr"]
    overview = {p["title"]: p for p in panels(boards["accmon-overview"])}
    (disagree,) = overview["Accounts the vantages disagree on"]["targets"]
    rule = next(r for r in load_rules(ALL_RULE_FILES) if r.alert == "VantageDisagreement")
    def bare(expr: str) -> str:
        return re.sub(r"\{\}", "", re.sub(r'\s+|,?\s*vantage!=""', "", expr))

    assert bare(rule.expr) in bare(disagree["expr"]), "the rule's own test, unlabelled too"
    for where, expr in every_expression():
        if where.startswith(("account-detail.json", "overview.json")) and "vantage" in expr:
            assert 'vantage!=""' not in expr, f"{where}: one vantage must still show"


def test_grafana_provisioning_points_at_the_dashboards_and_prometheus() -> None:
    datasources = yaml.safe_load((PROVISIONING / "datasource.yaml").read_text())
    (ds,) = datasources["datasources"]
    assert (ds["type"], ds["url"]) == ("prometheus", "http://prometheus:9090")
    providers = yaml.safe_load((PROVISIONING / "dashboards.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
