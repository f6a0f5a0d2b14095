"""Every query the monitor runs on its hot path, and every pruning query, is answered from an
index: ``EXPLAIN QUERY PLAN`` of the very statements the store method executes (recorded as
it runs, with its own parameters) shows SEARCH, never a SCAN of a table.

Issue 10 measured why: without an index on ``dedup_key``, ``outbox_head``, ``has_held`` and
``last_notified`` scanned a 308k-row outbox, 65-75 ms each on the monitor's only thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from monitor.model import AccountKey
from monitor.store import AuditEntry, OutboxItem, OutboxStatus, Store
from tests.test_store import KEY, recovered, vanished

OUTAGE_KEY = "accmon/x/realDonaldTrump/1"


class Recording:
    """A connection or cursor of the store, recording each statement and its parameters as
    it runs."""

    def __init__(self, real: Any, statements: list[tuple[str, Any]]):
        self.real = real
        self.statements = statements

    def execute(self, sql: str, params: Any = ()) -> Any:
        self.statements.append((sql, params))
        return self.real.execute(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def plans(store: Store, call: Callable[[Store], object]) -> list[tuple[str, list[str]]]:
    """(statement, plan lines) of every statement ``call`` makes the store execute, on its
    connection or on the decision path's cursor (the held rows' INSERTs too). SQLite's own
    trace of the statements run checks that none went round the recording (a new cursor,
    executemany)."""
    real, rows = store.db, store._rows
    statements: list[tuple[str, Any]] = []
    traced: list[str] = []
    store.db = Recording(real, statements)  # type: ignore[assignment]
    store._rows = store._held.cursor = Recording(rows, statements)  # type: ignore[assignment]
    real.set_trace_callback(traced.append)
    try:
        call(store)
    finally:
        real.set_trace_callback(None)
        store.db, store._rows, store._held.cursor = real, rows, rows

    def run(sql: str) -> bool:
        return sql.split()[0].upper() not in ("BEGIN", "COMMIT", "ROLLBACK")

    assert len([s for s in traced if run(s)]) == len([s for s, _ in statements if run(s)]), \
        f"statements ran that were not recorded: {traced}"
    return [(sql, [str(r[3]) for r in real.execute("EXPLAIN QUERY PLAN " + sql, params)])
            for sql, params in statements if run(sql)]


def scans(lines: list[str]) -> list[str]:
    """Plan lines that read a whole table (or a whole index) rather than searching one.
    The id lists the pruning statements pass as JSON (json_each) are not tables, nor the
    rows of a multi-row INSERT (``SCAN 2 CONSTANT ROWS``)."""
    return [line for line in lines if line.startswith("SCAN")
            and "json_each" not in line and not line.endswith("CONSTANT ROWS")]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    """A store with some of everything: outages open and closed, transitions, outbox rows
    in every status, silences, audit rows. (Without ANALYZE statistics SQLite plans by the
    schema alone, as it does in production.)"""
    store = Store(Path(tmp_path_factory.mktemp("plans")) / "s.db")
    for n in range(20):
        at = 1000.0 + 1000 * n
        st, _ = store.decide(KEY, *vanished(at), None, at, [(1, OutboxItem(
            "pd", "trigger", f"accmon/x/realDonaldTrump/{n + 1}", {"kind": "vanished"}))])
        store.decide(KEY, *recovered(at + 500, st.outage_id or -1), None, at + 500,
                     [(1, OutboxItem("pd", "resolve", f"accmon/x/realDonaldTrump/{n + 1}",
                                     {"kind": "recovered"}))])
    for row in store.outbox_rows():
        store.outbox_finish(row.id, OutboxStatus.DELIVERED, 1, row.created_at + 1)
    store.decide(KEY, *vanished(50_000.0), None, 50_000.0)
    store.enqueue([OutboxItem("pd", "trigger", "k-held", {"kind": "vanished"},
                              OutboxStatus.HELD),
                   OutboxItem("am", "trigger", "k-silenced", {"kind": "vanished"})], 50_000.0)
    store.silence_row(store.outbox_rows()[-1].id, "silence s-1", 50_000.0)
    store.add_watch({"platform": "x", "handle": "a"}, AuditEntry("alice", "watch.add", "x/a"),
                    now=50_000.0)
    for n in range(5):
        run_id = store.start_run(1000.0 + 10_000 * n)
        store.run_alive(run_id, 5000.0 + 10_000 * n)
        if n < 4:
            store.stop_run(run_id, 6000.0 + 10_000 * n)
    return store


class _Undo(Exception):
    pass


def rolled_back(call: Callable[[Store], object]) -> Callable[[Store], object]:
    """``call`` in a transaction that is rolled back: a write planned without changing the
    module's store for the other queries. Its rows are written before it returns, not held
    for a commit that never comes."""
    def run(store: Store) -> None:
        store.hold_rows = False
        try:
            with contextlib.suppress(_Undo), store.transaction():
                call(store)
                raise _Undo
        finally:
            store.hold_rows = True
    return run


PAGE = OutboxItem("pd", "trigger", "accmon/x/realDonaldTrump/99", {"kind": "vanished"})

HOT: dict[str, tuple[Callable[[Store], object], str | None]] = {
    # a decision (None: its INSERTs and the account's upsert have no search to plan)
    "decide, a vanish": (rolled_back(lambda s: s.decide(KEY, *vanished(60_000.0), None,
                                                        60_000.0, [(1, PAGE)])), None),
    "decide, a recovery": (rolled_back(lambda s: s.decide(KEY, *recovered(60_000.0, 3), None,
                                                          60_000.0)), "INTEGER PRIMARY KEY"),
    "decide, a page made moot": (rolled_back(lambda s: s.decide(
        KEY, *recovered(60_000.0, 10**6), None, 60_000.0, (), [(3, "moot")])),
        "SEARCH outbox USING INTEGER PRIMARY KEY"),
    # what runs on every delivery, decision, reminder check, scrape or SSE replay:
    # (the call, an index its plan must name)
    "outbox_head": (lambda s: s.outbox_head("pd"), "outbox_due"),
    "has_held": (lambda s: s.has_held(OUTAGE_KEY), "outbox_by_dedup_key"),
    "last_notified": (lambda s: s.last_notified(OUTAGE_KEY), "outbox_by_dedup_key"),
    "last_action": (lambda s: s.last_action(OUTAGE_KEY), "outbox_by_dedup_key"),
    "unsent_triggers": (lambda s: s.unsent_triggers(OUTAGE_KEY, 0.0), "outbox_by_dedup_key"),
    "silenced_rows": (lambda s: s.silenced_rows(), "outbox_silenced"),
    "outbox_silenced": (lambda s: s.outbox_silenced(), "outbox_silenced"),
    "outbox_pending": (lambda s: s.outbox_pending(), "outbox_due"),
    "outbox_oldest_pending": (lambda s: s.outbox_oldest_pending(), "outbox_due"),
    "outbox_firing": (lambda s: s.outbox_firing("am"), "outbox_firing"),
    "held_count": (lambda s: s.held_count(("vanished",), "x"), "outbox_held"),
    "hold_pending": (lambda s: s.hold_pending(("vanished",), "x"), "outbox_due"),
    "release_held": (lambda s: s.release_held(("vanished",), 0.0, "x"), "outbox_held"),
    "outages of an account": (lambda s: s.outages(platform="x", handle="realDonaldTrump"),
                              "outages_by_account"),
    "outages of a platform": (lambda s: s.outages(platform="x"), "outages_by_account"),
    "open outages": (lambda s: s.outages(open_only=True), "outages_open"),
    "one outage": (lambda s: s.outage(3), "INTEGER PRIMARY KEY"),
    "transitions after id": (lambda s: s.transitions(after_id=10), "INTEGER PRIMARY KEY"),
    "oldest_transition_id": (lambda s: s.oldest_transition_id(), "SEARCH transitions"),
    "audit after id": (lambda s: s.audit_log(after_id=0), "INTEGER PRIMARY KEY"),
    "silences not expired": (lambda s: s.load_silences(expired_after=0.0), "silences_by_end"),
    "silence_row": (lambda s: s.silence_row(10**6, "why", 0.0), "INTEGER PRIMARY KEY"),
    "release_silenced": (lambda s: s.release_silenced([10**6], 0.0), "INTEGER PRIMARY KEY"),
    "drop_row": (lambda s: s.drop_row(10**6, "why", 0.0), "INTEGER PRIMARY KEY"),
    # availability reports (monitor/reports.py): every account at once, or one account's
    "outages since, recovered": (lambda s: s.outages_since(5000.0), "outages_recovered"),
    "outages since, open": (lambda s: s.outages_since(5000.0), "outages_open"),
    "outages since, one account": (lambda s: s.outages_since(5000.0, KEY),
                                   "outages_by_account"),
    "watch_starts, first transition": (lambda s: s.watch_starts([KEY, AccountKey("x", "a")]),
                                       "transitions_by_account"),
    "watch_starts, addition": (lambda s: s.watch_starts([KEY, AccountKey("x", "a")]),
                               "sqlite_autoindex_watchlist_additions_1"),
    "runs_since": (lambda s: s.runs_since(25_000.0), "runs_by_start"),
    "run_alive": (lambda s: s.run_alive(10**6, 0.0), "INTEGER PRIMARY KEY"),
    "stop_run": (lambda s: s.stop_run(10**6, 0.0), "INTEGER PRIMARY KEY"),
    "account_transitions": (lambda s: s.account_transitions(KEY, limit=10),
                            "transitions_by_account"),
}

# Pruning before time 0 deletes nothing, so the module's store keeps its rows.
PRUNING: dict[str, tuple[Callable[[Store], object], str | None]] = {
    "prune_outbox": (lambda s: s.prune_outbox(0.0, 500), "outbox_finished"),
    "prune_outbox, next batch": (lambda s: s.prune_outbox(0.0, 500, (-1.0, 7)),
                                 "outbox_finished"),
    "prune_transitions": (lambda s: s.prune_transitions(0.0, 500), "transitions_by_time"),
    "prune_transitions, newest kept": (lambda s: s.prune_transitions(0.0, 500),
                                       "transitions_by_account"),
    "prune_transitions, outbox pointers": (lambda s: s.prune_transitions(0.0, 500),
                                           "outbox_by_transition"),
    "prune_outages": (lambda s: s.prune_outages(0.0, 500), "outages_recovered"),
    "prune_audit": (lambda s: s.prune_audit(0.0, 500), "audit_by_time"),
    "prune_silences": (lambda s: s.prune_silences(0.0, 500), "silences_by_end"),
}


@pytest.mark.parametrize("name", [*HOT, *PRUNING])
def test_the_query_searches_an_index(store: Store, name: str) -> None:
    call, index = (HOT | PRUNING)[name]
    executed = plans(store, call)
    assert executed, f"{name} ran no statement"
    for sql, lines in executed:
        assert not scans(lines), f"{name}: {sql}\n  plan: {lines}"
    assert index is None or any(index in line for _, lines in executed for line in lines), \
        f"{name} does not use {index}: {executed}"


def test_the_newest_outages_are_read_from_the_end_of_the_table_not_sorted(
        store: Store) -> None:
    """``outages()`` unfiltered (the history command's default) walks the table backwards
    by id and stops at its limit: the one scan allowed, because it reads only ``limit``
    rows. A sort (TEMP B-TREE) would mean reading all of them first."""
    ((_, lines),) = plans(store, lambda s: s.outages(limit=10))
    assert lines == ["SCAN outages"], lines


def test_the_account_list_reads_the_primary_key_in_order_not_the_table(store: Store) -> None:
    """``account_keys()`` (``history --sla`` from a state file alone) reads every account
    by design: from the primary key's index, in its order, never the rows' JSON."""
    ((_, lines),) = plans(store, lambda s: s.account_keys())
    assert lines == ["SCAN accounts USING COVERING INDEX sqlite_autoindex_accounts_1"], lines


def test_the_check_sees_a_table_scan() -> None:
    """The checker itself: a query no index serves is reported."""
    store = Store(":memory:")
    ((_, lines),) = plans(store, lambda s: s.db.execute(
        "SELECT * FROM outbox WHERE payload = ?", ("{}",)).fetchall())
    assert scans(lines) == ["SCAN outbox"]
