"""The Jetstream consumer against the fake Jetstream on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from monitor.fakes.jetstream import FakeJetstream, iso_time
from monitor.model import AbsentReason, Observation, Result
from monitor.streams.jetstream import (
    MAX_WANTED_DIDS,
    NO_COLLECTION,
    JetstreamConsumer,
    _is_repeat,
    _Seen,
)
from tests.conftest import wait_for

ALICE = "did:plc:ufbl4k27gp6kzas5glhz7fim"
BOB = "did:plc:bobbbbbbbbbbbbbbbbbbbbbb"
CAROL = "did:plc:carolcarolcarolcarolcaro"
REWIND = 5.0


@dataclass
class Sink:
    """Collects what the consumer calls back with, and the cursor store."""

    observations: list[tuple[str, Observation]] = field(default_factory=list)
    identities: list[tuple[str, str]] = field(default_factory=list)
    saved: list[int] = field(default_factory=list)
    loaded: int | None = None

    def observe(self, did: str, obs: Observation) -> None:
        self.observations.append((did, obs))

    def identity(self, did: str, handle: str) -> None:
        self.identities.append((did, handle))

    def load(self) -> int | None:
        return self.loaded

    def save(self, cursor: int) -> None:
        self.saved.append(cursor)

    def reasons(self) -> list[tuple[str, AbsentReason | None]]:
        return [(did, obs.reason) for did, obs in self.observations]


def consumer_for(url: str, session: aiohttp.ClientSession, sink: Sink, dids: list[str],
                 **kw: Any) -> JetstreamConsumer:
    options: dict[str, Any] = {"rewind_seconds": REWIND, "backoff_initial": 0.02,
                               "backoff_max": 0.1, "save_interval": 0.0}
    options.update(kw)
    return JetstreamConsumer(url + "/subscribe", session, dids=dids,
                             on_observation=sink.observe, on_identity=sink.identity,
                             load_cursor=sink.load, save_cursor=sink.save, **options)


@contextlib.asynccontextmanager
async def consuming(consumer: JetstreamConsumer,
                    fake: FakeJetstream | None = None) -> AsyncIterator[asyncio.Task[None]]:
    """Run the consumer in a task; wait for its first connection; stop it cleanly after."""
    task = asyncio.create_task(consumer.run())
    try:
        if fake is not None:
            await wait_for(lambda: consumer.connected and fake.open_connections, 5,
                           "the consumer to connect")
        yield task
    finally:
        await asyncio.wait_for(consumer.stop(), 5)
        await asyncio.wait_for(task, 5)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeJetstream, str]]:
    server = FakeJetstream()
    async with server.running() as url:
        yield server, url


async def test_takedown_is_an_absence_for_the_right_did(fake: tuple[FakeJetstream, str],
                                                         session: aiohttp.ClientSession) -> None:
    server, url = fake
    sink = Sink()
    consumer = consumer_for(url, session, sink, [ALICE, BOB])
    async with consuming(consumer, server):
        event = server.emit_account(ALICE, active=False, status="takendown")
        await wait_for(lambda: sink.observations, 5, "the observation")
    [(did, obs)] = sink.observations
    assert did == ALICE
    assert obs.result is Result.ABSENT and obs.reason is AbsentReason.TAKEN_DOWN
    assert obs.account_id == ALICE
    assert obs.evidence == "jetstream account event active=false status=takendown"
    assert consumer.last_event_time_us == event["time_us"]
    assert consumer.events["account"] == 1


async def test_subscription_query_filters_commits_and_names_dids(
        fake: tuple[FakeJetstream, str], session: aiohttp.ClientSession) -> None:
    server, url = fake
    consumer = consumer_for(url, session, Sink(), [ALICE, BOB])
    async with consuming(consumer, server):
        pass
    query = server.queries[0]
    assert query["wantedDids"] == [ALICE, BOB]
    assert query["wantedCollections"] == [NO_COLLECTION]
    assert "cursor" not in query  # first start, nothing saved: live


@pytest.mark.parametrize(("status", "reason"), [
    ("takendown", AbsentReason.TAKEN_DOWN), ("suspended", AbsentReason.SUSPENDED),
    ("deleted", AbsentReason.DELETED), ("deactivated", AbsentReason.DEACTIVATED),
])
async def test_every_documented_status_maps_to_its_reason(
        fake: tuple[FakeJetstream, str], session: aiohttp.ClientSession,
        status: str, reason: AbsentReason) -> None:
    server, url = fake
    sink = Sink()
    async with consuming(consumer_for(url, session, sink, [ALICE]), server):
        server.emit_account(ALICE, active=False, status=status)
        await wait_for(lambda: sink.observations, 5, "the observation")
    assert sink.reasons() == [(ALICE, reason)]


async def test_relay_states_are_not_absences_and_active_is_present(
        fake: tuple[FakeJetstream, str], session: aiohttp.ClientSession) -> None:
    server, url = fake
    sink = Sink()
    consumer = consumer_for(url, session, sink, [ALICE])
    async with consuming(consumer, server):
        server.emit_account(ALICE, active=False, status="desynchronized")
        server.emit_account(ALICE, active=False, status="throttled")
        server.emit_account(ALICE, active=False)  # no status: reason unknown
        server.emit_account(ALICE, active=False, status="brand-new-status")
        server.emit_account(ALICE, active=True)
        await wait_for(lambda: sink.observations, 5, "the present observation")
    [(did, obs)] = sink.observations
    assert did == ALICE and obs.result is Result.PRESENT
    assert obs.evidence == "jetstream account event active=true"
    assert consumer.ignored == 4


async def test_only_wanted_dids_are_delivered_and_commits_never(
        fake: tuple[FakeJetstream, str], session: aiohttp.ClientSession) -> None:
    server, url = fake
    sink = Sink()
    consumer = consumer_for(url, session, sink, [ALICE])
    async with consuming(consumer, server):
        server.emit_account(BOB, active=False, status="takendown")
        server.emit_commit(ALICE)
        server.emit_commit(BOB)
        server.emit_account(ALICE, active=False, status="suspended")
        await wait_for(lambda: sink.observations, 5, "alice's observation")
        await asyncio.sleep(0.05)
    assert sink.reasons() == [(ALICE, AbsentReason.SUSPENDED)]
    assert consumer.events == {"account": 1}  # BOB's event and the commits never arrived


async def test_identity_goes_to_on_identity(fake: tuple[FakeJetstream, str],
                                            session: aiohttp.ClientSession) -> None:
    server, url = fake
    sink = Sink()
    async with consuming(consumer_for(url, session, sink, [ALICE]), server):
        server.emit_identity(ALICE, "yohenrique.bsky.social")
        await wait_for(lambda: sink.identities, 5, "the identity callback")
    assert sink.identities == [(ALICE, "yohenrique.bsky.social")]
    assert sink.observations == []


async def test_event_shapes_match_the_reference(fake: tuple[FakeJetstream, str]) -> None:
    server, _url = fake
    acct = server.emit_account(ALICE, active=False, status="takendown")
    ident = server.emit_identity(ALICE, "yohenrique.bsky.social")
    assert list(acct) == ["did", "time_us", "kind", "account"]
    assert list(acct["account"]) == ["active", "did", "seq", "status", "time"]
    assert list(ident["identity"]) == ["did", "handle", "seq", "time"]
    assert acct["account"]["time"] == iso_time(acct["time_us"])
    assert ident["time_us"] > acct["time_us"] and ident["identity"]["seq"] > acct["account"]["seq"]
    assert server.log[0].text == json.dumps(acct, separators=(",", ":"))


async def test_disconnect_resumes_from_cursor_and_replays_are_deduplicated(
        fake: tuple[FakeJetstream, str], session: aiohttp.ClientSession) -> None:
    server, url = fake
    sink = Sink()
    consumer = consumer_for(url, session, sink, [ALICE, BOB], backoff_initial=0.2,
                            backoff_max=0.2)
    async with consuming(consumer, server):
        server.emit_account(ALICE, active=False, status="takendown")
        server.emit_identity(BOB, "bob.example")
        last = server.emit_account(BOB, active=False, status="deactivated")
        await wait_for(lambda: len(sink.observations) == 2, 5, "two observations")

        assert server.drop_connections() == 1
        await wait_for(lambda: not consumer.connected, 5, "the drop to be noticed")
        missed = server.emit_account(ALICE, active=True)  # while we are away: replayed later
        await wait_for(lambda: server.connections == 2 and consumer.connected, 5, "reconnect")
        await wait_for(lambda: len(sink.observations) == 3, 5, "the missed event")
        server.emit_account(BOB, active=True)
        await wait_for(lambda: len(sink.observations) == 4, 5, "a live event")
        # A marker after everything: in-order frames, so any duplicate came before it.
        server.send_raw(json.dumps({"did": ALICE, "time_us": 1, "kind": "marker"}))
        await wait_for(lambda: consumer.events["marker"] == 1, 5, "the marker")

    cursor = int(server.queries[1]["cursor"][0])
    assert cursor == last["time_us"] - int(REWIND * 1_000_000)
    assert [(d, o.result) for d, o in sink.observations] == [
        (ALICE, Result.ABSENT), (BOB, Result.ABSENT), (ALICE, Result.PRESENT),
        (BOB, Result.PRESENT)]
    assert sink.identities == [(BOB, "bob.example")]  # not replayed twice
    assert consumer.duplicates == 3  # the replayed overlap: 2 accounts + 1 identity
    assert consumer.reconnects == 1
    assert sink.saved[-1] >= missed["time_us"]


async def test_restart_with_saved_cursor_resumes(fake: tuple[FakeJetstream, str],
                                                 session: aiohttp.ClientSession) -> None:
    server, url = fake
    first = Sink()
    old = server.emit_account(ALICE, active=False, status="deactivated")  # before any cursor
    await asyncio.sleep(0.3)
    async with consuming(consumer_for(url, session, first, [ALICE], rewind_seconds=0.1),
                         server):
        seen = server.emit_account(ALICE, active=True)
        await wait_for(lambda: first.observations, 5, "the first run's event")
    assert first.saved[-1] == seen["time_us"]  # saved on stop

    missed = server.emit_account(ALICE, active=False, status="takendown")  # while down
    second = Sink(loaded=first.saved[-1])
    async with consuming(consumer_for(url, session, second, [ALICE], rewind_seconds=0.1),
                         server):
        await wait_for(lambda: any(o.result is Result.ABSENT for _, o in second.observations),
                       5, "the missed takedown")
        await asyncio.sleep(0.05)
    query = server.last_query
    assert query is not None and int(query["cursor"][0]) == seen["time_us"] - 100_000
    reasons = [o.reason for _, o in second.observations]
    # The rewound overlap may repeat the last event across a restart (at-least-once), but
    # never anything older than the rewind, and the missed event exactly once.
    assert reasons.count(AbsentReason.TAKEN_DOWN) == 1
    assert AbsentReason.DEACTIVATED not in reasons
    assert old["time_us"] < seen["time_us"] - 100_000 < missed["time_us"]


async def test_rejected_cursor_reconnects_without_it(session: aiohttp.ClientSession) -> None:
    server = FakeJetstream(replay_window=60.0)
    async with server.running() as url:
        stale = int((time.time() - 7200) * 1_000_000)  # beyond the fake's 60 s window
        sink = Sink(loaded=stale)
        consumer = consumer_for(url, session, sink, [ALICE])
        async with consuming(consumer, server):
            server.emit_account(ALICE, active=False, status="suspended")
            await wait_for(lambda: sink.observations, 5, "a live event")
    assert server.rejections[0][0] == 400 and "invalid cursor" in server.rejections[0][1]
    assert server.queries[0]["cursor"] == [str(stale - int(REWIND * 1_000_000))]
    assert "cursor" not in server.queries[1]
    assert consumer.cursor_rejections == 1
    assert sink.reasons() == [(ALICE, AbsentReason.SUSPENDED)]


async def test_fake_answers_a_non_integer_cursor_with_plain_text_400(
        fake: tuple[FakeJetstream, str], session: aiohttp.ClientSession) -> None:
    server, url = fake
    async with session.get(url.replace("ws://", "http://") + "/subscribe?cursor=abc") as resp:
        assert resp.status == 400
        assert resp.content_type == "text/plain"
        assert await resp.text() == "invalid cursor: abc"
    assert server.rejections == [(400, "invalid cursor: abc")] and server.connections == 0


async def test_options_update_changes_the_set_without_reconnecting(
        fake: tuple[FakeJetstream, str], session: aiohttp.ClientSession) -> None:
    server, url = fake
    sink = Sink()
    consumer = consumer_for(url, session, sink, [ALICE])
    async with consuming(consumer, server):
        await consumer.update_dids([BOB, CAROL])
        await wait_for(lambda: server.options_updates, 5, "the options update")
        server.emit_account(ALICE, active=False, status="takendown")
        server.emit_account(BOB, active=False, status="suspended")
        await wait_for(lambda: sink.observations, 5, "bob's event")
        await asyncio.sleep(0.05)
    assert server.options_updates == [{"wantedCollections": [NO_COLLECTION],
                                       "wantedDids": [BOB, CAROL], "maxMessageSizeBytes": 0}]
    assert sink.reasons() == [(BOB, AbsentReason.SUSPENDED)]
    assert server.connections == 1 and consumer.reconnects == 0


async def test_reconnect_uses_the_updated_set(fake: tuple[FakeJetstream, str],
                                              session: aiohttp.ClientSession) -> None:
    server, url = fake
    consumer = consumer_for(url, session, Sink(), [ALICE])
    async with consuming(consumer, server):
        await consumer.update_dids([BOB, "not-a-did", BOB])
        server.drop_connections()
        await wait_for(lambda: server.connections == 2 and consumer.connected, 5, "reconnect")
    assert server.queries[-1]["wantedDids"] == [BOB]


async def test_empty_set_never_subscribes_to_everything(fake: tuple[FakeJetstream, str],
                                                        session: aiohttp.ClientSession) -> None:
    server, url = fake
    consumer = consumer_for(url, session, Sink(), [ALICE])
    async with consuming(consumer, server):
        await consumer.update_dids([])
        await wait_for(lambda: not server.open_connections, 5, "the socket to close")
        await consumer.update_dids([CAROL])
        await wait_for(lambda: consumer.connected, 5, "a new connection")
    # Idle meanwhile: never reconnected with wantedDids=[] (= everything) in between.
    assert server.connections == 2
    assert [q.get("wantedDids") for q in server.queries] == [[ALICE], [CAROL]]


async def test_large_sets_go_in_the_hello_not_the_url(fake: tuple[FakeJetstream, str],
                                                      session: aiohttp.ClientSession) -> None:
    server, url = fake
    many = [f"did:plc:{i:024d}" for i in range(MAX_WANTED_DIDS + 5)]
    sink = Sink()
    consumer = consumer_for(url, session, sink, many)
    assert len(consumer.dids) == MAX_WANTED_DIDS  # capped, first ones kept
    async with consuming(consumer, server):
        await wait_for(lambda: server.options_updates, 5, "the hello")
        server.emit_account(many[-6], active=False, status="deleted")
        server.emit_account(many[-1], active=False, status="deleted")  # beyond the cap
        await wait_for(lambda: sink.observations, 5, "the event")
        await asyncio.sleep(0.05)
    assert server.queries[0]["requireHello"] == ["true"]
    assert "wantedDids" not in server.queries[0]
    assert len(server.options_updates[0]["wantedDids"]) == MAX_WANTED_DIDS
    assert sink.reasons() == [(many[-6], AbsentReason.DELETED)]


async def test_malformed_frames_are_skipped(fake: tuple[FakeJetstream, str],
                                            session: aiohttp.ClientSession) -> None:
    server, url = fake
    sink = Sink()
    consumer = consumer_for(url, session, sink, [ALICE])
    async with consuming(consumer, server):
        for frame in ['{"did":"did:plc:x","time_us":1,"ki', "[]", "null", '{"kind":"account"}',
                      json.dumps({"did": ALICE, "time_us": 5, "kind": "account",
                                  "account": {"active": "no"}}),
                      json.dumps({"did": ALICE, "time_us": "5", "kind": "account"}),
                      "[" * 200000 + "]" * 200000,  # RecursionError in a plain json.loads
                      '{"did":"did:plc:\\ud800","time_us":1,"kind":"account"}']:
            server.send_raw(frame)
        server.send_raw(json.dumps({"did": ALICE, "time_us": 7, "kind": "mystery", "x": 1}))
        server.emit_account(ALICE, active=False, status="takendown")
        await wait_for(lambda: sink.observations, 5, "the good event")
    assert consumer.malformed == 8
    assert consumer.events["mystery"] == 1
    assert sink.reasons() == [(ALICE, AbsentReason.TAKEN_DOWN)]
    assert consumer.reconnects == 0


async def test_unknown_keys_are_tolerated(fake: tuple[FakeJetstream, str],
                                          session: aiohttp.ClientSession) -> None:
    server, url = fake
    sink = Sink()
    async with consuming(consumer_for(url, session, sink, [ALICE]), server):
        server.send_raw(json.dumps({"did": ALICE, "time_us": 1725516665433808, "kind": "account",
                                    "cursor": 1725516665433808, "future": {"a": 1},
                                    "account": {"active": False, "did": ALICE, "seq": 1,
                                                "status": "takendown", "time": "x", "new": 2}}))
        await wait_for(lambda: sink.observations, 5, "the event")
    assert sink.reasons() == [(ALICE, AbsentReason.TAKEN_DOWN)]


async def test_callback_errors_do_not_end_the_stream(fake: tuple[FakeJetstream, str],
                                                     session: aiohttp.ClientSession) -> None:
    server, url = fake
    seen: list[str] = []

    def explode(did: str, obs: Observation) -> None:
        seen.append(did)
        raise RuntimeError("boom")

    sink = Sink()
    consumer = JetstreamConsumer(url + "/subscribe", session, dids=[ALICE, BOB],
                                 on_observation=explode, on_identity=sink.identity,
                                 load_cursor=sink.load, save_cursor=sink.save)
    async with consuming(consumer, server):
        server.emit_account(ALICE, active=False, status="takendown")
        server.emit_account(BOB, active=False, status="takendown")
        await wait_for(lambda: len(seen) == 2, 5, "both callbacks")
    assert consumer.callback_errors == 2 and consumer.reconnects == 0


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_backoff_grows_and_is_capped(session: aiohttp.ClientSession) -> None:
    consumer = consumer_for(f"ws://127.0.0.1:{_closed_port()}", session, Sink(), [ALICE],
                            backoff_initial=0.005, backoff_max=0.04)
    async with consuming(consumer):
        await wait_for(lambda: len(consumer.recent_backoffs) >= 8, 10, "eight failures")
    delays = list(consumer.recent_backoffs)[:8]
    for attempt, delay in enumerate(delays):
        base = min(0.04, 0.005 * 2 ** attempt)
        assert base / 2 <= delay <= base
    assert max(delays) <= 0.04 and min(delays[4:]) >= 0.02  # capped, and stays near the cap
    assert consumer.reconnects >= 7 and not consumer.connected


async def test_backoff_formula_is_jittered_and_capped(session: aiohttp.ClientSession) -> None:
    consumer = consumer_for("ws://unused", session, Sink(), [ALICE],
                            backoff_initial=0.5, backoff_max=30.0)
    for attempt in range(80):
        delay = consumer.backoff_delay(attempt)
        base = min(30.0, 0.5 * 2 ** attempt)
        assert base / 2 <= delay <= base
    assert len({consumer.backoff_delay(3) for _ in range(20)}) > 1  # jittered


async def test_handshake_failures_back_off_then_recover(fake: tuple[FakeJetstream, str],
                                                        session: aiohttp.ClientSession) -> None:
    server, url = fake
    server.fail_handshakes = 3
    sink = Sink()
    consumer = consumer_for(url, session, sink, [ALICE])
    async with consuming(consumer, server):
        server.emit_account(ALICE, active=False, status="takendown")
        await wait_for(lambda: sink.observations, 5, "the event")
    assert [s for s, _ in server.rejections] == [503, 503, 503]
    assert consumer.reconnects == 3 and len(consumer.recent_backoffs) == 3


async def test_stop_is_clean_and_saves_the_cursor(fake: tuple[FakeJetstream, str],
                                                  session: aiohttp.ClientSession) -> None:
    server, url = fake
    sink = Sink()
    consumer = consumer_for(url, session, sink, [ALICE], save_interval=3600.0)
    task = asyncio.create_task(consumer.run())
    await wait_for(lambda: consumer.connected, 5, "connect")
    server.emit_account(ALICE, active=True)
    server.emit_commit(ALICE)
    last = server.emit_account(ALICE, active=False, status="takendown")
    await wait_for(lambda: len(sink.observations) == 2, 5, "events")
    saves_before = len(sink.saved)
    await asyncio.wait_for(consumer.stop(), 2)
    assert task.done() and task.exception() is None
    assert not consumer.connected
    assert sink.saved[-1] == last["time_us"] and len(sink.saved) == saves_before + 1
    await wait_for(lambda: not server.open_connections, 2, "the server to see the close")
    await consumer.stop()  # idempotent


async def test_stop_during_backoff_and_before_connect(session: aiohttp.ClientSession) -> None:
    consumer = consumer_for(f"ws://127.0.0.1:{_closed_port()}", session, Sink(), [ALICE],
                            backoff_initial=60.0, backoff_max=60.0)
    task = asyncio.create_task(consumer.run())
    await wait_for(lambda: consumer.recent_backoffs, 5, "a failure")
    await asyncio.wait_for(consumer.stop(), 1)
    assert task.done()


async def test_lag_tracks_the_last_event(fake: tuple[FakeJetstream, str],
                                         session: aiohttp.ClientSession) -> None:
    server, url = fake
    offset = [0.0]
    sink = Sink()
    consumer = consumer_for(url, session, sink, [ALICE], clock=lambda: time.time() + offset[0])
    assert consumer.lag_seconds is None
    async with consuming(consumer, server):
        event = server.emit_account(ALICE, active=True)
        await wait_for(lambda: sink.observations, 5, "event")
    lag = consumer.lag_seconds
    assert lag is not None and 0 <= lag < 1
    offset[0] = event["time_us"] / 1_000_000 + 2.5 - time.time()
    assert consumer.lag_seconds == pytest.approx(2.5, abs=0.01)


async def test_fake_closes_the_socket_on_an_invalid_options_update(
        fake: tuple[FakeJetstream, str], session: aiohttp.ClientSession) -> None:
    server, url = fake
    async with session.ws_connect(url + "/subscribe?wantedDids=" + ALICE) as ws:
        await ws.send_str(json.dumps({"type": "options_update",
                                      "payload": {"wantedDids": ["not-a-did"]}}))
        msg = await asyncio.wait_for(ws.receive(), 5)
        assert msg.type is aiohttp.WSMsgType.CLOSE
    assert server.options_updates == []


@pytest.mark.parametrize(("prev", "time_us", "seq", "repeat"), [
    (None, 10, 5, False),
    ((10, 5), 10, 5, True),  # the same event replayed
    ((10, 5), 12, 5, True),  # the same seq via another instance's clock
    ((10, 5), 9, 4, True),  # an older event replayed after a newer one
    ((10, 5), 11, 6, False),  # newer
    ((10, 5), 9, 6, False),  # newer by seq, whatever the clocks say
    ((10, 5), 11, 1, False),  # the relay's sequence restarted: newer by time
    ((10, None), 10, None, True),  # no seq: time decides
    ((10, None), 11, None, False),
])
def test_repeat_rule(prev: tuple[int, int | None] | None, time_us: int, seq: int | None,
                     repeat: bool) -> None:
    assert _is_repeat(_Seen(*prev) if prev else None, time_us, seq) is repeat
