"""Our own blindness: when most accounts are blind at once, the trouble is ours. Pure.

One account blind is that account's (or its platform's) business and pages on its own. Most
of the watchlist blind at the same moment, across platforms, means the monitor cannot see:
its network, DNS, proxy or credentials. Paging once per protected account then is a flood
that says nothing more than one page would, so the shell sends one "monitor blind" page
naming the platforms and error kinds, and holds the per-account blind pages until it clears
(as :mod:`monitor.anomaly` does for absences).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from monitor.config import OwnBlindnessConfig
from monitor.model import AccountState


@dataclass(frozen=True, slots=True)
class BlindAccount:
    """One watched account as the verdict sees it."""

    platform: str
    state: AccountState
    why: str | None  # the last error kind, or "not probed: ..."; None when unknown


@dataclass(frozen=True, slots=True)
class Verdict:
    active: bool
    blind: int
    total: int
    threshold: int
    since: float | None = None  # the earliest blind account's last decisive moment
    platforms: dict[str, int] = field(default_factory=dict)  # blind accounts per platform
    kinds: dict[str, int] = field(default_factory=dict)  # blind accounts per error kind

    @property
    def summary(self) -> str:
        platforms = ", ".join(f"{name} {count}" for name, count in
                              sorted(self.platforms.items(), key=lambda kv: -kv[1]))
        kinds = ", ".join(f"{kind} {count}" for kind, count in
                          sorted(self.kinds.items(), key=lambda kv: -kv[1]))
        return (f"{self.blind} of {self.total} accounts blind (platforms: {platforms}; "
                f"errors: {kinds or 'none recorded'})")


def threshold(total: int, spec: OwnBlindnessConfig) -> int:
    return max(spec.min_accounts, math.ceil(spec.fraction * total))


def could_trip(total: int, spec: OwnBlindnessConfig) -> bool:
    """Whether a watchlist this size can ever trip it (else blind pages need no grace)."""
    return spec.enabled and total >= spec.min_accounts


def evaluate(accounts: Iterable[BlindAccount], total: int,
             spec: OwnBlindnessConfig) -> Verdict:
    """Active when at least max(min_accounts, fraction x total) accounts are blind."""
    need = threshold(total, spec)
    platforms: Counter[str] = Counter()
    kinds: Counter[str] = Counter()
    onsets: list[float] = []
    for account in accounts:
        st = account.state
        if not st.blind:
            continue
        platforms[account.platform] += 1
        kinds[account.why or "no answers"] += 1
        ref = st.last_decisive_at if st.last_decisive_at is not None else st.since
        if ref is not None:
            onsets.append(ref)
    blind = sum(platforms.values())
    active = spec.enabled and total > 0 and blind >= need
    return Verdict(active, blind, total, need, min(onsets, default=None),
                   dict(platforms), dict(kinds))
