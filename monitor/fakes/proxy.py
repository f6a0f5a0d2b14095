"""One vantage's path to a platform: a loopback reverse proxy that can rewrite the answers.

A monitor sees a platform through whatever lies between: a CDN edge that serves a stale
404, a geo-block page, a regional outage, a proxy that drops the connection. To test
multi-vantage quorum (issue 12) each monitor process reaches the platform fake through its
own :class:`VantagePath`, used as that vantage's ``platforms.<p>.base_url``, and a test
decides per path, at run time, what that vantage sees:

- ``pass`` -- forward verbatim, streamed: status, reason, headers (``Retry-After``, the
  rate-limit headers, ``Location`` of a redirect, which is never followed here) and body
  bytes (never decompressed), up to ``max_body_bytes``;
- ``not_found`` -- answer, without asking upstream, exactly what the platform documents for
  an account that does not exist (:class:`NotFoundAnswers`; ready: :func:`mastodon_not_found`,
  :func:`x_not_found`), so the vantage's probe says ``absent(not_found)``;
- ``error`` -- a proxy's own 502 Bad Gateway page;
- ``hang`` -- never answer, until the client gives up or the path shuts down;
- ``refuse`` -- drop the connection without an answer.

A mode is the path's default, or holds only for some accounts (``match``: handles or ids;
an id the path has seen upstream answer for a handle counts as that handle) and/or some
paths (``path``: a regular expression searched in the path and query). Change it in-process
with :meth:`VantagePath.set_mode`, or from another process:

- ``POST /_control/mode`` -- ``{"mode": "not_found", "match": "alice", "path": null}``
  (``match`` a string or a list of strings; without ``match`` and ``path`` the mode becomes
  the default and every narrower rule is dropped); answers the mode table
- ``GET /_control/proxy`` -- the mode table and the request counts
- ``POST /_control/proxy/reset`` -- zero the counts

Every other ``/_control/`` request goes to the upstream fake unchanged and uncounted, so a
test can steer the fake through any vantage. Run one alone with
``python -m monitor.fakes.proxy --upstream http://127.0.0.1:8081 --platform mastodon``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import json
import re
import socket
import struct
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web
from yarl import URL

from monitor.fakes.faults import Canned, Handler
from monitor.fakes.server import CONTROL_PREFIX, serve, serve_until_signal
from monitor.fakes.x import NOT_FOUND_TYPE

DEFAULT_MAX_BODY = 32 * 1024 * 1024  # above every hostile body a fake sends (8 MiB)
LEARN_MAX = 64 * 1024  # answers at most this big are read for id -> handle pairs
# RFC 9110 7.6.1: connection-specific fields a proxy must not forward; Content-Length is set
# from what is actually forwarded, Host from the upstream URL.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer",
                        "transfer-encoding", "upgrade", "proxy-authenticate",
                        "proxy-authorization"})
_NOT_COPIED_UP = HOP_BY_HOP | {"host", "content-length"}
_NOT_COPIED_DOWN = HOP_BY_HOP | {"content-length"}
# nginx's own 502 page, byte for byte (ngx_http_special_response.c): what a vantage behind a
# broken gateway gets instead of the platform's answer.
BAD_GATEWAY = Canned(502, "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                          "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx"
                          "</center>\r\n</body>\r\n</html>\r\n", content_type="text/html")
GATEWAY_TIMEOUT = Canned(504, BAD_GATEWAY.body.replace("502 Bad Gateway", "504 Gateway Time-out"),
                         content_type="text/html")


class Mode(enum.StrEnum):
    """What a vantage's path does with a request."""

    PASS = "pass"
    NOT_FOUND = "not_found"
    ERROR = "error"
    HANG = "hang"
    REFUSE = "refuse"


# When one request (a batch lookup) is about accounts in different modes, the one that
# breaks the whole exchange wins; pass beside not_found is a partial rewrite.
_WHOLE_REQUEST = (Mode.REFUSE, Mode.HANG, Mode.ERROR)


@dataclass(frozen=True, slots=True)
class NotFoundAnswers:
    """One platform's documented "no such account" answers, and how to read its traffic.

    Account keys are lower-case handles or ids, one per account a request asks about.
    """

    platform: str
    # The accounts a request asks about; () for one about none (passed even in not_found).
    accounts: Callable[[web.Request], tuple[str, ...]]
    # The platform's answer saying every account in ``missing`` does not exist.
    answer: Callable[[web.Request, frozenset[str]], Canned]
    # id -> lower-case handle for every account a decoded JSON answer names.
    names: Callable[[Any], dict[str, str]]
    # A batch answer with the accounts in ``missing`` turned into not-found entries; None
    # for a platform without batch lookups (or an answer it cannot read: sent unchanged).
    merge: Callable[[bytes, web.Request, frozenset[str]], bytes | None] | None = None


def _dumps(doc: Any) -> str:
    """Both platforms render compact JSON."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------------- Mastodon

_MASTODON_BY_ID = re.compile(r"^/api/v1/accounts/(?P<id>[^/]+)$")


def mastodon_not_found(domain: str = "mastodon.example") -> NotFoundAnswers:
    """Mastodon: 404 ``{"error":"Record not found"}`` for an unknown or purged account, by
    ``acct`` lookup or by id (docs.joinmastodon.org, methods/accounts; docs/platforms.md).

    ``domain`` is the instance's own: ``alice@<domain>`` is the local ``alice``.
    """
    def accounts(request: web.Request) -> tuple[str, ...]:
        if request.path == "/api/v1/accounts/lookup":
            user, _, host = request.query.get("acct", "").removeprefix("@").partition("@")
            acct = user if not host or host.lower() == domain.lower() else f"{user}@{host}"
            return (acct.lower(),) if acct else ()
        found = _MASTODON_BY_ID.match(request.path)
        return (found["id"].lower(),) if found else ()

    def answer(request: web.Request, missing: frozenset[str]) -> Canned:
        return Canned(404, _dumps({"error": "Record not found"}))

    def names(doc: Any) -> dict[str, str]:
        if not isinstance(doc, dict) or not isinstance(doc.get("id"), str):
            return {}
        acct = doc.get("acct") or doc.get("username")
        return {doc["id"].lower(): acct.lower()} if isinstance(acct, str) and acct else {}

    return NotFoundAnswers("mastodon", accounts, answer, names)


# ---------------------------------------------------------------------- X

_X_BY_USERNAME = re.compile(r"^/2/users/by/username/(?P<value>[^/]+)$")
_X_BY_ID = re.compile(r"^/2/users/(?P<value>[^/]+)$")


def x_not_found(status: int = 200) -> NotFoundAnswers:
    """X API v2: an ``errors`` entry "Could not find user with <parameter>: [<value>]." of
    type resource-not-found (docs/platforms.md, "X API v2"). ``status`` of a single lookup:
    200 as every recorded answer, or 404 as X's guide says (docs.x.com, User lookup, "Error
    handling"); a batch answers 200 either way."""
    def lookups(request: web.Request) -> tuple[str, list[str]]:
        """(parameter, values as asked) of a lookup request; ("", []) for anything else."""
        for pattern, parameter in ((_X_BY_USERNAME, "username"), (_X_BY_ID, "id")):
            found = pattern.match(request.path)
            if found:
                return parameter, [found["value"]]
        if request.path == "/2/users":
            return "ids", [i for i in request.query.get("ids", "").split(",") if i]
        return "", []

    def accounts(request: web.Request) -> tuple[str, ...]:
        return tuple(value.lower() for value in lookups(request)[1])

    def entries(request: web.Request, missing: frozenset[str]) -> list[dict[str, str]]:
        parameter, values = lookups(request)
        return [{"value": value,
                 "detail": f"Could not find user with {parameter}: [{value}].",
                 "title": "Not Found Error", "resource_type": "user", "parameter": parameter,
                 "resource_id": value, "type": NOT_FOUND_TYPE}
                for value in values if value.lower() in missing]

    def answer(request: web.Request, missing: frozenset[str]) -> Canned:
        single = lookups(request)[0] != "ids"
        return Canned(status if single else 200,
                      _dumps({"errors": entries(request, missing)}))

    def names(doc: Any) -> dict[str, str]:
        data = doc.get("data") if isinstance(doc, dict) else None
        users = data if isinstance(data, list) else [data]
        return {u["id"].lower(): u["username"].lower() for u in users
                if isinstance(u, dict) and isinstance(u.get("id"), str)
                and isinstance(u.get("username"), str)}

    def merge(body: bytes, request: web.Request, missing: frozenset[str]) -> bytes | None:
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            return None
        if not isinstance(doc, dict) or not isinstance(doc.get("data", []), list) \
                or not isinstance(doc.get("errors", []), list):
            return None
        kept = [u for u in doc.get("data", [])
                if not (isinstance(u, dict) and str(u.get("id", "")).lower() in missing)]
        errors = [e for e in doc.get("errors", [])
                  if not (isinstance(e, dict) and str(e.get("resource_id", "")).lower() in missing)]
        doc.pop("data", None)
        doc.pop("errors", None)
        if kept:
            doc["data"] = kept
        doc["errors"] = errors + entries(request, missing)
        return _dumps(doc).encode()

    return NotFoundAnswers("x", accounts, answer, names, merge)


NOT_FOUND_ANSWERS: dict[str, Callable[[], NotFoundAnswers]] = {
    "mastodon": mastodon_not_found, "x": x_not_found}


# ---------------------------------------------------------------------- the mode table


@dataclass(frozen=True, slots=True)
class Rule:
    """A mode for the accounts in ``match`` (None: any) on paths ``path`` finds (None: any)."""

    mode: Mode
    match: frozenset[str] | None = None
    path: re.Pattern[str] | None = None

    def to_json(self) -> dict[str, Any]:
        return {"mode": str(self.mode),
                "match": sorted(self.match) if self.match is not None else None,
                "path": self.path.pattern if self.path is not None else None}


def _names(match: str | Iterable[str] | None) -> frozenset[str] | None:
    if match is None:
        return None
    if isinstance(match, str):
        items: list[object] = [match]
    elif isinstance(match, list | tuple | set | frozenset):
        items = list(match)
    else:
        raise ValueError("match must be a handle or id, or a list of them")
    if not items or not all(isinstance(m, str) and m.strip("@ ") for m in items):
        raise ValueError("match must be a handle or id, or a non-empty list of them")
    return frozenset(str(m).strip().removeprefix("@").lower() for m in items)


class VantagePath:
    """A reverse proxy on loopback in front of ``upstream`` (a platform fake's base URL).

    ``not_found`` gives the platform's answers for the ``not_found`` mode (None: that mode
    is refused). ``upstream_timeout`` (None: wait as long as the client does) ends a pass
    with 504. Serve it with :meth:`running`.
    """

    def __init__(self, upstream: str, not_found: NotFoundAnswers | None = None, *,
                 mode: Mode | str = Mode.PASS, max_body_bytes: int = DEFAULT_MAX_BODY,
                 upstream_timeout: float | None = None) -> None:
        self.upstream = URL(upstream.rstrip("/"))
        if not self.upstream.is_absolute():
            raise ValueError(f"upstream must be an absolute URL, not {upstream!r}")
        self.not_found = not_found
        self.max_body_bytes = max_body_bytes
        self.upstream_timeout = upstream_timeout
        self.default = Mode.PASS
        self.rules: list[Rule] = []
        self.requests_total = 0
        self._counts: Counter[tuple[Mode, str, str]] = Counter()  # (mode, path, account)
        self._handle_of: dict[str, str] = {}  # id -> handle, learned from passed answers
        self._closing = asyncio.Event()
        self._open: set[asyncio.Transport] = set()
        self._session: aiohttp.ClientSession | None = None
        self.set_mode(mode)

    # ------------------------------------------------------------------ Python control

    def set_mode(self, mode: Mode | str, match: str | Iterable[str] | None = None,
                 path: str | None = None) -> None:
        """Without ``match`` and ``path``: the default for every request, narrower rules
        dropped. With either: a rule for those accounts/paths (replacing one for the same
        ones), newer rules winning over older. ValueError for a bad mode, match or path."""
        try:
            chosen = Mode(mode)
        except ValueError:
            raise ValueError(f"unknown mode {mode!r}; choose one of "
                             f"{', '.join(m.value for m in Mode)}") from None
        if chosen is Mode.NOT_FOUND and self.not_found is None:
            raise ValueError("not_found needs the platform's answers (not_found=...)")
        names = _names(match)
        try:
            pattern = re.compile(path) if path is not None else None
        except (re.error, TypeError) as exc:
            raise ValueError(f"path is not a regular expression: {exc}") from None
        if names is None and pattern is None:
            self.default, self.rules = chosen, []
            return
        rule = Rule(chosen, names, pattern)
        self.rules = [r for r in self.rules if (r.match, r.path) != (rule.match, rule.path)]
        self.rules.append(rule)

    def modes(self) -> dict[str, Any]:
        return {"default": str(self.default), "rules": [r.to_json() for r in self.rules]}

    def count(self, handle: str | None = None, *, mode: Mode | str | None = None,
              path: str | None = None) -> int:
        """Requests seen, once per account each asks about (a batch of three ids counts
        three; one about no account, once), narrowed to an account (handle or id, learned
        ids included), a mode and an exact path."""
        wanted = self._identities(handle.removeprefix("@").lower()) if handle else None
        return sum(n for (m, p, account), n in self._counts.items()
                   if (mode is None or m == Mode(mode)) and (path is None or p == path)
                   and (wanted is None or account in wanted))

    def reset_counts(self) -> None:
        self._counts.clear()
        self.requests_total = 0

    def stats(self) -> dict[str, Any]:
        by_mode: Counter[str] = Counter()
        by_account: dict[str, Counter[str]] = {}
        for (mode, _, account), n in self._counts.items():
            by_mode[mode.value] += n
            if account:
                name = self._handle_of.get(account, account)
                by_account.setdefault(name, Counter())[mode.value] += n
        return {"requests_total": self.requests_total, "by_mode": dict(by_mode),
                "by_account": {a: dict(c) for a, c in by_account.items()},
                "modes": self.modes()}

    # ------------------------------------------------------------------ serving

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._track])
        app.router.add_post(CONTROL_PREFIX + "mode", self._control_mode)
        app.router.add_get(CONTROL_PREFIX + "proxy", self._control_stats)
        app.router.add_post(CONTROL_PREFIX + "proxy/reset", self._control_reset)
        app.router.add_route("*", "/{tail:.*}", self._proxy)
        return app

    @contextlib.asynccontextmanager
    async def running(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve on ``host:port`` (0: any free port); yields the base URL. On exit every
        open exchange is cut (a hanging one included) before the server stops."""
        self._closing = asyncio.Event()
        # auto_decompress off: bytes pass as sent. Header limits above the fakes' 64 KiB
        # huge-header fault: an oversized header reaches the probe, not our 502.
        session = aiohttp.ClientSession(auto_decompress=False, max_line_size=128 * 1024,
                                        max_field_size=128 * 1024)
        self._session = session
        try:
            # Nothing waits on aiohttp's shutdown timeout: every exchange is cut below.
            async with serve(self.app(), self._closing, host, port,
                             shutdown_timeout=60.0) as url:
                try:
                    yield url
                finally:
                    self._closing.set()
                    for transport in list(self._open):
                        transport.abort()
        finally:
            self._session = None
            await session.close()

    @web.middleware
    async def _track(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Remember each open connection, so shutting down can cut it."""
        transport = request.transport
        if transport is None:
            return await handler(request)
        self._open.add(transport)
        try:
            return await handler(request)
        finally:
            self._open.discard(transport)

    async def _proxy(self, request: web.Request) -> web.StreamResponse:
        if request.path.startswith(CONTROL_PREFIX):
            return await self._forward(request)  # the fake's own control endpoints
        accounts = self.not_found.accounts(request) if self.not_found is not None else ()
        per_account = {a: self._mode_for(request, a) for a in accounts}
        mode = self._request_mode(request, per_account)
        self.requests_total += 1
        for account in accounts or ("",):
            applied = per_account.get(account, mode) if mode is Mode.NOT_FOUND else mode
            self._counts[applied, request.path, account] += 1
        return await self._answer(request, mode, per_account)

    async def _answer(self, request: web.Request, mode: Mode,
                      per_account: dict[str, Mode]) -> web.StreamResponse:
        if mode is Mode.PASS:
            return await self._forward(request)
        if mode is Mode.ERROR:
            return BAD_GATEWAY.response()
        if mode is Mode.HANG:
            await self._closing.wait()
        if mode in (Mode.HANG, Mode.REFUSE):
            _drop(request)
            return web.Response()  # never sent: the connection is gone
        assert self.not_found is not None  # set_mode refuses not_found without it
        missing = frozenset(a for a, m in per_account.items() if m is Mode.NOT_FOUND)
        if missing == per_account.keys() or self.not_found.merge is None:
            return self.not_found.answer(request, missing).response()
        return await self._forward_rewritten(request, missing)

    # ------------------------------------------------------------------ choosing a mode

    def _mode_for(self, request: web.Request, account: str | None) -> Mode:
        """The newest rule that holds for this account (None: a request about none)."""
        identities = self._identities(account) if account is not None else None
        for rule in reversed(self.rules):
            if rule.path is not None and not rule.path.search(request.path_qs):
                continue
            if rule.match is None or (identities is not None and identities & rule.match):
                return rule.mode
        return self.default

    def _request_mode(self, request: web.Request, per_account: dict[str, Mode]) -> Mode:
        """One mode for the exchange: a whole-request failure for any account is the
        request's; not_found for only some of a batch is a (partial) not_found. A request
        about no account is never rewritten: not_found passes it."""
        if not per_account:
            mode = self._mode_for(request, None)
            return Mode.PASS if mode is Mode.NOT_FOUND else mode
        modes = set(per_account.values())
        for whole in _WHOLE_REQUEST:
            if whole in modes:
                return whole
        return Mode.NOT_FOUND if Mode.NOT_FOUND in modes else Mode.PASS

    def _identities(self, account: str) -> set[str]:
        """An account key with every name the path knows for it: id and handle."""
        names = {account}
        handle = self._handle_of.get(account)
        if handle is not None:
            names.add(handle)
        names.update(i for i, h in self._handle_of.items() if h == account)
        return names

    def _learn(self, response: aiohttp.ClientResponse, body: bytes) -> None:
        if self.not_found is None or response.status != 200 or len(body) > LEARN_MAX \
                or "json" not in response.headers.get("Content-Type", ""):
            return
        try:
            self._handle_of.update(self.not_found.names(json.loads(body)))
        except (ValueError, RecursionError):
            return

    # ------------------------------------------------------------------ forwarding

    def _upstream_url(self, request: web.Request) -> URL:
        return URL(str(self.upstream) + request.raw_path, encoded=True)

    @contextlib.asynccontextmanager
    async def _upstream(self, request: web.Request) -> AsyncIterator[aiohttp.ClientResponse]:
        """The upstream's answer to ``request``, redirects not followed."""
        assert self._session is not None, "serve the path with running()"
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _NOT_COPIED_UP]
        body = await request.read() if request.body_exists else None
        async with self._session.request(request.method, self._upstream_url(request),
                                         headers=headers, data=body,
                                         allow_redirects=False) as response:
            yield response

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        """Pass mode: status, headers and body bytes as the upstream sends them, streamed;
        a body over the cap, or an upstream failing mid-answer, cuts the connection."""
        async def send(up: aiohttp.ClientResponse, response: web.StreamResponse) -> None:
            if up.content_length is None and up.status not in (204, 304) \
                    and request.method != "HEAD":
                response.enable_chunked_encoding()
            await response.prepare(request)
            kept = bytearray()
            sent = 0
            async for chunk in up.content.iter_any():
                sent += len(chunk)
                if sent > self.max_body_bytes:
                    _drop(request)
                    return
                if sent <= LEARN_MAX:
                    kept += chunk
                await response.write(chunk)
            await response.write_eof()
            self._learn(up, bytes(kept))

        return await self._exchange(request, send)

    async def _forward_rewritten(self, request: web.Request,
                                 missing: frozenset[str]) -> web.StreamResponse:
        """A batch where only some accounts are not found: the upstream's answer, read
        whole (within the cap), with those accounts' entries rewritten."""
        merge = self.not_found.merge if self.not_found is not None else None
        assert merge is not None

        async def send(up: aiohttp.ClientResponse, response: web.StreamResponse) -> None:
            body = await up.content.read(self.max_body_bytes + 1)
            if len(body) > self.max_body_bytes:
                _drop(request)
                return
            self._learn(up, body)
            readable = up.status == 200 and "Content-Encoding" not in up.headers
            merged = merge(body, request, missing) if readable else None
            body = merged if merged is not None else body
            response.content_length = len(body)
            await response.prepare(request)
            await response.write(body)
            await response.write_eof()

        return await self._exchange(request, send)

    async def _exchange(self, request: web.Request,
                        send: Callable[[aiohttp.ClientResponse, web.StreamResponse],
                                       Awaitable[None]]) -> web.StreamResponse:
        """Ask upstream and ``send`` its answer on; before the answer has begun, a failure
        upstream is the gateway's 502 (504 past ``upstream_timeout``), after, a cut."""
        response: web.StreamResponse | None = None
        try:
            async with asyncio.timeout(self.upstream_timeout), self._upstream(request) as up:
                response = _copy_head(up)
                await send(up, response)
                return response
        except TimeoutError:
            failure = GATEWAY_TIMEOUT
        except (aiohttp.ClientError, OSError):  # refused, reset, broken answer, client gone
            failure = BAD_GATEWAY
        if response is not None and response.prepared:
            _drop(request)
            return response
        return failure.response()

    # ------------------------------------------------------------------ control endpoints

    async def _control_mode(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            if not isinstance(data, dict) or "mode" not in data:
                raise ValueError('expected {"mode": "...", "match": ..., "path": ...}')
            unknown = sorted(set(data) - {"mode", "match", "path"})
            if unknown:
                raise ValueError(f"unknown field(s): {', '.join(map(str, unknown))}")
            if data.get("path") is not None and not isinstance(data["path"], str):
                raise ValueError("path must be a string (a regular expression)")
            self.set_mode(data["mode"], data.get("match"), data.get("path"))
        except ValueError as exc:  # JSONDecodeError included
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.modes())

    async def _control_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset_counts()
        return web.json_response(self.stats())


def _copy_head(up: aiohttp.ClientResponse) -> web.StreamResponse:
    """A response with the upstream's status, reason and end-to-end headers, in order."""
    response = web.StreamResponse(status=up.status, reason=up.reason)
    for name, value in up.raw_headers:
        key = name.decode("latin-1")
        if key.lower() not in _NOT_COPIED_DOWN:
            response.headers.add(key, value.decode("latin-1"))
    if up.content_length is not None:
        response.content_length = up.content_length
    return response


def _drop(request: web.Request) -> None:
    """Cut the connection with a TCP reset (SO_LINGER 0), as a refusing middlebox does."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


# ---------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m monitor.fakes.proxy --upstream URL [--platform mastodon|x]``: prints the
    base URL on one line once listening, serves until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description="One vantage's path to a platform fake.")
    parser.add_argument("--upstream", required=True, help="the platform fake's base URL")
    parser.add_argument("--platform", choices=sorted(NOT_FOUND_ANSWERS),
                        help="whose not-found answers the not_found mode gives")
    parser.add_argument("--mode", default="pass", choices=[m.value for m in Mode])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY)
    args = parser.parse_args(argv)
    answers = NOT_FOUND_ANSWERS[args.platform]() if args.platform else None
    try:
        path = VantagePath(args.upstream, answers, mode=args.mode,
                           max_body_bytes=args.max_body_bytes)
    except ValueError as exc:
        parser.error(str(exc))
    asyncio.run(serve_until_signal(path.running(args.host, args.port)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
