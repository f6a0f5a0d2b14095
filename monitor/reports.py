"""Availability reports: the shell that gathers what :mod:`monitor.availability` computes from.

From the state file, in a handful of queries whatever the number of accounts:

* the outages touching the longest window (one query for every account, from the open and
  recovered partial indexes; :meth:`Store.outages_since`);
* when each account began to be watched (``watched_from``): its first transition, or its
  addition through the API (:meth:`Store.watch_starts`). Not ``AccountState.watched_since``,
  which starts again with every process: restarts are gaps, below, not new beginnings. An
  account whose oldest transitions were pruned (retention keeps its newest one) was watched
  since before anything kept: the whole window counts. One never decided has no data yet;
* the time nobody watched: the gaps between runs (:mod:`monitor.runs`): from one run's end
  (``stopped_at``; after a crash its last ``alive_at``) to the next one's start, and after
  the last run when it has stopped or stopped telling. Runs are recorded from schema 5 on;
  before the first recorded run, gaps are not known.

The shell that watches also knows each open outage's latest absent sighting
(``AccountState.last_absent_at``, newer than the row's): :func:`still_absent` takes it from
the live views, and every function here takes it as ``still_absent_at``.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from monitor import availability as av
from monitor import timefmt
from monitor.availability import WINDOWS, Availability, Interval
from monitor.model import AccountKey, Outage, State
from monitor.runs import ALIVE_PERIOD
from monitor.store import Run, Store, WatchStart

if TYPE_CHECKING:
    from monitor.metrics import AccountView

DAY = 86_400.0
BAR_DAYS = 90  # cells of the account page's availability bar: today and the 89 days before
# A run not stopped whose alive_at is this recent is still going (its process moves alive_at
# every ALIVE_PERIOD); an older one crashed, or hangs, and watched only until its alive_at.
ALIVE_GRACE = 2.5 * ALIVE_PERIOD


# ----------------------------------------------------------------- pure helpers


def unwatched(runs: Sequence[Run], now: float, grace: float = ALIVE_GRACE) -> list[Interval]:
    """The gaps between runs up to ``now``: nobody watched any account then.

    A run covers ``[started_at, stopped_at)``; not stopped, ``[started_at, alive_at)``, or
    up to ``now`` while its ``alive_at`` is fresher than ``grace`` (the running process).
    Overlapping runs (two processes on one file) cover their union."""
    covered: list[Interval] = []
    for run in sorted(runs, key=lambda r: (r.started_at, r.id)):
        if run.stopped_at is not None:
            end = run.stopped_at
        elif now - run.alive_at <= grace:
            end = max(now, run.alive_at)
        else:
            end = run.alive_at
        end = max(end, run.started_at)
        if covered and run.started_at <= covered[-1][1]:
            covered[-1] = (covered[-1][0], max(covered[-1][1], end))
        else:
            covered.append((run.started_at, end))
    gaps = [(a[1], b[0]) for a, b in itertools.pairwise(covered)]
    if covered and covered[-1][1] < now:
        gaps.append((covered[-1][1], now))
    return [(s, e) for s, e in gaps if e > s]


def watched_from(start: WatchStart | None, now: float) -> float | None:
    """When an account's watch began, for :func:`monitor.availability.table`: None means
    "before the window" (its early history was pruned), ``now`` means "no data yet"."""
    if start is None:
        return now
    if start.first_transition_at is not None and not start.from_unknown:
        return None
    known = [t for t in (start.first_transition_at, start.added_at) if t is not None]
    return min(known) if known else now


def still_absent(views: Iterable[AccountView]) -> dict[AccountKey, float]:
    """Each down account's latest absent sighting, from the live views (the Watched
    table's ``view``): later than its outage row knows, which stops at the confirmation."""
    return {v.key: v.state.last_absent_at for v in views
            if v.state.state is State.DOWN and v.state.last_absent_at is not None}


def _order(key: AccountKey) -> tuple[str, str]:
    return key.platform, key.handle  # as AccountKey orders, without its slow __lt__


def _clipped(gaps: Iterable[Interval], start: float, end: float) -> list[Interval]:
    """``gaps`` inside ``[start, end)``, sorted and disjoint (overlaps merged)."""
    merged: list[Interval] = []
    for s, e in sorted((max(s, start), min(e, end)) for s, e in gaps):
        if e <= s:
            continue
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def _ratio(down: float, observed: float) -> float | None:
    """As ``availability`` computes a bound from seconds down and observed."""
    return None if observed <= 0 else min(1.0, max(0.0, 1.0 - down / observed))


@dataclass(frozen=True, slots=True)
class _Gaps:
    """One window's gaps (sorted, disjoint, clipped to it), indexed for look-ups:
    ``after[i]`` is the length of ``gaps[i:]``."""

    gaps: list[Interval]
    starts: list[float]
    ends: list[float]
    after: list[float]

    @classmethod
    def of(cls, gaps: Iterable[Interval], start: float, end: float) -> _Gaps:
        inside = _clipped(gaps, start, end)
        after = [0.0] * (len(inside) + 1)
        for i in range(len(inside) - 1, -1, -1):
            after[i] = after[i + 1] + inside[i][1] - inside[i][0]
        return cls(inside, [s for s, _ in inside], [e for _, e in inside], after)

    def near(self, intervals: Iterable[Interval]) -> list[Interval]:
        """The gaps that overlap or touch any of ``intervals``."""
        picked: set[int] = set()
        for start, end in intervals:
            picked.update(range(bisect.bisect_left(self.ends, start),
                                bisect.bisect_right(self.starts, end)))
        return [self.gaps[i] for i in sorted(picked)]

    def length_from(self, start: float) -> float:
        """Seconds of gap from ``start`` to the window's end."""
        i = bisect.bisect_right(self.ends, start)  # the first gap ending after start
        if i == len(self.gaps):
            return 0.0
        return self.after[i + 1] + self.ends[i] - max(self.starts[i], start)


def _account_window(outages: Sequence[Outage], end: float, length: float,
                    since: float | None, gaps: _Gaps, later: float | None) -> Availability:
    """``availability.account_availability``, handing it only the gaps near the
    account's outages. A gap apart from all of them (most gaps, for most accounts) only
    adds its length to the possibly down and unwatched seconds: it cannot overlap a
    certain interval, each inside its outage's possible one. So those lengths are added
    here instead of clipping and merging every gap for every account."""
    possible = [av.possible_interval(o, end, since, later if o.recovered_at is None else None)
                for o in outages]
    near = gaps.near(possible)
    a = av.account_availability(outages, end, length, since, near, still_absent_at=later)
    if a.observed <= 0:
        return a
    apart = gaps.length_from(end - a.observed) - a.unwatched
    if apart <= 0:
        return a
    return Availability(lower=_ratio(a.possibly_down + apart, a.observed), upper=a.upper,
                        certainly_down=a.certainly_down,
                        possibly_down=a.possibly_down + apart, observed=a.observed,
                        outages=a.outages, unwatched=a.unwatched + apart)


class _Quiet:
    """Accounts without outages in a window: up, except the gaps (possibly down). The
    figures depend only on where the account's window starts, which most share (watched
    since before it): computed once per start."""

    def __init__(self, end: float, windows: Mapping[str, float],
                 gaps: Mapping[str, _Gaps]) -> None:
        self.end, self.windows, self.gaps = end, windows, gaps
        self.seen: dict[tuple[str, float], Availability] = {}

    def __call__(self, name: str, since: float | None) -> Availability:
        end, length = self.end, self.windows[name]
        start = end - length if since is None else max(end - length, since)
        a = self.seen.get((name, start))
        if a is None:
            a = self.seen[(name, start)] = self._figures(start, self.gaps[name])
        return a

    def _figures(self, start: float, gaps: _Gaps) -> Availability:
        if start >= self.end:
            return Availability(None, None, 0.0, 0.0, 0.0, 0)
        blind, observed = gaps.length_from(start), self.end - start
        return Availability(lower=_ratio(blind, observed), upper=_ratio(0.0, observed),
                            certainly_down=0.0, possibly_down=blind, observed=observed,
                            outages=0, unwatched=blind)


def _touching(outages: Sequence[Outage], start: float) -> Sequence[Outage]:
    """The outages that can touch a window starting at ``start``: the others recovered
    before it, so leaving them out changes no figure (and open ones always stay)."""
    if all(o.recovered_at is None or o.recovered_at >= start for o in outages):
        return outages
    return [o for o in outages if o.recovered_at is None or o.recovered_at >= start]


class _Texts:
    """A window's figures as JSON with the bounds as text (``lower_text``, ``upper_text``
    and ``text``: "99.953% to 99.990%", one figure when they agree, "n/a" with no data).
    Remembered per figures: most accounts share theirs (100 %, or only the gaps)."""

    def __init__(self) -> None:
        self.seen: dict[Availability, dict[str, Any]] = {}

    def __call__(self, a: Availability) -> dict[str, Any]:
        figures = self.seen.get(a)
        if figures is None:
            figures = self.seen[a] = {
                **a.to_json(), "lower_text": av.percent(a.lower),
                "upper_text": av.percent(a.upper), "text": av.bounds_text(a)}
        return dict(figures)


def table(outages_by_account: Mapping[AccountKey, Sequence[Outage]], end: float,
          windows: Mapping[str, float] = WINDOWS, *,
          watched_from: Mapping[AccountKey, float | None] | None = None,
          unwatched: Sequence[Interval] = (),
          still_absent_at: Mapping[AccountKey, float] | None = None) -> dict[str, Any]:
    """:func:`monitor.availability.table`, with every window's bounds as text, fast
    enough for 10,000 accounts: the gaps are clipped to each window once (not once per
    account) and only those near an account's outages reach
    ``availability.account_availability`` (:func:`_account_window`), outages over
    before a window starts are left out of it, and an account without outages in a window
    is up but for the gaps (:class:`_Quiet`). Same figures, same shape:
    tests/test_reports.py checks it against ``availability.table``."""
    first = watched_from or {}
    later = still_absent_at or {}
    windowed = {name: _Gaps.of(unwatched, end - length, end) for name, length in windows.items()}
    text, quiet = _Texts(), _Quiet(end, windows, windowed)
    accounts: list[dict[str, Any]] = []
    by_platform: dict[str, dict[str, list[Availability]]] = {}
    for key in sorted(outages_by_account, key=_order):
        rows, since = outages_by_account[key], first.get(key)
        figures: dict[str, Availability] = {}
        for name, length in windows.items():
            touching = _touching(rows, end - length) if rows else rows
            if touching:
                a = _account_window(touching, end, length, since, windowed[name],
                                    later.get(key))
            else:
                a = quiet(name, since)
            figures[name] = a
            by_platform.setdefault(key.platform, {}).setdefault(name, []).append(a)
        accounts.append({"platform": key.platform, "handle": key.handle,
                         "availability": {n: text(a) for n, a in figures.items()}})
    return {
        "end": end,
        "windows": dict(windows),
        "accounts": accounts,
        "platforms": [{"platform": platform, "availability": {
            name: text(av.platform_availability(by_platform[platform][name]))
            for name in windows}} for platform in sorted(by_platform)],
    }


# ----------------------------------------------------------------- gathering


def _longest(windows: Mapping[str, float]) -> float:
    return max(windows.values(), default=0.0)


def _check_now(now: float) -> None:
    if not math.isfinite(now):
        raise ValueError(f"a report needs a finite end, got {now!r}")


def availability(store: Store, keys: Iterable[AccountKey], now: float,
                 windows: Mapping[str, float] = WINDOWS, *,
                 still_absent_at: Mapping[AccountKey, float] | None = None) -> dict[str, Any]:
    """Every account of ``keys`` and each of their platforms over every window ending
    ``now``: ``availability.table``'s shape plus, per account, ``watched_from``, per window
    the bounds as text (:func:`table`), and the ``unwatched`` gaps in the longest window.
    Three queries, whatever the number of accounts."""
    _check_now(now)
    wanted = sorted(set(keys), key=_order)
    since = now - _longest(windows)
    outages: dict[AccountKey, list[Outage]] = {key: [] for key in wanted}
    for outage in store.outages_since(since):
        rows = outages.get(outage.key)
        if rows is not None:
            rows.append(outage)
    starts = store.watch_starts(wanted)
    first = {key: watched_from(starts.get(key), now) for key in wanted}
    gaps = unwatched(store.runs_since(since), now)
    report = table(outages, now, windows, watched_from=first, unwatched=gaps,
                   still_absent_at=still_absent_at)
    for row in report["accounts"]:
        row["watched_from"] = first[AccountKey(row["platform"], row["handle"])]
    report["unwatched"] = [{"from": s, "to": e} for s, e in _clipped(gaps, since, now)]
    return report


def day_starts(now: float, days: int = BAR_DAYS) -> list[float]:
    """The UTC midnights that begin the bar's cells: today's and the ``days - 1`` before."""
    today = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0,
                                                     microsecond=0)
    return [(today - timedelta(days=n)).timestamp() for n in range(days - 1, -1, -1)]


def account_report(store: Store, key: AccountKey, now: float, *,
                   still_absent_at: float | None = None) -> dict[str, Any]:
    """One account: its figures per window (as :func:`availability` gives them), its
    outages touching the last 90 days (``model.Outage`` rows, newest first), and ``days``,
    the 90-day bar: one cell per UTC day (today's up to ``now``) with the seconds
    ``certainly_down``, ``possibly_down`` (which includes ``unwatched``), ``unwatched``
    and ``observed`` (0: not watched that day)."""
    _check_now(now)
    cells = day_starts(now)
    since = min(now - _longest(WINDOWS), cells[0])
    outages = store.outages_since(since, key)
    first = watched_from(store.watch_starts([key]).get(key), now)
    gaps = unwatched(store.runs_since(since), now)
    later = {key: still_absent_at} if still_absent_at is not None else None
    report = table({key: outages}, now, WINDOWS, watched_from={key: first},
                   unwatched=gaps, still_absent_at=later)
    days = []
    for start in cells:
        end = min(start + DAY, now)
        a = av.account_availability(outages, end, end - start, first, gaps,
                                    still_absent_at=still_absent_at)
        days.append({"day": datetime.fromtimestamp(start, UTC).date().isoformat(),
                     "start": start, "certainly_down": a.certainly_down,
                     "possibly_down": a.possibly_down, "unwatched": a.unwatched,
                     "observed": a.observed})
    (row,) = report["accounts"]
    return {"platform": key.platform, "handle": key.handle, "end": now,
            "watched_from": first, "availability": row["availability"],
            "outages": sorted(outages, key=lambda o: o.id, reverse=True), "days": days}


# ----------------------------------------------------------------- for the command line


def report_keys(store: Store, listed: Iterable[AccountKey] | None = None, *,
                platform: str | None = None, handle: str | None = None) -> list[AccountKey]:
    """The accounts a report from the state file alone covers: every account it has a
    state for, plus the API's additions; only those ``listed`` (the config's accounts) and
    the additions when a config is at hand; narrowed to ``platform`` / ``handle``."""
    added = {AccountKey(str(a["platform"]), str(a["handle"])) for a in store.watch_additions()}
    keys = set(store.account_keys()) | added
    if listed is not None:
        keys &= set(listed) | added
    return sorted((k for k in keys if (platform is None or k.platform == platform)
                   and (handle is None or k.handle == handle)), key=_order)


def parse_time(text: str) -> float:
    """``2025-02-01T00:00:00Z`` (ISO 8601; no zone: UTC) or POSIX seconds."""
    try:
        value = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{text[:64]!r} is not a time: give ISO 8601 such as "
                             "2025-02-01T00:00:00Z, or POSIX seconds") from None
        value = (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
    if not math.isfinite(value):
        raise ValueError(f"{text[:64]!r} is not a time")
    return value


def text_lines(report: dict[str, Any]) -> list[str]:
    """:func:`availability`'s report as the table ``history --sla`` prints: per account,
    then per platform, each window's bounds and the seconds certainly and possibly down."""
    end = report["end"]
    width = max([32, *(len(f"{r['platform']}/{r['handle']}") for r in report["accounts"])])
    head = (f"{'':<{width}} {'window':>6}  {'availability (lower to upper)':<30} "
            f"{'certainly down':>15} {'possibly down':>14} {'unwatched':>10} {'observed':>10}")
    lines = [f"availability to {timefmt.when(end)}: the truth lies between the lower and the "
             "upper bound; possibly down includes the time nobody watched (unwatched)", ""]

    def rows(name: str, figures: Mapping[str, dict[str, Any]]) -> list[str]:
        return [f"{name:<{width}} {window:>6}  {f['text']:<30} {f['certainly_down']:>13.0f} s"
                f" {f['possibly_down']:>12.0f} s {f['unwatched']:>8.0f} s"
                f" {f['observed']:>8.0f} s" for window, f in figures.items()]

    lines.append(head.replace(" " * width, f"{'account':<{width}}", 1))
    for row in report["accounts"]:
        lines.extend(rows(f"{row['platform']}/{row['handle']}", row["availability"]))
    lines += ["", head.replace(" " * width, f"{'platform':<{width}}", 1)]
    for row in report["platforms"]:
        lines.extend(rows(row["platform"], row["availability"]))
    gaps = report["unwatched"]
    if gaps:
        lines += ["", f"not watched (the monitor stopped or crashed): {len(gaps)} gap(s), "
                  f"{sum(g['to'] - g['from'] for g in gaps):.0f} s"]
        lines += [f"  {timefmt.when(g['from'])} to {timefmt.when(g['to'])}"
                  f" ({timefmt.span(g['to'] - g['from'])})" for g in gaps]
    return lines
