"""The pure account state machine: ``(state, observation, policy) -> (new_state, events)``.

No I/O, no clock, no globals, so every rule can be tested with plain data. The shell
(scheduler, store, notifiers) owns time and persistence; this module only decides.

States: ``unknown -> up <-> suspect -> down -> up``. Only ``absent`` answers move an
account toward ``down`` and only ``present`` answers move it back; ``error`` answers never
change the state or a streak, they can only make the account *blind* (no decisive answer
for longer than ``policy.staleness``), which is its own alert, distinct from "vanished".

Event conventions (consumers rely on them):

* every state change emits exactly one ``TRANSITION``; entering ``down`` adds ``VANISHED``
  and leaving it adds ``RECOVERED``, always after the ``TRANSITION``;
* a ``TRANSITION``'s ``reason`` is the absence reason involved: the new one when entering
  ``suspect``/``down``, the one being cleared when going back ``up`` (None for unknown->up);
* ``SIGHTED`` comes first among the events of the observation that ends blindness;
* ``BLIND``/``SIGHTED`` carry ``old_state == new_state`` (blindness is not a state change);
* ``details`` hold only str/int/float/None values, so they serialise to JSON unchanged.
"""

from __future__ import annotations

from dataclasses import fields, replace

from monitor.model import (
    AbsentReason,
    AccountKey,
    AccountState,
    BlindDetails,
    Event,
    EventKind,
    Observation,
    Policy,
    RecoveredDetails,
    Result,
    SightedDetails,
    State,
    TransitionDetails,
    VanishedDetails,
)

__all__ = ["next_delay", "stale_at", "step", "tick", "watching"]

Transition = tuple[AccountState, list[Event]]


def step(key: AccountKey, st: AccountState, obs: Observation, policy: Policy) -> Transition:
    """Apply one observation (``obs.at`` is 'now').

    Errors are routed away from the decisive paths first, so no error can ever reach the
    code that counts streaks or changes the state.
    """
    if obs.result is Result.ERROR:
        return _on_error(key, st, obs, policy)
    if obs.result is Result.PRESENT and st.state is State.UP and not st.blind:
        # The steady state, nearly every probe: one copy, no events. (In UP the streaks
        # and absence fields are already clear: every way into UP resets them.)
        return _seen_present(st, obs.at), []
    sighted = [_sighted_event(key, st, obs)] if st.blind else []
    seen = replace(
        _stamp_first_observation(st, obs.at),
        last_observed_at=obs.at,
        last_decisive_at=obs.at,
        blind=False,
    )
    if obs.result is Result.PRESENT:
        new, events = _on_present(key, seen, obs, policy)
    else:
        new, events = _on_absent(key, seen, obs, policy)
    return new, sighted + events


def tick(key: AccountKey, st: AccountState, now: float, policy: Policy,
         why: str | None = None) -> Transition:
    """Time passing with no observation: only staleness -> blind can happen here.

    Needed because a probe that hangs or a scheduler that stalls produces no error
    observation at all, yet we are just as blind; the timer catches that case. ``why`` is
    the shell's word for it (e.g. "not probed: scheduler behind"), carried in the event.
    """
    if not _is_stale(st, now, policy):
        return st, []
    return replace(st, blind=True), [_blind_event(key, st, now, error=why)]


def stale_at(st: AccountState, policy: Policy) -> float | None:
    """The moment after which :func:`tick` finds ``st`` stale (it goes blind once ``now`` is
    past it), or None while it is already blind (only a decisive answer, which is an event,
    ends that). Observations only ever move it later, so the shell may look at an account
    first at this moment instead of at every tick."""
    if st.blind:
        return None
    ref = blind_reference(st)
    return None if ref is None else ref + policy.staleness


def next_delay(st: AccountState, policy: Policy) -> float:
    """Seconds until this account should be probed again.

    A pending decision (suspect, or down with a recovery under way) is re-checked at the
    quick ``confirm_interval`` so a page (or its resolution) is not delayed by a full
    interval per confirming observation; everything else waits the normal ``interval``.
    """
    if st.state is State.SUSPECT:
        return policy.confirm_interval
    if st.state is State.DOWN and st.present_streak > 0:
        return policy.confirm_interval
    return policy.interval


# The fields :func:`_seen_present` copies by position, in AccountState's order: checked at
# import, so a field added to AccountState fails loudly here instead of being dropped.
_STATE_FIELDS = ("state", "absent_streak", "present_streak", "reason", "last_present_at",
                 "first_absent_at", "last_absent_at", "first_recovered_at", "last_observed_at",
                 "last_decisive_at", "blind", "outage_id", "since", "watched_since")
if tuple(f.name for f in fields(AccountState)) != _STATE_FIELDS:
    raise ImportError("monitor.state._seen_present must copy every field of AccountState")


def _seen_present(st: AccountState, at: float) -> AccountState:
    """``replace(st, last_observed_at=at, last_decisive_at=at, last_present_at=at)`` as a
    positional copy: the steady state's one allocation, ~6x cheaper than
    dataclasses.replace (which looks up and getattr()s each of the 14 fields by name)."""
    return AccountState(st.state, st.absent_streak, st.present_streak, st.reason, at,
                        st.first_absent_at, st.last_absent_at, st.first_recovered_at, at, at,
                        st.blind, st.outage_id, st.since, st.watched_since)


# --- errors and blindness -------------------------------------------------------------


def _on_error(key: AccountKey, st: AccountState, obs: Observation, policy: Policy) -> Transition:
    """An error says nothing about the account: record that we looked, maybe go blind."""
    looked = replace(_stamp_first_observation(st, obs.at), last_observed_at=obs.at)
    if not _is_stale(looked, obs.at, policy):
        return looked, []
    error = obs.error.value if obs.error is not None else None
    return replace(looked, blind=True), [_blind_event(key, looked, obs.at, error)]


def _stamp_first_observation(st: AccountState, at: float) -> AccountState:
    """Give a never-decided account a start time, so blindness has something to measure from."""
    if st.state is State.UNKNOWN and st.since is None:
        return replace(st, since=at)
    return st


def watching(st: AccountState, now: float) -> AccountState:
    """This process starts watching the account now (see ``AccountState.watched_since``)."""
    return replace(st, watched_since=now)


def blind_reference(st: AccountState) -> float | None:
    """When we last knew something: the last decisive answer, else when watching began;
    never earlier than this process began watching."""
    ref = st.last_decisive_at if st.last_decisive_at is not None else st.since
    if st.watched_since is None:
        return ref
    return st.watched_since if ref is None else max(ref, st.watched_since)


def _is_stale(st: AccountState, now: float, policy: Policy) -> bool:
    """True when a not-yet-blind account has had no decisive answer for over ``staleness``."""
    ref = blind_reference(st)
    return not st.blind and ref is not None and now - ref > policy.staleness


def _blind_event(key: AccountKey, st: AccountState, at: float, error: str | None) -> Event:
    ref = blind_reference(st)
    details = BlindDetails(
        last_decisive_at=st.last_decisive_at,
        last_observed_at=st.last_observed_at,
        error=error,
        stale_for=at - ref if ref is not None else None,
    )
    return Event(EventKind.BLIND, key, at, st.state, st.state, st.reason, details)


def _sighted_event(key: AccountKey, st: AccountState, obs: Observation) -> Event:
    ref = blind_reference(st)
    details = SightedDetails(
        last_decisive_at=st.last_decisive_at,
        result=obs.result.value,
        unseen_for=obs.at - ref if ref is not None else None,
    )
    return Event(EventKind.SIGHTED, key, obs.at, st.state, st.state, st.reason, details)


# --- present --------------------------------------------------------------------------


def _on_present(key: AccountKey, st: AccountState, obs: Observation, policy: Policy) -> Transition:
    """Present ends any suspicion at once; a confirmed outage needs ``recovery_threshold``."""
    if st.state is State.DOWN:
        return _present_while_down(key, st, obs, policy)
    up = _up(st, obs.at)
    if st.state is State.UP:
        return up, []
    return _change(key, st, up, obs.at, st.reason)


def _up(st: AccountState, at: float) -> AccountState:
    """UP, seen present at ``at``: every absence field and streak cleared (every way into
    UP goes through here, which the steady-state shortcut in :func:`step` relies on)."""
    return replace(st, state=State.UP, absent_streak=0, present_streak=0, reason=None,
                   first_absent_at=None, last_absent_at=None, first_recovered_at=None,
                   outage_id=None, last_present_at=at)


def _present_while_down(
    key: AccountKey, st: AccountState, obs: Observation, policy: Policy
) -> Transition:
    """Count towards recovery; ``last_present_at`` keeps the pre-outage sighting until then."""
    first = st.first_recovered_at if st.first_recovered_at is not None else obs.at
    counted = replace(
        st, present_streak=st.present_streak + 1, first_recovered_at=first, absent_streak=0
    )
    if counted.present_streak < policy.recovery_threshold:
        return counted, []
    return _recover(key, st, counted, obs)


def _recover(
    key: AccountKey, old: AccountState, counted: AccountState, obs: Observation
) -> Transition:
    """Leave DOWN: report the outage with honest bounds and forget it."""
    up = _up(counted, obs.at)
    new, events = _change(key, old, up, obs.at, old.reason)
    recovered_at = counted.first_recovered_at
    duration = (
        recovered_at - old.first_absent_at
        if recovered_at is not None and old.first_absent_at is not None
        else None
    )
    details = RecoveredDetails(
        last_present_at=old.last_present_at,
        first_absent_at=old.first_absent_at,
        last_absent_at=old.last_absent_at,
        recovered_at=recovered_at,
        duration=duration,
        outage_id=old.outage_id,
    )
    recovered = Event(EventKind.RECOVERED, key, obs.at, old.state, State.UP, old.reason, details)
    return new, [*events, recovered]


# --- absent ---------------------------------------------------------------------------


def _on_absent(key: AccountKey, st: AccountState, obs: Observation, policy: Policy) -> Transition:
    """Extend (or start) the absent streak; confirm DOWN once it reaches the threshold."""
    if st.state is State.DOWN:
        return _absent_while_down(st, obs), []
    counted = _count_absent(st, obs)
    if counted.absent_streak >= policy.failure_threshold:
        return _vanish(key, st, counted, obs)
    if st.state is State.SUSPECT:
        return counted, []
    return _change(key, st, replace(counted, state=State.SUSPECT), obs.at, obs.reason)


def _count_absent(st: AccountState, obs: Observation) -> AccountState:
    """Suspect extends its streak; unknown/up start a new one at this observation."""
    if st.state is State.SUSPECT:
        return replace(
            st, absent_streak=st.absent_streak + 1, last_absent_at=obs.at, reason=obs.reason
        )
    return replace(
        st,
        absent_streak=1,
        present_streak=0,
        first_absent_at=obs.at,
        last_absent_at=obs.at,
        reason=obs.reason,
    )


def _absent_while_down(st: AccountState, obs: Observation) -> AccountState:
    """Still gone: any recovery in progress starts over, the outage keeps its start."""
    return replace(
        st,
        absent_streak=st.absent_streak + 1,
        present_streak=0,
        first_recovered_at=None,
        last_absent_at=obs.at,
        reason=obs.reason,
    )


def _vanish(
    key: AccountKey, old: AccountState, counted: AccountState, obs: Observation
) -> Transition:
    """Enter DOWN: the page-worthy decision. ``outage_id`` is left for the store to assign."""
    new, events = _change(key, old, replace(counted, state=State.DOWN), obs.at, obs.reason)
    details = VanishedDetails(
        last_present_at=counted.last_present_at,
        first_absent_at=counted.first_absent_at,
        confirmed_at=obs.at,
        absent_streak=counted.absent_streak,
        evidence=obs.evidence,
    )
    vanished = Event(EventKind.VANISHED, key, obs.at, old.state, State.DOWN, obs.reason, details)
    return new, [*events, vanished]


# --- shared ---------------------------------------------------------------------------


def _change(
    key: AccountKey,
    old: AccountState,
    new: AccountState,
    at: float,
    reason: AbsentReason | None,
) -> Transition:
    """Stamp ``since`` and emit the one TRANSITION every state change must produce."""
    details = TransitionDetails(previous_since=old.since)
    event = Event(EventKind.TRANSITION, key, at, old.state, new.state, reason, details)
    return replace(new, since=at), [event]
