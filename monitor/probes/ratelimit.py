"""Platform rate-limit headers, normalised into one :class:`~monitor.model.RateLimit`.

Every platform names and scales its budget headers its own way (docs/platforms.md):
the reset is epoch seconds on X, GitHub, Bluesky and Twitch, ISO-8601 on Mastodon and
*seconds until* the reset on Reddit. The parsers are pure (``now`` is passed in, for the
relative forms) and never raise: a garbage value becomes a ``None`` field, and an answer
without any of the platform's headers gives ``None``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from multidict import CIMultiDict, CIMultiDictProxy

from monitor.model import RateLimit

Headers = Mapping[str, str]
# One platform's parser: (an answer's headers, now) -> its budget, None without any header.
RateLimitReader = Callable[[Headers, float], RateLimit | None]
_ResetParser = Callable[[str | None, float], float | None]  # (header value, now) -> epoch s

# Epoch seconds past this are not a reset time but a unit mix-up (milliseconds, say).
_EPOCH_MAX = 1e11


def x_rate_limit(headers: Headers, now: float) -> RateLimit | None:
    """X API v2: ``x-rate-limit-limit/-remaining/-reset`` (reset in epoch seconds)."""
    return _budget(headers, now, "x-rate-limit-", _epoch)


def github_rate_limit(headers: Headers, now: float) -> RateLimit | None:
    """GitHub: ``x-ratelimit-limit/-remaining/-reset`` (epoch s) and, for secondary limits,
    ``retry-after`` (seconds)."""
    return _budget(headers, now, "x-ratelimit-", _epoch)


def mastodon_rate_limit(headers: Headers, now: float) -> RateLimit | None:
    """Mastodon: ``X-RateLimit-Limit/-Remaining/-Reset``, the reset in **ISO-8601**
    (``2024-05-01T12:05:00.000000Z``)."""
    return _budget(headers, now, "x-ratelimit-", _iso8601)


def reddit_rate_limit(headers: Headers, now: float) -> RateLimit | None:
    """Reddit: ``X-Ratelimit-Used/-Remaining/-Reset``; the reset is **seconds until** it, and
    the remaining count may be a float string (``"598.0"``). Reddit sends no limit header:
    used + remaining is the period's limit."""
    found = _budget(headers, now, "x-ratelimit-", _seconds_from_now)
    if found is None or found.limit is not None:
        return found
    used = _count(header(headers, "x-ratelimit-used"))
    remaining = _float(header(headers, "x-ratelimit-remaining"))
    if used is None or remaining is None:
        return found
    return dataclasses.replace(found, limit=used + int(remaining))


def bluesky_rate_limit(headers: Headers, now: float) -> RateLimit | None:
    """Bluesky: ``RateLimit-Limit/-Remaining/-Reset`` (the IETF draft names; epoch s)."""
    return _budget(headers, now, "ratelimit-", _epoch)


def twitch_rate_limit(headers: Headers, now: float) -> RateLimit | None:
    """Twitch Helix: ``Ratelimit-Limit/-Remaining/-Reset`` (epoch s), as Bluesky."""
    return _budget(headers, now, "ratelimit-", _epoch)


def retry_after(value: str | None, now: float) -> float | None:
    """``Retry-After`` as seconds from ``now``: delta-seconds or an HTTP-date (RFC 9110)."""
    seconds = _float(value)
    if seconds is not None:
        return seconds
    if value is None:
        return None
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)


def header(headers: Headers, name: str) -> str | None:
    """A header by lower-case ``name``, case-insensitively even in a plain dict."""
    value = headers.get(name)
    if value is None and not isinstance(headers, CIMultiDictProxy | CIMultiDict):
        for key, candidate in headers.items():
            if key.lower() == name:
                return candidate
    return value


# --------------------------------------------------------------------------- parsing


def _budget(headers: Headers, now: float, prefix: str,
            reset_at: _ResetParser) -> RateLimit | None:
    limit = header(headers, prefix + "limit")
    remaining = header(headers, prefix + "remaining")
    reset = header(headers, prefix + "reset")
    after = header(headers, "retry-after")
    if limit is None and remaining is None and reset is None and after is None:
        return None
    return RateLimit(remaining=_count(remaining), limit=_count(limit),
                     reset_at=reset_at(reset, now), retry_after=retry_after(after, now))


def _float(value: str | None) -> float | None:
    """A finite, non-negative number, or None."""
    if value is None:
        return None
    try:
        number = float(value.strip())
    except (ValueError, AttributeError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _count(value: str | None) -> int | None:
    """A request count; Reddit sends ``"598.0"``, so a float string counts too."""
    number = _float(value)
    return None if number is None else int(number)


def _epoch(value: str | None, now: float) -> float | None:
    number = _float(value)
    return number if number is not None and 0 < number < _EPOCH_MAX else None


def _seconds_from_now(value: str | None, now: float) -> float | None:
    number = _float(value)
    return None if number is None else now + number


def _iso8601(value: str | None, now: float) -> float | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except (ValueError, AttributeError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()
