"""A fake GitHub REST API (users only), in the reference's shapes.

Serves ``GET /users/{login}`` and ``GET /user/{id}`` with the ``x-ratelimit-*`` headers on
every answer, plus faults, overrides and control endpoints
(:class:`~monitor.fakes.accounts.FakePlatform`). Suspended and deleted users are 404, as
outsiders see them. Overrides give the two rate-limit answers: ``primary`` (403 with
``x-ratelimit-remaining: 0``) and ``secondary`` / ``secondary_429`` (a "secondary rate
limit" message with ``retry-after``), and ``abuse`` (the secondary limit's older 403 "abuse
detection mechanism" body, sent without ``retry-after``). Run it alone with
``python -m monitor.fakes.github --port 8085 --account octocat=583231:present``.
``serve_recorded(handle, recording)`` answers one account with a real recorded answer
(:mod:`monitor.fakes.recorded`).
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
from monitor.fakes.recorded import RecordedAnswers
from monitor.fakes.server import fake_arguments, serve_main

STATES = ("present", "suspended", "deleted")
API_VERSION = "2022-11-28"
DOCS = "https://docs.github.com/rest"
PRIMARY_MESSAGE = ("API rate limit exceeded for 127.0.0.1. (But here's the good news: "
                   "Authenticated requests get a higher rate limit. Check out the documentation "
                   "for more details.)")
SECONDARY_MESSAGE = ("You have exceeded a secondary rate limit. Please wait a few minutes "
                     "before you try again.")
# The same limit's older wording (PyGithub tests/ReplayData/Exceptions.testAbuseRateLimit).
ABUSE_MESSAGE = ("You have triggered an abuse detection mechanism. Please wait a few minutes "
                 "before you try again.")


def _compact(doc: Any) -> str:
    """Error bodies are one line."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _json(doc: Any, status: int = 200) -> web.Response:
    # Resources come pretty-printed, two-space indented.
    return web.Response(status=status, text=json.dumps(doc, indent=2, ensure_ascii=False),
                        content_type="application/json", charset="utf-8")


_PRIMARY = Canned(403, _compact({
    "message": PRIMARY_MESSAGE,
    "documentation_url": f"{DOCS}/overview/resources-in-the-rest-api#rate-limiting"}))


def _secondary(status: int) -> Canned:
    return Canned(status, _compact({
        "message": SECONDARY_MESSAGE,
        "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api"
                             "#about-secondary-rate-limits"}), headers={"retry-after": "60"})


class FakeGitHub(RecordedAnswers, FakePlatform):
    """GitHub's user API. ``accounts`` maps login -> state or -> ``(numeric id, state)``.

    ``token``: when set, a request with any other Bearer token gets 401 "Bad credentials";
    requests without a token are served (unauthenticated, 60 per hour).
    """

    states = STATES
    server_error_answer = Canned(500, _compact({"message": "Server Error"}))
    rate_limited_answer = _PRIMARY
    overrides = {"primary": _PRIMARY, "secondary": _secondary(403),
                 "secondary_429": _secondary(429),
                 "abuse": Canned(403, _compact({
                     "message": ABUSE_MESSAGE,
                     "documentation_url": "https://developer.github.com/v3/#abuse-rate-limits"}))}
    exhausting = frozenset({"primary"})
    budget_limit = 60  # unauthenticated requests per hour
    budget_window = 3600.0

    def __init__(self, accounts: Mapping[str, AccountSpec] | None = None, *,
                 token: str | None = None, faults: Faults | None = None, seed: int = 0) -> None:
        self.token = token
        super().__init__(accounts, faults=faults, seed=seed)

    def new_id(self, seed: str) -> str:
        return str(stable_number(f"github:{seed}") % 190_000_000 + 1)

    # ------------------------------------------------------------------ serving

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/users/{login}", self.guard(self._by_login))
        app.router.add_get("/user/{id}", self.guard(self._by_id))

    def handle_of(self, request: web.Request) -> str | None:
        info = request.match_info
        found = (self.account(info["login"]) if "login" in info
                 else self.account_by_id(info.get("id", "")))
        return found.handle if found else info.get("login") or info.get("id")

    def answer_headers(self, fault: str | None) -> dict[str, str]:
        budget = self.spend(fault)
        return {"x-github-api-version-selected": API_VERSION,
                "x-ratelimit-limit": str(budget.limit),
                "x-ratelimit-remaining": str(budget.remaining),
                "x-ratelimit-reset": str(int(budget.reset_at)),
                "x-ratelimit-used": str(min(budget.used, budget.limit)),
                "x-ratelimit-resource": "core"}

    def refuse(self, request: web.Request) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if not scheme or self.token is None or (scheme == "Bearer" and token == self.token):
            return None
        return web.Response(status=401, text=_compact({"message": "Bad credentials",
                                                       "documentation_url": DOCS,
                                                       "status": "401"}),
                            content_type="application/json", charset="utf-8")

    async def _by_login(self, request: web.Request) -> web.StreamResponse:
        login = request.match_info["login"]
        recorded = self.recorded_for(login)
        if recorded is not None:
            return await self.send_recorded(request, recorded)
        return self._answer(self.account(login))

    async def _by_id(self, request: web.Request) -> web.StreamResponse:
        account = self.account_by_id(request.match_info["id"])
        recorded = self.recorded_for(request.match_info["id"], account.handle if account else None)
        if recorded is not None:
            return await self.send_recorded(request, recorded)
        return self._answer(account)

    def _answer(self, account: FakeAccount | None) -> web.Response:
        if account is None or account.state != "present":
            # Suspended users are hidden from everyone but staff: a plain 404.
            return web.Response(status=404, text=_compact({
                "message": "Not Found",
                "documentation_url": f"{DOCS}/users/users#get-a-user", "status": "404"}),
                content_type="application/json", charset="utf-8")
        return _json(_user(account))


def _user(account: FakeAccount) -> dict[str, Any]:
    """The public user object, its usual fields in GitHub's order."""
    login, user_id = account.handle, int(account.id)
    api = f"https://api.github.com/users/{login}"
    return {
        "login": login,
        "id": user_id,
        "node_id": f"MDQ6VXNlcj{user_id}",
        "avatar_url": f"https://avatars.githubusercontent.com/u/{user_id}?v=4",
        "gravatar_id": "",
        "url": api,
        "html_url": f"https://github.com/{login}",
        "followers_url": f"{api}/followers",
        "repos_url": f"{api}/repos",
        "type": "User",
        "user_view_type": "public",
        "site_admin": False,
        "name": login.capitalize(),
        "company": None,
        "blog": "",
        "location": None,
        "email": None,
        "hireable": None,
        "bio": None,
        "twitter_username": None,
        "public_repos": 8,
        "public_gists": 8,
        "followers": 42,
        "following": 9,
        "created_at": "2011-01-25T18:44:36Z",
        "updated_at": "2024-05-01T12:00:00Z",
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monitor.fakes.github --port N [--account LOGIN=[ID:]STATE ...]``."""
    parser = fake_arguments("A fake GitHub REST API (users only).")
    parser.add_argument("--token", default=None, help="the only Bearer token to accept")
    return serve_main(lambda args: FakeGitHub(account_specs(args.account), token=args.token,
                                              seed=args.seed), parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
