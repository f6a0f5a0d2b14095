"""Hostile answers through ``fetch`` and ``check``: every one is ``error(kind)``, none raises."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from monitor.config import PlatformConfig
from monitor.fakes.faults import Faults
from monitor.fakes.mastodon import FakeMastodon
from monitor.fakes.site import FakeSite
from monitor.model import ErrorKind, Observation, Result
from monitor.probes.base import ProbeError, Target, fetch
from monitor.probes.mastodon import MastodonProbe

CAP = 64 * 1024
TIMEOUT = 0.3


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def fake() -> FakeMastodon:
    return FakeMastodon({"alice": "present"})


@pytest.fixture
async def base_url(fake: FakeMastodon) -> AsyncIterator[str]:
    async with fake.running() as url:
        yield url


async def check(base_url: str, session: aiohttp.ClientSession) -> Observation:
    config = PlatformConfig.model_validate({"base_url": base_url})
    probe = MastodonProbe(config, session, timeout=TIMEOUT, max_body_bytes=CAP)
    return await probe.check(Target("alice"))


def free_closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_fetch_returns_status_body_and_final_url(
        base_url: str, session: aiohttp.ClientSession) -> None:
    url = f"{base_url}/api/v1/accounts/lookup?acct=nobody"
    answer = await fetch(session, "GET", url, {}, timeout=TIMEOUT, max_body_bytes=CAP)
    assert (answer.status, answer.body, answer.url) == (404, b'{"error":"Record not found"}', url)


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
async def test_huge_body_is_too_large(chunked: bool, fake: FakeMastodon, base_url: str,
                                      session: aiohttp.ClientSession) -> None:
    fake.set_faults(huge_body_rate=1.0, huge_body_chunked=chunked)
    obs = await check(base_url, session)
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.TOO_LARGE)
    cap_words = f"over the {CAP}-byte cap" if chunked else "bytes over the cap"
    assert cap_words in obs.evidence


async def test_body_just_over_the_cap_is_too_large_and_at_the_cap_is_read(
        base_url: str, session: aiohttp.ClientSession) -> None:
    url = f"{base_url}/api/v1/accounts/lookup?acct=alice"
    size = len((await fetch(session, "GET", url, {}, timeout=1, max_body_bytes=CAP)).body)
    answer = await fetch(session, "GET", url, {}, timeout=1, max_body_bytes=size)
    assert len(answer.body) == size
    with pytest.raises(ProbeError) as info:
        await fetch(session, "GET", url, {}, timeout=1, max_body_bytes=size - 1)
    assert info.value.kind is ErrorKind.TOO_LARGE


async def test_malformed_json_is_a_parse_error(
        fake: FakeMastodon, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.set_faults(malformed_rate=1.0)
    obs = await check(base_url, session)
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.PARSE, "HTTP 200, body is not JSON")


@pytest.mark.parametrize("faults", [Faults(latency=5.0), Faults(timeout_rate=1.0)],
                         ids=["slow", "hang"])
async def test_slow_or_hanging_server_is_a_timeout_within_the_bound(
        faults: Faults, fake: FakeMastodon, base_url: str,
        session: aiohttp.ClientSession) -> None:
    fake.set_faults(faults)
    started = time.monotonic()
    obs = await check(base_url, session)
    elapsed = time.monotonic() - started
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.TIMEOUT, f"no answer within {TIMEOUT:g}s")
    assert TIMEOUT <= elapsed < TIMEOUT + 0.5
    assert obs.latency == pytest.approx(elapsed, abs=0.05)


async def test_connection_reset_is_a_connection_error(
        fake: FakeMastodon, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.set_faults(reset_rate=1.0)
    obs = await check(base_url, session)
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.CONNECTION)


async def test_connection_refused_is_a_connection_error(session: aiohttp.ClientSession) -> None:
    obs = await check(f"http://127.0.0.1:{free_closed_port()}", session)
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.CONNECTION)


async def test_site_huge_chunked_page_is_too_large(session: aiohttp.ClientSession) -> None:
    site = FakeSite({"alice": "present"},
                    faults=Faults(huge_body_rate=1.0, huge_body_chunked=True))
    async with site.running() as url:
        with pytest.raises(ProbeError) as info:
            await fetch(session, "GET", f"{url}/alice", {}, timeout=1, max_body_bytes=CAP)
    assert info.value.kind is ErrorKind.TOO_LARGE


async def test_mixed_faults_never_look_like_absence(
        fake: FakeMastodon, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.set_faults(reset_rate=0.15, server_error_rate=0.15, rate_limit_rate=0.15,
                    huge_body_rate=0.15, malformed_rate=0.15, seed=7)
    results = [await check(base_url, session) for _ in range(40)]
    assert {o.result for o in results} == {Result.PRESENT, Result.ERROR}
    assert {o.error for o in results} >= {ErrorKind.CONNECTION, ErrorKind.SERVER_ERROR,
                                          ErrorKind.RATE_LIMITED, ErrorKind.TOO_LARGE,
                                          ErrorKind.PARSE}


async def test_same_seed_gives_the_same_fault_sequence(session: aiohttp.ClientSession) -> None:
    sequences = []
    for _ in range(2):
        fake = FakeMastodon({"alice": "present"}, seed=11,
                            faults=Faults(server_error_rate=0.3, rate_limit_rate=0.3))
        async with fake.running() as url:
            sequences.append([(await check(url, session)).error for _ in range(20)])
    assert sequences[0] == sequences[1]
    assert set(sequences[0]) == {None, ErrorKind.SERVER_ERROR, ErrorKind.RATE_LIMITED}


@pytest.mark.parametrize("bad", [{"reset_rate": 1.5}, {"reset_rate": 0.6, "timeout_rate": 0.6},
                                 {"latency": -1}])
def test_impossible_fault_profiles_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Faults(**bad)


async def test_fake_shuts_down_quickly_while_a_patient_client_waits(
        session: aiohttp.ClientSession) -> None:
    fake = FakeMastodon({"alice": "present"}, faults=Faults(timeout_rate=1.0))
    async with fake.running() as url:
        patient = asyncio.create_task(fetch(session, "GET", f"{url}/api/v1/accounts/0", {},
                                            timeout=10, max_body_bytes=CAP))
        await asyncio.sleep(0.2)  # the request is now hanging inside the fake
        assert not patient.done()
        started = time.monotonic()
    assert time.monotonic() - started < 0.5
    answer = await asyncio.wait_for(patient, 1)
    assert answer.status == 404  # the hang ends early; the real answer follows
