"""monitor.maintenance: window validation, DST-correct occurrences, describe()."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from monitor.maintenance import MaintenanceWindow, Recurring, local_to_epoch
from monitor.matchers import Matcher

HOUR = 3600.0


def at(text: str) -> float:
    """Epoch seconds of an ISO 8601 instant with an offset."""
    return datetime.fromisoformat(text).timestamp()


def weekly(weekdays: list[str], start: str, end: str, zone: str = "Europe/Berlin",
           **extra: Any) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate({
        "name": "weekly-x", "matchers": ['platform="x"'],
        "recurring": {"weekdays": weekdays, "start": start, "end": end, "time_zone": zone},
        **extra})


def one_off(starts: Any, ends: Any, **extra: Any) -> MaintenanceWindow:
    return MaintenanceWindow.model_validate({
        "name": "deploy", "matchers": ['platform="x"', 'team=~"core|sre"'],
        "starts": starts, "ends": ends, **extra})


# --------------------------------------------------------------------------- DST


@pytest.mark.parametrize(("zone", "start", "end", "now", "expected", "hours"), [
    # Berlin 2026: spring forward Sun 29 March 02:00 CET -> 03:00 CEST
    ("Europe/Berlin", "02:00", "04:00", "2026-03-28T12:00:00Z",
     ("2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"), 1),
    # ... fall back Sun 25 October 03:00 CEST -> 02:00 CET: 02:00 is the first one
    ("Europe/Berlin", "02:00", "04:00", "2026-10-24T12:00:00Z",
     ("2026-10-25T00:00:00Z", "2026-10-25T03:00:00Z"), 3),
    # an ordinary Sunday in between: two hours
    ("Europe/Berlin", "02:00", "04:00", "2026-06-06T12:00:00Z",
     ("2026-06-07T00:00:00Z", "2026-06-07T02:00:00Z"), 2),
    # New York 2026: spring forward Sun 8 March 02:00 EST -> 03:00 EDT
    ("America/New_York", "02:00", "04:00", "2026-03-07T12:00:00Z",
     ("2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"), 1),
    # ... fall back Sun 1 November 02:00 EDT -> 01:00 EST: 01:00 repeats (the first, EDT)
    ("America/New_York", "01:00", "03:00", "2026-10-31T12:00:00Z",
     ("2026-11-01T05:00:00Z", "2026-11-01T08:00:00Z"), 3),
    # there 02:00 is not repeated (01:59 EDT is followed by 01:00 EST): 02:00-04:00 is 2 h+1
    ("America/New_York", "02:00", "04:00", "2026-10-31T12:00:00Z",
     ("2026-11-01T07:00:00Z", "2026-11-01T09:00:00Z"), 2),
])
def test_occurrence_follows_the_clocks(zone: str, start: str, end: str, now: str,
                                       expected: tuple[str, str], hours: int) -> None:
    window = weekly(["sun"], start, end, zone)
    occ = window.next_occurrence(at(now))
    assert occ == (at(expected[0]), at(expected[1]))
    assert occ[1] - occ[0] == hours * HOUR


@pytest.mark.parametrize(("zone", "day", "expected"), [
    ("Europe/Berlin", "2026-03-29", "2026-03-29T03:00:00+02:00"),
    ("America/New_York", "2026-03-08", "2026-03-08T03:00:00-04:00"),
])
def test_start_in_the_spring_forward_gap_moves_to_the_jump(zone: str, day: str,
                                                           expected: str) -> None:
    window = weekly(["sun"], "02:30", "05:00", zone)
    occ = window.next_occurrence(at(f"{day}T00:00:00Z") - 12 * HOUR)
    assert occ is not None and occ[0] == at(expected)


@pytest.mark.parametrize(("zone", "local", "expected"), [
    ("Europe/Berlin", "2026-03-29T02:30", "2026-03-29T01:00:00Z"),  # gap: the jump
    ("Europe/Berlin", "2026-03-29T02:00", "2026-03-29T01:00:00Z"),
    ("Europe/Berlin", "2026-03-29T03:00", "2026-03-29T01:00:00Z"),
    ("Europe/Berlin", "2026-03-29T01:59", "2026-03-29T00:59:00Z"),
    ("Europe/Berlin", "2026-10-25T02:30", "2026-10-25T00:30:00Z"),  # repeated: first
    ("America/New_York", "2026-11-01T01:30", "2026-11-01T05:30:00Z"),
    ("Australia/Lord_Howe", "2026-10-04T02:15", "2026-10-03T15:30:00Z"),  # a 30 min jump
])
def test_local_to_epoch(zone: str, local: str, expected: str) -> None:
    assert local_to_epoch(datetime.fromisoformat(local), zoneinfo.ZoneInfo(zone)) == \
        at(expected)


def test_a_window_wholly_inside_the_gap_is_skipped() -> None:
    window = weekly(["sun"], "02:15", "02:45")
    occ = window.next_occurrence(at("2026-03-28T12:00:00Z"))
    assert occ == (at("2026-04-05T02:15:00+02:00"), at("2026-04-05T02:45:00+02:00"))


# --------------------------------------------------------------------------- weekdays


def test_a_window_past_midnight_belongs_to_the_day_it_starts() -> None:
    sunday_night = weekly(["sun"], "22:00", "02:00")
    monday_night = weekly(["mon"], "22:00", "02:00")
    monday_early = at("2026-12-07T01:00:00+01:00")  # Monday 01:00 Berlin
    assert sunday_night.active_at(monday_early) == (at("2026-12-06T22:00:00+01:00"),
                                                    at("2026-12-07T02:00:00+01:00"))
    assert monday_night.active_at(monday_early) is None
    assert monday_night.active_at(at("2026-12-08T01:00:00+01:00")) is not None  # Tue
    assert monday_night.active_at(at("2026-12-07T23:00:00+01:00")) is not None


def test_active_at_is_start_inclusive_end_exclusive() -> None:
    window = weekly(["sat"], "02:00", "04:00")
    begins, ends = at("2026-12-05T02:00:00+01:00"), at("2026-12-05T04:00:00+01:00")
    assert window.active_at(begins - 1) is None
    assert window.active_at(begins) == (begins, ends)
    assert window.active_at(ends - 0.001) == (begins, ends)
    assert window.active_at(ends) is None
    assert window.next_occurrence(begins + HOUR) == (begins, ends)  # current
    assert window.next_occurrence(ends) == (begins + 7 * 86400, ends + 7 * 86400)


def test_equal_start_and_end_is_a_whole_day() -> None:
    window = weekly(["wed"], "09:00", "09:00", "UTC")
    assert window.next_occurrence(at("2026-12-01T00:00:00Z")) == (
        at("2026-12-02T09:00:00Z"), at("2026-12-03T09:00:00Z"))


def test_several_weekdays() -> None:
    window = weekly(["mon", "wed", "fri"], "12:00", "13:00", "UTC")
    starts = []
    now = at("2026-12-05T00:00:00Z")  # Saturday
    for _ in range(4):
        occ = window.next_occurrence(now)
        assert occ is not None
        starts.append(datetime.fromtimestamp(occ[0]).strftime("%a"))
        now = occ[1]
    assert starts == ["Mon", "Wed", "Fri", "Mon"]


# --------------------------------------------------------------------------- one-off


def test_one_off_window() -> None:
    window = one_off("2026-12-05T02:00:00+01:00", "2026-12-05T04:00:00+01:00")
    span = (at("2026-12-05T01:00:00Z"), at("2026-12-05T03:00:00Z"))
    assert window.next_occurrence(span[0] - 86400) == span
    assert window.active_at(span[0] - 1) is None
    assert window.active_at(span[0]) == span
    assert window.next_occurrence(span[0] + 1) == span
    assert window.active_at(span[1]) is None
    assert window.next_occurrence(span[1]) is None


def test_one_off_from_yaml_timestamps() -> None:
    raw = yaml.safe_load("starts: 2026-12-05T02:00:00+01:00\nends: 2026-12-05 04:00:00Z\n")
    assert isinstance(raw["starts"], datetime)
    window = one_off(raw["starts"], raw["ends"])
    assert window.next_occurrence(0.0) == (at("2026-12-05T01:00:00Z"),
                                           at("2026-12-05T04:00:00Z"))


def test_matchers_are_parsed() -> None:
    window = one_off("2026-12-05T02:00:00Z", "2026-12-05T04:00:00Z")
    assert window.parsed() == (Matcher("platform", "x"), Matcher("team", "core|sre", True))
    assert window.matches({"platform": "x", "team": "sre"})
    assert not window.matches({"platform": "x"})


# --------------------------------------------------------------------------- describe


@pytest.mark.parametrize(("window", "now", "line"), [
    (weekly(["sat"], "02:00", "04:00"), "2026-12-01T00:00:00Z",
     'weekly-x: next 2026-12-05 02:00\u201304:00 Europe/Berlin (01:00\u201303:00 UTC); '
     'every sat; platform="x"'),
    (weekly(["sat"], "02:00", "04:00"), "2026-12-05T01:30:00Z",
     'weekly-x: active now 2026-12-05 02:00\u201304:00 Europe/Berlin (01:00\u201303:00 UTC); '
     'every sat; platform="x"'),
    (weekly(["sun"], "22:00", "01:00", "America/New_York"), "2026-12-01T00:00:00Z",
     "weekly-x: next 2026-12-06 22:00\u20132026-12-07 01:00 America/New_York "
     '(2026-12-07 03:00\u201306:00 UTC); every sun; platform="x"'),
    (one_off("2026-12-05T02:00:00+01:00", "2026-12-05T04:00:00+01:00"),
     "2026-12-01T00:00:00Z",
     "deploy: next 2026-12-05 02:00\u201304:00 +01:00 (01:00\u201303:00 UTC); "
     'platform="x", team=~"core|sre"'),
    (one_off("2026-12-05T02:00:00+01:00", "2026-12-05T04:00:00+01:00"),
     "2026-12-06T00:00:00Z",
     'deploy: over (ended 2026-12-05 03:00 UTC); platform="x", team=~"core|sre"'),
])
def test_describe(window: MaintenanceWindow, now: str, line: str) -> None:
    assert window.describe(at(now)) == line


# --------------------------------------------------------------------------- validation


def problems(raw: dict[str, Any]) -> list[tuple[tuple[Any, ...], str]]:
    with pytest.raises(ValidationError) as caught:
        MaintenanceWindow.model_validate(raw)
    out = []
    for err in caught.value.errors(include_url=False):
        ctx = err.get("ctx") or {}
        loc = tuple(err["loc"]) + ((ctx["field"],) if err["type"] == "field_problem" else ())
        out.append((loc, str(ctx.get("reason", err["msg"]))))
    return out


BASE = {"name": "w", "matchers": ['platform="x"']}
RECURRING = {"weekdays": ["sun"], "start": "02:00", "end": "04:00",
             "time_zone": "Europe/Berlin"}


@pytest.mark.parametrize(("raw", "loc", "reason"), [
    ({**BASE, "matchers": ['platform="x"', "platfrom x"], "recurring": RECURRING},
     ("matchers", 1), "bad matcher 'platfrom x'"),
    ({**BASE, "matchers": ['team=~"("'], "recurring": RECURRING},
     ("matchers", 0), "bad matcher 'team=~\"(\"': invalid regular expression"),
    ({**BASE, "matchers": ['team=~".*"'], "recurring": RECURRING},
     ("matchers",), "must not match the empty string"),
    ({**BASE, "matchers": [], "recurring": RECURRING}, ("matchers",), "at least 1"),
    ({**BASE}, (), "give starts and ends"),
    ({**BASE, "starts": "2026-12-05T02:00:00Z", "ends": "2026-12-05T04:00:00Z",
      "recurring": RECURRING}, (), "not both"),
    ({**BASE, "starts": "2026-12-05T02:00:00Z"}, ("ends",), "needs both"),
    ({**BASE, "ends": "2026-12-05T02:00:00Z"}, ("starts",), "needs both"),
    ({**BASE, "starts": "2026-12-05T02:00:00Z", "ends": "2026-12-05T02:00:00Z"},
     ("ends",), "is not after starts"),
    ({**BASE, "starts": "2026-12-05T02:00:00", "ends": "2026-12-05T04:00:00Z"},
     ("starts",), "has no UTC offset"),
    ({**BASE, "starts": "next tuesday", "ends": "2026-12-05T04:00:00Z"},
     ("starts",), "invalid date-time 'next tuesday'"),
    ({**BASE, "starts": 1764900000, "ends": "2026-12-05T04:00:00Z"},
     ("starts",), "use ISO 8601"),
    ({**BASE, "starts": yaml.safe_load("2026-12-05"), "ends": "2026-12-06T00:00:00Z"},
     ("starts",), "use ISO 8601"),
    ({**BASE, "recurring": {**RECURRING, "time_zone": "Europe/Berln"}},
     ("recurring", "time_zone"), "unknown time zone 'Europe/Berln'"),
    ({**BASE, "recurring": {**RECURRING, "time_zone": "localtime"}},
     ("recurring", "time_zone"), "name the zone"),
    ({**BASE, "recurring": {**RECURRING, "time_zone": "zone.tab"}},
     ("recurring", "time_zone"), "unknown time zone"),
    ({**BASE, "recurring": {**RECURRING, "start": "25:00"}},
     ("recurring", "start"), "invalid time '25:00'"),
    ({**BASE, "recurring": {**RECURRING, "end": "2pm"}}, ("recurring", "end"), "HH:MM"),
    ({**BASE, "recurring": {**RECURRING, **yaml.safe_load("start: 12:30")}},
     ("recurring", "start"), 'write the time in quotes, e.g. "12:30"'),
    ({**BASE, "recurring": {**RECURRING, "weekdays": ["Sunday"]}},
     ("recurring", "weekdays", 0), "'mon', 'tue'"),
    ({**BASE, "recurring": {**RECURRING, "weekdays": []}},
     ("recurring", "weekdays"), "at least 1"),
    ({**BASE, "recurring": {**RECURRING, "tz": "UTC"}}, ("recurring", "tz"), "Extra"),
    ({**BASE, "recurring": RECURRING, "until": "x"}, ("until",), "Extra"),
])
def test_bad_windows_name_the_field(raw: dict[str, Any], loc: tuple[Any, ...],
                                    reason: str) -> None:
    found = problems(raw)
    assert any(where == loc and reason in why for where, why in found), found


def test_times_are_normalised() -> None:
    window = weekly(["sun"], "2:05", "04:00")
    assert window.recurring is not None and window.recurring.start == "02:05"


@pytest.fixture
def no_time_zone_database(tmp_path: Path) -> Iterator[None]:
    zoneinfo.reset_tzpath(to=[str(tmp_path)])
    try:
        yield
    finally:
        zoneinfo.reset_tzpath()


@pytest.mark.skipif(bool(__import__("importlib.util").util.find_spec("tzdata")),
                    reason="the tzdata package supplies zones whatever TZPATH says")
def test_a_machine_without_zones_says_so(no_time_zone_database: None) -> None:
    found = problems({**BASE, "recurring": {**RECURRING, "time_zone": "Pacific/Chatham"}})
    assert any("install tzdata" in why for _, why in found), found


def test_every_field_is_described() -> None:
    """README's config reference is generated from the descriptions."""
    for model in (MaintenanceWindow, Recurring):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name}"


# --------------------------------------------------------------------------- properties

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC", "Asia/Kolkata"]
clock = st.builds(lambda h, m: f"{h:02d}:{m:02d}", st.integers(0, 23),
                  st.sampled_from([0, 15, 30, 45, 59]))
days = st.lists(st.sampled_from(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
                min_size=1, max_size=7, unique=True)
moments = st.floats(at("2026-01-01T00:00:00Z"), at("2028-01-01T00:00:00Z"))


@settings(max_examples=300, deadline=None)
@given(days, clock, clock, st.sampled_from(ZONES), moments)
def test_occurrences_are_consistent(weekdays: list[str], start: str, end: str, zone: str,
                                    now: float) -> None:
    window = weekly(weekdays, start, end, zone)
    occ = window.next_occurrence(now)
    assert occ is not None  # a weekly window starts within a week
    begins, ends = occ
    assert begins < ends <= begins + 25 * HOUR
    assert now < ends and begins <= now + 8 * 86400
    active = window.active_at(now)
    if active is not None:
        assert active == occ and begins <= now
    else:
        assert begins > now
    assert window.active_at(begins) is not None
    local = datetime.fromtimestamp(begins, zoneinfo.ZoneInfo(zone))
    assert local.strftime("%a").lower() in weekdays
    # the start is the configured time, or later only because the clocks jumped past it
    assert timedelta(0) <= local - local.replace(hour=int(start[:2]), minute=int(start[3:]))\
        <= timedelta(hours=1)
    assert window.describe(now).startswith("weekly-x: ")
