"""Twitch Helix ``users``: by id once known, by login to discover it.

Shapes: docs/platforms.md, "Twitch (Helix)" ([I]: inferred, not documented).
Helix needs two credentials: the platform's ``token`` is the app access token (Bearer), and
its ``client_id`` is the client id that token was issued to, sent as ``Client-Id`` (the
config may take it from the environment: ``client_id: ${TWITCH_CLIENT_ID}``). A user that is
gone answers ``{"data": []}`` [I].
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp

from monitor.model import AbsentReason, ErrorKind, Observation
from monitor.probes.base import Answer, HttpProbe, ProbeError, Target, classified, status_error
from monitor.probes.evidence import json_text, with_detail
from monitor.probes.ratelimit import twitch_rate_limit

if TYPE_CHECKING:  # for types only: monitor.config imports the probe registry
    from monitor.config import PlatformConfig


class TwitchProbe(HttpProbe):
    """One ``GET /helix/users`` per check, with the app token and its client id."""

    name = "twitch"

    def __init__(self, platform: PlatformConfig, session: aiohttp.ClientSession,
                 *, timeout: float, max_body_bytes: int) -> None:
        super().__init__(platform, session, timeout=timeout, max_body_bytes=max_body_bytes)
        self._headers = self.base_headers()
        if platform.client_id is not None:
            self._headers["Client-Id"] = platform.client_id

    def request(self, target: Target) -> tuple[str, str, dict[str, str]]:
        if self.platform.client_id is None:
            raise ProbeError(ErrorKind.AUTH, "no Twitch client id (set the platform's "
                                             "client_id)")
        if self.platform.token is None:
            raise ProbeError(ErrorKind.AUTH, "no Twitch app access token (set the platform's "
                                             "token)")
        if target.account_id is not None:
            query = f"id={quote(target.account_id, safe='')}"
        else:
            # Logins are lower case; Helix matches them exactly.
            query = f"login={quote(target.handle.removeprefix('@').lower(), safe='')}"
        return "GET", f"{self.platform.base_url}/helix/users?{query}", self._headers.copy()

    def classify(self, answer: Answer, target: Target, at: float) -> Observation:
        return classify_users(answer, target, at)


def classify_users(answer: Answer, target: Target, at: float) -> Observation:
    """Pure: what one ``/helix/users`` answer for one user means."""
    return classified(answer, at, _classify_users, twitch_rate_limit)


def _classify_users(answer: Answer, at: float) -> Observation:
    status = answer.status
    if status == 200:
        body = answer.json()
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise ProbeError(ErrorKind.PARSE, "HTTP 200, no data list")
        if not data:
            # Suspended, deleted and never-registered users are all left out [I].
            return Observation.absent(at, AbsentReason.NOT_FOUND,
                                      "HTTP 200, empty data (not found, suspended or deleted)")
        return _present(data[0], at)
    # Helix's {"error": ..., "status": ..., "message": ...}
    message = json_text(answer, "message")
    error = status_error(answer)  # 401 (token, client id), 429, 5xx
    if error is None and status == 403:
        error = ProbeError(ErrorKind.AUTH, "HTTP 403")
    if error is None:
        # 400: a malformed login or id (our input), not evidence about the account.
        error = ProbeError(ErrorKind.UNEXPECTED, f"HTTP {status}")
    raise ProbeError(error.kind, with_detail(error.evidence, message))


def _present(user: Any, at: float) -> Observation:
    user_id = user.get("id") if isinstance(user, dict) else None
    if not isinstance(user_id, str) or not user_id:
        raise ProbeError(ErrorKind.PARSE, "HTTP 200, user without an id")
    login = user.get("login")
    return Observation.present(at, f"HTTP 200 id={user_id}", account_id=user_id,
                               handle=login if isinstance(login, str) else None)
