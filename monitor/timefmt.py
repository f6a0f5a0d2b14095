"""How times and durations are written for people and for pagers: one place, one style.

Timestamps are epoch seconds everywhere inside the monitor; these functions are the only
place they become text, always in UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: float | None) -> str | None:
    """``2017-11-02T23:53:00Z`` (seconds), or None: what notifications carry."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC).isoformat(
        timespec="seconds").replace("+00:00", "Z")


def iso_ms(ts: float) -> str:
    """``2017-11-02T23:53:00.123Z``: for APIs that keep milliseconds (Alertmanager)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def when(ts: float | None, missing: str = "-") -> str:
    """``2017-11-02 23:53:00Z``: for tables a person reads (``history``)."""
    return missing if ts is None else datetime.fromtimestamp(ts, UTC).strftime(
        "%Y-%m-%d %H:%M:%SZ")


def span(seconds: float | None, missing: str = "unknown") -> str:
    """``1h02m03s`` or ``11m12s``: a duration, to the second."""
    if seconds is None:
        return missing
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"
