"""Platform anomalies: "half the watchlist vanished at once" is one alert, not N pages.

Pure: given the accounts of one platform (state + whether it is a canary), the time and the
platform's :class:`~monitor.config.AnomalyConfig`, say whether the platform is in an anomaly
and why. The shell (app.py) holds individual vanish pages while it is, pages the monitor's
owners once, and releases (or drops) the held pages when it clears.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from monitor.config import AnomalyConfig
from monitor.model import AccountState, State

ABSENT_STATES = (State.SUSPECT, State.DOWN)


@dataclass(frozen=True, slots=True)
class Verdict:
    active: bool
    reason: str  # human-readable: which canaries, how many accounts
    absent_recently: int
    threshold: int


def evaluate(absent: Iterable[tuple[AccountState, bool]], total: int, now: float,
             config: AnomalyConfig) -> Verdict:
    """``absent``: (state, is_canary) of the platform's accounts that look absent (others
    may be included; they are skipped); ``total``: how many accounts it watches.

    Active while a canary looks absent, or while at least ``threshold`` accounts are absent
    with an absence that began within ``window`` (so a mass event holds pages for at most
    one window; accounts still gone after it are paged then).
    """
    recent = 0
    canaries: int = 0
    for st, canary in absent:
        if st.state not in ABSENT_STATES:
            continue
        if canary:
            canaries += 1
        onset = st.first_absent_at
        if onset is not None and now - onset <= config.window:
            recent += 1
    threshold = max(config.min_accounts, math.ceil(config.fraction * total))
    if not config.enabled:
        return Verdict(False, "", recent, threshold)
    reasons = []
    if canaries:
        reasons.append(f"{canaries} canary account(s) look absent")
    if recent >= threshold:
        reasons.append(f"{recent} of {total} accounts went absent within "
                       f"{config.window:g}s (threshold {threshold})")
    return Verdict(bool(reasons), "; ".join(reasons), recent, threshold)
