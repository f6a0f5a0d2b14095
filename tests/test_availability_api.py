"""GET /api/v1/availability through a running monitor on loopback: the same figures as
monitor.reports from the same state file, filters, strict parameters, and the read token."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor import reports
from monitor.app import Monitor
from monitor.config import load_config
from monitor.fakes.mastodon import FakeMastodon
from monitor.model import AccountKey, State
from tests.conftest import mastodon_config, probed_again, state_of, wait_for

READ = "read-T0ken-availability-51c2"
ALICE, CAROL = AccountKey("masto", "alice"), AccountKey("masto", "carol")


@pytest.fixture
async def monitor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Monitor]:
    """alice up, carol gone (one open outage); reads need the read token."""
    for name in ("ACCMON_WRITE_TOKEN", "ACCMON_WRITE_TOKEN_FILE", "ACCMON_READ_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ACCMON_READ_TOKEN", READ)
    masto = FakeMastodon({"alice": "present", "carol": "gone"})
    async with masto.running() as base:
        cfg = tmp_path / "monitor.yaml"
        cfg.write_text(mastodon_config(base, ["alice", "carol"],
                                       state_path=str(tmp_path / "state.db")))
        mon = Monitor(load_config(cfg), config_path=str(cfg))
        await mon.start()
        try:
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP
                           and state_of(mon, "masto", "carol") is State.DOWN,
                           what="alice up, carol down")
            yield mon
        finally:
            await mon.stop()


async def get(mon: Monitor, query: str = "", token: str | None = READ) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.get(
            f"http://127.0.0.1:{mon.port}/api/v1/availability{query}",
            headers=headers) as resp:
        return resp.status, await resp.json()


async def test_every_account_and_platform_with_bounds_and_text(monitor: Monitor) -> None:
    await probed_again(monitor, ["carol"])  # absent sightings after the confirmation
    status, body = await get(monitor)
    assert status == 200
    assert list(body["windows"]) == ["24h", "7d", "30d", "90d"]
    assert [(r["platform"], r["handle"]) for r in body["accounts"]] == [
        ("masto", "alice"), ("masto", "carol")]
    alice, carol = (r["availability"] for r in body["accounts"])
    # alice was up all along while watched: both bounds 100 %
    assert (alice["24h"]["lower"], alice["24h"]["upper"], alice["24h"]["text"]) == (
        1.0, 1.0, "100%")
    # carol is gone: certainly from her first absent sighting to her latest one (the live
    # view's, newer than the row's confirmation), possibly since her first answer
    figures = carol["24h"]
    assert 0 < figures["certainly_down"] <= figures["possibly_down"] <= figures["observed"]
    assert figures["lower"] <= figures["upper"] < 1.0
    assert figures["text"] == f"{figures['lower_text']} to {figures['upper_text']}"
    assert figures["outages"] == 1
    (outage,) = monitor.store.outages(open_only=True) if monitor.store else []
    live = monitor.accounts[CAROL].state.last_absent_at
    assert live is not None and live > outage.confirmed_at
    assert figures["certainly_down"] > outage.confirmed_at - outage.first_seen_absent_at
    (masto,) = body["platforms"]
    assert masto["platform"] == "masto"
    assert masto["availability"]["24h"]["possibly_down"] == pytest.approx(
        figures["possibly_down"] + alice["24h"]["possibly_down"])
    assert masto["availability"]["24h"]["observed"] == pytest.approx(
        figures["observed"] + alice["24h"]["observed"])


async def test_the_answer_is_the_report_of_the_state_file(monitor: Monitor) -> None:
    """What the endpoint serves is monitor.reports on the same file, at its ``end``, with
    the live absent sightings; alice's figures do not move while she stays up."""
    status, body = await get(monitor, "?account=alice")
    assert status == 200
    assert monitor.store is not None
    assert body == reports.availability(monitor.store, [ALICE], body["end"])


async def test_filters_narrow_the_accounts_and_the_windows(monitor: Monitor) -> None:
    status, body = await get(monitor, "?platform=masto&account=carol&window=7d")
    assert status == 200
    assert [r["handle"] for r in body["accounts"]] == ["carol"]
    assert list(body["accounts"][0]["availability"]) == ["7d"]
    assert list(body["platforms"][0]["availability"]) == ["7d"]
    assert body["windows"] == {"7d": 7 * 86_400.0}


async def test_a_filter_matching_nothing_is_a_404_saying_so(monitor: Monitor) -> None:
    status, body = await get(monitor, "?platform=masto&account=nobody")
    assert status == 404
    assert body == {"error": "no watched account matches platform='masto' and "
                             "account='nobody'"}


@pytest.mark.parametrize(("query", "parameter"), [
    ("?window=1y", "window"),
    ("?window=24h&window=7d", "window"),
    ("?limit=5", "limit"),
    ("?account=" + "a" * 201, "account"),
    ("?platform=%0a", "platform"),
])
async def test_a_bad_parameter_is_a_400_naming_it(monitor: Monitor, query: str,
                                                  parameter: str) -> None:
    status, body = await get(monitor, query)
    assert status == 400
    assert body["parameter"] == parameter


async def test_reads_need_the_read_token(monitor: Monitor) -> None:
    status, body = await get(monitor, token=None)
    assert status == 401
    status, _ = await get(monitor, token="not-" + READ)
    assert status == 401
    assert READ not in str(body)
