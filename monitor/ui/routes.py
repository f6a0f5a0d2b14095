"""The UI's HTTP surface: ``GET /`` (overview), ``GET /accounts/{platform}/{handle}``,
``GET /ui/events`` (live updates for the viewer), ``GET /login`` (the browser's login
prompt) and ``GET /static/{name}`` (one stylesheet, one script, the icon; content-hashed
names, cached for a year).

Every UI answer, errors included, carries a strict Content-Security-Policy (nothing inline,
nothing from elsewhere), ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy:
no-referrer`` (:func:`security_headers`). Pages are server-rendered and complete without
JavaScript; static/app.js only updates what the event stream reports, with textContent
and attributes.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.resources
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jinja2
from aiohttp import web

from monitor import auth
from monitor.model import AccountKey, AccountState, Event, State
from monitor.ui import reporting, text, views
from monitor.ui.viewer import PublicScope, Refused, Viewer, decide
from monitor.ui.views import UiMonitor
from monitor.watchlist import Watched

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
UI_PREFIXES = ("/accounts/", "/ui/", "/static/")
UI_PATHS = frozenset({"/", "/login"})

KEEPALIVE = 15.0  # seconds between SSE comment lines
PACE = 0.25  # seconds between two batches of live updates to one client (coalescing)
QUEUE_MAX = 10_000  # changed accounts buffered per client; beyond, it is told to reload
REPLAY_ROWS = 5_000  # transitions a reconnecting client may catch up on; beyond: reload

UI_MONITOR: web.AppKey[UiMonitor] = web.AppKey("ui_monitor")
SCOPE: web.AppKey[PublicScope] = web.AppKey("ui_public_scope")

# ----------------------------------------------------------------- static files


@dataclass(frozen=True, slots=True)
class Asset:
    name: str  # "app.3f2a9c0d1e4b.css"
    body: bytes
    content_type: str


def _load_assets() -> dict[str, Asset]:
    """The static files, by their content-hashed names (a new version is a new URL, so
    each can be cached for a year)."""
    folder = importlib.resources.files("monitor.ui") / "static"
    types = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}
    assets = {}
    for source, content_type in (("app.css", types[".css"]), ("app.js", types[".js"]),
                                 ("icon.svg", types[".svg"])):
        body = (folder / source).read_bytes()
        stem, _, ext = source.rpartition(".")
        name = f"{stem}.{hashlib.sha256(body).hexdigest()[:12]}.{ext}"
        assets[source] = Asset(name, body, content_type)
    return assets


ASSETS = _load_assets()
ASSETS_BY_URL = {asset.name: asset for asset in ASSETS.values()}


def static_url(source: str) -> str:
    return f"/static/{ASSETS[source].name}"


# ----------------------------------------------------------------- templates

TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("monitor.ui", "templates"),
    autoescape=True,  # every template, whatever its name: platform strings stay text
    undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    auto_reload=False)
TEMPLATES.globals.update(static_url=static_url, utc=text.utc, iso=text.iso,
                         relative=text.relative, span=text.span, words=text.words,
                         STATUS_LABEL=text.STATUS_LABEL, STATUS_MEANING=text.STATUS_MEANING,
                         STATUSES=text.STATUSES)
TEMPLATES.tests["direction_controls"] = text.has_direction_controls
TEMPLATES.filters["flat"] = text.flat


def render(name: str, **context: Any) -> str:
    return TEMPLATES.get_template(name).render(**context)


def _page(body: str, status: int = 200,
          headers: dict[str, str] | None = None) -> web.Response:
    response = web.Response(text=body, status=status, content_type="text/html",
                            charset="utf-8", headers=headers)
    response.headers["Cache-Control"] = "no-store"
    if len(body) > 1024:
        response.enable_compression()  # gzip or deflate, as the client's Accept-Encoding asks
    return response


def _problem_page(status: int, title: str, message: str,
                  headers: dict[str, str] | None = None, login: bool = False) -> web.Response:
    return _page(render("problem.html", title=title, message=message,
                                 status=status, login=login), status, headers)


# ----------------------------------------------------------------- who is looking


def _monitor(request: web.Request) -> UiMonitor:
    return request.app[UI_MONITOR]


def _viewer(request: web.Request) -> Viewer | web.Response:
    """The viewer, or the answer to send instead (401 with the login prompt, or 503)."""
    monitor = _monitor(request)
    tokens = request.app[auth.GUARD].tokens(monitor.config)
    found = decide(auth.viewer_grant(request, tokens), tokens,
                   monitor.config.ui.public.enabled, monitor.listen_host)
    if isinstance(found, Viewer):
        return found
    return _refusal(request, found)


def _refusal(request: web.Request, refused: Refused) -> web.Response:
    if refused.status == 503:
        return _problem_page(503, "Sign-in is broken",
                             f"The read token cannot be used: {refused.problem}. The operator "
                             "must fix the token's variable or file.")
    return _problem_page(
        401, "Sign in to see the status",
        "This monitor's status page needs a token. Sign in with any user name and the read "
        "token (or the write token) as the password.",
        headers={"WWW-Authenticate": auth.BASIC_CHALLENGE}, login=True)


def _enabled(request: web.Request) -> bool:
    return _monitor(request).config.ui.enabled


# ----------------------------------------------------------------- pages


async def overview(request: web.Request) -> web.StreamResponse:
    if not _enabled(request):
        raise web.HTTPNotFound()
    viewer = _viewer(request)
    if isinstance(viewer, web.Response):
        return viewer
    monitor = _monitor(request)
    try:
        flt = views.parse_filter(request.query, request.query.getall,
                                 views.visible_platforms(monitor, viewer, request.app[SCOPE]))
    except views.FilterError as exc:
        return _problem_page(400, "That filter is not valid", str(exc))
    now = time.time()
    figures = reporting.platform_figures(monitor.metrics) if viewer.full else None
    model = views.overview(monitor, viewer, flt, now, request.app[SCOPE], figures)
    return _page(render("overview.html", page=model))


async def account(request: web.Request) -> web.StreamResponse:
    if not _enabled(request):
        raise web.HTTPNotFound()
    viewer = _viewer(request)
    if isinstance(viewer, web.Response):
        return viewer
    monitor = _monitor(request)
    key = AccountKey(request.match_info["platform"], request.match_info["handle"])
    now = time.time()
    scope = request.app[SCOPE]
    visible = key in monitor.accounts and (
        viewer.full or key in scope.keys(monitor.config, monitor.accounts))
    figures = None
    if visible:
        st = monitor.accounts[key].state
        figures = reporting.account_figures(
            monitor.store, key, now, st.last_absent_at if st.state is State.DOWN else None)
    model = views.account_page(monitor, viewer, key, now, scope, figures)
    if model is None:
        return _problem_page(404, "No such account",
                             "This monitor does not watch that account (or it is not on the "
                             "public page).")
    return _page(render("account.html", page=model))


async def login(request: web.Request) -> web.StreamResponse:
    """Ask the browser for the token (the public view's "Sign in"); once given, back to the
    overview. Its path is ``/login``, so the browser sends the credentials for every path
    of the site afterwards (RFC 7617 section 2.2: the protection space is the directory)."""
    if not _enabled(request):
        raise web.HTTPNotFound()
    monitor = _monitor(request)
    tokens = request.app[auth.GUARD].tokens(monitor.config)
    if auth.viewer_grant(request, tokens) in (auth.Grant.READ, auth.Grant.WRITE):
        raise web.HTTPSeeOther("/")
    if tokens.read_problem and not tokens.write:
        return _refusal(request, Refused(503, tokens.read_problem))
    return _refusal(request, Refused(401))


async def static(request: web.Request) -> web.StreamResponse:
    asset = ASSETS_BY_URL.get(request.match_info["name"])
    if asset is None:
        raise web.HTTPNotFound()
    response = web.Response(body=asset.body, content_type=asset.content_type,
                            headers={"Cache-Control": "public, max-age=31536000, immutable"})
    if asset.content_type != "image/svg+xml":
        response.charset = "utf-8"
    response.enable_compression()
    return response


# ----------------------------------------------------------------- live updates


def live_account(monitor: UiMonitor, watched: Watched, viewer: Viewer, now: float
                 ) -> dict[str, Any]:
    """One account's row as the event stream sends it (the same words the page shows)."""
    row = views.row_of(monitor, watched, viewer, now)
    return {"platform": row.platform, "handle": row.handle, "status": row.status,
            "state": row.state, "label": row.label, "reason": row.reason,
            "since": row.since, "since_utc": text.utc(row.since, "unknown"),
            "since_utc_short": text.utc(row.since, "unknown", short=True),
            "since_iso": text.iso(row.since), "protected": row.protected,
            "silenced": row.silenced, "acked_by": row.acked_by}


def _summary_json(summary: views.Summary) -> dict[str, Any]:
    return {"counts": dict(summary.counts), "total": summary.total,
            "headline": summary.headline}


_LAST_ID = re.compile(r"[0-9]{1,19}")


def _resume_from(request: web.Request) -> int:
    header = request.headers.get("Last-Event-ID", "")
    return int(header) if _LAST_ID.fullmatch(header) else 0


class _Stream:
    """One client's stream: which accounts changed since the last batch (coalesced: an
    account that changed three times is sent once, as it is now)."""

    def __init__(self) -> None:
        self.changed: dict[AccountKey, int] = {}
        self.wake = asyncio.Event()
        self.overflow = False

    def note(self, key: AccountKey, row_id: int) -> None:
        if len(self.changed) >= QUEUE_MAX and key not in self.changed:
            self.overflow = True
        else:
            self.changed[key] = max(row_id, self.changed.get(key, 0))
        self.wake.set()

    def take(self) -> dict[AccountKey, int]:
        changed, self.changed = self.changed, {}
        self.wake.clear()
        return changed


def _sse(event: str, data: dict[str, Any], event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    """The viewer's live updates: ``event: account`` (one account as it is now, ``id`` the
    newest transition it reflects), then ``event: summary`` (the counts and headline);
    ``event: reload`` when more changed than can be caught up on. A public viewer hears
    only of public accounts, in the public view's words (no evidence, no errors)."""
    if not _enabled(request):
        raise web.HTTPNotFound()
    viewer = _viewer(request)
    if isinstance(viewer, web.Response):
        return viewer
    monitor, scope = _monitor(request), request.app[SCOPE]
    stream = _Stream()

    def listener(event: Event, row_id: int | None, new: AccountState) -> None:
        if row_id is None:
            return
        if not viewer.full and event.key not in scope.keys(monitor.config, monitor.accounts):
            return
        stream.note(event.key, row_id)

    unsubscribe = monitor.bus.subscribe(listener)  # before the catch-up: nothing falls between
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no", **SECURITY_HEADERS})
    streams = request.app[STREAMS]
    streams.open.add(stream)
    try:
        await response.prepare(request)
        await response.write(b"retry: 3000\n\n")
        await _catch_up(response, monitor, viewer, scope, stream, _resume_from(request))
        while not streams.closing:
            try:
                async with asyncio.timeout(KEEPALIVE):
                    await stream.wake.wait()
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if streams.closing:
                break
            await _send_batch(response, monitor, viewer, scope, stream)
            await asyncio.sleep(PACE)
    except ConnectionResetError:
        pass  # the client left; EventSource comes back with Last-Event-ID
    finally:
        unsubscribe()
        streams.open.discard(stream)
    return response


async def _catch_up(response: web.StreamResponse, monitor: UiMonitor, viewer: Viewer,
                    scope: PublicScope, stream: _Stream, last: int) -> None:
    """A reconnecting client: the accounts that changed after ``last``, as they are now."""
    if last <= 0 or monitor.store is None:
        return
    seen = 0
    while seen < REPLAY_ROWS:
        rows = monitor.store.transitions(after_id=last, limit=1000)
        for row in rows:
            stream.note(AccountKey(row["platform"], row["handle"]), int(row["id"]))
            last = int(row["id"])
        seen += len(rows)
        if len(rows) < 1000:
            break
    else:
        stream.overflow = True
    if not viewer.full:
        public = scope.keys(monitor.config, monitor.accounts)
        stream.changed = {k: v for k, v in stream.changed.items() if k in public}
    await _send_batch(response, monitor, viewer, scope, stream)


async def _send_batch(response: web.StreamResponse, monitor: UiMonitor, viewer: Viewer,
                      scope: PublicScope, stream: _Stream) -> None:
    overflow, stream.overflow = stream.overflow, False
    changed = stream.take()
    if overflow:
        await response.write(_sse("reload", {"why": "more changed than fits one update"}))
        return
    if not changed:
        return
    now = time.time()
    out = []
    for key, row_id in sorted(changed.items(), key=lambda kv: kv[1]):
        watched = monitor.accounts.get(key)
        if watched is not None:
            out.append(_sse("account", live_account(monitor, watched, viewer, now), row_id))
    summary = views.summarise(views.visible_accounts(monitor, viewer, scope))
    out.append(_sse("summary", _summary_json(summary)))
    await response.write(b"".join(out))


# ----------------------------------------------------------------- wiring

@dataclass(slots=True)
class _Streams:
    """The open streams; ``closing`` once the server shuts down (each ends at once instead
    of waiting out its keepalive)."""

    open: set[_Stream] = field(default_factory=set)
    closing: bool = False


STREAMS: web.AppKey[_Streams] = web.AppKey("ui_streams")


def is_ui_path(path: str) -> bool:
    return path in UI_PATHS or path.startswith(UI_PREFIXES)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The UI's headers on every UI answer, the errors aiohttp raises included."""
    if not is_ui_path(request.path):
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    if not response.prepared:  # a stream's headers went out when it started
        response.headers.update(SECURITY_HEADERS)
    return response


async def _close_streams(app: web.Application) -> None:
    streams = app[STREAMS]
    streams.closing = True
    for stream in list(streams.open):
        stream.wake.set()


def add_routes(app: web.Application, monitor: UiMonitor) -> None:
    """Register the UI on ``app`` (whose middlewares include :func:`security_headers`)."""
    app[UI_MONITOR] = monitor
    app[SCOPE] = PublicScope()
    app[STREAMS] = _Streams()
    app.on_shutdown.append(_close_streams)
    app.router.add_get("/", overview)
    app.router.add_get("/login", login)
    app.router.add_get("/accounts/{platform}/{handle:.+}", account)
    app.router.add_get("/ui/events", events)
    app.router.add_get("/static/{name}", static)
