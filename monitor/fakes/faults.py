"""Fault injection: what a fake platform does wrong on purpose, and how.

Probes must turn every hostile answer (slow, 5xx, 429, hangs, resets, huge or broken bodies,
gzip bombs, redirects to another host or in a loop, deep JSON, slowloris, huge headers,
truncated or non-UTF-8 bodies, login walls) into ``error(kind)``, never ``absent`` and never
``present``. A :class:`Faults` profile says how often each happens; :func:`misbehave`
answers one request accordingly. Every fake served by :class:`~monitor.fakes.server.FakeServer`
gets all of them without code of its own, deterministically (the server draws from a seeded
:class:`random.Random`).

The cross-host redirect points at a second loopback server ("elsewhere") that answers like
the platform, with no faults (see :meth:`~monitor.fakes.server.FakeServer.elsewhere_url`):
a probe that followed it would believe a stranger.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import random
import socket
import struct
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol
from urllib.parse import quote

from aiohttp import web

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



class Misbehaving(Protocol):
    """What a server lends the faults it injects: its own 5xx and 429 answers, the other host
    of the cross-host redirect, and a sleep that ends when it shuts down."""

    server_error_answer: ClassVar[Canned]
    rate_limited_answer: ClassVar[Canned]

    @property
    def stopping(self) -> bool:
        """Whether the server is shutting down (a dribbling answer then ends)."""
        ...

    async def elsewhere_url(self) -> str: ...

    async def pause(self, seconds: float) -> None: ...


async def misbehave(server: Misbehaving, request: web.Request, handler: Handler,
                    fault: str | None, faults: Faults,
                    headers: dict[str, str]) -> web.StreamResponse:
    """The answer to ``request`` with ``fault`` (a :meth:`Faults.pick`), or the platform's
    own answer from ``handler`` when there is none; ``headers`` go on either."""
    if fault == "timeout":
        await server.pause(faults.hang_seconds)  # then answer, late, for a patient client
    if fault is None or fault == "timeout":
        response = await handler(request)
    elif fault == "huge_headers":  # the real answer, so only the header size is wrong
        response = await handler(request)
        headers[HUGE_HEADER] = "a" * faults.huge_header_bytes
    else:
        response = await _faulty_answer(server, request, fault, faults, headers)
    if not response.prepared:
        response.headers.update(headers)
    return response


async def _faulty_answer(server: Misbehaving, request: web.Request, fault: str, faults: Faults,
                         headers: dict[str, str]) -> web.StreamResponse:
    hostile = await _hostile_answer(server, request, fault, faults, headers)
    if hostile is not None:
        return hostile
    if fault == "reset":
        _reset(request)
        return web.Response()  # never sent: the socket is gone
    if fault == "server_error":
        return server.server_error_answer.response()
    if fault == "rate_limit":
        return server.rate_limited_answer.response()
    if fault == "malformed":
        return web.Response(body=MALFORMED_JSON, content_type="application/json")
    if fault == "huge_body":
        return await _huge(request, faults, headers)
    raise AssertionError(f"unhandled fault {fault!r}")


async def _hostile_answer(server: Misbehaving, request: web.Request, fault: str,
                          faults: Faults, headers: dict[str, str]) -> web.StreamResponse | None:
    """The answers built to break a client's parser, memory or trust, or None."""
    if fault == "deep_json":
        depth = faults.deep_json_depth
        return web.Response(body=b"[" * depth + b"]" * depth, content_type="application/json")
    if fault == "gzip_bomb":
        # Compressing 1 GiB takes seconds: off the event loop, and only once per size.
        body = await asyncio.to_thread(gzip_bomb, faults.gzip_bomb_bytes)
        return web.Response(body=body, content_type="application/json",
                            headers={"Content-Encoding": "gzip"})
    if fault == "cross_host":
        return web.Response(status=302, headers={
            "Location": await server.elsewhere_url() + request.path_qs})
    if fault == "redirect_loop":
        return web.Response(status=302, headers={"Location": request.path_qs})
    if fault == "login_wall":
        location = f"{LOGIN_PATH}?next={quote(request.path_qs, safe='/')}"
        return web.Response(status=302, headers={"Location": location})
    if fault == "non_utf8":
        return web.Response(body=NON_UTF8_JSON, content_type="application/json",
                            charset="utf-8")
    if fault == "slowloris":
        return await _slowloris(server, request, faults, headers)
    if fault == "truncated":
        return await _truncated(request, headers)
    return None


async def _slowloris(server: Misbehaving, request: web.Request, faults: Faults,
                     headers: dict[str, str]) -> web.StreamResponse:
    """Headers at once, then a byte now and then until the client or the server quits."""
    response = web.StreamResponse(headers=headers)
    response.content_type = "application/json"
    response.enable_chunked_encoding()
    await response.prepare(request)
    with contextlib.suppress(ConnectionError):
        while not server.stopping:
            await response.write(b" ")
            await server.pause(faults.slowloris_interval)
    return response


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
