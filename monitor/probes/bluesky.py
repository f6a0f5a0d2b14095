"""Bluesky (AT Protocol) AppView profiles: by DID once known, by handle to discover it.

Shapes: shared/reference/platforms.md, "Bluesky". Errors are HTTP 400 with
``{"error": "<Name>", "message": "<text>"}``, and only three names mean the account is gone.
The DID is stable; a handle change is a rename, and ``handle.invalid`` a broken handle.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import quote

from monitor.model import AbsentReason, ErrorKind, Observation
from monitor.probes.base import Answer, HttpProbe, ProbeError, Target, status_error
from monitor.probes.ratelimit import (
    bluesky_rate_limit,
    classified,
    classified_batch,
)

BATCH_MAX = 25  # app.bsky.actor.getProfiles takes at most 25 actors
INVALID_HANDLE = "handle.invalid"
_TEXT_CHARS = 80
_GONE = {
    "AccountTakedown": AbsentReason.TAKEN_DOWN,  # taken down or suspended by moderation
    "AccountDeactivated": AbsentReason.DEACTIVATED,
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

    async def check_many(self, targets: Sequence[Target]) -> dict[str, Observation]:
        """Check accounts by DID, 25 per request; the result is keyed by DID.

        ``getProfiles`` silently leaves out accounts that are gone [I], so each DID missing
        from its answer gets a single ``getProfile`` to learn why.
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
        actors = "&".join(f"actors={quote(did, safe=':')}" for did in dids)
        url = f"{self.platform.base_url}/xrpc/app.bsky.actor.getProfiles?{actors}"
        return await self.check_batch(url, dids, classify_profiles)


def classify_profile(answer: Answer, target: Target, at: float) -> Observation:
    """Pure: what one ``app.bsky.actor.getProfile`` answer means."""
    return classified(answer, at, _classify_profile, bluesky_rate_limit)


def classify_profiles(answer: Answer, dids: Sequence[str], at: float) -> dict[str, Observation]:
    """Pure: a ``getProfiles`` answer, by DID.

    A 200 maps each returned profile to ``present`` and leaves the DIDs it omits out of the
    result (the answer does not say why they are missing). A failed answer maps every DID
    to the same error.
    """
    return classified_batch(answer, dids, at, _classify_profiles, bluesky_rate_limit)


# --------------------------------------------------------------------------- reading


def _classify_profile(answer: Answer, at: float) -> Observation:
    if answer.status == 200:
        profile = answer.json()
        if not isinstance(profile, dict):
            raise ProbeError(ErrorKind.PARSE, "HTTP 200, not a JSON object")
        return _present(profile, at)
    name, message = _xrpc_error(answer)
    if answer.status == 400:
        reason = _GONE.get(name or "")
        if name == "InvalidRequest" and message == "Profile not found":
            reason = AbsentReason.NOT_FOUND  # never existed, or deleted
        evidence = f"HTTP 400 {name}: {_short(message or '')}" if name else "HTTP 400"
        if reason is not None:
            return Observation.absent(at, reason, evidence)
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


def _status_problem(answer: Answer, name: str | None) -> ProbeError:
    error = status_error(answer)  # 429 RateLimitExceeded, 5xx InternalServerError, 401
    if error is None:
        error = ProbeError(ErrorKind.UNEXPECTED, f"HTTP {answer.status}")
    return ProbeError(error.kind, f"{error.evidence} {name}" if name else error.evidence)


def _xrpc_error(answer: Answer) -> tuple[str | None, str | None]:
    """XRPC's ``(error, message)``, Nones when the body is not that shape."""
    try:
        body = answer.json()
    except ProbeError:
        return None, None
    if not isinstance(body, dict):
        return None, None
    name, message = body.get("error"), body.get("message")
    return (name if isinstance(name, str) else None,
            message if isinstance(message, str) else None)


def _require_did(target: Target) -> str:
    if target.account_id is None:
        raise ValueError(f"check_many needs DIDs; {target.handle!r} has none (use check)")
    return target.account_id


def _short(text: str) -> str:
    return text if len(text) <= _TEXT_CHARS else text[:_TEXT_CHARS] + "…"
