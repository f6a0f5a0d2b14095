"""Silences and maintenance windows: which notifications people asked us not to send. Pure.

The model is Alertmanager's (``silence/silence.go``): a silence is a set of matchers over an
account's labels (:func:`monitor.matchers.subject_labels`: platform, account, team,
protected and the account's own labels), a start, an end, who created it and why. It is
*pending* before its start, *active* until its end, then *expired*; expiring one early sets
its end to now, and it is kept (for the record) rather than deleted. A maintenance window
(:mod:`monitor.maintenance`, from the config) is the same thing on a calendar.

What suppression means here — pages, never observations:

* the account is still probed and its transitions and outages are recorded (and shown as
  silenced); only notifications are affected;
* a suppressed **trigger** (vanished, blind) is kept unsent and goes out once, when nothing
  covers it any more and its outage is still open;
* a suppressed **reminder** or **notify** (rename, move, brief outage) is dropped: it
  repeats or reports something that needs no answer later;
* a **resolve** (or acknowledge) of a page that went out is always sent: a page opened
  before the silence started is left as it is, and the incident is closed truthfully when
  the account is back. (Its trigger, if it never went out, is dropped with it.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from monitor.matchers import Matcher, matches_all, validate_matchers

if TYPE_CHECKING:
    from monitor.maintenance import MaintenanceWindow

SilenceStateName = Literal["pending", "active", "expired"]
Verdict = Literal["send", "defer", "drop"]

MAX_COMMENT = 4096
MAX_AUTHOR = 256
MAX_MATCHERS = 64


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    created_by: str
    comment: str
    created_at: float
    updated_at: float

    def state(self, now: float) -> SilenceStateName:
        if now >= self.ends_at:
            return "expired"
        return "pending" if now < self.starts_at else "active"

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def expired_at(self, now: float) -> Silence:
        """The same silence ended now (an active one) or never started (a pending one)."""
        end = max(min(self.ends_at, now), min(self.starts_at, now))
        return replace(self, ends_at=end, starts_at=min(self.starts_at, end), updated_at=now)

    def to_json(self, now: float) -> dict[str, Any]:
        """Alertmanager API v2's ``gettableSilence`` shape."""
        return {"id": self.id, "matchers": [m.to_json() for m in self.matchers],
                "startsAt": _iso(self.starts_at), "endsAt": _iso(self.ends_at),
                "createdBy": self.created_by, "comment": self.comment,
                "status": {"state": self.state(now)}, "updatedAt": _iso(self.updated_at)}


def silence_from_json(obj: Any, now: float, *, created_by: str | None = None) -> Silence:
    """A new silence from Alertmanager's ``postableSilence`` shape; ValueError naming every
    problem. ``startsAt`` defaults to now, a start in the past is now (as Alertmanager does);
    ``createdBy`` falls back to ``created_by`` (who the API knows is asking)."""
    if not isinstance(obj, dict):
        raise ValueError("expected a JSON object with matchers, startsAt, endsAt, createdBy, "
                         "comment")
    problems: list[str] = []
    matchers: list[Matcher] = []
    raw = obj.get("matchers")
    if not isinstance(raw, list) or not raw:
        problems.append("matchers: a non-empty list of {name, value, isRegex, isEqual}")
    elif len(raw) > MAX_MATCHERS:
        problems.append(f"matchers: at most {MAX_MATCHERS}")
    else:
        for i, item in enumerate(raw):
            try:
                matchers.append(Matcher.from_json(item))
            except ValueError as exc:
                problems.append(f"matchers[{i}]: {exc}")
        if matchers and len(matchers) == len(raw):
            try:
                validate_matchers(matchers)
            except ValueError as exc:
                problems.append(f"matchers: {exc}")
    starts = _time(obj, "startsAt", now, problems)
    ends = _time(obj, "endsAt", None, problems)
    if starts is not None and ends is not None:
        starts = max(starts, now)
        if ends <= starts:
            problems.append("endsAt: must be after startsAt (and after now)")
    author = obj.get("createdBy") or created_by
    if not isinstance(author, str) or not author.strip():
        problems.append("createdBy: who creates the silence (a name)")
    elif len(author) > MAX_AUTHOR:
        problems.append(f"createdBy: at most {MAX_AUTHOR} characters")
    comment = obj.get("comment", "")
    if not isinstance(comment, str) or not comment.strip():
        problems.append("comment: why (Alertmanager requires one too)")
    elif len(comment) > MAX_COMMENT:
        problems.append(f"comment: at most {MAX_COMMENT} characters")
    if problems:
        raise ValueError("; ".join(problems))
    assert starts is not None and ends is not None and isinstance(author, str)
    assert isinstance(comment, str)
    return Silence(id=str(uuid.uuid4()), matchers=tuple(matchers), starts_at=starts,
                   ends_at=ends, created_by=author.strip(), comment=comment.strip(),
                   created_at=now, updated_at=now)


@dataclass(frozen=True, slots=True)
class Suppression:
    """Why a notification is not sent now, and until when at least."""

    reason: Literal["silence", "maintenance"]
    by: str  # the silence's id or the window's name
    until: float

    def describe(self) -> str:
        what = "silence" if self.reason == "silence" else "maintenance window"
        return f"{what} {self.by} until {_iso(self.until)}"


def suppression(labels: Mapping[str, str], silences: Iterable[Silence],
                windows: Sequence[MaintenanceWindow], now: float) -> Suppression | None:
    """The silence or maintenance window covering ``labels`` now, the one lasting longest;
    None when nothing does."""
    found = [Suppression("silence", s.id, s.ends_at) for s in silences
             if s.active(now) and matches_all(s.matchers, labels)]
    for window in windows:
        occurrence = window.active_at(now)
        if occurrence is not None and matches_all(window.parsed(), labels):
            found.append(Suppression("maintenance", window.name, occurrence[1]))
    best = max(found, key=lambda s: s.until, default=None)
    return best


TRIGGER_KINDS = frozenset({"vanished", "blind"})


def verdict(kind: str, action: str) -> Verdict:
    """What happens to a notification of ``kind``/``action`` while it is suppressed."""
    if action in ("resolve", "acknowledge"):
        return "send"  # its page went out: close (or ack) it truthfully
    if action == "trigger" and kind in TRIGGER_KINDS:
        return "defer"  # sent once when the silence ends, if the outage is still open
    return "drop"  # reminders repeat, notifications need no later answer


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def _time(obj: Mapping[str, Any], name: str, default: float | None,
          problems: list[str]) -> float | None:
    value = obj.get(name)
    if value is None:
        if default is None:
            problems.append(f"{name}: an RFC 3339 time such as 2026-12-02T10:00:00Z")
        return default
    if not isinstance(value, str):
        problems.append(f"{name}: an RFC 3339 time string")
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        problems.append(f"{name}: {value[:40]!r} is not an RFC 3339 time")
        return None
    if parsed.tzinfo is None:
        problems.append(f"{name}: give a time zone offset (Z or +01:00)")
        return None
    return parsed.timestamp()
