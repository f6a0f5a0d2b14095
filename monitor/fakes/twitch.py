"""A fake Twitch Helix API (``GET /helix/users`` only).

Requires ``Authorization: Bearer <app token>`` and ``Client-Id``, answers with the
``Ratelimit-*`` headers on every answer, plus faults, overrides and control endpoints
(:class:`~monitor.fakes.accounts.FakePlatform`). Users that are gone are left out of
``data`` [I]. Run it alone with
``python -m monitor.fakes.twitch --port 8088 --account twitchdev=141981764:present``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from aiohttp import web

from monitor.fakes.accounts import (
    AccountSpec,
    FakeAccount,
    FakePlatform,
    account_specs,
    stable_number,
)
from monitor.fakes.faults import Canned, Faults
from monitor.fakes.server import fake_arguments, serve_main

STATES = ("present", "suspended", "deleted")
TOKEN = "test-twitch-app-token"
CLIENT_ID = "test-twitch-client-id"
LOOKUP_MAX = 100


def _dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=_dumps(doc), content_type="application/json",
                        charset="utf-8")


def _problem(status: int, error: str, message: str) -> str:
    return _dumps({"error": error, "status": status, "message": message})


class FakeTwitch(FakePlatform):
    """Helix users. ``accounts`` maps login -> state or -> ``(numeric id, state)``.

    States: ``present``; ``suspended`` and ``deleted`` (left out of ``data``).
    """

    states = STATES
    server_error_answer = Canned(500, _problem(500, "Internal Server Error", ""))
    rate_limited_answer = Canned(429, _problem(429, "Too Many Requests", ""))
    budget_limit = 800  # points per minute for an app token
    budget_window = 60.0

    def __init__(self, accounts: Mapping[str, AccountSpec] | None = None, *,
                 token: str = TOKEN, client_id: str = CLIENT_ID,
                 faults: Faults | None = None, seed: int = 0) -> None:
        self.token = token
        self.client_id = client_id
        super().__init__(accounts, faults=faults, seed=seed)

    def new_id(self, seed: str) -> str:
        return str(stable_number(f"twitch:{seed}") % 900_000_000 + 100_000_000)

    # ------------------------------------------------------------------ serving

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/helix/users", self.guard(self._users))

    def handle_of(self, request: web.Request) -> str | None:
        logins, ids = request.query.getall("login", []), request.query.getall("id", [])
        if len(logins) + len(ids) != 1:
            return None
        found = self.account(logins[0]) if logins else self.account_by_id(ids[0])
        return found.handle if found else (logins or ids)[0]

    def answer_headers(self, fault: str | None) -> dict[str, str]:
        budget = self.spend(fault)
        return {"Ratelimit-Limit": str(budget.limit),
                "Ratelimit-Remaining": str(budget.remaining),
                "Ratelimit-Reset": str(int(budget.reset_at))}

    def refuse(self, request: web.Request) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token:
            message = "OAuth token is missing"
        elif token != self.token:
            message = "Invalid OAuth token"
        elif request.headers.get("Client-Id") != self.client_id:
            message = "Client ID and OAuth token do not match"
        else:
            return None
        return _json({"error": "Unauthorized", "status": 401, "message": message}, 401)

    async def _users(self, request: web.Request) -> web.Response:
        logins, ids = request.query.getall("login", []), request.query.getall("id", [])
        if len(logins) + len(ids) > LOOKUP_MAX:
            return web.Response(status=400, text=_problem(
                400, "Bad Request", "The sum of login and id query parameters cannot exceed "
                                    f"{LOOKUP_MAX}"), content_type="application/json")
        found = [self.account(login) for login in logins] + [self.account_by_id(i) for i in ids]
        return _json({"data": [_user(a) for a in found
                               if a is not None and a.state == "present"]})


def _user(account: FakeAccount) -> dict[str, Any]:
    cdn = "https://static-cdn.jtvnw.net/jtv_user_pictures"
    return {
        "id": account.id,
        "login": account.handle.lower(),
        "display_name": account.handle,
        "type": "",
        "broadcaster_type": "partner",
        "description": f"{account.handle} streams here.",
        "profile_image_url": f"{cdn}/{account.id}-profile_image-300x300.png",
        "offline_image_url": f"{cdn}/{account.id}-channel_offline_image-1920x1080.png",
        "view_count": 0,
        "created_at": "2016-12-14T20:32:28Z",
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monitor.fakes.twitch --port N [--account LOGIN=[ID:]STATE ...]``."""
    parser = fake_arguments("A fake Twitch Helix API (users only).")
    parser.add_argument("--token", default=TOKEN, help="the app access token to accept")
    parser.add_argument("--client-id", default=CLIENT_ID, help="the Client-Id to accept")
    return serve_main(lambda args: FakeTwitch(account_specs(args.account), token=args.token,
                                              client_id=args.client_id, seed=args.seed),
                      parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
