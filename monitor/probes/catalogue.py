"""The bundled catalogue of declarative http rules (``catalogue.yaml``) and its self-check.

Sites without a usable API are read by status, body markers and final URL
(:mod:`monitor.probes.http`). Pages drift, so every site names handles known to exist and
known not to, and :func:`self_check` probes them: a rule that no longer tells them apart is
noticed before it pages anyone (Maigret's self-check; unlike Maigret's ``data.json``, an
unknown or misspelt key is an error here).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from importlib import resources

import aiohttp
import yaml
from pydantic import ValidationError

from monitor.config import HttpRules, PlatformConfig
from monitor.config_types import Strict
from monitor.model import Observation, Result
from monitor.probes.base import Target
from monitor.probes.http import RulesProbe

CATALOGUE_FILE = "catalogue.yaml"


class CatalogueSite(Strict):
    """One site: where it lives and how to read its pages."""

    base_url: str
    rules: HttpRules


class CatalogueError(ValueError):
    """The catalogue file is not valid; the message names the site and the field."""


def load_sites(text: str | None = None) -> dict[str, CatalogueSite]:
    """Every site in the bundled catalogue (or in ``text``), validated."""
    if text is None:
        text = resources.files("monitor.probes").joinpath(CATALOGUE_FILE).read_text("utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"{CATALOGUE_FILE}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise CatalogueError(f"{CATALOGUE_FILE}: expected a mapping of site -> "
                             "{base_url, rules}")
    sites: dict[str, CatalogueSite] = {}
    for name, entry in raw.items():
        try:
            sites[str(name)] = CatalogueSite.model_validate(entry)
        except ValidationError as exc:
            raise CatalogueError(f"{CATALOGUE_FILE}: site {name!r}: {exc}") from None
    return sites


def load_catalogue() -> dict[str, HttpRules]:
    """The bundled rules by site name."""
    return {name: site.rules for name, site in load_sites().items()}


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
