"""SQLite store: account states, outages, transitions and the notification outbox.

One decision is atomic: the new state, the outage row it opens or closes, the transition
rows and the outbox rows it causes are committed together, so a crash can never page twice
for one outage or forget to page. The writer (:mod:`monitor.writer`) commits many decisions
in one durable transaction when they come faster than the disk syncs (see
:class:`_Transaction`). Steady-state probes never write here.

The schema is versioned with ``PRAGMA user_version``; :data:`MIGRATIONS` only ever grows.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import json
import operator
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from monitor.model import (
    AbsentReason,
    AccountKey,
    AccountState,
    Event,
    EventKind,
    Identity,
    Outage,
    State,
)

if TYPE_CHECKING:
    from monitor.silences import Silence

BUSY_TIMEOUT_MS = 200

# A prune batch's position (the last row examined: time, id) and its outcome (rows deleted,
# where the next batch starts or None when there is no more to examine).
PruneCursor = tuple[float, int]
PruneStep = tuple[int, PruneCursor | None]
# The largest transition id pruned so far, kept in ``cursors`` (see oldest_transition_id).
PRUNED_TRANSITIONS = "pruned:transitions"

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE accounts (
        platform    TEXT NOT NULL,
        handle      TEXT NOT NULL,
        account_id  TEXT,
        state       TEXT NOT NULL,
        since       REAL,
        outage_id   INTEGER,
        data        TEXT NOT NULL,          -- the full AccountState as JSON
        updated_at  REAL NOT NULL,
        PRIMARY KEY (platform, handle)
    );
    CREATE TABLE outages (
        id                    INTEGER PRIMARY KEY AUTOINCREMENT,
        platform              TEXT NOT NULL,
        handle                TEXT NOT NULL,
        reason                TEXT NOT NULL,
        last_seen_present_at  REAL,
        first_seen_absent_at  REAL NOT NULL,
        confirmed_at          REAL NOT NULL,
        last_seen_absent_at   REAL,
        recovered_at          REAL
    );
    CREATE INDEX outages_by_account ON outages (platform, handle, id);
    CREATE INDEX outages_open ON outages (recovered_at) WHERE recovered_at IS NULL;
    CREATE TABLE transitions (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        platform    TEXT NOT NULL,
        handle      TEXT NOT NULL,
        kind        TEXT NOT NULL,
        at          REAL NOT NULL,
        old_state   TEXT NOT NULL,
        new_state   TEXT NOT NULL,
        reason      TEXT,
        outage_id   INTEGER,
        details     TEXT NOT NULL
    );
    CREATE TABLE outbox (
        id               INTEGER PRIMARY KEY AUTOINCREMENT,
        transition_id    INTEGER REFERENCES transitions (id),
        notifier         TEXT NOT NULL,
        action           TEXT NOT NULL,
        dedup_key        TEXT NOT NULL,
        payload          TEXT NOT NULL,
        created_at       REAL NOT NULL,
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  REAL NOT NULL,
        status           TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
        last_error       TEXT,
        finished_at      REAL
    );
    CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE status = 'pending';
    """,
    # 2: identity (renames, Mastodon moves) and push-stream cursors
    """
    ALTER TABLE accounts ADD COLUMN current_handle TEXT;
    ALTER TABLE accounts ADD COLUMN moved_to TEXT;
    CREATE TABLE cursors (
        name        TEXT PRIMARY KEY,
        value       INTEGER NOT NULL,
        updated_at  REAL NOT NULL
    );
    """,
    # 3: the decision path looks rows up by dedup key (held pages, unsent triggers)
    """
    CREATE INDEX outbox_by_dedup_key ON outbox (dedup_key, id);
    """,
    # 4: on call (silences, acks, watchlist additions, the audit trail) and bounded history:
    # every hot query and every pruning query has its index (tests/test_query_plans.py).
    # The outbox's status gains 'silenced': a trigger kept back by a silence or a
    # maintenance window, released once nothing covers it any more.
    """
    CREATE TABLE silences (
        id          TEXT PRIMARY KEY,
        matchers    TEXT NOT NULL,          -- JSON list of Matcher.to_json()
        starts_at   REAL NOT NULL,
        ends_at     REAL NOT NULL,
        created_by  TEXT NOT NULL,
        comment     TEXT NOT NULL,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    CREATE INDEX silences_by_end ON silences (ends_at);
    CREATE TABLE watchlist_additions (
        platform    TEXT NOT NULL,
        handle      TEXT NOT NULL,
        account     TEXT NOT NULL,          -- the AccountConfig fields as given, JSON
        added_by    TEXT NOT NULL,
        added_at    REAL NOT NULL,
        PRIMARY KEY (platform, handle)
    );
    CREATE TABLE audit (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        at          REAL NOT NULL,
        actor       TEXT NOT NULL,
        action      TEXT NOT NULL,
        target      TEXT NOT NULL,
        details     TEXT NOT NULL,          -- JSON object
        remote      TEXT
    );
    CREATE INDEX audit_by_time ON audit (at);
    ALTER TABLE outages ADD COLUMN acked_at REAL;
    ALTER TABLE outages ADD COLUMN acked_by TEXT;
    ALTER TABLE outages ADD COLUMN ack_comment TEXT;
    CREATE INDEX outages_recovered ON outages (recovered_at) WHERE recovered_at IS NOT NULL;
    CREATE INDEX transitions_by_account ON transitions (platform, handle, id);
    CREATE INDEX transitions_by_time ON transitions (at);
    DROP INDEX outbox_pending;
    CREATE INDEX outbox_due ON outbox (status, notifier, next_attempt_at)
        WHERE status = 'pending';
    CREATE INDEX outbox_held ON outbox (status, notifier) WHERE status = 'held';
    CREATE INDEX outbox_silenced ON outbox (status, notifier) WHERE status = 'silenced';
    CREATE INDEX outbox_firing ON outbox (notifier, dedup_key)
        WHERE status = 'delivered' AND action = 'trigger';
    CREATE INDEX outbox_finished ON outbox (finished_at)
        WHERE status IN ('delivered', 'failed', 'dropped');
    CREATE INDEX outbox_by_transition ON outbox (transition_id);
    """,
    # 5: availability reports. One row per monitor process: written at start, its alive_at
    # moved on every minute, stopped_at set at a clean stop (a crash leaves it NULL, and
    # alive_at bounds the run). The time between one run's end and the next one's start
    # nobody watched (monitor/reports.py).
    """
    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        started_at  REAL NOT NULL,
        alive_at    REAL NOT NULL,
        stopped_at  REAL
    );
    CREATE INDEX runs_by_start ON runs (started_at);
    """,
)


# The file's own trouble (locked, busy, full, read-only, I/O error, corrupt page): wait and
# write again. A constraint violated or an API misused is a bug in the write itself.
RETRYABLE: tuple[type[BaseException], ...] = (sqlite3.DatabaseError, OSError)
NOT_RETRYABLE: tuple[type[BaseException], ...] = (sqlite3.IntegrityError,
                                                  sqlite3.ProgrammingError)


def retryable(exc: BaseException) -> bool:
    """True for errors of the state file rather than of the write itself."""
    return isinstance(exc, RETRYABLE) and not isinstance(exc, NOT_RETRYABLE)


class StoreError(Exception):
    """The state file cannot be used. The message is one line naming the file and the fix."""

    @classmethod
    def of(cls, path: str, exc: BaseException) -> StoreError:
        text = str(exc)
        if isinstance(exc, sqlite3.DatabaseError) and (
                "not a database" in text or "malformed" in text):
            return cls(f"state file {path}: corrupt or truncated ({text}); restore it from a "
                       "backup, or move it aside to start afresh (states and open outages are "
                       "then lost)")
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else text
        return cls(f"state file {path}: cannot be written ({reason}); make it and its directory "
                   f"writable by uid {os.getuid()}, or point --state / monitor.state_path "
                   "elsewhere")


class OutboxStatus(enum.StrEnum):
    """Where an outbox row is. Rows never leave the table: they are an audit trail.

    The SQL below names these values as literals (the partial index on 'pending' needs
    them literal); they are exactly these members' values."""

    PENDING = "pending"  # waiting for its first attempt, or its next retry
    HELD = "held"  # kept back by a hold (platform anomaly, our own blindness)
    SILENCED = "silenced"  # kept back by a silence or maintenance window, released after
    QUORUM = "quorum"  # a vanish page waiting for the other vantages' votes (monitor.peers)
    DELIVERED = "delivered"  # the receiver took it
    FAILED = "failed"  # refused for good (a permanent 4xx) or given up after max_age
    DROPPED = "dropped"  # made moot before it went out (its outage ended meanwhile)


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A notification to deliver, written with the decision that caused it."""

    notifier: str
    action: str  # trigger | resolve | notify
    dedup_key: str
    payload: dict[str, Any]
    status: OutboxStatus = OutboxStatus.PENDING  # or HELD / SILENCED: written kept back
    delay: float = 0.0  # seconds before the first attempt (a vanish page's anomaly grace)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    notifier: str
    action: str
    dedup_key: str
    payload: dict[str, Any]
    created_at: float
    attempts: int
    next_attempt_at: float
    status: OutboxStatus
    last_error: str | None


def _outbox_row(row: sqlite3.Row) -> OutboxRow:
    return OutboxRow(row["id"], row["notifier"], row["action"], row["dedup_key"],
                     json.loads(row["payload"]), row["created_at"], row["attempts"],
                     row["next_attempt_at"], OutboxStatus(row["status"]), row["last_error"])


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """Who did which on-call write, from where: stored in the same transaction as the write
    itself, so the trail can neither miss a change nor name one that did not happen."""

    actor: str
    action: str  # e.g. silence.create, silence.expire, outage.ack, watch.add, watch.remove
    target: str  # what it acted on: a silence id, an outage id, platform/handle
    details: dict[str, Any] = field(default_factory=dict)
    remote: str | None = None  # the client's address, when it came over HTTP


@dataclass(frozen=True, slots=True)
class Run:
    """One monitor process's stretch of watching: ``[started_at, stopped_at)`` after a
    clean stop; ``stopped_at`` None while it runs, or after a crash (then ``alive_at``, moved
    on every minute, is the last moment it is known to have been watching)."""

    id: int
    started_at: float
    alive_at: float
    stopped_at: float | None = None


@dataclass(frozen=True, slots=True)
class WatchStart:
    """What the state file says about when an account began to be watched.

    ``first_transition_at``: its oldest transition kept; ``from_unknown`` says whether
    that row leaves ``unknown`` (the very first decision about the account) or whether older
    rows were pruned (then the watch began before anything kept). ``added_at``: when it was
    added through the API (None for the config's accounts)."""

    first_transition_at: float | None = None
    from_unknown: bool = False
    added_at: float | None = None


@dataclass(frozen=True, slots=True)
class StoredAccount:
    state: AccountState
    account_id: str | None
    identity: Identity = field(default_factory=Identity)


# The tables a decision writes, in the order their held rows are written (an outbox row
# refers to its transition): each INSERT's text up to VALUES, its number of columns, and
# what follows the rows.
_HELD_TABLES: tuple[tuple[str, int, str], ...] = (
    ("INSERT INTO outages (id, platform, handle, reason, last_seen_present_at,"
     " first_seen_absent_at, confirmed_at, last_seen_absent_at) VALUES ", 8, ""),
    ("INSERT INTO transitions (id, platform, handle, kind, at, old_state, new_state, reason,"
     " outage_id, details) VALUES ", 10, ""),
    ("INSERT INTO outbox (transition_id, notifier, action, dedup_key, payload, created_at,"
     " next_attempt_at, status) VALUES ", 8, ""),
    ("INSERT INTO accounts (platform, handle, account_id, current_handle, moved_to, state,"
     " since, outage_id, data, updated_at) VALUES ", 10,
     " ON CONFLICT (platform, handle) DO UPDATE SET account_id = excluded.account_id,"
     " current_handle = excluded.current_handle, moved_to = excluded.moved_to,"
     " state = excluded.state, since = excluded.since, outage_id = excluded.outage_id,"
     " data = excluded.data, updated_at = excluded.updated_at"),
)
_OUTAGES, _TRANSITIONS, _OUTBOX, _ACCOUNTS = range(4)  # indexes into _HELD_TABLES
HELD_CHUNK = 32  # rows in one INSERT at most (more: no faster, and longer to prepare)
# Values of transitions held at most (two chunks' rows): then decide writes every held row,
# so a batch's SQL runs while the writer applies it, inside the writer's time bound, not
# all at its COMMIT after the bound was checked.
_HELD_MAX = 2 * HELD_CHUNK * _HELD_TABLES[_TRANSITIONS][1]


def _insert_rows(table: int, rows: int) -> str:
    """The INSERT of ``rows`` rows into ``_HELD_TABLES[table]``: one text per (table, rows),
    and ``rows`` is HELD_CHUNK or a power of two below it, so sqlite3's statement cache
    (128 texts) keeps the few there are prepared."""
    head, width, tail = _HELD_TABLES[table]
    one = "(" + ", ".join("?" * width) + ")"
    return head + ", ".join([one] * rows) + tail


class _HeldRows:
    """The rows of the decisions in the open transaction, not written yet: written together,
    up to :data:`HELD_CHUNK` rows to an INSERT, when the transaction commits, when two
    chunks of transitions are held, or before any other statement runs on the store's
    connection (:class:`_Connection`), so nothing in the transaction reads or writes around
    them.

    One INSERT per row costs each row the statement's own work once more (opening the table
    and each of its indexes, AUTOINCREMENT's sqlite_sequence row, sqlite3's call and
    bindings), more than the row itself: a mass vanish's SQL took 201k instructions a
    decision one row to an INSERT, 121k 32 rows to one (callgrind). Each table's values lie
    flat, a row's after the one before."""

    __slots__ = ("cursor", "on_failure", "statements", "tables")

    def __init__(self, cursor: sqlite3.Cursor, on_failure: Callable[[], None]):
        self.cursor = cursor
        self.tables: tuple[list[Any], ...] = tuple([] for _ in _HELD_TABLES)
        self.statements: dict[tuple[int, int], str] = {}
        self.on_failure = on_failure  # a write failed: the transaction can only roll back

    def __bool__(self) -> bool:
        return any(self.tables)

    def write(self, only: int | None = None) -> None:
        """Write every held row (or those of table ``only``), in order."""
        try:
            for table, values in enumerate(self.tables):
                if values and (only is None or table == only):
                    self._write(table, values)
                    values.clear()
        except BaseException:
            self.clear()
            self.on_failure()
            raise

    def _write(self, table: int, values: list[Any]) -> None:
        width, execute, statements = _HELD_TABLES[table][1], self.cursor.execute, self.statements
        rows, start = len(values) // width, 0
        while rows:
            n = HELD_CHUNK if rows >= HELD_CHUNK else 1 << (rows.bit_length() - 1)
            sql = statements.get((table, n))
            if sql is None:
                sql = statements[table, n] = _insert_rows(table, n)
            end = start + n * width
            execute(sql, values[start:end])
            start, rows = end, rows - n

    def clear(self) -> None:
        for values in self.tables:
            values.clear()


class _Connection(sqlite3.Connection):
    """The store's connection: a statement on it first writes the decisions' rows held
    back (:class:`_HeldRows`), so it sees them and comes after them."""

    held: _HeldRows | None = None

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        if self.held:
            self.held.write()
        return super().execute(sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        if self.held:
            self.held.write()
        return super().executemany(sql, parameters)

    def executescript(self, sql_script: str, /) -> sqlite3.Cursor:
        if self.held:
            self.held.write()
        return super().executescript(sql_script)


# sqlite3 binds a None only after looking for an adapter for it: the protocol's __adapt__,
# the value's __conform__, each an AttributeError formatted and dropped (~3k instructions a
# None; a decision binds three to six). An adapter registered for None's type is found first
# in sqlite3's table, and {}.get(None) is None: bound as NULL, as before. (The table is the
# process's, and NULL is what every connection binds for None anyway.)
sqlite3.register_adapter(type(None), cast("Callable[[None], None]", {}.get))


def _text(value: str | None) -> str | None:
    """A StrEnum member (or None) as the plain str sqlite3 binds without its adapter
    look-up (a microsecond per member: a decision binds nine)."""
    return None if value is None else str(value)


class Store:
    """The embedded SQLite store. Not thread-safe: used from the event loop only.

    Writes happen only on decisions, so they run on the loop, never across an ``await``:
    nothing else on the loop can read a row before it is committed. WAL mode keeps readers
    (``history``) from blocking the monitor.
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._depth = 0  # how many transaction() blocks are open (see _Transaction)
        self._aborted = False  # an inner one failed: the open transaction must roll back
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, isolation_level=None, factory=_Connection)
        except (sqlite3.Error, OSError) as exc:
            raise StoreError.of(self.path, exc) from None
        try:
            self._open()
        except (sqlite3.Error, OSError, StoreError) as exc:
            self.db.close()
            raise exc if isinstance(exc, StoreError) else StoreError.of(self.path, exc) \
                from None

    def _open(self) -> None:
        # The decision path's own cursor: Connection.execute makes (and registers) a new
        # cursor per statement, about as long as the INSERT it runs (see decide).
        self._rows = self.db.cursor()
        self._held = _HeldRows(self._rows, self._abort)
        self.hold_rows = True  # False: decide writes its rows before it returns
        self.db.held = self._held
        self._last_transition_id = self._transition_id_at_begin = 0  # (set after migrating)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # a confirmed page must survive power loss
        self.db.execute("PRAGMA foreign_keys=ON")
        # Short on purpose: a write that finds the file locked fails fast and is retried by
        # the shell (monitor.writer) instead of freezing the event loop for seconds.
        self.db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self.migrate()
        # sqlite_sequence remembers the largest id ever written, so ids stay unique after
        # retention deleted the newest outages (a reused id would reuse a dedup key).
        row = self.db.execute(
            "SELECT MAX(COALESCE((SELECT MAX(id) FROM outages), 0), COALESCE((SELECT seq FROM"
            " sqlite_sequence WHERE name = 'outages'), 0))").fetchone()
        self._last_outage_id = int(row[0] or 0)
        # Transition ids likewise, allocated by decide (its rows are written later, and an
        # outbox row refers to its transition): this connection is the file's only writer
        # of transitions, and the newest transition is never pruned (each account keeps
        # its newest), sqlite_sequence aside.
        row = self.db.execute(
            "SELECT MAX(COALESCE((SELECT MAX(id) FROM transitions), 0), COALESCE((SELECT seq"
            " FROM sqlite_sequence WHERE name = 'transitions'), 0))").fetchone()
        self._last_transition_id = self._transition_id_at_begin = int(row[0] or 0)

    # ----------------------------------------------------------------- schema

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        version = self.schema_version
        if version > len(MIGRATIONS):
            raise StoreError(
                f"state file {self.path} has schema version {version}, newer than this build "
                f"knows ({len(MIGRATIONS)}); upgrade account-monitor or use another state file")
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            with self.transaction():
                for statement in script.split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number}")

    def verify(self) -> None:
        """Raise :class:`StoreError` unless the file is intact and writable (start-up's
        check, so a bad file is one line before anything starts, not a traceback later)."""
        try:
            rows = self.db.execute("PRAGMA quick_check").fetchall()
        except sqlite3.Error as exc:
            raise StoreError.of(self.path, exc) from None
        if [tuple(r) for r in rows] != [("ok",)]:
            raise StoreError.of(self.path, sqlite3.DatabaseError("database disk image is "
                                                                 "malformed"))
        if self.path != ":memory:" and not os.access(self.path, os.W_OK):
            raise StoreError.of(self.path, PermissionError(errno.EACCES, "permission denied"))

    def transaction(self) -> _Transaction:
        """``with store.transaction():`` one atomic, durable write; nested ones join it."""
        return _Transaction(self)

    @property
    def in_transaction(self) -> bool:
        """True inside ``with store.transaction()`` (nothing in it is committed yet)."""
        return self._depth > 0

    @property
    def aborted(self) -> bool:
        """True when a write inside the open transaction failed: it can only roll back."""
        return self._depth > 0 and self._aborted

    def close(self) -> None:
        self.db.close()

    def _abort(self) -> None:
        """Held rows failed to be written: the open transaction can only roll back."""
        self._aborted = True

    def _rolled_back(self) -> None:
        """The open transaction ended without its writes: forget the rows it still held and
        the transition ids it allocated (none of them is on disk)."""
        self._held.clear()
        self._last_transition_id = self._transition_id_at_begin

    # ----------------------------------------------------------------- states

    def load_accounts(self) -> dict[AccountKey, StoredAccount]:
        rows = self.db.execute("SELECT platform, handle, account_id, current_handle, moved_to,"
                               " data FROM accounts")
        return {
            AccountKey(r["platform"], r["handle"]): StoredAccount(
                _state_from_json(r["data"]), r["account_id"],
                Identity(r["account_id"], r["current_handle"], r["moved_to"]),
            )
            for r in rows
        }

    def save_account(self, key: AccountKey, st: AccountState, account_id: str | Identity | None,
                     now: float) -> None:
        """Persist one account's state (used for learned ids; decisions use :meth:`decide`)."""
        with self.transaction():
            self._upsert(key, st, account_id, now)

    def load_cursor(self, name: str) -> int | None:
        row = self.db.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
        return None if row is None else int(row[0])

    def save_cursor(self, name: str, value: int, now: float) -> None:
        with self.transaction():
            self.db.execute("INSERT INTO cursors (name, value, updated_at) VALUES (?, ?, ?)"
                            " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                            " updated_at = excluded.updated_at", (name, value, now))

    def next_outage_id(self) -> int:
        """Allocate the id of the next outage before its decision is written, so the
        decision (and its pages' dedup keys) is complete before anything touches the disk;
        a decision that waits for a locked file keeps its id. Ids are never reused once
        written (the table is AUTOINCREMENT; this counter starts past its largest id)."""
        self._last_outage_id += 1
        return self._last_outage_id

    def decide(self, key: AccountKey, st: AccountState, events: Sequence[Event],
               account_id: str | Identity | None, now: float,
               outbox: Sequence[tuple[int, OutboxItem]] = (),
               drop: Sequence[tuple[int, str]] = ()) -> tuple[AccountState, list[int]]:
        """Write one decision atomically (committed here, or with the batch when called
        inside the writer's transaction); returns the state with its outage id and the
        transition row ids (one per event, in order). Its rows are held and written with
        the transaction's others, many to a statement (:class:`_HeldRows`), or before it
        returns when :attr:`hold_rows` is False; the ids are allocated here.

        ``outbox`` pairs an index into ``events`` with the notification that event causes.
        A VANISHED event opens the outage ``st.outage_id`` (allocated beforehand with
        :meth:`next_outage_id`; one is allocated here when it is missing). ``drop`` lists
        outbox rows (id, why) that this decision makes moot, e.g. a page still waiting in its
        grace period when its outage has already ended.
        """
        with self.transaction():
            platform, handle, tables = key.platform, key.handle, self._held.tables
            for event in events:
                if event.kind is EventKind.VANISHED:
                    outage_id = st.outage_id or self.next_outage_id()
                    self._open_outage(key, event, outage_id)
                    if st.outage_id != outage_id:  # (a copy costs a tenth of a decision)
                        st = replace(st, outage_id=outage_id)
                elif event.kind is EventKind.RECOVERED:
                    self._close_outage(event)
            ids: list[int] = []
            transitions, first = tables[_TRANSITIONS], self._last_transition_id + 1
            for row_id, ev in enumerate(events, first):
                transitions.extend((
                    row_id, platform, handle, str(ev.kind), ev.at, str(ev.old_state),
                    str(ev.new_state), _text(ev.reason),
                    ev.outage_id if ev.kind is EventKind.RECOVERED else st.outage_id,
                    _dumps(ev.details)))
                ids.append(row_id)
            self._last_transition_id += len(ids)
            for row_id, why in drop:  # (rows read before: written, none of them held)
                self._rows.execute("UPDATE outbox SET status = 'dropped', finished_at = ?,"
                                   " last_error = ? WHERE id = ?"
                                   " AND status IN ('pending', 'held', 'silenced', 'quorum')",
                                   (now, why, row_id))
            outbox_rows = tables[_OUTBOX]
            for index, item in outbox:
                outbox_rows.extend((
                    ids[index], item.notifier, item.action, item.dedup_key,
                    _dumps(item.payload), now, now + item.delay, str(item.status)))
            self._upsert(key, st, account_id, now)
            if not self.hold_rows or len(transitions) >= _HELD_MAX:
                self._held.write()
        return st, ids

    def enqueue(self, items: Iterable[OutboxItem], now: float) -> None:
        """Outbox rows that no state decision causes (reminders, platform anomalies)."""
        with self.transaction():
            for item in items:
                self.db.execute(
                    "INSERT INTO outbox (transition_id, notifier, action, dedup_key, payload,"
                    " created_at, next_attempt_at, status) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?)",
                    (item.notifier, item.action, item.dedup_key, json.dumps(item.payload),
                     now, now, item.status))

    def _upsert(self, key: AccountKey, st: AccountState, who: str | Identity | None,
                now: float) -> None:
        if isinstance(who, Identity):
            identity = (who.account_id, who.current_handle, who.moved_to)
        else:
            identity = (who, None, None)
        self._held.tables[_ACCOUNTS].extend((key.platform, key.handle, *identity,
                                            str(st.state), st.since, st.outage_id,
                                            _state_to_json(st), now))

    def _open_outage(self, key: AccountKey, event: Event, outage_id: int) -> None:
        d = event.vanished()
        first = d.get("first_absent_at")
        self._held.tables[_OUTAGES].extend((
            outage_id, key.platform, key.handle, str(event.reason or "unknown"),
            d.get("last_present_at"), event.at if first is None else first, event.at,
            event.at))

    def _close_outage(self, event: Event) -> None:
        d = event.recovered()
        if d.get("outage_id") is None:
            return
        recovered = d.get("recovered_at")
        self._held.write(_OUTAGES)  # it may have opened in this transaction
        self._rows.execute(
            "UPDATE outages SET recovered_at = ?, last_seen_absent_at ="
            " MAX(COALESCE(last_seen_absent_at, 0), COALESCE(?, 0)) WHERE id = ?",
            (event.at if recovered is None else recovered, d.get("last_absent_at"),
             d.get("outage_id")),
        )

    # ----------------------------------------------------------------- queries

    def outages(self, *, limit: int = 100, platform: str | None = None,
                handle: str | None = None, open_only: bool = False) -> list[Outage]:
        """Newest first."""
        where, args = ["1 = 1"], []
        if platform:
            where.append("platform = ?")
            args.append(platform)
        if handle:
            where.append("handle = ?")
            args.append(handle)
        if open_only:
            where.append("recovered_at IS NULL")
        rows = self.db.execute(
            f"SELECT * FROM outages WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
            (*args, limit),
        )
        return [_outage(r) for r in rows]

    def transitions(self, *, after_id: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT * FROM transitions WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
        )
        return [dict(r) | {"details": json.loads(r["details"])} for r in rows]

    def account_transitions(self, key: AccountKey, *, limit: int = 100,
                            before_id: int | None = None) -> list[dict[str, Any]]:
        """One account's transitions, newest first (page back with the last id seen)."""
        rows = self.db.execute(
            "SELECT * FROM transitions WHERE platform = ? AND handle = ? AND id < ?"
            " ORDER BY id DESC LIMIT ?",
            (key.platform, key.handle, 2**63 - 1 if before_id is None else before_id, limit))
        return [dict(r) | {"details": json.loads(r["details"])} for r in rows]

    def account_keys(self) -> list[AccountKey]:
        """Every account the state file has a state for, without reading the states."""
        rows = self.db.execute("SELECT platform, handle FROM accounts ORDER BY platform, handle")
        return [AccountKey(r["platform"], r["handle"]) for r in rows]

    # ----------------------------------------------------------------- availability

    def outages_since(self, since: float, key: AccountKey | None = None) -> list[Outage]:
        """Every outage that touches ``[since, now)``: open ones and those recovered at or
        after ``since`` (an outage recovered before it ended before it too), oldest first.
        One query for all accounts (``key`` None) or one account's, each from an index."""
        if key is not None:
            rows = self.db.execute(
                "SELECT * FROM outages WHERE platform = ? AND handle = ?"
                " AND (recovered_at IS NULL OR recovered_at >= ?) ORDER BY id",
                (key.platform, key.handle, since))
        else:
            rows = self.db.execute(
                "SELECT * FROM outages WHERE recovered_at >= ?"
                " UNION ALL SELECT * FROM outages WHERE recovered_at IS NULL", (since,))
        # Sorted here: an ORDER BY would make SQLite walk the whole table in id order
        # instead of searching the two partial indexes.
        return sorted((_outage(r) for r in rows), key=lambda o: o.id)

    def watch_starts(self, keys: Iterable[AccountKey]) -> dict[AccountKey, WatchStart]:
        """When each of ``keys`` began to be watched, as far as the file knows: one query
        (an index search per key), every key answered (unknown: all None)."""
        wanted = json.dumps([[k.platform, k.handle] for k in keys])
        rows = self.db.execute(
            "SELECT json_extract(json_each.value, '$[0]') AS platform,"
            " json_extract(json_each.value, '$[1]') AS handle, t.at, t.old_state, w.added_at"
            " FROM json_each(?)"
            " LEFT JOIN transitions t ON t.id = (SELECT MIN(x.id) FROM transitions x"
            " WHERE x.platform = json_extract(json_each.value, '$[0]')"
            " AND x.handle = json_extract(json_each.value, '$[1]'))"
            " LEFT JOIN watchlist_additions w"
            " ON w.platform = json_extract(json_each.value, '$[0]')"
            " AND w.handle = json_extract(json_each.value, '$[1]')", (wanted,))
        return {AccountKey(r["platform"], r["handle"]): WatchStart(
                    r["at"], r["old_state"] == State.UNKNOWN.value, r["added_at"])
                for r in rows}

    def start_run(self, now: float) -> int:
        """Record that a monitor process starts watching now; returns the run's id."""
        with self.transaction():
            cur = self.db.execute("INSERT INTO runs (started_at, alive_at) VALUES (?, ?)",
                                  (now, now))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def run_alive(self, run_id: int, now: float) -> None:
        """The run is still watching at ``now`` (never moves alive_at back, nor touches a
        stopped run)."""
        with self.transaction():
            self.db.execute("UPDATE runs SET alive_at = MAX(alive_at, ?) WHERE id = ?"
                            " AND stopped_at IS NULL", (now, run_id))

    def stop_run(self, run_id: int, now: float) -> None:
        """A clean stop: the run watched until ``now``."""
        with self.transaction():
            self.db.execute("UPDATE runs SET alive_at = MAX(alive_at, ?),"
                            " stopped_at = MAX(started_at, ?) WHERE id = ?"
                            " AND stopped_at IS NULL", (now, now, run_id))

    def runs_since(self, since: float) -> list[Run]:
        """The runs that may bound a gap in ``[since, now)``: the last one started before
        ``since`` and every one started since, in the order they started."""
        rows = self.db.execute(
            "SELECT * FROM runs WHERE started_at >= COALESCE((SELECT MAX(started_at)"
            " FROM runs WHERE started_at < ?), ?) ORDER BY started_at, id", (since, since))
        return [Run(r["id"], r["started_at"], r["alive_at"], r["stopped_at"]) for r in rows]

    # ----------------------------------------------------------------- outbox

    def outbox_head(self, notifier: str) -> OutboxRow | None:
        """The next row one notifier should deliver: the soonest due among the pending rows
        that no earlier row of the same dedup key waits before (so a resolve never overtakes
        its trigger, and one page held back or silenced for a while does not block the
        others)."""
        row = self.db.execute(
            "SELECT * FROM outbox o WHERE o.notifier = ? AND o.status = 'pending'"
            " AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.notifier = o.notifier"
            " AND p.dedup_key = o.dedup_key"
            " AND p.status IN ('pending', 'held', 'silenced', 'quorum')"
            " AND p.id < o.id) ORDER BY o.next_attempt_at, o.id LIMIT 1",
            (notifier,)).fetchone()
        return None if row is None else _outbox_row(row)

    def hold_pending(self, kinds: Sequence[str], platform: str | None = None) -> int:
        """A platform anomaly (or the monitor's own blindness) began: hold the pages of
        these kinds (of this platform, or every platform) that are not delivered yet."""
        where, args = _of_hold(kinds, platform)
        with self.transaction():
            cur = self.db.execute(
                f"UPDATE outbox SET status = 'held' WHERE status = 'pending' AND {where}", args)
        return cur.rowcount

    def outbox_retry(self, row_id: int, attempts: int, next_attempt_at: float,
                     error: str) -> None:
        with self.transaction():
            self.db.execute("UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ?"
                            " WHERE id = ?", (attempts, next_attempt_at, error, row_id))

    def outbox_finish(self, row_id: int, status: OutboxStatus | str, attempts: int,
                      now: float,
                      error: str | None = None) -> None:
        """Mark a row delivered or failed; it never leaves the table (an audit trail)."""
        with self.transaction():
            self.db.execute("UPDATE outbox SET status = ?, attempts = ?, finished_at = ?,"
                            " last_error = ? WHERE id = ?",
                            (status, attempts, now, error, row_id))

    def outbox_oldest_pending(self) -> dict[str, float]:
        rows = self.db.execute("SELECT notifier, MIN(created_at) AS t FROM outbox"
                               " WHERE status = 'pending' GROUP BY notifier")
        return {r["notifier"]: r["t"] for r in rows}

    def outbox_firing(self, notifier: str) -> list[OutboxRow]:
        """Delivered triggers not yet followed by a resolve (for re-sending to Alertmanager)."""
        rows = self.db.execute(
            "SELECT * FROM outbox o WHERE o.notifier = ? AND o.status = 'delivered'"
            " AND o.action = 'trigger' AND o.id = (SELECT MAX(x.id) FROM outbox x"
            " WHERE x.notifier = o.notifier AND x.dedup_key = o.dedup_key"
            " AND x.status != 'failed')", (notifier,))
        return [_outbox_row(r) for r in rows]

    def outbox_rows(self, notifier: str | None = None) -> list[OutboxRow]:
        rows = self.db.execute("SELECT * FROM outbox WHERE ? IS NULL OR notifier = ? ORDER BY id",
                               (notifier, notifier))
        return [_outbox_row(r) for r in rows]

    def unsent_triggers(self, dedup_key: str, now: float) -> list[OutboxRow]:
        """Triggers of ``dedup_key`` that nobody has received and no worker can be sending:
        held, silenced, or still waiting out their grace period untried. (A row already due
        may be in a worker's hands right now, so it counts as sent; so does a row already
        tried once, which may have reached its receiver.)"""
        rows = self.db.execute(
            "SELECT * FROM outbox WHERE dedup_key = ? AND action = 'trigger' AND attempts = 0"
            " AND (status IN ('held', 'silenced', 'quorum') OR (status = 'pending'"
            " AND next_attempt_at > ?))",
            (dedup_key, now))
        return [_outbox_row(r) for r in rows]

    def has_held(self, dedup_key: str) -> bool:
        """True while a row of ``dedup_key`` is kept back (held or silenced): nobody got
        its page, so no reminder either."""
        row = self.db.execute("SELECT 1 FROM outbox WHERE dedup_key = ?"
                              " AND status IN ('held', 'silenced', 'quorum') LIMIT 1",
                              (dedup_key,)).fetchone()
        return row is not None

    def release_held(self, kinds: Sequence[str], now: float, platform: str | None = None,
                     delay: float = 0.0) -> tuple[int, int]:
        """The anomaly (or own blindness) cleared: send what was held for accounts still
        gone; drop the held pages of outages that ended meanwhile (never paged, so never
        resolved). Returns (released, dropped) row counts."""
        where, args = _of_hold(kinds, platform)
        with self.transaction():
            rows = self.db.execute(
                f"SELECT id, dedup_key, action FROM outbox WHERE status = 'held' AND {where}",
                args).fetchall()
            ended = {r["dedup_key"] for r in rows if r["action"] == "resolve"}
            released = dropped = 0
            for r in rows:
                if r["dedup_key"] in ended:
                    self.db.execute("UPDATE outbox SET status = 'dropped', finished_at = ?,"
                                    " last_error = 'held; the outage ended before the hold"
                                    " cleared' WHERE id = ?", (now, r["id"]))
                    dropped += 1
                else:
                    self.db.execute("UPDATE outbox SET status = 'pending', next_attempt_at = ?"
                                    " WHERE id = ?", (now + delay, r["id"]))
                    released += 1
        return released, dropped

    def held_count(self, kinds: Sequence[str], platform: str | None = None) -> int:
        where, args = _of_hold(kinds, platform)
        row = self.db.execute(f"SELECT COUNT(*) FROM outbox WHERE status = 'held' AND {where}",
                              args).fetchone()
        return int(row[0])

    def last_action(self, dedup_key: str) -> str | None:
        """The action of the newest row of ``dedup_key`` that was not dropped: 'trigger'
        means that incident is already open (or on its way), so a restart must not open it
        again."""
        row = self.db.execute("SELECT action FROM outbox WHERE dedup_key = ? AND status !="
                              " 'dropped' ORDER BY id DESC LIMIT 1", (dedup_key,)).fetchone()
        return None if row is None else str(row[0])

    def last_notified(self, dedup_key: str) -> float | None:
        row = self.db.execute("SELECT MAX(created_at) FROM outbox WHERE dedup_key = ?",
                              (dedup_key,)).fetchone()
        return None if row is None else row[0]

    def outbox_pending(self) -> dict[str, int]:
        rows = self.db.execute(
            "SELECT notifier, COUNT(*) AS n FROM outbox WHERE status = 'pending' GROUP BY notifier"
        )
        return {r["notifier"]: r["n"] for r in rows}

    # ----------------------------------------------------------------- silenced rows

    def silence_row(self, row_id: int, why: str, now: float) -> bool:
        """Keep a pending, never tried row back while a silence (or maintenance window)
        covers it. A row already tried may have reached its receiver, so it is left to go:
        a page already open is left as it is. False when the row was not silenced."""
        with self.transaction():
            cur = self.db.execute("UPDATE outbox SET status = 'silenced', last_error = ?"
                                  " WHERE id = ? AND status = 'pending' AND attempts = 0",
                                  (why, row_id))
        return cur.rowcount == 1

    def silenced_rows(self) -> list[OutboxRow]:
        """Every row a silence keeps back, oldest first (re-examined as silences change)."""
        rows = self.db.execute("SELECT * FROM outbox WHERE status = 'silenced' ORDER BY id")
        return [_outbox_row(r) for r in rows]

    def release_silenced(self, row_ids: Sequence[int], now: float) -> int:
        """Nothing covers these rows any more: send them now. Their age (``max_age``,
        reminders) counts from the release, not from when they were written."""
        with self.transaction():
            released = 0
            for row_id in row_ids:
                cur = self.db.execute("UPDATE outbox SET status = 'pending', created_at = ?,"
                                      " next_attempt_at = ?, last_error = NULL"
                                      " WHERE id = ? AND status = 'silenced'",
                                      (now, now, row_id))
                released += cur.rowcount
        return released

    def drop_row(self, row_id: int, why: str, now: float) -> bool:
        """Make one unsent row moot (a suppressed reminder, a silenced page whose outage
        ended). A row already delivered or failed is left as it is."""
        with self.transaction():
            cur = self.db.execute("UPDATE outbox SET status = 'dropped', finished_at = ?,"
                                  " last_error = ? WHERE id = ?"
                                  " AND status IN ('pending', 'held', 'silenced', 'quorum')",
                                  (now, why, row_id))
        return cur.rowcount == 1

    def outbox_silenced(self) -> dict[str, int]:
        rows = self.db.execute("SELECT notifier, COUNT(*) AS n FROM outbox"
                               " WHERE status = 'silenced' GROUP BY notifier")
        return {r["notifier"]: r["n"] for r in rows}

    def await_quorum(self, row_id: int, now: float) -> bool:
        """Keep an untried vanish page back until the other vantages have voted."""
        with self.transaction():
            cur = self.db.execute("UPDATE outbox SET status = 'quorum', last_error ="
                                  " 'waiting for the other vantages' WHERE id = ?"
                                  " AND status = 'pending' AND attempts = 0", (row_id,))
        return cur.rowcount == 1

    def quorum_rows(self) -> list[OutboxRow]:
        """Pages waiting for votes (checked again at start; rare, so no index of its own)."""
        rows = self.db.execute("SELECT * FROM outbox WHERE status = 'quorum' ORDER BY id")
        return [_outbox_row(r) for r in rows]

    def release_quorum(self, dedup_key: str, payload: dict[str, Any], now: float) -> int:
        """Enough vantages agree: the outage's kept-back pages go out, carrying the votes."""
        with self.transaction():
            cur = self.db.execute(
                "UPDATE outbox SET status = 'pending', payload = ?, next_attempt_at = ?,"
                " last_error = NULL WHERE dedup_key = ? AND status = 'quorum'",
                (json.dumps(payload), now, dedup_key))
        return cur.rowcount

    # ----------------------------------------------------------------- on call

    def save_silence(self, silence: Silence, audit: AuditEntry) -> None:
        """Create or update (same id) a silence; expiring one is an update of its end."""
        with self.transaction():
            self.db.execute(
                "INSERT OR REPLACE INTO silences (id, matchers, starts_at, ends_at, created_by,"
                " comment, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (silence.id, json.dumps([m.to_json() for m in silence.matchers]),
                 silence.starts_at, silence.ends_at, silence.created_by, silence.comment,
                 silence.created_at, silence.updated_at))
            self._audit(audit, silence.updated_at)

    def load_silences(self, expired_after: float | None = None) -> list[Silence]:
        """Every silence not expired by ``expired_after`` (None: all), oldest first."""
        from monitor.matchers import Matcher
        from monitor.silences import Silence

        if expired_after is None:
            rows = self.db.execute("SELECT * FROM silences ORDER BY created_at, id")
        else:
            rows = self.db.execute("SELECT * FROM silences WHERE ends_at > ?"
                                   " ORDER BY created_at, id", (expired_after,))
        return [Silence(id=r["id"],
                        matchers=tuple(Matcher.from_json(m) for m in json.loads(r["matchers"])),
                        starts_at=r["starts_at"], ends_at=r["ends_at"],
                        created_by=r["created_by"], comment=r["comment"],
                        created_at=r["created_at"], updated_at=r["updated_at"])
                for r in rows]

    def outage(self, outage_id: int) -> Outage | None:
        row = self.db.execute("SELECT * FROM outages WHERE id = ?", (outage_id,)).fetchone()
        return None if row is None else _outage(row)

    def acknowledge(self, outage_id: int, by: str, comment: str | None, now: float,
                    items: Sequence[OutboxItem], audit: AuditEntry) -> bool:
        """Record that ``by`` took on an open outage, with the ack's outbox rows (to the
        providers that take one) and its audit row, in one transaction. False, and nothing
        written, when the outage is unknown, over, or already acknowledged."""
        with self.transaction():
            cur = self.db.execute(
                "UPDATE outages SET acked_at = ?, acked_by = ?, ack_comment = ? WHERE id = ?"
                " AND recovered_at IS NULL AND acked_at IS NULL",
                (now, by, comment, outage_id))
            if cur.rowcount != 1:
                return False
            self._insert_items(items, now)
            self._audit(audit, now)
        return True

    def add_watch(self, account: dict[str, Any], audit: AuditEntry,
                  now: float | None = None) -> None:
        """Store an account added through the API (``account``: its AccountConfig fields
        as given, with ``platform`` and ``handle``). Adding it again updates it in place."""
        at = time.time() if now is None else now
        with self.transaction():
            self.db.execute(
                "INSERT INTO watchlist_additions (platform, handle, account, added_by, added_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (platform, handle) DO UPDATE SET"
                " account = excluded.account, added_by = excluded.added_by,"
                " added_at = excluded.added_at",
                (str(account["platform"]), str(account["handle"]), json.dumps(account),
                 audit.actor, at))
            self._audit(audit, at)

    def remove_watch(self, platform: str, handle: str, audit: AuditEntry,
                     now: float | None = None) -> bool:
        """False, and nothing written, when no such account was added through the API."""
        at = time.time() if now is None else now
        with self.transaction():
            cur = self.db.execute("DELETE FROM watchlist_additions WHERE platform = ?"
                                  " AND handle = ?", (platform, handle))
            if cur.rowcount != 1:
                return False
            self._audit(audit, at)
        return True

    def watch_additions(self) -> list[dict[str, Any]]:
        """The stored account dicts, in the order they were first added."""
        rows = self.db.execute("SELECT account FROM watchlist_additions ORDER BY rowid")
        return [json.loads(r["account"]) for r in rows]

    def audit_log(self, limit: int = 100, after_id: int = 0) -> list[dict[str, Any]]:
        """Audit rows after ``after_id``, oldest first (page on with the last id seen)."""
        rows = self.db.execute("SELECT * FROM audit WHERE id > ? ORDER BY id LIMIT ?",
                               (after_id, limit))
        return [dict(r) | {"details": json.loads(r["details"])} for r in rows]

    def _audit(self, entry: AuditEntry, at: float) -> None:
        self.db.execute("INSERT INTO audit (at, actor, action, target, details, remote)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        (at, entry.actor, entry.action, entry.target,
                         json.dumps(entry.details), entry.remote))

    def _insert_items(self, items: Iterable[OutboxItem], now: float) -> None:
        for item in items:
            self.db.execute(
                "INSERT INTO outbox (transition_id, notifier, action, dedup_key, payload,"
                " created_at, next_attempt_at, status) VALUES (NULL, ?, ?, ?, ?, ?, ?, ?)",
                (item.notifier, item.action, item.dedup_key, json.dumps(item.payload),
                 now, now + item.delay, item.status))

    # ----------------------------------------------------------------- retention

    def oldest_transition_id(self) -> int | None:
        """The first id of the unbroken tail of the history: every transition from this id
        on is kept, so a replay after id ``last`` is complete iff ``last >= this - 1``.
        (Older rows may still be there, each account's newest among them, so the smallest id
        kept would not say whether anything after ``last`` was pruned.)"""
        pruned = self.load_cursor(PRUNED_TRANSITIONS)
        if pruned is not None:
            return pruned + 1
        row = self.db.execute("SELECT MIN(id) FROM transitions").fetchone()
        return None if row[0] is None else int(row[0])

    def prune_outbox(self, before: float, batch: int,
                     after: PruneCursor | None = None) -> PruneStep:
        """Delete up to ``batch`` rows finished (delivered, failed, dropped) before
        ``before``, in one transaction. Unsent rows (pending, held, silenced) are never
        touched, nor a delivered trigger that is still the last word of its notifier and
        dedup key: Alertmanager's firing alerts are re-sent from it
        (:meth:`outbox_firing`), and an outage open for months keeps its page."""
        at, last = after or (float("-inf"), 0)
        with self.transaction():
            rows = self.db.execute(
                "SELECT o.id, o.finished_at, (o.status = 'delivered' AND o.action = 'trigger'"
                " AND NOT EXISTS (SELECT 1 FROM outbox x WHERE x.dedup_key = o.dedup_key"
                " AND x.notifier = o.notifier AND x.id > o.id AND x.status != 'failed'))"
                " AS firing FROM outbox o"
                " WHERE o.status IN ('delivered', 'failed', 'dropped') AND o.finished_at < ?"
                " AND o.finished_at >= ? AND (o.finished_at > ? OR o.id > ?)"
                " ORDER BY o.finished_at, o.id LIMIT ?",
                (before, at, at, last, batch)).fetchall()
            doomed = [r["id"] for r in rows if not r["firing"]]
            cur = self.db.execute("DELETE FROM outbox WHERE id IN"
                                  " (SELECT value FROM json_each(?))", (json.dumps(doomed),))
        return cur.rowcount, _cursor(rows, "finished_at", batch)

    def prune_transitions(self, before: float, batch: int,
                          after: PruneCursor | None = None) -> PruneStep:
        """Delete up to ``batch`` transitions from before ``before``, in one transaction,
        never the newest of an account (its current state's record). Outbox rows that still
        point at one (pages kept back for long) lose the pointer, not their page."""
        at, last = after or (float("-inf"), 0)
        with self.transaction():
            rows = self.db.execute(
                "SELECT t.id, t.at, t.id = (SELECT MAX(n.id) FROM transitions n"
                " WHERE n.platform = t.platform AND n.handle = t.handle) AS newest"
                " FROM transitions t WHERE t.at < ? AND t.at >= ? AND (t.at > ? OR t.id > ?)"
                " ORDER BY t.at, t.id LIMIT ?", (before, at, at, last, batch)).fetchall()
            ids = [r["id"] for r in rows if not r["newest"]]
            doomed = json.dumps(ids)
            self.db.execute("UPDATE outbox SET transition_id = NULL WHERE transition_id IN"
                            " (SELECT value FROM json_each(?))", (doomed,))
            cur = self.db.execute("DELETE FROM transitions WHERE id IN"
                                  " (SELECT value FROM json_each(?))", (doomed,))
            if ids:
                self.db.execute(
                    "INSERT INTO cursors (name, value, updated_at) VALUES (?, ?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value),"
                    " updated_at = excluded.updated_at", (PRUNED_TRANSITIONS, max(ids), before))
        return cur.rowcount, _cursor(rows, "at", batch)

    def prune_outages(self, before: float, batch: int,
                      after: PruneCursor | None = None) -> PruneStep:
        """Delete up to ``batch`` outages recovered before ``before`` (open ones stay)."""
        return self._prune_where("outages", "recovered_at", before, batch)

    def prune_audit(self, before: float, batch: int,
                    after: PruneCursor | None = None) -> PruneStep:
        return self._prune_where("audit", "at", before, batch)

    def prune_silences(self, before: float, batch: int,
                       after: PruneCursor | None = None) -> PruneStep:
        """Delete up to ``batch`` silences that ended before ``before``."""
        return self._prune_where("silences", "ends_at", before, batch)

    def _prune_where(self, table: str, column: str, before: float, batch: int) -> PruneStep:
        """Every row matched goes, so the next batch starts again from the oldest left."""
        with self.transaction():
            cur = self.db.execute(
                f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table}"
                f" WHERE {column} < ? ORDER BY {column} LIMIT ?)", (before, batch))
        return cur.rowcount, (before, 0) if cur.rowcount == batch else None


class _Transaction:
    """``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on any exception; re-entrant.

    Inside another transaction of the same store it joins the outer one: its writes are
    committed only with the outer transaction. This is what lets the writer
    (:mod:`monitor.writer`) commit many decisions, each one a store method with its own
    ``with self.transaction()``, in one durable commit. An inner one that fails makes the
    whole transaction roll back: its exception goes on up and the outer one rolls back
    with it, or, should a caller swallow it, the outer one refuses to commit
    (``sqlite3.ProgrammingError``) rather than commit half a write. (No SAVEPOINT per inner
    one: each costs a copy of every page it touches, a third of a decision's time.)

    The decisions' rows held back (:class:`_HeldRows`) are written just before the COMMIT,
    in the same transaction; a failure there (the disk full, a constraint a row breaks)
    rolls the whole transaction back like any other."""

    __slots__ = ("store",)

    def __init__(self, store: Store):
        self.store = store

    def __enter__(self) -> sqlite3.Connection:
        store = self.store
        if store._depth == 0:
            store.db.execute("BEGIN IMMEDIATE")
            store._aborted = False
            store._transition_id_at_begin = store._last_transition_id
        store._depth += 1
        return store.db

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        store = self.store
        store._depth -= 1
        if store._depth > 0:
            if exc_type is not None:
                store._aborted = True  # half a write is in the outer transaction
            return
        db = store.db
        if exc_type is not None:
            store._rolled_back()  # (first: ROLLBACK is not to write the held rows)
            _roll_back(db)
        elif store._aborted:
            store._rolled_back()
            _roll_back(db)
            raise sqlite3.ProgrammingError("a write inside this transaction failed; the "
                                           "whole transaction was rolled back")
        else:
            try:
                store._held.write()
                db.execute("COMMIT")
            except BaseException:
                store._rolled_back()
                _roll_back(db)  # a refused COMMIT leaves the transaction open: end it
                raise


def _roll_back(db: sqlite3.Connection) -> None:
    """End the open transaction, if SQLite has not already (after a full disk or an I/O
    error it rolls back by itself, and ROLLBACK would then fail and hide the cause)."""
    if db.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")


def _cursor(rows: Sequence[sqlite3.Row], column: str, batch: int) -> PruneCursor | None:
    """Where the next prune batch starts: after the last row examined (kept ones too, so
    they are not examined again), or None when this one was the last."""
    if len(rows) < batch:
        return None
    return float(rows[-1][column]), int(rows[-1]["id"])


def _of_hold(kinds: Sequence[str], platform: str | None) -> tuple[str, tuple[Any, ...]]:
    """The rows a hold covers: pages of these kinds, of ``platform`` (None: every one)."""
    marks = ", ".join("?" * len(kinds))
    return (f"(? IS NULL OR json_extract(payload, '$.platform') = ?)"
            f" AND json_extract(payload, '$.kind') IN ({marks})", (platform, platform, *kinds))


def _outage(row: sqlite3.Row) -> Outage:
    return Outage(
        id=row["id"],
        key=AccountKey(row["platform"], row["handle"]),
        reason=row["reason"],
        last_seen_present_at=row["last_seen_present_at"],
        first_seen_absent_at=row["first_seen_absent_at"],
        confirmed_at=row["confirmed_at"],
        last_seen_absent_at=row["last_seen_absent_at"],
        recovered_at=row["recovered_at"],
        acked_at=row["acked_at"],
        acked_by=row["acked_by"],
        ack_comment=row["ack_comment"],
    )


# The fields _state_to_json writes by position, in AccountState's order: checked at import,
# so a field added to AccountState fails loudly here instead of being left out of the file.
_STATE_FIELDS = ("state", "absent_streak", "present_streak", "reason", "last_present_at",
                 "first_absent_at", "last_absent_at", "first_recovered_at", "last_observed_at",
                 "last_decisive_at", "blind", "outage_id", "since", "watched_since")
if tuple(AccountState.__dataclass_fields__) != _STATE_FIELDS:
    raise ImportError("monitor.store._state_to_json must write every field of AccountState")
_STATE_VALUES = operator.attrgetter(*_STATE_FIELDS)  # every field at once, in C
_escape = json.encoder.encode_basestring_ascii  # json.dumps's own, for a str


def _state_to_json(st: AccountState) -> str:
    """The same JSON as ``json.dumps(dataclasses.asdict(st))`` (every field is a plain
    value), written field by field: asdict deep-copies, and json.dumps escapes each of the
    14 keys again on every decision (49k instructions a state; this, 18k). A float's repr
    is its JSON, except for inf and nan, and a bool's is not: any of those goes the slow
    way, as json.dumps writes it."""
    (state, absent_streak, present_streak, reason, last_present_at, first_absent_at,
     last_absent_at, first_recovered_at, last_observed_at, last_decisive_at, blind,
     outage_id, since, watched_since) = _STATE_VALUES(st)
    text = (
        f'{{"state": {_escape(state)}, "absent_streak": {absent_streak!r},'
        f' "present_streak": {present_streak!r},'
        f' "reason": {"null" if reason is None else _escape(reason)},'
        f' "last_present_at": {"null" if last_present_at is None else repr(last_present_at)},'
        f' "first_absent_at": {"null" if first_absent_at is None else repr(first_absent_at)},'
        f' "last_absent_at": {"null" if last_absent_at is None else repr(last_absent_at)},'
        f' "first_recovered_at":'
        f' {"null" if first_recovered_at is None else repr(first_recovered_at)},'
        f' "last_observed_at":'
        f' {"null" if last_observed_at is None else repr(last_observed_at)},'
        f' "last_decisive_at":'
        f' {"null" if last_decisive_at is None else repr(last_decisive_at)},'
        f' "blind": {"true" if blind else "false"},'
        f' "outage_id": {"null" if outage_id is None else repr(outage_id)},'
        f' "since": {"null" if since is None else repr(since)},'
        f' "watched_since": {"null" if watched_since is None else repr(watched_since)}}}')
    if "inf" in text or "nan" in text or "True" in text or "False" in text \
            or type(blind) is not bool:
        return _dumps(dict(zip(_STATE_FIELDS, _STATE_VALUES(st), strict=True)))
    return text


def _not_serialisable(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# json.dumps builds a new C encoder on every call, half the time of encoding a small dict;
# a decision encodes four. One encoder, made once with json.dumps's own defaults, gives the
# same text (checked in tests/test_store.py), except that a value that contains itself is
# a RecursionError instead of a ValueError (neither is ever written).
_MAKE_ENCODER: Callable[..., Callable[[Any, int], Iterable[str]]] | None = getattr(
    json.encoder, "c_make_encoder", None)
_ENCODER = (None if _MAKE_ENCODER is None else
            _MAKE_ENCODER(None, _not_serialisable, json.encoder.encode_basestring_ascii, None,
                          ": ", ", ", False, False, True))


def _dumps(value: Any) -> str:
    """``json.dumps(value)``, faster (see _ENCODER)."""
    if _ENCODER is None:  # no C accelerator (not CPython): the plain way
        return json.dumps(value)
    return "".join(_ENCODER(value, 0))


def _state_from_json(text: str) -> AccountState:
    data = json.loads(text)
    data["state"] = State(data["state"])
    if data.get("reason"):
        data["reason"] = AbsentReason(data["reason"])
    known = AccountState.__dataclass_fields__
    return AccountState(**{k: v for k, v in data.items() if k in known})
