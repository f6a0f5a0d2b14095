"""A fake Bluesky: AppView, PLC directory and PDS in one server, in the real shapes.

The AppView serves ``GET /xrpc/app.bsky.actor.getProfile?actor=``, the batch
``GET /xrpc/app.bsky.actor.getProfiles?actors=…&actors=…`` (at most 25) and
``com.atproto.identity.resolveHandle``, with the ``RateLimit-*`` headers on every answer.
Like the real AppView, ``getProfiles`` silently leaves out accounts that are gone, and it
says "Profile not found" for accounts it has not indexed (state ``unindexed``,
bluesky-social/pds#358) as for deleted ones.

What corroborates that answer is here too: a PLC directory under ``/plc`` (point the
platform's ``plc_url`` at ``{base}/plc``: ``GET /plc/{did}`` answers the DID document, or
did-method-plc's 404 ``DID not available`` for a tombstone and ``DID not registered`` for a
stranger), ``/.well-known/did.json`` for a ``did:web:localhost%3A{port}`` account, and the
PDS's ``com.atproto.sync.getRepoStatus``; every DID document names this server as the PDS.

Plus faults, overrides, recorded answers (:class:`~monitor.fakes.recorded.RecordedAnswers`)
and control endpoints (:class:`~monitor.fakes.accounts.FakePlatform`). Run it alone with
``python -m monitor.fakes.bluesky --port 8084 --account alice.bsky.social=present``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from aiohttp import web

from monitor.fakes.accounts import FakeAccount, FakePlatform, account_specs
from monitor.fakes.faults import Canned
from monitor.fakes.recorded import RecordedAnswers
from monitor.fakes.server import fake_arguments, serve_main

STATES = ("present", "invalid_handle", "takendown", "suspended", "deactivated", "deleted",
          "unindexed", "tombstoned", "desynchronized", "throttled")
# What the AppView answers for each state that is not served as a profile.
_APPVIEW_GONE = {"takendown": ("AccountTakedown", "Account has been suspended"),
                 "suspended": ("AccountTakedown", "Account has been suspended"),
                 "deactivated": ("AccountDeactivated", "Account is deactivated")}
_SERVED = ("present", "invalid_handle")
# getRepoStatus on the PDS: state -> (active, status); None: the PDS has no such repo.
_REPO: dict[str, tuple[bool, str | None] | None] = {
    "present": (True, None), "invalid_handle": (True, None), "unindexed": (True, None),
    "takendown": (False, "takendown"), "suspended": (False, "suspended"),
    "deactivated": (False, "deactivated"), "desynchronized": (False, "desynchronized"),
    "throttled": (False, "throttled"), "deleted": None, "tombstoned": None,
}
REPO_REV = "3l4vsfoz5yo2l"
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


class FakeBluesky(RecordedAnswers, FakePlatform):
    """Bluesky. ``accounts`` maps handle -> state or -> ``(did, state)``.

    States: ``present``; ``invalid_handle`` (served by DID with handle ``handle.invalid``,
    unresolvable by handle); ``takendown`` and ``suspended`` (AccountTakedown, repo
    takendown / suspended); ``deactivated`` (AccountDeactivated, repo deactivated);
    ``deleted`` (Profile not found, no repo on the PDS); ``tombstoned`` (Profile not found,
    DID tombstoned on the PLC); ``unindexed`` (Profile not found, repo active: the AppView is
    wrong); ``desynchronized`` and ``throttled`` (Profile not found, repo inactive so).
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
        app.router.add_get("/xrpc/com.atproto.identity.resolveHandle",
                           self.guard(self._resolve_handle))
        app.router.add_get("/xrpc/com.atproto.sync.getRepoStatus", self._get_repo_status)
        app.router.add_get("/plc/{did}", self._plc_document)
        app.router.add_get("/.well-known/did.json", self._web_document)

    def handle_of(self, request: web.Request) -> str | None:
        actor = (request.query.get("actor") or request.query.get("handle")
                 or request.query.get("did") or request.match_info.get("did"))
        if actor is None:
            return None  # getProfiles, did.json: counted in requests_total only
        found = self._resolve(actor) if not actor.startswith("did:") else \
            self.account_by_id(actor)
        return found.handle if found else actor

    def answer_headers(self, fault: str | None) -> dict[str, str]:
        budget = self.spend(fault)
        return {"RateLimit-Limit": str(budget.limit),
                "RateLimit-Remaining": str(budget.remaining),
                "RateLimit-Reset": str(int(budget.reset_at)),
                "RateLimit-Policy": f"{budget.limit};w={int(self.budget_window)}"}

    async def _get_profile(self, request: web.Request) -> web.StreamResponse:
        actor = request.query.get("actor")
        if not actor:
            return _error("InvalidRequest", 'Error: Params must have the property "actor"')
        if not _valid_actor(actor):
            return _error("InvalidRequest", "Error: actor must be a valid did or a handle")
        account = self._resolve(actor)
        recorded = self.recorded_for(actor, account.handle if account else None,
                                     account.id if account else None)
        if recorded is not None:
            return await self.send_recorded(request, recorded)
        if account is None or account.state not in _SERVED:
            name, message = _APPVIEW_GONE.get(account.state if account else "",
                                              ("InvalidRequest", "Profile not found"))
            return _error(name, message)
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
            if account is not None and account.state in _SERVED:
                profiles.append(_profile(account))
        return _json({"profiles": profiles})

    async def _resolve_handle(self, request: web.Request) -> web.Response:
        handle = request.query.get("handle", "")
        account = self._resolve(handle) if _valid_actor(handle) else None
        # A deleted account's PDS no longer vouches for its handle: it resolves to nothing.
        if account is None or account.state in ("deleted", "tombstoned"):
            return _error("HandleNotFound", "Unable to resolve handle")
        return _json({"did": account.id})

    # ------------------------------------------------------------------ PLC and PDS

    async def _plc_document(self, request: web.Request) -> web.Response:
        """did-method-plc's GET /:did (packages/server/src/routes.ts): the document, or 404."""
        did = request.match_info["did"]
        account = self.account_by_id(did)
        if account is None:
            return _json({"message": f"DID not registered: {did}"}, 404)
        if account.state == "tombstoned":
            return _json({"message": f"DID not available: {did}"}, 404)
        return _did_document(account, _origin(request), "application/did+ld+json")

    async def _web_document(self, request: web.Request) -> web.Response:
        """``did:web:{host}`` resolves to ``https://{host}/.well-known/did.json``."""
        account = self.account_by_id("did:web:" + quote(request.host, safe=""))
        if account is None or account.state == "tombstoned":
            return web.Response(status=404, text="Not Found")
        return _did_document(account, _origin(request), "application/json")

    async def _get_repo_status(self, request: web.Request) -> web.Response:
        """The PDS's com.atproto.sync.getRepoStatus (packages/pds, assertRepoAvailability)."""
        did = request.query.get("did", "")
        if not did.startswith("did:"):
            return _error("InvalidRequest", "Error: did must be a valid did")
        account = self.account_by_id(did)
        repo = _REPO.get(account.state) if account is not None else None
        if repo is None:
            return _error("RepoNotFound", f"Could not find repo for DID: {did}")
        active, status = repo
        body: dict[str, Any] = {"did": did, "active": active}
        if status is not None:
            body["status"] = status
        if active:
            body["rev"] = REPO_REV
        return _json(body)

    def _resolve(self, actor: str) -> FakeAccount | None:
        """A DID names its account; a handle only while it resolves (not when invalid)."""
        if actor.startswith("did:"):
            return self.account_by_id(actor)
        account = self.account(actor.removeprefix("@"))
        return None if account is None or account.state == "invalid_handle" else account


def _origin(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def _did_document(account: FakeAccount, pds: str, content_type: str) -> web.Response:
    """A DID document in PLC's shape, its ``#atproto_pds`` service this very server."""
    did = account.id
    doc = {
        "@context": ["https://www.w3.org/ns/did/v1", "https://w3id.org/security/multikey/v1",
                     "https://w3id.org/security/suites/secp256k1-2019/v1"],
        "id": did,
        "alsoKnownAs": [f"at://{account.handle}"],
        "verificationMethod": [{"id": f"{did}#atproto", "type": "Multikey", "controller": did,
                                "publicKeyMultibase": "zQ3shc6V2kvUxn7hNmPy9JMToKT7u2NH27Sn"
                                                      "KNxGL1GcBcS4j"}],
        "service": [{"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
                     "serviceEndpoint": pds}],
    }
    return web.Response(text=_dumps(doc), content_type=content_type, charset="utf-8")


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
    parser = fake_arguments("A fake Bluesky: AppView profiles, PLC directory (/plc) and PDS.")
    return serve_main(lambda args: FakeBluesky(account_specs(args.account), seed=args.seed),
                      parser, argv)


if __name__ == "__main__":
    raise SystemExit(main())
