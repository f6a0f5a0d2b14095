"""YouTube Data API v3 ``channels.list``: by channel id once known, by ``forHandle`` before.

Shapes: docs/platforms.md, "YouTube Data API v3".
The platform's ``token`` is the API **key**, sent as the ``key=`` query parameter: it is
never sent as a header and never put in evidence (the URL never is). A channel that is gone
answers 200 with no ``items`` [I]; quota exhaustion is 403 ``quotaExceeded`` (an error).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import aiohttp

from monitor.model import AbsentReason, ErrorKind, Observation
from monitor.probes.base import Answer, HttpProbe, ProbeError, Target, classified, status_error
from monitor.probes.evidence import json_object

if TYPE_CHECKING:  # for types only: monitor.config imports the probe registry
    from monitor.config import PlatformConfig

LIST_KIND = "youtube#channelListResponse"
# Google's reasons for a spent budget (youtube.quota and usageLimits domains).
_THROTTLE_REASONS = frozenset({"quotaExceeded", "rateLimitExceeded", "userRateLimitExceeded",
                               "dailyLimitExceeded"})
_KEY_REASONS = frozenset({"keyInvalid", "keyExpired", "API_KEY_INVALID", "API_KEY_EXPIRED"})


class YouTubeProbe(HttpProbe):
    """One ``channels.list`` call (1 quota unit) per check."""

    name = "youtube"

    def __init__(self, platform: PlatformConfig, session: aiohttp.ClientSession,
                 *, timeout: float, max_body_bytes: int) -> None:
        super().__init__(platform, session, timeout=timeout, max_body_bytes=max_body_bytes)
        # No Authorization header: the token is an API key and travels as key=.
        self._headers = {"User-Agent": platform.user_agent, "Accept": "application/json"}
        self._key = platform.token.get_secret_value() if platform.token is not None else None

    def request(self, target: Target) -> tuple[str, str, dict[str, str]]:
        if not self._key:
            raise ProbeError(ErrorKind.AUTH, "no YouTube API key (set the platform's token)")
        params = {"part": "id,snippet"}
        if target.account_id is not None:
            params["id"] = target.account_id
        else:
            params["forHandle"] = "@" + target.handle.removeprefix("@")
        params["key"] = self._key
        query = urlencode(params, quote_via=quote, safe="@,")
        return "GET", f"{self.platform.base_url}/youtube/v3/channels?{query}", self._headers.copy()

    def classify(self, answer: Answer, target: Target, at: float) -> Observation:
        obs = classify_channels(answer, target, at)
        if self._key and self._key in obs.evidence:  # belt and braces: never leak the key
            obs = replace(obs, evidence=obs.evidence.replace(self._key, "<key>"))
        return obs


def classify_channels(answer: Answer, target: Target, at: float) -> Observation:
    """Pure: what one ``channels.list`` answer means (the quota is not in its headers)."""
    return classified(answer, at, _classify_channels)


def _classify_channels(answer: Answer, at: float) -> Observation:
    status = answer.status
    if status == 200:
        return _listing(answer.json(), at)
    reasons = _reasons(answer)
    shown = f"HTTP {status} {'/'.join(sorted(reasons))}" if reasons else f"HTTP {status}"
    if status == 403:
        if reasons & _THROTTLE_REASONS:
            raise ProbeError(ErrorKind.RATE_LIMITED, shown)
        # forbidden, accessNotConfigured, ipRefererBlocked, unregistered callers: our key.
        raise ProbeError(ErrorKind.AUTH, shown)
    if status == 400 and reasons & _KEY_REASONS:
        raise ProbeError(ErrorKind.AUTH, shown)
    error = status_error(answer)
    raise ProbeError(error.kind if error else ErrorKind.UNEXPECTED, shown)


def _listing(body: Any, at: float) -> Observation:
    if not isinstance(body, dict) or body.get("kind") != LIST_KIND:
        raise ProbeError(ErrorKind.PARSE, "HTTP 200, not a channelListResponse")
    items = body.get("items") or []
    if not isinstance(items, list):
        raise ProbeError(ErrorKind.PARSE, "HTTP 200, items is not a list")
    if not items:
        # Terminated, deleted, or a handle nobody holds: no items at all [I].
        return Observation.absent(at, AbsentReason.NOT_FOUND,
                                  "HTTP 200, no items (channel gone or handle unused)")
    channel = items[0]
    channel_id = channel.get("id") if isinstance(channel, dict) else None
    if not isinstance(channel_id, str) or not channel_id:
        raise ProbeError(ErrorKind.PARSE, "HTTP 200, channel without an id")
    snippet = channel.get("snippet")
    custom_url = snippet.get("customUrl") if isinstance(snippet, dict) else None
    return Observation.present(at, f"HTTP 200 id={channel_id}", account_id=channel_id,
                               handle=custom_url if isinstance(custom_url, str) else None)


def _reasons(answer: Answer) -> set[str]:
    """Google's error reasons (``error.errors[].reason`` and ``error.details[].reason``).

    Only reasons go into evidence: Google's messages are HTML-laden and long.
    """
    error = json_object(answer).get("error")
    if not isinstance(error, dict):
        return set()
    found: set[str] = set()
    for key in ("errors", "details"):
        entries = error.get(key)
        for entry in entries if isinstance(entries, list) else []:
            reason = entry.get("reason") if isinstance(entry, dict) else None
            if isinstance(reason, str) and reason.isidentifier():
                found.add(reason)
    return found
