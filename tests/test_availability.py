"""monitor.availability: hand-computed tables, window edges, restarts, and properties that
hold for any outage history (checked against a second-by-second count)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.availability import (
    WINDOWS,
    Availability,
    account_availability,
    bounds_text,
    percent,
    platform_availability,
    table,
)
from monitor.model import AccountKey, Outage

DAY = 86_400.0
END = 1_000_000.0
S = END - DAY  # the 24 h window is [S, END)
ALICE = AccountKey("x", "alice")
BOB = AccountKey("x", "bob")
CAROL = AccountKey("mastodon", "carol")


def outage(last_present: float | None, first_absent: float, last_absent: float,
           recovered: float | None, *, confirmed: float | None = None, key: AccountKey = ALICE,
           id: int = 1) -> Outage:
    return Outage(id=id, key=key, reason="suspended", last_seen_present_at=last_present,
                  first_seen_absent_at=first_absent,
                  confirmed_at=first_absent if confirmed is None else confirmed,
                  last_seen_absent_at=last_absent, recovered_at=recovered)


def day(*outages: Outage, watched_from: float | None = None,
        unwatched: list[tuple[float, float]] | None = None,
        still_absent_at: float | None = None) -> Availability:
    """The 24 h window ending at END."""
    return account_availability(outages, END, DAY, watched_from, unwatched or (),
                                still_absent_at=still_absent_at)


# ------------------------------------------------------------- hand-computed tables


def test_an_outage_inside_the_window() -> None:
    # present at S+1000, absent S+1060 .. S+1600, present again S+1660
    a = day(outage(S + 1000, S + 1060, S + 1600, S + 1660, confirmed=S + 1120))
    assert a.certainly_down == 540  # 1600 - 1060
    assert a.possibly_down == 660  # 1660 - 1000
    assert a.observed == DAY
    assert a.outages == 1
    assert a.lower == pytest.approx(1 - 660 / DAY)  # 0.992361...
    assert a.upper == pytest.approx(1 - 540 / DAY)  # 0.99375
    assert (percent(a.lower), percent(a.upper)) == ("99.236%", "99.375%")
    assert bounds_text(a) == "99.236% to 99.375%"


def test_an_outage_across_the_window_start_counts_only_its_part_inside() -> None:
    # vanished before the window (present S-3600, absent S-3000), back at S+900
    a = day(outage(S - 3600, S - 3000, S + 600, S + 900))
    assert a.certainly_down == 600  # [S, S+600): the part before S is outside
    assert a.possibly_down == 900  # [S, S+900)
    assert a.outages == 1
    assert a.upper == pytest.approx(1 - 600 / DAY)


def test_an_outage_across_the_window_end_counts_only_its_part_inside() -> None:
    # a report for a window that ended while the account was gone (back only after END)
    a = day(outage(END - 1000, END - 900, END + 100, END + 200))
    assert a.certainly_down == 900  # [END-900, END)
    assert a.possibly_down == 1000  # [END-1000, END)


def test_outages_wholly_outside_the_window_do_not_count() -> None:
    a = day(outage(S - 500, S - 400, S - 300, S - 200),
            outage(END + 10, END + 20, END + 30, END + 40, id=2))
    assert (a.certainly_down, a.possibly_down, a.outages) == (0, 0, 0)
    assert a.lower == a.upper == 1.0


def test_an_open_outage_is_possibly_down_to_the_end_certainly_only_to_its_last_sighting() -> None:
    # present END-7200, absent END-7140, confirmed (and last seen absent, by the row) END-7020
    o = outage(END - 7200, END - 7140, END - 7020, None, confirmed=END - 7020)
    a = day(o)
    assert a.certainly_down == 120  # 7140 - 7020: what the row saw
    assert a.possibly_down == 7200  # from the last present sighting to END
    # the caller knows it was still absent at END-60 (AccountState.last_absent_at)
    b = day(o, still_absent_at=END - 60)
    assert b.certainly_down == 7080  # 7140 - 60
    assert b.possibly_down == 7200
    assert b.upper == pytest.approx(1 - 7080 / DAY)


def test_a_later_absent_sighting_does_not_stretch_a_recovered_outage() -> None:
    a = day(outage(S + 0, S + 100, S + 200, S + 300), still_absent_at=S + 5000)
    assert (a.certainly_down, a.possibly_down) == (100, 300)


def test_overlapping_outages_of_one_account_are_not_counted_twice() -> None:
    # A: present S+0, absent S+100..S+500, back S+600
    # B: present S+400, absent S+450..S+900, back S+1000 (a duplicate row, a race)
    a = day(outage(S + 0, S + 100, S + 500, S + 600),
            outage(S + 400, S + 450, S + 900, S + 1000, id=2))
    assert a.certainly_down == 800  # [100,500) u [450,900) = [100,900); not 400 + 450
    assert a.possibly_down == 1000  # [0,600) u [400,1000) = [0,1000); not 600 + 600
    assert a.outages == 2


def test_never_seen_present_starts_at_the_first_absent_sighting_or_the_watch_start() -> None:
    o = outage(None, S + 5000, S + 5300, S + 5400)
    a = day(o)
    assert (a.certainly_down, a.possibly_down) == (300, 400)  # [5000,5300), [5000,5400)
    # watched since S+4000 and never seen present: it may have been gone all along
    b = day(o, watched_from=S + 4000)
    assert b.observed == DAY - 4000  # 82400: the window shrinks to the watch
    assert b.possibly_down == 1400  # [4000, 5400)
    assert b.certainly_down == 300
    assert b.lower == pytest.approx(1 - 1400 / 82_400)
    assert b.upper == pytest.approx(1 - 300 / 82_400)


def test_time_before_the_account_was_watched_is_outside_the_window() -> None:
    o = outage(S + 500, S + 600, S + 700, S + 800)
    assert day(o, watched_from=S + 650).observed == DAY - 650
    # [650,700) certain, [650,800) possible: the parts before the watch are gone
    assert (day(o, watched_from=S + 650).certainly_down,
            day(o, watched_from=S + 650).possibly_down) == (50, 150)
    assert day(o, watched_from=S - 10_000).observed == DAY  # watched before: no change


def test_a_restart_gap_is_unknown_lower_bound_drops_upper_does_not() -> None:
    gap = (S + 2000, S + 2600)  # the monitor was stopped for 10 minutes
    clean = day(unwatched=[gap])
    assert clean.possibly_down == 600 and clean.certainly_down == 0
    assert clean.unwatched == 600
    assert clean.lower == pytest.approx(1 - 600 / DAY)
    assert clean.upper == 1.0
    # absent before the stop and after it: during the stop it is not *certainly* gone
    # present S+2200, absent S+2300 .. S+3000, back S+3100
    a = day(outage(S + 2200, S + 2300, S + 3000, S + 3100), unwatched=[gap])
    assert a.certainly_down == 400  # [2300,3000) minus [2000,2600) = [2600,3000)
    assert a.possibly_down == 1100  # [2200,3100) u [2000,2600) = [2000,3100)
    assert a.observed == DAY  # unknown time stays in the window


def test_nothing_observed_is_no_data_not_a_division_by_zero() -> None:
    o = outage(S + 0, S + 100, S + 200, S + 300)
    for a in (account_availability([o], END, 0.0),
              account_availability([o], END, DAY, watched_from=END),
              account_availability([o], END, DAY, watched_from=END + 5)):
        assert (a.lower, a.upper, a.observed) == (None, None, 0.0)
        assert bounds_text(a) == "n/a"
    assert platform_availability([]).lower is None


def test_bad_input_is_a_clear_value_error() -> None:
    with pytest.raises(ValueError, match="length >= 0"):
        account_availability([], END, -1.0)
    with pytest.raises(ValueError, match="finite"):
        account_availability([], float("nan"), DAY)
    with pytest.raises(ValueError, match=r"one account.*x/alice, x/bob"):
        account_availability([outage(S, S + 1, S + 2, S + 3),
                              outage(S, S + 1, S + 2, S + 3, key=BOB, id=2)], END, DAY)


def test_a_platform_sums_seconds_rather_than_averaging_ratios() -> None:
    alice = day(outage(S + 1000, S + 1060, S + 1600, S + 1660))  # 540 / 660 of 86400
    bob = day(watched_from=END - 43_200)  # clean, watched for the last 12 h
    p = platform_availability([alice, bob])
    assert p.observed == 129_600  # 86400 + 43200
    assert (p.certainly_down, p.possibly_down, p.outages) == (540, 660, 1)
    assert p.lower == pytest.approx(1 - 660 / 129_600)  # 0.994907...
    assert p.upper == pytest.approx(1 - 540 / 129_600)  # 0.995833...
    mean_of_ratios = ((1 - 660 / DAY) + 1.0) / 2  # 0.996180...: bob would outweigh alice
    assert p.lower != pytest.approx(mean_of_ratios)
    # an account with no data adds nothing rather than a 100 %
    assert platform_availability([alice, day(watched_from=END)]) == alice


def test_table_covers_every_account_platform_and_window() -> None:
    a_out = outage(S + 1000, S + 1060, S + 1600, S + 1660)
    t = table({ALICE: [a_out], BOB: [], CAROL: iter([])}, END,
              watched_from={BOB: END - 43_200}, unwatched=[(END - 100, END)])
    assert t["end"] == END and t["windows"] == WINDOWS
    assert [(r["platform"], r["handle"]) for r in t["accounts"]] == [
        ("mastodon", "carol"), ("x", "alice"), ("x", "bob")]
    alice = t["accounts"][1]["availability"]
    assert set(alice) == {"24h", "7d", "30d", "90d"}
    # 24h: 540 certain; possible 660 + the 100 s the monitor was away
    assert alice["24h"]["certainly_down"] == 540
    assert alice["24h"]["possibly_down"] == 760
    assert alice["7d"]["observed"] == 7 * DAY
    assert t["accounts"][2]["availability"]["90d"]["observed"] == 43_200
    x = {p["platform"]: p["availability"] for p in t["platforms"]}["x"]
    assert x["24h"]["observed"] == DAY + 43_200
    assert x["24h"]["possibly_down"] == 760 + 100
    assert x["24h"]["upper"] == pytest.approx(1 - 540 / (DAY + 43_200))


@pytest.mark.parametrize(("x", "text"), [
    (0.99953, "99.953%"),
    (0.9999, "99.990%"),
    (0.99999, "99.999%"),
    (0.999996, "99.999%"),  # never rounded up to a perfect record
    (1 - 1e-12, "99.999%"),
    (1.0, "100%"),
    (0.0, "0.000%"),
    (1 - 42 / DAY, "99.951%"),  # 99.95138...
    (None, "n/a"),
    (float("nan"), "n/a"),
])
def test_percent(x: float | None, text: str) -> None:
    assert percent(x) == text


def test_percent_digits() -> None:
    assert percent(0.9999996, digits=5) == "99.99996%"
    assert percent(0.9876, digits=0) == "98%"


# ---------------------------------------------------------------------- properties

T = st.integers(min_value=0, max_value=120)


@st.composite
def outages(draw: st.DrawFn, key: AccountKey = ALICE) -> list[Outage]:
    """Well-formed rows on an integer clock: present <= first absent <= confirmed <= last
    absent <= recovered."""
    rows = []
    for i in range(draw(st.integers(min_value=0, max_value=4))):
        first = draw(T)
        present = draw(st.none() | st.integers(min_value=max(0, first - 20), max_value=first))
        last = first + draw(st.integers(min_value=0, max_value=30))
        confirmed = draw(st.integers(min_value=first, max_value=last))
        recovered = draw(st.none() | st.integers(min_value=last, max_value=last + 20))
        rows.append(Outage(id=i + 1, key=key, reason="deleted", last_seen_present_at=present,
                           first_seen_absent_at=first, confirmed_at=confirmed,
                           last_seen_absent_at=last, recovered_at=recovered))
    return rows


gaps = st.lists(st.tuples(T, st.integers(min_value=0, max_value=30)).map(
    lambda p: (float(p[0]), float(p[0] + p[1]))), max_size=3)
ends = st.integers(min_value=0, max_value=160)
lengths = st.integers(min_value=0, max_value=160)
watch = st.none() | st.integers(min_value=0, max_value=160)


def second_by_second(rows: list[Outage], end: int, length: int, watched_from: int | None,
                     unwatched: list[tuple[float, float]]) -> tuple[int, int, int]:
    """The definitions, counted one second at a time: (certain, possible, observed)."""
    start = end - length if watched_from is None else max(end - length, watched_from)
    certain = possible = observed = 0
    for t in range(start, end):
        observed += 1
        gap = any(s <= t < e for s, e in unwatched)
        sure = maybe = False
        for o in rows:
            last = o.last_seen_absent_at
            assert last is not None
            p_start = o.last_seen_present_at
            if p_start is None:
                p_start = o.first_seen_absent_at if watched_from is None else min(
                    watched_from, o.first_seen_absent_at)
            p_end = end if o.recovered_at is None else o.recovered_at
            sure = sure or o.first_seen_absent_at <= t < last
            maybe = maybe or p_start <= t < p_end
        certain += sure and not gap
        possible += maybe or gap
    return certain, possible, observed


@given(outages(), ends, lengths, watch, gaps)
def test_bounds_match_a_second_by_second_count(rows: list[Outage], end: int, length: int,
                                               watched_from: int | None,
                                               unwatched: list[tuple[float, float]]) -> None:
    a = account_availability(rows, end, length, watched_from, unwatched)
    assert (a.certainly_down, a.possibly_down, a.observed) == second_by_second(
        rows, end, length, watched_from, unwatched)


@given(outages(), ends, lengths, watch, gaps)
def test_bounds_are_ordered(rows: list[Outage], end: int, length: int,
                            watched_from: int | None,
                            unwatched: list[tuple[float, float]]) -> None:
    a = account_availability(rows, end, length, watched_from, unwatched)
    assert 0 <= a.certainly_down <= a.possibly_down <= a.observed
    if a.observed == 0:
        assert a.lower is None and a.upper is None
    else:
        assert a.lower is not None and a.upper is not None
        assert 0.0 <= a.lower <= a.upper <= 1.0


@given(outages(), ends, lengths, st.randoms(use_true_random=False))
def test_order_and_duplicates_do_not_matter(rows: list[Outage], end: int, length: int,
                                            rnd: object) -> None:
    a = account_availability(rows, end, length)
    shuffled = rows + rows
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    b = account_availability(shuffled, end, length)
    assert (a.certainly_down, a.possibly_down) == (b.certainly_down, b.possibly_down)


@given(outages(), ends, lengths, st.data())
def test_shrinking_or_removing_an_outage_never_lowers_availability(
        rows: list[Outage], end: int, length: int, data: st.DataObject) -> None:
    if not rows:
        return
    before = account_availability(rows, end, length)
    i = data.draw(st.integers(min_value=0, max_value=len(rows) - 1))
    o = rows[i]
    assert o.last_seen_absent_at is not None
    # narrower on every side, still well-formed
    first = data.draw(st.integers(min_value=int(o.first_seen_absent_at),
                                  max_value=int(o.confirmed_at)))
    last = data.draw(st.integers(min_value=int(o.confirmed_at),
                                 max_value=int(o.last_seen_absent_at)))
    present = o.last_seen_present_at
    if present is not None:
        present = data.draw(st.integers(min_value=int(present), max_value=first))
    recovered = o.recovered_at
    if recovered is not None:
        recovered = data.draw(st.integers(min_value=last, max_value=int(recovered)))
    shrunk = replace(o, first_seen_absent_at=first, last_seen_absent_at=last,
                     last_seen_present_at=present, recovered_at=recovered)
    for after in (account_availability([*rows[:i], shrunk, *rows[i + 1:]], end, length),
                  account_availability(rows[:i] + rows[i + 1:], end, length)):
        assert after.certainly_down <= before.certainly_down
        assert after.possibly_down <= before.possibly_down


@given(outages(), ends, lengths, gaps)
def test_unwatched_time_lowers_only_the_lower_bound(rows: list[Outage], end: int,
                                                    length: int,
                                                    unwatched: list[tuple[float, float]]) -> None:
    seen = account_availability(rows, end, length)
    gappy = account_availability(rows, end, length, unwatched=unwatched)
    assert gappy.possibly_down >= seen.possibly_down  # lower bound can only drop
    assert gappy.certainly_down <= seen.certainly_down  # upper bound can only rise
    assert gappy.observed == seen.observed


@given(outages(), st.integers(min_value=0, max_value=200))
def test_a_longer_window_over_a_clean_tail_never_lowers_either_bound(
        rows: list[Outage], extra: int) -> None:
    end = 160
    # every row lies inside [0, 160) (present sightings included), so reaching further back
    # than 160 s only adds clean time
    short = account_availability(rows, end, 160)
    longer = account_availability(rows, end, 160 + extra)
    assert short.lower is not None and longer.lower is not None
    assert short.upper is not None and longer.upper is not None
    assert (longer.certainly_down, longer.possibly_down) == (
        short.certainly_down, short.possibly_down)
    assert longer.lower >= short.lower and longer.upper >= short.upper


@given(st.lists(st.tuples(outages(), ends, lengths), min_size=1, max_size=4))
def test_a_platform_lies_between_its_accounts(cases: list[tuple[list[Outage], int, int]]
                                              ) -> None:
    parts = [account_availability(rows, end, length) for rows, end, length in cases]
    p = platform_availability(parts)
    with_data = [a for a in parts if a.observed > 0]
    if not with_data:
        assert p.lower is None
        return
    assert p.lower is not None and p.upper is not None
    eps = 1e-12
    assert min(a.lower for a in with_data if a.lower is not None) - eps <= p.lower
    assert p.lower <= max(a.lower for a in with_data if a.lower is not None) + eps
    assert min(a.upper for a in with_data if a.upper is not None) - eps <= p.upper
    assert p.upper <= max(a.upper for a in with_data if a.upper is not None) + eps
    if len(parts) == 1:
        assert p == parts[0]


@given(st.floats(min_value=0.0, max_value=1.0))
def test_percent_never_reads_higher_than_the_figure(x: float) -> None:
    text = percent(x)
    shown = 100.0 if text == "100%" else float(text.rstrip("%"))
    assert shown <= x * 100 + 1e-9
    assert x * 100 - shown < 0.001 + 1e-9
    assert (text == "100%") == (x == 1.0)
