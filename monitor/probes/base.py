"""The probe protocol and the HTTP plumbing every probe shares.

A probe turns one HTTP exchange into exactly one :class:`~monitor.model.Observation`:
``present``, ``absent(reason)`` or ``error(kind)``. The classification of an answer is a
pure function of (status, headers, body) so it can be tested with plain data; the I/O is
:func:`fetch`, which enforces the timeout, the body-size cap (on decompressed bytes) and
the redirect policy, and maps transport failures to error kinds.

Every answer is treated as hostile until read: a gzip bomb, a redirect to another host, a
100 000-deep JSON array, a header line of 64 KiB or a server that dribbles one byte a second
must each end as ``error(kind)`` in bounded time and memory, never as present or absent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from monitor.model import ErrorKind, Observation, RateLimit, hot_value
from monitor.probes.ratelimit import RateLimitReader

if TYPE_CHECKING:  # for types only: monitor.config imports the probe registry
    from monitor.config import PlatformConfig


@hot_value
class Target:
    """What to check: the handle we watch and, once learned, the platform's immutable id."""

    handle: str
    account_id: str | None = None


@hot_value
class Answer:
    """One HTTP answer, body already read (and capped)."""

    status: int
    headers: CIMultiDictProxy[str] | dict[str, str]
    body: bytes
    url: str = ""

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """Parsed JSON body; raises :class:`ProbeError` (parse) when it is not JSON.

        Not UTF-8, truncated, or nested deeper than :data:`MAX_JSON_DEPTH` all count as
        "not JSON": see :func:`parse_json`.
        """
        return parse_json(self.body, self.status)


class ProbeError(Exception):
    """A probe could not decide; carries the error kind and secret-free evidence."""

    def __init__(self, kind: ErrorKind, evidence: str):
        super().__init__(f"{kind}: {evidence}")
        self.kind = kind
        self.evidence = evidence

    def observation(self, at: float, **ids: str | None) -> Observation:
        """This failure as the ``error(kind)`` observation it stands for."""
        return Observation.failed(at, self.kind, self.evidence, **ids)

    def for_each(self, keys: Iterable[str], at: float) -> dict[str, Observation]:
        """This failure for every account of a batch lookup: one answer, one verdict."""
        return dict.fromkeys(keys, self.observation(at))


class NotJSON(ProbeError):
    """The body is not JSON at all, as opposed to JSON built to hurt whoever parses it."""

    def __init__(self, status: int):
        super().__init__(ErrorKind.PARSE, f"HTTP {status}, body is not JSON")


# No platform documents an answer nested more than a dozen levels; 100 leaves room and stays
# far below the interpreter's recursion limit (1000), which json.loads would otherwise hit:
# json.loads("[" * 200_000 + "]" * 200_000) raises RecursionError (not ValueError) on
# CPython 3.11 and would escape every probe's error handling.
MAX_JSON_DEPTH = 100
# A JSON string: the quotes and what lies between, escapes included (brackets inside a
# string are not nesting).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPENERS = b"[{"
_CLOSERS = b"]}"
# bytes.translate table: an opener becomes +1, a closer -1 (as a signed byte), all else 0.
_NESTING = bytes(1 if b in _OPENERS else 255 if b in _CLOSERS else 0 for b in range(256))
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _OPENERS + _CLOSERS)
# A \uD800-\uDFFF escape without its pair becomes, through json.loads, a lone surrogate: a
# str that cannot be encoded, so SQLite, logs and UTF-8 output raise UnicodeEncodeError far
# from the probe. Checked on the parsed document (a regex over the bytes cannot tell an
# escape from an escaped backslash followed by "ud83d"), only when the body has escapes.
_ESCAPE = b"\\u"


def _has_lone_surrogate(doc: Any) -> bool:
    try:
        json.dumps(doc, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def parse_json(body: bytes, status: int) -> Any:
    """``json.loads`` for untrusted bodies: every failure is :class:`ProbeError` (parse),
    :class:`NotJSON` when the body is simply something else.

    The body must be UTF-8 (RFC 8259 8.1), strictly: ``json.loads(bytes)`` lets encoded
    surrogates through ("surrogatepass"), and so, as escapes, does the JSON grammar; a string
    we cannot encode again must not leave the probe.
    """
    if json_depth_exceeds(body, MAX_JSON_DEPTH):
        raise ProbeError(ErrorKind.PARSE,
                         f"HTTP {status}, JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        doc = json.loads(body.decode("utf-8-sig"))  # -sig: a leading BOM may be ignored (8.1)
    except ValueError:  # UnicodeDecodeError (not UTF-8) and JSONDecodeError both
        raise NotJSON(status) from None
    except RecursionError:  # the depth guard should make this unreachable; belt and braces
        raise ProbeError(ErrorKind.PARSE,
                         f"HTTP {status}, JSON nested too deeply to parse") from None
    if _ESCAPE in body and _has_lone_surrogate(doc):
        raise ProbeError(ErrorKind.PARSE, f"HTTP {status}, JSON has a lone surrogate escape")
    return doc


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than ``limit``, in C-speed passes.

    The common case (fewer brackets than ``limit`` in the whole body) costs two
    ``bytes.count`` calls. Otherwise strings are cut out, brackets kept as +1/-1 and the
    running sum's maximum is the depth. Malformed input only has to be judged as deep or
    not: json.loads reports everything else.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", body).translate(None, delete=_NOT_BRACKETS)
    steps = memoryview(brackets.translate(_NESTING)).cast("b")
    return max(itertools.accumulate(steps), default=0) > limit


class Probe(Protocol):
    """One platform's checker. Implementations live one per module under ``probes/``.

    ``check`` never raises: every failure is ``error(kind)`` (the monitor still supervises
    it, and counts what escapes as ``error(internal)``).
    """

    name: ClassVar[str]

    def __init__(self, platform: PlatformConfig, session: aiohttp.ClientSession,
                 *, timeout: float, max_body_bytes: int) -> None: ...

    async def check(self, target: Target) -> Observation: ...


@runtime_checkable
class BatchProbe(Probe, Protocol):
    """A probe whose platform looks many accounts up in one request (X: 100 ids, Bluesky:
    25 DIDs). The scheduler hands it up to ``batch_size`` due accounts at a time."""

    batch_size: ClassVar[int]

    async def check_many(self, targets: Sequence[Target]) -> dict[str, Observation]:
        """One observation per target, keyed by its ``account_id`` (every target needs one)."""
        ...


def batch_size_of(probe: Probe | type[Probe]) -> int:
    """How many accounts one request of ``probe`` checks: its ``batch_size`` if it is a
    :class:`BatchProbe`, else 1.

    Takes the class too (the capacity estimate has no session to build one with): the
    runtime check is structural, and a probe class carries both ``batch_size`` and
    ``check_many`` itself.
    """
    return max(1, probe.batch_size) if isinstance(probe, BatchProbe) else 1


Read = Callable[[Answer, float], Observation]
ReadBatch = Callable[[Answer, Sequence[str], float], dict[str, Observation]]


def classified(answer: Answer, at: float, read: Read,
               rate_limit: RateLimitReader | None = None) -> Observation:
    """``read(answer, at)`` with a :class:`ProbeError` turned into ``error(kind)``, carrying
    the budget the answer's headers announced: the one classification wrapper.

    Each probe's pure classifier is ``classified(answer, at, _its_reader, its_rate_limit)``,
    so the readers may simply raise; :meth:`HttpProbe.check` wraps ``classify`` the same way.
    """
    try:
        obs = read(answer, at)
    except ProbeError as exc:
        obs = exc.observation(at)
    budget = rate_limit(answer.headers, at) if rate_limit is not None else None
    return obs if budget is None else replace(obs, rate_limit=budget)


def classified_batch(answer: Answer, keys: Sequence[str], at: float, read: ReadBatch,
                     rate_limit: RateLimitReader | None = None) -> dict[str, Observation]:
    """:func:`classified` for a batch lookup: a ProbeError is that error for every key."""
    found, budget = _read_batch(answer, keys, at, read, rate_limit)
    if budget is None:
        return found
    return {key: replace(obs, rate_limit=budget) for key, obs in found.items()}


def _read_batch(answer: Answer, keys: Sequence[str], at: float, read: ReadBatch,
                rate_limit: RateLimitReader | None) -> tuple[dict[str, Observation],
                                                             RateLimit | None]:
    """(what ``read`` found, a ProbeError as that error for every key; the budget the
    answer's headers announced)."""
    try:
        found = read(answer, keys, at)
    except ProbeError as exc:
        found = exc.for_each(keys, at)
    return found, rate_limit(answer.headers, at) if rate_limit is not None else None


def stamped(obs: Observation, latency: float, budget: RateLimit | None) -> Observation:
    """``replace(obs, latency=latency, rate_limit=budget or obs.rate_limit)`` as one plain
    copy: a batch answer stamps a hundred observations (dataclasses.replace costs ~6x)."""
    if type(obs) is not Observation:
        return replace(obs, latency=latency, rate_limit=budget or obs.rate_limit)
    return Observation(obs.result, obs.at, reason=obs.reason, error=obs.error,
                       evidence=obs.evidence, account_id=obs.account_id, handle=obs.handle,
                       latency=latency, rate_limit=budget or obs.rate_limit,
                       moved_to=obs.moved_to)


class HttpProbe:
    """Shared plumbing: one shared session, timeout, size cap, error mapping.

    Subclasses implement :meth:`request` (what to ask) and :meth:`classify` (pure: what the
    answer means). ``check`` never raises: every failure becomes ``error(kind)``.
    """

    name: ClassVar[str] = ""

    def __init__(self, platform: PlatformConfig, session: aiohttp.ClientSession,
                 *, timeout: float, max_body_bytes: int) -> None:
        self.platform = platform
        self.session = session
        self.timeout = timeout
        self.max_body_bytes = max_body_bytes

    def request(self, target: Target) -> tuple[str, str, dict[str, str]]:
        """(method, url, headers) for this target; may raise :class:`ProbeError` (a missing
        credential, say) to fail without asking."""
        raise NotImplementedError

    def classify(self, answer: Answer, target: Target, at: float) -> Observation:
        """Pure: the observation this answer means."""
        raise NotImplementedError

    def base_headers(self) -> dict[str, str]:
        headers = {"User-Agent": self.platform.user_agent, "Accept": "application/json"}
        if self.platform.token is not None:
            headers["Authorization"] = f"Bearer {self.platform.token.get_secret_value()}"
        return headers

    async def fetch(self, method: str, url: str, headers: dict[str, str]) -> Answer:
        """:func:`fetch` with this probe's session, timeout and body cap."""
        return await fetch(self.session, method, url, headers, timeout=self.timeout,
                           max_body_bytes=self.max_body_bytes)

    async def check(self, target: Target) -> Observation:
        """Ask and classify, timed. Never raises ProbeError: a failed request or an answer
        the classifier refuses is ``error(kind)``.

        :func:`fetch`'s body, inlined: one coroutine less on the path every probe takes."""
        started = time.monotonic()
        try:
            method, url, headers = self.request(target)
            try:
                async with asyncio.timeout(self.timeout):
                    answer = await _follow(self.session, method, URL(url), headers,
                                           self.max_body_bytes)
            except (TimeoutError, aiohttp.ClientError) as exc:
                raise transport_error(exc, self.timeout) from None
            return self.stamped(answer, target, time.time(), started)
        except ProbeError as exc:
            return exc.observation(time.time()).timed(time.monotonic() - started)

    def stamped(self, answer: Answer, target: Target, at: float,
                started: float) -> Observation:
        """:meth:`classify`, stamped with the time since ``started`` (monotonic). A probe
        that can build the stamped observation in one go overrides this (it must return
        what ``classify(...).timed(...)`` would)."""
        return self.classify(answer, target, at).timed(time.monotonic() - started)

    async def check_batch(self, url: str, keys: Sequence[str], classify: ReadBatch,
                          rate_limit: RateLimitReader | None = None) -> dict[str, Observation]:
        """One batch lookup: an observation per key; a failed request is that error for all.

        ``classify`` is the pure batch reader (raising ProbeError for the whole answer) and
        ``rate_limit`` the platform's budget reader: every observation is stamped with the
        latency and the budget in one copy, as :func:`classified_batch` then ``timed()``
        would."""
        started = time.monotonic()
        try:
            answer = await self.fetch("GET", url, self.base_headers())
        except ProbeError as exc:
            found, budget = exc.for_each(keys, time.time()), None
        else:
            found, budget = _read_batch(answer, keys, time.time(), classify, rate_limit)
        latency = time.monotonic() - started
        # A failed request is one observation for every key: stamped once, it stays one,
        # so each account's last error is a reference to it (a million accounts behind a
        # refused port would otherwise keep a million copies, 112 bytes each).
        once: dict[int, Observation] = {}
        out: dict[str, Observation] = {}
        for key, obs in found.items():
            copy = once.get(id(obs))
            if copy is None:
                copy = once[id(obs)] = stamped(obs, latency, budget)
            out[key] = copy
        return out


MAX_REDIRECTS = 3  # same-host hops followed; a login wall takes one, http->www another
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_READ_CHUNK = 64 * 1024


async def fetch(session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str],
                *, timeout: float, max_body_bytes: int) -> Answer:
    """One request with a hard overall timeout, a body-size cap and a redirect policy.

    - The timeout covers everything (connect, every redirect hop, every body byte), so a
      server that dribbles bytes forever ends as ``error(timeout)``.
    - The cap counts the bytes we would hold, after decompression: a declared
      Content-Length over it is rejected before reading, and the body is read in chunks
      that stop at the cap (a 1 MB gzip body may expand to 1 GiB).
    - Redirects within the same origin (scheme, host, port) are followed, at most
      :data:`MAX_REDIRECTS` hops; a redirect to another origin is ``error(redirect)`` and is
      not followed: that server's answer says nothing about the platform's account (and
      would get our credentials).

    Transport failures become :class:`ProbeError` with a kind; the URL is not put in the
    evidence because some platforms carry keys in the query string.
    """
    try:
        async with asyncio.timeout(timeout):
            return await _follow(session, method, URL(url), headers, max_body_bytes)
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise transport_error(exc, timeout) from None


def transport_error(exc: TimeoutError | aiohttp.ClientError, timeout: float) -> ProbeError:
    """The error kind of a failed exchange (timeout, connection, oversized or broken headers)."""
    if isinstance(exc, TimeoutError):
        return ProbeError(ErrorKind.TIMEOUT, f"no answer within {timeout:g}s")
    if isinstance(exc, (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError,
                        aiohttp.ClientOSError, aiohttp.ClientConnectionError)):
        return ProbeError(ErrorKind.CONNECTION, type(exc).__name__)
    if isinstance(exc, aiohttp.ClientResponseError):  # malformed or oversized status/headers
        return _header_error(exc)
    return ProbeError(ErrorKind.CONNECTION, type(exc).__name__)


async def _follow(session: aiohttp.ClientSession, method: str, url: URL,
                  headers: dict[str, str], max_body_bytes: int) -> Answer:
    """Ask ``url``, following same-origin redirects ourselves (aiohttp would follow any)."""
    seen: set[URL] | None = None  # built on the first redirect: nearly no answer is one
    for _ in range(MAX_REDIRECTS + 1):
        async with session.request(method, url, headers=headers,
                                   allow_redirects=False) as resp:
            status = resp.status
            location = resp.headers.get("Location") if status in REDIRECT_STATUSES else None
            if location is None:
                return await _answer(resp, max_body_bytes)
        if seen is None:
            seen = {url}
        url = _redirect_target(url, location, status)
        if url in seen:
            raise ProbeError(ErrorKind.REDIRECT, f"HTTP {status} redirect loop")
        seen.add(url)
        # RFC 9110 15.4.4: 303 means "GET the other resource"; user agents do the same for a
        # POST answered with 301/302 (15.4.2, 15.4.3).
        if (status == 303 and method != "HEAD") or (status in (301, 302) and method == "POST"):
            method = "GET"
    raise ProbeError(ErrorKind.REDIRECT, f"more than {MAX_REDIRECTS} redirects")


def _redirect_target(current: URL, location: str, status: int) -> URL:
    """The absolute URL a same-origin redirect points to; any other one is an error.

    The evidence names the other host only: a Location can carry keys in its query.
    """
    try:
        target = current.join(URL(location))
        other = target.origin() != current.origin() if target.absolute else True
    except ValueError:
        raise ProbeError(ErrorKind.REDIRECT,
                         f"HTTP {status} redirect to an unreadable Location") from None
    if other:
        where = f"{target.host}:{target.port}" if target.host else "a non-HTTP address"
        raise ProbeError(ErrorKind.REDIRECT, f"HTTP {status} redirect to another host ({where})")
    return target


async def _answer(resp: aiohttp.ClientResponse, max_body_bytes: int) -> Answer:
    declared = resp.content_length  # on the wire: compressed bytes when Content-Encoding is set
    if declared is not None and declared > max_body_bytes:
        raise ProbeError(ErrorKind.TOO_LARGE,
                         f"HTTP {resp.status}, body of {declared} bytes over the cap")
    headers = resp.headers
    if (declared is not None and "Transfer-Encoding" not in headers
            and headers.get("Content-Encoding", "identity").lower() == "identity"):
        # Not compressed, not chunked, its length declared within the cap: aiohttp reads
        # exactly that many bytes, so one read() holds no more than the cap and skips the
        # chunk loop (the common answer).
        body = await resp.read()
    else:
        body = await _read_capped(resp, max_body_bytes)
    return Answer(resp.status, headers, body, str(resp.url))


async def _read_capped(resp: aiohttp.ClientResponse, max_body_bytes: int) -> bytes:
    """The body as we will hold it (aiohttp decompresses while streaming), at most the cap.

    Reads chunk by chunk, so a compressed body that expands past the cap stops there
    instead of being inflated whole, and a body of undeclared length stops at the cap.
    """
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(_READ_CHUNK):
        size += len(chunk)
        if size > max_body_bytes:
            what = ("decompressed body" if resp.headers.get("Content-Encoding", "identity")
                    .lower() != "identity" else "body")
            raise ProbeError(ErrorKind.TOO_LARGE,
                             f"HTTP {resp.status}, {what} over the {max_body_bytes}-byte cap")
        chunks.append(chunk)
    return b"".join(chunks)


def _header_error(exc: aiohttp.ClientResponseError) -> ProbeError:
    """aiohttp refuses a status line or header over 8190 bytes, or over 128 headers.

    Its message is the only thing that tells "too big" from "broken" (aiohttp 3.14:
    "Got more than 8190 bytes when reading", "Too many headers received"); the message
    quotes the server's bytes, so it is never copied into the evidence.
    """
    message = str(exc.message).lower()
    if "more than" in message or "too many headers" in message or "too long" in message:
        return ProbeError(ErrorKind.TOO_LARGE, "HTTP headers over the client's size limits")
    return ProbeError(ErrorKind.PARSE, "malformed HTTP status line or headers")


def quote_part(text: str, safe: str = "") -> str:
    """``urllib.parse.quote(text, safe=safe)`` for one URL component, without the call for
    the usual handle, id or DID that has nothing to escape (``safe``: a few ASCII marks)."""
    nothing_to_escape = _UNESCAPED.get(safe)
    if nothing_to_escape is None:
        # What quote() never escapes (its _ALWAYS_SAFE), plus ``safe``.
        nothing_to_escape = _UNESCAPED[safe] = re.compile(
            f"[A-Za-z0-9_.~{re.escape(safe)}-]*").fullmatch
    return text if nothing_to_escape(text) else quote(text, safe=safe)


_UNESCAPED: dict[str, Callable[[str], re.Match[str] | None]] = {}


def status_error(answer: Answer) -> ProbeError | None:
    """The error kind for statuses that never mean absence on any platform."""
    status = answer.status
    if status == 429:
        return ProbeError(ErrorKind.RATE_LIMITED, "HTTP 429")
    if status in (401, 407):
        return ProbeError(ErrorKind.AUTH, f"HTTP {status}")
    if status >= 500:
        return ProbeError(ErrorKind.SERVER_ERROR, f"HTTP {status}")
    return None
