"""SQLite store: versioned schema, one transaction per decision, state survives restarts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from monitor.model import AbsentReason, AccountKey, AccountState, Event, EventKind, State
from monitor.store import MIGRATIONS, OutboxItem, Store, StoreError

KEY = AccountKey("x", "realDonaldTrump")


def vanished(at: float) -> tuple[AccountState, list[Event]]:
    st = AccountState(state=State.DOWN, absent_streak=2, reason=AbsentReason.DEACTIVATED,
                      last_present_at=at - 60, first_absent_at=at - 10, last_absent_at=at,
                      since=at)
    details = {"last_present_at": at - 60, "first_absent_at": at - 10, "confirmed_at": at}
    events = [Event(EventKind.TRANSITION, KEY, at, State.SUSPECT, State.DOWN,
                    AbsentReason.DEACTIVATED),
              Event(EventKind.VANISHED, KEY, at, State.SUSPECT, State.DOWN,
                    AbsentReason.DEACTIVATED, details)]  # type: ignore[arg-type]
    return st, events


def recovered(at: float, outage_id: int) -> tuple[AccountState, list[Event]]:
    st = AccountState(state=State.UP, last_present_at=at, since=at)
    details = {"outage_id": outage_id, "recovered_at": at, "last_absent_at": at - 5,
               "first_absent_at": at - 670, "duration": 660.0}
    return st, [Event(EventKind.TRANSITION, KEY, at, State.DOWN, State.UP),
                Event(EventKind.RECOVERED, KEY, at, State.DOWN, State.UP,
                      details=details)]  # type: ignore[arg-type]


def test_fresh_file_gets_the_latest_schema(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    assert store.schema_version == len(MIGRATIONS)
    store.close()
    assert Store(tmp_path / "s.db").schema_version == len(MIGRATIONS)  # idempotent


def test_a_newer_schema_is_refused_rather_than_corrupted(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(StoreError, match="newer than this build"):
        Store(path)


def test_decision_writes_state_outage_transitions_and_outbox_together(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    st, events = vanished(1000.0)
    item = OutboxItem("pagerduty", "trigger", "x/realDonaldTrump/1", {"summary": "gone"})
    st, ids = store.decide(KEY, st, events, "25073877", 1000.0, [(1, item)])
    assert st.outage_id is not None and len(ids) == 2
    (outage,) = store.outages()
    assert (outage.id, outage.reason, outage.first_seen_absent_at) == (st.outage_id,
                                                                       "deactivated", 990.0)
    assert store.outbox_pending() == {"pagerduty": 1}
    row = store.db.execute("SELECT transition_id FROM outbox").fetchone()
    assert row[0] == ids[1]
    assert store.load_accounts()[KEY].state == st


def test_a_failed_decision_leaves_nothing_behind(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    st, events = vanished(1000.0)
    bad = OutboxItem("pagerduty", "trigger", "k", {"not json": object()})
    with pytest.raises(TypeError):
        store.decide(KEY, st, events, None, 1000.0, [(1, bad)])
    assert store.outages() == [] and store.load_accounts() == {}
    assert store.transitions() == []


def test_restart_resumes_state_and_the_open_outage_stays_one(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    st, _ = store.decide(KEY, *vanished(1000.0), "25073877", 1000.0)
    store.close()

    store = Store(path)  # the "restart"
    resumed = store.load_accounts()[KEY]
    assert resumed.state == st and resumed.account_id == "25073877"
    new, events = recovered(1660.0, resumed.state.outage_id or -1)
    store.decide(KEY, new, events, "25073877", 1660.0)
    (outage,) = store.outages()
    assert outage.recovered_at == 1660.0
    assert outage.duration == 670.0
    assert outage.duration_bounds == (665.0, 720.0)
    assert [t["new_state"] for t in store.transitions()] == ["down", "down", "up", "up"]


def test_a_version_1_file_is_migrated_in_place_keeping_its_data(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    db = sqlite3.connect(path)
    for statement in MIGRATIONS[0].split(";"):
        if statement.strip():
            db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO accounts (platform, handle, account_id, state, since, outage_id,"
               " data, updated_at) VALUES ('x', 'realDonaldTrump', '25073877', 'up', 1.0,"
               " NULL, '{\"state\": \"up\", \"since\": 1.0}', 1.0)")
    db.commit()
    db.close()
    store = Store(path)
    assert store.schema_version == len(MIGRATIONS) >= 2
    saved = store.load_accounts()[KEY]
    assert (saved.state.state, saved.account_id) == (State.UP, "25073877")
    assert saved.identity.current_handle is None  # the new column, empty for old rows
    store.save_cursor("jetstream", 42, 2.0)  # the new table
    assert store.load_cursor("jetstream") == 42


def test_a_state_is_stored_as_the_json_of_all_its_fields() -> None:
    """The hand-rolled serialisation (asdict deep-copies, on every decision) says the same
    as ``dataclasses.asdict`` for a state with every field set."""
    import dataclasses
    import json

    from monitor.store import _state_from_json, _state_to_json

    values: dict[str, object] = {"state": State.DOWN, "reason": AbsentReason.DELETED,
                                 "blind": True}
    for n, (name, f) in enumerate(AccountState.__dataclass_fields__.items()):
        if name not in values:
            values[name] = n + 0.5 if "float" in str(f.type) else n
    st = AccountState(**values)  # type: ignore[arg-type]
    assert _state_to_json(st) == json.dumps(dataclasses.asdict(st))
    assert _state_from_json(_state_to_json(st)) == st


_times = hs.one_of(hs.none(), hs.floats(), hs.integers(-2**70, 2**70), hs.booleans())


@settings(max_examples=300, deadline=None)
@given(hs.builds(
    AccountState, state=hs.sampled_from(State), absent_streak=hs.integers(0, 10**6),
    present_streak=hs.integers(0, 10**6),
    reason=hs.one_of(hs.none(), hs.sampled_from(AbsentReason), hs.text(max_size=12)),
    last_present_at=_times, first_absent_at=_times, last_absent_at=_times,
    first_recovered_at=_times, last_observed_at=_times, last_decisive_at=_times,
    blind=hs.one_of(hs.booleans(), hs.integers(0, 2)),
    outage_id=hs.one_of(hs.none(), hs.integers(0, 2**62)), since=_times,
    watched_since=_times))
def test_a_state_written_field_by_field_is_json_dumps_of_its_fields(
        state: AccountState) -> None:
    """_state_to_json writes the JSON itself (json.dumps escapes every key again each
    time): the very text json.dumps writes, for any values, inf, nan and bools included."""
    import dataclasses
    import json

    from monitor.store import _state_to_json

    assert _state_to_json(state) == json.dumps(dataclasses.asdict(state))


def test_the_decision_path_encodes_json_exactly_as_json_dumps() -> None:
    """decide encodes with one reused encoder (store._dumps): the text must be json.dumps's
    own, byte for byte, for every kind of value a payload, a state or details carry."""
    import json

    from monitor.store import _dumps

    values: list[object] = [
        {}, [], "", 0, -1.5, 1e300, float("inf"), float("-inf"), True, None,
        {"summary": "PROTECTED x/é \"quoted\" \\ \n\t\u2028 🙂", "n": 3, "f": 0.1},
        {"nested": {"list": [1, 2.5, "three", None, {"deep": [False]}]}},
        {1: "int key", 2.5: "float key", False: "bool key", None: "null key"},
        {"state": State.DOWN, "reason": AbsentReason.SUSPENDED},  # str enums, as stored
    ]
    for value in values:
        assert _dumps(value) == json.dumps(value), value
    with pytest.raises(TypeError, match="not JSON serializable"):
        _dumps({"payload": object()})



# ------------------------------------------------------------- many decisions, one write


Decision = tuple[AccountKey, AccountState, list[Event], str | None,
                 list[tuple[int, OutboxItem]]]


def _decisions(accounts: int) -> list[Decision]:
    """Each account vanishes (a page), recovers (a resolve) and vanishes again: three
    decisions an account, the accounts interleaved, every other one with a known id. The
    outage ids are left to decide, so two stores given these in order allocate the same."""
    out = []
    for step in range(3):
        for i in range(accounts):
            key = AccountKey("x", f"user{i}")
            at = 1000.0 * (step + 1) + i
            st, events = recovered(at, i + 1) if step == 1 else vanished(at)
            events = [Event(e.kind, key, e.at, e.old_state, e.new_state, e.reason, e.details)
                      for e in events]
            item = OutboxItem("pd", "resolve" if step == 1 else "trigger",
                              f"x/user{i}/{step}", {"step": step, "i": i})
            out.append((key, st, events, f"id{i}" if i % 2 else None, [(1, item)]))
    return out


def _contents(store: Store) -> dict[str, list[tuple[object, ...]]]:
    return {table: [tuple(r) for r in store.db.execute(f"SELECT * FROM {table} ORDER BY 1, 2")]
            for table in ("accounts", "outages", "transitions", "outbox", "sqlite_sequence")}


def test_many_decisions_in_one_transaction_write_what_one_each_writes(tmp_path: Path) -> None:
    """decide holds its rows and writes them many to an INSERT (32, then powers of two):
    75 decisions (64 + 8 + 2 + 1 rows a table) leave the very rows, ids included, that 75
    decisions committed one by one leave."""
    one_each, together = Store(tmp_path / "one.db"), Store(tmp_path / "many.db")
    results = [one_each.decide(key, st, events, who, 1.0, items)
               for key, st, events, who, items in _decisions(25)]
    with together.transaction():
        assert [together.decide(key, st, events, who, 1.0, items)
                for key, st, events, who, items in _decisions(25)] == results
    assert _contents(together) == _contents(one_each)
    assert len(_contents(together)["transitions"]) == 150


def test_held_rows_are_seen_inside_their_transaction_and_gone_with_its_rollback(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    with pytest.raises(ZeroDivisionError), store.transaction():
        st, ids = store.decide(KEY, *vanished(1000.0), None, 1000.0,
                               [(1, OutboxItem("pd", "trigger", "k", {}))])
        assert [t["id"] for t in store.transitions()] == ids == [1, 2]  # a read writes them
        # a recovery in the same transaction finds the outage it closes
        store.decide(KEY, *recovered(1600.0, st.outage_id or -1), None, 1600.0)
        assert store.outages(open_only=True) == []
        raise ZeroDivisionError
    assert store.transitions() == [] and store.outages() == [] and store.outbox_rows() == []
    # Nothing was written, so no id was used up: the next decision starts at 1 again, as
    # AUTOINCREMENT (its sqlite_sequence row rolled back) would.
    assert store.decide(KEY, *vanished(2000.0), None, 2000.0)[1] == [1, 2]


def test_transition_ids_are_never_reused_after_a_restart_or_after_rows_are_deleted(
        tmp_path: Path) -> None:
    """decide allocates transition ids itself (an outbox row refers to its transition
    before either is written): from past the largest id ever written, which sqlite_sequence
    keeps when the newest rows were deleted (by hand, or a pruner), as AUTOINCREMENT does."""
    path = tmp_path / "s.db"
    store = Store(path)
    _, first = store.decide(KEY, *vanished(1000.0), None, 1000.0)
    store.close()
    store = Store(path)  # a restart
    st, second = store.decide(KEY, *vanished(2000.0), None, 2000.0)
    assert first == [1, 2] and second == [3, 4]
    store.db.execute("DELETE FROM transitions WHERE id >= 2")  # the newest rows
    store.close()
    store = Store(path)
    _, third = store.decide(KEY, *recovered(3000.0, st.outage_id or -1), None, 3000.0)
    assert third == [5, 6]
    assert [t["id"] for t in store.transitions()] == [1, 5, 6]
    assert store.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'transitions'"
                            ).fetchone()[0] == 6
