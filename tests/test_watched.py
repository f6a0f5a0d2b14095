"""A decision is shown only once committed: Watched.state (shown) and Watched.working (what
the state machine goes on from) while the writer holds decisions of the account."""

from __future__ import annotations

from monitor.config import AccountConfig
from monitor.model import AccountKey, AccountState, Policy, State
from monitor.watchlist import Watched

SHOWN = AccountState(state=State.UP)


def watched() -> Watched:
    return Watched(AccountKey("x", "alice"), True, SHOWN,
                   config=AccountConfig(platform="x", handle="alice"), policy=Policy())


def state(name: State) -> AccountState:
    return AccountState(state=name)  # a new object each time: compared by identity below


def test_with_nothing_being_written_a_step_is_shown_at_once() -> None:
    w, new = watched(), state(State.UP)
    w.stepped(new)
    assert w.state is new and w.working is new and w.ahead is None


def test_a_decision_is_worked_from_at_once_and_shown_once_committed() -> None:
    w, down = watched(), state(State.DOWN)
    w.decided(down)
    assert (w.state, w.working) == (SHOWN, down)
    w.committed(down)
    assert w.state is down and w.ahead is None


def test_steps_after_a_decision_wait_for_its_commit_then_show() -> None:
    w, down, later = watched(), state(State.DOWN), state(State.DOWN)
    w.decided(down)
    w.stepped(later)  # an answer that changes nothing to write, e.g. its probe time
    assert w.state is SHOWN and w.working is later
    w.committed(down)
    assert w.state is later and w.ahead is None  # nothing else pending: the newest shows


def test_with_a_later_decision_pending_a_commit_shows_only_its_own_state() -> None:
    w = watched()
    suspect, step1, down, step2 = (state(s) for s in (State.SUSPECT, State.SUSPECT,
                                                      State.DOWN, State.DOWN))
    w.decided(suspect)
    w.stepped(step1)
    w.decided(down)
    w.stepped(step2)
    w.committed(suspect)
    assert w.state is suspect and w.working is step2  # down is not committed yet
    w.committed(down)
    assert w.state is step2 and w.ahead is None


def test_a_skipped_write_does_not_freeze_what_is_shown() -> None:
    """The writer skips a write that fails as a bug (its done never runs): the next
    committed decision still brings what is shown up to date."""
    w, lost, down = watched(), state(State.SUSPECT), state(State.DOWN)
    w.decided(lost)
    w.decided(down)
    w.committed(down)
    assert w.state is down and w.ahead is None
