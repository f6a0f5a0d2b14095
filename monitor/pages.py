"""What one decision writes to the outbox, and which waiting rows it makes moot. Pure.

Each event's notification (:func:`monitor.routing.notification_for`) goes to its notifiers
(:func:`monitor.routing.outbox_items`); then the holds decide whether a row is written held
or waits a grace period (:mod:`monitor.holds`). A resolving event (recovered, sighted) whose
trigger has not gone out yet (still in its grace, or held) never makes a page after the
fact: the unsent trigger is dropped and no resolve is written for it, and an outage that
short is told to chat as a ``brief_outage`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from monitor import holds, routing
from monitor.config import AccountConfig, Config
from monitor.model import Event
from monitor.notify.base import Notification
from monitor.store import OutboxItem, OutboxRow, OutboxStatus

UNSENT_WHY = "its outage ended before the page went out"


@dataclass(frozen=True, slots=True)
class Pages:
    """The outbox side of a decision."""

    items: list[tuple[int, OutboxItem]] = field(default_factory=list)  # (event index, row)
    drop: list[tuple[int, str]] = field(default_factory=list)  # (outbox row id, why)
    dropped: list[str] = field(default_factory=list)  # dedup keys whose page was dropped


def resolving_keys(events: Sequence[Event], account: AccountConfig, config: Config,
                   outage_id: int | None) -> list[str]:
    """Dedup keys this decision resolves: the shell looks up their unsent triggers."""
    keys = []
    for event in events:
        n = routing.notification_for(event, account, config, outage_id)
        if n is not None and n.action == "resolve":
            keys.append(n.dedup_key)
    return keys


def plan(events: Sequence[Event], account: AccountConfig, config: Config,
         outage_id: int | None, state: holds.HoldState, grace: holds.Grace,
         unsent: Mapping[str, Sequence[OutboxRow]]) -> Pages:
    """The rows to write for ``events`` (``unsent``: dedup key -> its unsent triggers)."""
    out = Pages()
    for index, event in enumerate(events):
        n = routing.notification_for(event, account, config, outage_id)
        if n is None:
            continue
        rows = routing.outbox_items(n, account, config)
        moot = unsent.get(n.dedup_key, ()) if n.action == "resolve" else ()
        if moot:
            out.drop.extend((r.id, UNSENT_WHY) for r in moot)
            out.dropped.append(n.dedup_key)
            gone = {r.notifier for r in moot}
            rows = [item for item in rows if item.notifier not in gone]
            in_grace = [r for r in moot if r.status == OutboxStatus.PENDING]
            if n.kind == "recovered" and in_grace:  # held ones: the hold's own page says it
                brief = routing.brief_outage_for(Notification.from_json(in_grace[0].payload), n)
                rows += routing.outbox_items(brief, account, config)
        hold = holds.held(state, event.key.platform, n.kind)
        wait = grace.of(n.kind)
        out.items.extend((index, replace(item, status=OutboxStatus.HELD)
                          if hold and item.action != "notify"
                          else replace(item, delay=wait)) for item in rows)
    return out
