"""The UI's view models: what the overview and the account page show, for one viewer, as
plain frozen data the templates only lay out.

Read from the running monitor the way the JSON API reads it (the watchlist's live views,
the store's outages and transitions, the silence book, the scheduler's lag, the decisions'
holds) and nothing else; nothing here writes. What the public view may not see (evidence,
labels, errors, team and owner, silences, acknowledgement comments) is left out here, not
hidden by the templates, so no template can show it by mistake.

Cost: the overview touches every watched account once (status, counts, filter, sort: a few
ms for 10,000) and renders one page of :data:`PAGE_SIZE`; per-row look-ups (silences) run
for the shown page only.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from monitor.decisions import Decisions
from monitor.matchers import subject_labels
from monitor.model import AccountKey, ErrorKind, Outage, Result, State
from monitor.scheduler import Scheduler
from monitor.silences import Silence
from monitor.store import Store
from monitor.ui import reporting, text
from monitor.ui.viewer import PublicScope, Viewer
from monitor.watchlist import Watched, Watchlist
from monitor.webbase import Monitor, silenced_now

PAGE_SIZE = 100  # accounts per overview page
QUERY_MAX = 200  # characters of the ?q= filter
OUTAGES_SHOWN = 20  # recently ended outages on the overview
OPEN_SHOWN = 10  # open outages on the overview (newest first; the rest: ?state=down)
OPEN_MAX = 1000  # open outages read to count them and mark acknowledged rows
RECENT_SECONDS = 7 * 86_400.0  # "recent" outages: recovered within a week
TIMELINE_MAX = 100  # transitions on an account page, newest first
ACCOUNT_OUTAGES_MAX = 50


class UiMonitor(Monitor, Protocol):
    """What the UI reads of the running monitor beyond the API's :class:`Monitor`."""

    listen_host: str
    scheduler: Scheduler
    decisions: Decisions | None
    watchlist: Watchlist


# ----------------------------------------------------------------- filters and paging


class FilterError(ValueError):
    """A filter the overview cannot apply; the message says what is accepted."""


@dataclass(frozen=True, slots=True)
class Filter:
    """``?q=`` (part of a handle), ``?platform=``, ``?state=`` (a status) and ``?page=``.
    Empty values mean "any", as a plain GET form sends them."""

    q: str = ""
    platform: str = ""
    state: str = ""
    page: int = 1

    @property
    def active(self) -> bool:
        return bool(self.q or self.platform or self.state)

    def link(self, page: int | None = None) -> str:
        """``/?...`` for this filter at ``page`` (our own route, every value encoded)."""
        params = [(k, v) for k, v in (("q", self.q), ("platform", self.platform),
                                      ("state", self.state)) if v]
        chosen = self.page if page is None else page
        if chosen != 1:
            params.append(("page", str(chosen)))
        return "/?" + urllib.parse.urlencode(params) if params else "/"


FILTER_NAMES = ("q", "platform", "state", "page")


def parse_filter(query: Mapping[str, str], getall: Any, platforms: Iterable[str]) -> Filter:
    """The overview's filter from a query string; :class:`FilterError` for anything else.

    ``getall(name)`` lists every value given for ``name`` (a repeated parameter is refused:
    which one would win is not obvious).
    """
    for name in query:
        if name not in FILTER_NAMES:
            raise FilterError(f"unknown parameter {name[:40]!r}: use q, platform, state, page")
        if len(getall(name)) > 1:
            raise FilterError(f"{name} given more than once")
    q = query.get("q", "").strip()
    if len(q) > QUERY_MAX or not q.isprintable():
        raise FilterError(f"q: at most {QUERY_MAX} printable characters")
    platform = query.get("platform", "")
    known = sorted(platforms)
    if platform and platform not in known:
        raise FilterError("platform: one of " + ", ".join(known))
    state = query.get("state", "")
    if state and state not in text.STATUSES:
        raise FilterError("state: one of " + ", ".join(text.STATUSES))
    raw_page = query.get("page", "1")
    if not raw_page.isascii() or not raw_page.isdigit() or not 1 <= int(raw_page) <= 10**6:
        raise FilterError("page: a whole number from 1")
    return Filter(q, platform, state, int(raw_page))


@dataclass(frozen=True, slots=True)
class Pages:
    number: int
    count: int
    first: int  # 1-based index of the first row shown (0 when none)
    last: int
    total: int
    prev_link: str | None
    next_link: str | None


# ----------------------------------------------------------------- rows


@dataclass(frozen=True, slots=True)
class Row:
    """One account on the overview."""

    platform: str
    handle: str
    href: str
    status: str  # one of text.STATUSES
    state: str  # the state machine's state
    label: str  # "Down"
    reason: str  # "suspended", or "" (full viewers also get the blind reason)
    since: float | None
    protected: bool
    current_handle: str | None  # the platform's handle now, when it differs (renames)
    moved_to: str | None
    silenced: str | None  # full view: "silence abc until ..." covering it now
    acked_by: str | None  # full view: who acknowledged its open outage
    last_probe_at: float | None


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts by status over every account this viewer may see (unfiltered)."""

    counts: Mapping[str, int]
    total: int
    protected_problems: int

    @property
    def headline(self) -> str:
        return headline(self.counts, self.total, self.protected_problems)


def headline(counts: Mapping[str, int], total: int, protected_problems: int) -> str:
    """One sentence for the top of the page (also sent with live updates)."""
    if total == 0:
        return "No accounts are watched."
    trouble = [f"{counts[s]} {s}" for s in ("down", "suspect", "blind") if counts.get(s)]
    if not trouble:
        if counts.get("unknown"):
            return (f"No trouble seen: {counts.get('up', 0)} of {total} accounts up, "
                    f"{counts['unknown']} not checked yet.")
        return f"All {total} accounts are up."
    protected = (f", {protected_problems} of them protected" if protected_problems else "")
    return f"Trouble: {', '.join(trouble)}{protected} (of {total} accounts)."


def _rank(watched: Watched) -> tuple[bool, int, str, str]:
    """Protected first, then the worst status first, then by name."""
    st = watched.state
    return (not watched.config.protected, text.STATUS_RANK[text.status_of(st)],
            watched.key.platform, watched.key.handle)


def _matches(watched: Watched, flt: Filter, needle: str) -> bool:
    key = watched.key
    if flt.platform and key.platform != flt.platform:
        return False
    if flt.state and text.status_of(watched.state) != flt.state:
        return False
    if needle:
        current = watched.current_handle or ""
        return needle in key.handle.casefold() or needle in current.casefold()
    return True


def visible_accounts(monitor: UiMonitor, viewer: Viewer, scope: PublicScope) -> list[Watched]:
    """Every account this viewer may see."""
    if viewer.full:
        return list(monitor.accounts.values())
    keys = scope.keys(monitor.config, monitor.accounts)
    return [w for k, w in monitor.accounts.items() if k in keys]


def visible_platforms(monitor: UiMonitor, viewer: Viewer, scope: PublicScope) -> list[str]:
    """The platforms the filter offers: the public view names only those it shows."""
    if viewer.full:
        return sorted(monitor.config.platforms)
    return sorted({key.platform for key in scope.keys(monitor.config, monitor.accounts)})


def summarise(accounts: Iterable[Watched]) -> Summary:
    counts = dict.fromkeys(text.STATUSES, 0)
    total = protected_problems = 0
    for watched in accounts:
        status = text.status_of(watched.state)
        counts[status] += 1
        total += 1
        if watched.config.protected and status in text.PROBLEMS:
            protected_problems += 1
    return Summary(counts, total, protected_problems)


def row_of(monitor: UiMonitor, watched: Watched, viewer: Viewer, now: float,
           acked: Mapping[int, Outage] | None = None) -> Row:
    st, key = watched.state, watched.key
    status = text.status_of(st)
    reason = text.words(st.reason) if st.reason else ""
    if viewer.full and st.blind and watched.blind_reason:
        blind = f"no trusted answer: {text.words(watched.blind_reason)}"
        reason = f"{reason}; {blind}" if reason else blind
    elif st.blind and status != "blind":
        reason = f"{reason}; no trusted answer lately" if reason else "no trusted answer lately"
    current = watched.current_handle
    silenced = acked_by = None
    if viewer.full:
        covered = silenced_now(monitor, watched.config, now)
        if covered is not None:
            silenced = covered.describe()
        outage = (acked or {}).get(st.outage_id) if st.outage_id is not None else None
        if outage is not None and outage.acked_at is not None:
            acked_by = outage.acked_by or "someone"
    return Row(platform=key.platform, handle=key.handle,
               href=text.account_path(key.platform, key.handle), status=status,
               state=st.state.value, label=text.STATUS_LABEL[status], reason=reason,
               since=st.since, protected=watched.config.protected,
               current_handle=current if current and current != key.handle else None,
               moved_to=watched.moved_to, silenced=silenced, acked_by=acked_by,
               last_probe_at=watched.last_probe_at)


# ----------------------------------------------------------------- outages


@dataclass(frozen=True, slots=True)
class OutageRow:
    """One outage with its honest bounds: it began after ``began_after`` (the last present
    sighting) and by ``began_by`` (the first absent one), and ended after ``ended_after``
    and by ``ended_by``."""

    id: int
    platform: str
    handle: str
    href: str
    reason: str
    open: bool
    began_after: float | None
    began_by: float
    confirmed_at: float
    ended_after: float | None
    ended_by: float | None
    duration: str  # "between 3 min and 5 min", "ongoing: at least 12 min (at most 14 min)"
    acked_at: float | None = None  # full view only, like the two below
    acked_by: str | None = None
    ack_comment: str | None = None


def outage_row(outage: Outage, viewer: Viewer, now: float,
               latest_absent: float | None = None) -> OutageRow:
    """``latest_absent``: the account's newest absent sighting, for an open outage (the row
    itself records sightings up to its confirmation only)."""
    key = outage.key
    is_open = outage.recovered_at is None
    if is_open:
        seen_gone = max(t for t in (outage.last_seen_absent_at, outage.confirmed_at,
                                    latest_absent, outage.first_seen_absent_at)
                        if t is not None)
        least = text.span(seen_gone - outage.first_seen_absent_at)
        if outage.last_seen_present_at is None:
            duration = (f"ongoing: at least {least} so far (never seen present before: it "
                        "may have begun earlier)")
        else:
            most = text.span(now - outage.last_seen_present_at)
            duration = f"ongoing: at least {least}, at most {most} so far"
    else:
        low, high = outage.duration_bounds or (0.0, 0.0)
        lo_text, hi_text = text.span(low), text.span(high)
        duration = f"about {lo_text}" if lo_text == hi_text else (
            f"between {lo_text} and {hi_text}")
        if outage.last_seen_present_at is None:
            duration += " (never seen present before it: it may have begun earlier)"
    ack = viewer.full and outage.acked_at is not None
    return OutageRow(id=outage.id, platform=key.platform, handle=key.handle,
                     href=text.account_path(key.platform, key.handle),
                     reason=text.words(outage.reason), open=is_open,
                     began_after=outage.last_seen_present_at,
                     began_by=outage.first_seen_absent_at, confirmed_at=outage.confirmed_at,
                     ended_after=None if is_open else (outage.last_seen_absent_at
                                                       or outage.first_seen_absent_at),
                     ended_by=outage.recovered_at, duration=duration,
                     acked_at=outage.acked_at if ack else None,
                     acked_by=outage.acked_by if ack else None,
                     ack_comment=outage.ack_comment if ack else None)


def _latest_absent(monitor: UiMonitor, outage: Outage) -> float | None:
    watched = monitor.accounts.get(outage.key)
    if watched is None or watched.state.outage_id != outage.id:
        return None
    return watched.state.last_absent_at


# ----------------------------------------------------------------- silences


@dataclass(frozen=True, slots=True)
class SilenceRow:
    """A silence or maintenance window (full view only: its comment and author are
    people's words)."""

    kind: str  # "silence" | "maintenance window"
    id: str
    state: str  # "active" | "pending"
    matchers: str
    starts_at: float
    ends_at: float
    by: str
    comment: str


def silence_rows(monitor: UiMonitor, now: float, labels: Mapping[str, str] | None = None
                 ) -> list[SilenceRow]:
    """Active and pending silences and active maintenance windows, soonest end first;
    ``labels``: only those that cover an account with these labels."""
    rows: list[SilenceRow] = []
    silences: Iterable[Silence] = monitor.silencing.silences.values()
    for s in silences:
        if s.state(now) == "expired":
            continue
        if labels is not None and not all(m.matches(labels) for m in s.matchers):
            continue
        rows.append(SilenceRow("silence", s.id, s.state(now),
                               ", ".join(str(m) for m in s.matchers), s.starts_at,
                               s.ends_at, s.created_by, s.comment))
    for window in monitor.silencing.windows:
        occurrence = window.active_at(now)
        if occurrence is None or (labels is not None and not window.matches(labels)):
            continue
        rows.append(SilenceRow("maintenance window", window.name, "active",
                               ", ".join(window.matchers), occurrence[0], occurrence[1],
                               "config", window.comment))
    return sorted(rows, key=lambda r: (r.state != "active", r.ends_at))


# ----------------------------------------------------------------- platform health


@dataclass(frozen=True, slots=True)
class PlatformRow:
    """One platform's health (full view only)."""

    name: str
    watched: int
    counts: Mapping[str, int]
    anomaly_since: float | None
    rate_limited: int  # accounts whose latest answer was "rate limited"
    rate_now: float | None  # requests/s in force, when the platform slowed us below...
    rate_configured: float  # ...what the config allows
    lag: float  # seconds the most overdue account is past due
    overdue: int
    behind: bool  # lag beyond the platform's shortest interval (the SchedulerLagging alert)
    availability: str | None = None  # "99.953% to 99.990%" over 30 days, when known

    @property
    def pace(self) -> str | None:
        """The request rate when the platform's own budget headers slowed it (normal for
        platforms that announce their budget, so a note, not a trouble)."""
        if self.rate_now is None:
            return None
        return (f"pacing {self.rate_now:.3g}/s of {self.rate_configured:g}/s, as its "
                "rate-limit headers allow")

    @property
    def troubles(self) -> list[str]:
        """What is wrong, in words; empty when all is well."""
        found = []
        if self.anomaly_since is not None:
            found.append("anomaly: mass vanishing, pages held")
        if self.counts.get("blind"):
            found.append(f"{self.counts['blind']} blind")
        if self.rate_limited:
            found.append(f"rate limited ({self.rate_limited} answers)")
        if self.behind:
            found.append(f"scheduler {text.span(self.lag)} behind")
        return found


def _latest_was_rate_limited(watched: Watched) -> bool:
    err = watched.last_error
    return (err is not None and err.result is Result.ERROR
            and err.error is ErrorKind.RATE_LIMITED and err.at == watched.last_probe_at)


def platform_rows(monitor: UiMonitor, accounts: Sequence[Watched],
                  availability: Mapping[str, str] | None = None) -> list[PlatformRow]:
    counts: dict[str, dict[str, int]] = {name: dict.fromkeys(text.STATUSES, 0)
                                         for name in monitor.config.platforms}
    limited: dict[str, int] = dict.fromkeys(monitor.config.platforms, 0)
    for watched in accounts:
        platform = watched.key.platform
        counts.setdefault(platform, dict.fromkeys(text.STATUSES, 0))
        counts[platform][text.status_of(watched.state)] += 1
        if _latest_was_rate_limited(watched):
            limited[platform] = limited.get(platform, 0) + 1
    lag = monitor.scheduler.lag()
    anomalies = monitor.decisions.holds.anomalies if monitor.decisions is not None else {}
    intervals = monitor.watchlist.intervals
    rows = []
    for name, spec in sorted(monitor.config.platforms.items()):
        worst, overdue = lag.get(name, (0.0, 0))
        in_force = (monitor.scheduler.rate(name) if name in monitor.scheduler.lanes
                    else spec.rate_per_second)
        interval = intervals.get(name)
        rows.append(PlatformRow(
            name=name, watched=sum(counts[name].values()), counts=counts[name],
            anomaly_since=anomalies.get(name), rate_limited=limited.get(name, 0),
            rate_now=in_force if in_force < spec.rate_per_second else None,
            rate_configured=spec.rate_per_second, lag=worst, overdue=overdue,
            behind=interval is not None and worst > interval,
            availability=(availability or {}).get(name)))
    return rows


# ----------------------------------------------------------------- the overview


@dataclass(frozen=True, slots=True)
class Overview:
    viewer: Viewer
    title: str
    now: float
    filter: Filter
    summary: Summary
    rows: list[Row]
    pages: Pages
    platforms: list[str]  # for the filter's choices
    health: list[PlatformRow]  # full view only (else empty)
    open_outages: list[OutageRow]  # the newest OPEN_SHOWN
    open_total: int  # how many are open (of those this viewer may see; at most OPEN_MAX)
    recent_outages: list[OutageRow]
    silences: list[SilenceRow]  # full view only
    monitor_blind_since: float | None  # full view only
    problems: Mapping[str, str] = field(default_factory=dict)  # not ready: why (full only)


def overview(monitor: UiMonitor, viewer: Viewer, flt: Filter, now: float,
             scope: PublicScope, availability: Mapping[str, str] | None = None) -> Overview:
    """``availability``: each platform's 30-day figure as text, when known."""
    accounts = visible_accounts(monitor, viewer, scope)
    summary = summarise(accounts)
    needle = flt.q.casefold()
    chosen = [w for w in accounts if _matches(w, flt, needle)] if flt.active else accounts
    chosen.sort(key=_rank)
    count = max(1, -(-len(chosen) // PAGE_SIZE))
    number = min(flt.page, count)
    start = (number - 1) * PAGE_SIZE
    shown = chosen[start:start + PAGE_SIZE]
    open_rows, open_total, recent_rows, by_id = _outages(monitor, viewer, scope, now)
    rows = [row_of(monitor, w, viewer, now, by_id) for w in shown]
    pages = Pages(number=number, count=count, first=start + 1 if shown else 0,
                  last=start + len(shown), total=len(chosen),
                  prev_link=flt.link(number - 1) if number > 1 else None,
                  next_link=flt.link(number + 1) if number < count else None)
    full = viewer.full
    public = monitor.config.ui.public
    health = platform_rows(monitor, accounts, availability) if full else []
    blind_since = (monitor.decisions.holds.own_blind
                   if full and monitor.decisions is not None else None)
    return Overview(
        viewer=viewer, title="Account status" if full else public.title, now=now,
        filter=Filter(flt.q, flt.platform, flt.state, number), summary=summary, rows=rows,
        pages=pages, platforms=visible_platforms(monitor, viewer, scope), health=health,
        open_outages=open_rows, open_total=open_total, recent_outages=recent_rows,
        silences=silence_rows(monitor, now) if full else [],
        monitor_blind_since=blind_since,
        problems=monitor.not_ready() if full else {})


def _outages(monitor: UiMonitor, viewer: Viewer, scope: PublicScope, now: float
             ) -> tuple[list[OutageRow], int, list[OutageRow], dict[int, Outage]]:
    """The newest open outages, how many are open, and the recently ended ones, of the
    accounts this viewer may see; plus the open ones by id (for the rows' ack marks)."""
    store = monitor.store
    if store is None:
        return [], 0, [], {}
    keys = None if viewer.full else scope.keys(monitor.config, monitor.accounts)
    open_ones = [o for o in store.outages(limit=OPEN_MAX, open_only=True)
                 if keys is None or o.key in keys]
    recent = [o for o in store.outages(limit=OUTAGES_SHOWN * 5)
              if o.recovered_at is not None and o.recovered_at >= now - RECENT_SECONDS
              and (keys is None or o.key in keys)][:OUTAGES_SHOWN]
    shown = [outage_row(o, viewer, now, _latest_absent(monitor, o))
             for o in open_ones[:OPEN_SHOWN]]
    return (shown, len(open_ones), [outage_row(o, viewer, now) for o in recent],
            {o.id: o for o in open_ones})


# ----------------------------------------------------------------- the account page


@dataclass(frozen=True, slots=True)
class TimelineRow:
    at: float
    kind: str  # "transition", "vanished", "recovered", ...
    old_state: str
    new_state: str
    reason: str
    evidence: str | None  # full view only: what the platform answered


@dataclass(frozen=True, slots=True)
class LastError:
    kind: str
    evidence: str
    at: float


@dataclass(frozen=True, slots=True)
class AccountPage:
    viewer: Viewer
    title: str
    now: float
    row: Row
    profile_url: str | None
    account_id: str | None  # full view only, like everything down to last_error
    team: str | None
    owner: str | None
    labels: Mapping[str, str]
    source: str | None
    blind_reason: str | None
    last_error: LastError | None
    last_evidence: TimelineRow | None  # the newest transition carrying evidence
    timeline: list[TimelineRow]
    timeline_more: bool  # older transitions exist beyond the shown ones
    outages: list[OutageRow]
    silences: list[SilenceRow]
    availability: reporting.AccountFigures | None


def account_transitions(store: Store, key: AccountKey, limit: int) -> list[dict[str, Any]]:
    """The account's transitions, newest first (index ``transitions_by_account``)."""
    return store.account_transitions(key, limit=limit)


def _timeline_row(row: Mapping[str, Any], full: bool) -> TimelineRow:
    details = row.get("details") or {}
    evidence = details.get("evidence") if isinstance(details, dict) else None
    return TimelineRow(at=float(row["at"]), kind=str(row["kind"]),
                       old_state=str(row["old_state"]), new_state=str(row["new_state"]),
                       reason=text.words(row.get("reason")),
                       evidence=str(evidence) if full and evidence else None)


def _timeline(rows: Sequence[Mapping[str, Any]], full: bool) -> list[TimelineRow]:
    """The rows as a person reads them: a decision that both changed the state and said
    why (``vanished``, ``recovered``) is stored as two rows; only the telling one stays."""
    told = {(r["at"], r["old_state"], r["new_state"]) for r in rows if r["kind"] != "transition"}
    return [_timeline_row(r, full) for r in rows
            if r["kind"] != "transition" or (r["at"], r["old_state"], r["new_state"]) not in told]


def account_page(monitor: UiMonitor, viewer: Viewer, key: AccountKey, now: float,
                 scope: PublicScope, availability: reporting.AccountFigures | None = None
                 ) -> AccountPage | None:
    """None when the account is not watched, or not one this viewer may see (the same
    answer, so the public view does not tell which accounts exist)."""
    watched = monitor.accounts.get(key)
    if watched is None:
        return None
    if not viewer.full and key not in scope.keys(monitor.config, monitor.accounts):
        return None
    full, store = viewer.full, monitor.store
    acct = watched.config
    outages = store.outages(limit=ACCOUNT_OUTAGES_MAX, platform=key.platform,
                            handle=key.handle) if store is not None else []
    open_by_id = {o.id: o for o in outages if o.recovered_at is None}
    row = row_of(monitor, watched, viewer, now, open_by_id)
    raw = account_transitions(store, key, TIMELINE_MAX + 1) if store is not None else []
    timeline = _timeline(raw[:TIMELINE_MAX], full)
    spec = monitor.config.platforms.get(key.platform)
    err = watched.last_error
    labels = None
    if full:
        labels = subject_labels(key.platform, key.handle, acct.team, acct.protected,
                                acct.labels)
    latest = watched.state.last_absent_at
    return AccountPage(
        viewer=viewer, title=f"{key.handle} on {key.platform}", now=now, row=row,
        profile_url=text.profile_link(spec.profile_url if spec else None, key.handle,
                                      watched.account_id),
        account_id=watched.account_id if full else None,
        team=acct.team if full else None, owner=acct.owner if full else None,
        labels=dict(acct.labels) if full else {}, source=watched.source if full else None,
        blind_reason=text.words(watched.blind_reason) if full and
        watched.state.blind and watched.blind_reason else None,
        last_error=LastError(text.words(err.error), err.evidence, err.at)
        if full and err is not None and err.error is not None else None,
        last_evidence=next((t for t in timeline if t.evidence), None) if full else None,
        timeline=timeline, timeline_more=len(raw) > TIMELINE_MAX,
        outages=[outage_row(o, viewer, now, latest if o.id == watched.state.outage_id
                            and watched.state.state is State.DOWN else None)
                 for o in outages],
        silences=silence_rows(monitor, now, labels) if labels is not None else [],
        availability=availability)
