"""Reddit users: ``/user/{name}/about.json`` (names never change, so always by name).

Shapes: docs/platforms.md, "Reddit". Reddit insists on a descriptive
User-Agent (``<platform>:<app>:<version> (by /u/<user>)``) and throttles generic ones.
A throttle may come as HTTP **200** with ``{"message": "Too Many Requests", "error": 429}``,
so the body is checked even on 200; an HTML page instead of JSON is a block or a login wall.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp

from monitor.model import AbsentReason, ErrorKind, Observation
from monitor.probes.base import Answer, HttpProbe, ProbeError, Target, classified, status_error
from monitor.probes.evidence import with_detail
from monitor.probes.ratelimit import header, reddit_rate_limit

if TYPE_CHECKING:  # for types only: monitor.config imports the probe registry
    from monitor.config import PlatformConfig

# Sent instead of our generic default, which Reddit's rules do not accept.
DEFAULT_USER_AGENT = "linux:account-monitor:0.1 (by /u/account-monitor)"


class RedditProbe(HttpProbe):
    """One ``about.json`` per check, with a Reddit-style User-Agent."""

    name = "reddit"

    def __init__(self, platform: PlatformConfig, session: aiohttp.ClientSession,
                 *, timeout: float, max_body_bytes: int) -> None:
        super().__init__(platform, session, timeout=timeout, max_body_bytes=max_body_bytes)
        self._headers = self.base_headers()
        if platform.user_agent == type(platform).model_fields["user_agent"].default:
            self._headers["User-Agent"] = DEFAULT_USER_AGENT

    def request(self, target: Target) -> tuple[str, str, dict[str, str]]:
        name = target.handle.removeprefix("/").removeprefix("u/").removeprefix("@")
        url = f"{self.platform.base_url}/user/{quote(name, safe='')}/about.json"
        return "GET", url, self._headers.copy()

    def classify(self, answer: Answer, target: Target, at: float) -> Observation:
        return classify_about(answer, target, at)


def classify_about(answer: Answer, target: Target, at: float) -> Observation:
    """Pure: what one ``/user/{name}/about.json`` answer means."""
    return classified(answer, at, _classify_about, reddit_rate_limit)


def _classify_about(answer: Answer, at: float) -> Observation:
    status = answer.status
    error = status_error(answer)  # 429, 5xx, 401
    if error is not None:
        raise error
    if _is_html(answer):
        # "whoa there, pardner!" block pages and login redirects are HTML, never about the user.
        raise ProbeError(ErrorKind.BLOCKED, f"HTTP {status}, HTML page instead of JSON "
                                            "(blocked or login wall)")
    body = answer.json()
    if not isinstance(body, dict):
        raise ProbeError(ErrorKind.PARSE, f"HTTP {status}, not a JSON object")
    if body.get("error") == 429:
        raise ProbeError(ErrorKind.RATE_LIMITED, f"HTTP {status} with a 'Too Many Requests' body")
    if status == 200:
        return _user(body, at)
    if status == 404 and body.get("error") == 404:
        return Observation.absent(at, AbsentReason.NOT_FOUND,
                                  "HTTP 404 Not Found (deleted, shadowbanned or never existed)")
    if status == 403:
        # Reddit refuses our client (IP or User-Agent), not the user's account.
        raise ProbeError(ErrorKind.BLOCKED, with_detail(f"HTTP {status}", body.get("message")))
    raise ProbeError(ErrorKind.UNEXPECTED, with_detail(f"HTTP {status}", body.get("message")))


def _user(body: dict[str, Any], at: float) -> Observation:
    data = body.get("data")
    if body.get("kind") != "t2" or not isinstance(data, dict):
        raise ProbeError(ErrorKind.PARSE, "HTTP 200, not a t2 (account) thing")
    name = data.get("name") if isinstance(data.get("name"), str) else None
    user_id = data.get("id") if isinstance(data.get("id"), str) else None
    if data.get("is_suspended") is True:
        # A suspended account keeps its name but loses everything else, id included.
        return Observation.absent(at, AbsentReason.SUSPENDED, "HTTP 200 t2 is_suspended",
                                  account_id=user_id, handle=name)
    if user_id is None:
        raise ProbeError(ErrorKind.PARSE, "HTTP 200 t2 without an id")
    return Observation.present(at, f"HTTP 200 id={user_id}", account_id=user_id, handle=name)


def _is_html(answer: Answer) -> bool:
    content_type = (header(answer.headers, "content-type") or "").lower()
    return "html" in content_type or answer.body.lstrip()[:1] == b"<"
