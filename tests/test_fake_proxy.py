"""VantagePath: one vantage's loopback path to a platform fake, read by the real probes.

Every test runs a real FakeMastodon or FakeX upstream, a real VantagePath in front of it and
the real probe of monitor/probes over aiohttp: what the path does must be what the probe
would see from a vantage behind a stale CDN edge, a broken gateway or a dropping middlebox.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import signal
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from monitor.config import PlatformConfig
from monitor.fakes.mastodon import FakeMastodon
from monitor.fakes.proxy import Mode, VantagePath, mastodon_not_found, x_not_found
from monitor.fakes.server import serve
from monitor.fakes.x import TOKEN, FakeX
from monitor.model import AbsentReason, ErrorKind, Observation, Result
from monitor.probes.base import Target
from monitor.probes.mastodon import MastodonProbe
from monitor.probes.x import XProbe
from tests.conftest import HOSTILE, RefusedPort, deadline, wait_for

ALICE_X = "2244994945"
BOB_X = "25073877"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def masto() -> FakeMastodon:
    return FakeMastodon({"alice": "present", "bob": "present", "dan": "gone"})


@pytest.fixture
def x() -> FakeX:
    return FakeX({"alice": (ALICE_X, "present"), "bob": (BOB_X, "present"),
                  "quitter": "deleted"})


@contextlib.asynccontextmanager
async def vantage(upstream: FakeMastodon | FakeX,
                  **options: object) -> AsyncIterator[tuple[VantagePath, str, str]]:
    """The fake served, a path in front of it: (path, path's base URL, fake's base URL)."""
    answers = mastodon_not_found() if isinstance(upstream, FakeMastodon) else x_not_found()
    async with upstream.running() as direct:
        path = VantagePath(direct, answers, **options)  # type: ignore[arg-type]
        async with path.running() as url:
            yield path, url, direct


def masto_probe(base_url: str, session: aiohttp.ClientSession,
                timeout: float = 2.0) -> MastodonProbe:
    config = PlatformConfig.model_validate({"base_url": base_url})
    return MastodonProbe(config, session, timeout=timeout, max_body_bytes=1 << 20)


def x_probe(base_url: str, session: aiohttp.ClientSession, timeout: float = 2.0) -> XProbe:
    config = PlatformConfig.model_validate({"base_url": base_url, "token": TOKEN})
    return XProbe(config, session, timeout=timeout, max_body_bytes=1 << 20)


def verdict(obs: Observation) -> tuple[object, ...]:
    return obs.result, obs.reason, obs.error, obs.evidence, obs.account_id


# --------------------------------------------------------------------------- pass


async def test_pass_mastodon_is_what_the_fake_says_and_asks_it_once(
        masto: FakeMastodon, session: aiohttp.ClientSession) -> None:
    async with vantage(masto) as (path, url, direct):
        through = await masto_probe(url, session).check(Target("alice"))
        straight = await masto_probe(direct, session).check(Target("alice"))
    assert through.result is Result.PRESENT
    assert verdict(through) == verdict(straight)
    assert through.rate_limit is not None and through.rate_limit.limit == 300
    assert masto.request_count("alice") == 2  # once through the path, once straight
    assert path.count("alice") == path.count("alice", mode="pass") == 1
    assert path.count(path="/api/v1/accounts/lookup") == 1


async def test_pass_x_is_what_the_fake_says(x: FakeX, session: aiohttp.ClientSession) -> None:
    async with vantage(x) as (path, url, direct):
        for target in (Target("alice"), Target("bob", BOB_X), Target("quitter")):
            through = await x_probe(url, session).check(target)
            straight = await x_probe(direct, session).check(target)
            assert verdict(through) == verdict(straight), target
    assert path.count("bob", mode=Mode.PASS) == 1


async def test_pass_keeps_status_headers_and_raw_bytes_and_follows_no_redirect(
        session: aiohttp.ClientSession) -> None:
    """429 with Retry-After, a redirect and a gzip body, through a plain upstream of ours:
    the path must hand each on as sent (a redirect not followed, gzip not undone)."""
    packed = gzip.compress(b'{"id":"1"}')
    asked: list[str] = []

    async def answer(request: web.Request) -> web.StreamResponse:
        asked.append(request.path_qs)
        if request.path == "/limited":
            return web.Response(status=429, text='{"error":"Too many requests"}',
                                headers={"Retry-After": "120", "X-RateLimit-Remaining": "0",
                                         "X-RateLimit-Reset": "2024-05-01T12:05:00.000000Z"})
        if request.path == "/moved":
            return web.Response(status=302, headers={"Location": "/elsewhere?x=1"})
        return web.Response(body=packed, headers={"Content-Encoding": "gzip",
                                                  "Content-Type": "application/json"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    with deadline(10.0):  # a body altered under its copied Content-Length hangs the reader
        async with serve(app, asyncio.Event()) as direct:
            path = VantagePath(direct)
            async with path.running() as url:
                async with session.get(url + "/limited") as resp:
                    assert resp.status == 429
                    assert resp.headers["Retry-After"] == "120"
                    assert resp.headers["X-RateLimit-Remaining"] == "0"
                    assert resp.headers["X-RateLimit-Reset"] == "2024-05-01T12:05:00.000000Z"
                    assert await resp.text() == '{"error":"Too many requests"}'
                async with session.get(url + "/moved", allow_redirects=False) as resp:
                    assert (resp.status, resp.headers["Location"]) == (302, "/elsewhere?x=1")
                async with session.get(url + "/data", auto_decompress=False) as resp:
                    assert resp.headers["Content-Encoding"] == "gzip"
                    assert await resp.read() == packed
    assert asked == ["/limited", "/moved", "/data"]  # the path followed nothing itself


async def test_pass_rate_limited_answers_reach_the_probe_with_their_budget(
        masto: FakeMastodon, x: FakeX, session: aiohttp.ClientSession) -> None:
    masto.set_faults(rate_limit_rate=1.0)
    x.set_faults(rate_limit_rate=1.0)
    async with vantage(masto) as (_, url, _direct):
        obs = await masto_probe(url, session).check(Target("alice"))
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.RATE_LIMITED, "HTTP 429: Too many requests")
    assert obs.rate_limit is not None and obs.rate_limit.remaining == 0
    async with vantage(x) as (_, url, _direct):
        obs = await x_probe(url, session).check(Target("alice"))
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.RATE_LIMITED)
    assert obs.rate_limit is not None and obs.rate_limit.remaining == 0


@pytest.mark.parametrize(("faults", "kind"), [
    *HOSTILE,
    ({"cross_host_rate": 1.0}, ErrorKind.REDIRECT),
    ({"redirect_loop_rate": 1.0}, ErrorKind.REDIRECT),
    ({"truncated_rate": 1.0}, ErrorKind.CONNECTION),
    ({"huge_headers_rate": 1.0}, ErrorKind.TOO_LARGE),
    ({"slowloris_rate": 1.0}, ErrorKind.TIMEOUT)])
async def test_hostile_upstream_answers_pass_as_errors(
        faults: dict[str, object], kind: ErrorKind, masto: FakeMastodon,
        session: aiohttp.ClientSession) -> None:
    """What the fake does wrong reaches the probe as the same error: never absent. A reset
    before any answer is the gateway's 502, as behind nginx."""
    masto.set_faults(**faults)
    async with vantage(masto) as (_, url, _direct):
        obs = await masto_probe(url, session, timeout=1.0).check(Target("dan"))
    expected = ErrorKind.SERVER_ERROR if faults.get("reset_rate") else kind
    assert (obs.result, obs.error) == (Result.ERROR, expected), obs.evidence


async def test_pass_cuts_a_body_over_the_cap(masto: FakeMastodon,
                                             session: aiohttp.ClientSession) -> None:
    masto.set_faults(huge_body_rate=1.0, huge_body_bytes=200_000, huge_body_chunked=True)
    async with vantage(masto, max_body_bytes=100_000) as (_, url, _direct):
        obs = await masto_probe(url, session).check(Target("alice"))
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.CONNECTION)


async def test_an_upstream_that_is_not_there_is_a_502(session: aiohttp.ClientSession) -> None:
    with RefusedPort() as port:
        path = VantagePath(f"http://127.0.0.1:{port.port}", mastodon_not_found())
        async with path.running() as url:
            obs = await masto_probe(url, session).check(Target("alice"))
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.SERVER_ERROR, "HTTP 502")


# --------------------------------------------------------------------------- not_found


async def test_not_found_mastodon_reads_as_the_fakes_own_missing_account(
        masto: FakeMastodon, session: aiohttp.ClientSession) -> None:
    alice_id = masto.account_id("alice")
    async with vantage(masto, mode="not_found") as (path, url, direct):
        by_handle = await masto_probe(url, session).check(Target("alice"))
        by_id = await masto_probe(url, session).check(Target("alice", alice_id))
        gone = await masto_probe(direct, session).check(Target("dan"))
        unknown_id = await masto_probe(direct, session).check(Target("x", "1"))
    assert (by_handle.result, by_handle.reason) == (Result.ABSENT, AbsentReason.NOT_FOUND)
    assert verdict(by_handle) == verdict(gone)
    assert verdict(by_id) == verdict(unknown_id)
    assert masto.request_count("alice") == 0  # the edge answered on its own
    assert path.count("alice", mode="not_found") == 1
    assert path.count(alice_id, mode="not_found") == 1


@pytest.mark.parametrize("status", [200, 404])
async def test_not_found_x_reads_as_the_fakes_own_missing_account(
        status: int, session: aiohttp.ClientSession) -> None:
    """Both of X's documented shapes: 200 + errors (recorded) and 404 (X's guide)."""
    fake = FakeX({"alice": (ALICE_X, "present"), "quitter": "deleted"},
                 not_found_status=status)
    async with fake.running() as direct:
        path = VantagePath(direct, x_not_found(status), mode="not_found")
        async with path.running() as url:
            for handle, account_id, missing in (("alice", None, Target("nobody")),
                                                ("alice", ALICE_X, Target("x", "1"))):
                through = await x_probe(url, session).check(Target(handle, account_id))
                straight = await x_probe(direct, session).check(missing)
                assert (through.result, through.reason) == (Result.ABSENT,
                                                            AbsentReason.NOT_FOUND)
                assert through.evidence == straight.evidence
            assert fake.request_count("alice") == 0


async def test_only_the_matched_account_is_rewritten_by_handle_and_learned_id(
        masto: FakeMastodon, session: aiohttp.ClientSession) -> None:
    alice_id, bob_id = masto.account_id("alice"), masto.account_id("bob")
    async with vantage(masto) as (path, url, _direct):
        probe = masto_probe(url, session)
        assert (await probe.check(Target("alice"))).result is Result.PRESENT  # learns her id
        path.set_mode("not_found", match="@Alice")
        results = {t: (await probe.check(t)).result for t in (
            Target("alice"), Target("alice", alice_id), Target("bob"), Target("bob", bob_id))}
    assert results == {Target("alice"): Result.ABSENT, Target("alice", alice_id): Result.ABSENT,
                       Target("bob"): Result.PRESENT, Target("bob", bob_id): Result.PRESENT}
    assert path.count("alice", mode="not_found") == 2
    assert path.count("bob", mode="not_found") == 0
    assert path.count("bob", mode="pass") == 2
    assert path.stats()["by_account"]["alice"] == {"pass": 1, "not_found": 2}


async def test_an_id_never_seen_needs_naming_and_then_is_matched(
        masto: FakeMastodon, session: aiohttp.ClientSession) -> None:
    alice_id = masto.account_id("alice")
    async with vantage(masto) as (path, url, _direct):
        probe = masto_probe(url, session)
        path.set_mode("not_found", match="alice")
        assert (await probe.check(Target("alice", alice_id))).result is Result.PRESENT
        path.set_mode("not_found", match=["alice", alice_id])
        assert (await probe.check(Target("alice", alice_id))).result is Result.ABSENT


async def test_a_batch_rewrites_only_the_matched_ids(
        x: FakeX, session: aiohttp.ClientSession) -> None:
    async with vantage(x) as (path, url, _direct):
        probe = x_probe(url, session)
        path.set_mode("not_found", match=ALICE_X)
        found = await probe.check_many([Target("alice", ALICE_X), Target("bob", BOB_X)])
        path.set_mode("not_found")
        both = await probe.check_many([Target("alice", ALICE_X), Target("bob", BOB_X)])
    assert (found[ALICE_X].result, found[ALICE_X].reason) == (Result.ABSENT,
                                                              AbsentReason.NOT_FOUND)
    assert (found[BOB_X].result, found[BOB_X].account_id) == (Result.PRESENT, BOB_X)
    assert [both[i].reason for i in (ALICE_X, BOB_X)] == [AbsentReason.NOT_FOUND] * 2
    assert path.count("alice", path="/2/users") == 2
    assert path.count(BOB_X, mode="pass") == 1 and path.count(BOB_X, mode="not_found") == 1
    assert x.requests_total == 1  # the partial rewrite asked upstream; the whole one did not


async def test_a_path_rule_narrows_a_mode_to_matching_requests(
        masto: FakeMastodon, session: aiohttp.ClientSession) -> None:
    alice_id = masto.account_id("alice")
    async with vantage(masto) as (path, url, _direct):
        probe = masto_probe(url, session)
        path.set_mode("error", path=r"/lookup\?")
        assert (await probe.check(Target("alice"))).error is ErrorKind.SERVER_ERROR
        assert (await probe.check(Target("alice", alice_id))).result is Result.PRESENT


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize(("mode", "kind"), [("error", ErrorKind.SERVER_ERROR),
                                            ("hang", ErrorKind.TIMEOUT),
                                            ("refuse", ErrorKind.CONNECTION)])
@pytest.mark.parametrize("platform", ["mastodon", "x"])
async def test_failing_modes_are_errors_never_absent(
        mode: str, kind: ErrorKind, platform: str, masto: FakeMastodon, x: FakeX,
        session: aiohttp.ClientSession) -> None:
    upstream = masto if platform == "mastodon" else x
    make = masto_probe if platform == "mastodon" else x_probe
    async with vantage(upstream, mode=mode) as (path, url, _direct):
        obs = await make(url, session, timeout=0.5).check(Target("alice"))
    assert (obs.result, obs.reason, obs.error) == (Result.ERROR, None, kind)
    assert path.count("alice", mode=mode) >= 1  # a dropped reused connection is retried
    assert path.count("alice", mode="pass") == 0
    assert upstream.requests_total == 0


async def test_leaving_releases_hanging_requests(
        masto: FakeMastodon, session: aiohttp.ClientSession) -> None:
    """One hanging in the path, one waiting on a hanging upstream: both cut at exit."""
    masto.set_faults(timeout_rate=1.0, hang_seconds=60.0)
    with deadline(10.0):
        async with vantage(masto) as (path, url, _direct):
            path.set_mode("hang", match="alice")
            waiting = [asyncio.create_task(session.get(f"{url}/api/v1/accounts/lookup?acct={h}"))
                       for h in ("alice", "bob")]
            await wait_for(lambda: path.requests_total == 2 and masto.requests_total == 1,
                           what="both requests in flight")
        for task in waiting:
            with pytest.raises(aiohttp.ClientError):
                await task


# --------------------------------------------------------------------------- control


async def test_control_endpoint_flips_modes_and_reports_counts(
        masto: FakeMastodon, session: aiohttp.ClientSession) -> None:
    async with vantage(masto) as (path, url, _direct):
        probe = masto_probe(url, session)

        async def control(doc: object) -> tuple[int, dict[str, object]]:
            async with session.post(f"{url}/_control/mode", json=doc) as resp:
                return resp.status, await resp.json()

        assert (await probe.check(Target("alice"))).result is Result.PRESENT
        status, table = await control({"mode": "not_found", "match": ["alice"]})
        assert (status, table) == (200, {"default": "pass", "rules": [
            {"mode": "not_found", "match": ["alice"], "path": None}]})
        assert (await probe.check(Target("alice"))).reason is AbsentReason.NOT_FOUND
        assert (await probe.check(Target("bob"))).result is Result.PRESENT
        assert (await control({"mode": "error"}))[1] == {"default": "error", "rules": []}
        assert (await probe.check(Target("bob"))).error is ErrorKind.SERVER_ERROR
        async with session.get(f"{url}/_control/proxy") as resp:
            stats = await resp.json()
        assert stats["requests_total"] == 4
        assert stats["by_mode"] == {"pass": 2, "not_found": 1, "error": 1}
        assert stats["by_account"]["alice"] == {"pass": 1, "not_found": 1}
        async with session.post(f"{url}/_control/proxy/reset") as resp:
            assert (await resp.json())["requests_total"] == 0
        assert path.count() == 0


@pytest.mark.parametrize("doc", [
    {"mode": "sideways"}, {"match": "alice"}, {"mode": "pass", "path": "("},
    {"mode": "pass", "path": 3}, {"mode": "pass", "match": []}, {"mode": "pass", "match": 7},
    {"mode": "pass", "colour": "red"}, ["pass"], "not json"])
async def test_bad_control_input_is_a_400_and_changes_nothing(
        doc: object, masto: FakeMastodon, session: aiohttp.ClientSession) -> None:
    async with vantage(masto, mode="error") as (path, url, _direct):
        body = doc.encode() if isinstance(doc, str) else None
        kwargs: dict[str, object] = {"data": body} if body is not None else {"json": doc}
        async with session.post(f"{url}/_control/mode", **kwargs) as resp:  # type: ignore[arg-type]
            assert resp.status == 400
            assert "error" in await resp.json()
        assert path.modes() == {"default": "error", "rules": []}


async def test_not_found_without_the_platforms_answers_is_refused(
        masto: FakeMastodon) -> None:
    async with masto.running() as direct:
        path = VantagePath(direct)
        with pytest.raises(ValueError, match="not_found needs"):
            path.set_mode("not_found")
        with pytest.raises(ValueError, match="unknown mode"):
            path.set_mode("gone")


async def test_the_fakes_control_endpoints_answer_through_the_path(
        masto: FakeMastodon, session: aiohttp.ClientSession) -> None:
    async with vantage(masto, mode="refuse") as (path, url, _direct):
        async with session.post(f"{url}/_control/accounts/alice",
                                json={"state": "gone"}) as resp:
            assert resp.status == 200
        assert masto.account_states()["alice"] == "gone"
        path.set_mode("pass")
        obs = await masto_probe(url, session).check(Target("alice"))
    assert obs.reason is AbsentReason.NOT_FOUND
    assert path.requests_total == 1  # the control request is not counted


async def test_runs_alone_as_a_process(masto: FakeMastodon,
                                       session: aiohttp.ClientSession) -> None:
    async with masto.running() as direct:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor.fakes.proxy", "--upstream", direct,
            "--platform", "mastodon", "--mode", "not_found", stdout=asyncio.subprocess.PIPE)
        try:
            assert proc.stdout is not None
            async with asyncio.timeout(20):
                url = (await proc.stdout.readline()).decode().strip()
            obs = await masto_probe(url, session).check(Target("alice"))
            assert obs.reason is AbsentReason.NOT_FOUND
        finally:
            proc.send_signal(signal.SIGTERM)
            async with asyncio.timeout(20):
                assert await proc.wait() == 0
