"""Simulated platforms (aiohttp servers) for the demo, the tests and the benchmarks.

- :mod:`monitor.fakes.mastodon` -- ``FakeMastodon``, the Mastodon account API
- :mod:`monitor.fakes.site` -- ``FakeSite``, a scriptable website for the ``http`` probe
- one module per other platform (``x``, ``bluesky``, ``github``, ...)

and what they share, one concept a module:

- :mod:`monitor.fakes.faults` -- fault injection: the ``Faults`` profile, hostile answers
- :mod:`monitor.fakes.server` -- ``FakeServer``: serving, control endpoints, command line
- :mod:`monitor.fakes.accounts` -- ``FakePlatform``: accounts with ids, renames, budgets

:func:`platform_fakes` maps every probe of :data:`monitor.probes.PROBES` to its fake, so
suites that must cover every probe (the hostile-answer contract) find a new one by itself.
Submodules are not imported here (only inside that function), so
``python -m monitor.fakes.<name>`` runs cleanly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from monitor.fakes.server import FakeServer

# Hostile answers every probe must turn into a classified error, as Faults fields. Sizes are
# the worst we want to prove harmless; a suite may shrink them (see their Faults fields).
HOSTILE_ANSWERS: dict[str, dict[str, Any]] = {
    "deep_json": {"deep_json_rate": 1.0},
    "gzip_bomb": {"gzip_bomb_rate": 1.0},
    "cross_host": {"cross_host_rate": 1.0},
    "redirect_loop": {"redirect_loop_rate": 1.0},
    "slowloris": {"slowloris_rate": 1.0},
    "huge_headers": {"huge_headers_rate": 1.0},
    "truncated": {"truncated_rate": 1.0},
    "non_utf8": {"non_utf8_rate": 1.0},
    "login_wall": {"login_wall_rate": 1.0},
}

# Instagram's own page shape (trimmed), for the catalogue's Instagram rules.
INSTAGRAM_PRESENT = """<!DOCTYPE html>
<html lang="en" class="no-js not-logged-in"><head><meta charset="utf-8">
<title>{handle} (@{handle}) • Instagram photos and videos</title>
</head><body><span id="react-root"></span></body></html>
"""


@dataclass(frozen=True, slots=True)
class PlatformFake:
    """One probe's fake platform, serving ``handle`` as a present account; ``gone`` is the
    fake's state (``set_state(handle, gone)``) in which the platform says it is gone."""

    make: Callable[[], FakeServer]
    handle: str
    settings: Callable[[str], dict[str, Any]]  # base URL -> the platform's config fields
    gone: str


def platform_fakes() -> dict[str, PlatformFake]:
    """Probe name (a key of :data:`monitor.probes.PROBES`) -> its fake and platform config."""
    from monitor.fakes import bluesky, github, mastodon, reddit, site, twitch, x, youtube

    def masto() -> FakeServer:
        fake = mastodon.FakeMastodon({"alice": "present"})
        # Another instance knows an "alice" too, with another id: believing its answer
        # would look like the account was replaced (a false page).
        fake.elsewhere = mastodon.FakeMastodon({"alice": "present"}, domain="elsewhere.example")
        return fake

    return {
        "bluesky": PlatformFake(lambda: bluesky.FakeBluesky({"bsky.app": "present"}),
                                "bsky.app", lambda base: {"plc_url": f"{base}/plc"},
                                "deactivated"),
        "github": PlatformFake(lambda: github.FakeGitHub({"octocat": "present"}),
                               "octocat", lambda base: {}, "deleted"),
        "http": PlatformFake(lambda: site.FakeSite({"instagram": "present"},
                                                   present_template=INSTAGRAM_PRESENT),
                             "instagram", lambda base: {"catalogue": "instagram"}, "absent"),
        "mastodon": PlatformFake(masto, "alice", lambda base: {}, "suspended"),
        "reddit": PlatformFake(lambda: reddit.FakeReddit({"spez": "present"}),
                               "spez", lambda base: {}, "suspended"),
        "twitch": PlatformFake(lambda: twitch.FakeTwitch({"shroud": "present"}),
                               "shroud", lambda base: {"token": twitch.TOKEN,
                                                       "client_id": twitch.CLIENT_ID},
                               "suspended"),
        "x": PlatformFake(lambda: x.FakeX({"XDevelopers": "present"}),
                          "XDevelopers", lambda base: {"token": x.TOKEN}, "suspended"),
        "youtube": PlatformFake(lambda: youtube.FakeYouTube({"mkbhd": "present"}),
                                "mkbhd", lambda base: {"token": youtube.API_KEY}, "terminated"),
    }
