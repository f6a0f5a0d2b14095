"""Bluesky Jetstream consumer: pushed ``#account`` events as Observations, within a second.

Why a stream: polling every ``interval`` notices a takedown ``interval / 2`` late on average;
Jetstream pushes the relay's account events for the DIDs we name as they happen. The stream
only accelerates: polls stay the source of truth (the app confirms a pushed absence with one
poll), so every doubt here resolves to "emit nothing" rather than "emit absent".

Behaviour, checked against Jetstream's server source (``pkg/server``):

- **Subscription.** ``wantedDids`` for our set plus ``wantedCollections=app.accmon.none``, a
  collection nothing writes: the collection filter applies to commits only, so account and
  identity events still arrive and the firehose's commits do not. Jetstream rejects more than
  10,000 DIDs and reads an *empty* ``wantedDids`` as "every DID", so we keep the first
  :data:`MAX_WANTED_DIDS` (with a warning: shard or run one consumer per 10k chunk) and do
  not connect at all while the set is empty. Invalid DIDs (which would make the server
  answer 400 forever) are dropped with a warning. A set too long for a sane URL is sent as
  the first message instead (``requireHello=true`` + ``options_update``), as Jetstream allows.
- **Resume.** The position is the newest ``time_us`` we have processed (or the moment we
  connected without a cursor: nothing before it could have been delivered). Reconnects and
  restarts ask for ``cursor = position - rewind_seconds`` so a different instance's slightly
  different clock loses nothing; the overlap is deduplicated. A 400 (plain text, before the
  upgrade) while sending a cursor drops the cursor and reconnects live at once, logging the
  possible gap (polls cover it).
- **Dedupe.** Per (DID, kind) we keep the last event's ``(time_us, seq)``. A repeat has the
  same ``seq``; a stale replay has a lower ``seq`` *and* an older ``time_us``. A lower ``seq``
  with a newer ``time_us`` is accepted (a relay's sequence can restart). Memory is bounded by
  the watched set. The table lives in memory: across a process restart the rewound overlap
  may deliver the last few seconds again (at-least-once), which the state machine and the
  confirming poll tolerate.
- **Classification.** ``active:false`` with status takendown, suspended, deleted or
  deactivated is an absence; ``desynchronized``, ``throttled``, a missing or an unknown
  status describe the relay's view, not the account's fate: ignored (counted, logged).
  ``active:true`` is present. Identity events go to ``on_identity(did, handle)``. Commits
  and unknown kinds only move the position. Malformed frames are counted and skipped.
  ``Observation.at`` is the receive time (the state machine reads ``at`` as "now").
- **Cursor persistence.** ``save_cursor`` runs at most once per ``save_interval`` while events
  flow, after every disconnect and on stop.

Metrics hooks (the app exports them; this module stays free of prometheus): ``connected``,
``last_event_time_us``, ``lag_seconds``, ``events`` (per kind), ``reconnects``, and
``malformed``, ``duplicates``, ``ignored``, ``callback_errors``,
``cursor_rejections``, ``recent_backoffs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, NamedTuple

import aiohttp
import structlog

from monitor.model import AbsentReason, Observation
from monitor.probes.base import ProbeError, parse_json

__all__ = [
    "ABSENT_STATUSES",
    "MAX_WANTED_DIDS",
    "NO_COLLECTION",
    "JetstreamConsumer",
]

log = structlog.get_logger("monitor.jetstream")

MAX_WANTED_DIDS: Final = 10_000  # Jetstream rejects more (parseSubscriberOptions)
NO_COLLECTION: Final = "app.accmon.none"  # a valid NSID no one writes: filters out commits
MAX_QUERY_DIDS_CHARS: Final = 8_000  # above this, send the DIDs in the hello, not the URL
ABSENT_STATUSES: Final[Mapping[str, AbsentReason]] = {
    "takendown": AbsentReason.TAKEN_DOWN,
    "suspended": AbsentReason.SUSPENDED,
    "deleted": AbsentReason.DELETED,
    "deactivated": AbsentReason.DEACTIVATED,
}
_DID = re.compile(r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]")  # atproto DID syntax
_MAX_DID_LEN: Final = 2048
_MAX_EXPONENT: Final = 32


class _Seen(NamedTuple):
    time_us: int
    seq: int | None


def _is_repeat(prev: _Seen | None, time_us: int, seq: int | None) -> bool:
    """True for an event already processed, or older than one already processed."""
    if prev is None:
        return False
    if seq is not None and prev.seq is not None:
        if seq == prev.seq:
            return True
        if seq > prev.seq:
            return False
    return time_us <= prev.time_us


def _int(value: Any) -> int | None:
    return value if type(value) is int else None


class JetstreamConsumer:
    """Keeps one Jetstream subscription alive and turns account events into Observations."""

    def __init__(
        self,
        url: str,
        session: aiohttp.ClientSession,
        *,
        dids: Iterable[str],
        on_observation: Callable[[str, Observation], None],
        on_identity: Callable[[str, str], None],
        load_cursor: Callable[[], int | None],
        save_cursor: Callable[[int], None],
        rewind_seconds: float = 5.0,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        clock: Callable[[], float] = time.time,
        save_interval: float = 5.0,
        heartbeat: float | None = 30.0,
        connect_timeout: float = 10.0,
        stable_after: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if rewind_seconds < 0 or save_interval < 0:
            raise ValueError("rewind_seconds and save_interval must not be negative")
        if not 0 < backoff_initial <= backoff_max:
            raise ValueError("need 0 < backoff_initial <= backoff_max")
        self._url = url
        self._session = session
        self._on_observation = on_observation
        self._on_identity = on_identity
        self._load_cursor = load_cursor
        self._save_cursor = save_cursor
        self._rewind_us = int(rewind_seconds * 1_000_000)
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._clock = clock
        self._save_interval = save_interval
        self._heartbeat = heartbeat
        self._connect_timeout = connect_timeout
        self._stable_after = stable_after
        self._rng = rng or random.Random()

        # Metrics hooks, read by the app.
        self.connected = False
        self.last_event_time_us: int | None = None
        self.events: Counter[str] = Counter()
        self.reconnects = 0
        self.malformed = 0
        self.duplicates = 0
        self.ignored = 0
        self.callback_errors = 0
        self.cursor_rejections = 0
        self.recent_backoffs: deque[float] = deque(maxlen=64)
        self.position_us: int | None = None  # resume point (before the rewind)

        self._dids: tuple[str, ...] = self._accept(dids)
        self._wanted: frozenset[str] = frozenset(self._dids)
        self._dids_version = 0
        self._seen: dict[tuple[str, str], _Seen] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._conn_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._done = asyncio.Event()
        self._running = False
        self._saved_us: int | None = None
        self._saved_at = float("-inf")

    # ------------------------------------------------------------------ public API

    @property
    def dids(self) -> tuple[str, ...]:
        """The DIDs subscribed to (validated, deduplicated, capped)."""
        return self._dids

    @property
    def lag_seconds(self) -> float | None:
        """Now minus the last event's time (large when our DIDs are quiet, by nature)."""
        if self.last_event_time_us is None:
            return None
        return max(0.0, self._clock() - self.last_event_time_us / 1_000_000)

    async def run(self) -> None:
        """Connect, read, reconnect with backoff, until :meth:`stop`. Never raises on I/O."""
        if self._running:
            raise RuntimeError("JetstreamConsumer.run() is already running")
        self._running = True
        self._done.clear()
        try:
            self.position_us = self._saved_us = self._loaded_cursor()
            await self._loop()
        finally:
            task = self._conn_task
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            self.connected = False
            self._flush_cursor()
            self._running = False
            self._done.set()

    async def stop(self) -> None:
        """End :meth:`run` (closing the socket, saving the cursor) and wait until it has.

        Idempotent; a stopped consumer stays stopped (make a new one to start again).
        """
        self._stop.set()
        self._wake.set()
        task = self._conn_task
        if task is not None and not task.done():
            task.cancel()
        if self._running:
            await self._done.wait()

    async def update_dids(self, dids: Iterable[str]) -> None:
        """Change the watched set: live via ``options_update``, and for every reconnect."""
        self._dids = self._accept(dids)
        self._wanted = frozenset(self._dids)
        self._dids_version += 1
        self._seen = {k: v for k, v in self._seen.items() if k[0] in self._wanted}
        self._wake.set()
        ws = self._ws
        if ws is None or ws.closed:
            return
        if not self._dids:  # an empty wantedDids would subscribe us to every DID
            await ws.close()
            return
        try:
            await ws.send_str(self._options_update())
        except (ConnectionError, aiohttp.ClientError) as exc:
            log.warning("jetstream options_update failed; the reconnect will carry it",
                        error=repr(exc))

    def backoff_delay(self, attempt: int) -> float:
        """Exponential backoff with jitter: uniform in [base/2, base], base capped."""
        base = min(self._backoff_max,
                   self._backoff_initial * 2.0 ** min(attempt, _MAX_EXPONENT))
        return base * (0.5 + 0.5 * self._rng.random())

    # ------------------------------------------------------------------ connection loop

    async def _loop(self) -> None:
        attempt = 0
        first = True
        while not self._stop.is_set():
            if not self._dids:
                self._wake.clear()
                if not self._dids and not self._stop.is_set():
                    await self._wake.wait()
                continue
            if not first:
                self.reconnects += 1
            first = False
            cursor = self._resume_cursor()
            established_at: list[float] = []
            self._conn_task = asyncio.create_task(self._session_once(cursor, established_at))
            try:
                await self._conn_task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # run() itself is being cancelled
                break  # stop() cancelled the connection
            except aiohttp.WSServerHandshakeError as exc:
                if exc.status == 400 and cursor is not None:
                    self.cursor_rejections += 1
                    self.position_us = None
                    log.warning("jetstream rejected our cursor (400); resuming live without one,"
                                " events since the cursor may be missed (polls cover them)",
                                cursor=cursor, status=exc.status)
                    continue  # at once: the next attempt differs
                log.warning("jetstream refused the subscription", status=exc.status,
                            message=exc.message)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("jetstream connection failed", error_type=type(exc).__name__,
                            error=str(exc))
            except Exception:  # never let a surprise end the stream
                log.exception("jetstream consumer error")
            finally:
                self._conn_task = None
                self._flush_cursor()
            if self._stop.is_set():
                break
            if established_at and time.monotonic() - established_at[0] >= self._stable_after:
                attempt = 0
            delay = self.backoff_delay(attempt)
            log.debug("jetstream reconnecting", delay=round(delay, 3), attempt=attempt)
            attempt += 1
            self.recent_backoffs.append(delay)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):  # not wait_for: it can swallow a cancel
                    await self._stop.wait()

    async def _session_once(self, cursor: int | None, established_at: list[float]) -> None:
        """One connection: subscribe, read until it ends. Raises on connection errors."""
        dids, version = self._dids, self._dids_version
        hello = sum(len(d) + 12 for d in dids) > MAX_QUERY_DIDS_CHARS
        params: list[tuple[str, str]] = [("wantedCollections", NO_COLLECTION)]
        if hello:
            params.append(("requireHello", "true"))
        else:
            params.extend(("wantedDids", d) for d in dids)
        if cursor is not None:
            params.append(("cursor", str(cursor)))
        async with asyncio.timeout(self._connect_timeout):
            ws = await self._session.ws_connect(self._url, params=params,
                                                heartbeat=self._heartbeat)
        try:
            established_at.append(time.monotonic())
            self._ws = ws
            self.connected = True
            if cursor is None:  # live tail: nothing before now could have been delivered
                self._advance(int(self._clock() * 1_000_000))
            log.info("jetstream connected", cursor=cursor, dids=len(dids), hello=hello)
            if hello or version != self._dids_version:
                await ws.send_str(self._options_update())
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self._handle(msg.data)
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    self._malformed("binary frame (compression was not requested)")
                elif msg.type is aiohttp.WSMsgType.ERROR:
                    raise ConnectionError(f"websocket error: {ws.exception()!r}")
            if ws.close_code == aiohttp.WSCloseCode.OK:
                log.info("jetstream connection closed", code=ws.close_code)
            else:
                log.warning("jetstream connection lost", code=ws.close_code)
        finally:
            self.connected = False
            self._ws = None
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await ws.close()

    def _resume_cursor(self) -> int | None:
        if self.position_us is None:
            return None
        return max(0, self.position_us - self._rewind_us)

    def _options_update(self) -> str:
        return json.dumps({"type": "options_update", "payload": {
            "wantedCollections": [NO_COLLECTION],
            "wantedDids": list(self._dids),
            "maxMessageSizeBytes": 0,
        }}, separators=(",", ":"))

    # ------------------------------------------------------------------ events

    def _handle(self, text: str) -> None:
        """Classify one frame. Never raises: a bad frame is counted and skipped."""
        try:  # the probes' guarded parser: deep nesting or lone surrogates cannot escape
            doc = parse_json(text.encode("utf-8", "surrogatepass"), 200)
        except ProbeError:
            self._malformed("not JSON")
            return
        if not isinstance(doc, dict):
            self._malformed("not a JSON object")
            return
        did, kind, time_us = doc.get("did"), doc.get("kind"), _int(doc.get("time_us"))
        if not isinstance(did, str) or not isinstance(kind, str) or time_us is None:
            self._malformed("missing did, kind or time_us")
            return
        self.events[kind] += 1
        self.last_event_time_us = time_us
        self._advance(time_us)
        if kind == "account":
            self._account(did, time_us, doc.get("account"))
        elif kind == "identity":
            self._identity(did, time_us, doc.get("identity"))
        self._maybe_save_cursor()

    def _account(self, did: str, time_us: int, body: Any) -> None:
        if (not isinstance(body, dict) or type(body.get("active")) is not bool
                or body.get("did", did) != did):
            self._malformed("account event without a boolean active for its did")
            return
        if not self._fresh(did, "account", time_us, _int(body.get("seq"))):
            return
        at = self._clock()
        if body["active"]:
            obs = Observation.present(at, "jetstream account event active=true", account_id=did)
        else:
            status = body.get("status")
            reason = ABSENT_STATUSES.get(status) if isinstance(status, str) else None
            if reason is None:
                self.ignored += 1
                log.info("jetstream inactive status is not an absence; ignored",
                         did=did, status=status)
                return
            obs = Observation.absent(at, reason,
                                     f"jetstream account event active=false status={status}",
                                     account_id=did)
        try:
            self._on_observation(did, obs)
        except Exception:
            self.callback_errors += 1
            log.exception("on_observation failed", did=did)

    def _identity(self, did: str, time_us: int, body: Any) -> None:
        if not isinstance(body, dict) or body.get("did", did) != did:
            self._malformed("identity event without an object for its did")
            return
        handle = body.get("handle")
        if not isinstance(handle, str) or not handle:
            self.ignored += 1  # identity events may omit the handle
            return
        if not self._fresh(did, "identity", time_us, _int(body.get("seq"))):
            return
        try:
            self._on_identity(did, handle)
        except Exception:
            self.callback_errors += 1
            log.exception("on_identity failed", did=did)

    def _fresh(self, did: str, kind: str, time_us: int, seq: int | None) -> bool:
        """Filter out DIDs we no longer watch and replays; remember what passes."""
        if did not in self._wanted:
            return False  # not (or no longer) watched: the relay filter may lag an update
        key = (did, kind)
        if _is_repeat(self._seen.get(key), time_us, seq):
            self.duplicates += 1
            return False
        self._seen[key] = _Seen(time_us, seq)
        return True

    def _malformed(self, why: str) -> None:
        self.malformed += 1
        log.debug("jetstream frame skipped", why=why)

    # ------------------------------------------------------------------ cursor

    def _advance(self, time_us: int) -> None:
        if self.position_us is None or time_us > self.position_us:
            self.position_us = time_us

    def _loaded_cursor(self) -> int | None:
        try:
            value = self._load_cursor()
        except Exception:
            log.exception("load_cursor failed; starting live")
            return None
        if value is None:
            return None
        if type(value) is not int or value < 0:
            log.warning("ignoring an invalid saved cursor", cursor=value)
            return None
        return value

    def _maybe_save_cursor(self) -> None:
        if self._clock() - self._saved_at >= self._save_interval:
            self._flush_cursor()

    def _flush_cursor(self) -> None:
        position = self.position_us
        if position is None or position == self._saved_us:
            return
        try:
            self._save_cursor(position)
        except Exception:
            log.exception("save_cursor failed")
            return
        self._saved_us = position
        self._saved_at = self._clock()

    # ------------------------------------------------------------------ DIDs

    @staticmethod
    def _accept(dids: Iterable[str]) -> tuple[str, ...]:
        """Valid, unique, at most MAX_WANTED_DIDS (first ones kept), in the given order."""
        unique = dict.fromkeys(dids)
        valid = [d for d in unique if len(d) <= _MAX_DID_LEN and _DID.fullmatch(d)]
        if len(valid) != len(unique):
            kept = set(valid)
            bad = [d for d in unique if d not in kept]
            log.warning("ignoring invalid DIDs", count=len(bad), examples=bad[:3])
        if len(valid) > MAX_WANTED_DIDS:
            log.warning("Jetstream takes at most 10,000 DIDs per connection; keeping the first"
                        " 10,000 (shard the watchlist or run one consumer per chunk)",
                        requested=len(valid), dropped=len(valid) - MAX_WANTED_DIDS)
            valid = valid[:MAX_WANTED_DIDS]
        return tuple(valid)
