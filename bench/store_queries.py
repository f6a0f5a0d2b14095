"""The decision path's outbox look-ups on a big state file, with and without their indexes.

    python bench/store_queries.py [ROWS]      # default 308,000 outbox rows (30 days of soak)

Fills a state file with ROWS finished outbox rows (as a long run leaves them, ~590-byte
payloads, one dedup key per outage) plus a few unsent ones, then times the look-ups the
monitor's only thread makes per decision or tick: ``outbox_head``, ``has_held``,
``last_notified``, ``last_action``, ``unsent_triggers``. Then it drops the indexes added by
migration 4 and times them again, so the two columns come from one run on one machine.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from monitor.store import Store

PAYLOAD = json.dumps({"summary": "x" * 500, "details": {"k": "v" * 40}})
NEW_INDEXES = ("outbox_due", "outbox_held", "outbox_silenced", "outbox_firing",
               "outbox_finished", "outbox_by_transition")


def fill(store: Store, rows: int) -> None:
    now = time.time()
    with store.transaction():
        store.db.executemany(
            "INSERT INTO outbox (notifier, action, dedup_key, payload, created_at,"
            " next_attempt_at, status, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ((f"n{i % 3}", "trigger" if i % 2 else "resolve",
              f"accmon/x/h{i // 6}/outage-{i // 6}", PAYLOAD, now - rows + i, now - rows + i,
              "delivered", now - rows + i) for i in range(rows)))
        store.db.executemany(
            "INSERT INTO outbox (notifier, action, dedup_key, payload, created_at,"
            " next_attempt_at, status) VALUES (?, 'trigger', ?, ?, ?, ?, ?)",
            ((f"n{i % 3}", f"accmon/x/live{i}/outage-1", PAYLOAD, now, now + 60,
              "held" if i % 2 else "pending") for i in range(20)))


def timed(store: Store, repeat: int = 50) -> dict[str, float]:
    key = "accmon/x/h1234/outage-1234"
    calls = {
        "outbox_head": lambda: store.outbox_head("n1"),
        "has_held": lambda: store.has_held(key),
        "last_notified": lambda: store.last_notified(key),
        "last_action": lambda: store.last_action(key),
        "unsent_triggers": lambda: store.unsent_triggers(key, time.time()),
    }
    out = {}
    for name, call in calls.items():
        call()
        start = time.perf_counter()
        for _ in range(repeat):
            call()
        out[name] = (time.perf_counter() - start) / repeat * 1000
    return out


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 308_000
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp) / "state.db")
        fill(store, rows)
        store.db.execute("ANALYZE")
        indexed = timed(store)
        for name in NEW_INDEXES:
            store.db.execute(f"DROP INDEX IF EXISTS {name}")
        store.db.execute("DROP INDEX IF EXISTS outbox_by_dedup_key")
        store.db.execute("CREATE INDEX outbox_pending ON outbox (next_attempt_at)"
                         " WHERE status = 'pending'")  # migration 1's only outbox index
        store.db.execute("ANALYZE")
        bare = timed(store, repeat=5)
        store.close()
    print(f"{rows:,} finished outbox rows; ms per call (mean over a loop), one run:")
    print(f"  {'look-up':<16} {'indexed':>9} {'v1 indexes':>11} {'ratio':>7}")
    for name in indexed:
        print(f"  {name:<16} {indexed[name]:>9.3f} {bare[name]:>11.3f} "
              f"{bare[name] / max(indexed[name], 1e-9):>6.0f}x")


if __name__ == "__main__":
    main()
