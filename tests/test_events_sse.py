"""/api/v1/events: server-sent events of every decision, resumable with Last-Event-ID."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from monitor import web
from monitor.fakes.mastodon import FakeMastodon
from monitor.model import State
from tests.conftest import mastodon_config, running_monitor, state_of, wait_for


async def read_events(resp: aiohttp.ClientResponse, until: str,
                      timeout: float = 10.0) -> list[dict[str, Any]]:
    """Parse SSE frames until one of kind ``until`` arrives."""
    got: list[dict[str, Any]] = []
    frame: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = (await asyncio.wait_for(resp.content.readline(), timeout)).decode().rstrip("\n")
        if line.startswith(":"):
            continue
        if line:
            field, _, value = line.partition(": ")
            frame[field] = value
            continue
        if "data" in frame:  # a frame without data (the opening retry:) dispatches nothing
            data = json.loads(frame["data"])
            assert int(frame["id"]) == data["id"] and frame["event"] == data["kind"]
            got.append(data)
            if data["kind"] == until:
                return got
        frame = {}
    raise AssertionError(f"no {until} event; got {got}")


async def test_events_stream_live_and_resume_after_a_disconnect(state_file: str) -> None:
    masto = FakeMastodon({"alice": "present"})
    async with masto.running() as base, running_monitor(mastodon_config(base, ["alice"],
                                               state_path=state_file)) as mon:
        url = f"http://127.0.0.1:{mon.port}/api/v1/events"
        await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="up")
        async with aiohttp.ClientSession() as http:
            async with http.get(url) as resp:
                assert resp.headers["Content-Type"].startswith("text/event-stream")
                first = await read_events(resp, "transition")  # replay: unknown -> up
                assert (first[0]["handle"], first[0]["new_state"]) == ("alice", "up")
                masto.set_state("alice", "suspended")
                live = await read_events(resp, "vanished")
            assert [e["new_state"] for e in live] == ["suspect", "down", "down"]
            assert live[-1]["reason"] == "suspended" and live[-1]["outage_id"] is not None
            seen = live[-1]["id"]

            # Disconnected while the account comes back: nothing is lost.
            masto.set_state("alice", "present")
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP,
                           what="back up")
            async with http.get(url, headers={"Last-Event-ID": str(seen)}) as resp:
                missed = await read_events(resp, "recovered")
            assert [e["kind"] for e in missed] == ["transition", "recovered"]
            assert all(e["id"] > seen for e in missed)
            assert missed[-1]["outage_id"] == live[-1]["outage_id"]
            async with http.get(url, params={"last_event_id": "x"}) as resp:
                assert resp.status == 400


async def test_headers_and_the_retry_line_go_out_before_any_event(
        state_file: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing to replay and nothing happening: the stream still opens at once."""
    monkeypatch.setattr(web, "SSE_KEEPALIVE", 3600.0)  # no keepalive can stand in for it
    masto = FakeMastodon({"alice": "present"})
    async with masto.running() as base, running_monitor(mastodon_config(base, ["alice"],
                                               state_path=state_file)) as mon:
        await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="up")
        assert mon.store is not None
        latest = mon.store.transitions()[-1]["id"]
        url = f"http://127.0.0.1:{mon.port}/api/v1/events"
        async with aiohttp.ClientSession() as http:
            resp = await asyncio.wait_for(
                http.get(url, headers={"Last-Event-ID": str(latest)}), timeout=5)
            async with resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/event-stream")
                assert resp.headers["Cache-Control"] == "no-cache"
                first = await asyncio.wait_for(resp.content.readline(), timeout=5)
                assert (first, await resp.content.readline()) == (b"retry: 5000\n", b"\n")


async def test_keepalive_comments_while_nothing_happens(
        state_file: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(web, "SSE_KEEPALIVE", 0.05)
    masto = FakeMastodon({"alice": "present"})
    async with masto.running() as base, running_monitor(mastodon_config(base, ["alice"],
                                               state_path=state_file)) as mon:
        await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="up")
        assert mon.store is not None
        latest = mon.store.transitions()[-1]["id"]
        url = f"http://127.0.0.1:{mon.port}/api/v1/events"
        async with aiohttp.ClientSession() as http, \
                http.get(url, headers={"Last-Event-ID": str(latest)}) as resp:
            lines = [await asyncio.wait_for(resp.content.readline(), timeout=5)
                     for _ in range(6)]
        assert lines[:2] == [b"retry: 5000\n", b"\n"]
        assert lines[2:] == [b": keepalive\n", b"\n"] * 2
