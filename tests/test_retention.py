"""Bounded history: pruning keeps what the monitor still needs and nothing older than its
retention, in batches, and the state file stops growing under a long flapping run.

Time is virtual: every write and every prune gets its ``now`` from the test.
Run this file as a script for the pruning speed and the file size before/after:
``.venv/bin/python -m tests.test_retention [days]``.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from monitor import retention
from monitor.matchers import Matcher
from monitor.model import AbsentReason, AccountKey, AccountState, Event, EventKind, State
from monitor.retention import DAY, RetentionPolicy, prune, prune_once
from monitor.silences import Silence
from monitor.store import AuditEntry, OutboxItem, OutboxStatus, Store

HOUR = 3600.0
WEEK = RetentionPolicy(transitions=7 * DAY, outbox=7 * DAY, outages=14 * DAY,
                       audit=14 * DAY, silences=3 * DAY, batch=500)


def outage_key(key: AccountKey, outage_id: int | None) -> str:
    return f"accmon/{key.platform}/{key.handle}/{outage_id}"


@dataclass
class Flapper:
    """Drives one account through Store.decide the way the decision path does: vanish
    (transition + vanished events, a trigger), recover (transition + recovered, a
    resolve); the outbox worker then delivers each page a second later."""

    store: Store
    key: AccountKey
    state: AccountState = field(default_factory=AccountState)

    def vanish(self, at: float) -> int:
        st = AccountState(state=State.DOWN, absent_streak=2, reason=AbsentReason.DELETED,
                          last_present_at=at - 120, first_absent_at=at - 60,
                          last_absent_at=at, since=at)
        details = {"last_present_at": at - 120, "first_absent_at": at - 60,
                   "confirmed_at": at, "absent_streak": 2, "evidence": "404"}
        events = [Event(EventKind.TRANSITION, self.key, at, State.SUSPECT, State.DOWN,
                        AbsentReason.DELETED, {"previous_since": at - 60}),
                  Event(EventKind.VANISHED, self.key, at, State.SUSPECT, State.DOWN,
                        AbsentReason.DELETED, details)]  # type: ignore[arg-type]
        outage_id = self.store.next_outage_id()
        st = replace(st, outage_id=outage_id)
        item = OutboxItem("pd", "trigger", outage_key(self.key, outage_id),
                          {"kind": "vanished", "summary": "x" * 400})
        self.state, _ = self.store.decide(self.key, st, events, "1234", at, [(1, item)])
        return outage_id

    def recover(self, at: float) -> None:
        outage_id = self.state.outage_id
        details = {"last_present_at": at - 720, "first_absent_at": at - 660,
                   "last_absent_at": at - 60, "recovered_at": at, "duration": 660.0,
                   "outage_id": outage_id}
        events = [Event(EventKind.TRANSITION, self.key, at, State.DOWN, State.UP,
                        None, {"previous_since": at - 600}),
                  Event(EventKind.RECOVERED, self.key, at, State.DOWN, State.UP, None,
                        details)]  # type: ignore[arg-type]
        item = OutboxItem("pd", "resolve", outage_key(self.key, outage_id),
                          {"kind": "recovered", "summary": "x" * 400})
        self.state, _ = self.store.decide(
            self.key, AccountState(state=State.UP, last_present_at=at, since=at), events,
            "1234", at, [(1, item)])


def deliver_due(store: Store, now: float) -> None:
    """What the outbox worker does: every pending row that is due, delivered."""
    while (row := store.outbox_head("pd")) is not None and row.next_attempt_at <= now:
        store.outbox_finish(row.id, OutboxStatus.DELIVERED, 1, now)


def file_size(store: Store) -> int:
    """Bytes the database occupies once the WAL is folded back into it."""
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = store.db.execute("PRAGMA page_count").fetchone()[0]
    return int(pages) * int(store.db.execute("PRAGMA page_size").fetchone()[0])


def count(store: Store, table: str) -> int:
    return int(store.db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])


def a_silence(sid: str, start: float, end: float) -> Silence:
    return Silence(id=sid, matchers=(Matcher("platform", "x"),), starts_at=start,
                   ends_at=end, created_by="alice", comment="planned", created_at=start,
                   updated_at=start)


def fast(store: Store) -> Store:
    """No fsync per commit: the flapping run writes ~100k transactions, and durability is
    not what it measures (sizes and rows are the same either way)."""
    store.db.execute("PRAGMA synchronous=OFF")
    return store


# ------------------------------------------------------------------- what is kept


@dataclass
class Kept:
    """Rows from day 0 that must outlive every prune."""

    stable: AccountKey  # one transition ever: its newest
    open_outage: int  # still down; its delivered trigger keeps firing
    firing_key: str
    pending: int  # a page its pager keeps refusing, still being retried
    held: int
    silenced: int  # held by a silence, its transition long pruned


def day_zero(store: Store) -> Kept:
    stable = AccountKey("x", "stable")  # unknown -> up, once, and never again
    store.decide(stable, AccountState(state=State.UP, last_present_at=0.0, since=0.0),
                 [Event(EventKind.TRANSITION, stable, 0.0, State.UNKNOWN, State.UP)],
                 "42", 0.0)
    down = Flapper(store, AccountKey("x", "gone"))
    outage_id = down.vanish(0.0)
    deliver_due(store, 0.0)
    store.enqueue([OutboxItem("pd", "trigger", "k-retrying", {"kind": "blind"}),
                   OutboxItem("pd", "trigger", "k-held", {"kind": "vanished"},
                              OutboxStatus.HELD)], 0.0)
    silenced = Flapper(store, AccountKey("x", "silenced"))
    silenced.vanish(0.0)
    pending, held, silenced_row = (r.id for r in store.outbox_rows()[-3:])
    store.outbox_retry(pending, 1, 10 * 365 * DAY, "503")
    assert store.silence_row(silenced_row, "silence s-0", 0.0)
    return Kept(stable, outage_id, outage_key(down.key, outage_id), pending, held,
                silenced_row)


def assert_kept(store: Store, kept: Kept) -> None:
    statuses = {r.id: r.status for r in store.outbox_rows()}
    assert statuses.get(kept.pending) is OutboxStatus.PENDING
    assert statuses.get(kept.held) is OutboxStatus.HELD
    assert statuses.get(kept.silenced) is OutboxStatus.SILENCED
    assert [r.dedup_key for r in store.outbox_firing("pd")] == [kept.firing_key]
    outage = store.outage(kept.open_outage)
    assert outage is not None and outage.recovered_at is None
    stable = [t for t in store.transitions(limit=10**6)
              if (t["platform"], t["handle"]) == (kept.stable.platform, kept.stable.handle)]
    assert [(t["at"], t["kind"]) for t in stable] == [(0.0, "transition")]


def test_pruning_keeps_the_unsent_the_open_and_the_newest_and_deletes_the_rest(
        tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    kept = day_zero(store)
    silenced = AccountKey("x", "silenced")  # still down and silenced, now also blind
    store.decide(silenced, AccountState(state=State.DOWN, blind=True, since=0.0),
                 [Event(EventKind.BLIND, silenced, 29 * DAY, State.DOWN, State.DOWN)],
                 "1234", 29 * DAY)
    flapper = Flapper(store, AccountKey("x", "flapper"))
    for day in range(30):
        flapper.vanish(day * DAY)
        flapper.recover(day * DAY + HOUR)
        deliver_due(store, day * DAY + HOUR + 1)
    store.save_silence(a_silence("s-old", 0.0, DAY), AuditEntry("alice", "silence.create",
                                                                "s-old"))
    store.save_silence(a_silence("s-new", 28 * DAY, 31 * DAY),
                       AuditEntry("alice", "silence.create", "s-new"))
    oldest = store.oldest_transition_id()
    now = 30 * DAY

    counts = prune_once(store, WEEK, now)

    assert counts["outbox"] > 0 and counts["transitions"] > 0 and counts["outages"] > 0
    assert counts["silences"] == 1 and counts["audit"] == 1  # s-old's, from day 0
    assert_kept(store, kept)
    assert [s.id for s in store.load_silences()] == ["s-new"]
    assert [e["target"] for e in store.audit_log()] == ["s-new"]
    assert min(t["at"] for t in store.transitions(limit=10**6)
               if t["handle"] == "flapper") >= now - 7 * DAY
    assert min(o.recovered_at or now for o in store.outages(limit=10**6)
               if o.key.handle == "flapper") >= now - 14 * DAY
    finished = [r for r in store.outbox_rows() if r.status is OutboxStatus.DELIVERED]
    assert {r.dedup_key for r in finished if r.created_at < now - 8 * DAY} == {kept.firing_key}
    # The replay tail: every transition from this id on is kept, none before it but
    # each account's newest (the stable account's, from day 0, is id 1).
    tail = store.oldest_transition_id()
    assert oldest == 1 and tail is not None and tail > 1
    ids = [t["id"] for t in store.transitions(limit=10**6)]
    assert ids == sorted(ids) and ids[0] == 1
    assert [i for i in ids if i >= tail] == list(range(tail, ids[-1] + 1))
    assert tail - 1 not in ids  # the last one pruned
    silenced_row = store.db.execute("SELECT transition_id FROM outbox WHERE id = ?",
                                    (kept.silenced,)).fetchone()
    assert silenced_row[0] is None  # its transition went; the page stayed
    assert prune_once(store, WEEK, now) == dict.fromkeys(retention.PRUNERS, 0)


def test_a_batch_deletes_at_most_its_size_and_the_next_one_goes_on(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    flapper = Flapper(store, AccountKey("x", "flapper"))
    for n in range(10):
        flapper.vanish(n * HOUR)
        flapper.recover(n * HOUR + 600)
        deliver_due(store, n * HOUR + 601)
    total = count(store, "transitions")  # 40; the newest stays
    deleted, cursor = store.prune_transitions(DAY, 7)
    assert (deleted, count(store, "transitions")) == (7, total - 7)
    assert cursor is not None
    steps = list(retention.batches(store, RetentionPolicy(
        transitions=1.0, outbox=None, outages=None, audit=None, silences=None, batch=7),
        DAY + 2))
    assert all(n <= 7 for _, n in steps) and len(steps) == 5  # 32 left: 7,7,7,7,4 (+newest)
    assert count(store, "transitions") == 1


def test_prune_yields_to_the_loop_between_batches(tmp_path: Path) -> None:
    """Another task runs between two batches: the event loop is never held for a whole
    prune."""
    store = Store(tmp_path / "s.db")
    flapper = Flapper(store, AccountKey("x", "flapper"))
    for n in range(20):
        flapper.vanish(n * HOUR)
        flapper.recover(n * HOUR + 600)
        deliver_due(store, n * HOUR + 601)
    seen: list[int] = []

    async def main() -> dict[str, int]:
        async def watch() -> None:
            while True:
                seen.append(count(store, "transitions"))
                await asyncio.sleep(0)

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0)
        try:
            return await prune(store, RetentionPolicy(transitions=1.0, outbox=1.0,
                                                      outages=1.0, batch=5), 30 * DAY)
        finally:
            watcher.cancel()

    counts = asyncio.run(main())
    assert counts["transitions"] == 79 and counts["outbox"] == 40 and counts["outages"] == 20
    assert len(set(seen)) > 10  # it saw the table shrink batch by batch


def test_a_locked_file_ends_the_round_early_without_an_exception(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = Store(path)
    flapper = Flapper(store, AccountKey("x", "flapper"))
    flapper.vanish(0.0)
    flapper.recover(HOUR)
    deliver_due(store, HOUR + 1)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        assert asyncio.run(prune(store, WEEK, 30 * DAY)) == dict.fromkeys(
            retention.PRUNERS, 0)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert prune_once(store, WEEK, 30 * DAY)["outbox"] == 2


def test_the_config_section_is_a_policy(tmp_path: Path) -> None:
    """``config.monitor.retention`` is passed as it is (it has the policy's fields)."""
    from monitor.config import RetentionConfig

    store = Store(tmp_path / "s.db")
    flapper = Flapper(store, AccountKey("x", "flapper"))
    flapper.vanish(0.0)
    flapper.recover(HOUR)
    deliver_due(store, HOUR + 1)
    cfg = RetentionConfig(transitions=DAY, outbox=DAY)
    assert prune_once(store, cfg, 2 * DAY) == {"outbox": 2, "transitions": 3, "outages": 0,
                                               "audit": 0, "silences": 0}


# ------------------------------------------------------------------- the long run


def flapping_run(store: Store, days: int, flappers: int,
                 policy: RetentionPolicy | None) -> list[int]:
    """``flappers`` accounts vanish and recover once an hour, every page delivered; a
    silence and an ack a day; pruning at the end of every simulated day (None: never).
    Returns the file size after each day."""
    accounts = [Flapper(store, AccountKey("masto", f"flap{n}@example.social"))
                for n in range(flappers)]
    sizes = []
    for day in range(days):
        start = day * DAY
        for hour in range(24):
            at = start + hour * HOUR
            for n, account in enumerate(accounts):
                outage_id = account.vanish(at + n)
                if hour == 0 and n == 0:
                    store.acknowledge(outage_id, "alice", "flapping", at + 30, [],
                                      AuditEntry("alice", "outage.ack", str(outage_id)))
                account.recover(at + 900 + n)
            deliver_due(store, at + 901 + flappers)
        store.save_silence(a_silence(f"s-{day}", start, start + 2 * HOUR),
                           AuditEntry("alice", "silence.create", f"s-{day}"))
        if policy is not None:
            prune_once(store, policy, start + DAY)
        sizes.append(file_size(store))
    return sizes


def test_the_state_file_stays_bounded_under_200_days_of_flapping(tmp_path: Path) -> None:
    """Three accounts flapping every hour for 200 simulated days (14,400 outages, 28,800
    decisions, 57,600 transitions, 28,800 pages) under a one-week retention (two for
    outages and the audit trail): the file grows until the oldest rows are a retention
    old, then stays flat while six times as much again is written."""
    store = fast(Store(tmp_path / "s.db"))
    kept = day_zero(store)
    sizes = flapping_run(store, 200, 3, WEEK)

    grown = sizes[20] - sizes[0]
    assert grown > 0  # it did grow while history built up
    assert max(sizes[30:]) <= sizes[30] * 1.05, (sizes[30], max(sizes[30:]))
    assert sizes[199] - sizes[100] < grown * 0.05  # linear growth would be ~5x `grown`
    assert count(store, "transitions") < 3 * 4 * 24 * 8 + 10  # ~a week of them
    assert count(store, "outages") < 3 * 24 * 15 + 10  # ~two weeks of recovered ones + open
    assert_kept(store, kept)


def test_without_pruning_the_same_run_grows_with_time(tmp_path: Path) -> None:
    """The control: what the bounded run would look like without retention."""
    store = fast(Store(tmp_path / "s.db"))
    sizes = flapping_run(store, 40, 3, None)
    assert sizes[39] - sizes[20] > (sizes[20] - sizes[0]) * 0.8


# ------------------------------------------------------------------- measurement


def measure(days: int = 90) -> None:
    """Build ``days`` of the flapping history (40 accounts) without pruning, then prune
    all but the last week with the production defaults (synchronous=FULL, 500 per batch)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        store = fast(Store(Path(tmp) / "s.db"))
        started = time.perf_counter()
        flapping_run(store, days, 40, None)
        rows = {t: count(store, t) for t in retention.PRUNERS}
        built = time.perf_counter() - started
        before = file_size(store)
        store.db.execute("PRAGMA synchronous=FULL")
        policy = RetentionPolicy(transitions=7 * DAY, outbox=7 * DAY, outages=7 * DAY,
                                 audit=7 * DAY, silences=7 * DAY)
        started = time.perf_counter()
        counts = asyncio.run(prune(store, policy, days * DAY))
        took = time.perf_counter() - started
        after = file_size(store)
        free = store.db.execute("PRAGMA freelist_count").fetchone()[0] * \
            store.db.execute("PRAGMA page_size").fetchone()[0]
        deleted = sum(counts.values())
        print(f"{days} days, 40 accounts flapping hourly: built in {built:.0f} s; rows {rows}")
        print(f"pruned {counts} = {deleted} rows in {took:.2f} s: {deleted / took:,.0f} rows/s"
              f" ({deleted / policy.batch:.0f} batches of {policy.batch},"
              f" {took / (deleted / policy.batch) * 1000:.1f} ms each)")
        print(f"file {before / 1e6:.1f} MB before, {after / 1e6:.1f} MB after, of which"
              f" {free / 1e6:.1f} MB free pages reused by new rows")
        store.db.execute("VACUUM")
        print(f"after VACUUM (offline): {file_size(store) / 1e6:.1f} MB")


if __name__ == "__main__":
    measure(int(sys.argv[1]) if len(sys.argv) > 1 else 90)
