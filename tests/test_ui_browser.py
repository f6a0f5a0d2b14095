"""The built-in web UI in real headless Chromium (tests/browser.py), against a real monitor
on loopback watching fake Mastodon and X.

What a person around an incident relies on, proved in the browser rather than in the HTML:
an open overview turns a vanishing protected account red within 2 s without a reload; the
account page shows the outage with the store's honest bounds after recovery; Tab reaches
every link and control, with a visible focus ring; nothing scrolls sideways at 375 px; every
platform- or config-supplied string (handles, a renamed X handle, a Mastodon move target,
error bodies quoted as evidence, team, owner, labels, the public title, a ``javascript:``
profile template, a right-to-left override) reads as text and runs nothing; the public view;
and, with JavaScript off, plain links, the filter form and the refresh link still do the job.
Screenshots of each view land in artifacts/screenshots/.

The browser lives on pytest-asyncio's session loop, so the monitor runs there too, on real
time (a virtual clock would stall Chromium's own timers and sockets): every wait is on a
condition with a deadline; the only time bound asserted is the issue's "within 2 s".
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Locator, Page, expect

from monitor.app import Monitor
from monitor.config import parse_config
from monitor.fakes.mastodon import FakeMastodon
from monitor.fakes.recorded import Recording
from monitor.fakes.x import FakeX
from monitor.model import AccountKey, Outage, State
from monitor.ui import text
from tests.browser import (  # noqa: F401 - browser_fixture, page_fixture: the fixtures
    BROWSER,
    PHONE_HEIGHT,
    PHONE_WIDTH,
    SCREENSHOTS,
    assert_no_script_ran,
    browser_fixture,
    flush,
    no_horizontal_scroll,
    page_fixture,
    tab_order,
)
from tests.conftest import state_of, wait_for

pytestmark = BROWSER

# What platforms (and careless config) may hand the UI.
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
JS_LINK = "javascript:alert(1)"
RLO = "\u202eexe.txt"  # RIGHT-TO-LEFT OVERRIDE: would read "txt.exe" reordered
# One long unbroken handle with markup in it: the layout must wrap it, not scroll.
LONG = "an-extremely-long-handle-without-any-break" * 3 + IMG
HOSTILE_HANDLES = [SCRIPT, IMG, JS_LINK, RLO, LONG]
# Strings the fakes send back: a Mastodon error body and an X problem document (quoted by
# the probes as evidence), a Mastodon move target, and a renamed X username.
MASTO_ERROR = '<script>alert("err")</script><img src=x onerror=alert(2)> \u202egnp.exe'
X_ERROR = '"><svg onload=alert(5)> javascript:alert(6) \u202elmth.exe'
MOVED_TO = '"><svg onload=alert(3)>@evil.example'
X_RENAMED = '<img src=x onerror=alert(4)>\u202e'
X_TOKEN = "x-t0ken-ui-browser"
PUBLIC_TITLE = "Status <script>alert(7)</script> \u202ekcatta"
# Chromium's computed colours for the stylesheet's --down-bg and --down-tint (light scheme).
DOWN_BG = "rgb(176, 0, 32)"
DOWN_TINT = "rgb(253, 232, 235)"
LIVE = re.compile(r"^Live: ")
NO_JS = "Live updates need JavaScript; use Refresh."


def _account(handle: str, platform: str = "masto", **fields: Any) -> dict[str, Any]:
    return {"platform": platform, "handle": handle, "protected": True, **fields}


PUBLIC_LABEL = {"visible": "yes"}
WATCHLIST = [
    # Config-side hostile strings ride on alice: team, owner and label values.
    _account("alice", team=SCRIPT, owner=IMG,
             labels={"tier": JS_LINK, "note": RLO, **PUBLIC_LABEL}),
    _account("carol", labels=PUBLIC_LABEL),  # gone from the start: an open outage
    _account("bob", protected=False),
    _account("dave"),  # moved to a hostile acct
    _account("erin"),  # only ever answers with a hostile error body
    *[_account(h, labels=PUBLIC_LABEL if h in (SCRIPT, RLO) else {}) for h in HOSTILE_HANDLES],
    _account(SCRIPT, platform="evil"),  # a javascript: profile_url template
    _account("jack", platform="x"),  # renamed to a hostile username
    _account("xerr", platform="x"),  # a hostile X problem document
]


def config_text(masto: str, x: str, *, state_path: str, ui: str = "") -> str:
    listed = "".join(f"  - {json.dumps(a)}\n" for a in WATCHLIST)
    return f"""
monitor:
  listen_host: 127.0.0.1
  listen_port: 0
  state_path: {state_path}
  shutdown_grace: 2s
defaults:
  interval: 100ms
  confirm_interval: 50ms
  failure_threshold: 2
  recovery_threshold: 1
  staleness: 1h
  timeout: 500ms
  jitter: 0.1
{ui}
platforms:
  masto:
    probe: mastodon
    base_url: {masto}
    rate_per_second: 1000
    burst: 100
    concurrency: 8
    profile_url: "https://mastodon.example/@{{handle}}"
  evil:
    probe: mastodon
    base_url: {masto}
    rate_per_second: 1000
    burst: 100
    profile_url: "javascript:alert('{{handle}}')"
  x:
    probe: x
    base_url: {x}
    token: {X_TOKEN}
    rate_per_second: 1000
    burst: 100
    profile_url: "https://x.example/{{handle}}"
accounts:
{listed}"""


PUBLIC_UI = f"""
ui:
  public:
    enabled: true
    title: {json.dumps(PUBLIC_TITLE)}
    accounts: ['visible="yes"']
"""


def _recorded(platform: str, status: int, body: dict[str, Any]) -> Recording:
    return Recording(path=Path(f"ui-browser-{platform}.json"), platform=platform,
                     status=status, body=json.dumps(body),
                     headers={"Content-Type": "application/json; charset=utf-8"},
                     source={}, expected={})


# The fakes' own rate limits (Mastodon's 300 per 5 min, X's 300 per 15 min) would be spent
# within a minute at these intervals, and the monitor would rightly pause: set far out of
# reach, so no test's timing depends on a pause.
UNLIMITED = 10**9


def _fakes() -> tuple[FakeMastodon, FakeX]:
    masto = FakeMastodon({"alice": "present", "carol": "gone", "bob": "present",
                          "erin": "present", **dict.fromkeys(HOSTILE_HANDLES, "present")},
                         rate_limit=UNLIMITED)
    masto.set_state("dave", "moved", moved_to=MOVED_TO)
    masto.serve_recorded("erin", _recorded("mastodon", 503, {"error": MASTO_ERROR}))
    x = FakeX({"jack": ("12", "present"), "xerr": ("13", "present")}, token=X_TOKEN)
    x.budget_limit = UNLIMITED
    x.serve_recorded("xerr", _recorded("x", 503, {
        "title": X_ERROR, "detail": X_ERROR, "type": "about:blank", "status": 503}))
    return masto, x


@dataclass
class Ui:
    mon: Monitor
    masto: FakeMastodon
    x: FakeX

    @property
    def url(self) -> str:
        assert self.mon.port is not None
        return f"http://127.0.0.1:{self.mon.port}"

    def page_of(self, platform: str, handle: str) -> str:
        return self.url + text.account_path(platform, handle)

    def watched(self, platform: str, handle: str) -> Any:
        return self.mon.accounts[AccountKey(platform, handle)]

    def outages(self, handle: str, platform: str = "masto") -> list[Outage]:
        assert self.mon.store is not None
        return self.mon.store.outages(platform=platform, handle=handle)


async def _settled(ui: Ui) -> None:
    """Everyone answered as set up; jack renamed (after his id was learned, so the rename
    is followed as a rename, not an outage)."""
    mon = ui.mon

    def ready() -> bool:
        return (state_of(mon, "masto", "carol") is State.DOWN
                and all(state_of(mon, "masto", h) is State.UP
                        for h in ("alice", "bob", *HOSTILE_HANDLES))
                and state_of(mon, "x", "jack") is State.UP
                and ui.watched("masto", "erin").last_error is not None
                and ui.watched("x", "xerr").last_error is not None
                and ui.watched("masto", "dave").moved_to is not None)
    await wait_for(ready, what="the watchlist settled (carol down, the rest as set up)")
    ui.x.rename("jack", X_RENAMED)
    await wait_for(lambda: ui.watched("x", "jack").current_handle == X_RENAMED,
                   what="jack's rename seen")


async def _running(tmp_path: Path, ui_section: str = "") -> AsyncIterator[Ui]:
    masto, x = _fakes()
    async with masto.running() as masto_base, x.running() as x_base:
        mon = Monitor(parse_config(config_text(masto_base, x_base, state_path=str(
            tmp_path / "state.db"), ui=ui_section), "test.yaml", env={}))
        await mon.start()
        try:
            running = Ui(mon, masto, x)
            await _settled(running)
            yield running
        finally:
            await mon.stop()


@pytest.fixture(autouse=True)
def no_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """No token from the machine running the tests changes who the UI thinks we are."""
    for name in ("ACCMON_WRITE_TOKEN", "ACCMON_READ_TOKEN", "ACCMON_WRITE_TOKEN_FILE",
                 "ACCMON_READ_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest_asyncio.fixture(name="ui", loop_scope="session")
async def ui_fixture(tmp_path: Path) -> AsyncIterator[Ui]:
    """Loopback listener, no tokens (the quick start: full view). Ask for it before
    ``page`` so the page (and its live stream) closes before the monitor stops."""
    async for running in _running(tmp_path):
        yield running


@pytest_asyncio.fixture(name="public_ui", loop_scope="session")
async def public_ui_fixture(tmp_path: Path) -> AsyncIterator[Ui]:
    async for running in _running(tmp_path, PUBLIC_UI):
        yield running


# ----------------------------------------------------------------- page helpers


def css_string(value: str) -> str:
    """``value`` as a CSS string literal, for attribute selectors on hostile handles."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def row(page: Page, platform: str, handle: str) -> Locator:
    return page.locator(f'[data-testid="account-row"][data-platform={css_string(platform)}]'
                        f"[data-handle={css_string(handle)}]")


async def shot(page: Page, name: str) -> None:
    """A named screenshot beside the harness's one per test."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=SCREENSHOTS / f"test_ui_browser.{name}.png", full_page=True)


async def open_live(page: Page, url: str) -> None:
    """Load ``url`` and wait until app.js has the live stream open (its own words in the
    footer): changes after this reach the page. It also proves the page's own script runs,
    so "no hostile script ran" is not true merely because nothing could."""
    await page.goto(url)
    await expect(page.get_by_test_id("live-status")).to_have_text(LIVE)


async def bdi_texts(scope: Locator) -> list[str]:
    """The text of every <bdi> (where the UI puts platform and people's strings)."""
    return await scope.locator("bdi").all_text_contents()


async def dom_census(page: Page) -> dict[str, Any]:
    """What a script injection would leave behind: inline handlers, foreign elements,
    scripts, and every link's scheme as the browser resolved it."""
    return await page.evaluate("""() => {
        const all = [...document.querySelectorAll('*')];
        return {
          handlers: all.flatMap((el) => [...el.attributes].map((a) => a.name)
                                 .filter((n) => n.startsWith('on'))
                                 .map((n) => el.tagName.toLowerCase() + '[' + n + ']')),
          foreign: all.map((el) => el.tagName.toLowerCase())
                      .filter((t) => ['img', 'svg', 'iframe', 'object', 'embed', 'base']
                                     .includes(t)),
          scripts: [...document.scripts].map((s) => s.getAttribute('src') || 'inline'),
          schemes: [...document.querySelectorAll('[href]')].map((el) => el.href
                      ? new URL(el.href).protocol : 'none'),
          hrefs: [...document.querySelectorAll('[href]')].map((el) => el.getAttribute('href')),
        };
    }""")


async def assert_inert(page: Page, status: int | None = None) -> None:
    """Nothing ran, nothing was refused, nothing foreign is in the DOM, no link but ours.
    ``status``: the page itself was an error answer, whose load Chromium reports as a
    console error of its own (not a script's): that one line alone is allowed."""
    if status is not None:
        record = await flush(page)
        own = f"Failed to load resource: the server responded with a status of {status} "
        record.console = [(kind, said, url) for kind, said, url in record.console
                          if not (kind == "error" and said.startswith(own) and url == page.url)]
    await assert_no_script_ran(page)
    census = await dom_census(page)
    where = page.url
    assert not census["handlers"], f"inline event handlers on {where}: {census['handlers']}"
    assert not census["foreign"], f"injected elements on {where}: {census['foreign']}"
    assert len(census["scripts"]) == 1 and re.fullmatch(
        r"/static/app\.[0-9a-f]{12}\.js", census["scripts"][0]), (where, census["scripts"])
    assert set(census["schemes"]) <= {"http:", "https:"}, (where, census["hrefs"])
    assert not [h for h in census["hrefs"]
                if re.sub(r"[\s\x00-\x1f]", "", h).lower().startswith("javascript:")]


# What a keyboard user should be able to reach: every link and form control that is shown.
FOCUSABLE_JS = """() => [...document.querySelectorAll(
        'a[href], button, input, select, textarea, [tabindex]')]
    .filter((el) => !el.disabled && el.tabIndex >= 0 && !el.closest('[hidden]')
                    && el.getClientRects().length > 0
                    && getComputedStyle(el).visibility !== 'hidden')
    .map((el) => ({tag: el.tagName.toLowerCase(), href: el.getAttribute('href'),
                   text: (el.innerText || el.value || '').trim()}))"""

# Where focus is and whether a sighted keyboard user can see it.
FOCUS_RING_JS = """() => {
    const el = document.activeElement;
    if (!el || el === document.body) return null;
    const style = getComputedStyle(el), box = el.getBoundingClientRect();
    return {tag: el.tagName.toLowerCase(), href: el.getAttribute('href'),
            text: (el.innerText || el.value || '').trim(),
            visible: el.matches(':focus-visible'), outline: style.outlineStyle,
            width: parseFloat(style.outlineWidth),
            onScreen: box.right > 0 && box.left < innerWidth && box.bottom > 0
                      && box.top < innerHeight};
}"""


async def assert_keyboard_reaches_everything(page: Page) -> int:
    """Tab lands on exactly the page's links and controls, in document order, and each one
    shows a focus ring (:focus-visible with a real outline) on screen when it does."""
    expected = await page.evaluate(FOCUSABLE_JS)
    reached = [{"tag": f.tag, "href": f.href, "text": f.text} for f in await tab_order(page)]
    assert reached == expected, (
        f"Tab order on {page.url} differs from the page's links and controls:\n"
        f"  missed: {[e for e in expected if e not in reached]}\n"
        f"  extra: {[r for r in reached if r not in expected]}")
    # Second round for the rings: where Tab starts after focus has left the page depends on
    # the browser, so go round until each element has been seen focused.
    unchecked = [json.dumps(e, sort_keys=True) for e in expected]
    for _ in range(2 * len(expected) + 3):
        if not unchecked:
            break
        await page.keyboard.press("Tab")
        ring = await page.evaluate(FOCUS_RING_JS)
        if ring is None:
            continue
        what = {k: ring[k] for k in ("tag", "href", "text")}
        assert ring["visible"] and ring["outline"] != "none" and ring["width"] >= 2, (
            f"no visible focus ring on {what} at {page.url}: {ring}")
        assert ring["onScreen"], f"{what} is focused off screen at {page.url}"
        key = json.dumps(what, sort_keys=True)
        if key in unchecked:
            unchecked.remove(key)
    assert not unchecked, f"never saw these focused on {page.url}: {unchecked}"
    return len(expected)


def span_bounds(outage: Outage) -> str:
    """The duration as the page must word it for a recovered outage (store row bounds)."""
    assert outage.duration_bounds is not None
    low, high = (text.span(b) for b in outage.duration_bounds)
    said = f"about {low}" if low == high else f"between {low} and {high}"
    if outage.last_seen_present_at is None:
        said += " (never seen present before it: it may have begun earlier)"
    return said


def squash(value: str) -> str:
    return " ".join(value.split())


# ----------------------------------------------------------------- live: red within 2 s


async def test_protected_account_vanishing_turns_red_live_within_2_s_without_reload(
        ui: Ui, page: Page) -> None:
    await open_live(page, ui.url + "/")
    alice = row(page, "masto", "alice")
    await expect(alice).to_have_attribute("data-status", "up")
    await expect(alice).to_have_attribute("data-protected", "true")
    await expect(page.get_by_test_id("stale-notice")).to_be_hidden()
    await shot(page, "overview-desktop")
    navigations: list[str] = []
    page.on("framenavigated",
            lambda frame: navigations.append(frame.url) if frame == page.main_frame else None)
    await page.evaluate("() => { window.__accmonMarker = 'set before the change'; }")

    began = time.monotonic()
    ui.masto.set_state("alice", "gone")
    await expect(alice).to_have_attribute("data-status", "down", timeout=2_000)
    took = time.monotonic() - began
    print(f"alice gone on the fake -> her row down in the open overview: {took:.2f} s")

    assert state_of(ui.mon, "masto", "alice") is State.DOWN
    await expect(alice).to_have_attribute("data-state", "down")
    await expect(alice.get_by_test_id("state-label")).to_have_text("Down")
    await expect(alice.get_by_test_id("state-reason")).to_have_text("not found")
    badge = alice.get_by_test_id("state-label")
    await expect(badge).to_have_css("background-color", DOWN_BG)
    await expect(alice).to_have_css("background-color", DOWN_TINT)
    await expect(page.locator('[data-testid="summary-count"][data-status="down"]')
                 ).to_have_text("2")
    await expect(page).to_have_title(re.compile(r"\(2 down\)$"))
    # The open-outage list cannot show alice's new outage without a reload: it says so.
    await expect(page.get_by_test_id("stale-notice")).to_be_visible()
    assert await page.evaluate("() => window.__accmonMarker") == "set before the change"
    assert navigations == [], f"the page navigated: {navigations}"
    await assert_inert(page)


# ----------------------------------------------------------------- the outage's bounds


async def test_account_page_shows_the_recovered_outage_with_the_stores_bounds(
        ui: Ui, page: Page) -> None:
    ui.masto.set_state("alice", "gone")
    await wait_for(lambda: state_of(ui.mon, "masto", "alice") is State.DOWN, what="alice down")
    await open_live(page, ui.page_of("masto", "alice"))
    state = page.get_by_test_id("account-state")
    await expect(state).to_have_attribute("data-status", "down")
    await expect(page.locator('[data-testid="outage-row"][data-open="true"]')).to_have_count(1)

    ui.masto.set_state("alice", "present")
    await expect(state).to_have_attribute("data-status", "up")  # live, on the account page
    await expect(state.get_by_test_id("state-label")).to_have_text("Up")
    await wait_for(lambda: ui.outages("alice") and ui.outages("alice")[0].recovered_at,
                   what="alice's outage recovered in the store")
    (outage,) = ui.outages("alice")
    await page.reload()

    shown = page.locator(f'[data-testid="outage-row"][data-outage-id="{outage.id}"]')
    await expect(shown).to_have_attribute("data-open", "false")
    await expect(shown.get_by_test_id("outage-duration")).to_have_text(span_bounds(outage))
    assert outage.last_seen_present_at is not None and outage.recovered_at is not None
    began = squash(await shown.get_by_test_id("outage-began").inner_text())
    ended = squash(await shown.get_by_test_id("outage-ended").inner_text())
    assert re.fullmatch(rf"after .*{text.utc(outage.last_seen_present_at)}, "
                        rf"by .*{text.utc(outage.first_seen_absent_at)}", began), began
    assert re.fullmatch(
        rf"after .*{text.utc(outage.last_seen_absent_at or outage.first_seen_absent_at)}, "
        rf"by .*{text.utc(outage.recovered_at)}", ended), ended
    low, high = outage.duration_bounds or (0.0, 0.0)
    assert 0 <= low <= high
    kinds = await page.get_by_test_id("timeline-row").evaluate_all(
        "(rows) => rows.map((r) => r.dataset.kind)")
    assert "vanished" in kinds and kinds.index("vanished") > 0, \
        f"newest first, the comeback above the vanishing: {kinds}"
    today = page.get_by_test_id("availability-day").last
    assert await today.get_attribute("data-status") in ("down", "maybe")
    await shot(page, "account-recovered")
    await assert_inert(page)


# ----------------------------------------------------------------- keyboard


async def test_keyboard_reaches_every_link_and_control_with_focus_visible(
        ui: Ui, page: Page) -> None:
    await open_live(page, ui.url + "/")
    reached = await assert_keyboard_reaches_everything(page)
    assert reached >= 20, f"only {reached} focusable elements on the overview"
    # A link reached by keyboard works by keyboard (from a fresh load: where Tab starts
    # after focus has left the page is the browser's business).
    await open_live(page, ui.url + "/")
    for _ in range(reached):
        await page.keyboard.press("Tab")
        if await page.evaluate("() => document.activeElement.closest("
                               "'[data-testid=\"account-row\"]')?.dataset.handle === 'alice'"
                               " && document.activeElement.dataset.testid === 'account-link'"):
            break
    else:
        pytest.fail("Tab never reached alice's account link")
    await page.keyboard.press("Enter")
    await page.wait_for_url(ui.page_of("masto", "alice"))

    for platform, handle in (("masto", "alice"), ("masto", "carol"), ("x", "jack")):
        await open_live(page, ui.page_of(platform, handle))
        await assert_keyboard_reaches_everything(page)
    # On a freshly loaded page the skip link comes first and takes focus to the content.
    await open_live(page, ui.page_of("masto", "carol"))
    await page.keyboard.press("Tab")
    await expect(page.get_by_test_id("skip-link")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("main#main")).to_be_focused()
    await assert_inert(page)


# ----------------------------------------------------------------- 375 px


async def test_no_sideways_scroll_at_375_px_even_with_long_hostile_strings(
        ui: Ui, page: Page) -> None:
    await page.set_viewport_size({"width": PHONE_WIDTH, "height": PHONE_HEIGHT})
    views = {"overview-375": ui.url + "/",
             "account-375": ui.page_of("masto", "alice"),
             "account-long-handle-375": ui.page_of("masto", LONG),
             "account-moved-375": ui.page_of("masto", "dave"),
             "account-error-375": ui.page_of("masto", "erin"),
             "account-renamed-375": ui.page_of("x", "jack"),
             "account-down-375": ui.page_of("masto", "carol")}
    for name, url in views.items():
        await open_live(page, url)
        await no_horizontal_scroll(page)
        await shot(page, name)
        await assert_inert(page)
    await page.goto(ui.url + "/?q=" + quote(LONG))
    await expect(page.get_by_test_id("account-row")).to_have_count(1)
    await no_horizontal_scroll(page)
    await shot(page, "overview-filtered-375")


# ----------------------------------------------------------------- hostile strings


def _account_pages(ui: Ui) -> Iterable[tuple[str, str]]:
    yield from (("masto", h) for h in HOSTILE_HANDLES)
    yield from (("evil", SCRIPT), ("masto", "alice"), ("masto", "dave"), ("masto", "erin"),
                ("x", "jack"), ("x", "xerr"))


async def test_hostile_strings_stay_text_and_nothing_runs(ui: Ui, page: Page) -> None:
    await open_live(page, ui.url + "/")
    await assert_inert(page)
    links = page.get_by_test_id("account-link")
    handles = [squash(t) for t in await links.locator("bdi").all_text_contents()]
    for handle in HOSTILE_HANDLES:
        assert handle in handles, f"{handle!r} not shown as itself on the overview"
        assert await row(page, "masto", handle).count() == 1
    assert X_RENAMED in await bdi_texts(row(page, "x", "jack"))
    assert MOVED_TO in await bdi_texts(row(page, "masto", "dave"))
    rlo_link = row(page, "masto", RLO).get_by_test_id("account-link")
    await expect(rlo_link.locator("xpath=..")).to_contain_text(
        "(contains hidden text-direction characters)")

    for platform, handle in _account_pages(ui):
        await open_live(page, ui.page_of(platform, handle))
        await assert_inert(page)
        header = page.get_by_test_id("account-header")
        assert (await bdi_texts(header))[0] == handle, (platform, handle)
        assert not text.has_direction_controls(await page.title()), await page.title()
    # Each string a platform sent reads back exactly as the monitor recorded it.
    await open_live(page, ui.page_of("masto", "erin"))
    erin = ui.watched("masto", "erin").last_error
    assert "<script>" in erin.evidence and "onerror" in erin.evidence
    assert await bdi_texts(page.get_by_test_id("last-error")) == [erin.evidence]
    await open_live(page, ui.page_of("x", "xerr"))
    xerr = ui.watched("x", "xerr").last_error
    assert "<svg" in xerr.evidence
    assert await bdi_texts(page.get_by_test_id("last-error")) == [xerr.evidence]
    await open_live(page, ui.page_of("masto", "dave"))
    assert await bdi_texts(page.get_by_test_id("moved-to")) == [MOVED_TO]
    await open_live(page, ui.page_of("x", "jack"))
    assert await bdi_texts(page.get_by_test_id("current-handle")) == [X_RENAMED]
    await expect(page.get_by_test_id("current-handle")).to_contain_text("hidden text-direction")
    await expect(page.get_by_test_id("profile-link")).to_have_attribute(
        "href", "https://x.example/jack")
    await open_live(page, ui.page_of("masto", "alice"))
    details = await bdi_texts(page.get_by_test_id("details"))
    for config_string in (SCRIPT, IMG, JS_LINK, RLO):
        assert config_string in details, f"{config_string!r} not shown as text in details"
    # A javascript: template is never a link; a javascript: handle is quoted into https.
    await open_live(page, ui.page_of("evil", SCRIPT))
    await expect(page.get_by_test_id("profile-link")).to_have_count(0)
    await open_live(page, ui.page_of("masto", JS_LINK))
    await expect(page.get_by_test_id("profile-link")).to_have_attribute(
        "href", "https://mastodon.example/@javascript%3Aalert%281%29")

    # A refused filter quotes nothing that runs; an unknown account's page neither.
    for refused, status in ((f"/?platform={quote(SCRIPT)}", 400),
                            (f"/?state={quote(IMG)}", 400),
                            (f"/?q={quote(SCRIPT * 30)}", 400),
                            (text.account_path("masto", RLO + SCRIPT), 404)):
        answer = await page.goto(ui.url + refused)
        assert answer is not None and answer.status == status, refused
        await expect(page.get_by_test_id("problem")).to_be_visible()
        await assert_inert(page, status)
        assert not text.has_direction_controls(await page.title()), refused
    # Through the filter form and the live stream too.
    await page.goto(ui.url + "/?q=" + quote(IMG))
    await expect(page.get_by_test_id("filter-q")).to_have_value(IMG)
    await assert_inert(page)
    await open_live(page, ui.url + "/")
    ui.masto.set_state(SCRIPT, "gone")
    await expect(row(page, "masto", SCRIPT)).to_have_attribute("data-status", "down")
    await expect(row(page, "masto", SCRIPT).get_by_test_id("state-label")).to_have_text("Down")
    await assert_inert(page)
    await open_live(page, ui.page_of("masto", RLO))
    ui.masto.set_state(RLO, "gone")
    await expect(page.get_by_test_id("account-state")).to_have_attribute("data-status", "down")
    await assert_inert(page)


# ----------------------------------------------------------------- public view


async def test_public_view_shows_chosen_accounts_as_text_without_evidence(
        public_ui: Ui, page: Page) -> None:
    await open_live(page, public_ui.url + "/")
    await assert_inert(page)
    await expect(page.get_by_test_id("viewer")).to_contain_text("Public view")
    assert squash(await page.locator("h1").inner_text()).startswith(squash(PUBLIC_TITLE))
    shown = await page.get_by_test_id("account-row").evaluate_all(
        "(rows) => rows.map((r) => r.dataset.handle)")
    assert sorted(shown) == sorted(["alice", "carol", SCRIPT, RLO])
    await expect(page.get_by_test_id("platform-health")).to_have_count(0)
    await shot(page, "public-overview")
    await no_horizontal_scroll(page)
    await shot(page, "public-overview-375")
    await page.set_viewport_size({"width": 1280, "height": 800})
    await open_live(page, public_ui.page_of("masto", "carol"))
    await assert_inert(page)
    for private in ("last-evidence", "last-error", "details", "silences"):
        await expect(page.get_by_test_id(private)).to_have_count(0)
    await expect(page.get_by_test_id("outage-row")).to_have_count(1)
    await shot(page, "public-account")
    await assert_keyboard_reaches_everything(page)


async def test_public_title_with_a_direction_control_is_isolated_text(
        public_ui: Ui, page: Page) -> None:
    await open_live(page, public_ui.url + "/")
    title = await page.title()
    assert not text.has_direction_controls(title), f"direction control in <title>: {title!r}"
    assert PUBLIC_TITLE.replace("\u202e", "\ufffd") in title
    heading = page.locator("h1")
    assert await bdi_texts(heading) == [PUBLIC_TITLE]
    await expect(heading).to_contain_text("(contains hidden text-direction characters)")
    await assert_inert(page)


# ----------------------------------------------------------------- JavaScript off


async def test_without_javascript_links_filter_and_refresh_still_work(
        ui: Ui, browser: Browser) -> None:
    context = await browser.new_context(java_script_enabled=False,
                                        viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    page = await context.new_page()
    console: list[str] = []
    page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
    try:
        await page.goto(ui.url + "/")
        await expect(page.get_by_test_id("live-status")).to_have_text(NO_JS)
        await expect(row(page, "masto", "bob")).to_have_attribute("data-status", "up")
        await shot(page, "nojs-overview")

        await row(page, "masto", "alice").get_by_test_id("account-link").click()
        await page.wait_for_url(ui.page_of("masto", "alice"))
        await expect(page.get_by_test_id("account-state")).to_have_attribute(
            "data-status", "up")
        await expect(page.get_by_test_id("availability-bar")).to_be_visible()
        await shot(page, "nojs-account")
        await page.get_by_role("link", name="← All accounts").click()
        await page.wait_for_url(ui.url + "/")

        await page.get_by_test_id("filter-q").fill("car")
        await page.get_by_test_id("filter-state").select_option("down")
        await page.get_by_test_id("filter-submit").click()
        await page.wait_for_url(re.compile(r"/\?q=car&platform=&state=down$"))
        assert await page.get_by_test_id("account-row").evaluate_all(
            "(rows) => rows.map((r) => r.dataset.handle)") == ["carol"]
        await page.get_by_test_id("filter-clear").click()
        await page.wait_for_url(ui.url + "/")

        ui.masto.set_state("bob", "gone")
        await wait_for(lambda: state_of(ui.mon, "masto", "bob") is State.DOWN,
                       what="bob down")
        await expect(row(page, "masto", "bob")).to_have_attribute("data-status", "up")
        await page.get_by_test_id("refresh-link").click()
        await expect(row(page, "masto", "bob")).to_have_attribute("data-status", "down")
        await expect(row(page, "masto", "bob").get_by_test_id("state-label")).to_have_text(
            "Down")
        await shot(page, "nojs-refreshed")
        assert not [c for c in console if c.startswith("error")], console
    finally:
        await context.close()
