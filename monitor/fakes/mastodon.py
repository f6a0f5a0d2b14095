"""A fake Mastodon instance: the account API, byte-for-byte in the reference's shapes.

Serves ``GET /api/v1/accounts/lookup?acct=`` and ``GET /api/v1/accounts/{id}`` for accounts
in one of :data:`STATES`, with Mastodon's rate-limit headers on every answer, plus the
fault and control endpoints of :class:`~monitor.fakes.server.FakeServer`. Run it alone with
``python -m monitor.fakes.mastodon --port 8081 --account alice=present``.
``serve_recorded(handle, recording)`` answers one account with a real recorded answer
(:mod:`monitor.fakes.recorded`).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from monitor.fakes.faults import Canned, Faults
from monitor.fakes.recorded import RecordedAnswers
from monitor.fakes.server import FakeServer, fake_arguments, serve_main

STATES = ("present", "suspended", "gone", "moved", "limited")
RATE_LIMIT = 300  # unauthenticated: 300 requests per 5 minutes per IP
RATE_WINDOW = 300.0
CREATED_AT = "2022-11-07T00:00:00.000Z"  # Mastodon 4 rounds created_at to the day


def _dumps(doc: Any) -> str:
    """Rails renders compact JSON: ``{"error":"Record not found"}``."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=_dumps(doc), content_type="application/json",
                        charset="utf-8")


def account_id_for(acct: str) -> str:
    """A stable snowflake-looking id: the same account gets the same id in every run."""
    digest = hashlib.sha256(acct.lower().encode()).digest()
    return str(109_000_000_000_000_000 + int.from_bytes(digest[:6], "big"))


@dataclass(slots=True)
class _Account:
    username: str
    id: str
    state: str
    moved_to: str | None = None


class FakeMastodon(RecordedAnswers, FakeServer):
    """One Mastodon instance. ``accounts`` maps username -> state (see :data:`STATES`)."""

    server_error_answer = Canned(503, _dumps({"error": "Remote data could not be fetched"}))
    rate_limited_answer = Canned(429, _dumps({"error": "Too many requests"}))

    def __init__(self, accounts: Mapping[str, str] | None = None, *,
                 domain: str = "mastodon.example", legacy_suspended: bool = False,
                 require_auth: bool = False, faults: Faults | None = None,
                 seed: int = 0, rate_limit: int = RATE_LIMIT) -> None:
        super().__init__(faults=faults, seed=seed)
        self.domain = domain
        # Requests per 5-minute window it reports (and counts down) in X-RateLimit-*.
        self.rate_limit = rate_limit
        # Servers 2.4-3.3 answered suspended accounts with 410 Gone instead of the entity.
        self.legacy_suspended = legacy_suspended
        # Limited-federation instances refuse anonymous API calls with 401.
        self.require_auth = require_auth
        self._accounts: dict[str, _Account] = {}  # by lower-case username
        self._by_id: dict[str, _Account] = {}
        self._window_start = 0.0
        self._window_used = 0
        for handle, state in (accounts or {}).items():
            self.set_state(handle, state)

    # ------------------------------------------------------------------ Python control

    def set_state(self, handle: str, state: str, *, moved_to: str | None = None) -> str:
        """Create or change an account; returns its id. ``moved_to`` is the new acct."""
        if state not in STATES:
            raise ValueError(f"unknown state {state!r}; choose one of {', '.join(STATES)}")
        username = handle.removeprefix("@")
        account = self._accounts.get(username.lower())
        if account is None:
            account = _Account(username, account_id_for(f"{username}@{self.domain}"), state)
            self._accounts[username.lower()] = account
            self._by_id[account.id] = account
        account.state = state
        account.moved_to = (moved_to or f"{username}@moved.example") if state == "moved" else None
        return account.id

    def account_id(self, handle: str) -> str:
        return self._accounts[handle.removeprefix("@").lower()].id

    def request_count(self, handle: str) -> int:
        account = self._accounts.get(handle.removeprefix("@").lower())
        return super().request_count(account.username if account else handle)

    def account_states(self) -> dict[str, str]:
        return {a.username: a.state for a in self._accounts.values()}

    def control_account(self, handle: str, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict) or not isinstance(data.get("state"), str):
            raise ValueError('expected {"state": "<state>"}')
        account_id = self.set_state(handle, data["state"], moved_to=data.get("moved_to"))
        return {"handle": handle, "state": data["state"], "id": account_id}

    # ------------------------------------------------------------------ serving

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/accounts/lookup", self._lookup)  # before {id}
        app.router.add_get("/api/v1/accounts/{id}", self._show)

    def handle_of(self, request: web.Request) -> str | None:
        if "id" in request.match_info:
            found = self._by_id.get(request.match_info["id"])
            return found.username if found else None
        acct = self._local_username(request.query.get("acct", ""))
        found = self._accounts.get(acct.lower())
        return found.username if found else acct or None

    def answer_headers(self, fault: str | None) -> dict[str, str]:
        """Mastodon's rate-limit headers; the reset time is ISO-8601 with microseconds."""
        now = time.time()
        start = now - now % RATE_WINDOW
        if start != self._window_start:
            self._window_start, self._window_used = start, 0
        self._window_used += 1
        remaining = 0 if fault == "rate_limit" else max(0, self.rate_limit - self._window_used)
        reset = datetime.fromtimestamp(start + RATE_WINDOW, UTC)
        return {
            "X-RateLimit-Limit": str(self.rate_limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": reset.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }

    async def _lookup(self, request: web.Request) -> web.StreamResponse:
        username = self._local_username(request.query.get("acct", ""))
        recorded = self.recorded_for(username)
        if recorded is not None:
            return await self.send_recorded(request, recorded)
        return self._answer(request, self._accounts.get(username.lower()), legacy=False)

    async def _show(self, request: web.Request) -> web.StreamResponse:
        account = self._by_id.get(request.match_info["id"])
        recorded = self.recorded_for(request.match_info["id"],
                                     account.username if account else None)
        if recorded is not None:
            return await self.send_recorded(request, recorded)
        return self._answer(request, account, legacy=self.legacy_suspended)

    def _answer(self, request: web.Request, account: _Account | None, *,
                legacy: bool) -> web.Response:
        if self.require_auth and "Authorization" not in request.headers:
            return _json({"error": "This API requires an authenticated user"}, 401)
        if account is None or account.state == "gone":
            return _json({"error": "Record not found"}, 404)
        if legacy and account.state == "suspended":
            return _json({"error": "Gone"}, 410)  # respond_with_error(410), before 3.3
        return _json(self._entity(account))

    def _local_username(self, acct: str) -> str:
        """``alice``, ``@alice`` and ``alice@<our domain>`` name the same local account."""
        user, _, domain = acct.removeprefix("@").partition("@")
        return user if not domain or domain.lower() == self.domain.lower() else acct

    # ------------------------------------------------------------------ Account entity

    def _entity(self, account: _Account) -> dict[str, Any]:
        """The Account entity; a suspended one is blanked and flagged (Mastodon 3.3+)."""
        flags: dict[str, Any] = {}
        if account.state == "suspended":
            flags["suspended"] = True
        elif account.state == "limited":
            flags["limited"] = True
        elif account.moved_to is not None:
            user, _, domain = account.moved_to.partition("@")
            flags["moved"] = _account_entity(account_id_for(account.moved_to), user,
                                             account.moved_to, domain or self.domain)
        return _account_entity(account.id, account.username, account.username, self.domain,
                               blank=account.state == "suspended", flags=flags)


def _account_entity(account_id: str, username: str, acct: str, domain: str, *,
                    blank: bool = False, flags: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """REST::AccountSerializer's fields in its order; ``flags`` go before the closing lists."""
    media = f"https://{domain}/system/accounts"
    avatar = (f"https://{domain}/avatars/original/missing.png" if blank
              else f"{media}/avatars/{account_id}/original/avatar.png")
    header = (f"https://{domain}/headers/original/missing.png" if blank
              else f"{media}/headers/{account_id}/original/header.png")
    return {
        "id": account_id,
        "username": username,
        "acct": acct,
        "display_name": "" if blank else username.capitalize(),
        "locked": False,
        "bot": False,
        "discoverable": not blank,
        "indexable": not blank,
        "group": False,
        "created_at": CREATED_AT,
        "note": "" if blank else f"<p>Hello, I am {username}.</p>",
        "url": f"https://{domain}/@{username}",
        "uri": f"https://{domain}/users/{username}",
        "avatar": avatar,
        "avatar_static": avatar,
        "header": header,
        "header_static": header,
        "followers_count": 0 if blank else 42,
        "following_count": 0 if blank else 17,
        "statuses_count": 0 if blank else 1234,
        "last_status_at": None if blank else "2024-04-30",
        "hide_collections": False,
        "noindex": False,
        **(flags or {}),
        "emojis": [],
        "roles": [],
        "fields": [],
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monitor.fakes.mastodon --port N [--account alice=present ...]``."""
    parser = fake_arguments("A fake Mastodon instance (account API only).")
    parser.add_argument("--domain", default="mastodon.example")
    return serve_main(lambda args: FakeMastodon(dict(args.account), domain=args.domain,
                                                seed=args.seed), parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
