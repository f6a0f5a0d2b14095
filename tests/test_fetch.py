"""Hostile answers through ``fetch`` and ``check``: every one is ``error(kind)``, none raises.

The per-probe contract over every hostile answer is tests/test_hostile_answers.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from monitor.config import PlatformConfig
from monitor.fakes.faults import LOGIN_PAGE, LOGIN_PATH, NON_UTF8_JSON, Faults, gzip_bomb
from monitor.fakes.mastodon import FakeMastodon
from monitor.fakes.site import FakeSite
from monitor.model import ErrorKind, Observation, Result
from monitor.probes.base import (
    MAX_JSON_DEPTH,
    MAX_REDIRECTS,
    Answer,
    ProbeError,
    Target,
    fetch,
    parse_json,
)
from monitor.probes.mastodon import MastodonProbe
from tests.conftest import wait_for

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
        await wait_for(lambda: fake.requests_total == 1, what="the request inside the fake")
        assert not patient.done()  # it hangs there
        started = time.monotonic()
    assert time.monotonic() - started < 0.5
    answer = await asyncio.wait_for(patient, 1)
    assert answer.status == 404  # the hang ends early; the real answer follows


# --------------------------------------------------------------------------- redirects


async def test_same_host_redirects_are_followed_to_the_final_url(
        session: aiohttp.ClientSession) -> None:
    site = FakeSite({"alice": "present"})
    site.set_answer("old", 301, headers={"Location": "/older"})
    site.set_answer("older", 308, headers={"Location": "alice"})  # relative to the path
    async with site.running() as url:
        answer = await fetch(session, "GET", f"{url}/old", {}, timeout=1, max_body_bytes=CAP)
    assert (answer.status, answer.url) == (200, f"{url}/alice")
    assert b"profile-name" in answer.body


async def test_more_than_three_same_host_hops_is_a_redirect_error(
        session: aiohttp.ClientSession) -> None:
    site = FakeSite({"alice": "present"})
    for hop in range(MAX_REDIRECTS + 1):
        site.set_answer(f"hop{hop}", 302, headers={"Location": f"/hop{hop + 1}"})
    site.set_answer(f"hop{MAX_REDIRECTS + 1}", 302, headers={"Location": "/alice"})
    async with site.running() as url:
        with pytest.raises(ProbeError) as info:
            await fetch(session, "GET", f"{url}/hop0", {}, timeout=1, max_body_bytes=CAP)
        assert (info.value.kind, info.value.evidence) == (
            ErrorKind.REDIRECT, f"more than {MAX_REDIRECTS} redirects")
        # Three hops are still fine.
        answer = await fetch(session, "GET", f"{url}/hop2", {}, timeout=1, max_body_bytes=CAP)
        assert answer.url == f"{url}/alice"


async def test_redirect_loop_is_a_redirect_error(session: aiohttp.ClientSession) -> None:
    site = FakeSite()
    site.set_answer("a", 302, headers={"Location": "/b"})
    site.set_answer("b", 307, headers={"Location": "/a"})
    async with site.running() as url:
        with pytest.raises(ProbeError) as info:
            await fetch(session, "GET", f"{url}/a", {}, timeout=1, max_body_bytes=CAP)
    assert (info.value.kind, info.value.evidence) == (ErrorKind.REDIRECT,
                                                      "HTTP 307 redirect loop")


@pytest.mark.parametrize(("location", "where"), [
    ("http://elsewhere.invalid/alice?key=sekrit", "elsewhere.invalid:80"),
    ("//elsewhere.invalid:8443/alice?key=sekrit", "elsewhere.invalid:8443"),
    ("https://{host}/alice?key=sekrit", "{host}:443"),  # same host, other scheme and port
    ("javascript:alert('key=sekrit')", "a non-HTTP address"),
])
async def test_redirect_to_another_origin_is_not_followed(
        location: str, where: str, session: aiohttp.ClientSession) -> None:
    site = FakeSite({"alice": "present"})
    async with site.running() as url:
        host = url.removeprefix("http://").rpartition(":")[0]
        site.set_answer("bob", 302, headers={"Location": location.format(host=host)})
        with pytest.raises(ProbeError) as info:
            await fetch(session, "GET", f"{url}/bob", {}, timeout=1, max_body_bytes=CAP)
    assert (info.value.kind, info.value.evidence) == (
        ErrorKind.REDIRECT, f"HTTP 302 redirect to another host ({where.format(host=host)})")


async def test_cross_host_redirect_sends_nothing_to_the_other_host(
        session: aiohttp.ClientSession) -> None:
    """The other host would get our Authorization header: it must not be asked at all."""
    fake = FakeMastodon({"alice": "present"}, faults=Faults(cross_host_rate=1.0))
    async with fake.running() as url:
        with pytest.raises(ProbeError) as info:
            await fetch(session, "GET", f"{url}/api/v1/accounts/lookup?acct=alice",
                        {"Authorization": "Bearer sekrit"}, timeout=1, max_body_bytes=CAP)
        elsewhere = await fake.elsewhere_url()
        # The elsewhere server does answer, plainly, when asked directly.
        direct = await fetch(session, "GET", f"{elsewhere}/api/v1/accounts/lookup?acct=alice",
                             {}, timeout=1, max_body_bytes=CAP)
    assert info.value.kind is ErrorKind.REDIRECT
    assert "sekrit" not in info.value.evidence and "acct" not in info.value.evidence
    assert direct.status == 200
    assert fake.elsewhere_requests == 1  # ours, above; none from the redirected fetch


async def test_login_wall_fault_lands_on_the_login_page_of_the_same_host(
        session: aiohttp.ClientSession) -> None:
    fake = FakeMastodon({"alice": "present"}, faults=Faults(login_wall_rate=1.0))
    async with fake.running() as url:
        answer = await fetch(session, "GET", f"{url}/api/v1/accounts/lookup?acct=alice", {},
                             timeout=1, max_body_bytes=CAP)
    assert answer.url.startswith(f"{url}{LOGIN_PATH}?next=")
    assert (answer.status, answer.body) == (200, LOGIN_PAGE.encode())


# --------------------------------------------------------------------------- hostile bodies


async def test_gzip_bomb_under_the_declared_cap_stops_at_the_cap_while_inflating(
        session: aiohttp.ClientSession) -> None:
    fake = FakeMastodon({"alice": "present"},
                        faults=Faults(gzip_bomb_rate=1.0, gzip_bomb_bytes=32 << 20))
    assert len(gzip_bomb(32 << 20)) < CAP  # on the wire it passes the Content-Length check
    async with fake.running() as url:
        with pytest.raises(ProbeError) as info:
            await fetch(session, "GET", f"{url}/api/v1/accounts/0", {}, timeout=2,
                        max_body_bytes=CAP)
    assert (info.value.kind, info.value.evidence) == (
        ErrorKind.TOO_LARGE, f"HTTP 200, decompressed body over the {CAP}-byte cap")


async def test_compressed_body_that_inflates_within_the_cap_is_read(
        session: aiohttp.ClientSession) -> None:
    fake = FakeMastodon({"alice": "present"},
                        faults=Faults(gzip_bomb_rate=1.0, gzip_bomb_bytes=CAP))
    async with fake.running() as url:
        answer = await fetch(session, "GET", f"{url}/api/v1/accounts/0", {}, timeout=2,
                             max_body_bytes=CAP)
    assert answer.body == bytes(CAP)


async def test_huge_header_line_is_too_large_and_not_echoed(
        session: aiohttp.ClientSession) -> None:
    fake = FakeMastodon({"alice": "present"}, faults=Faults(huge_headers_rate=1.0))
    async with fake.running() as url:
        with pytest.raises(ProbeError) as info:
            await fetch(session, "GET", f"{url}/api/v1/accounts/lookup?acct=alice", {},
                        timeout=1, max_body_bytes=CAP)
    assert (info.value.kind, info.value.evidence) == (
        ErrorKind.TOO_LARGE, "HTTP headers over the client's size limits")


async def test_slowloris_ends_at_the_overall_timeout(session: aiohttp.ClientSession) -> None:
    """Bytes keep coming, so no read ever times out: only the overall bound ends it."""
    fake = FakeMastodon({"alice": "present"},
                        faults=Faults(slowloris_rate=1.0, slowloris_interval=0.02))
    async with fake.running() as url:
        with pytest.raises(ProbeError) as info:
            await fetch(session, "GET", f"{url}/api/v1/accounts/0", {}, timeout=TIMEOUT,
                        max_body_bytes=CAP)
    assert (info.value.kind, info.value.evidence) == (
        ErrorKind.TIMEOUT, f"no answer within {TIMEOUT:g}s")


async def test_truncated_body_is_a_connection_error(session: aiohttp.ClientSession) -> None:
    fake = FakeMastodon({"alice": "present"}, faults=Faults(truncated_rate=1.0))
    async with fake.running() as url:
        with pytest.raises(ProbeError) as info:
            await fetch(session, "GET", f"{url}/api/v1/accounts/0", {}, timeout=1,
                        max_body_bytes=CAP)
    assert info.value.kind is ErrorKind.CONNECTION


# --------------------------------------------------------------------------- JSON


def test_json_nested_to_the_limit_parses_and_one_deeper_is_a_parse_error() -> None:
    at_limit = b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH
    assert parse_json(at_limit, 200) is not None
    deeper = b'{"a":' * (MAX_JSON_DEPTH + 1) + b"1" + b"}" * (MAX_JSON_DEPTH + 1)
    with pytest.raises(ProbeError) as info:
        parse_json(deeper, 200)
    assert (info.value.kind, info.value.evidence) == (
        ErrorKind.PARSE, f"HTTP 200, JSON nested deeper than {MAX_JSON_DEPTH} levels")


@pytest.mark.parametrize("body", [
    b"[" * 200_000 + b"]" * 200_000,  # RecursionError in json.loads without the guard
    b"[" * 1_000_000,  # never closed
    b'{"a":' * 5000 + b'"deep"' + b"}" * 5000,
])
def test_deeply_nested_json_is_a_parse_error_not_a_recursion_error(body: bytes) -> None:
    with pytest.raises(ProbeError) as info:
        Answer(200, {}, body).json()
    assert info.value.kind is ErrorKind.PARSE


def test_brackets_inside_strings_are_not_nesting() -> None:
    text = '"[[[{{{\\"]]]' * 500
    doc = {"name": text, "items": [{"id": i} for i in range(300)]}  # 300 shallow objects
    assert Answer(200, {}, json.dumps(doc).encode()).json() == doc


@pytest.mark.parametrize("body", [NON_UTF8_JSON, b"\xff\xfe\x00{", b'{"a":"\xed\xa0\x80"}'])
def test_body_that_is_not_utf8_is_a_parse_error(body: bytes) -> None:
    with pytest.raises(ProbeError) as info:
        Answer(200, {}, body).json()
    assert (info.value.kind, info.value.evidence) == (ErrorKind.PARSE,
                                                      "HTTP 200, body is not JSON")


def test_a_lone_surrogate_escape_is_a_parse_error_and_a_pair_is_text() -> None:
    """json.loads would return a str that SQLite and UTF-8 logs refuse to encode."""
    with pytest.raises(ProbeError) as info:
        Answer(200, {}, b'{"acct":"alice\\udc00"}').json()
    assert info.value.evidence == "HTTP 200, JSON has a lone surrogate escape"
    assert Answer(200, {}, b'{"name":"\\ud83d\\ude00"}').json() == {"name": "\U0001f600"}
