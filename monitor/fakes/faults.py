"""Misbehaviour on demand, and the server shell every fake platform shares.

Probes must turn every hostile answer (slow, 5xx, 429, hangs, resets, huge or broken bodies,
gzip bombs, redirects to another host or in a loop, deep JSON, slowloris, huge headers,
truncated or non-UTF-8 bodies, login walls) into ``error(kind)``, never ``absent`` and never
``present``. Every fake built on :class:`FakeServer` serves all of them without code of its
own, deterministically (a seeded :class:`random.Random`), controlled from Python or, for
other processes, over HTTP:

- ``POST /_control/accounts/{handle}`` -- the platform's own account script (see subclasses)
- ``POST /_control/faults`` -- JSON with :class:`Faults` fields; replaces the whole profile
- ``POST /_control/reset`` -- zero the request counters
- ``GET /_control/stats`` -- counters, account states and the current faults

:class:`FakePlatform` adds what platforms with immutable account ids share: renames,
re-registered handles, platform-wide canned answers (``POST /_control/override``) and a
request budget for the rate-limit headers.

Control endpoints and the login page never see faults, latency or counting. The
cross-host redirect points at a second loopback server ("elsewhere", started on first use)
that answers like the platform, with no faults and, for :class:`FakePlatform`, other ids:
a probe that followed it would believe a stranger.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import dataclasses
import functools
import hashlib
import json
import random
import signal
import socket
import struct
import sys
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote

from aiohttp import web

CONTROL_PREFIX = "/_control/"
HUGE_CHUNK = 64 * 1024
# A JSON document cut off mid-value, as a crashed upstream or a truncating proxy sends it.
MALFORMED_JSON = b'{"id":"109283741234567890","username":"alice","acct":"ali'
# JSON-shaped, declared UTF-8, but \xff\xfe and \xc3\x28 are not UTF-8 (RFC 8259 8.1 demands it).
NON_UTF8_JSON = b'{"id":"1092837412\xff\xfe","username":"\xc3\x28alice","acct":"alice"}'
# Where the login-wall fault sends clients, as Instagram does for logged-out visitors (and a
# captive portal does for any URL): a same-host 302, then an HTML login form.
LOGIN_PATH = "/accounts/login/"
LOGIN_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Login • FakeSite</title></head>
<body><form id="loginForm" method="post" action="/accounts/login/ajax/">
<input name="username"><input name="password" type="password"><button>Log in</button>
</form></body></html>
"""
HUGE_HEADER = "X-Padding"
# Marks the app the "elsewhere" server runs: it answers plainly, never with a fault.
ELSEWHERE = web.AppKey("elsewhere", bool)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Faults:
    """A fault profile. ``*_rate`` fields are per-request probabilities (summing to <= 1)."""

    latency: float = 0.0  # seconds added before every answer
    timeout_rate: float = 0.0  # hang for hang_seconds (longer than any client timeout)
    reset_rate: float = 0.0  # TCP reset instead of an answer
    server_error_rate: float = 0.0  # the platform's 5xx answer
    rate_limit_rate: float = 0.0  # the platform's 429 answer
    huge_body_rate: float = 0.0  # 200 with huge_body_bytes of body
    malformed_rate: float = 0.0  # 200 with truncated JSON
    # Hostile answers: a probe must survive each in bounded time and memory.
    deep_json_rate: float = 0.0  # 200, "[" * deep_json_depth + "]" * deep_json_depth
    gzip_bomb_rate: float = 0.0  # 200, gzip: ~1/1000 of gzip_bomb_bytes on the wire
    cross_host_rate: float = 0.0  # 302 to the same path and query on the elsewhere server
    redirect_loop_rate: float = 0.0  # 302 to the very URL asked for
    slowloris_rate: float = 0.0  # 200, then one body byte every slowloris_interval, forever
    huge_headers_rate: float = 0.0  # the real answer plus a huge_header_bytes header line
    truncated_rate: float = 0.0  # Content-Length promises more than is sent, then a close
    non_utf8_rate: float = 0.0  # 200, "application/json; charset=utf-8", bytes not UTF-8
    login_wall_rate: float = 0.0  # 302 to LOGIN_PATH, an HTML login form
    hang_seconds: float = 30.0
    huge_body_bytes: int = 8 * 1024 * 1024
    huge_body_chunked: bool = False  # stream it without Content-Length
    deep_json_depth: int = 200_000
    gzip_bomb_bytes: int = 1 << 30  # decompressed; on the wire it is ~1 MB for 1 GiB
    slowloris_interval: float = 0.1  # seconds between dribbled bytes
    huge_header_bytes: int = 64 * 1024  # aiohttp, nginx and most clients stop at 8 KiB
    seed: int | None = None  # reseed the fake's random source when set

    def __post_init__(self) -> None:
        rates = self._rates()
        if any(not 0.0 <= p <= 1.0 for p in rates.values()):
            raise ValueError("every *_rate must be between 0 and 1")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("the *_rate fields must add up to at most 1")
        sizes = ("latency", "hang_seconds", "huge_body_bytes", "deep_json_depth",
                 "gzip_bomb_bytes", "slowloris_interval", "huge_header_bytes")
        if any(getattr(self, name) < 0 for name in sizes):
            raise ValueError(f"{', '.join(sizes)} must not be negative")

    @classmethod
    def from_json(cls, data: Any) -> Faults:
        """Build from decoded JSON; unknown keys are errors, as in our config."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object of fault fields")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def pick(self, rng: random.Random) -> str | None:
        """The fault for one request (its ``*_rate`` name without the suffix), or None."""
        rates = self._rates()
        if not any(rates.values()):
            return None
        draw, edge = rng.random(), 0.0
        for name, rate in rates.items():
            edge += rate
            if draw < edge:
                return name.removesuffix("_rate")
        return None

    def _rates(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name.endswith("_rate")}


@dataclass(frozen=True, slots=True)
class Canned:
    """A fixed answer in a platform's own shape (its 5xx, its 429)."""

    status: int
    body: str
    content_type: str = "application/json"
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def response(self) -> web.Response:
        return web.Response(status=self.status, text=self.body, content_type=self.content_type,
                            charset="utf-8", headers=dict(self.headers))


@contextlib.asynccontextmanager
async def serve(app: web.Application, closing: asyncio.Event, host: str = "127.0.0.1",
                port: int = 0) -> AsyncIterator[str]:
    """Serve a fake on ``host:port`` (0: any free port); yields its base URL. On exit,
    ``closing`` is set first so hanging and slow handlers end and shutdown is quick."""
    # handler_cancellation: a hanging handler ends when its client gives up.
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                           shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield f"http://{shown}:{bound_port}"
    finally:
        closing.set()
        await runner.cleanup()


class FakeServer:
    """Faults, counters, control endpoints and ``running()``; subclasses add the platform."""

    server_error_answer: ClassVar[Canned]
    rate_limited_answer: ClassVar[Canned]

    def __init__(self, *, faults: Faults | None = None, seed: int = 0) -> None:
        self.faults = Faults()
        self._rng = random.Random(seed)
        self._counts: Counter[str] = Counter()
        self._injected: Counter[str] = Counter()
        self.requests_total = 0
        self.elsewhere_requests = 0  # answered by the elsewhere server: a client followed
        self._closing = asyncio.Event()
        # Who answers on the other host of the cross-host redirect; None: see elsewhere_twin.
        self.elsewhere: FakeServer | None = None
        self._elsewhere_url: str | None = None
        self._elsewhere_lock = asyncio.Lock()
        self._servers: contextlib.AsyncExitStack | None = None
        self._host = "127.0.0.1"
        if faults is not None:
            self.set_faults(faults)

    # ------------------------------------------------------------------ Python control

    def set_faults(self, faults: Faults | None = None, /, **fields: Any) -> Faults:
        """Replace the fault profile: ``set_faults(server_error_rate=0.2)``; no args clears it."""
        self.faults = faults if faults is not None else Faults(**fields)
        if self.faults.seed is not None:
            self._rng.seed(self.faults.seed)
        return self.faults

    def request_count(self, handle: str) -> int:
        """Requests addressed to this account (faulted ones included)."""
        return self._counts[handle]

    def reset_counts(self) -> None:
        self._counts.clear()
        self._injected.clear()
        self.requests_total = 0
        self.elsewhere_requests = 0

    def stats(self) -> dict[str, Any]:
        return {
            "requests_total": self.requests_total,
            "elsewhere_requests": self.elsewhere_requests,
            "requests": dict(self._counts),
            "faults_injected": dict(self._injected),
            "faults": self.faults.to_json(),
            "accounts": self.account_states(),
        }

    # ------------------------------------------------------------------ subclass hooks

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def handle_of(self, request: web.Request) -> str | None:
        """Which account a request is about, for the counters."""
        raise NotImplementedError

    def control_account(self, handle: str, data: Any) -> dict[str, Any]:
        """Apply ``POST /_control/accounts/{handle}``; raise ValueError on bad input."""
        raise NotImplementedError

    def account_states(self) -> dict[str, str]:
        raise NotImplementedError

    def answer_headers(self, fault: str | None) -> dict[str, str]:
        """Headers on every platform answer (rate-limit headers, say)."""
        return {}

    def elsewhere_twin(self) -> FakeServer:
        """The fake the elsewhere server runs: :attr:`elsewhere` if set, else this one.

        This one means the same accounts, same ids, with no faults: believing it hides an
        outage. Set :attr:`elsewhere` to a fake with other ids to show the worse outcome, a
        changed identity (and a false page).
        """
        return self.elsewhere if self.elsewhere is not None else self

    # ------------------------------------------------------------------ serving

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._misbehave])
        app.router.add_get(LOGIN_PATH, self._login)
        app.router.add_post(CONTROL_PREFIX + "accounts/{handle}", self._control_account)
        app.router.add_post(CONTROL_PREFIX + "faults", self._control_faults)
        app.router.add_post(CONTROL_PREFIX + "reset", self._control_reset)
        app.router.add_get(CONTROL_PREFIX + "stats", self._control_stats)
        self.add_routes(app)
        return app

    @contextlib.asynccontextmanager
    async def running(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve on ``host:port`` (0: any free port); yields the base URL.

        The elsewhere server, if a cross-host redirect asks for it, stops with this one.
        """
        self._closing = asyncio.Event()
        self._host, self._elsewhere_url = host, None
        async with contextlib.AsyncExitStack() as servers:
            self._servers = servers
            try:
                yield await servers.enter_async_context(
                    serve(self.app(), self._closing, host, port))
            finally:
                self._servers = None

    async def elsewhere_url(self) -> str:
        """The base URL of the elsewhere server, started on first use (needs ``running()``)."""
        async with self._elsewhere_lock:
            if self._elsewhere_url is None:
                if self._servers is None:
                    raise RuntimeError("the cross-host fault needs the fake served by running()")
                app = self.elsewhere_twin().app()
                app[ELSEWHERE] = True
                app.middlewares.insert(0, self._count_elsewhere)
                self._elsewhere_url = await self._servers.enter_async_context(
                    serve(app, asyncio.Event(), _other_loopback(self._host)))
            return self._elsewhere_url

    @web.middleware
    async def _count_elsewhere(self, request: web.Request,
                               handler: Handler) -> web.StreamResponse:
        self.elsewhere_requests += 1
        return await handler(request)

    @web.middleware
    async def _misbehave(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if (request.path.startswith(CONTROL_PREFIX) or request.path == LOGIN_PATH
                or request.app.get(ELSEWHERE, False)):
            return await handler(request)
        self.requests_total += 1
        handle = self.handle_of(request)
        if handle is not None:
            self._counts[handle] += 1
        faults = self.faults
        if faults.latency:
            await self._pause(faults.latency)
        fault = faults.pick(self._rng)
        headers = self.answer_headers(fault)
        if fault is not None:
            self._injected[fault] += 1
        if fault == "timeout":
            await self._pause(faults.hang_seconds)  # then answer, late, for a patient client
        if fault is None or fault == "timeout":
            response = await handler(request)
        elif fault == "huge_headers":  # the real answer, so only the header size is wrong
            response = await handler(request)
            headers[HUGE_HEADER] = "a" * faults.huge_header_bytes
        else:
            response = await self._faulty_answer(request, fault, faults, headers)
        if not response.prepared:
            response.headers.update(headers)
        return response

    async def _faulty_answer(self, request: web.Request, fault: str, faults: Faults,
                             headers: dict[str, str]) -> web.StreamResponse:
        hostile = await self._hostile_answer(request, fault, faults, headers)
        if hostile is not None:
            return hostile
        if fault == "reset":
            _reset(request)
            return web.Response()  # never sent: the socket is gone
        if fault == "server_error":
            return self.server_error_answer.response()
        if fault == "rate_limit":
            return self.rate_limited_answer.response()
        if fault == "malformed":
            return web.Response(body=MALFORMED_JSON, content_type="application/json")
        if fault == "huge_body":
            return await _huge(request, faults, headers)
        raise AssertionError(f"unhandled fault {fault!r}")

    async def _hostile_answer(self, request: web.Request, fault: str, faults: Faults,
                              headers: dict[str, str]) -> web.StreamResponse | None:
        """The answers built to break a client's parser, memory or trust, or None."""
        if fault == "deep_json":
            depth = faults.deep_json_depth
            return web.Response(body=b"[" * depth + b"]" * depth,
                                content_type="application/json")
        if fault == "gzip_bomb":
            # Compressing 1 GiB takes seconds: off the event loop, and only once per size.
            body = await asyncio.to_thread(gzip_bomb, faults.gzip_bomb_bytes)
            return web.Response(body=body, content_type="application/json",
                                headers={"Content-Encoding": "gzip"})
        if fault == "cross_host":
            return web.Response(status=302, headers={
                "Location": await self.elsewhere_url() + request.path_qs})
        if fault == "redirect_loop":
            return web.Response(status=302, headers={"Location": request.path_qs})
        if fault == "login_wall":
            location = f"{LOGIN_PATH}?next={quote(request.path_qs, safe='/')}"
            return web.Response(status=302, headers={"Location": location})
        if fault == "non_utf8":
            return web.Response(body=NON_UTF8_JSON, content_type="application/json",
                                charset="utf-8")
        if fault == "slowloris":
            return await self._slowloris(request, faults, headers)
        if fault == "truncated":
            return await _truncated(request, headers)
        return None

    async def _slowloris(self, request: web.Request, faults: Faults,
                         headers: dict[str, str]) -> web.StreamResponse:
        """Headers at once, then a byte now and then until the client or the server quits."""
        response = web.StreamResponse(headers=headers)
        response.content_type = "application/json"
        response.enable_chunked_encoding()
        await response.prepare(request)
        with contextlib.suppress(ConnectionError):
            while not self._closing.is_set():
                await response.write(b" ")
                await self._pause(faults.slowloris_interval)
        return response

    async def _login(self, request: web.Request) -> web.Response:
        return web.Response(text=LOGIN_PAGE, content_type="text/html", charset="utf-8")

    async def _pause(self, seconds: float) -> None:
        """Sleep, but end early when the server shuts down."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    # ------------------------------------------------------------------ control endpoints

    async def _control_account(self, request: web.Request) -> web.Response:
        try:
            result = self.control_account(request.match_info["handle"], await request.json())
        except ValueError as exc:  # JSONDecodeError included
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(result)

    async def _control_faults(self, request: web.Request) -> web.Response:
        try:
            faults = self.set_faults(Faults.from_json(await request.json()))
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(faults.to_json())

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset_counts()
        return web.json_response(self.stats())

    async def _control_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())


def _reset(request: web.Request) -> None:
    """Abort the connection with a TCP RST (SO_LINGER 0), as a crashing proxy does."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


async def _huge(request: web.Request, faults: Faults,
                headers: dict[str, str]) -> web.StreamResponse:
    """A body far over any sane cap: declared up front, or chunked with no length at all."""
    if not faults.huge_body_chunked:
        return web.Response(body=b" " * faults.huge_body_bytes, content_type="application/json",
                            headers=headers)
    response = web.StreamResponse(headers=headers)
    response.content_type = "application/json"
    response.enable_chunked_encoding()
    await response.prepare(request)
    chunk = b" " * HUGE_CHUNK
    with contextlib.suppress(ConnectionError):  # the client hangs up at its cap
        for _ in range(0, faults.huge_body_bytes, HUGE_CHUNK):
            await response.write(chunk)
        await response.write_eof()
    return response


@functools.lru_cache(maxsize=4)
def gzip_bomb(size: int) -> bytes:
    """A gzip member of ``size`` zero bytes: deflate shrinks zeros ~1000-fold (1 GiB -> 1 MB)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16+: gzip framing
    block = bytes(min(size, 1 << 20))
    parts = []
    for start in range(0, size, len(block) or 1):
        parts.append(packer.compress(block[:size - start]))
    parts.append(packer.flush())
    return b"".join(parts)


async def _truncated(request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
    """Promise four times the body, send a prefix, close: a crashed upstream mid-answer."""
    response = web.StreamResponse(headers=headers)
    response.content_type = "application/json"
    response.content_length = 4 * len(MALFORMED_JSON)
    await response.prepare(request)
    await response.write(MALFORMED_JSON)
    if request.transport is not None:
        request.transport.close()
    return response


def _other_loopback(host: str) -> str:
    """Another address for the elsewhere server: 127.0.0.2 beside 127.0.0.1 (Linux answers on
    all of 127/8), else the same host, where only the port differs (still another origin)."""
    if host != "127.0.0.1":
        return host
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.2", 0))
        except OSError:
            return host
    return "127.0.0.2"


# ---------------------------------------------------------------------- command line


def fake_arguments(description: str) -> argparse.ArgumentParser:
    """The flags every fake takes; a fake may add its own before :func:`serve_main`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--account", type=_account_arg, action="append", default=[],
                        metavar="HANDLE=STATE", help="repeatable")
    parser.add_argument("--faults", type=json.loads, metavar="JSON", help="a Faults object")
    return parser


def serve_main(make: Callable[[argparse.Namespace], FakeServer],
               parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Build the fake from parsed flags and serve it until SIGTERM or SIGINT.

    Prints the base URL on one line of stdout once listening, so a parent process that
    passed ``--port 0`` learns the port.
    """
    args = parser.parse_args(argv)
    try:
        fake = make(args)
        if args.faults is not None:
            fake.set_faults(Faults.from_json(args.faults))
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    asyncio.run(_serve_until_signal(fake, args.host, args.port))
    return 0


def _account_arg(text: str) -> tuple[str, str]:
    handle, sep, state = text.partition("=")
    if not sep or not handle:
        raise argparse.ArgumentTypeError(f"{text!r}: use HANDLE=STATE")
    return handle, state


async def _serve_until_signal(fake: FakeServer, host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with fake.running(host, port) as base_url:
        print(base_url, flush=True)
        await stop.wait()
    sys.stdout.flush()


# ---------------------------------------------------------------------- platforms with ids

AccountSpec = str | tuple[str, str]  # a state, or (id, state) to pin the id


@dataclass(slots=True)
class FakeAccount:
    """One account on a fake platform: its immutable id, the handle it has now, its state."""

    id: str
    handle: str
    state: str


@dataclass(frozen=True, slots=True)
class Budget:
    """A fake platform's request budget as one answer reports it in its rate-limit headers."""

    limit: int
    remaining: int
    used: int
    reset_at: float  # epoch seconds, the end of the current window


def stable_number(text: str) -> int:
    """A number derived from ``text``: the same account gets the same id in every run."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


class FakePlatform(FakeServer):
    """A platform whose accounts have immutable ids: states, renames, re-registered handles.

    ``accounts`` maps handle -> state, or handle -> ``(id, state)`` to pin the id. Handles
    match case-insensitively, as on every platform faked here. ``overrides`` are canned
    platform-wide answers (a usage cap, a login wall, a throttle sent with status 200) that
    replace every account answer while one is set.
    """

    states: ClassVar[tuple[str, ...]]
    overrides: ClassVar[Mapping[str, Canned]] = {}
    exhausting: ClassVar[frozenset[str]] = frozenset()  # overrides that empty the budget
    budget_limit: ClassVar[int] = 100
    budget_window: ClassVar[float] = 900.0  # seconds

    def __init__(self, accounts: Mapping[str, AccountSpec] | None = None, *,
                 faults: Faults | None = None, seed: int = 0) -> None:
        super().__init__(faults=faults, seed=seed)
        self.override: str | None = None
        self._accounts_by_handle: dict[str, FakeAccount] = {}  # by lower-case handle
        self._accounts_by_id: dict[str, FakeAccount] = {}
        self._window_start = 0.0
        self._window_used = 0
        for handle, spec in (accounts or {}).items():
            account_id, state = spec if isinstance(spec, tuple) else (None, spec)
            self.set_state(handle, state, account_id=account_id)

    # ------------------------------------------------------------------ subclass hooks

    def new_id(self, seed: str) -> str:
        """A platform-shaped id derived from ``seed``."""
        raise NotImplementedError

    def refuse(self, request: web.Request) -> web.Response | None:
        """The platform's answer to a request it will not serve (bad credentials), or None."""
        return None

    # ------------------------------------------------------------------ Python control

    def set_state(self, handle: str, state: str, *, account_id: str | None = None) -> str:
        """Create the account or change its state; returns its id.

        A different ``account_id`` for a handle someone holds re-registers the handle: the
        old account keeps its id and state but is reachable by id only.
        """
        if state not in self.states:
            raise ValueError(f"unknown state {state!r}; choose one of {', '.join(self.states)}")
        account = self._accounts_by_handle.get(handle.lower())
        if account is None or (account_id is not None and account_id != account.id):
            taken = self._accounts_by_id.get(account_id) if account_id is not None else None
            if taken is not None:
                raise ValueError(f"id {account_id} belongs to {taken.handle!r}")
            account = FakeAccount(account_id or self._fresh_id(handle), handle, state)
            self._accounts_by_handle[handle.lower()] = account
            self._accounts_by_id[account.id] = account
        account.state = state
        return account.id

    def rename(self, old: str, new: str) -> str:
        """Give the account a new handle, keeping its id; the old handle becomes free."""
        account = self._accounts_by_handle.get(old.lower())
        if account is None:
            raise ValueError(f"no account has the handle {old!r}")
        holder = self._accounts_by_handle.get(new.lower())
        if holder is not None and holder is not account:
            raise ValueError(f"the handle {new!r} is taken")
        del self._accounts_by_handle[old.lower()]
        account.handle = new
        self._accounts_by_handle[new.lower()] = account
        return account.id

    def elsewhere_twin(self) -> FakeServer:
        """:attr:`elsewhere` if set, else a copy of this platform whose accounts have other ids.

        The same handles in the same states, so a probe that followed the cross-host
        redirect would see its account "present" with a stranger's id.
        """
        if self.elsewhere is not None:
            return self.elsewhere
        twin = copy.copy(self)  # the subclass's own settings (tokens, withheld_in, ...)
        FakeServer.__init__(twin)  # its own faults (none), counters and shutdown event
        twin.override = None
        twin._accounts_by_handle, twin._accounts_by_id = {}, {}
        twin._window_start, twin._window_used = 0.0, 0
        for account in self._accounts_by_handle.values():
            twin.set_state(account.handle, account.state,
                           account_id=self.new_id(f"{account.handle.lower()}@elsewhere"))
        return twin

    def account(self, handle: str) -> FakeAccount | None:
        return self._accounts_by_handle.get(handle.lower())

    def account_by_id(self, account_id: str) -> FakeAccount | None:
        return self._accounts_by_id.get(account_id)

    def account_id(self, handle: str) -> str:
        """The id of the account holding ``handle`` (KeyError if none does)."""
        return self._accounts_by_handle[handle.lower()].id

    def set_override(self, name: str | None) -> None:
        """Answer every platform request with ``overrides[name]``; None goes back to normal."""
        if name is not None and name not in self.overrides:
            known = ", ".join(self.overrides) or "none"
            raise ValueError(f"unknown override {name!r}; this platform has: {known}")
        self.override = name

    def request_count(self, handle: str) -> int:
        account = self.account(handle)
        return super().request_count(account.handle if account else handle)

    def account_states(self) -> dict[str, str]:
        return {a.handle: a.state for a in self._accounts_by_handle.values()}

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "override": self.override}

    def control_account(self, handle: str, data: Any) -> dict[str, Any]:
        """``{"state": ..., "id": ...}`` (id optional) and/or ``{"rename_to": ...}``."""
        if not isinstance(data, dict) or not ({"state", "rename_to"} & data.keys()):
            raise ValueError('expected {"state": "<state>"} and/or {"rename_to": "<handle>"}')
        if "state" in data:
            account_id = data.get("id")
            self.set_state(handle, str(data["state"]),
                           account_id=None if account_id is None else str(account_id))
        if "rename_to" in data:
            self.rename(handle, str(data["rename_to"]))
            handle = str(data["rename_to"])
        account = self._accounts_by_handle[handle.lower()]
        return {"handle": account.handle, "id": account.id, "state": account.state}

    # ------------------------------------------------------------------ serving

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_post(CONTROL_PREFIX + "override", self._control_override)
        return app

    def guard(self, handler: Handler) -> Handler:
        """``handler`` behind the credential check and the override every endpoint shares."""
        async def guarded(request: web.Request) -> web.StreamResponse:
            refused = self.refuse(request)
            if refused is not None:
                return refused
            if self.override is not None:
                return self.overrides[self.override].response()
            return await handler(request)
        return guarded

    def spend(self, fault: str | None) -> Budget:
        """Count one request against the current window (call from ``answer_headers``)."""
        now = time.time()
        start = now - now % self.budget_window
        if start != self._window_start:
            self._window_start, self._window_used = start, 0
        self._window_used += 1
        exhausted = fault == "rate_limit" or self.override in self.exhausting
        remaining = 0 if exhausted else max(0, self.budget_limit - self._window_used)
        return Budget(self.budget_limit, remaining, self._window_used,
                      start + self.budget_window)

    def _fresh_id(self, handle: str) -> str:
        """A new id; a re-registered handle gets a different one from its first holder."""
        seed, n = handle.lower(), 0
        while (candidate := self.new_id(seed)) in self._accounts_by_id:
            n += 1
            seed = f"{handle.lower()}#{n}"
        return candidate

    async def _control_override(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            if not isinstance(data, dict) or "name" not in data:
                raise ValueError('expected {"name": "<override>"} or {"name": null}')
            self.set_override(None if data["name"] is None else str(data["name"]))
        except ValueError as exc:  # JSONDecodeError included
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"override": self.override})


def account_specs(pairs: Sequence[tuple[str, str]]) -> dict[str, AccountSpec]:
    """``--account`` values for a :class:`FakePlatform`: ``STATE`` or ``ID:STATE``.

    The id is everything before the last colon, so Bluesky DIDs (``did:plc:…:present``) work.
    """
    specs: dict[str, AccountSpec] = {}
    for handle, text in pairs:
        account_id, sep, state = text.rpartition(":")
        specs[handle] = (account_id, state) if sep and account_id else state
    return specs
