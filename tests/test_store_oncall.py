"""The store's on-call writes (silences, acks, watchlist additions, the audit trail) and the
outbox's ``silenced`` rows: each write commits with its audit row or not at all."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from monitor.matchers import Matcher
from monitor.silences import Silence
from monitor.store import MIGRATIONS, AuditEntry, OutboxItem, OutboxStatus, Store
from tests.test_store import KEY, recovered, vanished

OUTAGE_KEY = "accmon/x/realDonaldTrump/1"


def audit(action: str, target: str = "t", **details: object) -> AuditEntry:
    return AuditEntry("alice", action, target, dict(details), "127.0.0.1")


def silence(sid: str = "s-1", ends_at: float = 2000.0, updated_at: float = 1000.0) -> Silence:
    return Silence(id=sid, matchers=(Matcher("platform", "x"), Matcher("team", "a|b", True)),
                   starts_at=1000.0, ends_at=ends_at, created_by="alice",
                   comment="planned deactivation", created_at=1000.0, updated_at=updated_at)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "s.db")


def open_outage(store: Store, at: float = 1000.0) -> int:
    st, events = vanished(at)
    st, _ = store.decide(KEY, st, events, None, at)
    assert st.outage_id is not None
    return st.outage_id


def trigger(key: str = OUTAGE_KEY, notifier: str = "pd") -> OutboxItem:
    return OutboxItem(notifier, "trigger", key, {"kind": "vanished", "platform": "x"})


def row_ids(store: Store) -> list[int]:
    return [r.id for r in store.outbox_rows()]


# ------------------------------------------------------------------- migration


def test_a_version_3_file_gains_the_on_call_tables_and_keeps_its_outages(
        tmp_path: Path) -> None:
    path = tmp_path / "v3.db"
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:3]:
        for statement in script.split(";"):
            if statement.strip():
                db.execute(statement)
    db.execute("PRAGMA user_version = 3")
    db.execute("INSERT INTO outages (platform, handle, reason, first_seen_absent_at,"
               " confirmed_at) VALUES ('x', 'realDonaldTrump', 'deactivated', 1.0, 2.0)")
    db.commit()
    db.close()
    store = Store(path)
    assert store.schema_version == len(MIGRATIONS) >= 4
    (outage,) = store.outages()
    assert (outage.reason, outage.acked_at, outage.acked_by, outage.ack_comment) == (
        "deactivated", None, None, None)
    assert store.load_silences() == [] and store.watch_additions() == []
    assert store.audit_log() == []


def test_outage_ids_are_never_reused_even_when_the_newest_outage_was_deleted(
        tmp_path: Path) -> None:
    """Retention may delete the newest outages; an id reused would reuse a dedup key."""
    path = tmp_path / "s.db"
    store = Store(path)
    first = open_outage(store)
    store.db.execute("DELETE FROM outages")
    store.close()
    store = Store(path)
    assert store.next_outage_id() == first + 1


# ------------------------------------------------------------------- silences


def test_a_silence_round_trips_with_its_matchers_and_its_audit_row(store: Store) -> None:
    s = silence()
    store.save_silence(s, audit("silence.create", s.id, matchers=["platform=\"x\""]))
    assert store.load_silences() == [s]
    (entry,) = store.audit_log()
    assert (entry["actor"], entry["action"], entry["target"], entry["remote"], entry["at"]) \
        == ("alice", "silence.create", "s-1", "127.0.0.1", 1000.0)
    assert entry["details"] == {"matchers": ["platform=\"x\""]}


def test_saving_a_silence_again_replaces_it_and_expired_ones_can_be_left_out(
        store: Store) -> None:
    store.save_silence(silence("s-1", ends_at=2000.0), audit("silence.create", "s-1"))
    store.save_silence(silence("s-2", ends_at=5000.0), audit("silence.create", "s-2"))
    expired = silence("s-1", ends_at=1500.0, updated_at=1500.0)
    store.save_silence(expired, audit("silence.expire", "s-1"))
    assert [s.id for s in store.load_silences()] == ["s-1", "s-2"]
    assert store.load_silences()[0] == expired
    assert [s.id for s in store.load_silences(expired_after=1500.0)] == ["s-2"]
    assert [s.id for s in store.load_silences(expired_after=1499.0)] == ["s-1", "s-2"]
    assert [e["action"] for e in store.audit_log()] == ["silence.create", "silence.create",
                                                         "silence.expire"]


def test_a_silence_whose_audit_row_cannot_be_written_is_not_saved(store: Store) -> None:
    bad = AuditEntry("alice", "silence.create", "s-1", {"not json": object()}, None)
    with pytest.raises(TypeError):
        store.save_silence(silence(), bad)
    assert store.load_silences() == [] and store.audit_log() == []


# ------------------------------------------------------------------- acknowledgements


def test_acknowledging_an_open_outage_writes_the_ack_its_pages_and_its_audit_row(
        store: Store) -> None:
    outage_id = open_outage(store)
    ack = OutboxItem("pd", "acknowledge", OUTAGE_KEY, {"kind": "acknowledged"})
    assert store.acknowledge(outage_id, "alice", "on it", 1100.0, [ack],
                             audit("outage.ack", str(outage_id)))
    outage = store.outage(outage_id)
    assert outage is not None
    assert (outage.acked_at, outage.acked_by, outage.ack_comment) == (1100.0, "alice", "on it")
    assert store.outages()[0] == outage
    (row,) = store.outbox_rows()
    assert (row.action, row.dedup_key, row.status, row.created_at, row.next_attempt_at) == (
        "acknowledge", OUTAGE_KEY, OutboxStatus.PENDING, 1100.0, 1100.0)
    assert [e["action"] for e in store.audit_log()] == ["outage.ack"]


def test_a_second_ack_a_closed_outage_and_an_unknown_one_write_nothing(store: Store) -> None:
    outage_id = open_outage(store)
    ack = OutboxItem("pd", "acknowledge", OUTAGE_KEY, {})
    assert store.acknowledge(outage_id, "alice", None, 1100.0, [ack], audit("outage.ack"))
    assert not store.acknowledge(outage_id, "bob", "me too", 1200.0, [ack], audit("outage.ack"))
    outage = store.outage(outage_id)
    assert outage is not None and (outage.acked_by, outage.acked_at) == ("alice", 1100.0)
    assert not store.acknowledge(outage_id + 1, "bob", None, 1200.0, [ack], audit("outage.ack"))
    assert store.outage(outage_id + 1) is None
    st, events = recovered(1300.0, outage_id)
    store.decide(KEY, st, events, None, 1300.0)
    closed = open_outage(store, 1400.0)
    store.decide(KEY, *recovered(1500.0, closed), None, 1500.0)
    assert not store.acknowledge(closed, "bob", None, 1600.0, [ack], audit("outage.ack"))
    assert store.outage(closed) is not None
    assert len(store.outbox_rows()) == 1 and len(store.audit_log()) == 1


# ------------------------------------------------------------------- watchlist additions


def test_watch_additions_keep_the_order_added_and_update_in_place(store: Store) -> None:
    a = {"platform": "x", "handle": "a", "protected": True}
    b = {"platform": "masto", "handle": "b@example.social", "labels": {"team": "web"}}
    store.add_watch(a, audit("watch.add", "x/a"), now=10.0)
    store.add_watch(b, audit("watch.add", "masto/b@example.social"), now=11.0)
    store.add_watch(a | {"team": "sre"}, audit("watch.add", "x/a"), now=12.0)
    assert store.watch_additions() == [a | {"team": "sre"}, b]
    assert store.remove_watch("x", "a", audit("watch.remove", "x/a"), now=13.0)
    assert not store.remove_watch("x", "a", audit("watch.remove", "x/a"), now=14.0)
    assert store.watch_additions() == [b]
    store.add_watch(a, audit("watch.add", "x/a"), now=15.0)
    assert store.watch_additions() == [b, a]
    log = store.audit_log()
    assert [(e["action"], e["at"]) for e in log] == [
        ("watch.add", 10.0), ("watch.add", 11.0), ("watch.add", 12.0), ("watch.remove", 13.0),
        ("watch.add", 15.0)]


def test_the_audit_log_pages_forward_from_an_id(store: Store) -> None:
    for n in range(5):
        store.add_watch({"platform": "x", "handle": f"h{n}"}, audit("watch.add", f"x/h{n}"))
    first = store.audit_log(limit=2)
    assert [e["target"] for e in first] == ["x/h0", "x/h1"]
    rest = store.audit_log(limit=10, after_id=first[-1]["id"])
    assert [e["target"] for e in rest] == ["x/h2", "x/h3", "x/h4"]


# ------------------------------------------------------------------- silenced rows


def enqueue(store: Store, *items: OutboxItem, now: float = 1000.0) -> list[int]:
    before = set(row_ids(store))
    store.enqueue(items, now)
    return [i for i in row_ids(store) if i not in before]


def test_a_silenced_trigger_is_kept_back_counted_and_blocks_only_its_own_key(
        store: Store) -> None:
    (silenced,) = enqueue(store, trigger())
    (other,) = enqueue(store, trigger("accmon/x/other/2"))
    assert store.silence_row(silenced, "silence s-1", 1000.0)
    resolve = OutboxItem("pd", "resolve", OUTAGE_KEY, {"kind": "recovered"})
    enqueue(store, resolve)
    head = store.outbox_head("pd")
    assert head is not None and head.id == other  # the resolve waits behind its trigger
    assert store.has_held(OUTAGE_KEY) and not store.has_held("accmon/x/other/2")
    assert [r.id for r in store.unsent_triggers(OUTAGE_KEY, 1000.0)] == [silenced]
    assert [(r.id, r.status, r.last_error) for r in store.silenced_rows()] == [
        (silenced, OutboxStatus.SILENCED, "silence s-1")]
    assert store.outbox_silenced() == {"pd": 1}
    assert store.outbox_pending() == {"pd": 2}


def test_only_a_pending_untried_row_can_be_silenced(store: Store) -> None:
    tried, delivered, held = enqueue(store, trigger("k1"), trigger("k2"),
                                     OutboxItem("pd", "trigger", "k3", {},
                                                OutboxStatus.HELD))
    store.outbox_retry(tried, 1, 1010.0, "503")
    store.outbox_finish(delivered, OutboxStatus.DELIVERED, 1, 1001.0)
    assert not any(store.silence_row(i, "silence", 1002.0) for i in (tried, delivered, held))
    assert store.silenced_rows() == []


def test_releasing_a_silenced_row_sends_it_as_if_written_now(store: Store) -> None:
    (row_id,) = enqueue(store, trigger(), now=1000.0)
    store.silence_row(row_id, "maintenance weekly", 1000.0)
    assert store.outbox_head("pd") is None
    assert store.release_silenced([row_id, row_id + 99], 5000.0) == 1
    head = store.outbox_head("pd")
    assert head is not None
    assert (head.id, head.status, head.created_at, head.next_attempt_at, head.last_error) == (
        row_id, OutboxStatus.PENDING, 5000.0, 5000.0, None)
    assert store.last_notified(OUTAGE_KEY) == 5000.0  # reminders count from the release
    assert store.release_silenced([row_id], 6000.0) == 0  # only silenced rows


def test_drop_row_ends_an_unsent_row_and_leaves_a_finished_one(store: Store) -> None:
    silenced, delivered = enqueue(store, trigger("k1"), trigger("k2"))
    store.silence_row(silenced, "silence", 1000.0)
    store.outbox_finish(delivered, OutboxStatus.DELIVERED, 1, 1001.0)
    assert store.drop_row(silenced, "suppressed reminder", 1002.0)
    assert not store.drop_row(delivered, "too late", 1002.0)
    statuses = {r.id: (r.status, r.last_error) for r in store.outbox_rows()}
    assert statuses == {silenced: (OutboxStatus.DROPPED, "suppressed reminder"),
                        delivered: (OutboxStatus.DELIVERED, None)}
    assert store.outbox_silenced() == {}


def test_a_decision_drops_a_silenced_trigger_its_recovery_makes_moot(store: Store) -> None:
    st, events = vanished(1000.0)
    st, _ = store.decide(KEY, st, events, None, 1000.0,
                         [(1, OutboxItem("pd", "trigger", OUTAGE_KEY, {},
                                         OutboxStatus.SILENCED))])
    (row,) = store.silenced_rows()
    assert row.created_at == 1000.0
    new, events = recovered(1100.0, st.outage_id or -1)
    store.decide(KEY, new, events, None, 1100.0, drop=[(row.id, "ended while silenced")])
    (after,) = store.outbox_rows()
    assert (after.status, after.last_error) == (OutboxStatus.DROPPED, "ended while silenced")
