"""The on-call endpoints: silences, acknowledgements, the watchlist and the audit trail.

Shapes follow what on-call tooling already speaks: silences are Alertmanager API v2's
(``gettableSilence`` / ``postableSilence``, ``{"silenceID": ...}``, ``?filter=`` matchers,
the same sort order), so amtool habits and scripts carry over. Every other answer is JSON;
every refusal is ``{"error": "..."}`` with 400 (malformed), 404 (no such thing), 409 (it
conflicts with what exists: the config file wins, an outage already over), 413 (a body over
:data:`monitor.webbase.BODY_MAX`) or 422 (well-formed but invalid).

Authentication is :mod:`monitor.auth`'s middleware (every write needs the write token);
the services behind (the silence book, acknowledgements, watchlist additions) write each
change with its audit row, who (``createdBy``/``by``, else ``"api"``) and from where (the
peer address), in one transaction.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiohttp import web

from monitor import reports
from monitor.additions import SOURCE_API, SOURCE_CONFIG, AdditionRejected
from monitor.availability import WINDOWS
from monitor.config import AccountConfig
from monitor.matchers import Matcher, parse_matcher
from monitor.silences import Silence, silence_from_json
from monitor.webbase import (
    BODY_MAX,
    EVENT_ID_MAX,
    LIMIT_MAX,
    MONITOR,
    Monitor,
    Query,
    bad_parameter,
    outage_json,
)

DEFAULT_ACTOR = "api"  # who a change is recorded as when the request does not say
ACTOR_MAX = 256
COMMENT_MAX = 4096


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/silences", list_silences)
    app.router.add_post("/api/v1/silences", post_silence)
    app.router.add_get("/api/v1/silences/{id}", get_silence)
    app.router.add_delete("/api/v1/silences/{id}", expire_silence)
    app.router.add_post("/api/v1/outages/{id}/ack", ack_outage)
    app.router.add_get("/api/v1/watchlist", list_watchlist)
    app.router.add_post("/api/v1/watchlist", add_watch)
    app.router.add_delete("/api/v1/watchlist/{platform}/{handle}", remove_watch)
    app.router.add_get("/api/v1/audit", audit)
    app.router.add_get("/api/v1/availability", availability_report)


# ----------------------------------------------------------------- errors and bodies


class ApiError(Exception):
    """A refusal: answered as ``{"error": message, **extra}`` with ``status``."""

    def __init__(self, status: int, message: str, extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra or {}

    def response(self) -> web.Response:
        return web.json_response({"error": self.message, **self.extra}, status=self.status)


Handler = Callable[[web.Request], Awaitable[web.Response]]


def answers_errors(handler: Handler) -> Handler:
    """Turn an :class:`ApiError` raised by ``handler`` into its JSON answer."""
    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except ApiError as exc:
            return exc.response()

    wrapped.__name__, wrapped.__doc__ = handler.__name__, handler.__doc__
    return wrapped


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # Python's json reads NaN and Infinity


async def json_object(request: web.Request, *, empty_ok: bool = False) -> dict[str, Any]:
    """The request body as a JSON object, at most :data:`BODY_MAX` bytes."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, f"the body is larger than {BODY_MAX} bytes") from None
    if not raw.strip() and empty_ok:
        return {}
    try:
        obj = json.loads(raw, parse_constant=_no_constants)
    except RecursionError:
        raise ApiError(400, "the body is not usable JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ApiError(400, f"the body is not JSON: {str(exc)[:200]}") from None
    if not isinstance(obj, dict):
        raise ApiError(400, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def actor(obj: dict[str, Any], field: str) -> str:
    """Who makes the change: ``obj[field]``, a name of 1 to :data:`ACTOR_MAX` printable
    characters, else :data:`DEFAULT_ACTOR`."""
    value = obj.get(field)
    if value is None or value == "":
        return DEFAULT_ACTOR
    if not isinstance(value, str) or not value.strip() or len(value) > ACTOR_MAX \
            or not value.isprintable():
        raise ApiError(400, f"{field}: a name of 1 to {ACTOR_MAX} printable characters")
    return value.strip()


def _monitor(request: web.Request) -> Monitor:
    return request.app[MONITOR]


def _store_open(request: web.Request) -> Any:
    store = _monitor(request).store
    if store is None:
        raise ApiError(503, "the monitor is not running (store not open)")
    return store


# ----------------------------------------------------------------- silences


_STATE_ORDER = {"active": 0, "pending": 1, "expired": 2}


def alertmanager_order(silences: Iterable[Silence], now: float) -> list[Silence]:
    """Alertmanager's ``sortSilences``: active (ending soonest first), then pending
    (starting soonest first), then expired (ended most recently first)."""
    def key(s: Silence) -> tuple[int, float]:
        state = s.state(now)
        when = {"active": s.ends_at, "pending": s.starts_at, "expired": -s.ends_at}[state]
        return _STATE_ORDER[state], when

    return sorted(silences, key=key)


def filter_matches(silence: Silence, filters: Iterable[Matcher]) -> bool:
    """Alertmanager's ``CheckSilenceMatchesFilterLabels``: every filter matcher is one of
    the silence's matchers (same name, operator and value). A filter finds silences by
    what they say, not by what they would silence."""
    return all(f in silence.matchers for f in filters)


def _filters(request: web.Request) -> list[Matcher]:
    """``?filter=`` matchers in amtool syntax, repeatable, as Alertmanager takes them."""
    filters = []
    for text in request.query.getall("filter", []):
        try:
            filters.append(parse_matcher(text))
        except ValueError as exc:
            raise bad_parameter("filter", f"a matcher such as platform=\"x\" ({exc})",
                                text) from None
    return filters


@answers_errors
async def list_silences(request: web.Request) -> web.Response:
    """Every silence kept (active, pending, and expired ones until retention drops them),
    in Alertmanager's order; ``?filter=`` matchers select by what silences say."""
    for name in request.query:
        if name != "filter":
            raise bad_parameter(name, "one of: filter")
    filters, now = _filters(request), time.time()
    silences = [s for s in _monitor(request).silencing.all(now) if filter_matches(s, filters)]
    return web.json_response([s.to_json(now) for s in alertmanager_order(silences, now)])


def _silence(request: web.Request) -> Silence:
    silence_id = request.match_info["id"]
    silence = _monitor(request).silencing.get(silence_id)
    if silence is None:
        raise ApiError(404, f"silence {silence_id[:64]!r} not found")
    return silence


@answers_errors
async def get_silence(request: web.Request) -> web.Response:
    Query(request)
    return web.json_response(_silence(request).to_json(time.time()))


@answers_errors
async def post_silence(request: web.Request) -> web.Response:
    """Create a silence (``postableSilence``); answers ``{"silenceID": id}``.

    With the ``id`` of an existing silence, the silence is replaced: the new one is stored
    first, then the old one expired (Alertmanager's update when it cannot edit in place),
    so nothing it covered slips out between the two. The answer has the new id.
    """
    Query(request)
    obj = await json_object(request)
    book, now = _monitor(request).silencing, time.time()
    replaces = obj.get("id")
    if replaces is not None and (not isinstance(replaces, str) or book.get(replaces) is None):
        raise ApiError(404, f"silence {str(replaces)[:64]!r} not found (leave out \"id\" to "
                       "create a new silence)")
    try:
        silence = silence_from_json(obj, now)
    except ValueError as exc:
        raise ApiError(400, f"invalid silence: {exc}") from None
    added = book.add(silence, silence.created_by, request.remote)
    if isinstance(replaces, str):
        book.expire(replaces, silence.created_by, request.remote)
    return web.json_response({"silenceID": added.id})


@answers_errors
async def expire_silence(request: web.Request) -> web.Response:
    """Expire a silence now (it is kept, as Alertmanager keeps them); ``?by=`` says who.
    Expiring one that has ended already changes nothing and answers the same."""
    q = Query(request, "by")
    by = actor({"by": q.text("by")}, "by")
    silence = _silence(request)
    ended = _monitor(request).silencing.expire(silence.id, by, request.remote)
    assert ended is not None  # _silence found it; silences are never deleted by expiring
    return web.json_response(ended.to_json(time.time()))


# ----------------------------------------------------------------- acknowledgements


@answers_errors
async def ack_outage(request: web.Request) -> web.Response:
    """Acknowledge an open outage: ``{"by", "comment"}`` (both optional). Reminders stop
    and the providers that take an acknowledgement get one, through the outbox.

    200 ``acknowledged`` (now) or ``already`` (kept as it was, with who and when); 409 when
    the outage is over; 404 when there is no such outage.
    """
    Query(request)
    raw_id = request.match_info["id"]
    if not raw_id.isascii() or not raw_id.isdigit() or len(raw_id) > 19 \
            or int(raw_id) > EVENT_ID_MAX:
        raise ApiError(400, f"outage id {raw_id[:64]!r}: a positive integer (the id in "
                       "/api/v1/outages and `history`)")
    obj = await json_object(request, empty_ok=True)
    by = actor(obj, "by")
    comment = obj.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > COMMENT_MAX):
        raise ApiError(400, f"comment: text of at most {COMMENT_MAX} characters")
    unknown = sorted(set(obj) - {"by", "comment"})
    if unknown:
        raise ApiError(400, f"unknown field(s) {', '.join(unknown)}: send by and comment")
    result = await _monitor(request).acknowledge(int(raw_id), by, comment or None,
                                                 request.remote)
    if result.status == "unknown" or result.outage is None:
        raise ApiError(404, f"outage {raw_id} not found")
    body = {"status": result.status, "outage": outage_json(result.outage)}
    if result.status == "closed":
        raise ApiError(409, f"outage {raw_id} is over (the account recovered): nothing to "
                       "acknowledge", body)
    return web.json_response(body)


# ----------------------------------------------------------------- the watchlist


def account_config_json(account: AccountConfig) -> dict[str, Any]:
    """Every field of a watchlist entry as JSON (durations in seconds; unset: null)."""
    out = {f.name: getattr(account, f.name) for f in dataclasses.fields(account)}
    out["labels"] = dict(account.labels)  # a read-only mapping in the config
    return out


@answers_errors
async def list_watchlist(request: web.Request) -> web.Response:
    """Every watched account: its entry, where it comes from (``config`` or ``api``) and,
    when this process watches it, its live state. ``?source=``; ``?format=yaml`` gives the
    API's additions as config entries ready to paste under ``accounts:``."""
    q = Query(request, "source", "format")
    source = q.choice("source", [SOURCE_CONFIG, SOURCE_API])
    fmt = q.choice("format", ["json", "yaml"])
    monitor = _monitor(request)
    if fmt == "yaml":
        return web.Response(text=monitor.additions.export_yaml(), content_type="text/yaml")
    rows = []
    for account, origin in monitor.additions.entries():
        if source is not None and origin != source:
            continue
        watched = monitor.accounts.get(account.key)
        live = watched.state if watched is not None else None
        rows.append({**account_config_json(account), "source": origin,
                     "state": live.state.value if live else None,
                     "outage_id": live.outage_id if live else None})
    return web.json_response({"accounts": rows})


def _refused(exc: AdditionRejected) -> ApiError:
    return ApiError(exc.status, "; ".join(exc.problems), {"problems": exc.problems})


@answers_errors
async def add_watch(request: web.Request) -> web.Response:
    """Watch one more account: a config ``accounts:`` entry as JSON, plus optional
    ``by``. Validated as the config's are; probed at once; 201 with the entry."""
    Query(request)
    obj = await json_object(request)
    by = actor(obj, "by")
    obj.pop("by", None)
    try:
        account = _monitor(request).additions.add(obj, by, request.remote)
    except AdditionRejected as exc:
        raise _refused(exc) from None
    return web.json_response({"account": account_config_json(account), "source": SOURCE_API},
                             status=201)


@answers_errors
async def remove_watch(request: web.Request) -> web.Response:
    """Stop watching an account added through the API (409 for one from the config file:
    the file wins). ``?by=`` says who."""
    q = Query(request, "by")
    by = actor({"by": q.text("by")}, "by")
    platform, handle = request.match_info["platform"], request.match_info["handle"]
    try:
        _monitor(request).additions.remove(platform, handle, by, request.remote)
    except AdditionRejected as exc:
        raise _refused(exc) from None
    return web.json_response({"removed": {"platform": platform, "handle": handle}})


# ----------------------------------------------------------------- the audit trail


@answers_errors
async def audit(request: web.Request) -> web.Response:
    """Who changed what, oldest first: ``?limit=`` (1 to 1000, default 100) rows after
    ``?after_id=`` (page on with the last id seen)."""
    q = Query(request, "limit", "after_id")
    limit = q.integer("limit", 100, 1, LIMIT_MAX)
    after = q.integer("after_id", 0, 0, EVENT_ID_MAX)
    entries = _store_open(request).audit_log(limit=limit, after_id=after)
    return web.json_response({"entries": entries})


# ----------------------------------------------------------------- availability


@answers_errors
async def availability_report(request: web.Request) -> web.Response:
    """Availability you can quote, per watched account and per platform over 24h, 7d, 30d
    and 90d (``?window=`` one of them; ``?platform=`` and ``?account=`` narrow the
    accounts): each figure a ``lower`` and an ``upper`` bound (the truth lies between),
    the seconds behind them, and as text ("99.953% to 99.990%"). The time the monitor was
    not running counts as possibly down (``unwatched``). See monitor/reports.py."""
    q = Query(request, "platform", "account", "window")
    platform, account = q.text("platform"), q.text("account")
    window = q.choice("window", WINDOWS)
    store = _store_open(request)
    watched = [w for key, w in _monitor(request).accounts.items()
               if (platform is None or key.platform == platform)
               and (account is None or key.handle == account)]
    if not watched and (platform is not None or account is not None):
        raise ApiError(404, "no watched account matches "
                       + " and ".join(f"{name}={value!r}" for name, value in
                                      (("platform", platform), ("account", account))
                                      if value is not None))
    windows = WINDOWS if window is None else {window: WINDOWS[window]}
    report = reports.availability(store, [w.key for w in watched], time.time(), windows,
                                  still_absent_at=reports.still_absent(watched))
    return web.json_response(report)
