"""A fake X API v2 (user lookup), in the reference's shapes byte for byte.

Serves ``GET /2/users/by/username/{username}``, ``GET /2/users/{id}`` and the batch
``GET /2/users?ids=a,b`` (at most 100) behind a Bearer token, with ``x-rate-limit-*``
headers on every answer, plus faults, overrides and control endpoints
(:class:`~monitor.fakes.accounts.FakePlatform`). Lookup failures are HTTP 200 with an
``errors`` array, as on the real API. Run it alone with
``python -m monitor.fakes.x --port 8083 --account XDevelopers=2244994945:present``.
``serve_recorded(handle, recording)`` answers one account with a real recorded answer
(:mod:`monitor.fakes.recorded`).
"""

from __future__ import annotations

import json
import re
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

STATES = ("present", "protected", "withheld", "restricted", "suspended", "deactivated",
          "deleted")
TOKEN = "test-x-bearer-token"
BATCH_MAX = 100
NOT_FOUND_TYPE = "https://api.twitter.com/2/problems/resource-not-found"
NOT_AUTHORIZED_TYPE = "https://api.twitter.com/2/problems/not-authorized-for-resource"
INVALID_TYPE = "https://api.twitter.com/2/problems/invalid-request"
_USERNAME = re.compile(r"^[A-Za-z0-9_]{1,15}$")
_ID = re.compile(r"^[0-9]{1,19}$")


def _dumps(doc: Any) -> str:
    """X renders compact JSON."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=_dumps(doc), content_type="application/json",
                        charset="utf-8")


class FakeX(RecordedAnswers, FakePlatform):
    """X's user lookup. ``accounts`` maps username -> state or -> ``(id, state)``.

    ``token`` is the Bearer token the fake accepts (``None``: any Bearer token). Overrides:
    ``usage_cap`` (429 UsageCapExceeded on everything, as a spent monthly cap).
    """

    states = STATES
    server_error_answer = Canned(503, _dumps({"title": "Service Unavailable",
                                              "detail": "Service Unavailable",
                                              "type": "about:blank", "status": 503}))
    rate_limited_answer = Canned(429, _dumps({"title": "Too Many Requests",
                                              "detail": "Too Many Requests",
                                              "type": "about:blank", "status": 429}))
    overrides = {"usage_cap": Canned(429, _dumps({
        "title": "UsageCapExceeded", "detail": "Usage cap exceeded: Monthly product cap",
        "type": "https://api.twitter.com/2/problems/usage-capped", "period": "Monthly",
        "scope": "Product"}))}
    exhausting = frozenset({"usage_cap"})
    budget_limit = 300  # app-auth user lookups per 15 minutes
    budget_window = 900.0

    def __init__(self, accounts: Mapping[str, AccountSpec] | None = None, *,
                 token: str | None = TOKEN, withheld_in: Sequence[str] = ("DE",),
                 faults: Faults | None = None, seed: int = 0,
                 not_found_status: int = 200) -> None:
        self.token = token
        # 200: as every recorded answer; 404: as X's guide says a suspended or deleted
        # user's single lookup answers (docs.x.com, User lookup, "Error handling").
        self.not_found_status = not_found_status
        self.withheld_in = list(withheld_in)
        super().__init__(accounts, faults=faults, seed=seed)

    def new_id(self, seed: str) -> str:
        return str(stable_number(f"x:{seed}") % 10**18 + 10**17)  # 18 digits, as 2010s ids

    # ------------------------------------------------------------------ serving

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/2/users/by/username/{username}", self.guard(self._by_username))
        app.router.add_get("/2/users/{id}", self.guard(self._by_id))
        app.router.add_get("/2/users", self.guard(self._batch))

    def handle_of(self, request: web.Request) -> str | None:
        info = request.match_info
        if "username" in info:
            found = self.account(info["username"])
            return found.handle if found else info["username"]
        if "id" in info:
            found = self.account_by_id(info["id"])
            return found.handle if found else info["id"]
        return None  # a batch is about many accounts: counted in requests_total only

    def answer_headers(self, fault: str | None) -> dict[str, str]:
        budget = self.spend(fault)
        return {"x-rate-limit-limit": str(budget.limit),
                "x-rate-limit-remaining": str(budget.remaining),
                "x-rate-limit-reset": str(int(budget.reset_at))}

    def refuse(self, request: web.Request) -> web.Response | None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme == "Bearer" and token and (self.token is None or token == self.token):
            return None
        return _json({"title": "Unauthorized", "type": "about:blank", "status": 401,
                      "detail": "Unauthorized"}, 401)

    async def _by_username(self, request: web.Request) -> web.StreamResponse:
        username = request.match_info["username"]
        recorded = self.recorded_for(username)
        if recorded is not None:
            return await self.send_recorded(request, recorded)
        if not _USERNAME.match(username):
            return _invalid("username", username, _USERNAME.pattern)
        return self._single(request, self.account(username), "username", username)

    async def _by_id(self, request: web.Request) -> web.StreamResponse:
        user_id = request.match_info["id"]
        recorded = self.recorded_for(user_id)
        if recorded is not None:
            return await self.send_recorded(request, recorded)
        if not _ID.match(user_id):
            return _invalid("id", user_id, _ID.pattern)
        return self._single(request, self.account_by_id(user_id), "id", user_id)

    async def _batch(self, request: web.Request) -> web.StreamResponse:
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        recorded = self.recorded_for(*ids)
        if recorded is not None:
            return await self.send_recorded(request, recorded)
        if not 1 <= len(ids) <= BATCH_MAX:
            return _invalid("ids", ",".join(ids), f"a list of 1 to {BATCH_MAX} ids")
        bad = next((i for i in ids if not _ID.match(i)), None)
        if bad is not None:
            return _invalid("ids", bad, _ID.pattern)
        fields = _fields(request)
        data: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for user_id in ids:
            account = self.account_by_id(user_id)
            error = self._error(account, "ids", user_id)
            if error is not None:
                errors.append(error)
            elif account is not None:
                data.append(self._user(account, fields))
        doc: dict[str, Any] = {}
        if data:
            doc["data"] = data
        if errors:
            doc["errors"] = errors
        return _json(doc)

    def _single(self, request: web.Request, account: FakeAccount | None, parameter: str,
                value: str) -> web.Response:
        error = self._error(account, parameter, value)
        if error is not None or account is None:
            # HTTP 200 (recorded) or 404 (X's guide): how X reports a failed lookup
            status = 200 if error and error["type"] == NOT_AUTHORIZED_TYPE else \
                self.not_found_status
            return _json({"errors": [error]}, status)
        return _json({"data": self._user(account, _fields(request))})

    def _error(self, account: FakeAccount | None, parameter: str,
               value: str) -> dict[str, Any] | None:
        """The ``errors`` entry for an account that does not answer, or None."""
        if account is not None and account.state == "restricted":
            # The account exists but X will not show it to us (it blocks our user, say).
            return {"value": value, "detail": f"Sorry, you are not authorized to see the user "
                                              f"with {parameter}: [{value}].",
                    "title": "Authorization Error", "resource_type": "user",
                    "parameter": parameter, "resource_id": value,
                    "type": NOT_AUTHORIZED_TYPE}
        if account is not None and account.state == "suspended":
            return {"parameter": parameter, "resource_id": value, "value": value,
                    "detail": f"User has been suspended: [{value}].", "title": "Forbidden",
                    "resource_type": "user", "type": NOT_FOUND_TYPE}
        if account is None or account.state in ("deactivated", "deleted"):
            # Deactivated and deleted accounts look like never-registered ones [I].
            return {"value": value, "detail": f"Could not find user with {parameter}: [{value}].",
                    "title": "Not Found Error", "resource_type": "user", "parameter": parameter,
                    "resource_id": value, "type": NOT_FOUND_TYPE}
        return None

    def _user(self, account: FakeAccount, fields: set[str]) -> dict[str, Any]:
        user: dict[str, Any] = {"id": account.id, "name": _display_name(account.handle),
                                "username": account.handle}
        if "protected" in fields:
            user["protected"] = account.state == "protected"
        if "withheld" in fields and account.state == "withheld":
            user["withheld"] = {"country_codes": self.withheld_in, "scope": "user"}
        return user


def _fields(request: web.Request) -> set[str]:
    return set(request.query.get("user.fields", "").split(","))


def _display_name(handle: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", handle).replace("_", " ")


def _invalid(parameter: str, value: str, pattern: str) -> web.Response:
    """X's 400 for a malformed parameter (not a lookup failure)."""
    return _json({"errors": [{"parameters": {parameter: [value]},
                              "message": f"The `{parameter}` query parameter value [{value}] "
                                         f"does not match {pattern}"}],
                  "title": "Invalid Request",
                  "detail": "One or more parameters to your request was invalid.",
                  "type": INVALID_TYPE}, 400)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monitor.fakes.x --port N [--account NAME=[ID:]STATE ...]``."""
    parser = fake_arguments("A fake X API v2 (user lookup only).")
    parser.add_argument("--token", default=TOKEN, help="the Bearer token to accept")
    parser.add_argument("--not-found-status", type=int, choices=(200, 404), default=200,
                        help="status of a failed single lookup (X's guide says 404)")
    return serve_main(lambda args: FakeX(account_specs(args.account), token=args.token,
                                         seed=args.seed,
                                         not_found_status=args.not_found_status), parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
