"""A fake Reddit (``/user/{name}/about.json`` only), in the reference's shapes.

Every answer carries ``x-ratelimit-used``, ``x-ratelimit-remaining`` (a float string, "99.0")
and ``x-ratelimit-reset`` in **seconds until** the window ends. Overrides give Reddit's odd
answers: ``throttled_200`` (the 429 body with status 200), ``blocked`` (403 HTML block page)
and ``login_wall`` (200 HTML login page). A generic User-Agent is refused with the block page
unless ``strict_user_agent=False``. Run it alone with
``python -m monitor.fakes.reddit --port 8086 --account spez=1w72:present``.
``serve_recorded(handle, recording)`` answers one account with a real recorded answer
(:mod:`monitor.fakes.recorded`).
"""

from __future__ import annotations

import json
import re
import time
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
from monitor.fakes.recorded import RecordedAnswers
from monitor.fakes.server import fake_arguments, serve_main

STATES = ("present", "suspended", "deleted", "shadowbanned")
# Reddit's API rules: <platform>:<app ID>:<version> (by /u/<username>).
DESCRIPTIVE_USER_AGENT = re.compile(r"^\S+:\S+:\S+ \(by /u/[\w-]+\)$")
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def _dumps(doc: Any) -> str:
    """Reddit renders JSON with Python's default separators: ``{"kind": "t2", ...}``."""
    return json.dumps(doc, ensure_ascii=False)


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=_dumps(doc), content_type="application/json",
                        charset="UTF-8")


TOO_MANY = _dumps({"message": "Too Many Requests", "error": 429})
BLOCKED_PAGE = """<!doctype html><html><head><title>Blocked</title></head><body>
<h1>whoa there, pardner!</h1>
<p>Your request has been blocked due to a network policy.</p>
<p>Try logging in or creating an account <a href="https://www.reddit.com/login/">here</a>
to get back to browsing.</p></body></html>
"""
LOGIN_PAGE = """<!DOCTYPE html><html lang="en-US"><head><title>reddit.com: Log in</title></head>
<body><shreddit-app><faceplate-form action="/svc/shreddit/account/login">
<input name="username"><input name="password" type="password"></faceplate-form>
</shreddit-app></body></html>
"""


class FakeReddit(RecordedAnswers, FakePlatform):
    """Reddit's user about page. ``accounts`` maps name -> state or -> ``(id, state)``.

    States: ``present``; ``suspended`` (200 t2 ``is_suspended``); ``deleted`` and
    ``shadowbanned`` (404, as anyone else sees them).
    """

    states = STATES
    server_error_answer = Canned(500, _dumps({"message": "Internal Server Error",
                                              "error": 500}))
    rate_limited_answer = Canned(429, TOO_MANY)
    overrides = {"throttled_200": Canned(200, TOO_MANY),
                 "blocked": Canned(403, BLOCKED_PAGE, "text/html"),
                 "login_wall": Canned(200, LOGIN_PAGE, "text/html")}
    exhausting = frozenset({"throttled_200"})
    budget_limit = 100  # unauthenticated requests per 10 minutes
    budget_window = 600.0

    def __init__(self, accounts: Mapping[str, AccountSpec] | None = None, *,
                 strict_user_agent: bool = True, faults: Faults | None = None,
                 seed: int = 0) -> None:
        self.strict_user_agent = strict_user_agent
        super().__init__(accounts, faults=faults, seed=seed)

    def new_id(self, seed: str) -> str:
        number = stable_number(f"reddit:{seed}") % 36**8
        digits = ""
        while number or not digits:
            number, digit = divmod(number, 36)
            digits = _BASE36[digit] + digits
        return digits

    # ------------------------------------------------------------------ serving

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/user/{name}/about.json", self.guard(self._about))

    def handle_of(self, request: web.Request) -> str | None:
        name = request.match_info.get("name")
        found = self.account(name) if name else None
        return found.handle if found else name

    def answer_headers(self, fault: str | None) -> dict[str, str]:
        budget = self.spend(fault)
        return {"x-ratelimit-used": str(budget.used),
                "x-ratelimit-remaining": f"{float(budget.remaining):.1f}",
                "x-ratelimit-reset": str(max(0, int(budget.reset_at - time.time())))}

    def refuse(self, request: web.Request) -> web.Response | None:
        agent = request.headers.get("User-Agent", "")
        if not self.strict_user_agent or DESCRIPTIVE_USER_AGENT.match(agent):
            return None
        return web.Response(status=403, text=BLOCKED_PAGE, content_type="text/html",
                            charset="utf-8")

    async def _about(self, request: web.Request) -> web.StreamResponse:
        recorded = self.recorded_for(request.match_info["name"])
        if recorded is not None:
            return await self.send_recorded(request, recorded)
        account = self.account(request.match_info["name"])
        if account is None or account.state in ("deleted", "shadowbanned"):
            return _json({"message": "Not Found", "error": 404}, 404)
        if account.state == "suspended":
            return _json({"kind": "t2", "data": _suspended(account)})
        return _json({"kind": "t2", "data": _user(account)})


def _suspended(account: FakeAccount) -> dict[str, Any]:
    """What is left of a suspended account: flags and the name, no id."""
    return {"is_employee": False, "is_friend": False, "awardee_karma": 0, "awarder_karma": 0,
            "is_blocked": False, "total_karma": 0, "name": account.handle,
            "is_suspended": True}


def _user(account: FakeAccount) -> dict[str, Any]:
    """The t2 thing's usual fields in Reddit's order."""
    return {
        "is_employee": False,
        "is_friend": False,
        "snoovatar_size": None,
        "awardee_karma": 120,
        "id": account.id,
        "verified": True,
        "is_gold": False,
        "is_mod": False,
        "awarder_karma": 30,
        "has_verified_email": True,
        "icon_img": "https://styles.redditmedia.com/t5_avatar.png",
        "hide_from_robots": False,
        "link_karma": 1000,
        "pref_show_snoovatar": False,
        "is_blocked": False,
        "total_karma": 2150,
        "accept_chats": False,
        "name": account.handle,
        "created": 1118030400.0,
        "created_utc": 1118030400.0,
        "snoovatar_img": "",
        "comment_karma": 1000,
        "accept_followers": True,
        "has_subscribed": True,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monitor.fakes.reddit --port N [--account NAME=[ID:]STATE ...]``."""
    parser = fake_arguments("A fake Reddit (user about.json only).")
    parser.add_argument("--lenient-user-agent", action="store_true",
                        help="serve generic User-Agents too")
    return serve_main(lambda args: FakeReddit(account_specs(args.account), seed=args.seed,
                                              strict_user_agent=not args.lenient_user_agent),
                      parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
