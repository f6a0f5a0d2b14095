"""The bundled http-rule catalogue: it validates, and its self-check tells realistic pages apart."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from monitor.config import HttpRules, PlatformConfig
from monitor.fakes.site import FakeSite
from monitor.model import AbsentReason, ErrorKind, Result
from monitor.probes.base import Target
from monitor.probes.catalogue import CatalogueError, load_catalogue, load_sites
from monitor.probes.http import RulesProbe
from monitor.probes.selfcheck import self_check

# Pages shaped like each site's own (trimmed): what the rules must read.
TELEGRAM_PRESENT = """<!DOCTYPE html>
<html>
  <head>
    <meta charset="utf-8">
    <title>Telegram: Contact @{handle}</title>
    <meta property="og:title" content="{handle}">
    <meta property="og:site_name" content="Telegram">
  </head>
  <body class="no-transition">
    <div class="tgme_page_wrap"><div class="tgme_body_wrap"><div class="tgme_page">
      <div class="tgme_page_photo"><img class="tgme_page_photo_image" src="x.jpg"></div>
      <div class="tgme_page_title" dir="auto"><span dir="auto">{handle}</span></div>
      <div class="tgme_page_extra">@{handle}</div>
      <div class="tgme_page_action"><a class="tgme_action_button_new shine"
        href="tg://resolve?domain={handle}">Send Message</a></div>
    </div></div></div>
  </body>
</html>
"""
TELEGRAM_ABSENT = """<!DOCTYPE html>
<html>
  <head>
    <meta charset="utf-8">
    <title>Telegram Messenger</title>
    <meta property="og:title" content="Telegram - a new era of messaging">
  </head>
  <body class="no-transition">
    <div class="tgme_page_wrap"><div class="tgme_body_wrap"><div class="tgme_page">
      <div class="tgme_page_icon"><i class="tgme_icon_user"></i></div>
      <div class="tgme_page_description">If you have <strong>Telegram</strong>, you can contact
        <a class="tgme_username_link" href="tg://resolve?domain={handle}">@{handle}</a>
        right away.</div>
    </div></div></div>
  </body>
</html>
"""
INSTAGRAM_PRESENT = """<!DOCTYPE html>
<html lang="en" class="no-js not-logged-in"><head><meta charset="utf-8">
<title>{handle} (@{handle}) • Instagram photos and videos</title>
<meta property="og:title"
  content="{handle} (&#064;{handle}) &#x2022; Instagram photos and videos" />
</head><body><span id="react-root"></span></body></html>
"""
META_ABSENT = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Page not found • {site}</title></head>
<body><div><h2>Sorry, this page isn&#039;t available.</h2>
<p>The link you followed may be broken, or the page may have been removed.</p></div>
</body></html>
"""
INSTAGRAM_LOGIN = """<!DOCTYPE html>
<html lang="en" class="no-js not-logged-in"><head><meta charset="utf-8">
<title>Login • Instagram</title></head>
<body><form id="loginForm"><input name="username"><input name="password" type="password">
</form></body></html>
"""
THREADS_PRESENT = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{handle} (&#064;{handle}) • Threads, Say more</title>
<meta property="og:title" content="{handle} (&#064;{handle}) on Threads" />
</head><body><div id="barcelona-page-layout"></div></body></html>
"""
THREADS_LOGIN = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Threads • Log in</title></head>
<body><div>Log in with your Instagram account</div></body></html>
"""


def path_of(site: str, handle: str) -> str:
    """The FakeSite handle a site's rule URL asks for (threads puts an @ in the path)."""
    return f"@{handle}" if site == "threads" else handle


def script_site(site: str, rules: HttpRules) -> FakeSite:
    """A FakeSite answering every known handle of ``site`` with that site's realistic page."""
    fake = FakeSite(default_state="absent")
    present = {"telegram": TELEGRAM_PRESENT, "instagram": INSTAGRAM_PRESENT,
               "threads": THREADS_PRESENT}[site]
    for handle in rules.known_present:
        fake.set_answer(path_of(site, handle), 200, present.format(handle=handle))
    for handle in rules.known_absent:
        if site == "telegram":
            fake.set_answer(handle, 200, TELEGRAM_ABSENT.format(handle=handle))
        else:
            fake.set_answer(path_of(site, handle), 404,
                            META_ABSENT.format(site=site.capitalize()))
    return fake


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def rules_probe(rules: HttpRules, base_url: str, session: aiohttp.ClientSession) -> RulesProbe:
    platform = PlatformConfig(probe="http", base_url=base_url, rules=rules)
    return RulesProbe(platform, session, timeout=2.0, max_body_bytes=1 << 20)


# --------------------------------------------------------------------------- validation


def test_catalogue_has_the_promised_sites_each_with_examples() -> None:
    sites = load_sites()
    assert {"telegram", "instagram", "threads"} <= set(sites)
    for name, site in sites.items():
        assert site.base_url.startswith("https://"), name
        assert site.rules.known_present and site.rules.known_absent, name
        # Each rule set builds a probe (placeholders checked at construction).
        RulesProbe(PlatformConfig(probe="http", base_url=site.base_url, rules=site.rules),
                   None, timeout=1.0, max_body_bytes=1)  # type: ignore[arg-type]


def test_every_rule_round_trips_through_http_rules() -> None:
    for name, rules in load_catalogue().items():
        assert HttpRules.model_validate(rules.model_dump()) == rules, name


@pytest.mark.parametrize(("text", "message"), [
    ("telegram:\n  base_url: https://t.me\n  rules:\n    present: [{status: 200}]\n"
     "    absnet: []\n", "absnet"),
    ("telegram:\n  base_url: https://t.me\n", "rules"),
    ("- just a list\n", "expected a mapping"),
    ("telegram: [\n", "not valid YAML"),
])
def test_bad_catalogues_are_rejected_with_the_site_and_field(text: str, message: str) -> None:
    with pytest.raises(CatalogueError, match=message):
        load_sites(text)


# --------------------------------------------------------------------------- self-check


@pytest.mark.parametrize("site", ["telegram", "instagram", "threads"])
async def test_self_check_passes_against_realistic_pages(
        site: str, session: aiohttp.ClientSession) -> None:
    rules = load_catalogue()[site]
    fake = script_site(site, rules)
    async with fake.running() as url:
        results = await self_check(rules, session, url)
    assert [(r.handle, r.expected, r.observation.result) for r in results] == (
        [(h, Result.PRESENT, Result.PRESENT) for h in rules.known_present]
        + [(h, Result.ABSENT, Result.ABSENT) for h in rules.known_absent])
    assert all(r.ok for r in results)
    assert all(r.observation.reason is AbsentReason.NOT_FOUND
               for r in results if r.expected is Result.ABSENT)


@pytest.mark.parametrize("site", ["telegram", "instagram", "threads"])
async def test_self_check_notices_a_site_that_changed(
        site: str, session: aiohttp.ClientSession) -> None:
    rules = load_catalogue()[site]
    fake = script_site(site, rules)
    # The site redesigned: profile pages no longer carry the present marker.
    for handle in rules.known_present:
        fake.set_answer(path_of(site, handle), 200, "<html><title>New look</title></html>")
    async with fake.running() as url:
        results = await self_check(rules, session, url)
    failed = {r.handle: r.observation.error for r in results if not r.ok}
    assert failed == dict.fromkeys(rules.known_present, ErrorKind.UNEXPECTED)


# --------------------------------------------------------------------------- login walls


@pytest.mark.parametrize(("site", "status", "page"), [
    ("instagram", 200, INSTAGRAM_LOGIN),
    ("threads", 200, THREADS_LOGIN),
    ("threads", 404, THREADS_LOGIN),  # a wall in front of a 404 is still a wall
])
async def test_login_wall_pages_are_blocked_never_absent(
        site: str, status: int, page: str, session: aiohttp.ClientSession) -> None:
    rules = load_catalogue()[site]
    handle = rules.known_absent[0]
    fake = FakeSite()
    fake.set_answer(path_of(site, handle), status, page)
    async with fake.running() as url:
        obs = await rules_probe(rules, url, session).check(Target(handle))
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.BLOCKED)
    assert obs.evidence.startswith("error rule #")


async def test_instagram_redirect_to_login_is_blocked(session: aiohttp.ClientSession) -> None:
    rules = load_catalogue()["instagram"]
    fake = FakeSite({"zuck": "login_wall"})
    async with fake.running() as url:
        obs = await rules_probe(rules, url, session).check(Target("zuck"))
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.BLOCKED, "error rule #1: final URL has '/accounts/login'")


async def test_telegram_page_without_its_markers_is_unexpected_not_absent(
        session: aiohttp.ClientSession) -> None:
    rules = load_catalogue()["telegram"]
    fake = FakeSite({"durov": "captcha"})
    async with fake.running() as url:
        captcha = await rules_probe(rules, url, session).check(Target("durov"))
    assert (captcha.result, captcha.error) == (Result.ERROR, ErrorKind.UNEXPECTED)
