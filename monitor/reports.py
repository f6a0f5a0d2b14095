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

The availability gauges need only the per-platform sums, every minute: :class:`PlatformSums`
gives them without a row per account, each live view keeping its watch start.
"""

from __future__ import annotations

import bisect
import itertools
import math
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import compress
from operator import and_, attrgetter, or_
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


# ----------------------------------------------------------------- the gauges

# Keys per Store.watch_starts query while settling watch starts: a few thousand keep each
# answer (and the JSON array sent) small and each read short, whatever the watchlist.
LOOKUP_CHUNK = 4000
BEFORE_ANYTHING_KEPT = -math.inf  # AccountView.watched_from for watched_from() None


def settled(start: WatchStart) -> bool:
    """Whether :func:`watched_from` of ``start`` stays as it is while the account is
    watched, so a live view may keep it. Once decided, an account's first transition stays
    its first (retention never deletes the newest), and an addition made again only moves
    ``added_at`` later; so only a start taken from an addition older than the first
    decision, or no start at all (never decided: no data yet), is asked again next time.
    Retention can still delete the first transition, which makes the start "before
    anything kept": :class:`PlatformSums` asks again after a pruning."""
    first = start.first_transition_at
    return first is not None and (not start.from_unknown or start.added_at is None
                                  or first <= start.added_at)


def _unread(start: float, view: AccountView) -> bool:
    """Whether the file may hold a start ``view`` has not kept: not settled (NaN), unless
    nothing was ever written for it. An account from the config that is still unknown and
    not blind has had no event (a first decision leaves unknown; blind is the only event
    an unknown account can have, and only an answer ends it), and only an API addition has
    a start without one: "no data yet" without a query. A fresh watchlist of a million is
    all unknown for its first minute, and each refresh would read every start."""
    if not math.isnan(start):
        return False
    st = view.state
    return st.state is not State.UNKNOWN or st.blind or view.source != "config"


def _settle(store: Store, views: Sequence[AccountView], asked: Sequence[int],
            now: float) -> dict[int, float]:
    """Read the watch starts of ``views[i]`` for ``i`` in ``asked``, in chunks; each view
    keeps a settled one. Returns the others' starts that are not "no data yet" (additions
    not decided since), by index: few, and good for this refresh only."""
    pending: dict[int, float] = {}
    # Each start read is a float of its own; equal ones are kept as one (the accounts of
    # one batched answer were decided at the same moment): 24 bytes an account otherwise,
    # for as long as it is watched.
    kept: dict[float, float] = {}
    for at in range(0, len(asked), LOOKUP_CHUNK):
        chunk = asked[at:at + LOOKUP_CHUNK]
        starts = store.watch_starts([views[i].key for i in chunk])
        for i in chunk:
            view = views[i]
            start = starts.get(view.key)
            if start is not None and settled(start):
                first = watched_from(start, now)
                if first is None:
                    view.watched_from = BEFORE_ANYTHING_KEPT
                else:
                    value = float(first)
                    view.watched_from = kept.setdefault(value, value)
                continue
            view.watched_from = math.nan
            if start is not None and start.added_at is not None:
                pending[i] = min(t for t in (start.first_transition_at, start.added_at)
                                 if t is not None)
    return pending


@dataclass(slots=True)
class _Sums:
    """A platform's seconds in one window, summed as ``platform_availability`` does."""

    certainly_down: float = 0.0
    possibly_down: float = 0.0
    observed: float = 0.0
    outages: int = 0
    unwatched: float = 0.0

    def add(self, a: Availability) -> None:
        self.certainly_down += a.certainly_down
        self.possibly_down += a.possibly_down
        self.observed += a.observed
        self.outages += a.outages
        self.unwatched += a.unwatched

    def figures(self) -> Availability:
        return Availability(lower=_ratio(self.possibly_down, self.observed),
                            upper=_ratio(self.certainly_down, self.observed),
                            certainly_down=self.certainly_down,
                            possibly_down=self.possibly_down, observed=self.observed,
                            outages=self.outages, unwatched=self.unwatched)


@dataclass(slots=True)
class _Started:
    """One platform's quiet accounts (no outage in the longest window): ``before`` were
    watched since before it begins, the others began at ``starts`` (ascending, each before
    the end), and ``tail[k]`` is the sum of ``end - start`` over the ``k`` latest."""

    before: int = 0
    starts: list[float] = field(default_factory=list)
    tail: list[float] = field(default_factory=list)

    def close(self, end: float) -> None:
        """Sort, drop the starts from ``end`` on (nothing observed) and sum the tails."""
        self.starts.sort()
        del self.starts[bisect.bisect_left(self.starts, end):]
        self.tail = [0.0, *itertools.accumulate(map(end.__sub__, reversed(self.starts)))]

    def window(self, end: float, length: float, gaps: _Gaps) -> tuple[float, float]:
        """(observed, possibly down), summed over these accounts, of the window of
        ``length`` ending at ``end``: what :class:`_Quiet` gives each. An account observes
        ``end - max(end - length, start)`` and the gaps from there on, so per gap the
        accounts begun before it count all of it and those begun inside it the rest (none
        but after a clock step: nothing is decided while nobody watches)."""
        starts, n = self.starts, len(self.starts)
        full = self.before + bisect.bisect_right(starts, end - length)  # the whole window
        observed = full * length + self.tail[self.before + n - full]
        blind = 0.0
        for gap_start, gap_end in gaps.gaps:
            whole = bisect.bisect_right(starts, gap_start)
            part = bisect.bisect_left(starts, gap_end, whole)
            blind += (self.before + whole) * (gap_end - gap_start) + math.fsum(
                gap_end - s for s in itertools.islice(starts, whole, part))
        return observed, blind


def _quiet_starts(starts: Sequence[float], platforms: Sequence[str], exact: Iterable[int],
                  pending: Mapping[int, float], horizon: float, end: float
                  ) -> dict[str, _Started]:
    """Per platform, the accounts without outages in the longest window (``exact``: the
    indexes of the others) by start (``starts[i]`` is ``views[i].watched_from``), every
    platform of ``platforms`` there, even with nobody observed. The passes over every
    account run in C (``map``, ``compress``, ``Counter``) on plain lists; Python code runs
    per start inside the window (an append) and per account not settled."""
    before = Counter(platforms)  # less, below, every account not watched since before
    within = list(map(horizon.__lt__, starts))  # NaN (not settled) is not
    for i in exact:
        within[i] = False
        if not math.isnan(starts[i]):
            before[platforms[i]] -= 1
    started: defaultdict[str, _Started] = defaultdict(_Started)
    for platform, start in zip(compress(platforms, within), compress(starts, within),
                               strict=True):
        started[platform].starts.append(start)
    for platform, group in started.items():
        before[platform] -= len(group.starts)
    skip = set(exact)
    for i in compress(range(len(starts)), map(math.isnan, starts)):
        platform = platforms[i]
        before[platform] -= 1
        got = None if i in skip else pending.get(i)
        if got is None:
            continue  # an account with outages, or no data yet: nothing observed
        if got <= horizon:
            before[platform] += 1
        else:
            started[platform].starts.append(got)
    for platform, count in before.items():
        group = started[platform]
        group.before = count
        group.close(end)
    return dict(started)


class PlatformSums:
    """The per-platform figures behind the availability gauges
    (``Metrics.refresh_availability``): :func:`availability`'s ``platforms``, without a
    row per account, at a cost that grows with the accounts that had outages in the
    longest window, plus a few passes in C over the views.

    Each live view keeps its account's watch start once :func:`settled`
    (``AccountView.watched_from``), so a refresh reads only those not settled yet (new,
    never decided, or started by an addition before their first decision), the ones with
    outages (their figures go through the exact per-account path, ``_account_window``,
    with the start as the file says it now), and, after a pruning, the kept starts inside
    the longest window that it may have reached (pruning an account's first transition
    makes it "before anything kept"; a start before the window gives the figures of that
    anyway). The file cannot say which accounts a pruning reached (its cursor keeps the
    largest id pruned, and an account's first row, the oldest, becomes prunable only once
    the account has a newer one), so the pruning side says up to when it pruned. The
    others are quiet: up but for the gaps, summed from their starts alone
    (:class:`_Started`). Remembers between refreshes only the pruning last handled; one
    refresh at a time."""

    def __init__(self) -> None:
        self.pruned_through: float | None = None  # the pruning the kept starts reflect

    def refresh(self, store: Store, views: Sequence[AccountView], now: float,
                windows: Mapping[str, float] = WINDOWS, *,
                still_absent_at: Mapping[AccountKey, float] | None = None,
                pruned_through: float | None = None) -> dict[str, dict[str, Availability]]:
        """Per platform of ``views`` (one per account) and window ending ``now``: the
        figures ``platform_availability`` gives of the per-account ones.
        ``pruned_through``: transitions from before it may have been pruned (None: none
        were, as far as the caller knows)."""
        _check_now(now)
        horizon = now - _longest(windows)
        recheck = pruned_through if pruned_through is not None and (
            self.pruned_through is None or pruned_through > self.pruned_through) else None
        outages: dict[AccountKey, list[Outage]] = {}
        for outage in store.outages_since(horizon):
            outages.setdefault(outage.key, []).append(outage)
        starts = list(map(attrgetter("watched_from"), views))
        platforms = list(map(attrgetter("key.platform"), views))
        handles = {key.handle for key in outages}  # (a str keeps its hash: cheap to test)
        everyone = range(len(views))
        exact = [i for i in compress(everyone, map(handles.__contains__, map(
            attrgetter("key.handle"), views))) if views[i].key in outages]
        # Which starts to read, a byte an account, and their indexes as machine integers:
        # a refresh after start asks for every account, and a list (or a set) of a million
        # int objects is 36 (60) MB at the monitor's peak.
        ask = bytearray(map(_unread, starts, views))
        if recheck is not None:
            ask = bytearray(map(or_, ask, map(and_, map(horizon.__lt__, starts),
                                              map(recheck.__gt__, starts))))
        for i in exact:
            ask[i] = True
        asked = array("q", compress(everyone, ask))
        pending = _settle(store, views, asked, now)
        for i in asked:
            starts[i] = views[i].watched_from
        gaps = unwatched(store.runs_since(horizon), now)
        windowed = {name: _Gaps.of(gaps, now - length, now) for name, length in windows.items()}
        sums: dict[str, dict[str, _Sums]] = {}
        for platform, group in _quiet_starts(starts, platforms, exact, pending, horizon,
                                             now).items():
            sums[platform] = {}
            for name, length in windows.items():
                observed, blind = group.window(now, length, windowed[name])
                sums[platform][name] = _Sums(0.0, blind, observed, 0, blind)
        quiet, later = _Quiet(now, windows, windowed), still_absent_at or {}
        for i in exact:
            key = views[i].key
            w = starts[i]
            since = pending.get(i, now) if math.isnan(w) else (
                None if w == BEFORE_ANYTHING_KEPT else w)
            for name, length in windows.items():
                touching = _touching(outages[key], now - length)
                sums[key.platform][name].add(
                    _account_window(touching, now, length, since, windowed[name],
                                    later.get(key)) if touching else quiet(name, since))
        if recheck is not None:
            self.pruned_through = recheck
        return {platform: {name: s.figures() for name, s in by_window.items()}
                for platform, by_window in sorted(sums.items())}


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
