"""How the UI writes things for people: times (UTC and relative), durations, states, reasons,
links. Pure: no clock (``now`` is passed), no I/O.

Written for the comms lead as much as for the SRE: plain words ("Down", "suspended"), times
in UTC spelt out, with how long ago beside them; the same rules are mirrored in
static/app.js for what the live stream updates.
"""

from __future__ import annotations

import math
import urllib.parse
from datetime import UTC, datetime

from monitor import timefmt
from monitor.model import AccountState, State

# What a row's status can be: the state, except that a blind account that is neither down
# nor suspect shows as blind (we cannot tell, which is its own trouble).
STATUSES = ("down", "suspect", "blind", "unknown", "up")
STATUS_RANK = {name: rank for rank, name in enumerate(STATUSES)}
STATUS_LABEL = {"down": "Down", "suspect": "Suspect", "blind": "Blind", "unknown": "Unknown",
                "up": "Up"}
STATUS_MEANING = {
    "down": "the platform says the account is gone, confirmed by repeated checks",
    "suspect": "the platform said the account is gone; we are checking again before "
               "calling it down",
    "blind": "no answer we can trust for longer than the account's staleness bound: we "
             "cannot tell whether it is there",
    "unknown": "not checked yet since the monitor started watching it",
    "up": "the platform shows the account",
}
PROBLEMS = frozenset({"down", "suspect", "blind"})

# Characters that change the direction of the text around them (Unicode bidi controls):
# shown inside <bdi> they cannot reorder our text, and the page also says they are there.
DIRECTION_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
                               "\u2066\u2067\u2068\u2069")
PROFILE_SCHEMES = ("http", "https")


def status_of(st: AccountState) -> str:
    """One word for a row: down and suspect win over blind (they are what pages say)."""
    if st.state in (State.DOWN, State.SUSPECT):
        return st.state.value
    return "blind" if st.blind else st.state.value


def words(value: object | None) -> str:
    """``not_found`` -> ``not found``; None -> ``""``."""
    return "" if value is None else str(value).replace("_", " ")


def utc(ts: float | None, missing: str = "never", *, short: bool = False) -> str:
    """``2017-11-02 23:53:00 UTC``: a time anyone can quote (``short``: to the minute, for
    narrow columns)."""
    if ts is None or not math.isfinite(ts):
        return missing
    return datetime.fromtimestamp(ts, UTC).strftime(
        "%Y-%m-%d %H:%M UTC" if short else "%Y-%m-%d %H:%M:%S UTC")


def iso(ts: float | None) -> str:
    """The ``datetime`` attribute of ``<time>`` (machine-readable, UTC)."""
    if ts is None or not math.isfinite(ts):
        return ""
    return timefmt.iso(ts) or ""


def span(seconds: float | None, missing: str = "unknown") -> str:
    """A duration in words, to two units: ``45 s``, ``12 min``, ``3 h 5 min``, ``4 days 2 h``."""
    if seconds is None or not math.isfinite(seconds):
        return missing
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min" if minutes >= 10 or not secs else f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} days {hours} h" if hours else f"{days} days"


def relative(ts: float | None, now: float, missing: str = "never") -> str:
    """``12 min ago``, ``in 3 h``, ``just now``: how long ago, for a person at a glance."""
    if ts is None or not math.isfinite(ts):
        return missing
    delta = now - ts
    if abs(delta) < 30:
        return "just now"
    return f"{span(abs(delta))} ago" if delta > 0 else f"in {span(-delta)}"


def has_direction_controls(text: str | None) -> bool:
    return bool(text) and not DIRECTION_CONTROLS.isdisjoint(text or "")


def flat(text: str) -> str:
    """``text`` for places no <bdi> can go (the page title): each direction control
    becomes U+FFFD, visible, instead of reordering what follows it."""
    if not has_direction_controls(text):
        return text
    return "".join("\ufffd" if ch in DIRECTION_CONTROLS else ch for ch in text)


def account_path(platform: str, handle: str) -> str:
    """Our own route for one account, each part quoted whole (a ``/`` or ``?`` in a handle
    stays part of the handle)."""
    return (f"/accounts/{urllib.parse.quote(platform, safe='')}/"
            f"{urllib.parse.quote(handle, safe='')}")


def profile_link(template: str | None, handle: str, account_id: str | None) -> str | None:
    """The account's public page from the platform's ``profile_url`` template, or None.

    The handle and id are quoted whole before they go in, and the result is linked only
    when it is an absolute http(s) URL with a host: a template (or a handle) that makes a
    ``javascript:`` or ``data:`` URL, or a relative one, is not linked at all.
    """
    if not template:
        return None
    try:
        url = template.format(handle=urllib.parse.quote(handle, safe=""),
                              id=urllib.parse.quote(account_id or "", safe=""))
        parts = urllib.parse.urlsplit(url)
    except (ValueError, KeyError, IndexError):
        return None
    if parts.scheme.lower() not in PROFILE_SCHEMES or not parts.hostname:
        return None
    if any(ch.isspace() or not ch.isprintable() for ch in url):
        return None
    return url
