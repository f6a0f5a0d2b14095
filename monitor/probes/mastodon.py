"""Mastodon: one instance's account API (``/api/v1/accounts``), no auth by default.

Shapes are in ``docs/platforms.md`` (Mastodon section). The account id is stable
per instance, so once learned we poll by id; the handle is only used to discover it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from monitor.model import AbsentReason, ErrorKind, Observation
from monitor.probes.base import Answer, HttpProbe, ProbeError, Target, classified, status_error
from monitor.probes.evidence import json_text, with_detail
from monitor.probes.ratelimit import mastodon_rate_limit


class MastodonProbe(HttpProbe):
    """Looks an account up by ``acct`` until its id is known, then by id."""

    name = "mastodon"

    def request(self, target: Target) -> tuple[str, str, dict[str, str]]:
        base = self.platform.base_url
        if target.account_id is None:
            # /lookup exists since 3.4; older servers route it to /accounts/:id with
            # id="lookup" and answer 404 "Record not found" for everyone (indistinguishable).
            acct = quote(target.handle.removeprefix("@"), safe="@")
            url = f"{base}/api/v1/accounts/lookup?acct={acct}"
        else:
            url = f"{base}/api/v1/accounts/{quote(target.account_id, safe='')}"
        return "GET", url, self.base_headers()

    def classify(self, answer: Answer, target: Target, at: float) -> Observation:
        return classify_account(answer, at)


def classify_account(answer: Answer, at: float) -> Observation:
    """Pure: what one ``/api/v1/accounts/...`` answer means, with the budget its
    ``X-RateLimit-*`` headers announce (the reset is ISO-8601 on Mastodon)."""
    return classified(answer, at, _classify_account, mastodon_rate_limit)


def _classify_account(answer: Answer, at: float) -> Observation:
    status = answer.status
    if status == 200:
        return _classify_entity(answer, at)
    if status == 410:
        # Servers 2.4-3.3 answered a suspended account with 410 Gone (3.3+ send 200 +
        # "suspended": true).
        return Observation.absent(at, AbsentReason.SUSPENDED, "HTTP 410 Gone")
    message = json_text(answer, "error")  # Mastodon's {"error": "..."}
    if status == 404:
        # Unknown, remotely deleted or purged: {"error":"Record not found"}. A 404 without
        # that body is a proxy or a wrong base_url, not evidence about the account.
        if message == "Record not found":
            return Observation.absent(at, AbsentReason.NOT_FOUND, "HTTP 404 Record not found")
        raise ProbeError(ErrorKind.UNEXPECTED,
                         "HTTP 404 without Mastodon's 'Record not found' body")
    if status == 403:
        # Our token lacks a scope or its user is disabled ("This action is not allowed").
        raise ProbeError(ErrorKind.AUTH, with_detail("HTTP 403", message))
    # 429: {"error":"Too many requests"}, X-RateLimit-Reset is ISO-8601.
    # 503: {"error":"Remote data could not be fetched"} (federation trouble, not absence).
    # 401: limited-federation instances require auth: "This API requires an authenticated user".
    error = status_error(answer)
    if error is not None:
        raise ProbeError(error.kind, with_detail(error.evidence, message))
    raise ProbeError(ErrorKind.UNEXPECTED, f"HTTP {status}")


def _classify_entity(answer: Answer, at: float) -> Observation:
    entity = answer.json()
    if not isinstance(entity, dict) or entity.get("id") in (None, ""):
        raise ProbeError(ErrorKind.PARSE, "HTTP 200, no Account entity (no id)")
    account_id = str(entity["id"])
    acct = entity.get("acct") if isinstance(entity.get("acct"), str) else None
    ids: dict[str, Any] = {"account_id": account_id, "handle": acct}
    if entity.get("suspended") is True:
        # Since 3.3 a suspended (or self-deleted local) account is still served, fields
        # blanked, with "suspended": true.
        return Observation.absent(at, AbsentReason.SUSPENDED,
                                  f"HTTP 200 id={account_id} suspended", **ids)
    evidence = f"HTTP 200 id={account_id}"
    if entity.get("limited") is True:
        evidence += ", limited"  # silenced by moderators: still there
    moved = entity.get("moved")
    if isinstance(moved, dict):
        # Migrated: the old account still answers, "moved" holds the new Account entity.
        target = str(moved.get("acct") or moved.get("id") or "?")
        evidence += f", moved to {target}"
        ids["moved_to"] = target
    return Observation.present(at, evidence, **ids)
