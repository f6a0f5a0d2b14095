"""The catalogue's self-check: do a site's rules still tell its known handles apart?

Every catalogue site (and any ``probe: http`` rule set) names handles known to exist and
known not to; :func:`self_check` probes them (Maigret's self-check). A result that is not
``ok`` means the site changed, or blocks us: fix the rule before trusting its absences.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from monitor.config import PlatformConfig
from monitor.model import Observation, Result
from monitor.probes.base import Target
from monitor.probes.http import RulesProbe
from monitor.rules import HttpRules


@dataclass(frozen=True, slots=True)
class SelfCheck:
    """One known handle probed: what the catalogue expects and what the rules said."""

    handle: str
    expected: Result
    observation: Observation

    @property
    def ok(self) -> bool:
        return self.observation.result is self.expected


async def self_check(rules: HttpRules, session: aiohttp.ClientSession, base_url: str, *,
                     timeout: float = 10.0, max_body_bytes: int = 1 << 20) -> list[SelfCheck]:
    """Probe every ``known_present`` and ``known_absent`` handle of ``rules`` at ``base_url``.

    A result that is not ``ok`` means the site changed (or blocked us): fix the rule before
    trusting its absences.
    """
    platform = PlatformConfig(probe="http", base_url=base_url, rules=rules)
    probe = RulesProbe(platform, session, timeout=timeout, max_body_bytes=max_body_bytes)
    cases = ([(h, Result.PRESENT) for h in rules.known_present]
             + [(h, Result.ABSENT) for h in rules.known_absent])
    observations = await asyncio.gather(*(probe.check(Target(h)) for h, _ in cases))
    return [SelfCheck(handle, expected, obs)
            for (handle, expected), obs in zip(cases, observations, strict=True)]
