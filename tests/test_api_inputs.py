"""The HTTP API's inputs: every query parameter bounds-checked, Last-Event-ID parsed safely,
reload authenticated by exactly ``Authorization: Bearer <token>``.

A bad input is a 400 (401 for reload) with a JSON body naming what was wrong and what is
allowed, answered before anything else happens; never a traceback, never a stream that
breaks after its 200, never SQLite's ``LIMIT -1`` ("every row").
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from monitor.app import Monitor
from monitor.config import load_config
from monitor.fakes.mastodon import FakeMastodon
from monitor.model import State
from tests.conftest import mastodon_config, state_of, wait_for

TOKEN = "reload-T0ken-4f9a"


@pytest.fixture
async def monitor(tmp_path: Path) -> AsyncIterator[Monitor]:
    """alice up; carol and dave down (two outages); dave not protected; reload enabled."""
    masto = FakeMastodon({"alice": "present", "carol": "gone", "dave": "gone"})
    async with masto.running() as base:
        cfg = tmp_path / "monitor.yaml"
        text = mastodon_config(base, ["alice", "carol", "dave"],
                               state_path=str(tmp_path / "state.db"))
        cfg.write_text(text.replace("handle: dave\n    protected: true",
                                    "handle: dave\n    protected: false"))
        mon = Monitor(load_config(cfg), config_path=str(cfg), reload_token=TOKEN)
        await mon.start()
        try:
            await wait_for(lambda: all(state_of(mon, "masto", h) is s for h, s in (
                ("alice", State.UP), ("carol", State.DOWN), ("dave", State.DOWN))),
                what="alice up, carol and dave down")
            yield mon
        finally:
            await mon.stop()


async def get(mon: Monitor, path: str, **kwargs: Any) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, \
            http.get(f"http://127.0.0.1:{mon.port}{path}", **kwargs) as resp:
        body = await resp.json() if resp.content_type == "application/json" else None
        return resp.status, body


@pytest.fixture
def no_handler_errors(caplog: pytest.LogCaptureFixture) -> Any:
    """Fails the test when aiohttp logged an exception from a handler (a traceback)."""
    caplog.set_level(logging.ERROR, logger="aiohttp")
    yield
    crashes = [r for r in caplog.records if r.name.startswith("aiohttp") and r.exc_info]
    assert crashes == [], [r.getMessage() for r in crashes]


BAD_QUERIES = [
    # (path, parameter named in the answer, words of the allowed range)
    ("/api/v1/outages?limit=-1", "limit", "an integer from 1 to 1000"),
    ("/api/v1/outages?limit=0", "limit", "from 1 to 1000"),
    ("/api/v1/outages?limit=1001", "limit", "from 1 to 1000"),
    ("/api/v1/outages?limit=99999999999999999999999", "limit", "from 1 to 1000"),
    ("/api/v1/outages?limit=x", "limit", "an integer"),
    ("/api/v1/outages?limit=1.5", "limit", "an integer"),
    ("/api/v1/outages?limit=1_0", "limit", "an integer"),
    ("/api/v1/outages?limit=", "limit", "an integer"),
    ("/api/v1/outages?limit=1&limit=2", "limit", "at most once"),
    ("/api/v1/outages?open=yes", "open", "true or false"),
    ("/api/v1/outages?open=TRUE", "open", "true or false"),
    ("/api/v1/outages?account=", "account", "1 to 200 printable characters"),
    ("/api/v1/outages?account=" + "a" * 201, "account", "1 to 200"),
    ("/api/v1/outages?platform=ma%00sto", "platform", "printable"),
    ("/api/v1/outages?limt=5", "limt", "one of: platform, account, open, limit"),
    ("/api/v1/accounts?state=gone", "state", "one of: down, suspect, unknown, up"),
    ("/api/v1/accounts?platform=mastodon", "platform", "one of: masto"),
    ("/api/v1/accounts?protected=1", "protected", "true or false"),
    ("/api/v1/accounts?handle=alice", "handle", "one of: platform, state, protected"),
    ("/api/v1/events?last_event_id=-1", "last_event_id", "from 0 to 9223372036854775807"),
    ("/api/v1/events?since=3", "since", "one of: last_event_id"),
]


@pytest.mark.parametrize(("path", "parameter", "allowed"), BAD_QUERIES)
async def test_a_bad_query_parameter_is_a_400_naming_it_and_its_range(
        monitor: Monitor, no_handler_errors: None, path: str, parameter: str,
        allowed: str) -> None:
    status, body = await get(monitor, path)
    assert status == 400, (path, body)
    assert body["error"] == "invalid parameter"
    assert body["parameter"] == parameter
    assert allowed in body["allowed"], body


async def test_good_query_parameters_filter_as_documented(
        monitor: Monitor, no_handler_errors: None) -> None:
    def handles(body: Any, key: str = "outages") -> list[str]:
        return sorted(row["account"] for row in body[key])

    assert handles((await get(monitor, "/api/v1/outages"))[1]) == ["carol", "dave"]
    status, body = await get(monitor, "/api/v1/outages?limit=1")
    assert status == 200 and len(body["outages"]) == 1  # not LIMIT -1's "every row"
    assert handles((await get(monitor, "/api/v1/outages?limit=1000&open=true"))[1]) == [
        "carol", "dave"]
    assert handles((await get(monitor, "/api/v1/outages?open=false"))[1]) == ["carol", "dave"]
    assert handles((await get(monitor, "/api/v1/outages?account=carol"))[1]) == ["carol"]
    # History outlives the config: any platform name may be asked about.
    assert (await get(monitor, "/api/v1/outages?platform=removed-since"))[1] == {"outages": []}

    accounts = "/api/v1/accounts"
    assert handles((await get(monitor, f"{accounts}?protected=false"))[1], "accounts") == [
        "dave"]
    assert handles((await get(monitor, f"{accounts}?protected=true&state=down"))[1],
                   "accounts") == ["carol"]
    assert handles((await get(monitor, f"{accounts}?platform=masto&state=up"))[1],
                   "accounts") == ["alice"]


@pytest.mark.parametrize("value", [
    "99999999999999999999999",  # raised OverflowError in SQLite after the 200 was sent
    "9223372036854775808",  # 2**63: one past SQLite's largest INTEGER
    "-1", "+1", "1_0", " 1x", "abc", "1e3",
])
async def test_a_bad_last_event_id_is_a_400_before_the_stream_starts(
        monitor: Monitor, no_handler_errors: None, value: str) -> None:
    status, body = await get(monitor, "/api/v1/events", headers={"Last-Event-ID": value})
    assert status == 400, value
    assert body["parameter"] == "Last-Event-ID"
    assert body["allowed"] == "an event id: an integer from 0 to 9223372036854775807"
    assert (await get(monitor, "/healthz"))[0] == 200


async def test_the_largest_last_event_id_opens_an_empty_stream(
        monitor: Monitor, no_handler_errors: None) -> None:
    url = f"http://127.0.0.1:{monitor.port}/api/v1/events"
    async with aiohttp.ClientSession() as http, \
            http.get(url, headers={"Last-Event-ID": str(2**63 - 1)}) as resp:
        assert resp.status == 200
        assert await resp.content.readline() == b"retry: 5000\n"


async def _reload(mon: Monitor, headers: CIMultiDict[str]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, \
            http.post(f"http://127.0.0.1:{mon.port}/-/reload", headers=headers) as resp:
        return resp.status, await resp.json()


@pytest.mark.parametrize("authorization", [
    [TOKEN],  # the bare token, once accepted
    [f"bearer {TOKEN}"], [f"BEARER {TOKEN}"],  # the scheme is spelt "Bearer"
    [f"Bearer  {TOKEN}"],  # one space
    [f"Bearer\t{TOKEN}"],
    [f"Basic {TOKEN}"], [f"Token {TOKEN}"],
    [f"Bearer {TOKEN}x"], [f"Bearer {TOKEN[:-1]}"], ["Bearer "], ["Bearer"], [""],
    [f"Bearer {TOKEN}", f"Bearer {TOKEN}"],  # one header, not two
    [],
])
async def test_reload_takes_exactly_a_bearer_token(
        monitor: Monitor, no_handler_errors: None, authorization: list[str]) -> None:
    headers: CIMultiDict[str] = CIMultiDict(("Authorization", v) for v in authorization)
    status, body = await _reload(monitor, headers)
    assert status == 401, authorization
    assert body == {"status": "unauthorized",
                    "error": "send exactly 'Authorization: Bearer <token>'"}
    assert TOKEN not in str(body)


async def test_reload_with_the_bearer_token_reloads(monitor: Monitor) -> None:
    status, body = await _reload(monitor, CIMultiDict(Authorization=f"Bearer {TOKEN}"))
    assert (status, body) == (200, {"status": "reloaded", "accounts": 3})
