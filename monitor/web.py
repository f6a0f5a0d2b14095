"""The HTTP surface: /metrics, /healthz, /readyz and the JSON API."""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from monitor import api, auth, probe_api
from monitor.model import AccountState, Event, EventKind, State
from monitor.store import Store
from monitor.ui import routes as ui
from monitor.ui.views import UiMonitor
from monitor.views import account_json
from monitor.webbase import (
    BODY_MAX,
    EVENT_ID_MAX,
    LIMIT_MAX,
    MONITOR,
    Query,
    bad_parameter,
    monitor_of,
    outage_json,
    silenced_now,
    suppression_json,
)

SseQueue = asyncio.Queue[dict[str, Any] | None]
STREAMS: web.AppKey[set[SseQueue]] = web.AppKey("streams")  # the SSE clients' queues


async def _close_streams(app: web.Application) -> None:
    """On shutdown, end every event stream at once instead of waiting out keepalives."""
    queues: set[SseQueue] = app[STREAMS]
    for queue in list(queues):
        queue.put_nowait(None)


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``host:port`` (0: any free port); returns the runner and the port."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    addresses = runner.addresses  # the bound (host, port, ...) of each listening socket
    return runner, int(addresses[0][1]) if addresses else port


GUARD = auth.GUARD


def _is_reload(request: web.Request) -> bool:
    return request.path == "/-/reload"


def build_app(monitor: UiMonitor) -> web.Application:
    """The routes, behind :func:`monitor.auth.middleware`: changes need the write token,
    API reads a token when a read token is configured (see monitor/auth.py). The web UI
    (monitor/ui) decides who sees what itself, from the same tokens, and sets its security
    headers on its own answers."""
    guard = auth.Guard()
    app = web.Application(client_max_size=BODY_MAX, middlewares=[
        ui.security_headers,
        auth.middleware(guard, lambda request: request.app[MONITOR].config, _is_reload)])
    app[MONITOR] = monitor
    app[GUARD] = guard
    app[STREAMS] = set()
    app.on_shutdown.append(_close_streams)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/v1/accounts", accounts)
    app.router.add_get("/api/v1/outages", outages)
    app.router.add_post("/-/reload", reload)
    app.router.add_get("/api/v1/events", events)
    api.add_routes(app)
    probe_api.add_routes(app)
    ui.add_routes(app, monitor)
    return app


# ----------------------------------------------------------------- query parameters

_EVENT_ID = re.compile(r"[0-9]{1,19}")  # ASCII only: int() also takes "+1", "1_0", "\u0661"


def last_event_id(request: web.Request) -> int:
    """Where a stream resumes: ``Last-Event-ID`` (what EventSource sends on reconnecting), or
    ``?last_event_id=`` for the first connection. Checked before the stream starts, so a bad
    id is a 400, not a stream that breaks after its 200.

    An empty header means "no id yet", as the SSE spec's empty last-event-ID buffer does.
    """
    header = request.headers.get("Last-Event-ID")
    name, raw = ("Last-Event-ID", header) if header is not None else (
        "last_event_id", request.query.get("last_event_id"))
    if not raw:
        return 0
    if not _EVENT_ID.fullmatch(raw) or int(raw) > EVENT_ID_MAX:
        raise bad_parameter(name, f"an event id: an integer from 0 to {EVENT_ID_MAX}", raw)
    return int(raw)


# ----------------------------------------------------------------- endpoints


async def metrics(request: web.Request) -> web.StreamResponse:
    """Text format 0.0.4, streamed: a 100k-account scrape never sits whole in memory."""
    response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_LATEST})
    response.enable_compression()  # gzip when the scraper asks for it (Prometheus does)
    await response.prepare(request)
    for chunk in monitor_of(request).metrics.exposition():
        await response.write(chunk)
    await response.write_eof()
    return response


async def healthz(request: web.Request) -> web.Response:
    """Alive: the event loop answers. Restart the container only when this fails."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: config loaded, store open and writable, scheduler running. While the state
    file refuses writes (decisions kept in memory and retried) this is 503 with the reason,
    so a load balancer or Kubernetes stops trusting this replica's view."""
    monitor = monitor_of(request)
    problems = monitor.not_ready()
    checks = {"config": monitor.config is not None, "store": "store" not in problems,
              "scheduler": "scheduler" not in problems}
    ok = all(checks.values())
    body: dict[str, object] = {"status": "ok" if ok else "not ready", "checks": checks}
    if problems:
        body["problems"] = problems
    return web.json_response(body, status=200 if ok else 503)


async def reload(request: web.Request) -> web.Response:
    """Re-read the config file; ``Authorization: Bearer <token>`` with
    ``$ACCMON_RELOAD_TOKEN`` or the write token required.

    200 when applied; 422 with the problems when rejected (the running config is kept).
    """
    monitor = monitor_of(request)
    tokens = request.app[GUARD].tokens(monitor.config)
    accepted = [t for t in (monitor.reload_token, tokens.write) if t]
    if not accepted:
        return web.json_response({"status": "disabled", "error": "reload over HTTP is off: "
                                  "set ACCMON_RELOAD_TOKEN or ACCMON_WRITE_TOKEN (or send "
                                  "SIGHUP)"}, status=403)
    given = auth.presented_token(request)
    # Both comparisons run whatever the first says: timing tells nothing of which was near.
    matches = [auth.token_matches(given, token) for token in accepted]
    if not any(matches):
        return auth.unauthorized("" if given is None else "invalid_token")
    problems = await monitor.reload()
    if problems:
        return web.json_response({"status": "rejected", "problems": problems}, status=422)
    return web.json_response({"status": "reloaded", "accounts": len(monitor.accounts)})


SSE_KEEPALIVE = 15.0  # seconds between comment lines, so proxies keep the stream open
SSE_RETRY = b"retry: 5000\n\n"  # EventSource reconnects 5 s after the stream drops
SSE_QUEUE = 10_000  # events buffered per client; a client that falls further behind is cut
                    # off and resumes with Last-Event-ID, losing nothing


def event_json(row_id: int, event: Event, new: AccountState) -> dict[str, Any]:
    """A live event in the same shape as :meth:`Store.transitions` rows."""
    outage = event.outage_id if event.kind is EventKind.RECOVERED \
        else new.outage_id
    return {"id": row_id, "platform": event.key.platform, "handle": event.key.handle,
            "kind": event.kind.value, "at": event.at, "old_state": event.old_state.value,
            "new_state": event.new_state.value,
            "reason": event.reason.value if event.reason else None, "outage_id": outage,
            "details": event.details}


def _sse(row: dict[str, Any]) -> bytes:
    return f"id: {row['id']}\nevent: {row['kind']}\ndata: {json.dumps(row)}\n\n".encode()


def replay_gap(store: Store | None, last: int) -> bytes | None:
    """``event: gap`` when the client resumes from an id older than what retention kept:
    the events after ``last`` up to the oldest kept one are gone, and the client should
    re-read the current state (``/api/v1/accounts``) instead of trusting the replay.

    It carries no ``id:``, so the client's Last-Event-ID stays where it was.
    """
    oldest = store.oldest_transition_id() if store is not None and last > 0 else None
    if oldest is None or last >= oldest - 1:
        return None
    data = json.dumps({"last_event_id": last, "oldest_kept": oldest})
    return f"event: gap\ndata: {data}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events of every decision (transitions, vanished, recovered, renamed, …).

    ``Last-Event-ID`` (header, or ``?last_event_id=``) replays what was missed from the
    store, then the stream goes live; ids are the store's transition ids. When what was
    missed is partly pruned already, an ``event: gap`` comes first (:func:`replay_gap`).
    """
    monitor = monitor_of(request)
    Query(request, "last_event_id")
    last = last_event_id(request)
    if monitor.store is None:
        raise web.HTTPServiceUnavailable(text="store not open")
    queue: SseQueue = asyncio.Queue(SSE_QUEUE)

    def listener(event: Event, row_id: int | None, new: AccountState) -> None:
        if row_id is None:
            return
        try:
            queue.put_nowait(event_json(row_id, event, new))
        except asyncio.QueueFull:
            queue.get_nowait()
            queue.put_nowait(None)  # tells the writer to hang up: the client will resume

    unsubscribe = monitor.bus.subscribe(listener)  # before the replay: nothing falls between
    request.app[STREAMS].add(queue)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    try:
        # Headers and the reconnect delay go out at once: a client (or a proxy's read
        # timeout) must not wait for the first event or keepalive to learn the stream is up.
        await response.prepare(request)
        await response.write(SSE_RETRY)
        gap = replay_gap(monitor.store, last)
        if gap is not None:
            await response.write(gap)
        while monitor.store is not None:
            rows = monitor.store.transitions(after_id=last, limit=1000)
            for row in rows:
                await response.write(_sse(row))
                last = row["id"]
            if len(rows) < 1000:
                break
        while True:
            try:
                async with asyncio.timeout(SSE_KEEPALIVE):  # not wait_for: see outbox._wait
                    live = await queue.get()
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if live is None:
                break
            row = live
            if row["id"] > last:
                await response.write(_sse(row))
                last = row["id"]
    except ConnectionResetError:
        pass  # the client left; it resumes with Last-Event-ID
    finally:
        unsubscribe()
        request.app[STREAMS].discard(queue)
    return response


async def accounts(request: web.Request) -> web.Response:
    """Every watched account's state; filter with ?platform=, ?state=, ?protected=true|false.

    ``platform`` must be a configured platform and ``state`` a state, so a typo is a 400
    naming the choices rather than an empty list that looks like "nothing watched".
    """
    monitor = monitor_of(request)
    q = Query(request, "platform", "state", "protected")
    platform = q.choice("platform", monitor.config.platforms)
    state = q.choice("state", [s.value for s in State])
    protected = q.boolean("protected")
    rows, now = [], time.time()
    for watched in monitor.accounts.values():
        row = account_json(watched, silenced_now(monitor, watched.config, now))
        if platform is not None and row["platform"] != platform:
            continue
        if state is not None and row["state"] != state:
            continue
        if protected is not None and row["protected"] is not protected:
            continue
        rows.append(row)
    return web.json_response({"accounts": rows})


async def outages(request: web.Request) -> web.Response:
    """Outages from the store, newest first; ?platform=, ?account=, ?open=true, ?limit=.
    An open one of a watched account says whether a silence or window covers it now.

    ``limit`` is 1 to :data:`LIMIT_MAX` (default 100). ``platform`` and ``account`` are free
    text (history outlives the config: a platform removed since still has its outages).
    ``open=true`` keeps the open outages only; ``open=false`` (the default) keeps all.
    """
    monitor = monitor_of(request)
    q = Query(request, "platform", "account", "open", "limit")
    limit = q.integer("limit", 100, 1, LIMIT_MAX)
    platform, handle, open_only = q.text("platform"), q.text("account"), q.boolean("open")
    if monitor.store is None:
        raise web.HTTPServiceUnavailable(text="store not open")
    rows = monitor.store.outages(limit=limit, platform=platform, handle=handle,
                                 open_only=bool(open_only))
    now = time.time()
    answer = []
    for o in rows:
        row = outage_json(o)
        watched = monitor.accounts.get(o.key) if o.recovered_at is None else None
        covered = silenced_now(monitor, watched.config, now) if watched else None
        row["silenced"] = suppression_json(covered)
        answer.append(row)
    return web.json_response({"outages": answer})


