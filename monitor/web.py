"""The HTTP surface: /metrics, /healthz, /readyz and the JSON API."""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from monitor.model import AccountState, Event, EventKind

if TYPE_CHECKING:
    from monitor.app import Monitor

MONITOR = web.AppKey("monitor", object)
STREAMS = web.AppKey("streams", set)  # the SSE clients' queues


async def _close_streams(app: web.Application) -> None:
    """On shutdown, end every event stream at once instead of waiting out keepalives."""
    for queue in list(app[STREAMS]):
        queue.put_nowait(None)


def build_app(monitor: Monitor) -> web.Application:
    app = web.Application()
    app[MONITOR] = monitor
    app[STREAMS] = set()
    app.on_shutdown.append(_close_streams)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/v1/accounts", accounts)
    app.router.add_get("/api/v1/outages", outages)
    app.router.add_post("/-/reload", reload)
    app.router.add_get("/api/v1/events", events)
    return app


def _monitor(request: web.Request) -> Monitor:
    return request.app[MONITOR]  # type: ignore[return-value]


async def metrics(request: web.Request) -> web.StreamResponse:
    """Text format 0.0.4, streamed: a 100k-account scrape never sits whole in memory."""
    response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE_LATEST})
    response.enable_compression()  # gzip when the scraper asks for it (Prometheus does)
    await response.prepare(request)
    for chunk in _monitor(request).metrics.exposition():
        await response.write(chunk)
    await response.write_eof()
    return response


async def healthz(request: web.Request) -> web.Response:
    """Alive: the event loop answers. Restart the container only when this fails."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: config loaded, store open, scheduler running."""
    monitor = _monitor(request)
    checks = {
        "config": monitor.config is not None,
        "store": monitor.store is not None,
        "scheduler": monitor.scheduler.running,
    }
    ok = all(checks.values())
    return web.json_response({"status": "ok" if ok else "not ready", "checks": checks},
                             status=200 if ok else 503)


async def reload(request: web.Request) -> web.Response:
    """Re-read the config file; ``Authorization: Bearer $ACCMON_RELOAD_TOKEN`` required.

    200 when applied; 422 with the problems when rejected (the running config is kept).
    """
    monitor = _monitor(request)
    token = monitor.reload_token
    if not token:
        return web.json_response({"status": "disabled", "error": "reload over HTTP is off: "
                                  "set ACCMON_RELOAD_TOKEN (or send SIGHUP)"}, status=403)
    given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(given.encode(), token.encode()):
        return web.json_response({"status": "unauthorized"}, status=401,
                                 headers={"WWW-Authenticate": "Bearer"})
    problems = await monitor.reload()
    if problems:
        return web.json_response({"status": "rejected", "problems": problems}, status=422)
    return web.json_response({"status": "reloaded", "accounts": len(monitor.accounts)})


SSE_KEEPALIVE = 15.0  # seconds between comment lines, so proxies keep the stream open
SSE_QUEUE = 10_000  # events buffered per client; a client that falls further behind is cut
                    # off and resumes with Last-Event-ID, losing nothing


def event_json(row_id: int, event: Event, new: AccountState) -> dict[str, Any]:
    """A live event in the same shape as :meth:`Store.transitions` rows."""
    outage = event.details.get("outage_id") if event.kind is EventKind.RECOVERED \
        else new.outage_id
    return {"id": row_id, "platform": event.key.platform, "handle": event.key.handle,
            "kind": event.kind.value, "at": event.at, "old_state": event.old_state.value,
            "new_state": event.new_state.value,
            "reason": event.reason.value if event.reason else None, "outage_id": outage,
            "details": event.details}


def _sse(row: dict[str, Any]) -> bytes:
    return f"id: {row['id']}\nevent: {row['kind']}\ndata: {json.dumps(row)}\n\n".encode()


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events of every decision (transitions, vanished, recovered, renamed, …).

    ``Last-Event-ID`` (header, or ``?last_event_id=``) replays what was missed from the
    store, then the stream goes live; ids are the store's transition ids.
    """
    monitor = _monitor(request)
    if monitor.store is None:
        raise web.HTTPServiceUnavailable(text="store not open")
    try:
        last = int(request.headers.get("Last-Event-ID")
                   or request.query.get("last_event_id") or 0)
    except ValueError:
        raise web.HTTPBadRequest(text="Last-Event-ID must be an integer") from None
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(SSE_QUEUE)

    def listener(event: Event, row_id: int | None, new: AccountState) -> None:
        if row_id is None:
            return
        try:
            queue.put_nowait(event_json(row_id, event, new))
        except asyncio.QueueFull:
            queue.get_nowait()
            queue.put_nowait(None)  # tells the writer to hang up: the client will resume

    monitor.listeners.append(listener)  # before the replay, so nothing falls in between
    request.app[STREAMS].add(queue)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    try:
        await response.prepare(request)
        while monitor.store is not None:
            rows = monitor.store.transitions(after_id=last, limit=1000)
            for row in rows:
                await response.write(_sse(row))
                last = row["id"]
            if len(rows) < 1000:
                break
        while True:
            try:
                row = await asyncio.wait_for(queue.get(), SSE_KEEPALIVE)
            except TimeoutError:
                await response.write(b": keepalive\n\n")
                continue
            if row is None:
                break
            if row["id"] > last:
                await response.write(_sse(row))
                last = row["id"]
    except ConnectionResetError:
        pass  # the client left; it resumes with Last-Event-ID
    finally:
        monitor.listeners.remove(listener)
        request.app[STREAMS].discard(queue)
    return response


async def accounts(request: web.Request) -> web.Response:
    """Every watched account's state; filter with ?platform=, ?state=, ?protected=true."""
    monitor = _monitor(request)
    q = request.query
    rows = []
    for watched in monitor.accounts.values():
        row = monitor.account_json(watched)
        if q.get("platform") and row["platform"] != q["platform"]:
            continue
        if q.get("state") and row["state"] != q["state"]:
            continue
        if q.get("protected") and str(row["protected"]).lower() != q["protected"].lower():
            continue
        rows.append(row)
    return web.json_response({"accounts": rows})


async def outages(request: web.Request) -> web.Response:
    """Outages from the store, newest first; ?platform=, ?account=, ?open=true, ?limit=."""
    monitor = _monitor(request)
    if monitor.store is None:
        raise web.HTTPServiceUnavailable(text="store not open")
    q = request.query
    try:
        limit = min(int(q.get("limit", "100")), 10000)
    except ValueError:
        raise web.HTTPBadRequest(text="limit must be an integer") from None
    rows = monitor.store.outages(limit=limit, platform=q.get("platform") or None,
                                 handle=q.get("account") or None,
                                 open_only=q.get("open", "").lower() == "true")
    return web.json_response({"outages": [outage_json(o) for o in rows]})


def outage_json(o: object) -> dict[str, object]:
    from monitor.model import Outage

    assert isinstance(o, Outage)
    bounds = o.duration_bounds
    return {
        "id": o.id, "platform": o.key.platform, "account": o.key.handle, "reason": o.reason,
        "last_seen_present_at": o.last_seen_present_at,
        "first_seen_absent_at": o.first_seen_absent_at, "confirmed_at": o.confirmed_at,
        "last_seen_absent_at": o.last_seen_absent_at, "recovered_at": o.recovered_at,
        "duration_seconds": o.duration,
        "duration_bounds_seconds": list(bounds) if bounds else None,
        "open": o.recovered_at is None,
    }
