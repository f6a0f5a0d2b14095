"""The bundled catalogue of declarative http rules (``catalogue.yaml``).

Sites without a usable API are read by status, body markers and final URL
(:mod:`monitor.probes.http`). Pages drift, so every site names handles known to exist and
known not to, which :mod:`monitor.probes.selfcheck` probes. Unlike Maigret's ``data.json``,
an unknown or misspelt key is an error here. The config reads this module (``catalogue:``
in a platform), so it needs nothing of :mod:`monitor.config`.
"""

from __future__ import annotations

from importlib import resources

import yaml
from pydantic import ValidationError

from monitor.config_types import Strict
from monitor.rules import HttpRules

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
