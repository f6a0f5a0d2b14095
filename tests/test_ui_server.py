"""The web UI through a real monitor on loopback, watching fake platforms: the overview and
the account page, the security headers on every UI answer, hostile platform strings kept
as text (at the HTML level; tests/test_ui_browser.py proves it in Chromium), who sees what
(loopback, token, Basic login, public mode, the live stream filtered alike), filtering and
pagination, and the overview's size on the wire.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.app import Monitor
from monitor.config import parse_config
from monitor.fakes.mastodon import FakeMastodon
from monitor.fakes.recorded import Recording
from monitor.model import AccountKey, State
from monitor.ui import routes, text
from tests.conftest import state_of, wait_for

READ = "read-T0ken-ui-5b1c"
WRITE = "write-T0ken-ui-9e07"
TOKEN_VARS = ("ACCMON_WRITE_TOKEN", "ACCMON_READ_TOKEN", "ACCMON_WRITE_TOKEN_FILE",
              "ACCMON_READ_TOKEN_FILE")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
JS_LINK = "javascript:alert(1)"
RLO = "\u202eexe.txt"
HOSTILE = [SCRIPT, IMG, JS_LINK, RLO]
# What the platform says when "erin" is looked up: its error text ends up in evidence.
HOSTILE_ERROR = '<script>alert("err")</script><img src=x onerror=alert(2)> \u202egnp.exe'
MOVED_TO = '"><svg onload=alert(3)>@evil.example'
UI_SOURCE = Path(__file__).resolve().parent.parent / "monitor" / "ui"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No token from the machine running the tests leaks into them."""
    for name in TOKEN_VARS:
        monkeypatch.delenv(name, raising=False)


# ----------------------------------------------------------------- the monitor under test


def config_text(base: str, accounts: Iterable[dict[str, Any]], *, state_path: str,
                listen_host: str = "127.0.0.1", ui: str = "", interval: str = "100ms",
                evil_profile: bool = True) -> str:
    """Two platforms on one fake Mastodon: ``masto`` links profiles over https, ``evil``
    has a ``javascript:`` profile template (which must never become a link)."""
    listed = "".join(f"  - {json.dumps(a)}\n" for a in accounts)
    evil = f"""  evil:
    probe: mastodon
    base_url: {base}
    rate_per_second: 1000
    burst: 100
    profile_url: "javascript:alert('{{handle}}')"
""" if evil_profile else ""
    return f"""
monitor:
  listen_host: {listen_host}
  listen_port: 0
  state_path: {state_path}
  shutdown_grace: 2s
defaults:
  interval: {interval}
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
    base_url: {base}
    rate_per_second: 1000
    burst: 100
    concurrency: 8
    profile_url: "https://mastodon.example/@{{handle}}"
{evil}accounts:
{listed}"""


def account(handle: str, platform: str = "masto", **fields: Any) -> dict[str, Any]:
    return {"platform": platform, "handle": handle, "protected": True, **fields}


WATCHLIST = [account("alice", team="public", labels={"tier": "secret-tier-label"}),
             account("carol", team="public"),
             account("bob", protected=False),
             account("erin"),
             account("dave"),
             *[account(h, team="public" if h == SCRIPT else None) for h in HOSTILE],
             account(SCRIPT, platform="evil")]


@dataclass
class Running:
    mon: Monitor
    masto: FakeMastodon
    base: str = ""

    @property
    def url(self) -> str:
        assert self.mon.port is not None
        return f"http://127.0.0.1:{self.mon.port}"

    async def get(self, path: str, *, token: str | None = None, basic: str | None = None,
                  user: str = "anyone", headers: dict[str, str] | None = None,
                  ) -> tuple[int, str, Any]:
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        if basic is not None:
            sent["Authorization"] = "Basic " + base64.b64encode(
                f"{user}:{basic}".encode()).decode()
        async with aiohttp.ClientSession() as http, http.get(
                self.url + path, headers=sent, allow_redirects=False) as resp:
            return resp.status, await resp.text(), resp.headers


def _fake() -> FakeMastodon:
    masto = FakeMastodon({"alice": "present", "carol": "gone", "bob": "present",
                          "erin": "present", **dict.fromkeys(HOSTILE, "present")})
    masto.set_state("dave", "moved", moved_to=MOVED_TO)
    masto.serve_recorded("erin", Recording(
        path=Path("hostile-error.json"), platform="mastodon", status=503,
        headers={"Content-Type": "application/json; charset=utf-8"},
        body=json.dumps({"error": HOSTILE_ERROR}), source={}, expected={}))
    return masto


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    """Loopback listener, no tokens: the quick start. alice up, carol down, erin only ever
    answered with a hostile 503, dave moved to a hostile handle, the hostile handles up."""
    masto = _fake()
    async with masto.running() as base:
        mon = Monitor(parse_config(config_text(base, WATCHLIST,
                                               state_path=str(tmp_path / "s.db")),
                                   "test.yaml", env={}))
        await mon.start()
        try:
            await settled(mon)
            yield Running(mon, masto, base)
        finally:
            await mon.stop()


async def settled(mon: Monitor) -> None:
    def ready() -> bool:
        erin = mon.accounts[AccountKey("masto", "erin")]
        dave = mon.accounts[AccountKey("masto", "dave")]
        return (state_of(mon, "masto", "carol") is State.DOWN
                and all(state_of(mon, "masto", h) is State.UP for h in ("alice", *HOSTILE))
                and erin.last_error is not None and dave.moved_to is not None)
    await wait_for(ready, what="alice and the hostile handles up, carol down, erin erring")


# ----------------------------------------------------------------- reading the HTML


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)


class Page(HTMLParser):
    """Every element with a data-testid, its attributes and its text; every href."""

    VOID = frozenset({"br", "meta", "link", "input", "img", "hr", "source"})

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tagged: list[Element] = []
        self.hrefs: list[str] = []
        self.scripts: list[dict[str, str]] = []
        self.tags: list[str] = []
        self.handlers: list[str] = []  # on* attributes (inline event handlers)
        self._open: list[Element] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        self.handlers += [k for k in values if k.startswith("on")]
        if "href" in values:
            self.hrefs.append(values["href"])
        if tag == "script":
            self.scripts.append(values)
        if tag in self.VOID:
            if "data-testid" in values:
                self.tagged.append(Element(tag, values))
            return
        element = Element(tag, values)
        if "data-testid" in values:
            self.tagged.append(element)
        self._open.append(element)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            element = self._open.pop()
            if self._open:
                self._open[-1].text += element.text
            if element.tag == tag:
                return

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1].text += data

    def all(self, testid: str) -> list[Element]:
        return [e for e in self.tagged if e.attrs.get("data-testid") == testid]

    def one(self, testid: str) -> Element:
        found = self.all(testid)
        assert len(found) == 1, f"{testid}: {len(found)} elements"
        return found[0]

    def rows(self) -> list[Element]:
        return self.all("account-row")

    def row(self, handle: str, platform: str = "masto") -> Element:
        found = [r for r in self.rows() if r.attrs["data-handle"] == handle
                 and r.attrs["data-platform"] == platform]
        assert len(found) == 1, f"{platform}/{handle}: {len(found)} rows"
        return found[0]


def squash(text: str) -> str:
    return " ".join(text.split())


# ----------------------------------------------------------------- the pages


async def test_overview_shows_every_account_protected_first_with_trouble_in_words(
        running: Running) -> None:
    status, body, headers = await running.get("/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    page = Page(body)
    rows = page.rows()
    assert len(rows) == len(WATCHLIST)
    protected = [r.attrs["data-protected"] for r in rows]
    assert protected == sorted(protected, key=lambda p: p != "true"), "protected first"
    assert rows[0].attrs["data-handle"] == "carol", "the worst status first"
    carol = page.row("carol")
    assert carol.attrs["data-status"] == "down"
    assert squash(carol.text).startswith("carol masto protected Down not found")
    assert page.row("alice").attrs["data-status"] == "up"
    assert page.row("erin").attrs["data-status"] == "unknown"
    assert squash(page.one("summary").text).startswith("Trouble: 1 down")
    counts = {e.attrs["data-status"]: int(e.text) for e in page.all("summary-count")}
    assert counts["down"] == 1 and counts["up"] == len(HOSTILE) + 4  # alice, bob, dave, evil's
    outage = page.one("open-outages")
    assert "carol" in outage.text and "ongoing: at least" in outage.text
    assert {r.attrs["data-platform"] for r in page.all("platform-row")} == {"masto", "evil"}
    assert "availability over 30 days" not in body, "no figure before the gauges have one"
    # The overview shows the per-platform figures the monitor refreshes once a minute.
    mon = running.mon
    assert mon.store is not None
    mon.metrics.refresh_availability(mon.store, mon.accounts.keys(), time.time())
    masto = Page((await running.get("/"))[1]).all("platform-row")
    figures = {r.attrs["data-platform"]: squash(r.text) for r in masto}
    assert re.search(r"availability over 30 days: \d+\.\d+% to \d+\.\d+%", figures["masto"])
    assert "availability over 30 days: 100%" in figures["evil"]
    assert page.one("refresh-link").attrs["href"] == "/"
    assert page.one("skip-link").attrs["href"] == "#main"
    # Usable without JavaScript: the script is deferred and same-origin, nothing inline.
    assert [s.get("src", "") for s in page.scripts] == [routes.static_url("app.js")]
    assert "style" not in page.tags and not page.handlers
    assert not re.search(r"<[a-z]+[^>]*\sstyle=", body)


async def test_account_page_shows_state_outage_with_bounds_timeline_and_evidence(
        running: Running) -> None:
    status, body, _ = await running.get("/accounts/masto/carol")
    assert status == 200
    page = Page(body)
    state = page.one("account-state")
    assert state.attrs["data-status"] == "down" and "Down" in state.text
    outage = page.one("outage-row")
    assert outage.attrs["data-open"] == "true"
    assert "ongoing: at least" in page.one("outage-duration").text
    kinds = [r.attrs["data-kind"] for r in page.all("timeline-row")]
    assert kinds == ["vanished", "transition"], "newest first: down, then suspect (once each)"
    assert "HTTP 404 Record not found" in page.one("last-evidence").text
    assert page.one("profile-link").attrs["href"] == "https://mastodon.example/@carol"
    days = page.all("availability-day")
    assert len(days) == 90 and days[-1].attrs["data-status"] == "down"
    assert {d.attrs["data-status"] for d in days[:-1]} == {"unwatched"}, "watched today only"
    assert "1 certainly down" in page.one("availability-summary").text
    windows = {w.attrs["data-window"]: squash(w.text) for w in page.all("availability-window")}
    assert list(windows) == ["24h", "7d", "30d", "90d"]
    assert all(re.search(r"\d%( to \d+\.\d+%)?", text) for text in windows.values()), windows
    alice = Page((await running.get("/accounts/masto/alice"))[1])
    assert alice.all("availability-day")[-1].attrs["data-status"] == "up"
    assert "100%" in alice.one("availability-table").text
    assert "none" in page.one("last-error").text

    status, body, _ = await running.get("/accounts/masto/erin")
    assert "HTTP 503" in Page(body).one("last-error").text

    for missing in ("/accounts/masto/nobody", "/accounts/nowhere/alice"):
        status, body, headers = await running.get(missing)
        assert status == 404 and Page(body).one("problem")
        assert headers["Content-Security-Policy"] == CSP


async def test_every_ui_answer_carries_the_csp_and_security_headers(running: Running) -> None:
    paths = {"/": 200, "/?state=down": 200, "/accounts/masto/alice": 200,
             "/accounts/masto/nobody": 404, "/?state=bogus": 400, "/?limit=5": 400,
             "/login": 401, routes.static_url("app.css"): 200,
             routes.static_url("app.js"): 200, routes.static_url("icon.svg"): 200,
             "/static/app.css": 404, "/ui/nothing": 404}
    for path, expected in paths.items():
        status, _, headers = await running.get(path)
        assert status == expected, path
        assert headers["Content-Security-Policy"] == CSP, path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "no-referrer", path
    _, _, headers = await running.get(routes.static_url("app.js"))
    assert "immutable" in headers["Cache-Control"]
    assert headers["Content-Type"].startswith("text/javascript")
    async with aiohttp.ClientSession() as http, http.get(running.url + "/ui/events") as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        assert resp.headers["Content-Security-Policy"] == CSP
    _, _, headers = await running.get("/api/v1/accounts")
    assert "Content-Security-Policy" not in headers, "the JSON API is not the UI"


# ----------------------------------------------------------------- hostile strings


def _outside_bdi_and_attributes(html: str) -> str:
    """The page's text and markup with every <bdi>…</bdi> and attribute value cut out."""
    html = re.sub(r"<bdi>.*?</bdi>", "", html, flags=re.S)
    return re.sub(r'="[^"]*"', '=""', html)


async def test_hostile_platform_strings_stay_text(running: Running) -> None:
    pages = ["/", "/?q=" + "%3C", "/accounts/masto/dave", "/accounts/masto/erin",
             "/accounts/evil/" + "%3Cscript%3Ealert(1)%3C%2Fscript%3E"]
    pages += [f"/accounts/masto/{text.account_path('masto', h).rsplit('/', 1)[1]}"
              for h in HOSTILE]
    for path in pages:
        status, body, _ = await running.get(path)
        assert status == 200, path
        for raw in ("<script>alert", "<img", "<svg"):
            assert raw not in body, f"{raw!r} unescaped in {path}"
        assert "\u202e" not in _outside_bdi_and_attributes(body), \
            f"a right-to-left override outside <bdi> in {path}"
        page = Page(body)
        assert not page.handlers, f"an inline event handler in {path}"
        assert not {"img", "svg", "iframe", "object", "embed"} & set(page.tags), path
        assert page.tags.count("script") == 1, path
        for href in page.hrefs:
            assert href.startswith(("/", "#", "https://mastodon.example/@")), (path, href)
    overview = Page((await running.get("/"))[1])
    shown = {r.attrs["data-handle"] for r in overview.rows()}
    assert set(HOSTILE) <= shown, "each hostile handle reads back as itself"
    links = {squash(e.text) for e in overview.all("account-link")}
    assert SCRIPT in links and IMG in links and JS_LINK in links
    assert any(RLO in link and "hidden text-direction" in link for link in links)

    evil = Page((await running.get("/accounts/evil/%3Cscript%3Ealert(1)%3C%2Fscript%3E"))[1])
    assert not evil.all("profile-link"), "a javascript: profile template is not linked"
    js = Page((await running.get(text.account_path("masto", JS_LINK)))[1])
    assert js.one("profile-link").attrs["href"] == \
        "https://mastodon.example/@javascript%3Aalert%281%29"

    erin = Page((await running.get("/accounts/masto/erin"))[1])
    assert HOSTILE_ERROR[:40] in erin.one("last-error").text
    dave = Page((await running.get("/accounts/masto/dave"))[1])
    assert MOVED_TO in dave.one("moved-to").text


def test_no_template_or_ui_module_marks_anything_safe() -> None:
    """Autoescaping holds only while nothing opts out of it."""
    for path in sorted(UI_SOURCE.rglob("*")):
        if path.suffix not in (".html", ".py", ".js"):
            continue
        source = path.read_text(encoding="utf-8")
        markers = {".html": ("|safe", "| safe", "autoescape false", "Markup"),
                   ".js": ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write",
                           "eval(", "Function("),
                   ".py": ("Markup(", "markupsafe", "autoescape=False")}[path.suffix]
        for marker in markers:
            assert marker not in source, f"{marker} in {path.relative_to(UI_SOURCE)}"
    assert routes.TEMPLATES.autoescape is True


# ----------------------------------------------------------------- who sees what


@pytest.fixture
async def exposed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    """Listening on every interface (as in a container) with a read and a write token."""
    monkeypatch.setenv("ACCMON_READ_TOKEN", READ)
    monkeypatch.setenv("ACCMON_WRITE_TOKEN", WRITE)
    masto = _fake()
    async with masto.running() as base:
        mon = Monitor(parse_config(config_text(base, WATCHLIST, state_path=str(
            tmp_path / "s.db"), listen_host="0.0.0.0"), "test.yaml", env={}))
        await mon.start()
        try:
            await settled(mon)
            yield Running(mon, masto, base)
        finally:
            await mon.stop()


async def test_loopback_listener_shows_everything_without_a_token(running: Running) -> None:
    page = Page((await running.get("/"))[1])
    assert squash(page.one("viewer").text) == "Full view"
    assert page.all("platform-health") and not page.all("sign-in")


async def test_other_listeners_ask_for_the_token_and_take_it_as_basic_or_bearer(
        exposed: Running) -> None:
    for path in ("/", "/accounts/masto/alice", "/ui/events", "/login"):
        status, body, headers = await exposed.get(path)
        assert status == 401, path
        assert headers["WWW-Authenticate"] == 'Basic realm="account-monitor"'
        assert headers["Content-Security-Policy"] == CSP
        assert "alice" not in body and READ not in body
    status, _, _ = await exposed.get(routes.static_url("app.css"))
    assert status == 200, "the stylesheet holds nothing private"
    for wrong in (basic("anyone", "guess"), "Bearer guess", basic("anyone", READ[:-1]),
                  "Basic !!!not-base64", basic("", ""), "Digest " + READ, "bearer " + READ):
        status, _, _ = await exposed.get("/", headers={"Authorization": wrong})
        assert status == 401, wrong
    for right in (basic("anyone", READ), basic("", READ), basic("ops", WRITE),
                  "Bearer " + READ, "basic " + basic("x" * 50, READ).split()[1],
                  basic("opérateur", READ)):
        status, body, _ = await exposed.get("/", headers={"Authorization": right})
        assert status == 200, right
        page = Page(body)
        assert page.all("platform-health") and len(page.rows()) == len(WATCHLIST)
    status, _, headers = await exposed.get("/login", basic=READ)
    assert status == 303 and headers["Location"] == "/"
    async with aiohttp.ClientSession() as http, http.get(
            exposed.url + "/ui/events", headers={"Authorization": f"Bearer {READ}"}) as resp:
        assert resp.status == 200


def basic(user: str, password: str) -> str:
    """An ``Authorization: Basic`` value (RFC 7617), as a browser's login prompt sends it."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


PUBLIC_UI = """
ui:
  public:
    enabled: true
    title: "Our accounts, live"
    accounts: ['team="public"']
"""


@pytest.fixture
async def public(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Running]:
    monkeypatch.setenv("ACCMON_READ_TOKEN", READ)
    masto = _fake()
    async with masto.running() as base:
        mon = Monitor(parse_config(config_text(base, WATCHLIST, state_path=str(
            tmp_path / "s.db"), ui=PUBLIC_UI), "test.yaml", env={}))
        await mon.start()
        try:
            await settled(mon)
            yield Running(mon, masto, base)
        finally:
            await mon.stop()


PUBLIC = {"alice", "carol", SCRIPT}  # team="public" on masto


async def test_public_mode_shows_only_chosen_accounts_without_evidence_labels_or_errors(
        public: Running) -> None:
    status, body, _ = await public.get("/")
    assert status == 200
    page = Page(body)
    assert {(r.attrs["data-platform"], r.attrs["data-handle"]) for r in page.rows()} == \
        {("masto", h) for h in PUBLIC}
    assert "Our accounts, live" in body and page.one("sign-in").attrs["href"] == "/login"
    assert not page.all("platform-health") and not page.all("silences")
    counts = {e.attrs["data-status"]: int(e.text) for e in page.all("summary-count")}
    assert sum(counts.values()) == len(PUBLIC), "the summary counts public accounts only"
    for hidden in ("erin", "bob", "dave", "HTTP 503", "secret-tier-label", "evil"):
        assert hidden not in body, hidden

    status, body, _ = await public.get("/accounts/masto/carol")
    assert status == 200
    page = Page(body)
    assert page.one("account-state").attrs["data-status"] == "down"
    assert page.all("outage-row") and page.all("timeline-row")
    for absent in ("last-evidence", "last-error", "details", "silences"):
        assert not page.all(absent), absent
    for hidden in ("Record not found", "secret-tier-label", "public", "team"):
        assert hidden not in page.one("timeline").text + page.one("outages").text, hidden
    alice = (await public.get("/accounts/masto/alice"))[1]
    assert "secret-tier-label" not in alice and "tier" not in alice

    for hidden_account in ("/accounts/masto/erin", "/accounts/masto/bob"):
        status, body, _ = await public.get(hidden_account)
        assert status == 404 and "HTTP 503" not in body, hidden_account
    status, body, _ = await public.get("/", basic=READ)
    page = Page(body)
    assert len(page.rows()) == len(WATCHLIST) and page.all("platform-health")
    assert squash(page.one("viewer").text) == "Full view"


# ----------------------------------------------------------------- the live stream


@dataclass
class Sse:
    event: str
    id: str | None
    data: Any


async def read_events(resp: aiohttp.ClientResponse) -> AsyncIterator[Sse]:
    event, event_id, data = "message", None, list[str]()
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if data:
                yield Sse(event, event_id, json.loads("\n".join(data)))
            event, event_id, data = "message", None, list[str]()
        elif line.startswith("event: "):
            event = line.removeprefix("event: ")
        elif line.startswith("id: "):
            event_id = line.removeprefix("id: ")
        elif line.startswith("data: "):
            data.append(line.removeprefix("data: "))


async def account_events_until(resp: aiohttp.ClientResponse, handle: str,
                               statuses: tuple[str, ...], seen: list[Sse]) -> Sse:
    """Read the stream until ``handle`` is in one of ``statuses`` (updates are coalesced:
    an account that went suspect and down within one batch is sent once, as down)."""
    async for sse in read_events(resp):
        seen.append(sse)
        if sse.event == "account" and sse.data["handle"] == handle \
                and sse.data["status"] in statuses:
            return sse
    pytest.fail("the stream ended")


GONE = ("suspect", "down")


async def _stream(run: Running, handle_first: str, handle_then: str,
                  headers: dict[str, str] | None = None) -> list[Sse]:
    """Open /ui/events, make ``handle_first`` vanish (and wait until the monitor decided
    it), then ``handle_then``; every event up to ``handle_then`` going suspect or down and
    the summary after it."""
    seen: list[Sse] = []
    async with aiohttp.ClientSession() as http, http.get(
            run.url + "/ui/events", headers=headers or {}) as resp:
        assert resp.status == 200
        assert (await resp.content.readline()).startswith(b"retry:")  # subscribed
        run.masto.set_state(handle_first, "gone")
        await wait_for(lambda: state_of(run.mon, "masto", handle_first) is not State.UP,
                       what=f"{handle_first} no longer up")
        run.masto.set_state(handle_then, "gone")
        async with asyncio.timeout(10):
            await account_events_until(resp, handle_then, GONE, seen)
            async for sse in read_events(resp):  # the batch ends with its summary
                seen.append(sse)
                if sse.event == "summary":
                    break
    return seen


async def test_live_stream_tells_the_overview_of_each_change(running: Running) -> None:
    seen = await _stream(running, "bob", "alice")
    accounts = [s.data for s in seen if s.event == "account"]
    assert [a["handle"] for a in accounts if a["status"] in GONE][:1] == ["bob"]
    alice = accounts[-1]
    assert alice["label"] in ("Suspect", "Down") and alice["reason"] == "not found"
    assert alice["since_utc"].endswith(" UTC") and alice["since"] is not None
    summaries = [s.data for s in seen if s.event == "summary"]
    assert summaries and summaries[-1]["counts"]["suspect"] + summaries[-1]["counts"][
        "down"] >= 3
    assert all(s.id is not None and int(s.id) > 0 for s in seen if s.event == "account")


async def test_live_stream_of_the_public_view_carries_public_accounts_only(
        public: Running) -> None:
    seen = await _stream(public, "bob", "alice")
    accounts = [s.data for s in seen if s.event == "account"]
    assert {a["handle"] for a in accounts} == {"alice"}, "bob is not public"
    assert set(accounts[0]) == {"platform", "handle", "status", "state", "label", "reason",
                                "since", "since_utc", "since_utc_short", "since_iso",
                                "protected", "silenced",
                                "acked_by"}
    assert accounts[0]["silenced"] is None and accounts[0]["acked_by"] is None
    summary = [s.data for s in seen if s.event == "summary"][-1]
    assert summary["total"] == len(PUBLIC)


async def test_live_stream_catches_a_reconnecting_client_up(running: Running) -> None:
    seen = await _stream(running, "bob", "alice")
    last = max(int(s.id) for s in seen if s.event == "account" and s.id)
    running.masto.set_state("alice", "present")
    await wait_for(lambda: state_of(running.mon, "masto", "alice") is State.UP,
                   what="alice back")
    async with aiohttp.ClientSession() as http, http.get(
            running.url + "/ui/events", headers={"Last-Event-ID": str(last)}) as resp:
        caught: list[Sse] = []
        async with asyncio.timeout(10):
            sse = await account_events_until(resp, "alice", ("up",), caught)
        assert int(sse.id or 0) > last


# ----------------------------------------------------------------- filter, pages, size


async def test_filter_and_pagination_are_plain_links(tmp_path: Path) -> None:
    handles = [f"user-{i:03d}" for i in range(230)]
    # Unlimited: 207 accounts every 2 s would spend the fake's 300-per-5-minutes budget and
    # the monitor would rightly pause before every account is decided.
    masto = FakeMastodon(dict.fromkeys(handles, "present"), rate_limit=10**9)
    async with masto.running() as base:
        listed = [account(h, platform="evil" if i % 10 == 0 else "masto",
                          protected=i % 2 == 0) for i, h in enumerate(handles)]
        mon = Monitor(parse_config(config_text(base, listed, state_path=str(
            tmp_path / "s.db"), interval="2s"), "test.yaml", env={}))
        await mon.start()
        try:
            run = Running(mon, masto, base)
            # Pages are sorted worst first: let every first sighting land before paging, or
            # an account moving from unknown to up between two pages shifts the order.
            await wait_for(lambda: all(w.state.state is not State.UNKNOWN
                                       for w in mon.watchlist if w.key.platform == "masto"),
                           timeout=30, what="every masto account decided")
            first = Page((await run.get("/"))[1])
            assert len(first.rows()) == 100
            assert "Page 1 of 3" in first.one("page-status").text
            assert not first.all("page-prev")
            assert first.one("page-next").attrs["href"] == "/?page=2"
            third = Page((await run.get("/?page=3"))[1])
            assert len(third.rows()) == 30 and not third.all("page-next")
            assert third.one("page-prev").attrs["href"] == "/?page=2"
            seen = [r.attrs["data-handle"] for p in (1, 2, 3)
                    for r in Page((await run.get(f"/?page={p}"))[1]).rows()]
            assert sorted(seen) == handles, "every account on exactly one page"
            assert "Page 3 of 3" in Page((await run.get("/?page=99"))[1]).one(
                "page-status").text

            found = Page((await run.get("/?q=USER-01&platform=masto&state="))[1])
            assert {r.attrs["data-handle"] for r in found.rows()} == \
                {f"user-{i:03d}" for i in range(11, 20)}
            form = found.one("filter-form")
            assert form.attrs["method"] == "get" and form.attrs["action"] == "/"
            assert found.one("filter-q").attrs["value"] == "USER-01"
            paged = Page((await run.get("/?platform=masto&page=2"))[1])
            assert paged.one("page-prev").attrs["href"] == "/?platform=masto"
            evil = Page((await run.get("/?platform=evil"))[1])
            assert len(evil.rows()) == 23
            for bad in ("/?platform=nope", "/?state=gone", "/?page=0", "/?page=x",
                        "/?q=" + "a" * 201, "/?q=a&q=b", "/?sort=name"):
                status, body, _ = await run.get(bad)
                assert status == 400 and Page(body).one("problem"), bad
        finally:
            await mon.stop()


async def test_state_filter_keeps_accounts_of_that_status(running: Running) -> None:
    down = Page((await running.get("/?state=down"))[1])
    assert [r.attrs["data-handle"] for r in down.rows()] == ["carol"]
    unknown = Page((await running.get("/?state=unknown"))[1])
    assert {r.attrs["data-handle"] for r in unknown.rows()} == {"erin"}
    nothing = Page((await running.get("/?state=blind"))[1])
    assert not nothing.rows() and nothing.one("no-accounts")


async def test_overview_of_100_accounts_is_under_100_kb_on_the_wire(tmp_path: Path) -> None:
    handles = [f"account-with-a-longish-name-{i:03d}" for i in range(100)]
    masto = FakeMastodon(dict.fromkeys(handles, "present"), rate_limit=10**9)  # no pause
    async with masto.running() as base:
        mon = Monitor(parse_config(config_text(base, [account(h) for h in handles],
                                               state_path=str(tmp_path / "s.db"),
                                               interval="2s"), "test.yaml", env={}))
        await mon.start()
        try:
            await wait_for(lambda: all(state_of(mon, "masto", h) is State.UP for h in handles),
                           timeout=30, what="every account up")
            url = f"http://127.0.0.1:{mon.port}/"
            sizes = {}
            for encoding in ("gzip", "identity"):
                async with aiohttp.ClientSession(auto_decompress=False) as http, http.get(
                        url, headers={"Accept-Encoding": encoding}) as resp:
                    wire = await resp.read()
                    assert resp.headers.get("Content-Encoding", "identity") == encoding
                    sizes[encoding] = len(wire)
            assert sizes["gzip"] < 100_000 and sizes["identity"] < 100_000, sizes
            assert sizes["gzip"] < sizes["identity"] / 4, sizes
        finally:
            await mon.stop()


def test_relative_times_and_durations_read_plainly() -> None:
    now = 1_800_000_000.0
    assert text.relative(now - 5, now) == "just now"
    assert text.relative(now - 12 * 60, now) == "12 min ago"
    assert text.relative(now - 3 * 3600 - 300, now) == "3 h 5 min ago"
    assert text.relative(now + 90, now) == "in 1 min 30 s"
    assert text.relative(None, now) == "never"
    assert text.span(3 * 86_400 + 7200) == "3 days 2 h"
    assert text.utc(0) == "1970-01-01 00:00:00 UTC"
    assert text.profile_link("https://x.example/{handle}", "a/b?c", None) == \
        "https://x.example/a%2Fb%3Fc"
    for template in ("javascript:alert('{handle}')", "{handle}", "data:text/html,{handle}",
                     "//x.example/{handle}", " https://x.example/{handle}"):
        assert text.profile_link(template, "javascript:alert(1)", None) is None, template


async def _one_account_monitor(tmp_path: Path, base: str, **options: Any) -> Monitor:
    mon = Monitor(parse_config(config_text(base, [account("alice")], state_path=str(
        tmp_path / "s.db"), evil_profile=False, **options), "test.yaml", env={}))
    await mon.start()
    return mon


async def test_an_unusable_read_token_refuses_the_ui_naming_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCMON_READ_TOKEN_FILE", str(tmp_path / "missing-token"))
    async with FakeMastodon({"alice": "present"}).running() as base:
        mon = await _one_account_monitor(tmp_path, base, listen_host="0.0.0.0")
        try:
            status, body, headers = await Running(mon, FakeMastodon()).get("/")
            assert status == 503 and "ACCMON_READ_TOKEN_FILE" in body
            assert headers["Content-Security-Policy"] == CSP
            assert "alice" not in body
        finally:
            await mon.stop()


async def test_ui_disabled_answers_404_and_leaves_the_api_alone(tmp_path: Path) -> None:
    async with FakeMastodon({"alice": "present"}).running() as base:
        mon = await _one_account_monitor(tmp_path, base, ui="ui: {enabled: false}")
        try:
            run = Running(mon, FakeMastodon())
            for path in ("/", "/accounts/masto/alice", "/ui/events", "/login"):
                status, body, _ = await run.get(path)
                assert status == 404 and "alice" not in body, path
            assert (await run.get("/api/v1/accounts"))[0] == 200
        finally:
            await mon.stop()
