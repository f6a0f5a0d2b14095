"""``POST /api/v1/probe``: a fresh probe for a peer vantage's quorum (see monitor.peers).

A peer watching the same accounts from elsewhere asks "do you see this account?" before it
pages. The answer is this vantage's own fresh classification with its evidence and its
vantage name; the probe is decided on here like any other answer. Only accounts watched
here are probed (a peer token is not a licence to probe anything), at most
``quorum.serve_rate`` per second (429 beyond, with ``Retry-After``), and only with the peer
token or the write token (checked by :mod:`monitor.auth`'s middleware).
"""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from monitor.model import AccountKey
from monitor.webbase import monitor_of

MAX_FIELD = 512


class RateGate:
    """A token bucket: ``rate`` per second, a burst of at least one second's worth."""

    def __init__(self) -> None:
        self.tokens, self.at = 0.0, 0.0

    def take(self, rate: float, now: float) -> float:
        """0 when allowed; else the seconds until one is."""
        burst = max(1.0, rate)
        self.tokens = min(burst, self.tokens + (now - self.at) * rate) if self.at else burst
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate


GATE: web.AppKey[RateGate] = web.AppKey("probe-rate")


def add_routes(app: web.Application) -> None:
    app[GATE] = RateGate()
    app.router.add_post("/api/v1/probe", probe_for_peer)


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers or None)


async def probe_for_peer(request: web.Request) -> web.Response:
    monitor = monitor_of(request)
    wait = request.app[GATE].take(monitor.config.quorum.serve_rate, time.monotonic())
    if wait:
        monitor.metrics.peer_probes_served.labels("throttled").inc()
        return _error(429, "too many fresh probes; ask again later",
                      **{"Retry-After": str(max(1, round(wait)))})
    try:
        body: Any = await request.json()
    except (ValueError, UnicodeDecodeError):
        return _error(400, "expected a JSON object {platform, account, id}")
    if not isinstance(body, dict) or not all(
            isinstance(body.get(k), str) and 0 < len(body[k]) <= MAX_FIELD
            for k in ("platform", "account")):
        return _error(400, "expected a JSON object {platform, account, id}")
    key = AccountKey(body["platform"], body["account"])
    obs = await monitor.fresh_probe(key)
    if obs is None:
        monitor.metrics.peer_probes_served.labels("not_watched").inc()
        return _error(404, f"{key} is not watched by this vantage "
                      f"({monitor.config.monitor.vantage})")
    monitor.metrics.peer_probes_served.labels(obs.result.value).inc()
    answer = {"vantage": monitor.config.monitor.vantage, "result": obs.result.value,
              "reason": obs.reason.value if obs.reason else None,
              "error": obs.error.value if obs.error else None,
              "evidence": obs.evidence or None, "at": obs.at}
    return web.Response(text=json.dumps(answer), content_type="application/json")
