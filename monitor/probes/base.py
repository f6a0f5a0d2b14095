"""The probe protocol and the HTTP plumbing every probe shares.

A probe turns one HTTP exchange into exactly one :class:`~monitor.model.Observation`:
``present``, ``absent(reason)`` or ``error(kind)``. The classification of an answer is a
pure function of (status, headers, body) so it can be tested with plain data; the I/O is
:func:`fetch`, which enforces the timeout and the body-size cap and maps transport
failures to error kinds.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Protocol

import aiohttp
from multidict import CIMultiDictProxy

from monitor.config import PlatformConfig
from monitor.model import ErrorKind, Observation


@dataclass(frozen=True, slots=True)
class Target:
    """What to check: the handle we watch and, once learned, the platform's immutable id."""

    handle: str
    account_id: str | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP answer, body already read (and capped)."""

    status: int
    headers: CIMultiDictProxy[str] | dict[str, str]
    body: bytes
    url: str = ""

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """Parsed JSON body; raises :class:`ProbeError` (parse) when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            raise ProbeError(ErrorKind.PARSE, f"HTTP {self.status}, body is not JSON") from None


class ProbeError(Exception):
    """A probe could not decide; carries the error kind and secret-free evidence."""

    def __init__(self, kind: ErrorKind, evidence: str):
        super().__init__(f"{kind}: {evidence}")
        self.kind = kind
        self.evidence = evidence


class Probe(Protocol):
    """One platform's checker. Implementations live one per module under ``probes/``."""

    name: ClassVar[str]

    def __init__(self, platform: PlatformConfig, session: aiohttp.ClientSession,
                 *, timeout: float, max_body_bytes: int) -> None: ...

    async def check(self, target: Target) -> Observation: ...


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
        """(method, url, headers) for this target."""
        raise NotImplementedError

    def classify(self, answer: Answer, target: Target, at: float) -> Observation:
        """Pure: the observation this answer means."""
        raise NotImplementedError

    def base_headers(self) -> dict[str, str]:
        headers = {"User-Agent": self.platform.user_agent, "Accept": "application/json"}
        if self.platform.token is not None:
            headers["Authorization"] = f"Bearer {self.platform.token.get_secret_value()}"
        return headers

    async def check_batch(self, url: str, keys: Sequence[str],
                          classify: Callable[[Answer, Sequence[str], float],
                                             dict[str, Observation]]) -> dict[str, Observation]:
        """One batch lookup: an observation per key; a failed request is that error for all."""
        started = time.monotonic()
        try:
            answer = await fetch(self.session, "GET", url, self.base_headers(),
                                 timeout=self.timeout, max_body_bytes=self.max_body_bytes)
            found = classify(answer, keys, time.time())
        except ProbeError as exc:
            found = dict.fromkeys(keys, Observation.failed(time.time(), exc.kind, exc.evidence))
        latency = time.monotonic() - started
        return {key: replace(obs, latency=latency) for key, obs in found.items()}

    async def check(self, target: Target) -> Observation:
        started = time.monotonic()
        try:
            method, url, headers = self.request(target)
            answer = await fetch(self.session, method, url, headers,
                                 timeout=self.timeout, max_body_bytes=self.max_body_bytes)
            obs = self.classify(answer, target, time.time())
        except ProbeError as exc:
            obs = Observation.failed(time.time(), exc.kind, exc.evidence)
        # The observation was built just above and is not shared yet: stamping it in place
        # saves a dataclasses.replace() copy on the hot path.
        object.__setattr__(obs, "latency", time.monotonic() - started)
        return obs


async def fetch(session: aiohttp.ClientSession, method: str, url: str, headers: dict[str, str],
                *, timeout: float, max_body_bytes: int) -> Answer:
    """One request with a hard overall timeout and a body-size cap.

    Transport failures become :class:`ProbeError` with a kind; the URL is not put in the
    evidence because some platforms carry keys in the query string.
    """
    try:
        async with asyncio.timeout(timeout):
            async with session.request(method, url, headers=headers, allow_redirects=True) as resp:
                declared = resp.content_length
                if declared is not None and declared > max_body_bytes:
                    raise ProbeError(ErrorKind.TOO_LARGE,
                                     f"HTTP {resp.status}, body of {declared} bytes over the cap")
                body = await _read_capped(resp, max_body_bytes)
                return Answer(resp.status, resp.headers, body, str(resp.url))
    except ProbeError:
        raise
    except TimeoutError:
        raise ProbeError(ErrorKind.TIMEOUT, f"no answer within {timeout:g}s") from None
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError,
            aiohttp.ClientOSError, aiohttp.ClientConnectionError) as exc:
        raise ProbeError(ErrorKind.CONNECTION, type(exc).__name__) from None
    except aiohttp.ClientResponseError as exc:  # malformed status line / headers
        raise ProbeError(ErrorKind.PARSE, f"malformed HTTP answer ({exc.status})") from None
    except aiohttp.ClientError as exc:
        raise ProbeError(ErrorKind.CONNECTION, type(exc).__name__) from None


async def _read_capped(resp: aiohttp.ClientResponse, max_body_bytes: int) -> bytes:
    if resp.content_length is not None:  # declared and already checked against the cap
        return await resp.read()
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(65536):
        size += len(chunk)
        if size > max_body_bytes:
            raise ProbeError(ErrorKind.TOO_LARGE,
                             f"HTTP {resp.status}, body over the {max_body_bytes}-byte cap")
        chunks.append(chunk)
    return b"".join(chunks)


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
