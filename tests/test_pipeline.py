"""The pure steps of a decision, with plain data: identity, budget, holds, pages, readiness."""

from __future__ import annotations

from typing import Any

import pytest

from monitor import anomaly, blindness, budget, holds, identity, pages, readiness
from monitor.config import AccountConfig, parse_config
from monitor.model import (
    AbsentReason,
    AccountKey,
    AccountState,
    ErrorKind,
    Event,
    EventKind,
    Identity,
    Observation,
    RateLimit,
    State,
)
from monitor.store import OutboxRow, OutboxStatus

KEY = AccountKey("x", "realDonaldTrump")
UP = AccountState(State.UP, last_present_at=90.0, last_decisive_at=90.0, since=10.0)
CONFIG = parse_config("""
monitor: {own_blindness: {min_accounts: 3, hold_for: 2m}}
platforms:
  x: {probe: x, base_url: "https://api.x.com", token: t, anomaly: {min_accounts: 3, hold_for: 15s}}
accounts:
  - {platform: x, handle: realDonaldTrump, protected: true}
notifiers:
  pd: {type: pagerduty, routing_key: "0123456789abcdef0123456789abcdef"}
  chat: {type: slack, webhook_url: "https://hooks.slack.example/T/B/x"}
routing: {monitor_team: sre}
""", "test.yaml", env={})
ACCOUNT: AccountConfig = CONFIG.accounts[0]


# ------------------------------------------------------------------ identity

def test_the_first_answer_with_an_id_teaches_it() -> None:
    seen = identity.reconcile(KEY, Identity(), UP, Observation.present(100.0,
                                                                      account_id="25073877"))
    assert seen.identity == Identity("25073877") and seen.learned and seen.changed
    assert seen.events == ()


def test_same_id_new_handle_is_a_rename_event_not_an_absence() -> None:
    obs = Observation.present(100.0, account_id="25073877", handle="POTUS45")
    seen = identity.reconcile(KEY, Identity("25073877"), UP, obs)
    assert seen.observation is obs
    assert seen.identity.current_handle == "POTUS45"
    (event,) = seen.events
    assert event.kind is EventKind.RENAMED
    assert (event.details["old_handle"], event.details["new_handle"]) == (
        "realDonaldTrump", "POTUS45")


def test_a_handle_answering_with_another_id_is_someone_else_so_absent() -> None:
    seen = identity.reconcile(KEY, Identity("25073877"), UP,
                              Observation.present(100.0, account_id="999"))
    assert seen.observation.reason is AbsentReason.RENAMED
    assert "another account (id 999" in seen.observation.evidence
    assert seen.identity == Identity("25073877") and not seen.changed


def test_a_move_is_told_once() -> None:
    obs = Observation.present(100.0, account_id="1", moved_to="alice@new.example")
    first = identity.reconcile(KEY, Identity("1"), UP, obs)
    assert [e.kind for e in first.events] == [EventKind.MOVED]
    assert identity.reconcile(KEY, first.identity, UP, obs).events == ()


# ------------------------------------------------------------------ budget

def plan(obs: Observation, current: float = 5.0) -> budget.BudgetPlan | None:
    return budget.plan(obs, now=1000.0, configured=5.0, current=current, max_pause=300.0)


def test_an_answer_without_budget_headers_changes_nothing() -> None:
    assert plan(Observation.present(1000.0)) is None


def test_a_429_pauses_until_its_reset_capped() -> None:
    limited = Observation.failed(1000.0, ErrorKind.RATE_LIMITED,
                                 rate_limit=RateLimit(remaining=0, reset_at=1060.0))
    assert plan(limited) == budget.BudgetPlan(remaining=0, pause=60.0)
    far = Observation.failed(1000.0, ErrorKind.RATE_LIMITED,
                             rate_limit=RateLimit(remaining=0, reset_at=99999.0))
    assert plan(far) == budget.BudgetPlan(remaining=0, pause=300.0)
    assert plan(Observation.failed(1000.0, ErrorKind.RATE_LIMITED)) == budget.BudgetPlan(
        pause=budget.RATE_LIMIT_BACKOFF)


def test_retry_after_wins_and_what_is_left_is_spread_over_the_window() -> None:
    told = Observation.failed(1000.0, ErrorKind.RATE_LIMITED,
                              rate_limit=RateLimit(retry_after=7.0, reset_at=1060.0))
    assert plan(told) == budget.BudgetPlan(pause=7.0)
    left = Observation.present(1000.0, rate_limit=RateLimit(remaining=30, reset_at=1100.0))
    assert plan(left) == budget.BudgetPlan(remaining=30, rate=pytest.approx(0.3))
    plenty = Observation.present(1000.0, rate_limit=RateLimit(remaining=10**6, reset_at=1100.0))
    assert plan(plenty) == budget.BudgetPlan(remaining=10**6, rate=5.0)  # never above config
    back = Observation.present(1000.0, rate_limit=RateLimit(remaining=None))
    assert plan(back, current=0.3) == budget.BudgetPlan(rate=5.0)


# ------------------------------------------------------------------ holds

def absent_state(at: float) -> tuple[AccountState, bool]:
    return AccountState(State.DOWN, first_absent_at=at), False


def test_an_anomaly_holds_then_pages_once_and_releases_when_it_clears() -> None:
    verdict = anomaly.evaluate([absent_state(500.0), absent_state(480.0),
                                absent_state(490.0)], 5, 510.0, CONFIG.platforms["x"].anomaly)
    state, actions = holds.anomaly_step(holds.HoldState(), "x", verdict, [500.0, 480.0, 490.0],
                                        510.0, CONFIG)
    assert state.anomalies == {"x": 480.0}  # the earliest onset: one dedup key
    hold, page = actions
    assert hold == holds.Hold(holds.ANOMALY_KINDS, "x")
    assert isinstance(page, holds.Page) and page.notification.action == "trigger"
    assert page.notification.dedup_key == "accmon/x/anomaly-480"
    assert holds.held(state, "x", "vanished") and not holds.held(state, "x", "blind")
    again, more = holds.anomaly_step(state, "x", verdict, [], 520.0, CONFIG)
    assert (again, more) == (state, [])  # still on: nothing new
    clear = anomaly.evaluate([], 5, 2000.0, CONFIG.platforms["x"].anomaly)
    done, actions = holds.anomaly_step(state, "x", clear, [], 2000.0, CONFIG)
    assert done.anomalies == {}
    resolve, release = actions
    assert isinstance(resolve, holds.Page) and resolve.notification.action == "resolve"
    assert resolve.notification.dedup_key == "accmon/x/anomaly-480"
    assert isinstance(release, holds.Release) and release.platform == "x"


def test_own_blindness_holds_blind_pages_everywhere() -> None:
    blind = [blindness.BlindAccount("x", AccountState(State.UP, blind=True,
                                                      last_decisive_at=100.0), "connection")]
    verdict = blindness.evaluate(blind * 3, 3, CONFIG.monitor.own_blindness)
    state, (hold, page) = holds.blindness_step(holds.HoldState(), verdict, 900.0, CONFIG)
    assert state.own_blind == 100.0 and hold == holds.Hold(holds.BLIND_KINDS, None)
    assert isinstance(page, holds.Page) and page.owner.team == "sre"
    assert holds.held(state, "mastodon", "blind") and not holds.held(state, "x", "vanished")
    clear = blindness.evaluate(blind[:0], 3, CONFIG.monitor.own_blindness)
    ended, (resolve, release) = holds.blindness_step(state, clear, 950.0, CONFIG)
    assert ended.own_blind is None and isinstance(resolve, holds.Page)
    # Released blind pages wait the grace: accounts answering a moment later drop theirs.
    assert isinstance(release, holds.Release) and release.delay == 120.0


def test_grace_only_where_a_hold_could_trip() -> None:
    assert holds.grace(CONFIG, "x", 3, False, 3) == holds.Grace(15.0, 120.0)
    assert holds.grace(CONFIG, "x", 2, False, 2) == holds.Grace(0.0, 0.0)
    assert holds.grace(CONFIG, "x", 1, True, 2).vanished == 15.0  # a canary can trip it


def test_holds_that_ended_while_stopped_are_released_after_a_restart() -> None:
    actions = holds.stale_releases(holds.HoldState(anomalies={"y": 1.0}), ["x", "y"],
                                   {"x": 2, "y": 5, None: 1})
    assert [(a.kinds, a.platform) for a in actions if isinstance(a, holds.Release)] == [
        (holds.ANOMALY_KINDS, "x"), (holds.BLIND_KINDS, None)]


# ------------------------------------------------------------------ pages

def vanished_event() -> Event:
    return Event(EventKind.VANISHED, KEY, 100.0, State.SUSPECT, State.DOWN,
                 AbsentReason.DEACTIVATED, {"absent_streak": 2, "first_absent_at": 90.0})


def recovered_event() -> Event:
    return Event(EventKind.RECOVERED, KEY, 110.0, State.DOWN, State.UP,
                 AbsentReason.DEACTIVATED, {"outage_id": 7, "duration": 20.0})


def row(row_id: int, notifier: str, status: OutboxStatus, payload: dict[str, Any]) -> OutboxRow:
    return OutboxRow(row_id, notifier, "trigger", "accmon/x/realDonaldTrump/outage-7", payload,
                     100.0, 0, 115.0, status, None)


def test_a_vanish_page_waits_its_grace_and_is_held_during_an_anomaly() -> None:
    planned = pages.plan([vanished_event()], ACCOUNT, CONFIG, 7, holds.HoldState(),
                         holds.Grace(vanished=15.0), {})
    ((index, item),) = planned.items
    assert (index, item.notifier, item.action, item.delay, item.status) == (
        0, "pd", "trigger", 15.0, "pending")
    assert item.dedup_key == "accmon/x/realDonaldTrump/outage-7"
    during = pages.plan([vanished_event()], ACCOUNT, CONFIG, 7,
                        holds.HoldState(anomalies={"x": 1.0}), holds.Grace(), {})
    assert [i.status for _, i in during.items] == ["held"]


def test_an_outage_over_before_its_page_went_out_is_a_brief_outage_not_a_page() -> None:
    trigger = pages.plan([vanished_event()], ACCOUNT, CONFIG, 7, holds.HoldState(),
                         holds.Grace(), {}).items[0][1]
    waiting = row(41, "pd", OutboxStatus.PENDING, trigger.payload)
    planned = pages.plan([recovered_event()], ACCOUNT, CONFIG, None, holds.HoldState(),
                         holds.Grace(), {"accmon/x/realDonaldTrump/outage-7": [waiting]})
    assert planned.drop == [(41, pages.UNSENT_WHY)]
    ((_, brief),) = planned.items  # no resolve for a page nobody got
    assert (brief.notifier, brief.action) == ("chat", "notify")
    assert brief.payload["kind"] == "brief_outage"
    assert "came back before its page went out" in brief.payload["summary"]


def test_a_held_trigger_is_dropped_silently_and_a_sent_one_is_resolved() -> None:
    held_row = row(41, "pd", OutboxStatus.HELD, {})
    quiet = pages.plan([recovered_event()], ACCOUNT, CONFIG, None, holds.HoldState(),
                       holds.Grace(), {"accmon/x/realDonaldTrump/outage-7": [held_row]})
    assert quiet.items == [] and quiet.drop == [(41, pages.UNSENT_WHY)]
    sent = pages.plan([recovered_event()], ACCOUNT, CONFIG, None, holds.HoldState(),
                      holds.Grace(), {})
    assert [(i.notifier, i.action) for _, i in sent.items] == [("pd", "resolve")]


def test_the_keys_a_decision_resolves() -> None:
    assert pages.resolving_keys([vanished_event(), recovered_event()], ACCOUNT, CONFIG,
                                7) == ["accmon/x/realDonaldTrump/outage-7"]


# ------------------------------------------------------------------ readiness

def test_health_needs_readiness_and_a_scheduler_within_its_interval() -> None:
    assert readiness.health_problem({}, {"x": (10.0, 3)}, {"x": 60.0}) is None
    assert "x: scheduler 90s behind" in (
        readiness.health_problem({}, {"x": (90.0, 3)}, {"x": 60.0}) or "")
    assert readiness.health_problem({"store": "locked"}, {}, {}) == "locked"
