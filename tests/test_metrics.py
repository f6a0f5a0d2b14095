"""The /metrics exposition: every documented metric (docs/architecture.md), valid text
format, hostile label values, and what `monitor.metrics.per_account` names per account
while the aggregates stay the same in every mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.metrics import (
    ACCOUNT_FAMILIES,
    AGGREGATE_FAMILIES,
    AUTO_ALL_UP_TO,
    AccountView,
    Metrics,
    exported_flags,
)
from monitor.model import (
    AbsentReason,
    AccountKey,
    AccountState,
    ErrorKind,
    Observation,
    State,
)

NOW = 1_700_000_000.0
MODES = ("all", "protected", "none")
PER_ACCOUNT = {name for name, _kind, _help in ACCOUNT_FAMILIES}


def views() -> list[AccountView]:
    return [
        AccountView(AccountKey("x", "realDonaldTrump"), True,
                    AccountState(State.DOWN, reason=AbsentReason.DEACTIVATED,
                                 first_absent_at=NOW - 660), last_probe_at=NOW - 1),
        AccountView(AccountKey("site", 'we"ird\\name\nx'), False, AccountState(State.UP),
                    last_probe_at=NOW - 2),
        AccountView(AccountKey("x", "newcomer"), False, AccountState()),
        AccountView(AccountKey("x", "erroring"), True, AccountState(State.UP, blind=True),
                    last_probe_at=NOW - 30),
        AccountView(AccountKey("x", "wobbly"), False, AccountState(State.SUSPECT),
                    last_probe_at=NOW - 40),
    ]


def text_of(metrics: Metrics) -> str:
    return b"".join(metrics.exposition(now=NOW)).decode()


def exposition(mode: str = "all", table: Callable[[], list[AccountView]] = views,
               platforms: tuple[str, ...] = ("x", "site", "idle")) -> str:
    metrics = Metrics(table, per_account=mode)
    metrics.watchlist(dict.fromkeys(platforms, 0), {})
    metrics.observed("x", Observation.present(NOW, latency=0.2))
    return text_of(metrics)


def families(text: str) -> dict[str, list[Any]]:
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """A family's samples: sorted label pairs -> value."""
    return {tuple(sorted(s.labels.items())): s.value for s in families(text).get(name, [])}


def named_accounts(text: str) -> dict[str, set[str]]:
    """Per-account family -> the accounts it has samples for."""
    return {name: {s.labels["account"] for s in fam}
            for name, fam in families(text).items() if name in PER_ACCOUNT}


def assert_families_are_contiguous(text: str) -> None:
    """The text format wants each family's HELP, TYPE and samples in one block."""
    seen: list[str] = []
    for line in text.splitlines():
        name = line.split()[2] if line.startswith("#") else line.split("{")[0].split()[0]
        base = name.removesuffix("_total").removesuffix("_bucket").removesuffix(
            "_count").removesuffix("_sum")
        if not seen or seen[-1] != base:
            assert base not in seen, f"{base} appears in two blocks"
            seen.append(base)


# ------------------------------------------------------------------ the contract


def test_every_design_metric_is_exported() -> None:
    names = set(families(exposition()))
    # The parser strips _total from counter family names.
    assert names >= {
        "accmon_account_up", "accmon_account_state", "accmon_account_outage_seconds",
        "accmon_account_blind", "accmon_outage_duration_seconds",
        "accmon_outages", "accmon_probes", "accmon_probe_errors",
        "accmon_probe_duration_seconds", "accmon_notifications", "accmon_outbox_pending",
        "accmon_platform_anomaly", "accmon_build_info",
        *(name for name, _kind, _help in AGGREGATE_FAMILIES),
    }


def test_no_created_series() -> None:
    """`_created` doubles every counter child's and histogram's series for nothing."""
    metrics = Metrics(views)
    metrics.observed("x", Observation.present(NOW, latency=0.2))
    metrics.outage_duration.labels("x", "true").observe(60)
    text = text_of(metrics)
    assert "accmon_probes_total{" in text and "accmon_outage_duration_seconds_count{" in text
    assert "_created" not in text


@pytest.mark.parametrize("mode", MODES)
def test_the_text_is_valid_with_each_family_in_one_block(mode: str) -> None:
    text = exposition(mode)
    assert families(text)  # parses
    assert_families_are_contiguous(text)
    assert text.endswith("\n")


# ------------------------------------------------------------------ per-account series


def test_per_account_values_follow_the_state() -> None:
    fams = families(exposition())
    up = {s.labels["account"]: s.value for s in fams["accmon_account_up"]}
    assert up == {"realDonaldTrump": 0.0, 'we"ird\\name\nx': 1.0, "erroring": 1.0,
                  "wobbly": 0.0}  # unknown: no sample
    protected = {s.labels["account"]: s.labels["protected"] for s in fams["accmon_account_up"]}
    assert protected["realDonaldTrump"] == "true" and protected["wobbly"] == "false"
    # One sample per account, on its current state (value 1): the others are implied.
    state = {s.labels["account"]: (s.labels["state"], s.value)
             for s in fams["accmon_account_state"]}
    assert state == {"realDonaldTrump": ("down", 1.0), 'we"ird\\name\nx': ("up", 1.0),
                     "newcomer": ("unknown", 1.0), "erroring": ("up", 1.0),
                     "wobbly": ("suspect", 1.0)}
    # Only while down; only while blind.
    ages = {s.labels["account"]: s.value for s in fams["accmon_account_outage_seconds"]}
    assert ages == {"realDonaldTrump": 660.0}
    blind = {s.labels["account"]: (s.labels["protected"], s.value)
             for s in fams["accmon_account_blind"]}
    assert blind == {"erroring": ("true", 1.0)}
    assert "accmon_account_last_probe_timestamp_seconds" not in fams


def test_hostile_handles_and_platforms_are_escaped_not_breaking_the_scrape() -> None:
    table = [AccountView(AccountKey('p"\\\n', 'a"b\\c\nd'), True, AccountState(State.UP))]
    text = exposition(table=lambda: table, platforms=('p"\\\n',))
    fams = families(text)
    assert {s.labels["account"] for s in fams["accmon_account_state"]} == {'a"b\\c\nd'}
    assert {s.labels["platform"] for s in fams["accmon_accounts"]} == {'p"\\\n'}
    assert_families_are_contiguous(text)


def test_large_watchlists_stream_in_chunks() -> None:
    many = [AccountView(AccountKey("p", f"u{i}"), False, AccountState(State.UP))
            for i in range(12_000)]
    chunks = list(Metrics(lambda: many, per_account="all").exposition(now=NOW))
    assert len(chunks) > 5 and max(map(len, chunks)) < 1_000_000
    fams = families(b"".join(chunks).decode())
    assert len(fams["accmon_account_state"]) == 12_000
    assert len(fams["accmon_account_up"]) == 12_000


def test_one_scrape_reads_each_account_once_while_the_table_changes() -> None:
    """The handler awaits between chunks: decisions and reloads run meanwhile. The scrape
    shows the table as it was when it began, its counts agreeing with its series."""
    table = {f"u{i}": AccountView(AccountKey("p", f"u{i}"), False, AccountState(State.UP))
             for i in range(6000)}
    stream = Metrics(lambda: table.values(), per_account="all").exposition(now=NOW)
    parts = [next(stream), next(stream)]  # the client library's, then the aggregates
    for view in table.values():
        view.state = AccountState(State.DOWN, first_absent_at=NOW - 5)
    table["late"] = AccountView(AccountKey("p", "late"), False, AccountState(State.UP))
    parts.extend(stream)
    text = b"".join(parts).decode()
    fams = families(text)
    assert {s.labels["state"] for s in fams["accmon_account_state"]} == {"up"}
    assert len(fams["accmon_account_state"]) == 6000
    assert "accmon_account_outage_seconds" not in {n for n, f in fams.items() if f}
    counts = samples(text, "accmon_accounts")
    assert counts[(("platform", "p"), ("protected", "false"), ("state", "up"))] == 6000


# ------------------------------------------------------------------ the modes


def test_auto_names_every_account_up_to_ten_thousand_then_the_protected_only() -> None:
    assert AUTO_ALL_UP_TO == 10_000
    assert exported_flags("auto", 10_000) == (False, True)
    assert exported_flags("auto", 10_001) == (True,)
    assert exported_flags("all", 1_000_000) == (False, True)
    assert exported_flags("protected", 1) == (True,)
    assert exported_flags("none", 1) == ()


def test_auto_switches_at_the_threshold_on_a_live_table() -> None:
    table = [AccountView(AccountKey("p", f"u{i}"), i == 0, AccountState(State.UP))
             for i in range(AUTO_ALL_UP_TO)]
    metrics = Metrics(lambda: table)  # auto is the default
    assert len(named_accounts(text_of(metrics))["accmon_account_state"]) == AUTO_ALL_UP_TO
    table.append(AccountView(AccountKey("p", "one-more"), False, AccountState(State.UP)))
    assert named_accounts(text_of(metrics))["accmon_account_state"] == {"u0"}
    exported = samples(text_of(metrics), "accmon_account_series_exported")
    assert exported == {(("protected", "false"),): 0.0, (("protected", "true"),): 1.0}


@pytest.mark.parametrize(("mode", "accounts"), [
    ("all", {"realDonaldTrump", 'we"ird\\name\nx', "newcomer", "erroring", "wobbly"}),
    ("protected", {"realDonaldTrump", "erroring"}),
    ("none", set()),
])
def test_each_mode_names_its_accounts(mode: str, accounts: set[str]) -> None:
    text = exposition(mode)
    named = named_accounts(text)
    assert named.get("accmon_account_state", set()) == accounts
    for family in PER_ACCOUNT:
        assert named.get(family, set()) <= accounts, family
    flags = samples(text, "accmon_account_series_exported")
    assert flags == {(("protected", "false"),): float(mode == "all"),
                     (("protected", "true"),): float(mode != "none")}


def test_the_mode_is_read_at_every_scrape() -> None:
    """The Monitor passes a function of the live config, so a reload applies it."""
    mode = ["all"]
    metrics = Metrics(views, per_account=lambda: mode[0])
    assert named_accounts(text_of(metrics))["accmon_account_state"]
    mode[0] = "none"
    assert named_accounts(text_of(metrics))["accmon_account_state"] == set()


@pytest.mark.parametrize("mode", MODES)
def test_the_aggregates_are_the_same_in_every_mode(mode: str) -> None:
    text = exposition(mode)
    counts = samples(text, "accmon_accounts")
    # Every platform (configured ones without accounts too), state and flag: 3 x 4 x 2.
    assert len(counts) == 24 and sum(counts.values()) == len(views())

    def count(platform: str, state: str, protected: str) -> float:
        return counts[(("platform", platform), ("protected", protected), ("state", state))]

    assert count("x", "down", "true") == 1 and count("x", "up", "true") == 1
    assert count("x", "unknown", "false") == 1 and count("x", "suspect", "false") == 1
    assert count("site", "up", "false") == 1 and count("idle", "up", "false") == 0
    blind = samples(text, "accmon_accounts_blind")
    assert len(blind) == 6 and blind[(("platform", "x"), ("protected", "true"))] == 1
    assert sum(blind.values()) == 1
    oldest = samples(text, "accmon_accounts_oldest_probe_timestamp_seconds")
    assert oldest == {(("platform", "x"), ("protected", "true")): NOW - 30,
                      (("platform", "x"), ("protected", "false")): NOW - 40,
                      (("platform", "site"), ("protected", "false")): NOW - 2}
    assert {k: v for k, v in samples(exposition("all"), "accmon_accounts").items()} == counts


def test_aggregate_help_and_types() -> None:
    fams = {f.name: f for f in text_string_to_metric_families(exposition("none"))}
    for name, kind, text in (*AGGREGATE_FAMILIES, *ACCOUNT_FAMILIES):
        assert fams[name].type == kind and fams[name].documentation == text, name


# ------------------------------------------------------------------ the hot path


def test_observed_counts_answers_latency_and_errors_by_kind() -> None:
    metrics = Metrics(list)
    metrics.observed("x", Observation.present(NOW, latency=0.2))
    for _ in range(3):
        metrics.observed("x", Observation.failed(NOW, ErrorKind.TIMEOUT, latency=1.0))
    metrics.observed("bsky", Observation.failed(NOW, ErrorKind.AUTH, latency=0.1))
    metrics.observed("bsky", Observation.failed(NOW, ErrorKind.AUTH), timed=False)
    get = metrics.registry.get_sample_value
    assert get("accmon_probes_total", {"platform": "x", "result": "error"}) == 3
    assert get("accmon_probe_errors_total", {"platform": "x", "kind": "timeout"}) == 3
    assert get("accmon_probe_errors_total", {"platform": "bsky", "kind": "auth"}) == 2
    assert get("accmon_probe_errors_total", {"platform": "x", "kind": "auth"}) is None
    assert get("accmon_probe_duration_seconds_count", {"platform": "x"}) == 4
    assert get("accmon_probe_duration_seconds_count", {"platform": "bsky"}) == 1
