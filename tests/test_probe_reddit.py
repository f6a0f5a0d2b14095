"""The Reddit probe against the fake (real loopback HTTP) and as a pure function."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from monitor.config import PlatformConfig
from monitor.fakes.reddit import FakeReddit
from monitor.model import AbsentReason, ErrorKind, Observation, RateLimit, Result
from monitor.probes.base import Answer, Target
from monitor.probes.reddit import DEFAULT_USER_AGENT, RedditProbe, classify_about
from tests.conftest import HOSTILE

AT = 1_700_000_000.0
SPEZ = "1w72"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def fake() -> FakeReddit:
    return FakeReddit({"spez": (SPEZ, "present"), "troll": "suspended", "quitter": "deleted",
                       "ghost": "shadowbanned"})


@pytest.fixture
async def base_url(fake: FakeReddit) -> AsyncIterator[str]:
    async with fake.running() as url:
        yield url


def make_probe(base_url: str, session: aiohttp.ClientSession, **platform: object) -> RedditProbe:
    config = PlatformConfig.model_validate({"base_url": base_url, **platform})
    return RedditProbe(config, session, timeout=2.0, max_body_bytes=1 << 20)


async def check(base_url: str, session: aiohttp.ClientSession, name: str) -> Observation:
    return await make_probe(base_url, session).check(Target(name))


def test_default_user_agent_is_replaced_by_a_reddit_style_one() -> None:
    probe = make_probe("https://www.reddit.com", None)  # type: ignore[arg-type]
    method, url, headers = probe.request(Target("u/spez"))
    assert (method, url) == ("GET", "https://www.reddit.com/user/spez/about.json")
    assert headers["User-Agent"] == DEFAULT_USER_AGENT
    custom = make_probe("https://x.test", None, user_agent="ios:bot:2 (by /u/me)")  # type: ignore[arg-type]
    assert custom.request(Target("spez"))[2]["User-Agent"] == "ios:bot:2 (by /u/me)"


# --------------------------------------------------------------------------- every state


async def test_present_user_reports_id_and_name(
        base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, "Spez")
    assert (obs.result, obs.account_id, obs.handle, obs.evidence) == (
        Result.PRESENT, SPEZ, "spez", f"HTTP 200 id={SPEZ}")


async def test_suspended_user_is_absent_suspended_with_its_name(
        base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, "troll")
    assert (obs.result, obs.reason, obs.handle, obs.account_id, obs.evidence) == (
        Result.ABSENT, AbsentReason.SUSPENDED, "troll", None, "HTTP 200 t2 is_suspended")


@pytest.mark.parametrize("name", ["quitter", "ghost", "never_was"])
async def test_deleted_shadowbanned_and_unknown_are_absent_not_found(
        name: str, base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, name)
    assert (obs.result, obs.reason, obs.evidence) == (
        Result.ABSENT, AbsentReason.NOT_FOUND,
        "HTTP 404 Not Found (deleted, shadowbanned or never existed)")


async def test_reregistered_name_reports_its_own_id(
        fake: FakeReddit, base_url: str, session: aiohttp.ClientSession) -> None:
    # Names never change on Reddit, but a test double may still hand one to a new account.
    newcomer = fake.set_state("spez", "present", account_id="zz9")
    obs = await check(base_url, session, "spez")
    assert (obs.result, obs.account_id) == (Result.PRESENT, "zz9")
    assert newcomer != SPEZ


# --------------------------------------------------------------------------- errors


async def test_429_is_rate_limited(
        fake: FakeReddit, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.set_faults(rate_limit_rate=1.0)
    obs = await check(base_url, session, "quitter")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.RATE_LIMITED, "HTTP 429")
    assert obs.rate_limit is not None and obs.rate_limit.remaining == 0


async def test_throttle_with_status_200_is_rate_limited_not_present(
        fake: FakeReddit, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.set_override("throttled_200")
    obs = await check(base_url, session, "spez")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.RATE_LIMITED, "HTTP 200 with a 'Too Many Requests' body")


@pytest.mark.parametrize(("override", "status"), [("blocked", 403), ("login_wall", 200)])
async def test_html_block_pages_and_login_walls_are_blocked(
        override: str, status: int, fake: FakeReddit, base_url: str,
        session: aiohttp.ClientSession) -> None:
    fake.set_override(override)
    obs = await check(base_url, session, "quitter")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.BLOCKED,
        f"HTTP {status}, HTML page instead of JSON (blocked or login wall)")


async def test_generic_user_agent_is_blocked_by_the_fake(
        base_url: str, session: aiohttp.ClientSession) -> None:
    probe = make_probe(base_url, session, user_agent="python-requests/2.31")
    obs = await probe.check(Target("spez"))
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.BLOCKED)


async def test_server_error_is_not_absence(
        fake: FakeReddit, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.set_faults(server_error_rate=1.0)
    obs = await check(base_url, session, "quitter")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.SERVER_ERROR, "HTTP 500")


async def test_every_answer_carries_the_budget_in_seconds_until_reset(
        base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, "spez")
    assert obs.rate_limit is not None
    assert obs.rate_limit.limit == 100  # used + remaining
    assert obs.rate_limit.reset_at is not None
    assert obs.at - 1 <= obs.rate_limit.reset_at <= obs.at + 600




@pytest.mark.parametrize(("faults", "kind"), HOSTILE)
async def test_hostile_answers_are_errors_never_absence(
        faults: dict[str, object], kind: ErrorKind, fake: FakeReddit, base_url: str,
        session: aiohttp.ClientSession) -> None:
    fake.set_faults(**faults)  # type: ignore[arg-type]
    probe = make_probe(base_url, session)
    probe.timeout = 0.3
    obs = await probe.check(Target("quitter"))
    assert (obs.result, obs.error) == (Result.ERROR, kind)


# --------------------------------------------------------------------------- pure classify


def answer(status: int, body: object, headers: dict[str, str] | None = None) -> Answer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Answer(status, headers or {}, raw)


def classify(status: int, body: object, headers: dict[str, str] | None = None) -> Observation:
    return classify_about(answer(status, body, headers), Target("spez"), AT)


@pytest.mark.parametrize(("status", "body", "headers", "kind", "evidence"), [
    (200, {"kind": "t5", "data": {"id": "2qh1i"}}, {}, ErrorKind.PARSE,
     "HTTP 200, not a t2 (account) thing"),
    (200, {"kind": "t2", "data": {"name": "spez"}}, {}, ErrorKind.PARSE,
     "HTTP 200 t2 without an id"),
    (200, ["x"], {}, ErrorKind.PARSE, "HTTP 200, not a JSON object"),
    (200, b"<!doctype html><title>reddit</title>", {}, ErrorKind.BLOCKED,
     "HTTP 200, HTML page instead of JSON (blocked or login wall)"),
    (404, b"not json", {"Content-Type": "text/html; charset=utf-8"}, ErrorKind.BLOCKED,
     "HTTP 404, HTML page instead of JSON (blocked or login wall)"),
    (404, {"message": "gone"}, {}, ErrorKind.UNEXPECTED, "HTTP 404: gone"),
    (403, {"message": "Forbidden", "error": 403}, {}, ErrorKind.BLOCKED, "HTTP 403: Forbidden"),
    (401, {"message": "Unauthorized", "error": 401}, {}, ErrorKind.AUTH, "HTTP 401"),
    (503, b"<html>upstream</html>", {}, ErrorKind.SERVER_ERROR, "HTTP 503"),
])
def test_classify_errors(status: int, body: object, headers: dict[str, str], kind: ErrorKind,
                         evidence: str) -> None:
    obs = classify(status, body, headers)
    assert (obs.result, obs.error, obs.evidence) == (Result.ERROR, kind, evidence)


def test_reference_suspended_body_is_absent_suspended() -> None:
    obs = classify(200, {"kind": "t2", "data": {"is_suspended": True, "name": "spez"}})
    assert (obs.result, obs.reason, obs.handle) == (Result.ABSENT, AbsentReason.SUSPENDED, "spez")


def test_classify_converts_seconds_until_reset() -> None:
    obs = classify(200, {"kind": "t2", "data": {"id": "1w72", "name": "spez"}},
                   {"X-Ratelimit-Used": "2", "X-Ratelimit-Remaining": "598.0",
                    "X-Ratelimit-Reset": "120"})
    assert obs.rate_limit == RateLimit(remaining=598, limit=600, reset_at=AT + 120)


# --------------------------------------------------------------------------- fake shapes


async def test_fake_answers_in_the_reference_shapes(
        base_url: str, session: aiohttp.ClientSession) -> None:
    agent = {"User-Agent": DEFAULT_USER_AGENT}
    async with session.get(f"{base_url}/user/quitter/about.json", headers=agent) as r:
        assert r.status == 404
        assert await r.read() == b'{"message": "Not Found", "error": 404}'
        assert r.headers["x-ratelimit-remaining"].endswith(".0")
        assert int(r.headers["x-ratelimit-reset"]) <= 600
    async with session.get(f"{base_url}/user/troll/about.json", headers=agent) as r:
        body = await r.json()
    assert body["kind"] == "t2"
    assert (body["data"]["is_suspended"], body["data"]["name"]) == (True, "troll")
    assert "id" not in body["data"]
