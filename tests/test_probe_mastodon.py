"""The Mastodon probe against the fake instance (real loopback HTTP) and as a pure function."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from monitor.config import PlatformConfig
from monitor.fakes.mastodon import FakeMastodon
from monitor.model import AbsentReason, ErrorKind, Observation, Result
from monitor.probes.base import Answer, Target
from monitor.probes.mastodon import MastodonProbe, classify_account

AT = 1_700_000_000.0


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def fake() -> FakeMastodon:
    return FakeMastodon({"alice": "present", "bob": "suspended", "carol": "moved",
                         "dan": "gone", "eve": "limited"})


@pytest.fixture
async def base_url(fake: FakeMastodon) -> AsyncIterator[str]:
    async with fake.running() as url:
        yield url


def make_probe(base_url: str, session: aiohttp.ClientSession, **platform: object) -> MastodonProbe:
    config = PlatformConfig.model_validate({"base_url": base_url, **platform})
    return MastodonProbe(config, session, timeout=2.0, max_body_bytes=1 << 20)


async def check(base_url: str, session: aiohttp.ClientSession, handle: str,
                account_id: str | None = None) -> Observation:
    return await make_probe(base_url, session).check(Target(handle, account_id))


# --------------------------------------------------------------------------- every state


async def test_present_account_is_present_with_its_id(
        fake: FakeMastodon, base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, "alice")
    account_id = fake.account_id("alice")
    assert (obs.result, obs.reason, obs.error) == (Result.PRESENT, None, None)
    assert obs.account_id == account_id
    assert obs.handle == "alice"
    assert obs.evidence == f"HTTP 200 id={account_id}"
    assert obs.latency > 0


async def test_suspended_account_is_absent_suspended(
        fake: FakeMastodon, base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, "bob")
    assert (obs.result, obs.reason) == (Result.ABSENT, AbsentReason.SUSPENDED)
    assert obs.account_id == fake.account_id("bob")
    assert obs.evidence == f"HTTP 200 id={fake.account_id('bob')} suspended"


@pytest.mark.parametrize("handle", ["dan", "nobody"])
async def test_gone_or_unknown_account_is_absent_not_found(
        handle: str, base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, handle)
    assert (obs.result, obs.reason) == (Result.ABSENT, AbsentReason.NOT_FOUND)
    assert obs.evidence == "HTTP 404 Record not found"


async def test_moved_account_is_present_and_names_its_new_home(
        base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, "carol")
    assert obs.result is Result.PRESENT
    assert obs.evidence.endswith(", moved to carol@moved.example")


async def test_limited_account_is_present(base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, "eve")
    assert obs.result is Result.PRESENT
    assert obs.evidence.endswith(", limited")


async def test_lookup_accepts_at_prefix_and_local_domain(
        fake: FakeMastodon, base_url: str, session: aiohttp.ClientSession) -> None:
    for handle in ("@alice", "alice@mastodon.example", "ALICE"):
        obs = await check(base_url, session, handle)
        assert (obs.result, obs.account_id) == (Result.PRESENT, fake.account_id("alice")), handle


async def test_known_id_is_polled_by_id_not_by_handle(
        fake: FakeMastodon, base_url: str, session: aiohttp.ClientSession) -> None:
    probe = make_probe(base_url, session)
    method, url, _ = probe.request(Target("alice", fake.account_id("alice")))
    assert (method, url) == ("GET", f"{base_url}/api/v1/accounts/{fake.account_id('alice')}")
    fake.set_state("alice", "suspended")
    obs = await probe.check(Target("renamed-in-config", fake.account_id("alice")))
    assert (obs.result, obs.reason, obs.handle) == (Result.ABSENT, AbsentReason.SUSPENDED, "alice")
    assert fake.request_count("alice") == 1


async def test_unknown_id_is_absent_not_found(
        base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, "alice", account_id="1")
    assert (obs.result, obs.reason) == (Result.ABSENT, AbsentReason.NOT_FOUND)


async def test_old_server_410_gone_is_absent_suspended(session: aiohttp.ClientSession) -> None:
    fake = FakeMastodon({"bob": "suspended"}, legacy_suspended=True)
    async with fake.running() as url:
        obs = await check(url, session, "bob", account_id=fake.account_id("bob"))
    assert (obs.result, obs.reason, obs.evidence) == (
        Result.ABSENT, AbsentReason.SUSPENDED, "HTTP 410 Gone")


async def test_state_changes_keep_the_same_id(
        fake: FakeMastodon, base_url: str, session: aiohttp.ClientSession) -> None:
    first = await check(base_url, session, "alice")
    fake.set_state("alice", "suspended")
    second = await check(base_url, session, "alice")
    fake.set_state("alice", "present")
    third = await check(base_url, session, "alice")
    assert [o.result for o in (first, second, third)] == [
        Result.PRESENT, Result.ABSENT, Result.PRESENT]
    assert first.account_id == second.account_id == third.account_id


# --------------------------------------------------------------------------- errors


async def test_rate_limited_answer_is_an_error(
        fake: FakeMastodon, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.set_faults(rate_limit_rate=1.0)
    obs = await check(base_url, session, "dan")
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.RATE_LIMITED)
    assert obs.evidence == "HTTP 429: Too many requests"


async def test_remote_fetch_failure_is_a_server_error_not_absence(
        fake: FakeMastodon, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.set_faults(server_error_rate=1.0)
    obs = await check(base_url, session, "dan")
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.SERVER_ERROR)
    assert obs.evidence == "HTTP 503: Remote data could not be fetched"


async def test_limited_federation_401_is_an_auth_error_and_a_token_passes(
        session: aiohttp.ClientSession) -> None:
    fake = FakeMastodon({"alice": "present"}, require_auth=True)
    async with fake.running() as url:
        anonymous = await make_probe(url, session).check(Target("alice"))
        with_token = await make_probe(url, session, token="s3cret").check(Target("alice"))
    assert (anonymous.result, anonymous.error) == (Result.ERROR, ErrorKind.AUTH)
    assert anonymous.evidence == "HTTP 401: This API requires an authenticated user"
    assert with_token.result is Result.PRESENT


async def test_every_answer_carries_mastodon_rate_limit_headers(
        fake: FakeMastodon, base_url: str, session: aiohttp.ClientSession) -> None:
    url = f"{base_url}/api/v1/accounts/lookup?acct=alice"
    async with session.get(url) as first, session.get(url) as second:
        remaining = [int(r.headers["X-RateLimit-Remaining"]) for r in (first, second)]
        assert first.headers["X-RateLimit-Limit"] == "300"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000000Z",
                            first.headers["X-RateLimit-Reset"])
    assert remaining[1] == remaining[0] - 1
    fake.set_faults(rate_limit_rate=1.0)
    async with session.get(url) as limited:
        assert limited.status == 429
        assert limited.headers["X-RateLimit-Remaining"] == "0"
        assert await limited.read() == b'{"error":"Too many requests"}'


# --------------------------------------------------------------------------- pure classify


def answer(status: int, body: bytes) -> Answer:
    return Answer(status, {"Content-Type": "application/json; charset=utf-8"}, body)


@pytest.mark.parametrize(("status", "body", "kind", "evidence"), [
    (200, b"<html>maintenance</html>", ErrorKind.PARSE, "HTTP 200, body is not JSON"),
    (200, b'{"username":"alice"}', ErrorKind.PARSE, "HTTP 200, no Account entity (no id)"),
    (200, b'[{"id":"1"}]', ErrorKind.PARSE, "HTTP 200, no Account entity (no id)"),
    (404, b"<html>nginx</html>", ErrorKind.UNEXPECTED,
     "HTTP 404 without Mastodon's 'Record not found' body"),
    (403, b'{"error":"This action is not allowed"}', ErrorKind.AUTH,
     "HTTP 403: This action is not allowed"),
    (500, b"oops", ErrorKind.SERVER_ERROR, "HTTP 500"),
    (502, b'{"error":"Bad gateway"}', ErrorKind.SERVER_ERROR, "HTTP 502: Bad gateway"),
    (418, b"{}", ErrorKind.UNEXPECTED, "HTTP 418"),
])
def test_classify_errors(status: int, body: bytes, kind: ErrorKind, evidence: str) -> None:
    obs = classify_account(answer(status, body), AT)
    assert (obs.result, obs.error, obs.evidence, obs.at) == (Result.ERROR, kind, evidence, AT)


def test_classify_numeric_id_and_suspended_flag() -> None:
    obs = classify_account(answer(200, b'{"id":7,"acct":"x","suspended":true}'), AT)
    assert (obs.result, obs.reason, obs.account_id, obs.handle) == (
        Result.ABSENT, AbsentReason.SUSPENDED, "7", "x")


def test_classify_suspended_false_is_present() -> None:
    obs = classify_account(answer(200, b'{"id":"7","acct":"x","suspended":false}'), AT)
    assert obs.result is Result.PRESENT


def test_classify_410_is_absent_suspended() -> None:
    obs = classify_account(answer(410, b'{"error":"Gone"}'), AT)
    assert (obs.result, obs.reason) == (Result.ABSENT, AbsentReason.SUSPENDED)


# --------------------------------------------------------------------------- control


async def test_http_control_changes_state_and_faults(
        fake: FakeMastodon, base_url: str, session: aiohttp.ClientSession) -> None:
    async with session.post(f"{base_url}/_control/accounts/alice",
                            json={"state": "suspended"}) as resp:
        assert resp.status == 200
        assert (await resp.json())["id"] == fake.account_id("alice")
    assert (await check(base_url, session, "alice")).reason is AbsentReason.SUSPENDED
    async with session.post(f"{base_url}/_control/accounts/alice", json={"state": "x"}) as bad:
        assert bad.status == 400
    async with session.post(f"{base_url}/_control/faults", json={"bogus_rate": 1}) as bad:
        assert bad.status == 400
        assert "bogus_rate" in (await bad.json())["error"]
    async with session.post(f"{base_url}/_control/faults",
                            json={"server_error_rate": 1.0}) as resp:
        assert resp.status == 200
    assert (await check(base_url, session, "alice")).error is ErrorKind.SERVER_ERROR
    async with session.get(f"{base_url}/_control/stats") as resp:
        stats = await resp.json()
    assert stats["requests"] == {"alice": 2}
    assert stats["faults_injected"] == {"server_error": 1}
    assert stats["accounts"]["alice"] == "suspended"
    assert fake.request_count("alice") == 2


@pytest.mark.slow
async def test_fake_runs_as_a_separate_process(session: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.fakes.mastodon", "--port", "0",
        "--account", "alice=present", "--account", "bob=suspended",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        url = line.decode().strip()
        assert url.startswith("http://127.0.0.1:")
        assert (await check(url, session, "alice")).result is Result.PRESENT
        assert (await check(url, session, "bob")).reason is AbsentReason.SUSPENDED
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 10)
    assert code == 0, (await proc.stderr.read()).decode() if proc.stderr else ""
