"""The HTTP surface: /metrics, /healthz, /readyz and the JSON API."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from monitor.app import Monitor

MONITOR = web.AppKey("monitor", object)


def build_app(monitor: Monitor) -> web.Application:
    app = web.Application()
    app[MONITOR] = monitor
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/v1/accounts", accounts)
    app.router.add_get("/api/v1/outages", outages)
    app.router.add_post("/-/reload", reload)
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
