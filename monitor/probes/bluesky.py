"""Bluesky (AT Protocol) AppView profiles: by DID once known, by handle to discover it.

Shapes: docs/platforms.md, "Bluesky (AT Protocol)". Errors are HTTP 400 with
``{"error": "<Name>", "message": "<text>"}``. ``AccountTakedown`` and ``AccountDeactivated``
mean the account is gone. ``InvalidRequest "Profile not found"`` does **not**, on its own:
the AppView says it for a deleted account and for a live one it has not indexed or lost
after a PDS migration (bluesky-social/pds#342, #358; bluesky-social/atproto#3455). So it is
:class:`~monitor.probes.corroboration.Unconfirmed` until the account's own repository
confirms it (:mod:`monitor.probes.corroboration`):

1. the DID: the target's, or for a handle never seen present, the AppView's
   ``com.atproto.identity.resolveHandle`` (a handle that resolves to nothing confirms
   nothing: ``error``, since without a DID no repository can be asked);
2. its DID document: ``{plc_url}/{did}`` for ``did:plc``, ``https://{host}/.well-known/did.json``
   for ``did:web`` (``http`` for ``localhost``, as @atproto/identity's resolver does); the PDS is
   the ``#atproto_pds`` service's ``serviceEndpoint``. A tombstoned ``did:plc`` answers 404
   ``{"message": "DID not available: …"}`` (did-method-plc, packages/server/src/routes.ts):
   the identity itself is deleted;
3. ``{pds}/xrpc/com.atproto.sync.getRepoStatus?did=`` (lexicon
   com.atproto.sync.getRepoStatus; bluesky-social/atproto packages/pds): see
   :data:`REPO_STATUS` for what each answer means.

Any failure along the way is ``error``, never ``absent``. The corroboration requests carry no
token: the AppView's credentials are not for the PLC directory or someone's PDS.

The DID is stable; a handle change is a rename, and ``handle.invalid`` a broken handle.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import quote, unquote, urlsplit

from monitor.model import AbsentReason, ErrorKind, Observation
from monitor.probes.base import (
    Answer,
    HttpProbe,
    ProbeError,
    Target,
    classified,
    classified_batch,
    quote_part,
    status_error,
)
from monitor.probes.corroboration import Unconfirmed, settle
from monitor.probes.evidence import json_object, json_text, short, text_at
from monitor.probes.ratelimit import bluesky_rate_limit

BATCH_MAX = 25  # app.bsky.actor.getProfiles takes at most 25 actors
INVALID_HANDLE = "handle.invalid"
PDS_SERVICE_ID = "#atproto_pds"
PDS_SERVICE_TYPE = "AtprotoPersonalDataServer"
_GONE = {
    "AccountTakedown": AbsentReason.TAKEN_DOWN,  # taken down or suspended by moderation
    "AccountDeactivated": AbsentReason.DEACTIVATED,
}
# getRepoStatus ``status`` when ``active`` is false (lexicon knownValues) -> what it means.
# None: the host is not saying the account is gone (a relay's sync trouble or throttle).
REPO_STATUS: dict[str, AbsentReason | None] = {
    "deactivated": AbsentReason.DEACTIVATED,
    "takendown": AbsentReason.TAKEN_DOWN,
    "suspended": AbsentReason.SUSPENDED,  # a time-limited takedown
    "deleted": AbsentReason.DELETED,
    "desynchronized": None,
    "throttled": None,
}
# XRPC errors a PDS (or a relay) may answer getRepoStatus with: the PDS's
# assertRepoAvailability, and the terminal repo errors com.atproto.sync.getRepo lists.
_REPO_ERRORS = {
    "RepoNotFound": AbsentReason.DELETED,
    "RepoTakendown": AbsentReason.TAKEN_DOWN,
    "RepoSuspended": AbsentReason.SUSPENDED,
    "RepoDeactivated": AbsentReason.DEACTIVATED,
}


class BlueskyProbe(HttpProbe):
    """``getProfile`` per account, or ``getProfiles`` for up to 25 known DIDs at a time."""

    name = "bluesky"
    batch_size: ClassVar[int] = BATCH_MAX  # the scheduler batches due accounts

    def request(self, target: Target) -> tuple[str, str, dict[str, str]]:
        actor = quote(target.account_id or target.handle.removeprefix("@"), safe=":")
        url = f"{self.platform.base_url}/xrpc/app.bsky.actor.getProfile?actor={actor}"
        return "GET", url, self.base_headers()

    def classify(self, answer: Answer, target: Target, at: float) -> Observation:
        return classify_profile(answer, target, at)

    async def check(self, target: Target) -> Observation:
        """One ``getProfile``; a "Profile not found" is then confirmed (or not) by the repo."""
        obs = await super().check(target)
        return await settle(obs, lambda claim: self.confirm(target, claim))

    async def check_many(self, targets: Sequence[Target]) -> dict[str, Observation]:
        """Check accounts by DID, 25 per request; the result is keyed by DID.

        ``getProfiles`` silently leaves out accounts that are gone [I] (and ones it has not
        indexed), so each DID missing from its answer gets a single ``check`` to learn why,
        corroboration included: an omission is never believed on its own.
        """
        by_did = {_require_did(t): t for t in targets}
        dids = list(by_did)
        results: dict[str, Observation] = {}
        for start in range(0, len(dids), BATCH_MAX):
            results.update(await self._check_batch(dids[start:start + BATCH_MAX]))
        missing = [did for did in dids if did not in results]
        gate = asyncio.Semaphore(self.platform.concurrency)

        async def single(did: str) -> Observation:
            async with gate:
                return await self.check(by_did[did])

        singles = await asyncio.gather(*(single(did) for did in missing))
        results.update(zip(missing, singles, strict=True))
        return results

    async def _check_batch(self, dids: list[str]) -> dict[str, Observation]:
        actors = "&".join(f"actors={quote_part(did, ':')}" for did in dids)
        url = f"{self.platform.base_url}/xrpc/app.bsky.actor.getProfiles?{actors}"
        # What classify_profiles() reads, each observation stamped once (latency, budget).
        return await self.check_batch(url, dids, _classify_profiles, bluesky_rate_limit)

    # ------------------------------------------------------------------ corroboration

    async def confirm(self, target: Target, claim: Unconfirmed) -> Observation:
        """Ask the account's own repository what the AppView could not say for sure."""
        did = target.account_id or claim.account_id
        if did is None:
            did = await self._resolve_handle(target.handle.removeprefix("@"))
        document = await self._get(did_document_url(did, self.platform.plc_url))
        pds = read_did_document(document, did, time.time())
        if isinstance(pds, Observation):
            return pds
        status = await self._get(f"{pds}/xrpc/com.atproto.sync.getRepoStatus?did="
                                 f"{quote(did, safe=':')}")
        return classify_repo_status(status, did, time.time())

    async def _resolve_handle(self, handle: str) -> str:
        url = (f"{self.platform.base_url}/xrpc/com.atproto.identity.resolveHandle"
               f"?handle={quote(handle, safe='')}")
        return read_resolved_handle(await self._get(url, authorized=True))

    async def _get(self, url: str, *, authorized: bool = False) -> Answer:
        headers = self.base_headers()
        if not authorized:
            headers.pop("Authorization", None)  # the platform's token stays with the platform
        return await self.fetch("GET", url, headers)


def classify_profile(answer: Answer, target: Target, at: float) -> Observation:
    """Pure: what one ``app.bsky.actor.getProfile`` answer means.

    "Profile not found" gives :class:`Unconfirmed` (an ``error`` until the repository
    confirms it), carrying the target's DID when it has one.
    """
    obs = classified(answer, at, _classify_profile, bluesky_rate_limit)
    if isinstance(obs, Unconfirmed) and target.account_id is not None:
        return _with_did(obs, target.account_id)
    return obs


def classify_profiles(answer: Answer, dids: Sequence[str], at: float) -> dict[str, Observation]:
    """Pure: a ``getProfiles`` answer, by DID.

    A 200 maps each returned profile to ``present`` and leaves the DIDs it omits out of the
    result (the answer does not say why they are missing). A failed answer maps every DID
    to the same error.
    """
    return classified_batch(answer, dids, at, _classify_profiles, bluesky_rate_limit)


def did_document_url(did: str, plc_url: str) -> str:
    """Where ``did``'s DID document is: the PLC directory, or the did:web host itself."""
    if did.startswith("did:plc:"):
        return f"{plc_url.rstrip('/')}/{quote(did, safe=':')}"
    if did.startswith("did:web:"):
        host = unquote(did.removeprefix("did:web:"))
        if not host or ":" in did.removeprefix("did:web:") or "/" in host:
            # did:web with a path is not an atproto identity (@atproto/identity refuses it).
            raise ProbeError(ErrorKind.UNEXPECTED, f"unsupported did:web form {short(did)}")
        scheme = "http" if urlsplit(f"//{host}").hostname == "localhost" else "https"
        return f"{scheme}://{host}/.well-known/did.json"
    raise ProbeError(ErrorKind.UNEXPECTED, f"unsupported DID method {short(did)}")


def read_resolved_handle(answer: Answer) -> str:
    """Pure: the DID in a ``com.atproto.identity.resolveHandle`` answer, or ProbeError.

    ``HandleNotFound`` (the lexicon's error) says the handle points nowhere, which is not
    that the account is gone: without its DID there is no repository to ask.
    """
    if answer.status == 200:
        body = answer.json()
        did = body.get("did") if isinstance(body, dict) else None
        if isinstance(did, str) and did.startswith("did:"):
            return did
        raise ProbeError(ErrorKind.PARSE, "resolveHandle: HTTP 200 without a DID")
    name, message = _xrpc_error(answer)
    if answer.status == 400:
        raise ProbeError(ErrorKind.UNEXPECTED,
                         f"handle resolves to no DID ({name or 'HTTP 400'}: "
                         f"{short(message or '')}), nothing to confirm it with")
    raise _status_problem(answer, name, "resolveHandle: ")


def read_did_document(answer: Answer, did: str, at: float) -> str | Observation:
    """Pure: the PDS URL in a DID document answer, an ``absent(deleted)`` observation for a
    tombstoned ``did:plc``, or ProbeError for anything else."""
    if answer.status in (404, 410) and did.startswith("did:plc:"):
        message = json_text(answer, "message") or ""  # the PLC directory's {"message": ...}
        # did-method-plc: "DID not available" is a tombstone (404 since PR #2; some
        # directories and mirrors answer 410 Gone); "DID not registered" is an identity the
        # directory never had, which says nothing about this account.
        if answer.status == 410 or message.startswith("DID not available"):
            return Observation.absent(at, AbsentReason.DELETED,
                                      f"PLC {answer.status}: DID tombstoned", account_id=did)
        raise ProbeError(ErrorKind.UNEXPECTED, f"PLC {answer.status}: {short(message)}")
    if answer.status != 200:
        error = status_error(answer)
        kind = error.kind if error is not None else ErrorKind.UNEXPECTED
        raise ProbeError(kind, f"DID document: HTTP {answer.status}")
    document = answer.json()
    if not isinstance(document, dict):
        raise ProbeError(ErrorKind.PARSE, "DID document: not a JSON object")
    if document.get("id") != did:
        raise ProbeError(ErrorKind.PARSE, "DID document for another DID")
    return _pds_endpoint(document)


def classify_repo_status(answer: Answer, did: str, at: float) -> Observation:
    """Pure: what the PDS's ``com.atproto.sync.getRepoStatus`` says about the account.

    ``active: true`` means the account is there and the AppView is wrong (not indexed, or
    lost after a migration): ``error``, since we cannot see its profile either.
    """
    try:
        return _classify_repo_status(answer, did, at)
    except ProbeError as exc:
        return exc.observation(at, account_id=did)


# --------------------------------------------------------------------------- reading


def _classify_profile(answer: Answer, at: float) -> Observation:
    if answer.status == 200:
        profile = answer.json()
        if not isinstance(profile, dict):
            raise ProbeError(ErrorKind.PARSE, "HTTP 200, not a JSON object")
        return _present(profile, at)
    name, message = _xrpc_error(answer)
    if answer.status == 400:
        evidence = f"HTTP 400 {name}: {short(message or '')}" if name else "HTTP 400"
        reason = _GONE.get(name or "")
        if reason is not None:
            return Observation.absent(at, reason, evidence)
        if name == "InvalidRequest" and message == "Profile not found":
            # Deleted, never existed, or merely not indexed: the repository decides.
            return Unconfirmed.of(at, AbsentReason.NOT_FOUND, evidence)
        # e.g. InvalidRequest "actor must be a valid did or a handle": our input, not absence.
        raise ProbeError(ErrorKind.UNEXPECTED, evidence)
    raise _status_problem(answer, name)


def _classify_profiles(answer: Answer, dids: Sequence[str], at: float) -> dict[str, Observation]:
    if answer.status != 200:
        raise _status_problem(answer, _xrpc_error(answer)[0])
    body = answer.json()
    profiles = body.get("profiles") if isinstance(body, dict) else None
    if not isinstance(profiles, list):
        raise ProbeError(ErrorKind.PARSE, "HTTP 200, no profiles list")
    wanted = set(dids)
    found: dict[str, Observation] = {}
    for profile in profiles:
        did = profile.get("did") if isinstance(profile, dict) else None
        if isinstance(did, str) and did in wanted:
            found[did] = _present(profile, at)
    return found


def _present(profile: dict[str, Any], at: float) -> Observation:
    did = profile.get("did")
    if not isinstance(did, str) or not did.startswith("did:"):
        raise ProbeError(ErrorKind.PARSE, "HTTP 200, profile without a DID")
    handle = profile.get("handle")
    evidence = f"HTTP 200 did={did}"
    if handle == INVALID_HANDLE:
        # The handle no longer resolves to this DID (DNS or well-known broken): still there.
        evidence += ", broken handle (handle.invalid)"
    return Observation.present(at, evidence, account_id=did,
                               handle=handle if isinstance(handle, str) else None)


def _classify_repo_status(answer: Answer, did: str, at: float) -> Observation:
    if answer.status == 200:
        body = answer.json()
        if not isinstance(body, dict) or not isinstance(body.get("active"), bool):
            raise ProbeError(ErrorKind.PARSE, "getRepoStatus: no boolean 'active'")
        if body.get("did") != did:
            raise ProbeError(ErrorKind.PARSE, "getRepoStatus: answer about another DID")
        if body["active"]:
            raise ProbeError(ErrorKind.UNEXPECTED,
                             "repo active on its PDS: the AppView is wrong (not indexed)")
        status = body.get("status")
        if not isinstance(status, str):
            # The lexicon: without a status "the host makes no claim" for why.
            raise ProbeError(ErrorKind.UNEXPECTED, "repo inactive, no status given")
        reason = REPO_STATUS.get(status)
        if reason is None:
            raise ProbeError(ErrorKind.UNEXPECTED, f"repo inactive: {short(status)}")
        return Observation.absent(at, reason, f"repo {status}", account_id=did)
    name = _xrpc_error(answer)[0]
    if answer.status == 400 and name in _REPO_ERRORS:
        return Observation.absent(at, _REPO_ERRORS[name], f"repo: {name}", account_id=did)
    raise _status_problem(answer, name, "getRepoStatus: ")


def _pds_endpoint(document: dict[str, Any]) -> str:
    services = document.get("service")
    for service in services if isinstance(services, list) else []:
        if not isinstance(service, dict):
            continue
        service_id = str(service.get("id") or "")
        if service_id.endswith(PDS_SERVICE_ID) and service.get("type") == PDS_SERVICE_TYPE:
            endpoint = service.get("serviceEndpoint")
            if isinstance(endpoint, str) and endpoint.startswith(("http://", "https://")):
                return endpoint.rstrip("/")
            raise ProbeError(ErrorKind.PARSE, "DID document: PDS endpoint is not an http URL")
    raise ProbeError(ErrorKind.UNEXPECTED, "DID document names no PDS")


def _with_did(obs: Unconfirmed, did: str) -> Unconfirmed:
    return dataclasses.replace(obs, account_id=did)


def _status_problem(answer: Answer, name: str | None, what: str = "") -> ProbeError:
    error = status_error(answer)  # 429 RateLimitExceeded, 5xx InternalServerError, 401
    if error is None:
        error = ProbeError(ErrorKind.UNEXPECTED, f"HTTP {answer.status}")
    evidence = f"{what}{error.evidence}"
    return ProbeError(error.kind, f"{evidence} {name}" if name else evidence)


def _xrpc_error(answer: Answer) -> tuple[str | None, str | None]:
    """XRPC's ``(error, message)``, Nones when the body is not that shape."""
    body = json_object(answer)
    return text_at(body, "error"), text_at(body, "message")


def _require_did(target: Target) -> str:
    if target.account_id is None:
        raise ValueError(f"check_many needs DIDs; {target.handle!r} has none (use check)")
    return target.account_id
