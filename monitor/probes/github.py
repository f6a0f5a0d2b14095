"""GitHub users: by durable numeric id once known (``/user/{id}``), by login to discover it.

Shapes: docs/platforms.md, "GitHub". Deleted, suspended and never-registered
users are all 404. Rate limits come as 403 **or** 429, so a 403 is never absence: it is a
rate limit when the headers or message say so (``x-ratelimit-remaining: 0``, "rate limit",
or the secondary limit's older "abuse detection mechanism" wording, ``Retry-After`` or not),
else a problem with our credentials.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp

from monitor.model import AbsentReason, ErrorKind, Observation
from monitor.probes.base import Answer, HttpProbe, ProbeError, Target, classified, status_error
from monitor.probes.evidence import json_text, short, with_detail
from monitor.probes.ratelimit import github_rate_limit, header

if TYPE_CHECKING:  # for types only: monitor.config imports the probe registry
    from monitor.config import PlatformConfig

API_VERSION = "2022-11-28"


class GitHubProbe(HttpProbe):
    """One REST call per check; a token (optional) lifts the limit from 60/h to 5,000/h."""

    name = "github"

    def __init__(self, platform: PlatformConfig, session: aiohttp.ClientSession,
                 *, timeout: float, max_body_bytes: int) -> None:
        super().__init__(platform, session, timeout=timeout, max_body_bytes=max_body_bytes)
        # The same for every target: built once, copied per request.
        self._headers = self.base_headers()
        self._headers["Accept"] = "application/vnd.github+json"
        self._headers["X-GitHub-Api-Version"] = API_VERSION

    def request(self, target: Target) -> tuple[str, str, dict[str, str]]:
        base = self.platform.base_url
        if target.account_id is not None:
            url = f"{base}/user/{quote(target.account_id, safe='')}"
        else:
            url = f"{base}/users/{quote(target.handle.removeprefix('@'), safe='')}"
        return "GET", url, self._headers.copy()

    def classify(self, answer: Answer, target: Target, at: float) -> Observation:
        return classify_user(answer, target, at)


def classify_user(answer: Answer, target: Target, at: float) -> Observation:
    """Pure: what one ``/users/{login}`` or ``/user/{id}`` answer means."""
    return classified(answer, at, _classify_user, github_rate_limit)


def _classify_user(answer: Answer, at: float) -> Observation:
    status = answer.status
    if status == 200:
        return _present(answer.json(), at)
    message = json_text(answer, "message")  # GitHub's {"message": ...}
    if status == 404:
        if message == "Not Found":
            return Observation.absent(at, AbsentReason.NOT_FOUND,
                                      "HTTP 404 Not Found (deleted, suspended or never existed)")
        # A 404 without GitHub's body is a proxy or a wrong base_url, not about the account.
        raise ProbeError(ErrorKind.UNEXPECTED, "HTTP 404 without GitHub's 'Not Found' body")
    if status in (403, 429):
        throttle = _throttle(answer, message)
        if throttle is not None:
            raise ProbeError(ErrorKind.RATE_LIMITED, f"HTTP {status} {throttle}")
        if status == 403:
            # Not a rate limit: our token lacks access (SSO, IP allow list, blocked app).
            raise ProbeError(ErrorKind.AUTH, with_detail(f"HTTP {status}", message))
    error = status_error(answer)  # 429, 401 "Bad credentials", 5xx
    if error is None:
        error = ProbeError(ErrorKind.UNEXPECTED, f"HTTP {status}")
    raise ProbeError(error.kind, with_detail(error.evidence, message))


def _present(user: Any, at: float) -> Observation:
    user_id = user.get("id") if isinstance(user, dict) else None
    if not isinstance(user_id, int) or isinstance(user_id, bool):
        raise ProbeError(ErrorKind.PARSE, "HTTP 200, no numeric user id")
    login = user.get("login")
    evidence = f"HTTP 200 id={user_id}"
    if user.get("type") not in (None, "User"):
        evidence += f", type {short(user['type'])}"
    return Observation.present(at, evidence, account_id=str(user_id),
                               handle=login if isinstance(login, str) else None)


def _throttle(answer: Answer, message: str | None) -> str | None:
    """Why a 403/429 is a rate limit (GitHub docs: rate limits for the REST API), or None."""
    if (header(answer.headers, "x-ratelimit-remaining") or "").strip() == "0":
        return "rate limit: x-ratelimit-remaining 0"
    lowered = (message or "").lower()
    if "rate limit" in lowered:
        kind = "secondary rate limit" if "secondary" in lowered else "rate limit"
        return f"{kind}: {short(message or '')}"
    if "abuse detection" in lowered:
        # The secondary limit's older wording, still sent: "You have triggered an abuse
        # detection mechanism..." (PyGithub ReplayData), with or without retry-after.
        return f"secondary rate limit: {short(message or '')}"
    if header(answer.headers, "retry-after") is not None:
        return "rate limit: retry-after"
    return None
