"""A fake Bluesky AppView (profiles only), in the reference's shapes byte for byte.

Serves ``GET /xrpc/app.bsky.actor.getProfile?actor=`` and the batch
``GET /xrpc/app.bsky.actor.getProfiles?actors=…&actors=…`` (at most 25), with the
``RateLimit-*`` headers on every answer, plus faults, overrides and control endpoints
(:class:`~monitor.fakes.faults.FakePlatform`). Like the real AppView, ``getProfiles`` silently
leaves out accounts that are gone. Run it alone with
``python -m monitor.fakes.bluesky --port 8084 --account alice.bsky.social=present``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from monitor.fakes.faults import (
    Canned,
    FakeAccount,
    FakePlatform,
    account_specs,
    fake_arguments,
    serve_main,
)

STATES = ("present", "invalid_handle", "takendown", "suspended", "deactivated", "deleted")
BATCH_MAX = 25
CREATED_AT = "2023-04-12T04:53:57.057Z"
INDEXED_AT = "2024-05-01T12:00:00.000Z"


def _dumps(doc: Any) -> str:
    """The AppView (Node) renders compact JSON."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def _json(doc: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, text=_dumps(doc), content_type="application/json",
                        charset="utf-8")


def _error(name: str, message: str, status: int = 400) -> web.Response:
    return _json({"error": name, "message": message}, status)


class FakeBluesky(FakePlatform):
    """A Bluesky AppView. ``accounts`` maps handle -> state or -> ``(did, state)``.

    States: ``present``; ``invalid_handle`` (served by DID with handle ``handle.invalid``,
    unresolvable by handle); ``takendown`` and ``suspended`` (AccountTakedown);
    ``deactivated`` (AccountDeactivated); ``deleted`` (Profile not found).
    """

    states = STATES
    server_error_answer = Canned(500, _dumps({"error": "InternalServerError",
                                              "message": "Internal Server Error"}))
    rate_limited_answer = Canned(429, _dumps({"error": "RateLimitExceeded",
                                              "message": "Rate Limit Exceeded"}))
    budget_limit = 3000  # per IP per 5 minutes on the public AppView
    budget_window = 300.0

    def new_id(self, seed: str) -> str:
        digest = hashlib.sha256(f"bluesky:{seed}".encode()).digest()
        return "did:plc:" + base64.b32encode(digest).decode().lower()[:24]

    # ------------------------------------------------------------------ serving

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/xrpc/app.bsky.actor.getProfile", self.guard(self._get_profile))
        app.router.add_get("/xrpc/app.bsky.actor.getProfiles", self.guard(self._get_profiles))

    def handle_of(self, request: web.Request) -> str | None:
        actor = request.query.get("actor")
        if actor is None:
            return None  # getProfiles: counted in requests_total only
        found = self._resolve(actor)
        return found.handle if found else actor

    def answer_headers(self, fault: str | None) -> dict[str, str]:
        budget = self.spend(fault)
        return {"RateLimit-Limit": str(budget.limit),
                "RateLimit-Remaining": str(budget.remaining),
                "RateLimit-Reset": str(int(budget.reset_at)),
                "RateLimit-Policy": f"{budget.limit};w={int(self.budget_window)}"}

    async def _get_profile(self, request: web.Request) -> web.Response:
        actor = request.query.get("actor")
        if not actor:
            return _error("InvalidRequest", 'Error: Params must have the property "actor"')
        if not _valid_actor(actor):
            return _error("InvalidRequest", "Error: actor must be a valid did or a handle")
        account = self._resolve(actor)
        if account is None or account.state == "deleted":
            return _error("InvalidRequest", "Profile not found")
        if account.state in ("takendown", "suspended"):
            return _error("AccountTakedown", "Account has been suspended")
        if account.state == "deactivated":
            return _error("AccountDeactivated", "Account is deactivated")
        return _json(_profile(account))

    async def _get_profiles(self, request: web.Request) -> web.Response:
        actors = request.query.getall("actors", [])
        if not actors:
            return _error("InvalidRequest", 'Error: Params must have the property "actors"')
        if len(actors) > BATCH_MAX:
            return _error("InvalidRequest",
                          f"Error: actors must not have more than {BATCH_MAX} elements")
        profiles = []
        for actor in actors:
            account = self._resolve(actor) if _valid_actor(actor) else None
            # Gone accounts are left out without a word [I].
            if account is not None and account.state in ("present", "invalid_handle"):
                profiles.append(_profile(account))
        return _json({"profiles": profiles})

    def _resolve(self, actor: str) -> FakeAccount | None:
        """A DID names its account; a handle only while it resolves (not when invalid)."""
        if actor.startswith("did:"):
            return self.account_by_id(actor)
        account = self.account(actor.removeprefix("@"))
        return None if account is None or account.state == "invalid_handle" else account


def _valid_actor(actor: str) -> bool:
    return actor.startswith("did:") or ("." in actor and " " not in actor)


def _profile(account: FakeAccount) -> dict[str, Any]:
    """app.bsky.actor.defs#profileViewDetailed, its usual fields in the AppView's order."""
    handle = "handle.invalid" if account.state == "invalid_handle" else account.handle
    cdn = f"https://cdn.bsky.app/img/avatar/plain/{account.id}"
    return {
        "did": account.id,
        "handle": handle,
        "displayName": account.handle.split(".")[0].capitalize(),
        "avatar": f"{cdn}/bafkreiavatar@jpeg",
        "associated": {"lists": 0, "feedgens": 0, "starterPacks": 0, "labeler": False},
        "labels": [],
        "createdAt": CREATED_AT,
        "description": "Posting about things.",
        "indexedAt": INDEXED_AT,
        "banner": f"https://cdn.bsky.app/img/banner/plain/{account.id}/bafkreibanner@jpeg",
        "followersCount": 42,
        "followsCount": 17,
        "postsCount": 1234,
    }


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monitor.fakes.bluesky --port N [--account HANDLE=[DID:]STATE ...]``."""
    parser = fake_arguments("A fake Bluesky AppView (profiles only).")
    return serve_main(lambda args: FakeBluesky(account_specs(args.account), seed=args.seed),
                      parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
