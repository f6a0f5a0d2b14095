"""Exhaustive tests of the pure state machine (``monitor.state``).

Plain data in, plain data out: table-driven tests pin every (state, result) pair, scenario
tests pin the timestamps an outage is reported with, and hypothesis property tests check
the invariants the pager relies on over random observation sequences.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.model import (
    AbsentReason,
    AccountKey,
    AccountState,
    ErrorKind,
    Event,
    EventKind,
    Observation,
    Policy,
    Result,
    State,
)
from monitor.state import next_delay, step, tick

KEY = AccountKey("bluesky", "alice.example")
T = EventKind.TRANSITION
V = EventKind.VANISHED
R = EventKind.RECOVERED


# --- helpers --------------------------------------------------------------------------


def present(at: float) -> Observation:
    return Observation.present(at, evidence="200")


def absent(at: float, reason: AbsentReason = AbsentReason.SUSPENDED) -> Observation:
    return Observation.absent(at, reason, evidence="marker")


def error(at: float, kind: ErrorKind = ErrorKind.TIMEOUT) -> Observation:
    return Observation.failed(at, kind, evidence="timeout")


def policy(ft: int = 2, rt: int = 1, staleness: float = 600.0) -> Policy:
    return Policy(
        interval=60.0,
        failure_threshold=ft,
        recovery_threshold=rt,
        confirm_interval=10.0,
        staleness=staleness,
    )


def run(
    observations: list[Observation], pol: Policy, start: AccountState | None = None
) -> tuple[AccountState, list[Event], list[AccountState]]:
    """Feed observations in order; return the final state, all events and every state."""
    cur = start if start is not None else AccountState()
    events: list[Event] = []
    states: list[AccountState] = []
    for obs in observations:
        cur, new_events = step(KEY, cur, obs, pol)
        events.extend(new_events)
        states.append(cur)
    return cur, events, states


def kinds(events: list[Event]) -> list[EventKind]:
    return [e.kind for e in events]


# Canonical states, as the machine itself would leave them (t=0 present, t=10 absent).
UNKNOWN = AccountState()
UP = AccountState(
    state=State.UP, last_present_at=0.0, last_observed_at=0.0, last_decisive_at=0.0, since=0.0
)
SUSPECT = replace(
    UP,
    state=State.SUSPECT,
    absent_streak=1,
    reason=AbsentReason.SUSPENDED,
    first_absent_at=10.0,
    last_absent_at=10.0,
    last_observed_at=10.0,
    last_decisive_at=10.0,
    since=10.0,
)
DOWN = replace(
    SUSPECT,
    state=State.DOWN,
    absent_streak=3,
    last_absent_at=30.0,
    last_observed_at=30.0,
    last_decisive_at=30.0,
    since=30.0,
    outage_id=7,
)
DOWN_RECOVERING = replace(
    DOWN, present_streak=1, absent_streak=0, first_recovered_at=40.0, last_observed_at=40.0
)
STARTS = {
    "unknown": UNKNOWN,
    "up": UP,
    "suspect": SUSPECT,
    "down": DOWN,
    "down_recovering": DOWN_RECOVERING,
}
AT = 50.0


# --- every (state, result) pair, thresholds 1/2/3 ---------------------------------------

DECISIVE_TABLE = [
    # start, result, failure_threshold, recovery_threshold, expected state, expected events
    ("unknown", Result.PRESENT, 1, 1, State.UP, [T]),
    ("unknown", Result.PRESENT, 3, 3, State.UP, [T]),
    ("unknown", Result.ABSENT, 1, 1, State.DOWN, [T, V]),
    ("unknown", Result.ABSENT, 2, 1, State.SUSPECT, [T]),
    ("unknown", Result.ABSENT, 3, 1, State.SUSPECT, [T]),
    ("up", Result.PRESENT, 1, 1, State.UP, []),
    ("up", Result.PRESENT, 3, 3, State.UP, []),
    ("up", Result.ABSENT, 1, 1, State.DOWN, [T, V]),
    ("up", Result.ABSENT, 2, 1, State.SUSPECT, [T]),
    ("up", Result.ABSENT, 3, 1, State.SUSPECT, [T]),
    ("suspect", Result.PRESENT, 1, 1, State.UP, [T]),
    ("suspect", Result.PRESENT, 3, 3, State.UP, [T]),
    ("suspect", Result.ABSENT, 1, 1, State.DOWN, [T, V]),
    ("suspect", Result.ABSENT, 2, 1, State.DOWN, [T, V]),
    ("suspect", Result.ABSENT, 3, 1, State.SUSPECT, []),
    ("down", Result.PRESENT, 2, 1, State.UP, [T, R]),
    ("down", Result.PRESENT, 2, 2, State.DOWN, []),
    ("down", Result.PRESENT, 2, 3, State.DOWN, []),
    ("down", Result.ABSENT, 1, 1, State.DOWN, []),
    ("down", Result.ABSENT, 2, 2, State.DOWN, []),
    ("down", Result.ABSENT, 3, 3, State.DOWN, []),
    ("down_recovering", Result.PRESENT, 2, 2, State.UP, [T, R]),
    ("down_recovering", Result.PRESENT, 2, 3, State.DOWN, []),
    ("down_recovering", Result.ABSENT, 2, 2, State.DOWN, []),
]


@pytest.mark.parametrize(
    ("start", "result", "ft", "rt", "expected", "expected_kinds"), DECISIVE_TABLE
)
def test_decisive_observation_moves_state_as_the_table_says(
    start: str,
    result: Result,
    ft: int,
    rt: int,
    expected: State,
    expected_kinds: list[EventKind],
) -> None:
    obs = present(AT) if result is Result.PRESENT else absent(AT)
    old = STARTS[start]
    new, events = step(KEY, old, obs, policy(ft, rt))
    assert new.state is expected
    assert kinds(events) == expected_kinds
    assert new.last_observed_at == AT
    assert new.last_decisive_at == AT
    assert new.since == (AT if expected is not old.state else old.since)
    for event in events:
        assert (event.key, event.at, event.old_state, event.new_state) == (
            KEY,
            AT,
            old.state,
            expected,
        )


@pytest.mark.parametrize("start", list(STARTS))
@pytest.mark.parametrize(("ft", "rt"), [(1, 1), (2, 2), (3, 3)])
def test_error_observation_changes_nothing_but_last_observed_at(
    start: str, ft: int, rt: int
) -> None:
    old = STARTS[start]
    new, events = step(KEY, old, error(AT), policy(ft, rt))
    assert events == []
    expected_since = AT if old.state is State.UNKNOWN else old.since
    assert new == replace(old, last_observed_at=AT, since=expected_since)


# --- thresholds -----------------------------------------------------------------------


@pytest.mark.parametrize("ft", [1, 2, 3])
def test_down_is_confirmed_exactly_at_the_failure_threshold(ft: int) -> None:
    observations = [present(0.0)] + [absent(10.0 * i) for i in range(1, ft + 3)]
    _, _, states = run(observations, policy(ft))
    absent_states = [s.state for s in states[1:]]
    assert absent_states[: ft - 1] == [State.SUSPECT] * (ft - 1)
    assert absent_states[ft - 1 :] == [State.DOWN] * 3


@pytest.mark.parametrize("ft", [1, 2, 3])
def test_vanished_event_reports_the_outage_bounds(ft: int) -> None:
    observations = [present(5.0)] + [
        absent(10.0 * i, AbsentReason.DEACTIVATED) for i in range(1, ft + 1)
    ]
    final, events, _ = run(observations, policy(ft))
    vanished = [e for e in events if e.kind is V]
    assert len(vanished) == 1
    assert vanished[0].reason is AbsentReason.DEACTIVATED
    assert vanished[0].details == {
        "last_present_at": 5.0,
        "first_absent_at": 10.0,
        "confirmed_at": 10.0 * ft,
        "absent_streak": ft,
        "evidence": "marker",
    }
    assert final.outage_id is None  # the store assigns it
    assert (final.first_absent_at, final.last_absent_at) == (10.0, 10.0 * ft)


def test_entering_down_emits_transition_before_vanished() -> None:
    _, events = step(KEY, UP, absent(AT), policy(1))
    transition, vanished = events
    assert (transition.kind, vanished.kind) == (T, V)
    assert (transition.old_state, transition.new_state) == (State.UP, State.DOWN)
    assert transition.reason is AbsentReason.SUSPENDED


def test_suspect_keeps_first_absent_at_and_takes_the_latest_reason() -> None:
    new, _ = step(KEY, SUSPECT, absent(AT, AbsentReason.DELETED), policy(3))
    assert new.absent_streak == 2
    assert new.first_absent_at == SUSPECT.first_absent_at
    assert new.last_absent_at == AT
    assert new.reason is AbsentReason.DELETED


@pytest.mark.parametrize("start", ["unknown", "up", "suspect"])
def test_present_outside_down_clears_the_absence_record(start: str) -> None:
    new, _ = step(KEY, STARTS[start], present(AT), policy())
    assert new.state is State.UP
    assert (new.absent_streak, new.reason, new.first_absent_at, new.last_absent_at) == (
        0,
        None,
        None,
        None,
    )
    assert new.last_present_at == AT


def test_suspect_to_up_transition_names_the_cleared_reason() -> None:
    _, events = step(KEY, SUSPECT, present(AT), policy())
    assert [(e.kind, e.reason) for e in events] == [(T, AbsentReason.SUSPENDED)]


@pytest.mark.parametrize("rt", [1, 2, 3])
def test_recovery_is_confirmed_exactly_at_the_recovery_threshold(rt: int) -> None:
    pol = policy(ft=1, rt=rt)
    observations = [present(0.0), absent(10.0)] + [present(10.0 + 5 * i) for i in range(1, rt + 2)]
    _, events, states = run(observations, pol)
    after_presents = [s.state for s in states[2:]]
    assert after_presents[: rt - 1] == [State.DOWN] * (rt - 1)
    assert after_presents[rt - 1 :] == [State.UP, State.UP]
    recovered = [e for e in events if e.kind is R]
    assert len(recovered) == 1
    assert recovered[0].at == 10.0 + 5 * rt
    assert recovered[0].details["recovered_at"] == 15.0  # the first present sighting
    assert recovered[0].details["duration"] == 5.0


def test_recovered_event_reports_the_outage_and_state_forgets_it() -> None:
    new, events = step(KEY, DOWN_RECOVERING, present(AT), policy(rt=2))
    transition, recovered = events
    assert (transition.kind, recovered.kind) == (T, R)
    assert transition.reason is AbsentReason.SUSPENDED
    assert recovered.reason is AbsentReason.SUSPENDED
    assert recovered.details == {
        "last_present_at": 0.0,
        "first_absent_at": 10.0,
        "last_absent_at": 30.0,
        "recovered_at": 40.0,
        "duration": 30.0,
        "outage_id": 7,
    }
    assert new == replace(
        DOWN_RECOVERING,
        state=State.UP,
        absent_streak=0,
        present_streak=0,
        reason=None,
        first_absent_at=None,
        last_absent_at=None,
        first_recovered_at=None,
        outage_id=None,
        last_present_at=AT,
        last_observed_at=AT,
        last_decisive_at=AT,
        since=AT,
    )


def test_present_while_down_below_threshold_keeps_pre_outage_last_present_at() -> None:
    new, events = step(KEY, DOWN, present(AT), policy(rt=3))
    assert events == []
    assert (new.present_streak, new.first_recovered_at) == (1, AT)
    assert new.last_present_at == DOWN.last_present_at
    assert new.outage_id == DOWN.outage_id


def test_absent_while_recovering_restarts_the_recovery() -> None:
    new, events = step(KEY, DOWN_RECOVERING, absent(AT, AbsentReason.DELETED), policy(rt=2))
    assert events == []
    assert (new.present_streak, new.first_recovered_at) == (0, None)
    assert new.last_absent_at == AT
    assert new.reason is AbsentReason.DELETED
    assert new.first_absent_at == DOWN.first_absent_at
    assert new.outage_id == DOWN.outage_id
    assert new.since == DOWN.since


def test_recovered_at_is_the_first_present_of_the_streak_that_recovered() -> None:
    pol = policy(ft=1, rt=2)
    observations = [absent(0.0), present(10.0), absent(20.0), present(30.0), present(40.0)]
    final, events, _ = run(observations, pol)
    (recovered,) = [e for e in events if e.kind is R]
    assert recovered.details["recovered_at"] == 30.0
    assert recovered.details["last_absent_at"] == 20.0
    assert recovered.details["duration"] == 30.0
    assert recovered.details["last_present_at"] is None  # never seen present before
    assert final.state is State.UP


def test_outage_id_set_by_the_store_survives_until_recovery() -> None:
    pol = policy(ft=1, rt=2)
    down, _ = step(KEY, UP, absent(10.0), pol)
    down = replace(down, outage_id=42)
    for obs in (error(20.0), absent(30.0), present(40.0)):
        down, _ = step(KEY, down, obs, pol)
        assert down.outage_id == 42
    up, events = step(KEY, down, present(50.0), pol)
    assert up.outage_id is None
    assert events[-1].details["outage_id"] == 42


# --- flapping and errors --------------------------------------------------------------


@pytest.mark.parametrize("ft", [2, 3])
def test_flapping_within_the_failure_threshold_never_vanishes(ft: int) -> None:
    observations: list[Observation] = []
    t = 0.0
    for _ in range(20):
        for _ in range(ft - 1):
            t += 1
            observations.append(absent(t))
        t += 1
        observations.append(present(t))
    _, events, states = run(observations, policy(ft))
    assert V not in kinds(events)
    assert State.DOWN not in {s.state for s in states}


@pytest.mark.parametrize("ft", [1, 2, 3])
@pytest.mark.parametrize("rt", [1, 2, 3])
@pytest.mark.parametrize("kind", list(ErrorKind))
def test_errors_interleaved_everywhere_never_change_state(
    ft: int, rt: int, kind: ErrorKind
) -> None:
    decisive = [present(0.0)] + [absent(10.0 + i) for i in range(ft)]
    decisive += [present(20.0 + i) for i in range(rt)] + [absent(30.0)]
    interleaved: list[Observation] = []
    for obs in decisive:
        interleaved += [error(obs.at, kind), obs, error(obs.at, kind), error(obs.at, kind)]
    pol = policy(ft, rt)
    _, plain_events, plain_states = run(decisive, pol)
    _, mixed_events, mixed_states = run(interleaved, pol)
    assert [s.state for s in mixed_states[1::4]] == [s.state for s in plain_states]
    assert [s.state for s in mixed_states[3::4]] == [s.state for s in plain_states]
    assert kinds(mixed_events) == kinds(plain_events)


@pytest.mark.parametrize("ft", [1, 2, 3])
def test_only_errors_never_leave_unknown(ft: int) -> None:
    final, events, _ = run([error(float(t), k) for t, k in enumerate(ErrorKind)], policy(ft))
    assert final.state is State.UNKNOWN
    assert events == []


# --- blindness ------------------------------------------------------------------------


def test_errors_beyond_staleness_make_the_account_blind_once() -> None:
    pol = policy(staleness=100.0)
    observations = [present(0.0), error(50.0), error(100.0), error(101.0, ErrorKind.AUTH)]
    observations += [error(150.0), error(500.0)]
    final, events, states = run(observations, pol)
    assert [s.blind for s in states] == [False, False, False, True, True, True]
    assert kinds(events) == [T, EventKind.BLIND]
    blind = events[-1]
    assert (blind.at, blind.old_state, blind.new_state) == (101.0, State.UP, State.UP)
    assert blind.details["last_decisive_at"] == 0.0
    assert blind.details["error"] == "auth"
    assert final.state is State.UP


def test_blind_is_measured_from_the_first_observation_when_never_decisive() -> None:
    pol = policy(staleness=100.0)
    first, _ = step(KEY, UNKNOWN, error(1000.0), pol)
    assert first.since == 1000.0
    later, events = step(KEY, first, error(1100.0), pol)
    assert (later.blind, events) == (False, [])
    blind, events = step(KEY, later, error(1100.5), pol)
    assert blind.blind
    assert kinds(events) == [EventKind.BLIND]
    assert events[0].details["last_decisive_at"] is None
    assert events[0].old_state is State.UNKNOWN


def test_tick_makes_a_stale_account_blind_once() -> None:
    pol = policy(staleness=100.0)
    same, events = tick(KEY, UP, 100.0, pol)
    assert (same, events) == (UP, [])
    blind, events = tick(KEY, UP, 100.5, pol)
    assert blind == replace(UP, blind=True)
    assert kinds(events) == [EventKind.BLIND]
    assert events[0].details["error"] is None
    again, events = tick(KEY, blind, 1000.0, pol)
    assert (again, events) == (blind, [])
    _, events = step(KEY, blind, error(2000.0), pol)
    assert events == []


def test_tick_on_a_never_observed_account_does_nothing() -> None:
    assert tick(KEY, UNKNOWN, 1e9, policy(staleness=1.0)) == (UNKNOWN, [])


@pytest.mark.parametrize("start", list(STARTS))
def test_tick_never_changes_anything_but_blind(start: str) -> None:
    old = STARTS[start]
    new, _ = tick(KEY, old, 1e6, policy(staleness=1.0))
    assert replace(new, blind=old.blind) == old


def test_decisive_observation_ends_blindness_with_one_sighted_first() -> None:
    pol = policy(ft=1, staleness=100.0)
    blind, _ = tick(KEY, UP, 500.0, pol)
    down, events = step(KEY, blind, absent(600.0), pol)
    assert kinds(events) == [EventKind.SIGHTED, T, V]
    sighted = events[0]
    assert sighted.details == {"last_decisive_at": 0.0, "result": "absent", "unseen_for": 600.0}
    assert not down.blind
    _, events = step(KEY, down, absent(601.0), pol)
    assert events == []


def test_a_second_blind_period_alerts_again() -> None:
    pol = policy(staleness=10.0)
    observations = [present(0.0), error(11.0), error(12.0), present(13.0)]
    observations += [error(20.0), error(24.0), error(30.0)]
    _, events, _ = run(observations, pol)
    assert kinds(events) == [T, EventKind.BLIND, EventKind.SIGHTED, EventKind.BLIND]


def test_blind_unknown_account_sighted_then_transitions_up() -> None:
    pol = policy(staleness=10.0)
    final, events, _ = run([error(0.0), error(11.0), present(12.0)], pol)
    assert kinds(events) == [EventKind.BLIND, EventKind.SIGHTED, T]
    assert (final.state, final.blind, final.since) == (State.UP, False, 12.0)


# --- next_delay -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        ("unknown", 60.0),
        ("up", 60.0),
        ("suspect", 10.0),
        ("down", 60.0),
        ("down_recovering", 10.0),
    ],
)
def test_next_delay_is_quick_only_while_a_decision_is_pending(start: str, expected: float) -> None:
    assert next_delay(STARTS[start], policy()) == expected


def test_next_delay_ignores_blindness() -> None:
    assert next_delay(replace(UP, blind=True), policy()) == 60.0
    assert next_delay(replace(SUSPECT, blind=True), policy()) == 10.0


# --- properties over random sequences -------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One input to the machine: an observation, or a tick at ``at``."""

    obs: Observation | None
    at: float

    @property
    def decisive(self) -> bool:
        return self.obs is not None and self.obs.result is not Result.ERROR


@dataclass(frozen=True)
class Step:
    op: Op
    before: AccountState
    after: AccountState
    events: list[Event]


def _op(kind: str, at: float, reason: AbsentReason, err: ErrorKind) -> Op:
    if kind == "present":
        return Op(present(at), at)
    if kind == "absent":
        return Op(absent(at, reason), at)
    if kind == "error":
        return Op(error(at, err), at)
    return Op(None, at)


@st.composite
def op_sequences(draw: st.DrawFn) -> list[Op]:
    """Non-decreasing times; every kind of input, including ticks."""
    raw = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["present", "absent", "error", "tick"]),
                st.integers(0, 300),
                st.sampled_from(list(AbsentReason)),
                st.sampled_from(list(ErrorKind)),
            ),
            max_size=60,
        )
    )
    ops: list[Op] = []
    t = 1000.0
    for kind, gap, reason, err in raw:
        t += gap
        ops.append(_op(kind, t, reason, err))
    return ops


policies = st.builds(
    policy,
    ft=st.integers(1, 4),
    rt=st.integers(1, 3),
    staleness=st.sampled_from([0.0, 50.0, 200.0, 600.0]),
)


def trace(ops: list[Op], pol: Policy) -> list[Step]:
    cur = AccountState()
    steps: list[Step] = []
    for op in ops:
        if op.obs is None:
            new, events = tick(KEY, cur, op.at, pol)
        else:
            new, events = step(KEY, cur, op.obs, pol)
        steps.append(Step(op, cur, new, events))
        cur = new
    return steps


def all_events(steps: list[Step]) -> list[Event]:
    return [e for s in steps for e in s.events]


def decision_view(s: AccountState) -> tuple[object, ...]:
    """Everything a decision depends on or reports (not blindness or error bookkeeping)."""
    return (
        s.state,
        s.absent_streak,
        s.present_streak,
        s.reason,
        s.last_present_at,
        s.first_absent_at,
        s.last_absent_at,
        s.first_recovered_at,
        s.last_decisive_at,
        s.since,
    )


def decision_events(events: list[Event]) -> list[tuple[object, ...]]:
    """Decision events, minus ``previous_since`` (an error may legitimately start UNKNOWN)."""
    keep = {T, V, R}
    return [
        (e.kind, e.at, e.old_state, e.new_state, e.reason, _without_previous_since(e.details))
        for e in events
        if e.kind in keep
    ]


def _without_previous_since(details: dict[str, object]) -> str:
    return json.dumps({k: v for k, v in details.items() if k != "previous_since"}, sort_keys=True)


@settings(max_examples=400)
@given(ops=op_sequences(), pol=policies)
def test_errors_are_inert_for_the_decisive_state_sequence(ops: list[Op], pol: Policy) -> None:
    full = trace(ops, pol)
    decisive_only = trace([op for op in ops if op.decisive], pol)
    assert [decision_view(s.after) for s in full if s.op.decisive] == [
        decision_view(s.after) for s in decisive_only
    ]


@settings(max_examples=400)
@given(ops=op_sequences(), pol=policies)
def test_inserting_errors_never_creates_or_moves_a_vanished_event(
    ops: list[Op], pol: Policy
) -> None:
    with_errors = all_events(trace(ops, pol))
    without = all_events(trace([op for op in ops if op.decisive], pol))
    assert [e.at for e in with_errors if e.kind is V] == [e.at for e in without if e.kind is V]
    assert decision_events(with_errors) == decision_events(without)


@settings(max_examples=400)
@given(ops=op_sequences(), pol=policies)
def test_vanished_and_recovered_alternate_starting_with_vanished(
    ops: list[Op], pol: Policy
) -> None:
    pages = [e.kind for e in all_events(trace(ops, pol)) if e.kind in (V, R)]
    assert pages == [V, R] * (len(pages) // 2) + [V] * (len(pages) % 2)


@settings(max_examples=400)
@given(ops=op_sequences(), pol=policies)
def test_down_is_only_reached_after_threshold_consecutive_absents(
    ops: list[Op], pol: Policy
) -> None:
    decisive_results: list[Result] = []
    for s in trace(ops, pol):
        if s.op.decisive:
            assert s.op.obs is not None
            decisive_results.append(s.op.obs.result)
        if s.after.state is State.DOWN and s.before.state is not State.DOWN:
            recent = decisive_results[-pol.failure_threshold :]
            assert len(recent) == pol.failure_threshold
            assert set(recent) == {Result.ABSENT}


@settings(max_examples=400)
@given(ops=op_sequences(), pol=policies)
def test_recovered_duration_is_never_negative(ops: list[Op], pol: Policy) -> None:
    for e in all_events(trace(ops, pol)):
        if e.kind is R:
            d = e.details
            assert d["duration"] >= 0
            assert d["duration"] == d["recovered_at"] - d["first_absent_at"]
            assert d["first_absent_at"] <= d["last_absent_at"] <= d["recovered_at"] <= e.at


@settings(max_examples=400)
@given(ops=op_sequences(), pol=policies)
def test_every_state_change_emits_exactly_one_transition(ops: list[Op], pol: Policy) -> None:
    for s in trace(ops, pol):
        transitions = [e for e in s.events if e.kind is T]
        if s.after.state is s.before.state:
            assert transitions == []
            assert s.after.since == s.before.since or s.before.since is None
        else:
            assert [(e.old_state, e.new_state) for e in transitions] == [
                (s.before.state, s.after.state)
            ]
            assert s.after.since == s.op.at


@settings(max_examples=400)
@given(ops=op_sequences(), pol=policies)
def test_errors_and_ticks_never_change_state_or_streaks(ops: list[Op], pol: Policy) -> None:
    for s in trace(ops, pol):
        if not s.op.decisive:
            assert s.after.state is s.before.state
            assert s.after.absent_streak == s.before.absent_streak
            assert s.after.present_streak == s.before.present_streak
            assert {e.kind for e in s.events} <= {EventKind.BLIND}


@settings(max_examples=400)
@given(ops=op_sequences(), pol=policies)
def test_blind_and_sighted_alternate_and_match_the_blind_flag(ops: list[Op], pol: Policy) -> None:
    blind = False
    for s in trace(ops, pol):
        for e in s.events:
            if e.kind is EventKind.BLIND:
                assert not blind
                blind = True
            elif e.kind is EventKind.SIGHTED:
                assert blind
                blind = False
        assert s.after.blind == blind


@settings(max_examples=200)
@given(ops=op_sequences(), pol=policies)
def test_event_details_are_json_serialisable_scalars(ops: list[Op], pol: Policy) -> None:
    for e in all_events(trace(ops, pol)):
        assert e.key == KEY
        for value in e.details.values():
            assert value is None or isinstance(value, str | int | float)
        json.dumps(e.details, allow_nan=False)


@settings(max_examples=200)
@given(ops=op_sequences(), pol=policies)
def test_next_delay_is_always_one_of_the_two_policy_intervals(ops: list[Op], pol: Policy) -> None:
    for s in trace(ops, pol):
        pending = s.after.state is State.SUSPECT or (
            s.after.state is State.DOWN and s.after.present_streak > 0
        )
        expected = pol.confirm_interval if pending else pol.interval
        assert next_delay(s.after, pol) == expected
