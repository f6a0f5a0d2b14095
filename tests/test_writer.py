"""The writer: group commit on a real state file, in order, nothing lost or shown early.

Every test runs the real StoreWriter over a real Store (WAL, synchronous=FULL) on a temp
file, and looks at the file through a second connection, as another process would: a row
is committed when that connection sees it. The writes are plain functions of the store,
as decisions.py's are.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.model import AccountKey, AccountState, Event, EventKind, State
from monitor.store import OutboxItem, Store
from monitor.writer import StoreWriter, Write
from tests.conftest import wait_for

UP = AccountState(state=State.UP, since=1.0, last_present_at=1.0)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
def store(path: Path) -> Iterator[Store]:
    store = Store(path)
    yield store
    store.close()


def committed(path: Path) -> list[str]:
    """The handles whose decision another connection sees, in the order written."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return [r[0] for r in db.execute("SELECT handle FROM transitions ORDER BY id")]


def first_sighting(handle: str, done: Callable[[Any], None] | None = None,
                   item: OutboxItem | None = None) -> Write:
    """What decisions.py submits for an account's first answer: unknown -> up."""
    key = AccountKey("x", handle)
    events = [Event(EventKind.TRANSITION, key, 1.0, State.UNKNOWN, State.UP)]
    outbox = [(0, item)] if item is not None else []
    return Write(f"decision {key}",
                 lambda store: store.decide(key, UP, events, None, 1.0, outbox), done,
                 (item,) if item is not None else ())


def appender(into: list[str], what: str) -> Callable[[Any], None]:
    """A done that records ``what`` when it runs."""
    return lambda _: into.append(what)


def writer_for(store: Store, failures: list[BaseException] | None = None,
               **kwargs: Any) -> StoreWriter:
    seen = failures if failures is not None else []
    return StoreWriter(store, on_failure=seen.append, retry_initial=0.02, retry_max=0.05,
                       **kwargs)


async def test_a_write_while_idle_is_committed_before_submit_returns(store: Store,
                                                                      path: Path) -> None:
    writer = writer_for(store)
    seen: list[list[str]] = []
    assert writer.submit(first_sighting("alice", lambda _: seen.append(committed(path))))
    # No batching delay when idle: on disk, and done already ran, after the commit.
    assert committed(path) == ["alice"] and seen == [["alice"]]
    assert writer.commits == 1 and not writer.backlog
    await writer.stop()


async def test_writes_that_queue_in_one_turn_share_one_commit_in_order(store: Store,
                                                                        path: Path) -> None:
    # No time bound here: on a loaded machine 299 writes can take longer than 50 ms.
    writer = writer_for(store, max_batch_seconds=60.0)
    handles = [f"a{i}" for i in range(300)]
    done_order: list[str] = []
    visible_at_done: list[bool] = []

    def done_for(handle: str) -> Callable[[Any], None]:
        def done(_: Any) -> None:
            done_order.append(handle)
            visible_at_done.append(handle in committed(path))
        return done

    results = [writer.submit(first_sighting(h, done_for(h))) for h in handles]
    assert results[0] is True and not any(results[1:])  # the first at once, the rest queued
    assert committed(path) == handles[:1]  # queued means not yet on disk, and not done
    assert done_order == handles[:1]
    await wait_for(lambda: not writer.backlog, what="the queue committed")
    assert committed(path) == handles
    assert done_order == handles and all(visible_at_done)  # done only after its COMMIT
    assert writer.commits == 2  # one for the first, one for the 299 that queued behind it
    await writer.stop()


async def test_a_batch_is_bounded_and_the_loop_runs_between_batches(store: Store,
                                                                     path: Path) -> None:
    writer = writer_for(store, max_batch=100, max_batch_seconds=60.0)  # the count bounds
    handles = [f"a{i}" for i in range(1001)]
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(count_turns())
    for h in handles:
        writer.submit(first_sighting(h))
    await wait_for(lambda: not writer.backlog, what="the queue committed")
    ticker.cancel()
    assert committed(path) == handles
    assert writer.commits == 11  # 1 + 1000 in batches of 100
    assert turns >= 10  # the loop ran between batches, not once at the end
    await writer.stop()


async def test_a_batch_is_bounded_in_time_too(store: Store, path: Path) -> None:
    writer = writer_for(store, max_batch_seconds=0.0)  # every write past the bound
    handles = [f"a{i}" for i in range(5)]
    for h in handles:
        writer.submit(first_sighting(h))
    await wait_for(lambda: not writer.backlog, what="the queue committed")
    assert committed(path) == handles and writer.commits == 5  # one write per commit
    await writer.stop()


async def test_a_bug_in_one_write_skips_it_and_commits_the_rest_of_its_batch(
        store: Store, path: Path) -> None:
    writer = writer_for(store)
    dones: list[str] = []
    bad = OutboxItem("pd", "trigger", "k", {"not json": object()})  # TypeError, mid-decide
    writer.submit(first_sighting("first", lambda _: dones.append("first")))
    writer.submit(first_sighting("before", lambda _: dones.append("before")))
    writer.submit(first_sighting("bad", lambda _: dones.append("bad"), bad))
    writer.submit(first_sighting("after", lambda _: dones.append("after")))
    await wait_for(lambda: not writer.backlog, what="the queue committed")
    assert committed(path) == ["first", "before", "after"]
    assert dones == ["first", "before", "after"]
    # The bad write left nothing: no account, no outbox row (its batch was rolled back
    # and committed again without it).
    assert set(store.account_keys()) == {AccountKey("x", h) for h in ("first", "before",
                                                                       "after")}
    assert store.outbox_rows() == []
    # first alone; before again without bad; after at the next turn
    assert writer.failing is None and writer.commits == 3
    await writer.stop()


async def test_a_constraint_violated_mid_batch_loses_only_that_write(store: Store,
                                                                     path: Path) -> None:
    writer = writer_for(store)

    def duplicate_transition_id(s: Store) -> None:  # two statements, no transaction()
        s.db.execute("INSERT INTO cursors (name, value, updated_at) VALUES ('half', 1, 1)")
        s.db.execute("INSERT INTO transitions (id, platform, handle, kind, at, old_state,"
                     " new_state, details) VALUES (1, 'x', 'dup', 'transition', 1, 'up',"
                     " 'up', '{}')")

    writer.submit(first_sighting("one"))
    writer.submit(first_sighting("two"))
    writer.submit(Write("a duplicate id", duplicate_transition_id))
    writer.submit(first_sighting("three"))
    await wait_for(lambda: not writer.backlog, what="the queue committed")
    assert committed(path) == ["one", "two", "three"]
    assert store.load_cursor("half") is None  # the bad write's first statement went too
    await writer.stop()


def vanish(handle: str, outage_id: int, done: Callable[[Any], None] | None = None) -> Write:
    """A vanish opening outage ``outage_id``, with its page: rows the store holds back and
    writes with the batch (at the COMMIT when nothing else runs after it)."""
    key = AccountKey("x", handle)
    down = AccountState(state=State.DOWN, since=2.0, outage_id=outage_id)
    events = [Event(EventKind.TRANSITION, key, 2.0, State.SUSPECT, State.DOWN),
              Event(EventKind.VANISHED, key, 2.0, State.SUSPECT, State.DOWN,
                    details={"first_absent_at": 1.0})]  # type: ignore[arg-type]
    item = OutboxItem("pd", "trigger", f"x/{handle}/{outage_id}", {"kind": "vanished"})
    return Write(f"decision {key}",
                 lambda store: store.decide(key, down, events, None, 2.0, [(1, item)]), done,
                 (item,))


async def test_a_row_refused_at_the_commit_loses_only_its_own_write(store: Store,
                                                                    path: Path) -> None:
    """The store writes a batch's decisions together, so a row that breaks a constraint
    fails at the COMMIT, or in the next write's statement, not in its own write: the writer
    finds whose it was (the batch again, each decision written at once) and skips that one
    alone, as a bug, not as the disk's trouble."""
    writer = writer_for(store)
    dones: list[str] = []
    writer.submit(vanish("first", 1, appender(dones, "first")))  # idle: committed alone
    writer.submit(first_sighting("a", appender(dones, "a")))
    writer.submit(vanish("bad", 1, appender(dones, "bad")))  # outage 1 exists: refused
    writer.submit(Write("a cursor", lambda s: s.save_cursor("after", 1, 2.0),
                        appender(dones, "cursor")))  # its statement writes bad's rows first
    writer.submit(vanish("c", 2, appender(dones, "c")))
    await wait_for(lambda: not writer.backlog, what="the queue committed")
    assert store.load_cursor("after") == 1
    writer.submit(vanish("bad at the commit", 2, appender(dones, "bad")))  # outage 2 exists
    writer.submit(first_sighting("d", appender(dones, "d")))
    await wait_for(lambda: not writer.backlog, what="the queue committed")
    assert committed(path) == ["first", "first", "a", "c", "c", "d"]
    assert dones == ["first", "a", "cursor", "c", "d"] and writer.failing is None
    assert [o.key.handle for o in store.outages()] == ["c", "first"]
    assert [r.dedup_key for r in store.outbox_rows()] == ["x/first/1", "x/c/2"]
    assert AccountKey("x", "bad") not in store.load_accounts()
    assert store.hold_rows  # holding again after the search
    # Every id handed out with the batch that failed was given back: none is skipped.
    assert [t["id"] for t in store.transitions()] == [1, 2, 3, 4, 5, 6]
    await writer.stop()


async def test_a_write_that_swallows_its_own_failure_is_skipped_alone(store: Store,
                                                                     path: Path) -> None:
    """A write that catches the failure of its own decide leaves half a decision in the
    transaction: the writer finds which write it was and skips that one."""
    writer = writer_for(store)
    bad = OutboxItem("pd", "trigger", "k", {"not json": object()})

    def swallower(s: Store) -> None:
        with contextlib.suppress(TypeError):
            first_sighting("swallowed", item=bad).apply(s)

    dones: list[str] = []
    writer.submit(first_sighting("first", appender(dones, "first")))
    writer.submit(first_sighting("a", appender(dones, "a")))
    writer.submit(Write("swallower", swallower, appender(dones, "swallower")))
    writer.submit(first_sighting("c", appender(dones, "c")))
    await wait_for(lambda: not writer.backlog, what="the queue committed")
    assert committed(path) == ["first", "a", "c"] and dones == ["first", "a", "c"]
    assert AccountKey("x", "swallowed") not in store.load_accounts()
    assert writer.failing is None
    await writer.stop()


async def test_a_disk_error_mid_batch_keeps_the_whole_batch_and_writes_it_once(
        store: Store, path: Path) -> None:
    failures: list[BaseException] = []
    writer = writer_for(store, failures)
    refusals = [sqlite3.OperationalError("disk I/O error")]

    def flaky(s: Store) -> None:  # the disk refuses once, then takes it
        if refusals:
            raise refusals.pop()
        s.save_cursor("flaky", 1, 1.0)

    dones: list[str] = []
    writer.submit(first_sighting("first"))
    for h in ("a", "b"):
        writer.submit(first_sighting(h, appender(dones, h)))
    writer.submit(Write("flaky", flaky, lambda _: dones.append("flaky")))
    writer.submit(first_sighting("c", lambda _: dones.append("c")))
    await wait_for(lambda: writer.failing is not None, what="the refusal")
    assert committed(path) == ["first"] and dones == []  # a, b rolled back with it
    assert len(writer.backlog) == 4 and len(failures) == 1
    await wait_for(lambda: not writer.backlog, what="the retry")
    assert committed(path) == ["first", "a", "b", "c"]  # each once, in order
    assert dones == ["a", "b", "flaky", "c"] and writer.failing is None
    assert store.load_cursor("flaky") == 1
    await writer.stop()


async def test_a_locked_file_keeps_every_queued_write_in_order_then_writes_them(
        store: Store, path: Path) -> None:
    failures: list[BaseException] = []
    writer = writer_for(store, failures)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    handles = [f"a{i}" for i in range(50)]
    dones: list[str] = []
    try:
        for h in handles:
            assert not writer.submit(first_sighting(h, appender(dones, h)))
            await asyncio.sleep(0)  # across turns of the loop too
        assert "database is locked" in (writer.failing or "")
        assert [w.what for w in writer.backlog] == [f"decision x/{h}" for h in handles]
        await wait_for(lambda: len(failures) >= 3, what="retried while locked")
        assert dones == []
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    await wait_for(lambda: not writer.backlog, what="written once the lock lifts")
    assert committed(path) == handles and dones == handles
    assert writer.failing is None
    # Idle again: the next write is committed at once.
    assert writer.submit(first_sighting("later"))
    await writer.stop()


async def test_flush_commits_what_is_queued(store: Store, path: Path) -> None:
    writer = writer_for(store)
    for h in ("a", "b", "c"):
        writer.submit(first_sighting(h))
    assert await writer.flush(1.0)
    assert committed(path) == ["a", "b", "c"]
    await writer.stop()


async def test_a_write_submitted_from_a_done_waits_for_the_next_commit(store: Store,
                                                                        path: Path) -> None:
    writer = writer_for(store)
    order: list[str] = []

    def then_submit(_: Any) -> None:
        order.append("b1 done")
        assert not writer.submit(first_sighting("c", lambda _: order.append("c done")))

    writer.submit(first_sighting("a", lambda _: order.append("a done")))
    writer.submit(first_sighting("b1", then_submit))  # queued: b1 and b2 share a commit
    writer.submit(first_sighting("b2", lambda _: order.append("b2 done")))
    await wait_for(lambda: not writer.backlog, what="the queue committed")
    assert order == ["a done", "b1 done", "b2 done", "c done"]
    assert committed(path) == ["a", "b1", "b2", "c"]
    await writer.stop()


def test_without_a_loop_each_write_is_committed_at_once(store: Store, path: Path) -> None:
    writer = writer_for(store)
    assert writer.submit(first_sighting("a")) and writer.submit(first_sighting("b"))
    assert committed(path) == ["a", "b"]


# ------------------------------------------------------------------ re-entrant transactions


def test_an_inner_transaction_joins_the_outer_one(store: Store, path: Path) -> None:
    with store.transaction():
        store.save_cursor("inner", 1, 1.0)  # its own `with transaction()`, now nested
        assert store.in_transaction
        with contextlib.closing(sqlite3.connect(path)) as other:
            assert other.execute("SELECT COUNT(*) FROM cursors").fetchone()[0] == 0
    assert not store.in_transaction
    assert store.load_cursor("inner") == 1


def test_an_inner_failure_swallowed_rolls_back_the_whole_transaction(store: Store) -> None:
    """Half a write is never committed: had a caller caught an inner failure and gone on,
    the outer transaction refuses to commit, and nothing of it is on disk."""
    with pytest.raises(sqlite3.ProgrammingError, match="rolled back"), store.transaction():
        store.save_cursor("before", 1, 1.0)
        with pytest.raises(ZeroDivisionError), store.transaction():
            store.save_cursor("inner", 2, 1.0)
            raise ZeroDivisionError
        assert store.aborted
        store.save_cursor("after", 3, 1.0)
    assert [store.load_cursor(n) for n in ("before", "inner", "after")] == [None] * 3
    assert not store.in_transaction and not store.aborted
    store.save_cursor("next", 1, 1.0)  # and the next transaction is a fresh one
    assert store.load_cursor("next") == 1


def test_an_outer_failure_rolls_back_the_inner_writes_too(store: Store) -> None:
    with pytest.raises(ZeroDivisionError), store.transaction():
        store.save_cursor("inner", 1, 1.0)
        raise ZeroDivisionError
    assert store.load_cursor("inner") is None and not store.in_transaction
    store.save_cursor("next", 1, 1.0)  # the connection is usable again
    assert store.load_cursor("next") == 1


def test_a_refused_commit_leaves_no_transaction_open(store: Store, path: Path) -> None:
    locker = sqlite3.connect(path, isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            store.save_cursor("refused", 1, 1.0)
        assert not store.in_transaction and not store.db.in_transaction
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    store.save_cursor("taken", 1, 1.0)
    assert store.load_cursor("taken") == 1


async def test_whoever_decides_waits_while_the_backlog_is_over_its_bound(store: Store,
                                                                          path: Path) -> None:
    writer = writer_for(store, max_backlog=10, max_batch=4)
    for i in range(30):  # one turn: queued behind the first, over the bound
        writer.submit(first_sighting(f"a{i}"))
    assert writer.full()
    waiting = asyncio.create_task(writer.room())
    await asyncio.sleep(0)
    assert not waiting.done()
    await asyncio.wait_for(waiting, 10)
    # let through once the disk caught up to the bound, not before, and nothing lost
    assert len(writer.backlog) <= 10 and len(committed(path)) >= 20
    await wait_for(lambda: not writer.backlog, what="the rest written")
    assert committed(path) == [f"a{i}" for i in range(30)]
    await writer.room()  # room at once
    await writer.stop()


async def test_nobody_waits_for_a_file_that_refuses_writes(store: Store, path: Path) -> None:
    writer = writer_for(store, max_backlog=5)
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN EXCLUSIVE")
    try:
        for i in range(20):
            writer.submit(first_sighting(f"b{i}"))
            await asyncio.sleep(0)
        assert writer.failing and len(writer.backlog) == 20
        assert not writer.full()
        await asyncio.wait_for(writer.room(), 1)  # probing goes on; decisions kept in memory
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    await wait_for(lambda: not writer.backlog, what="written once the lock lifts")
    assert committed(path) == [f"b{i}" for i in range(20)]
    await writer.stop()
