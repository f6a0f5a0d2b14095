"""Probe registry: platform probe name -> class. Adding a platform is one module + one line."""

from __future__ import annotations

from monitor.probes.base import BatchProbe, HttpProbe, Probe, ProbeError, Target, batch_size_of
from monitor.probes.bluesky import BlueskyProbe
from monitor.probes.github import GitHubProbe
from monitor.probes.http import RulesProbe
from monitor.probes.mastodon import MastodonProbe
from monitor.probes.reddit import RedditProbe
from monitor.probes.twitch import TwitchProbe
from monitor.probes.x import XProbe
from monitor.probes.youtube import YouTubeProbe

PROBES: dict[str, type[Probe]] = {
    "bluesky": BlueskyProbe,
    "github": GitHubProbe,
    "http": RulesProbe,
    "mastodon": MastodonProbe,
    "reddit": RedditProbe,
    "twitch": TwitchProbe,
    "x": XProbe,
    "youtube": YouTubeProbe,
}

__all__ = ["PROBES", "BatchProbe", "HttpProbe", "Probe", "ProbeError", "Target",
           "batch_size_of"]
