"""What every HTTP handler module shares: the monitor they serve (as a Protocol), strict
query parameters and the JSON shapes of outages and silences. :mod:`monitor.web` builds the
app and serves the operational routes; :mod:`monitor.api` the on-call ones."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Protocol

from aiohttp import web

from monitor.additions import Additions
from monitor.config import AccountConfig, Config
from monitor.events import EventBus
from monitor.matchers import subject_labels
from monitor.metrics import Metrics
from monitor.model import AccountKey, Observation, Outage
from monitor.silences import Suppression
from monitor.silencing import SilenceBook
from monitor.store import Store
from monitor.watchlist import Watched


class AckOutcome(Protocol):
    """What :meth:`Monitor.acknowledge` did (monitor.app.AckResult)."""

    @property
    def status(self) -> str: ...  # acknowledged | already | closed | unknown

    @property
    def outage(self) -> Outage | None: ...


class Monitor(Protocol):
    """What the HTTP surface reads of the running monitor, and the changes it asks for."""

    config: Config
    store: Store | None
    metrics: Metrics
    bus: EventBus
    reload_token: str | None
    silencing: SilenceBook
    additions: Additions

    @property
    def accounts(self) -> Mapping[AccountKey, Watched]: ...

    def not_ready(self) -> dict[str, str]: ...

    async def reload(self) -> list[str]: ...

    async def acknowledge(self, outage_id: int, by: str, comment: str | None,
                          remote: str | None) -> AckOutcome: ...

    async def fresh_probe(self, key: AccountKey) -> Observation | None: ...


MONITOR: web.AppKey[Monitor] = web.AppKey("monitor")
BODY_MAX = 1024**2  # bytes of a request body; a silence or an account is a few hundred


def monitor_of(request: web.Request) -> Monitor:
    return request.app[MONITOR]


# ----------------------------------------------------------------- query parameters

LIMIT_MAX = 1000  # outages per answer; page further with ?platform= / ?account=
TEXT_MAX = 200  # characters of a free-text filter (platform, account handle)
EVENT_ID_MAX = 2**63 - 1  # SQLite's largest INTEGER, which transition ids are


def bad_parameter(name: str, allowed: str, got: str | None = None) -> web.HTTPBadRequest:
    """A 400 with a JSON body naming the parameter and what it accepts."""
    body: dict[str, str] = {"error": "invalid parameter", "parameter": name,
                            "allowed": allowed}
    if got is not None:
        body["got"] = got[:64]
    return web.HTTPBadRequest(text=json.dumps(body), content_type="application/json")


class Query:
    """A request's query string read strictly: every parameter known, given once, in range.

    A typo (``?limt=5``) or an out-of-range value answers 400 rather than being ignored or
    passed down to SQLite, where ``LIMIT -1`` means "every row".
    """

    def __init__(self, request: web.Request, *names: str):
        self.query = request.query
        for name in self.query:
            if name not in names:
                raise bad_parameter(name, "one of: " + ", ".join(names) if names
                                    else "no query parameters")
            if len(self.query.getall(name)) > 1:
                raise bad_parameter(name, "given at most once")

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        raw = self.query.get(name)
        if raw is None:
            return default
        allowed = f"an integer from {low} to {high}"
        if not re.fullmatch(r"-?[0-9]{1,20}", raw):
            raise bad_parameter(name, allowed, raw)
        number = int(raw)
        if not low <= number <= high:
            raise bad_parameter(name, allowed, raw)
        return number

    def boolean(self, name: str) -> bool | None:
        raw = self.query.get(name)
        if raw is None:
            return None
        if raw not in ("true", "false"):
            raise bad_parameter(name, "true or false", raw)
        return raw == "true"

    def choice(self, name: str, choices: Iterable[str]) -> str | None:
        raw = self.query.get(name)
        options = sorted(choices)
        if raw is not None and raw not in options:
            raise bad_parameter(name, "one of: " + ", ".join(options), raw)
        return raw

    def text(self, name: str) -> str | None:
        raw = self.query.get(name)
        if raw is None:
            return None
        if not 1 <= len(raw) <= TEXT_MAX or not raw.isprintable():
            raise bad_parameter(name, f"1 to {TEXT_MAX} printable characters", raw)
        return raw


def silenced_now(monitor: Monitor, account: AccountConfig, now: float) -> Suppression | None:
    """The silence or maintenance window covering ``account`` now (its pages wait)."""
    return monitor.silencing.covering(subject_labels(
        account.platform, account.handle, account.team, account.protected, account.labels),
        now)


def suppression_json(covered: Suppression | None) -> dict[str, object] | None:
    return None if covered is None else {"reason": covered.reason, "by": covered.by,
                                         "until": covered.until}


def outage_json(o: Outage) -> dict[str, object]:
    bounds = o.duration_bounds
    return {
        "id": o.id, "platform": o.key.platform, "account": o.key.handle, "reason": o.reason,
        "last_seen_present_at": o.last_seen_present_at,
        "first_seen_absent_at": o.first_seen_absent_at, "confirmed_at": o.confirmed_at,
        "last_seen_absent_at": o.last_seen_absent_at, "recovered_at": o.recovered_at,
        "duration_seconds": o.duration,
        "duration_bounds_seconds": list(bounds) if bounds else None,
        "open": o.recovered_at is None,
        "acked_at": o.acked_at, "acked_by": o.acked_by, "ack_comment": o.ack_comment,
    }
