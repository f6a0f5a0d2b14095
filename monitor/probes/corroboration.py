"""Corroboration: an answer that says "gone" in words the platform also uses when it is wrong.

Some platforms answer the same way for a vanished account and for one they merely cannot
show. Bluesky's AppView says ``InvalidRequest "Profile not found"`` for a deleted account
*and* for a live one it has not indexed, or lost after a PDS migration
(bluesky-social/pds#342, #358, bluesky-social/atproto#3455). Believing it pages on-call for
an account that is fine; ignoring it never pages at all. The answer is to ask a second,
authoritative source before counting it.

The pattern, for any probe (API probes and declarative rules alike):

1. The pure classifier returns :class:`Unconfirmed` for such an answer instead of
   ``absent``. It *is* an ``error(unexpected)`` observation, so whatever does not
   corroborate it (a test, a caller that knows nothing of this module) still counts it as
   "could not decide" and never moves the account toward down.
2. The probe's ``check`` passes its observation through :func:`settle` with a ``confirm``
   coroutine: the second lookup, which returns the observation that stands (``absent`` only
   when the authoritative source says so, ``present`` or ``error`` otherwise) or raises
   :class:`~monitor.probes.base.ProbeError`. Any failure of the second lookup is ``error``,
   never ``absent``.

:func:`settle` keeps the first answer's evidence and rate-limit budget (it is the
platform's budget that was spent) and adds the time the second lookup took to the latency.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

from monitor.model import AbsentReason, ErrorKind, Observation, Result, hot_value
from monitor.probes.base import ProbeError
from monitor.probes.evidence import short

_EVIDENCE_CHARS = 240  # the two lookups' evidence together, kept readable


@hot_value  # as Observation is
class Unconfirmed(Observation):
    """An absence the platform cannot vouch for: ``error(unexpected)`` until confirmed.

    ``claim`` is the absence the first answer suggests; the confirmation decides the real
    reason (it may be a different one, or no absence at all).
    """

    claim: AbsentReason = AbsentReason.NOT_FOUND

    @classmethod
    def of(cls, at: float, claim: AbsentReason, evidence: str, **kw: Any) -> Unconfirmed:
        return cls(Result.ERROR, at, error=ErrorKind.UNEXPECTED,
                   evidence=f"{evidence} (unconfirmed)", claim=claim, **kw)


Confirm = Callable[[Unconfirmed], Awaitable[Observation]]


async def settle(obs: Observation, confirm: Confirm) -> Observation:
    """``obs`` itself, or for an :class:`Unconfirmed` one what ``confirm`` makes of it."""
    if not isinstance(obs, Unconfirmed):
        return obs
    started = time.monotonic()
    first = obs.evidence.removesuffix(" (unconfirmed)")
    try:
        second = await confirm(obs)
    except ProbeError as exc:
        second = Observation.failed(obs.at, exc.kind, f"not confirmed: {exc.evidence}")
    if isinstance(second, Unconfirmed):  # a confirmation must decide; this one did not
        second = Observation.failed(obs.at, ErrorKind.UNEXPECTED, "not confirmed")
    return dataclasses.replace(
        second, evidence=short(f"{first}; {second.evidence}", _EVIDENCE_CHARS),
        rate_limit=obs.rate_limit or second.rate_limit,
        account_id=second.account_id or obs.account_id, handle=second.handle or obs.handle,
        latency=obs.latency + (time.monotonic() - started))
