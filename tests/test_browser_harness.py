"""The browser harness (tests/browser.py) proves what it claims, and can fail.

A tiny aiohttp server on loopback serves a page under a strict Content-Security-Policy whose
text is attacker-controlled strings, escaped: in real Chromium nothing of them runs and all
of them read as text. The negative controls serve the same strings unescaped and check that
the harness sees it: under the CSP the inline script is refused and the violation reported
(in the page and to the server's report-uri); without a CSP the alert dialog is caught.
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import re
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio
from aiohttp import web
from playwright.async_api import Page

from tests.browser import (  # noqa: F401 - browser_fixture, page_fixture: the fixtures
    BROWSER,
    PHONE_WIDTH,
    REPO,
    SCREENSHOTS,
    assert_no_script_ran,
    browser_fixture,
    flush,
    no_horizontal_scroll,
    page_fixture,
    record_of,
    tab_order,
)
from tests.conftest import wait_for

pytestmark = BROWSER

STRICT_CSP = ("default-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; "
              "frame-ancestors 'none'; report-uri /csp-report")
# What platforms may hand us as a handle or display name.
HOSTILE = ["<script>alert(1)</script>",
           '"><img src=x onerror=alert(1)>',
           "javascript:alert(1)",
           # RIGHT-TO-LEFT OVERRIDE. <bdi> keeps it from reordering the text around it, but
           # inside it Chromium still draws "txt.exe": no CSS cancels an explicit override,
           # so a UI that must not be spoofed shows such controls visibly instead.
           "\u202eexe.txt"]
# Legitimate same-origin script: proves the pages run JavaScript at all, so "no hostile
# script ran" is not true merely because nothing could run.
APP_JS = "document.documentElement.dataset.appJs = 'ran';"
TROUBLE_JS = "console.error('harness: logged on purpose'); throw new Error('thrown on purpose');"


Handler = Callable[[web.Request], Awaitable[web.Response]]


@dataclass
class Site:
    base: str
    csp_reports: list[dict[str, Any]] = field(default_factory=list)


def page_of(strings: list[str], *, escape: bool) -> str:
    """An account list as the UI would render it: each string as text and in a link to its
    own page (the path percent-encoded); with ``escape=False``, the bug under test."""
    show = html.escape if escape else (lambda s: s)
    items = "".join(f'<li><a href="/account/{quote(s, safe="")}"><bdi class="hostile">'
                    f"{show(s)}</bdi></a></li>" for s in strings)
    return ("<!doctype html><html lang=en><head><meta charset=utf-8>"
            '<meta name=viewport content="width=device-width, initial-scale=1">'
            '<title>harness</title><script src="/app.js"></script></head>'
            f'<body><main><h1>Accounts</h1><ul>{items}</ul>'
            '<p><a href="/refresh">refresh</a></p></main></body></html>')


def build_app(site: Site) -> web.Application:
    def html_page(body: str, csp: str | None = STRICT_CSP) -> Handler:
        headers = {"Content-Security-Policy": csp} if csp else {}

        async def serve(_: web.Request) -> web.Response:
            return web.Response(text=body, content_type="text/html", headers=headers)
        return serve

    def asset(source: str, content_type: str) -> Handler:
        async def serve(_: web.Request) -> web.Response:
            return web.Response(text=source, content_type=content_type)
        return serve

    async def csp_report(request: web.Request) -> web.Response:
        # Chromium posts report-uri reports as application/csp-report JSON.
        site.csp_reports.append(json.loads(await request.read())["csp-report"])
        return web.Response(status=204)

    # Styled by a stylesheet: the CSP (style-src falls back to default-src 'self') refuses
    # inline style="" attributes, which the harness would report as a violation.
    wide = ('<!doctype html><html><head><meta name=viewport content="width=device-width">'
            '<link rel=stylesheet href="/wide.css"></head>'
            '<body><div id="wide">too wide</div></body></html>')
    async def favicon(_: web.Request) -> web.Response:
        # Chromium asks every origin for one; a 404 would be a console error on every page.
        return web.Response(status=204)

    routes = {
        "/": html_page(page_of(HOSTILE, escape=True)),
        "/unescaped": html_page(page_of(HOSTILE, escape=False)),
        "/unescaped-no-csp": html_page(page_of(HOSTILE, escape=False), csp=None),
        "/trouble": html_page('<!doctype html><script src="/trouble.js"></script>'),
        "/wide": html_page(wide),
        "/app.js": asset(APP_JS, "text/javascript"),
        "/trouble.js": asset(TROUBLE_JS, "text/javascript"),
        "/wide.css": asset("#wide { width: 600px }", "text/css"),
        "/favicon.ico": favicon,
    }
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    app.router.add_post("/csp-report", csp_report)
    return app


@pytest_asyncio.fixture(loop_scope="session")
async def site() -> AsyncIterator[Site]:
    runner = web.AppRunner(build_app(served := Site("")))
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    served.base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield served
    finally:
        await runner.cleanup()


async def test_escaped_hostile_strings_stay_text(page: Page, site: Site) -> None:
    await page.goto(site.base + "/")
    await assert_no_script_ran(page)
    assert await page.evaluate("document.documentElement.dataset.appJs") == "ran"
    shown = page.locator("bdi.hostile")
    assert await shown.all_inner_texts() == HOSTILE
    for i in range(len(HOSTILE)):
        assert await shown.nth(i).is_visible()
    # Markup in the strings made no elements: the only script is /app.js, no image at all.
    assert await page.locator("script").count() == 1
    assert await page.locator("img").count() == 0
    assert not site.csp_reports


async def test_inline_script_under_csp_is_refused_and_reported(page: Page, site: Site) -> None:
    """Negative control: unescaped, the strings become a <script> and an onerror handler;
    the CSP refuses both, the page's listener and the report-uri both say so, and the
    harness's assertion fails."""
    record_of(page).expect_trouble()
    await page.goto(site.base + "/unescaped")
    record = await flush(page)
    assert not record.dialogs
    refused = {(v.directive, v.blocked) for v in record.csp}
    assert ("script-src-elem", "inline") in refused
    await wait_for(lambda: any(r["effective-directive"] == "script-src-elem"
                               for r in site.csp_reports), timeout=5.0,
                   what="Chromium's report-uri POST for the refused inline script")
    with pytest.raises(AssertionError, match="CSP enforce script-src-elem"):
        await assert_no_script_ran(page)


async def test_unescaped_without_csp_the_dialog_is_caught(page: Page, site: Site) -> None:
    """Negative control: with no CSP the injected script runs; its alert is recorded
    (and dismissed, so the page goes on) and the harness's assertion fails on it."""
    record_of(page).expect_trouble()
    await page.goto(site.base + "/unescaped-no-csp")
    record = await flush(page)
    assert ("alert", "1") in record.dialogs
    with pytest.raises(AssertionError, match="dialog alert: '1'"):
        await assert_no_script_ran(page)


async def test_console_errors_and_uncaught_exceptions_are_caught(page: Page,
                                                                 site: Site) -> None:
    record_of(page).expect_trouble()
    await page.goto(site.base + "/trouble")
    record = await flush(page)
    assert record.console_errors == [f"harness: logged on purpose ({site.base}/trouble.js)"]
    assert any("thrown on purpose" in error for error in record.page_errors)
    with pytest.raises(AssertionError, match=r"page error: .*thrown on purpose"):
        await assert_no_script_ran(page)


async def test_phone_width_fits_and_a_wide_page_fails(page: Page, site: Site) -> None:
    await page.goto(site.base + "/")
    await no_horizontal_scroll(page)
    await page.goto(site.base + "/wide")
    with pytest.raises(AssertionError, match=rf"at {PHONE_WIDTH}px .* div#wide ends at 60"):
        await no_horizontal_scroll(page)


async def test_tab_reaches_every_link_in_order(page: Page, site: Site) -> None:
    await page.goto(site.base + "/")
    reached = await tab_order(page)
    links = await page.eval_on_selector_all(
        "a[href]", "links => links.map((a) => a.getAttribute('href'))")
    assert [f.href for f in reached] == links
    assert len(links) == len(HOSTILE) + 1
    assert all(href.startswith("/") for href in links)  # no javascript: link among them
    await assert_no_script_ran(page)


async def run_child_pytest(directory: Path) -> str:
    """Run the tests in ``directory`` in a child pytest (no xdist) and return its output."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "no:xdist",
        "-o", "asyncio_default_fixture_loop_scope=function", str(directory),
        cwd=directory, env=dict(os.environ, PYTHONPATH=str(REPO)),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    output = (await asyncio.wait_for(child.communicate(), timeout=120))[0].decode()
    return f"exit {child.returncode}\n{output}"


@pytest.mark.slow
async def test_without_chromium_browser_tests_skip_saying_how_to_get_it(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(textwrap.dedent("""
        from pathlib import Path
        import tests.browser
        tests.browser.CHROMIUM = Path("/nonexistent/chromium")
    """))
    (tmp_path / "test_needs_chromium.py").write_text(textwrap.dedent("""
        from tests.browser import BROWSER, browser_fixture, page_fixture

        pytestmark = BROWSER

        async def test_needs_it(page):
            raise AssertionError("ran without a browser")
    """))
    output = await run_child_pytest(tmp_path)
    assert output.startswith("exit 0\n"), output
    assert re.search(r"^1 skipped in ", output, re.MULTILINE), output
    assert "/nonexistent/chromium missing" in output and "apt-get install chromium" in output


@pytest.mark.slow
async def test_teardown_fails_a_test_that_forgot_to_look(tmp_path: Path) -> None:
    """The safety net: a test that never asserts still fails when its page opened a dialog,
    and its screenshot is written; run in a child pytest, since the failure is the point."""
    shot = SCREENSHOTS / "test_forgot.test_forgets.png"
    shot.unlink(missing_ok=True)
    (tmp_path / "test_forgot.py").write_text(textwrap.dedent("""
        from tests.browser import BROWSER, browser_fixture, page_fixture

        pytestmark = BROWSER

        async def test_forgets(page):
            await page.set_content("<script>alert('unnoticed')</script>")
    """))
    output = await run_child_pytest(tmp_path)
    assert output.startswith("exit 1\n"), output
    assert re.search(r"^1 passed, 1 error in ", output, re.MULTILINE), output
    assert "dialog alert: 'unnoticed'" in output, output
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
