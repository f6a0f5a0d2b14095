"""A fake Bluesky Jetstream: ``/subscribe`` over websocket, events in the reference's shapes.

Why: the consumer's hard parts (replay from a cursor, at-least-once duplicates, the plain-text
400 before the upgrade, ``options_update``, dropped connections) must be testable on loopback
and deterministic. Mirrors Jetstream's server (``pkg/server``):

- ``wantedDids`` (repeated; empty means every DID; more than 10,000 or an invalid DID is a
  400) and ``wantedCollections`` (filters commits only; account and identity events pass).
- ``cursor`` (unix microseconds): stored events with ``time_us >= cursor`` are replayed, then
  live events follow, each event at most once per connection (like the server's per-socket
  ``time_us`` high-water mark). A non-integer cursor is answered ``400 invalid cursor: X`` in
  plain text; a future cursor means live tail. **Fake-only:** a cursor older than the replay
  window is also a 400 (``reject_stale_cursor``); the real server replays from its oldest.
- ``requireHello=true`` holds events until the first ``options_update``; an invalid update
  closes the socket, as the server's ``Terminate`` does.

Control from Python (``emit_*``, ``send_raw``, ``drop_connections``, ``fail_handshakes``) or,
for other processes, ``POST /_control/emit`` (JSON ``{"kind":"account","did":…,"active":false,
"status":"takendown"}``), ``POST /_control/drop`` and ``GET /_control/stats``. Run it alone with
``python -m monitor.fakes.jetstream --port 6008``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from monitor.fakes.server import serve, serve_until_signal

MAX_WANTED_DIDS = 10_000
MAX_WANTED_COLLECTIONS = 100
REPLAY_WINDOW_SECONDS = 36 * 3600.0
FIRST_SEQ = 1_409_753_000
_DID = re.compile(r"did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]")
_NSID = re.compile(r"[a-zA-Z]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)+"
                   r"\.[a-zA-Z][a-zA-Z0-9]*")


def _dumps(doc: Any) -> str:
    """Go's encoding/json: compact, keys in struct order."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def iso_time(time_us: int) -> str:
    """The relay's event time: ``2024-09-05T06:11:04.870Z`` (milliseconds, Z)."""
    moment = datetime.fromtimestamp(time_us / 1_000_000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class OptionsError(ValueError):
    """Subscriber options the server rejects (400 before the upgrade, close after)."""


@dataclass(frozen=True, slots=True)
class _Filter:
    dids: frozenset[str]  # empty: every DID
    collections: frozenset[str] | None  # None: every collection; "x.*" entries are prefixes

    def wants(self, event: StoredEvent) -> bool:
        if self.dids and event.did not in self.dids:
            return False
        if self.collections is None or event.collection is None:
            return True
        return any(event.collection == c or (c.endswith(".*") and
                                              event.collection.startswith(c[:-1]))
                   for c in self.collections)

    @classmethod
    def parse(cls, collections: Iterable[str] | None, dids: Iterable[str] | None) -> _Filter:
        wanted_cols = [c for c in collections or [] if c]
        for col in wanted_cols:
            if not col.endswith(".*") and not _NSID.fullmatch(col):
                raise OptionsError(f"invalid subscriber options: invalid collection: {col}")
        if len(wanted_cols) > MAX_WANTED_COLLECTIONS:
            raise OptionsError("invalid subscriber options: too many wanted collections")
        wanted_dids = frozenset(d for d in dids or [] if d)
        if any(not _DID.fullmatch(d) for d in wanted_dids):
            raise OptionsError("invalid subscriber options")
        if len(wanted_dids) > MAX_WANTED_DIDS:
            raise OptionsError("invalid subscriber options: too many wanted DIDs")
        return cls(wanted_dids, frozenset(wanted_cols) if wanted_cols else None)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One event of the log: what filtering needs, plus the exact frame."""

    time_us: int
    did: str
    kind: str
    collection: str | None
    text: str

    @property
    def doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.text)
        return doc


@dataclass(eq=False, slots=True)
class _Subscriber:
    request: web.Request
    ws: web.WebSocketResponse
    filter: _Filter
    cursor: int | None
    hello: asyncio.Event
    queue: asyncio.Queue[StoredEvent | str] = field(default_factory=asyncio.Queue)
    last_sent_us: int = 0


class FakeJetstream:
    """An in-process Jetstream with a replayable event log and failure switches."""

    def __init__(self, *, replay_window: float = REPLAY_WINDOW_SECONDS,
                 reject_stale_cursor: bool = True,
                 clock: Callable[[], float] = time.time, first_seq: int = FIRST_SEQ) -> None:
        self.replay_window = replay_window
        self.reject_stale_cursor = reject_stale_cursor
        self._clock = clock
        self._seq = first_seq
        self._last_time_us = 0
        self.log: list[StoredEvent] = []
        self._subs: set[_Subscriber] = set()
        self.connections = 0  # upgrades accepted since start
        self.queries: list[dict[str, list[str]]] = []  # every /subscribe query, in order
        self.options_updates: list[dict[str, Any]] = []  # payloads applied
        self.rejections: list[tuple[int, str]] = []  # (status, plain-text body)
        self.fail_handshakes = 0  # answer this many next handshakes with a 503

    # ------------------------------------------------------------------ inspection

    @property
    def open_connections(self) -> int:
        return len(self._subs)

    @property
    def last_query(self) -> dict[str, list[str]] | None:
        return self.queries[-1] if self.queries else None

    def stats(self) -> dict[str, Any]:
        return {"connections": self.connections, "open_connections": self.open_connections,
                "events": len(self.log), "last_query": self.last_query,
                "options_updates": len(self.options_updates), "rejections": self.rejections}

    # ------------------------------------------------------------------ emitting

    def emit_account(self, did: str, active: bool, status: str | None = None) -> dict[str, Any]:
        """An ``#account`` event; ``status`` only when given (takendown, deactivated, ...)."""
        time_us, seq = self._next()
        account: dict[str, Any] = {"active": active, "did": did, "seq": seq}
        if status is not None:
            account["status"] = status
        account["time"] = iso_time(time_us)
        return self._store({"did": did, "time_us": time_us, "kind": "account",
                            "account": account}, None)

    def emit_identity(self, did: str, handle: str) -> dict[str, Any]:
        """An ``#identity`` event carrying the DID's current handle."""
        time_us, seq = self._next()
        return self._store({"did": did, "time_us": time_us, "kind": "identity",
                            "identity": {"did": did, "handle": handle, "seq": seq,
                                         "time": iso_time(time_us)}}, None)

    def emit_commit(self, did: str, collection: str = "app.bsky.feed.post") -> dict[str, Any]:
        """Noise: a record creation, which a consumer filtering collections must not see."""
        time_us, _seq = self._next()
        rkey = f"3l{time_us % 10**11:011d}"
        created = iso_time(time_us)
        return self._store({"did": did, "time_us": time_us, "kind": "commit", "commit": {
            "rev": rkey, "operation": "create", "collection": collection, "rkey": rkey,
            "record": {"$type": collection, "createdAt": created, "langs": ["en"],
                       "text": "noise"},
            "cid": "bafyreidwaivazkwu67xztlmuobx35hs2lnfh3kolmgfmucldvhd3sgzcqi"}},
            collection)

    def send_raw(self, text: str) -> None:
        """Send a frame as is (malformed JSON, say) to every open connection; not logged."""
        for sub in self._subs:
            sub.queue.put_nowait(text)

    def drop_connections(self) -> int:
        """Abort every open connection mid-stream (no close frame); returns how many."""
        dropped = 0
        for sub in list(self._subs):
            transport = sub.request.transport
            if transport is not None:
                transport.abort()
                dropped += 1
        return dropped

    def _next(self) -> tuple[int, int]:
        self._last_time_us = max(self._last_time_us + 1, int(self._clock() * 1_000_000))
        self._seq += 1
        return self._last_time_us, self._seq

    def _store(self, doc: dict[str, Any], collection: str | None) -> dict[str, Any]:
        event = StoredEvent(doc["time_us"], doc["did"], doc["kind"], collection, _dumps(doc))
        self.log.append(event)
        horizon = event.time_us - int(self.replay_window * 1_000_000)
        if self.log[0].time_us < horizon:
            self.log = [e for e in self.log if e.time_us >= horizon]
        for sub in self._subs:
            sub.queue.put_nowait(event)
        return doc

    # ------------------------------------------------------------------ serving

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/subscribe", self._subscribe)
        app.router.add_post("/_control/emit", self._control_emit)
        app.router.add_post("/_control/drop", self._control_drop)
        app.router.add_get("/_control/stats", self._control_stats)
        return app

    @contextlib.asynccontextmanager
    async def running(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve on ``host:port`` (0: any free port); yields ``ws://host:port``."""
        # Jetstream (Go net/http) takes request lines up to 1 MiB: 10,000 DIDs fit.
        async with serve(self.app(), asyncio.Event(), host, port, scheme="ws",
                         handler_cancellation=False, max_line_size=1 << 20,
                         max_field_size=1 << 20) as url:
            try:
                yield url
            finally:
                for sub in list(self._subs):
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(sub.ws.close(code=1001), 0.5)

    async def _subscribe(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        self.queries.append({k: query.getall(k) for k in dict.fromkeys(query.keys())})
        if self.fail_handshakes > 0:
            self.fail_handshakes -= 1
            return self._reject(503, "service unavailable")
        cursor: int | None = None
        raw_cursor = query.get("cursor", "")
        if raw_cursor:
            try:
                cursor = int(raw_cursor)
            except ValueError:
                return self._reject(400, f"invalid cursor: {raw_cursor}")
            now_us = int(self._clock() * 1_000_000)
            if cursor > now_us:
                cursor = None  # a future cursor: live tail
            elif (self.reject_stale_cursor
                  and cursor < now_us - int(self.replay_window * 1_000_000)):
                return self._reject(400, f"invalid cursor: {raw_cursor} is older than the"
                                         " replay window")
        try:
            wanted = _Filter.parse(query.getall("wantedCollections", []),
                                   query.getall("wantedDids", []))
        except OptionsError as exc:
            return self._reject(400, str(exc))

        ws = web.WebSocketResponse()
        await ws.prepare(request)
        hello = asyncio.Event()
        if query.get("requireHello") != "true":
            hello.set()
        sub = _Subscriber(request, ws, wanted, cursor, hello)
        self._subs.add(sub)  # before the replay: live events queue up meanwhile
        self.connections += 1
        sender = asyncio.create_task(self._send(sub))
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT and not await self._client_message(sub, msg.data):
                    break
        finally:
            self._subs.discard(sub)
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await sender
        return ws

    def _reject(self, status: int, text: str) -> web.Response:
        self.rejections.append((status, text))
        return web.Response(status=status, text=text, content_type="text/plain")

    async def _client_message(self, sub: _Subscriber, text: str) -> bool:
        """Apply an ``options_update``; False (socket closed) when it is invalid."""
        try:
            doc = json.loads(text)
            if not isinstance(doc, dict) or doc.get("type") != "options_update":
                return True  # the server logs and ignores other types
            payload = doc.get("payload")
            if not isinstance(payload, dict):
                raise OptionsError("payload is not an object")
            sub.filter = _Filter.parse(payload.get("wantedCollections"),
                                       payload.get("wantedDids"))
        except (ValueError, TypeError) as exc:  # OptionsError and JSONDecodeError included
            await sub.ws.close(code=1000, message=f"failed to parse options: {exc}"[:120]
                               .encode())
            return False
        self.options_updates.append(payload)
        sub.hello.set()
        return True

    async def _send(self, sub: _Subscriber) -> None:
        """Replay from the cursor, then live, each event at most once per connection."""
        await sub.hello.wait()
        if sub.cursor is not None:
            i = 0
            while i < len(self.log):  # the log may grow while we replay
                event = self.log[i]
                i += 1
                if event.time_us >= sub.cursor:
                    await self._deliver(sub, event)
        while True:
            item = await sub.queue.get()
            if isinstance(item, str):
                await sub.ws.send_str(item)
            else:
                await self._deliver(sub, item)

    @staticmethod
    async def _deliver(sub: _Subscriber, event: StoredEvent) -> None:
        if event.time_us <= sub.last_sent_us or not sub.filter.wants(event):
            return
        sub.last_sent_us = event.time_us
        await sub.ws.send_str(event.text)

    # ------------------------------------------------------------------ control endpoints

    async def _control_emit(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            kind, did = data["kind"], data["did"]
            if kind == "account":
                doc = self.emit_account(did, bool(data["active"]), data.get("status"))
            elif kind == "identity":
                doc = self.emit_identity(did, data["handle"])
            elif kind == "commit":
                doc = self.emit_commit(did, data.get("collection", "app.bsky.feed.post"))
            else:
                raise ValueError(f"unknown kind {kind!r}")
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(doc)

    async def _control_drop(self, request: web.Request) -> web.Response:
        return web.json_response({"dropped": self.drop_connections()})

    async def _control_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; prints the ws:// base URL once listening."""
    parser = argparse.ArgumentParser(description="A fake Bluesky Jetstream.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--replay-window", type=float, default=REPLAY_WINDOW_SECONDS,
                        help="seconds of events kept for cursors")
    args = parser.parse_args(argv)
    fake = FakeJetstream(replay_window=args.replay_window)
    asyncio.run(serve_until_signal(fake.running(args.host, args.port)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
