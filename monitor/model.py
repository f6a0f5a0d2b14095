"""Domain types shared by probes, the state machine, the store and the notifiers.

Plain frozen dataclasses: no I/O, no clock. Times are POSIX seconds (float, UTC).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar, cast

_T = TypeVar("_T")

if TYPE_CHECKING:
    from typing_extensions import dataclass_transform

    @dataclass_transform(frozen_default=True, field_specifiers=(field,))
    def hot_value(cls: type[_T]) -> type[_T]:
        """A frozen slots dataclass, as the type checker sees it (see below)."""
else:
    def hot_value(cls):
        """``@dataclass(frozen=True, slots=True)`` for the types made once or more per probe
        (an observation, the account's next state, a probe's target and answer).

        Frozen to ``mypy --strict``, which refuses any assignment to a field (the CI runs
        it on ``monitor/``), but built at run time without the frozen ``__init__``: that
        sets each field through ``object.__setattr__``, ~9x the cost of a plain slot store
        (10 fields: 2.9 us against 0.34 us), and a probe makes two or three of these. Equal
        and hashed by value, as a frozen dataclass is.
        """
        return dataclass(slots=True, unsafe_hash=True)(cls)



@dataclass(frozen=True, slots=True, order=True)
class AccountKey:
    """What identifies a watched account: the platform's config name and the handle we watch."""

    platform: str
    handle: str

    def __str__(self) -> str:
        return f"{self.platform}/{self.handle}"


class Result(enum.StrEnum):
    """The three answers a probe may give. Only ``ABSENT`` can move an account toward down."""

    PRESENT = "present"
    ABSENT = "absent"
    ERROR = "error"


class AbsentReason(enum.StrEnum):
    """Why a platform says an account is gone (only documented answers count)."""

    SUSPENDED = "suspended"
    DEACTIVATED = "deactivated"
    DELETED = "deleted"
    NOT_FOUND = "not_found"
    RENAMED = "renamed"
    TAKEN_DOWN = "taken_down"


class ErrorKind(enum.StrEnum):
    """Why a probe could not decide. None of these is evidence of absence."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    SERVER_ERROR = "server_error"  # 5xx
    RATE_LIMITED = "rate_limited"  # 429, or a platform's documented throttle answer
    AUTH = "auth"  # 401/403 for our own credentials
    BLOCKED = "blocked"  # login wall, captcha, bot challenge
    TOO_LARGE = "too_large"  # body over the configured cap
    PARSE = "parse"  # body not in the documented shape
    UNEXPECTED = "unexpected"  # an answer no rule recognises
    REDIRECT = "redirect"  # sent to another host, or round in circles: not followed
    INTERNAL = "internal"  # a bug of ours while probing, caught so the worker lives on


@dataclass(frozen=True, slots=True)
class RateLimit:
    """A platform's request budget as its headers tell it (normalised by the probe)."""

    remaining: int | None = None
    limit: int | None = None
    reset_at: float | None = None  # epoch seconds when the budget refills
    retry_after: float | None = None  # seconds, when the platform asked us to back off


@hot_value
class Observation:
    """One classified probe answer (or one pushed stream event)."""

    result: Result
    at: float
    reason: AbsentReason | None = None  # set iff result is ABSENT
    error: ErrorKind | None = None  # set iff result is ERROR
    evidence: str = ""  # short, secret-free: status code, matched marker or field
    account_id: str | None = None  # the platform's immutable id, when the answer shows it
    handle: str | None = None  # the handle the platform reports now (renames)
    latency: float = 0.0
    rate_limit: RateLimit | None = None  # the platform's budget headers, when it sent them
    moved_to: str | None = None  # Mastodon: the account this one migrated to

    def timed(self, latency: float) -> Observation:
        """This observation, stamped with how long its request took (a plain positional
        copy: cheaper on the hot path than dataclasses.replace, which a subclass with
        fields of its own still needs)."""
        if type(self) is not Observation:
            return replace(self, latency=latency)
        return Observation(self.result, self.at, self.reason, self.error, self.evidence,
                           self.account_id, self.handle, latency, self.rate_limit,
                           self.moved_to)

    @classmethod
    def present(cls, at: float, evidence: str = "", **kw: Any) -> Observation:
        return cls(Result.PRESENT, at, evidence=evidence, **kw)

    @classmethod
    def absent(cls, at: float, reason: AbsentReason, evidence: str = "", **kw: Any) -> Observation:
        return cls(Result.ABSENT, at, reason=reason, evidence=evidence, **kw)

    @classmethod
    def failed(cls, at: float, error: ErrorKind, evidence: str = "", **kw: Any) -> Observation:
        return cls(Result.ERROR, at, error=error, evidence=evidence, **kw)


class State(enum.StrEnum):
    UNKNOWN = "unknown"
    UP = "up"
    SUSPECT = "suspect"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class Policy:
    """Per-account thresholds, resolved from config defaults and overrides (seconds)."""

    interval: float = 60.0
    failure_threshold: int = 2
    recovery_threshold: int = 1
    confirm_interval: float = 10.0
    staleness: float = 600.0


@hot_value
class AccountState:
    """Everything the state machine knows about one account. Replaced, never mutated."""

    state: State = State.UNKNOWN
    absent_streak: int = 0  # consecutive absent observations (errors do not break or extend it)
    present_streak: int = 0  # consecutive present observations while down
    reason: AbsentReason | None = None  # the latest absence reason while suspect/down
    last_present_at: float | None = None
    first_absent_at: float | None = None  # first absent observation of the current streak
    last_absent_at: float | None = None
    first_recovered_at: float | None = None  # first present observation after going down
    last_observed_at: float | None = None  # any observation, errors included
    last_decisive_at: float | None = None  # last present/absent observation
    blind: bool = False  # only errors for longer than the staleness bound
    outage_id: int | None = None  # the open outage's row id, while down
    since: float | None = None  # when the current state was entered
    # When this process began watching the account (start-up, or added by a reload):
    # staleness is never measured from before it, so a never-probed account goes blind like
    # any other and a restart after a long stop does not make every account blind at once.
    watched_since: float | None = None


class EventKind(enum.StrEnum):
    TRANSITION = "transition"  # any state change (logged and persisted; not paged on its own)
    VANISHED = "vanished"  # confirmed down: page for protected accounts
    RECOVERED = "recovered"  # back up: resolve the page, record the outage
    RENAMED = "renamed"
    MOVED = "moved"
    BLIND = "blind"  # only errors beyond the staleness bound
    SIGHTED = "sighted"  # decisive answers again after blindness


# What each event kind carries (JSON-serialisable: str/int/float/None values only). Stored
# with the transition row and served on /api/v1/events as they are.


class TransitionDetails(TypedDict):
    previous_since: float | None  # when the state just left was entered


class VanishedDetails(TypedDict):
    last_present_at: float | None  # the outage began after this...
    first_absent_at: float | None  # ...and at the latest here
    confirmed_at: float  # the answer that confirmed it (failure_threshold reached)
    absent_streak: int
    evidence: str


class RecoveredDetails(TypedDict):
    last_present_at: float | None
    first_absent_at: float | None
    last_absent_at: float | None  # it came back after this...
    recovered_at: float | None  # ...and at the latest here (the first present sighting)
    duration: float | None  # first absent to first present sighting
    outage_id: int | None


class BlindDetails(TypedDict):
    last_decisive_at: float | None
    last_observed_at: float | None
    error: str | None  # the error kind, or the shell's word (e.g. "not probed: ...")
    stale_for: float | None


class SightedDetails(TypedDict):
    last_decisive_at: float | None
    result: str  # the decisive answer that ended the blindness
    unseen_for: float | None


class RenamedDetails(TypedDict):
    old_handle: str
    new_handle: str
    account_id: str
    summary: str


class MovedDetails(TypedDict):
    moved_to: str
    account_id: str
    summary: str


EventDetails = (TransitionDetails | VanishedDetails | RecoveredDetails | BlindDetails
                | SightedDetails | RenamedDetails | MovedDetails)


@dataclass(frozen=True, slots=True)
class Event:
    """Something the state machine decided. ``details`` is typed by ``kind``: read it with
    the accessors below (``vanished()``, ``recovered()`` ...), which check the kind."""

    kind: EventKind
    key: AccountKey
    at: float
    old_state: State
    new_state: State
    reason: AbsentReason | None = None
    details: EventDetails = field(
        default_factory=lambda: TransitionDetails(previous_since=None))

    def _as(self, kind: EventKind) -> Any:
        if self.kind is not kind:
            raise TypeError(f"a {self.kind} event read as {kind}")
        return self.details

    def vanished(self) -> VanishedDetails:
        return cast(VanishedDetails, self._as(EventKind.VANISHED))

    def recovered(self) -> RecoveredDetails:
        return cast(RecoveredDetails, self._as(EventKind.RECOVERED))

    def blind(self) -> BlindDetails:
        return cast(BlindDetails, self._as(EventKind.BLIND))

    def sighted(self) -> SightedDetails:
        return cast(SightedDetails, self._as(EventKind.SIGHTED))

    def renamed(self) -> RenamedDetails:
        return cast(RenamedDetails, self._as(EventKind.RENAMED))

    def moved(self) -> MovedDetails:
        return cast(MovedDetails, self._as(EventKind.MOVED))

    @property
    def outage_id(self) -> int | None:
        """The outage a RECOVERED event closes (others: None; a VANISHED one's id is on the
        state it produces)."""
        return self.recovered()["outage_id"] if self.kind is EventKind.RECOVERED else None


@dataclass(frozen=True, slots=True)
class Outage:
    """A confirmed disappearance with honest bounds.

    The account vanished somewhere in ``(last_seen_present_at, first_seen_absent_at]`` and
    came back somewhere in ``(last_seen_absent_at, recovered_at]``.
    """

    id: int
    key: AccountKey
    reason: str
    last_seen_present_at: float | None
    first_seen_absent_at: float
    confirmed_at: float
    last_seen_absent_at: float | None = None
    recovered_at: float | None = None
    acked_at: float | None = None  # when on-call acknowledged it (reminders stop)
    acked_by: str | None = None
    ack_comment: str | None = None

    @property
    def duration(self) -> float | None:
        """Observed duration: first absent sighting to first present sighting."""
        if self.recovered_at is None:
            return None
        return self.recovered_at - self.first_seen_absent_at

    @property
    def duration_bounds(self) -> tuple[float, float] | None:
        """(shortest, longest) duration consistent with what we saw."""
        if self.recovered_at is None:
            return None
        last_absent = self.last_seen_absent_at or self.first_seen_absent_at
        start_max = self.last_seen_present_at or self.first_seen_absent_at
        return (last_absent - self.first_seen_absent_at, self.recovered_at - start_max)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who the watched account is on its platform, beyond the handle we were given."""

    account_id: str | None = None  # immutable, learned on first sight
    current_handle: str | None = None  # the handle it answers to now (after renames)
    moved_to: str | None = None  # Mastodon: the account it migrated to
