"""Maintenance windows from the config: planned times when matching accounts must not page.

A window is a one-off (``starts``/``ends``, ISO 8601 with an offset) or weekly
(``recurring``: the weekdays it *starts* on, a local ``start``/``end`` time and an IANA time
zone; ``end`` at or before ``start`` runs past midnight into the next day). Local times are
turned into instants the way the clocks run that day: a time the spring-forward jump skips
(02:30 in Berlin on the last Sunday of March) is the jump itself (03:00 CEST); a time the
fall-back hour repeats is its first occurrence. So a 02:00-04:00 window lasts one real hour
on the spring-forward Sunday and three on the fall-back one (Berlin).

Everything here is a pure function of the ``now`` passed in (epoch seconds): no clock.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, PrivateAttr, model_validator

from monitor.config_types import Strict, field_problem, shown
from monitor.matchers import Matcher, matches_all, parse_matcher, validate_matchers

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# A weekly window recurs within 7 days; a day more covers one that started yesterday.
SEARCH_DAYS = 8

_DASH = "\u2013"  # en dash between a span's ends, as check-config prints them
_CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")


def _clock_time(value: Any) -> str:
    """``"HH:MM"`` (24-hour), normalised to two digits each."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        # YAML 1.1 reads an unquoted 12:30 as the base-60 number 750
        raise ValueError(f"write the time in quotes, e.g. \"{value // 60:02d}:"
                         f"{value % 60:02d}\" (YAML reads an unquoted 12:30 as a number)")
    found = _CLOCK.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise ValueError(f"invalid time {shown(value)}: use 24-hour HH:MM, e.g. \"02:00\"")
    return f"{int(found.group(1)):02d}:{found.group(2)}"


def _time_zone(value: Any) -> str:
    """An IANA zone name that this machine's time zone database knows."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected an IANA time zone name such as Europe/Berlin or UTC")
    if value == "localtime":
        raise ValueError("name the zone, e.g. Europe/Berlin: localtime is whatever this "
                         "machine happens to be set to")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        hint = ("" if zoneinfo.available_timezones() else
                "; this machine has no time zone database: install tzdata")
        raise ValueError(f"unknown time zone {shown(value)}: use an IANA name such as "
                         f"Europe/Berlin, America/New_York or UTC{hint}") from None
    return value


def _instant(value: Any) -> datetime:
    """An ISO 8601 date-time with a UTC offset (a string, or a date-time YAML read)."""
    fix = "use ISO 8601 with an offset, e.g. 2026-12-05T02:00:00+01:00 or ...Z"
    if isinstance(value, datetime):
        instant = value
    elif isinstance(value, str):
        try:
            instant = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(f"invalid date-time {shown(value)}: {fix}") from None
    else:  # a date alone (YAML reads 2026-12-05 as one) or a number
        raise ValueError(f"invalid date-time {shown(value)}: {fix}")
    if instant.utcoffset() is None:
        raise ValueError(f"{instant.isoformat()} has no UTC offset: {fix}")
    return instant


def _matcher_text(value: str) -> str:
    parse_matcher(value)  # its ValueError names the matcher and the syntax
    return value


ClockTime = Annotated[str, BeforeValidator(_clock_time)]
TimeZone = Annotated[str, BeforeValidator(_time_zone)]
Instant = Annotated[datetime, BeforeValidator(_instant)]
MatcherText = Annotated[str, AfterValidator(_matcher_text)]


class Recurring(Strict):
    """A weekly window: on each of `weekdays`, from `start` to `end` local time."""

    weekdays: list[Weekday] = Field(min_length=1, description=(
        "The days the window starts on; one running past midnight belongs to the day it "
        "starts (a `sun` 22:00-02:00 window covers Monday 01:00, a `mon` one does not)."))
    start: ClockTime = Field(description=(
        'Local start time, 24-hour `"HH:MM"` (quoted). A time the spring-forward jump skips '
        "starts at the jump."))
    end: ClockTime = Field(description=(
        'Local end time, `"HH:MM"`; at or before `start` it is the next day\'s (an equal one '
        "makes a 24-hour window)."))
    time_zone: TimeZone = Field(description=(
        "IANA time zone of `start` and `end`, e.g. `Europe/Berlin` or `UTC`; daylight saving "
        "time is followed."))

    def occurrence(self, day: date) -> tuple[float, float] | None:
        """The window that starts on local ``day``, as epoch seconds, or None."""
        if WEEKDAYS[day.weekday()] not in self.weekdays:
            return None
        start, end = _hh_mm(self.start), _hh_mm(self.end)
        zone = zoneinfo.ZoneInfo(self.time_zone)
        end_day = day + timedelta(days=1) if end <= start else day
        begins = local_to_epoch(datetime.combine(day, start), zone)
        ends = local_to_epoch(datetime.combine(end_day, end), zone)
        return (begins, ends) if ends > begins else None  # both inside one skipped hour

    def local_day(self, now: float) -> date:
        """Today's date in the window's zone."""
        return datetime.fromtimestamp(now, zoneinfo.ZoneInfo(self.time_zone)).date()


class MaintenanceWindow(Strict):
    """A planned window in which accounts matching all `matchers` do not page.

    Give `starts` and `ends` (a one-off) or `recurring` (weekly), not both.
    """

    name: str = Field(min_length=1, max_length=200, description=(
        "Names the window in logs, metrics and check-config."))
    matchers: list[MatcherText] = Field(min_length=1, description=(
        'Label matchers in amtool syntax, all of which must match, e.g. `platform="x"`, '
        '`team=~"core|sre"`, `account!="potus"`; labels are `platform`, `account`, `team`, '
        "`protected` and the account's own `labels`. At least one must not match the empty "
        "string."))
    comment: str = Field(default="", max_length=2000, description=(
        "Why the window exists (a change ticket, who to ask)."))
    starts: Instant | None = Field(default=None, description=(
        "One-off window: start, ISO 8601 with an offset, e.g. `2026-12-05T02:00:00+01:00`."))
    ends: Instant | None = Field(default=None, description=(
        "One-off window: end (after `starts`), ISO 8601 with an offset."))
    recurring: Recurring | None = Field(default=None, description=(
        "Weekly window, instead of `starts`/`ends`."))

    _matchers: tuple[Matcher, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _one_kind(self) -> MaintenanceWindow:
        one_off = self.starts is not None or self.ends is not None
        if one_off and self.recurring is not None:
            raise ValueError("give either starts/ends (a one-off window) or recurring (a "
                             "weekly one), not both")
        if not one_off and self.recurring is None:
            raise ValueError("give starts and ends (a one-off window) or recurring (a weekly "
                             "one)")
        if one_off and self.ends is None:
            raise field_problem("ends", "missing: a one-off window needs both starts and ends")
        if one_off and self.starts is None:
            raise field_problem("starts", "missing: a one-off window needs both starts and "
                                          "ends")
        if self.starts is not None and self.ends is not None and self.ends <= self.starts:
            raise field_problem("ends", f"{self.ends.isoformat()} is not after starts "
                                        f"({self.starts.isoformat()})")
        parsed = tuple(parse_matcher(text) for text in self.matchers)
        try:
            validate_matchers(parsed)
        except ValueError as exc:
            raise field_problem("matchers", str(exc)) from None
        self._matchers = parsed
        return self

    def parsed(self) -> tuple[Matcher, ...]:
        """The matchers, parsed."""
        return self._matchers

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the window applies to an account with these labels (at any time)."""
        return matches_all(self._matchers, labels)

    def active_at(self, now: float) -> tuple[float, float] | None:
        """The occurrence covering ``now`` (start <= now < end), or None."""
        if self.recurring is None:
            begins, ends = self._one_off()
            return (begins, ends) if begins <= now < ends else None
        today = self.recurring.local_day(now)
        covering = [occ for back in range(2, -1, -1)
                    if (occ := self.recurring.occurrence(today - timedelta(days=back)))
                    and occ[0] <= now < occ[1]]
        return max(covering, key=lambda occ: occ[1]) if covering else None

    def next_occurrence(self, now: float) -> tuple[float, float] | None:
        """The occurrence covering ``now``, else the next to start; None once a one-off
        is over (or, for a weekly window, when none starts within 8 days: impossible)."""
        if self.recurring is None:
            begins, ends = self._one_off()
            return (begins, ends) if now < ends else None
        current = self.active_at(now)
        if current is not None:
            return current
        today = self.recurring.local_day(now)
        for ahead in range(SEARCH_DAYS + 1):
            occ = self.recurring.occurrence(today + timedelta(days=ahead))
            if occ is not None and occ[0] > now:
                return occ
        return None

    def describe(self, now: float) -> str:
        """One line for check-config: when it applies next, in its zone and in UTC."""
        occ = self.next_occurrence(now)
        where = ", ".join(str(m) for m in self._matchers)
        if occ is None:
            assert self.ends is not None
            return f"{self.name}: over (ended {_utc(self.ends.timestamp())}); {where}"
        zone = (zoneinfo.ZoneInfo(self.recurring.time_zone) if self.recurring
                else self.starts.tzinfo if self.starts else UTC)
        assert zone is not None
        when = "active now" if occ[0] <= now else "next"
        label = self.recurring.time_zone if self.recurring else _offset_label(zone, occ[0])
        local = _span(occ, zone)
        utc = _span(occ, UTC, show_date=_date(occ[0], UTC) != _date(occ[0], zone))
        every = f"every {','.join(self.recurring.weekdays)}; " if self.recurring else ""
        return f"{self.name}: {when} {local} {label} ({utc} UTC); {every}{where}"

    def _one_off(self) -> tuple[float, float]:
        assert self.starts is not None and self.ends is not None
        return self.starts.timestamp(), self.ends.timestamp()


def local_to_epoch(local: datetime, zone: tzinfo) -> float:
    """The instant a naive local time names in ``zone``: in a spring-forward gap, the jump;
    in a repeated (fall-back) hour, the first one."""
    early = local.replace(tzinfo=zone, fold=0).timestamp()
    late = local.replace(tzinfo=zone, fold=1).timestamp()
    if early <= late:  # unambiguous, or repeated: fold=0 is the first (PEP 495)
        return early
    # In a gap fold=0 reads the offset from before the jump and fold=1 the one after, so
    # the jump lies in (late, early]: find its first second.
    lo, hi = int(late), int(early)
    after = _offset(hi, zone)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset(mid, zone) == after:
            hi = mid
        else:
            lo = mid
    return float(hi)


def _offset(epoch: float, zone: tzinfo) -> timedelta | None:
    return datetime.fromtimestamp(epoch, zone).utcoffset()


def _hh_mm(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def _date(epoch: float, zone: tzinfo) -> date:
    return datetime.fromtimestamp(epoch, zone).date()


def _span(occ: tuple[float, float], zone: tzinfo, show_date: bool = True) -> str:
    """``2026-12-05 02:00-04:00`` (an en dash); the end's date too when another day."""
    begins, ends = (datetime.fromtimestamp(t, zone) for t in occ)
    start = f"{begins:%Y-%m-%d %H:%M}" if show_date else f"{begins:%H:%M}"
    end = f"{ends:%H:%M}" if ends.date() == begins.date() else f"{ends:%Y-%m-%d %H:%M}"
    return f"{start}{_DASH}{end}"


def _offset_label(zone: tzinfo, epoch: float) -> str:
    offset = _offset(epoch, zone) or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _utc(epoch: float) -> str:
    return f"{datetime.fromtimestamp(epoch, UTC):%Y-%m-%d %H:%M} UTC"
