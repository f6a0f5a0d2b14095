"""The availability figures the UI shows, from :mod:`monitor.reports`, as text and day cells.

Every figure is a pair (lower to upper availability: the truth lies between, see
monitor/availability.py), written with :func:`monitor.availability.bounds_text`; "no data"
when nothing was observed, never 100 %. The 90-day bar has one cell per UTC day, with its
status in words as well as in colour:

* ``down``: certainly down for part of the day (seen absent at both ends of a stretch);
* ``maybe``: possibly down (between a last present and a first absent sighting, or the
  monitor was not running for part of the day);
* ``unwatched``: not watched at all that day (before the account was added, or the monitor
  was stopped all day);
* ``up``: watched, and no outage touched it.

An account's figures come from :mod:`monitor.reports` (the store's outages, first watches and
the gaps between runs); the overview's per-platform figures from the availability gauges
the monitor refreshes once a minute, so a page view never recomputes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from monitor import reports
from monitor.availability import WINDOWS, Availability, bounds_text
from monitor.metrics import Metrics
from monitor.model import AccountKey
from monitor.store import Store
from monitor.ui import text

log = structlog.get_logger("monitor.ui")

PLATFORM_WINDOW = "30d"  # the overview's per-platform figure
DAY_STATUS_TEXT = {"down": "certainly down for part of the day",
                   "maybe": "possibly down for part of the day",
                   "unwatched": "not watched", "up": "up all day"}


@dataclass(frozen=True, slots=True)
class WindowFigure:
    name: str  # "24h", "7d", "30d", "90d"
    bounds: str  # "99.953% to 99.990%", or "no data"
    observed: str  # how long it was watched within the window, in words
    outages: int


@dataclass(frozen=True, slots=True)
class Day:
    day: str  # "2026-05-01" (UTC)
    status: str  # down | maybe | unwatched | up
    text: str  # "2026-05-01: certainly down for part of the day (at least 2 h)"


@dataclass(frozen=True, slots=True)
class AccountFigures:
    windows: list[WindowFigure]
    days: list[Day]  # oldest first

    @property
    def summary(self) -> str:
        """The bar in one sentence (its text equivalent)."""
        if not self.days:
            return "No daily figures yet."
        counts = {s: sum(d.status == s for d in self.days) for s in DAY_STATUS_TEXT}
        parts = [f"{counts['up']} up", f"{counts['down']} certainly down for part of the day",
                 f"{counts['maybe']} possibly down for part of the day",
                 f"{counts['unwatched']} not watched"]
        return f"Last {len(self.days)} days: " + ", ".join(parts) + "."


def _figure(doc: Mapping[str, Any]) -> Availability:
    return Availability(lower=doc.get("lower"), upper=doc.get("upper"),
                        certainly_down=float(doc.get("certainly_down") or 0.0),
                        possibly_down=float(doc.get("possibly_down") or 0.0),
                        observed=float(doc.get("observed") or 0.0),
                        outages=int(doc.get("outages") or 0),
                        unwatched=float(doc.get("unwatched") or 0.0))


def bounds(doc: Mapping[str, Any] | Availability | None) -> str:
    if doc is None:
        return "no data"
    figure = doc if isinstance(doc, Availability) else _figure(doc)
    return "no data" if figure.lower is None else bounds_text(figure)


def day_status(day: Mapping[str, Any]) -> str:
    observed = float(day.get("observed") or 0.0)
    unwatched = float(day.get("unwatched") or 0.0)
    if observed <= 0 or unwatched >= observed:
        return "unwatched"
    if float(day.get("certainly_down") or 0.0) > 0:
        return "down"
    if float(day.get("possibly_down") or 0.0) > 0:
        return "maybe"
    return "up"


def _day_label(value: Any) -> str:
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value, UTC).strftime("%Y-%m-%d")
    return str(value)[:10]


def day_cell(day: Mapping[str, Any]) -> Day:
    status = day_status(day)
    label = _day_label(day.get("day"))
    detail = ""
    if status == "down":
        detail = f" (at least {text.span(float(day.get('certainly_down') or 0.0))})"
    elif status == "maybe":
        detail = f" (at most {text.span(float(day.get('possibly_down') or 0.0))})"
    return Day(label, status, f"{label}: {DAY_STATUS_TEXT[status]}{detail}")


def figures_of(report: Mapping[str, Any]) -> AccountFigures:
    """The UI's figures from :func:`monitor.reports.account_report`'s answer: the windows'
    figures (``availability``: name -> figure JSON) and ``days`` (oldest first)."""
    per_window = report.get("availability") or report.get("windows") or {}
    windows = [WindowFigure(name, bounds(doc), text.span(float(doc.get("observed") or 0.0)),
                            int(doc.get("outages") or 0))
               for name, doc in per_window.items() if isinstance(doc, Mapping)]
    days: Sequence[Any] = report.get("days") or ()
    return AccountFigures(windows, [day_cell(d) for d in days if isinstance(d, Mapping)])


def no_figures() -> AccountFigures:
    """What the page shows while no report can be made: every window "no data"."""
    return AccountFigures([WindowFigure(name, "no data", text.span(0), 0)
                           for name in WINDOWS], [])


def account_figures(store: Store | None, key: AccountKey, now: float,
                    still_absent_at: float | None = None) -> AccountFigures:
    """``still_absent_at``: the open outage's newest absent sighting (the outage row
    records them only up to its confirmation), so the certain part reaches it."""
    if store is None:
        return no_figures()
    try:
        return figures_of(reports.account_report(store, key, now,
                                                 still_absent_at=still_absent_at))
    except Exception as exc:  # a report that fails must not take the page down with it
        log.error("availability report failed", platform=key.platform, exc_info=exc)
        return no_figures()


def platform_figures(metrics: Metrics, window: str = PLATFORM_WINDOW) -> dict[str, str]:
    """Each platform's figure over ``window`` as text, read from the availability gauges
    the monitor refreshes once a minute (``Metrics.refresh_availability``): the overview
    never recomputes them, and shows what /metrics says. No sample: no data yet."""
    bounds_of: dict[str, dict[str, float]] = {}
    for gauge, side in ((metrics.availability_lower, "lower"),
                        (metrics.availability_upper, "upper")):
        for family in gauge.collect():
            for sample in family.samples:
                if sample.labels.get("window") == window:
                    bounds_of.setdefault(sample.labels["platform"], {})[side] = sample.value
    return {platform: bounds({"lower": b.get("lower"), "upper": b.get("upper")})
            for platform, b in bounds_of.items()}
