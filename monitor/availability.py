"""Availability you can quote: a lower and an upper bound per account and window.

Pure: no I/O, no clock; times are POSIX seconds. An outage row (``model.Outage``) does not
say when an account vanished or came back, only between which sightings, so every figure
here is a pair: ``lower`` assumes the account was gone for all the time it may have been
gone, ``upper`` only for the time it was certainly gone. The truth lies between.

Per outage, as intervals on the time line (half-open, so lengths add up exactly):

* certainly down: ``[first_seen_absent_at, last_seen_absent_at)``: it was seen absent at
  both ends and the state machine saw no present answer in between. For an open outage the
  row records absent sightings only up to its confirmation; a caller who knows a later one
  (``AccountState.last_absent_at``) passes it as ``still_absent_at``. We never extend the
  certain part to the window's end: "not seen since" is not "seen gone".
* possibly down: ``[last_seen_present_at, recovered_at)``; an open outage reaches the
  window's end. Never seen present (``last_seen_present_at`` None): it may have been gone
  since the watch began, so the interval starts at ``watched_from`` when that is given,
  else at the first absent sighting (the row knows nothing earlier).

Time not covered by an outage counts as up, except ``unwatched`` time (the monitor was not
running, e.g. between a stop and a restart): that is unknown, so it is added to the possibly
down time and taken out of the certainly down time. Time before ``watched_from`` is not part
of the window at all: a 90-day figure for an account watched since yesterday is a figure
over one day, and ``observed`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from monitor.model import AccountKey, Outage

WINDOWS: dict[str, float] = {
    "24h": 86_400.0,
    "7d": 7 * 86_400.0,
    "30d": 30 * 86_400.0,
    "90d": 90 * 86_400.0,
}

Interval = tuple[float, float]  # [start, end): start <= end


@dataclass(frozen=True, slots=True)
class Availability:
    """One account's (or a platform's) availability over one window, with its evidence.

    ``lower``/``upper`` are None when nothing was observed (``observed == 0``): no data is
    not 100 %. Seconds: ``certainly_down <= possibly_down <= observed``; ``possibly_down``
    includes ``unwatched`` time. ``outages`` counts the outages that touch the window.
    """

    lower: float | None
    upper: float | None
    certainly_down: float
    possibly_down: float
    observed: float
    outages: int
    unwatched: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The API/CLI shape: plain numbers, None for no data."""
        return {"lower": self.lower, "upper": self.upper,
                "certainly_down": self.certainly_down, "possibly_down": self.possibly_down,
                "observed": self.observed, "unwatched": self.unwatched,
                "outages": self.outages}


# ----------------------------------------------------------------------- intervals


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint, non-empty: overlapping outages must not count twice."""
    merged: list[Interval] = []
    for start, end in sorted(iv for iv in intervals if iv[1] > iv[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _clip(intervals: Iterable[Interval], lo: float, hi: float) -> list[Interval]:
    return _merge((max(s, lo), min(e, hi)) for s, e in intervals)


def _subtract(intervals: Sequence[Interval], cuts: Sequence[Interval]) -> list[Interval]:
    """``intervals`` minus ``cuts`` (both merged)."""
    out: list[Interval] = []
    for start, end in intervals:
        pieces = [(start, end)]
        for cut_start, cut_end in cuts:
            pieces = [p for s, e in pieces
                      for p in ((s, min(e, cut_start)), (max(s, cut_end), e)) if p[1] > p[0]]
        out.extend(pieces)
    return out


def _length(intervals: Iterable[Interval]) -> float:
    return sum(e - s for s, e in intervals)


# ------------------------------------------------------------------ one outage


def certain_interval(outage: Outage, still_absent_at: float | None = None) -> Interval:
    """When the account was certainly gone: first to last absent sighting."""
    last = max(outage.first_seen_absent_at, outage.confirmed_at,
               outage.last_seen_absent_at if outage.last_seen_absent_at is not None
               else outage.first_seen_absent_at)
    if outage.recovered_at is None and still_absent_at is not None:
        last = max(last, still_absent_at)
    elif outage.recovered_at is not None:
        # A present sighting ends any certainty, whatever a stray timestamp says.
        last = min(last, outage.recovered_at)
    return (outage.first_seen_absent_at, max(outage.first_seen_absent_at, last))


def possible_interval(outage: Outage, end: float, watched_from: float | None = None,
                      still_absent_at: float | None = None) -> Interval:
    """When the account may have been gone: last present sighting to the first one after
    (or ``end`` while open). Always contains ``certain_interval``."""
    certain_start, certain_end = certain_interval(outage, still_absent_at)
    if outage.last_seen_present_at is not None:
        start = outage.last_seen_present_at
    elif watched_from is not None:
        start = watched_from
    else:
        start = certain_start
    stop = end if outage.recovered_at is None else outage.recovered_at
    return (min(start, certain_start), max(stop, certain_end))


# ----------------------------------------------------------------- per account


def _check_window(end: float, length: float) -> None:
    if not (math.isfinite(end) and math.isfinite(length)) or length < 0:
        raise ValueError(f"a window needs a finite end and a length >= 0, got "
                         f"end={end!r} length={length!r}")


def _one_account(outages: Sequence[Outage]) -> None:
    keys = {o.key for o in outages}
    if len(keys) > 1:
        raise ValueError("account_availability takes the outages of one account, got "
                         + ", ".join(sorted(str(k) for k in keys)))


def _ratio(down: float, observed: float) -> float | None:
    if observed <= 0:
        return None
    return min(1.0, max(0.0, 1.0 - down / observed))


def account_availability(outages: Iterable[Outage], end: float, length: float,
                         watched_from: float | None = None,
                         unwatched: Iterable[Interval] = (), *,
                         still_absent_at: float | None = None) -> Availability:
    """Availability bounds of one account over ``[end - length, end)``.

    ``watched_from``: when the account was first watched at all (not
    ``AccountState.watched_since``, which restarts with the process: restarts belong in
    ``unwatched``). ``still_absent_at``: the latest absent sighting of the open outage, if
    the caller knows one later than the row. Raises ValueError for a bad window or the
    outages of several accounts.
    """
    _check_window(end, length)
    rows = tuple(outages)
    _one_account(rows)
    start = end - length if watched_from is None else max(end - length, watched_from)
    if start >= end:
        return Availability(None, None, 0.0, 0.0, 0.0, 0)
    latest_open = max((o for o in rows if o.recovered_at is None),
                      key=lambda o: (o.first_seen_absent_at, o.id), default=None)

    def later_sighting(o: Outage) -> float | None:
        return still_absent_at if o is latest_open else None

    possible = [possible_interval(o, end, watched_from, later_sighting(o)) for o in rows]
    touching = sum(1 for s, e in possible if s < end and e > start)
    blind = _clip(unwatched, start, end)
    certain = _subtract(_clip((certain_interval(o, later_sighting(o)) for o in rows),
                              start, end), blind)
    maybe = _clip([*possible, *blind], start, end)
    observed = end - start
    certainly_down, possibly_down = _length(certain), _length(maybe)
    return Availability(lower=_ratio(possibly_down, observed),
                        upper=_ratio(certainly_down, observed),
                        certainly_down=certainly_down, possibly_down=possibly_down,
                        observed=observed, outages=touching, unwatched=_length(blind))


def platform_availability(per_account: Iterable[Availability]) -> Availability:
    """A platform's figure: seconds summed over its accounts, then one ratio.

    Summing seconds weighs each account by how long it was observed, so an account added an
    hour ago cannot move a 90-day figure as much as one watched all along, accounts with no
    data drop out instead of needing a special case, and the bounds stay bounds (a sum of
    lower bounds of downtime is a lower bound of the total). A mean of ratios has none of
    these.
    """
    parts = tuple(per_account)
    certainly_down = sum(a.certainly_down for a in parts)
    possibly_down = sum(a.possibly_down for a in parts)
    observed = sum(a.observed for a in parts)
    return Availability(lower=_ratio(possibly_down, observed),
                        upper=_ratio(certainly_down, observed),
                        certainly_down=certainly_down, possibly_down=possibly_down,
                        observed=observed, outages=sum(a.outages for a in parts),
                        unwatched=sum(a.unwatched for a in parts))


def table(outages_by_account: Mapping[AccountKey, Iterable[Outage]], end: float,
          windows: Mapping[str, float] = WINDOWS, *,
          watched_from: Mapping[AccountKey, float] | None = None,
          unwatched: Iterable[Interval] = (),
          still_absent_at: Mapping[AccountKey, float] | None = None) -> dict[str, Any]:
    """Every account and platform over every window, in the shape the API serves.

    ``outages_by_account`` must name every watched account (with no outages: an empty
    list), or it is missing from the table and from its platform's sums. ``unwatched``
    holds the monitor's own gaps, which apply to every account.
    """
    gaps = tuple(unwatched)
    first_watched = watched_from or {}
    later = still_absent_at or {}
    per_account: dict[AccountKey, dict[str, Availability]] = {}
    for key in sorted(outages_by_account):
        rows = tuple(outages_by_account[key])
        per_account[key] = {
            name: account_availability(rows, end, length, first_watched.get(key), gaps,
                                       still_absent_at=later.get(key))
            for name, length in windows.items()}
    by_platform: dict[str, list[dict[str, Availability]]] = {}
    for key, figures in per_account.items():
        by_platform.setdefault(key.platform, []).append(figures)
    return {
        "end": end,
        "windows": dict(windows),
        "accounts": [{"platform": key.platform, "handle": key.handle,
                      "availability": {n: a.to_json() for n, a in figures.items()}}
                     for key, figures in per_account.items()],
        "platforms": [{"platform": platform, "availability": {
            name: platform_availability(f[name] for f in by_platform[platform]).to_json()
            for name in windows}} for platform in sorted(by_platform)],
    }


# ------------------------------------------------------------------ formatting


def percent(x: float | None, digits: int = 3) -> str:
    """``0.99953`` -> ``"99.953%"``; None -> ``"n/a"``.

    Three decimals tell 99.99 % from 99.999 %. Rounded down, never up: 99.9996 % reads
    "99.999%", and only a full 1.0 reads "100%", so a page never shows a perfect record
    that was not.
    """
    if x is None or not math.isfinite(x):
        return "n/a"
    if x >= 1.0:
        return "100%"
    step = Decimal(1).scaleb(-digits)
    value = (Decimal(repr(max(0.0, x))) * 100).quantize(step, rounding=ROUND_FLOOR)
    return f"{value}%"


def bounds_text(a: Availability, digits: int = 3) -> str:
    """``"99.950% to 99.990%"``, or one figure when both bounds agree, or ``"n/a"``."""
    low, high = percent(a.lower, digits), percent(a.upper, digits)
    return low if low == high else f"{low} to {high}"
