"""The /metrics exposition: every documented metric (docs/architecture.md), valid text
format, hostile label values."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from monitor.metrics import AccountView, Metrics
from monitor.model import AbsentReason, AccountKey, AccountState, Observation, State

NOW = 1_700_000_000.0


def views() -> list[AccountView]:
    return [
        AccountView(AccountKey("x", "realDonaldTrump"), True,
                    AccountState(State.DOWN, reason=AbsentReason.DEACTIVATED,
                                 first_absent_at=NOW - 660), last_probe_at=NOW - 1),
        AccountView(AccountKey("site", 'we"ird\\name\nx'), False, AccountState(State.UP),
                    last_probe_at=NOW - 2),
        AccountView(AccountKey("x", "newcomer"), False, AccountState()),
    ]


def families() -> dict[str, list]:  # type: ignore[type-arg]
    metrics = Metrics(views)
    metrics.observed("x", Observation.present(NOW, latency=0.2))
    text = b"".join(metrics.exposition(now=NOW)).decode()
    return {f.name: f.samples for f in text_string_to_metric_families(text)}


def test_every_design_metric_is_exported() -> None:
    names = set(families())
    # The parser strips _total from counter family names.
    assert names >= {
        "accmon_account_up", "accmon_account_state", "accmon_account_outage_seconds",
        "accmon_account_last_probe_timestamp_seconds", "accmon_outage_duration_seconds",
        "accmon_outages", "accmon_probes", "accmon_probe_errors",
        "accmon_probe_duration_seconds", "accmon_notifications", "accmon_outbox_pending",
        "accmon_platform_anomaly", "accmon_build_info",
    }


def test_per_account_values_follow_the_state() -> None:
    fams = families()
    up = {s.labels["account"]: s.value for s in fams["accmon_account_up"]}
    assert up == {"realDonaldTrump": 0.0, 'we"ird\\name\nx': 1.0}  # unknown: no sample
    down = [s for s in fams["accmon_account_state"] if s.labels["account"] == "realDonaldTrump"]
    assert {s.labels["state"]: s.value for s in down} == {
        "unknown": 0.0, "up": 0.0, "suspect": 0.0, "down": 1.0}
    ages = {s.labels["account"]: s.value for s in fams["accmon_account_outage_seconds"]}
    assert ages["realDonaldTrump"] == 660.0 and ages["newcomer"] == 0.0
    last = {s.labels["account"] for s in fams["accmon_account_last_probe_timestamp_seconds"]}
    assert last == {"realDonaldTrump", 'we"ird\\name\nx'}


def test_hostile_handles_are_escaped_not_breaking_the_scrape() -> None:
    fams = families()
    accounts = {s.labels["account"] for s in fams["accmon_account_state"]}
    assert 'we"ird\\name\nx' in accounts


def test_large_watchlists_stream_in_chunks() -> None:
    many = [AccountView(AccountKey("p", f"u{i}"), False, AccountState(State.UP))
            for i in range(5000)]
    chunks = list(Metrics(lambda: many).exposition(now=NOW))
    assert len(chunks) > 5
    text = b"".join(chunks).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert len(fams["accmon_account_state"].samples) == 5000 * 4
