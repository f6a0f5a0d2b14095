"""Probe registry: platform probe name -> class. Adding a platform is one module + one line."""

from __future__ import annotations

from monitor.probes.base import HttpProbe, Probe, ProbeError, Target
from monitor.probes.http import RulesProbe
from monitor.probes.mastodon import MastodonProbe

PROBES: dict[str, type[Probe]] = {
    "http": RulesProbe,
    "mastodon": MastodonProbe,
}

__all__ = ["PROBES", "HttpProbe", "Probe", "ProbeError", "Target"]
