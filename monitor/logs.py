"""structlog set-up: JSON lines on stdout for machines, a readable console for humans."""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable
from typing import Literal

import structlog

LogFormat = Literal["auto", "json", "console"]


_min_level = logging.DEBUG  # what configure() set (until it runs, every line goes out)


def enabled(level: int) -> bool:
    """Whether a line at ``level`` goes anywhere: asked by a caller with a flood of debug
    lines before it builds each one (a structlog call that goes nowhere still costs ~4 us)."""
    return level >= _min_level


def configure(fmt: LogFormat = "auto", level: str = "info") -> None:
    """JSON when stdout is not a TTY (containers, CI), console colours when it is."""
    global _min_level
    _min_level = logging.getLevelNamesMapping()[level.upper()]
    use_console = fmt == "console" or (fmt == "auto" and sys.stdout.isatty())
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=False,
    )


class Sampled:
    """At most ``limit`` lines of one kind per ``period`` seconds at their own level; the
    rest go to debug and are counted, for one summary line per period (:meth:`withheld`).

    A fresh watchlist of a million accounts decides each one's first sighting within a
    minute: a million ``transition`` lines of unknown -> up would bury the lines that
    matter, and write ~300 MB of log. The first ``limit`` still show what happens."""

    def __init__(self, limit: int, period: float, clock: Callable[[], float]):
        self.limit, self.period, self.clock = limit, period, clock
        self._started = -math.inf  # when the current period began
        self._logged = 0  # lines let through in it
        self._withheld = 0  # lines sent to debug in it

    def take(self) -> bool:
        """True when this line may go out at its own level; else it is counted."""
        now = self.clock()
        if now - self._started >= self.period and not self._withheld:
            self._started, self._logged = now, 0
        if self._logged < self.limit:
            self._logged += 1
            return True
        self._withheld += 1
        return False

    def withheld(self) -> int:
        """Once the period is over: how many lines it sent to debug (0: none, or not yet
        over), and a new period begins."""
        now = self.clock()
        if not self._withheld or now - self._started < self.period:
            return 0
        count, self._withheld = self._withheld, 0
        self._started, self._logged = now, 0
        return count
