"""Real headless Chromium for tests: Debian's ``chromium`` driven by Playwright.

A test module opts in with::

    from tests.browser import BROWSER, browser_fixture, page_fixture  # noqa: F401 - fixtures
    pytestmark = BROWSER  # the asyncio loop the browser lives on

and then asks for ``page`` (a fresh context and tab per test) or ``browser`` (one per worker
session: Chromium takes a few hundred ms to start, a tab much less). The fixtures are named
apart from their functions so a test's ``page`` argument does not shadow an import.

Why these choices:

- ``executable_path=/usr/bin/chromium``, never ``playwright install``: that downloads a
  browser build of Playwright's own, which this machine (and CI) cannot fetch. dev.py
  installs Debian's package as root; without it every browser test skips, saying so.
- Playwright's objects belong to the event loop that started them, so the browser, each page
  and the tests using them all run on pytest-asyncio's *session* loop (:data:`BROWSER`).
- Every page records what its scripts did (console, uncaught errors, dialogs, CSP
  violations) in a :class:`PageRecord`; :func:`assert_no_script_ran` first flushes what is
  in flight, then fails with everything it saw. A page whose test did not declare trouble
  expected (:meth:`PageRecord.expect_trouble`) also fails at teardown on a dialog, an
  uncaught error or a CSP violation, so a forgotten assertion still catches them.
- CSP violations are caught in the page, by a ``securitypolicyviolation`` listener that
  :meth:`BrowserContext.add_init_script` installs before any page script (CDP-injected
  scripts are not subject to the page's CSP), reporting through a Playwright binding. That
  works on any page, needs no server support, and arrives in order with the rest; the
  ``report-uri`` path (a POST the browser sends to the server) is proved separately in
  tests/test_browser_harness.py.
- Each test leaves a full-page screenshot in ``artifacts/screenshots/<module>.<test>.png``.
"""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

# The test extra installs playwright (dev.py test does): a missing one fails collection.
from playwright.async_api import Browser, ConsoleMessage, Dialog, Error, Page, async_playwright

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO / "artifacts" / "screenshots"
# Narrowest common phone layout (iPhone SE / 12 mini class) the UI must fit without
# scrolling sideways.
PHONE_WIDTH = 375
PHONE_HEIGHT = 812
# Playwright waits 30 s by default; a page on loopback that takes 10 s is broken.
ACTION_TIMEOUT_MS = 10_000
# Every browser test runs on the loop the browser was started on.
BROWSER = pytest.mark.asyncio(loop_scope="session")

# The name of the binding the init script reports CSP violations (and flush sentinels) to.
_REPORT = "__accmonHarnessReport"
_INIT_SCRIPT = """
(() => {
  const report = window.NAME;
  document.addEventListener('securitypolicyviolation', (e) => {
    report('csp', {directive: e.effectiveDirective, blocked: e.blockedURI,
                   sample: e.sample, disposition: e.disposition,
                   source: e.sourceFile, line: e.lineNumber});
  }, true);
})();
""".replace("NAME", _REPORT)


@dataclass(frozen=True)
class CspViolation:
    directive: str  # effectiveDirective: "script-src-elem", "img-src", ...
    blocked: str  # "inline", "eval" or the URL refused
    sample: str  # first 40 characters of the refused code; empty unless CSP says 'report-sample'
    disposition: str  # "enforce" or "report"


@dataclass
class PageRecord:
    """Everything a page's scripts did that a test may want to deny."""

    console: list[tuple[str, str, str]] = field(default_factory=list)  # (type, text, url)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[tuple[str, str]] = field(default_factory=list)  # (type, message)
    csp: list[CspViolation] = field(default_factory=list)
    trouble_expected: bool = False
    flushes: int = 0

    def expect_trouble(self) -> None:
        """This test provokes dialogs, errors or CSP violations on purpose (a negative
        control): do not fail it at teardown for them."""
        self.trouble_expected = True

    @property
    def console_errors(self) -> list[str]:
        return [f"{text} ({url})" if url else text
                for kind, text, url in self.console if kind == "error"]

    def problems(self) -> list[str]:
        """One line per sign that a script ran or was refused, empty if none."""
        return ([f"dialog {kind}: {message!r}" for kind, message in self.dialogs]
                + [f"page error: {error}" for error in self.page_errors]
                + [f"console error: {text}" for text in self.console_errors]
                + [f"CSP {v.disposition} {v.directive} blocked {v.blocked!r} "
                   f"(sample {v.sample!r})" for v in self.csp])


_RECORDS: weakref.WeakKeyDictionary[Page, PageRecord] = weakref.WeakKeyDictionary()


def record_of(page: Page) -> PageRecord:
    return _RECORDS[page]


async def flush(page: Page) -> PageRecord:
    """Wait until everything the page did so far has reached its record: a sentinel goes
    through the same binding as CSP reports, after two turns of the page's task queue, and
    Playwright delivers a page's events in order, so once Python has taken the sentinel it
    has taken every console message, error, dialog and violation that came before."""
    record = _RECORDS[page]
    before = record.flushes
    await page.evaluate(
        """async (name) => {
             for (let i = 0; i < 2; i++) await new Promise((r) => setTimeout(r, 0));
             await window[name]('flush', null);
           }""", _REPORT)
    assert record.flushes > before, "the page's flush sentinel never reached the harness"
    return record


async def assert_no_script_ran(page: Page) -> None:
    """Fail, listing what happened, if the page opened a dialog, threw, logged a console
    error or had a script (or any resource) refused by its Content-Security-Policy."""
    problems = (await flush(page)).problems()
    assert not problems, "the page ran or tried to run script:\n  " + "\n  ".join(problems)


async def no_horizontal_scroll(page: Page, width: int = PHONE_WIDTH) -> None:
    """Resize the page to a phone's width and fail, naming the widest offenders, if its
    content is wider than the viewport (the reader would have to scroll sideways)."""
    await page.set_viewport_size({"width": width, "height": PHONE_HEIGHT})
    overflow = await page.evaluate(
        """(width) => {
             const doc = document.documentElement;
             const wide = [...document.body.querySelectorAll('*')]
               .map((el) => [el, el.getBoundingClientRect().right])
               .filter(([, right]) => right > width + 0.5)
               .sort((a, b) => b[1] - a[1]).slice(0, 5)
               .map(([el, right]) => `${el.tagName.toLowerCase()}`
                    + (el.id ? `#${el.id}` : '')
                    + (el.className ? `.${String(el.className).split(' ').join('.')}` : '')
                    + ` ends at ${Math.round(right)}px`);
             return {scroll: doc.scrollWidth, client: doc.clientWidth, wide};
           }""", width)
    assert overflow["scroll"] <= overflow["client"], (
        f"at {width}px the page is {overflow['scroll']}px wide "
        f"(viewport {overflow['client']}px): {'; '.join(overflow['wide'])}")


@dataclass(frozen=True)
class Focused:
    tag: str  # "a", "button", "input", ...
    href: str | None  # the href attribute as written (None when there is none)
    text: str


async def tab_order(page: Page, limit: int = 200) -> list[Focused]:
    """Press Tab from the top of the page until focus comes back round (or leaves the
    page), and return each element it landed on, in order: what a keyboard user reaches."""
    await page.evaluate("() => { document.activeElement?.blur(); window.__accmonSeen = []; }")
    reached: list[Focused] = []
    for _ in range(limit):
        await page.keyboard.press("Tab")
        step = await page.evaluate(
            """() => {
                 const el = document.activeElement;
                 if (!el || el === document.body) return {done: true};
                 if (window.__accmonSeen.includes(el)) return {done: true};
                 window.__accmonSeen.push(el);
                 return {done: false, tag: el.tagName.toLowerCase(),
                         href: el.getAttribute('href'),
                         text: (el.innerText || el.value || '').trim()};
               }""")
        if step["done"]:
            return reached
        reached.append(Focused(step["tag"], step["href"], step["text"]))
    pytest.fail(f"Tab went round more than {limit} elements without coming back")


def _launch_args() -> list[str]:
    # Chromium refuses to start as root with its sandbox on ("Running as root without
    # --no-sandbox is not supported"), which is how CI and a container run; as any other
    # user the sandbox stays on.
    return ["--no-sandbox"] if os.geteuid() == 0 else []


@pytest_asyncio.fixture(name="browser", scope="session", loop_scope="session")
async def browser_fixture() -> AsyncIterator[Browser]:
    """One headless Chromium per worker session (startup is the slow part)."""
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed ({CHROMIUM} missing): "
                    "`python3 dev.py test` installs it when run as root, or "
                    "`apt-get install chromium`")
    async with async_playwright() as playwright:
        try:
            launched = await playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=_launch_args())
        except Error as error:
            pytest.fail(f"{CHROMIUM} is installed but did not start: {error.message}")
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture(name="page", loop_scope="session")
async def page_fixture(browser: Browser, request: pytest.FixtureRequest) -> AsyncIterator[Page]:
    """A fresh context (no cookies, no storage) and tab, recording what its scripts do; a
    screenshot of it is saved when the test ends, pass or fail."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(ACTION_TIMEOUT_MS)
    record = PageRecord()

    def on_report(_source: dict[str, Any], kind: str, detail: dict[str, Any] | None) -> None:
        if kind == "flush":
            record.flushes += 1
        elif kind == "csp" and detail is not None:
            record.csp.append(CspViolation(detail["directive"], detail["blocked"],
                                           detail["sample"], detail["disposition"]))

    await context.expose_binding(_REPORT, on_report)
    await context.add_init_script(_INIT_SCRIPT)
    tab = await context.new_page()
    _RECORDS[tab] = record
    tab.on("console", lambda msg: _on_console(record, msg))
    tab.on("pageerror", lambda error: record.page_errors.append(str(error)))
    tab.on("dialog", lambda dialog: _on_dialog(record, dialog))
    try:
        yield tab
    finally:
        await _save_screenshot(tab, request.node)
        await context.close()
    if not record.trouble_expected and (record.dialogs or record.page_errors or record.csp):
        pytest.fail("the page ran or tried to run script (call record_of(page)."
                    "expect_trouble() if the test means it):\n  "
                    + "\n  ".join(record.problems()))


def _on_console(record: PageRecord, message: ConsoleMessage) -> None:
    record.console.append((message.type, message.text, message.location.get("url", "")))


async def _on_dialog(record: PageRecord, dialog: Dialog) -> None:
    # A dialog blocks the page's scripts until answered: record it and dismiss it.
    record.dialogs.append((dialog.type, dialog.message))
    await dialog.dismiss()


async def _save_screenshot(tab: Page, node: pytest.Item) -> None:
    name = re.sub(r"[^A-Za-z0-9_.\-\[\]]+", "_", f"{node.path.stem}.{node.name}")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        await tab.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
    except Error as error:  # a crashed or closed page: the test's own failure says why
        print(f"no screenshot for {node.nodeid}: {error.message}")
