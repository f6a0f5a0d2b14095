"""X (Twitter) API v2 user lookup: by immutable id once known, by username to discover it.

Shapes: docs/platforms.md, "X API v2". Lookup failures are **HTTP 200** with an
``errors`` array and no ``data``, so the body decides, not the status. A handle can be freed
and re-registered by someone else, so the id in ``data.id`` is always reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar
from urllib.parse import quote

from monitor.model import AbsentReason, ErrorKind, Observation, Result
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
from monitor.probes.evidence import json_object, short
from monitor.probes.ratelimit import x_rate_limit

BATCH_MAX = 100  # GET /2/users?ids= takes at most 100 ids
# Without user.fields, X answers only id, name and username.
_FIELDS = "user.fields=protected,withheld"
_COUNTRIES_SHOWN = 8


class XProbe(HttpProbe):
    """One user per request (``check``) or up to 100 known ids per request (``check_many``)."""

    name = "x"
    batch_size: ClassVar[int] = BATCH_MAX  # the scheduler batches due accounts

    def request(self, target: Target) -> tuple[str, str, dict[str, str]]:
        base = self.platform.base_url
        if target.account_id is not None:
            path = f"/2/users/{quote(target.account_id, safe='')}"
        else:
            path = f"/2/users/by/username/{quote(target.handle.removeprefix('@'), safe='')}"
        return "GET", f"{base}{path}?{_FIELDS}", self.base_headers()

    def classify(self, answer: Answer, target: Target, at: float) -> Observation:
        return classify_user(answer, target, at)

    async def check_many(self, targets: Sequence[Target]) -> dict[str, Observation]:
        """Check accounts by id, 100 per request; the result is keyed by account id.

        Every target needs its ``account_id`` (the batch endpoint takes ids only).
        """
        ids = list(dict.fromkeys(_require_id(t) for t in targets))
        results: dict[str, Observation] = {}
        for start in range(0, len(ids), BATCH_MAX):
            results.update(await self._check_batch(ids[start:start + BATCH_MAX]))
        return results

    async def _check_batch(self, ids: list[str]) -> dict[str, Observation]:
        joined = ",".join(quote_part(i) for i in ids)
        url = f"{self.platform.base_url}/2/users?ids={joined}&{_FIELDS}"
        # What classify_batch() reads, each observation stamped once (latency and budget).
        return await self.check_batch(url, ids, _classify_batch, x_rate_limit)


def classify_user(answer: Answer, target: Target, at: float) -> Observation:
    """Pure: what one ``/2/users/{id}`` or ``/2/users/by/username/{u}`` answer means."""
    return classified(answer, at, _classify_user, x_rate_limit)


def classify_batch(answer: Answer, ids: Sequence[str], at: float) -> dict[str, Observation]:
    """Pure: one observation per requested id from a ``/2/users?ids=`` answer.

    Users in ``data`` are present; per-id ``errors`` read as in a single lookup; an id in
    neither is ``error(unexpected)``. A failed answer is the same error for every id.
    """
    return classified_batch(answer, ids, at, _classify_batch, x_rate_limit)


# --------------------------------------------------------------------------- reading


def _classify_user(answer: Answer, at: float) -> Observation:
    if answer.status == 404:
        return _not_found_answer(answer, at)
    if answer.status != 200:
        raise _status_problem(answer)
    body = answer.json()
    if not isinstance(body, dict):
        raise ProbeError(ErrorKind.PARSE, "HTTP 200, not a JSON object")
    data = body.get("data")
    if isinstance(data, dict):
        # "errors" may sit beside "data" (about expansions); the user is there.
        return _present(data, at)
    errors = body.get("errors")
    if isinstance(errors, list) and errors:
        user_errors = [e for e in errors if isinstance(e, dict)
                       and e.get("resource_type") == "user"]
        if user_errors:
            return _from_error(user_errors[0], at)
        first = errors[0] if isinstance(errors[0], dict) else {}
        raise ProbeError(ErrorKind.UNEXPECTED, f"HTTP 200, error not about a user: "
                                               f"{short(first.get('title') or first)}")
    raise ProbeError(ErrorKind.PARSE, "HTTP 200 with neither data nor errors")


def _classify_batch(answer: Answer, ids: Sequence[str], at: float) -> dict[str, Observation]:
    if answer.status != 200:
        raise _status_problem(answer)
    body = answer.json()
    if not isinstance(body, dict):
        raise ProbeError(ErrorKind.PARSE, "HTTP 200, not a JSON object")
    data, errors = body.get("data", []), body.get("errors", [])
    if not isinstance(data, list) or not isinstance(errors, list):
        raise ProbeError(ErrorKind.PARSE, "HTTP 200, data or errors is not a list")
    wanted = set(ids)
    found: dict[str, Observation] = {}
    for user in data:
        user_id = user.get("id") if isinstance(user, dict) else None
        if isinstance(user_id, str) and user_id in wanted:
            found[user_id] = _present(user, at)
    for error in errors:
        if not isinstance(error, dict) or error.get("resource_type") != "user":
            continue
        key = str(error.get("resource_id") or error.get("value") or "")
        if key in wanted and key not in found:
            try:
                found[key] = _from_error(error, at)
            except ProbeError as exc:
                found[key] = exc.observation(at, account_id=key)
    for missing in wanted - found.keys():
        found[missing] = Observation.failed(at, ErrorKind.UNEXPECTED,
                                            "HTTP 200, id in neither data nor errors")
    return found


def _present(user: dict[str, Any], at: float) -> Observation:
    user_id = user.get("id")
    if not isinstance(user_id, str) or not user_id:
        raise ProbeError(ErrorKind.PARSE, "HTTP 200, data without an id")
    username = user.get("username")
    evidence = f"HTTP 200 id={user_id}"
    if user.get("protected") is True:
        evidence += ", protected"
    withheld = user.get("withheld")
    if isinstance(withheld, dict):
        # Withheld in some countries: still there for us, worth noting (reference: X API v2).
        codes = [str(c) for c in withheld.get("country_codes") or []]
        shown = ",".join(codes[:_COUNTRIES_SHOWN]) + ("…" if len(codes) > _COUNTRIES_SHOWN else "")
        evidence += f", withheld in {shown or '?'}"
    # The constructor itself, not Observation.present(**kw): this runs for each of the 100
    # users of a batch answer.
    return Observation(Result.PRESENT, at, evidence=evidence, account_id=user_id,
                       handle=username if isinstance(username, str) else None)


def _not_found_answer(answer: Answer, at: float) -> Observation:
    """A 404 to a single lookup. X's guide (docs.x.com, User lookup, "Error handling") says a
    suspended or deleted user's single lookup returns 404, while every recorded answer is a
    200 with ``errors``: read a 404 the same way, but only when its body is X's own answer
    about the user (an ``errors`` entry about a user, or a problem document of type
    resource-not-found); any other 404 (a wrong base_url, a proxy) is no evidence [I]."""
    body = json_object(answer)
    errors = body.get("errors")
    if isinstance(errors, list):
        for error in errors:
            if isinstance(error, dict) and error.get("resource_type") == "user":
                return _from_error(error, at, status=404)
    problem = str(body.get("type") or "")
    if problem.endswith("/resource-not-found") or str(body.get("detail") or "").startswith(
            ("Could not find user", "User has been suspended")):
        return _from_error(body, at, status=404)
    raise _status_problem(answer)


def _from_error(error: dict[str, Any], at: float, status: int = 200) -> Observation:
    """One ``errors`` entry about a user: restricted, suspended, not found, or else."""
    detail, title = str(error.get("detail") or ""), str(error.get("title") or "")
    # Lookup by id names the id in "value"/"resource_id"; by username, the username.
    by_id = error.get("parameter") in ("id", "ids")
    ids = {"account_id": str(error.get("resource_id") or error.get("value"))} if by_id else {}
    if str(error.get("type") or "").endswith("/not-authorized-for-resource"):
        # "Sorry, you are not authorized to see the user with id: [...]": X names the user
        # and refuses to show it to us (it blocks our account, say). A named answer about an
        # account that exists: present, restricted.
        return Observation.present(at, f"HTTP {status} not authorized to see it (restricted)",
                                   **ids)
    # Both answers have type .../resource-not-found: only the title/detail tell them apart.
    if detail.startswith("User has been suspended") or title == "Forbidden":
        return Observation.absent(at, AbsentReason.SUSPENDED, f"HTTP {status} suspended", **ids)
    if (detail.startswith("Could not find user")
            or str(error.get("type") or "").endswith("/resource-not-found")):
        # Deactivated and deleted accounts answer exactly like never-registered ones [I].
        return Observation.absent(at, AbsentReason.NOT_FOUND,
                                  f"HTTP {status} not found (deactivated or deleted)", **ids)
    raise ProbeError(ErrorKind.UNEXPECTED, f"HTTP {status} error: {short(title or detail)}")


def _status_problem(answer: Answer) -> ProbeError:
    """The error for a non-200 answer: X reports every lookup outcome with 200."""
    # X's problem document: title, detail, type.
    body = json_object(answer)
    title, detail = body.get("title"), body.get("detail")
    if answer.status == 429 and title == "UsageCapExceeded":
        return ProbeError(ErrorKind.RATE_LIMITED,
                          f"HTTP 429 UsageCapExceeded: {short(detail or '')}")
    error = status_error(answer)
    if error is None and answer.status == 403:
        # e.g. "client-not-enrolled": our app lacks access; a problem with our credentials.
        error = ProbeError(ErrorKind.AUTH, "HTTP 403")
    if error is None:
        error = ProbeError(ErrorKind.UNEXPECTED, f"HTTP {answer.status}")
    label = title or detail
    return ProbeError(error.kind, f"{error.evidence} {short(label)}" if label else error.evidence)


def _require_id(target: Target) -> str:
    if target.account_id is None:
        raise ValueError(f"check_many needs account ids; {target.handle!r} has none (use check)")
    return target.account_id
