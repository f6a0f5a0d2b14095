"""The GitHub probe against the fake API (real loopback HTTP) and as a pure function."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from monitor.config import PlatformConfig
from monitor.fakes.github import FakeGitHub
from monitor.model import AbsentReason, ErrorKind, Observation, RateLimit, Result
from monitor.probes.base import Answer, Target
from monitor.probes.github import GitHubProbe, classify_user
from tests.conftest import HOSTILE

AT = 1_700_000_000.0
OCTOCAT = "583231"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def fake() -> FakeGitHub:
    return FakeGitHub({"octocat": (OCTOCAT, "present"), "spammer": "suspended",
                       "leaver": "deleted"}, token="ghp_test")


@pytest.fixture
async def base_url(fake: FakeGitHub) -> AsyncIterator[str]:
    async with fake.running() as url:
        yield url


def make_probe(base_url: str, session: aiohttp.ClientSession,
               token: str | None = None) -> GitHubProbe:
    config = PlatformConfig.model_validate({"base_url": base_url, "token": token})
    return GitHubProbe(config, session, timeout=2.0, max_body_bytes=1 << 20)


async def check(base_url: str, session: aiohttp.ClientSession, login: str,
                account_id: str | None = None) -> Observation:
    return await make_probe(base_url, session).check(Target(login, account_id))


def test_request_sends_githubs_required_headers() -> None:
    probe = GitHubProbe(PlatformConfig(base_url="https://api.github.com", token="t0k"),
                        None,  # type: ignore[arg-type]  # request() does no I/O
                        timeout=1.0, max_body_bytes=1)
    method, url, headers = probe.request(Target("octocat"))
    assert (method, url) == ("GET", "https://api.github.com/users/octocat")
    assert headers["Accept"] == "application/vnd.github+json"
    assert headers["X-GitHub-Api-Version"] == "2022-11-28"
    assert headers["Authorization"] == "Bearer t0k"
    assert headers["User-Agent"].startswith("account-monitor/")
    assert probe.request(Target("octocat", OCTOCAT))[1] == f"https://api.github.com/user/{OCTOCAT}"


# --------------------------------------------------------------------------- every state


async def test_present_user_reports_id_and_login(
        base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, "OctoCat")
    assert (obs.result, obs.account_id, obs.handle, obs.evidence) == (
        Result.PRESENT, OCTOCAT, "octocat", f"HTTP 200 id={OCTOCAT}")
    assert obs.rate_limit is not None and obs.rate_limit.limit == 60


@pytest.mark.parametrize("login", ["spammer", "leaver", "never-was"])
async def test_suspended_deleted_and_unknown_are_absent_not_found(
        login: str, fake: FakeGitHub, base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, login)
    assert (obs.result, obs.reason, obs.evidence) == (
        Result.ABSENT, AbsentReason.NOT_FOUND,
        "HTTP 404 Not Found (deleted, suspended or never existed)")
    if fake.account(login) is not None:
        by_id = await check(base_url, session, login, fake.account_id(login))
        assert by_id.reason is AbsentReason.NOT_FOUND


async def test_rename_keeps_the_id_with_the_new_login(
        fake: FakeGitHub, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.rename("octocat", "monalisa")
    obs = await check(base_url, session, "octocat", OCTOCAT)
    assert (obs.result, obs.account_id, obs.handle) == (Result.PRESENT, OCTOCAT, "monalisa")
    assert (await check(base_url, session, "octocat")).reason is AbsentReason.NOT_FOUND


async def test_reregistered_login_reports_its_own_id(
        fake: FakeGitHub, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.rename("octocat", "monalisa")
    newcomer = fake.set_state("octocat", "present")
    obs = await check(base_url, session, "octocat")
    assert newcomer != OCTOCAT
    assert (obs.result, obs.account_id, obs.handle) == (Result.PRESENT, newcomer, "octocat")


# --------------------------------------------------------------------------- errors


async def test_primary_rate_limit_403_is_rate_limited_never_absent(
        fake: FakeGitHub, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.set_override("primary")
    obs = await check(base_url, session, "leaver")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.RATE_LIMITED, "HTTP 403 rate limit: x-ratelimit-remaining 0")
    assert obs.rate_limit is not None and obs.rate_limit.remaining == 0


@pytest.mark.parametrize(("override", "status"), [("secondary", 403), ("secondary_429", 429)])
async def test_secondary_rate_limit_is_rate_limited_with_retry_after(
        override: str, status: int, fake: FakeGitHub, base_url: str,
        session: aiohttp.ClientSession) -> None:
    fake.set_override(override)
    obs = await check(base_url, session, "octocat")
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.RATE_LIMITED)
    assert obs.evidence.startswith(f"HTTP {status} secondary rate limit: You have exceeded")
    assert obs.rate_limit is not None and obs.rate_limit.retry_after == 60.0


async def test_abuse_detection_403_is_rate_limited_without_retry_after(
        fake: FakeGitHub, base_url: str, session: aiohttp.ClientSession) -> None:
    """The secondary limit's older wording comes without Retry-After; it is still a limit,
    never a credentials problem (which would page nobody but mark us blind as auth)."""
    fake.set_override("abuse")
    obs = await check(base_url, session, "leaver")
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.RATE_LIMITED)
    assert obs.evidence.startswith("HTTP 403 secondary rate limit: You have triggered an abuse")
    assert obs.rate_limit is not None and obs.rate_limit.retry_after is None


async def test_rate_limit_fault_is_rate_limited(
        fake: FakeGitHub, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.set_faults(rate_limit_rate=1.0)
    obs = await check(base_url, session, "octocat")
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.RATE_LIMITED)


async def test_bad_token_is_an_auth_error(
        base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await make_probe(base_url, session, token="wrong").check(Target("octocat"))
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.AUTH, "HTTP 401: Bad credentials")
    good = await make_probe(base_url, session, token="ghp_test").check(Target("octocat"))
    assert good.result is Result.PRESENT


async def test_server_error_is_not_absence(
        fake: FakeGitHub, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.set_faults(server_error_rate=1.0)
    obs = await check(base_url, session, "leaver")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.SERVER_ERROR, "HTTP 500: Server Error")




@pytest.mark.parametrize(("faults", "kind"), HOSTILE)
async def test_hostile_answers_are_errors_never_absence(
        faults: dict[str, object], kind: ErrorKind, fake: FakeGitHub, base_url: str,
        session: aiohttp.ClientSession) -> None:
    fake.set_faults(**faults)  # type: ignore[arg-type]
    probe = make_probe(base_url, session)
    probe.timeout = 0.3
    obs = await probe.check(Target("leaver"))
    assert (obs.result, obs.error) == (Result.ERROR, kind)


# --------------------------------------------------------------------------- pure classify


def answer(status: int, body: object, headers: dict[str, str] | None = None) -> Answer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Answer(status, headers or {}, raw)


def classify(status: int, body: object, headers: dict[str, str] | None = None) -> Observation:
    return classify_user(answer(status, body, headers), Target("octocat"), AT)


@pytest.mark.parametrize(("status", "body", "headers", "kind", "evidence"), [
    (403, {"message": "Resource protected by organization SAML enforcement."}, {},
     ErrorKind.AUTH, "HTTP 403: Resource protected by organization SAML enforcement."),
    (403, b"", {}, ErrorKind.AUTH, "HTTP 403"),
    (403, {"message": "Forbidden"}, {"X-RateLimit-Remaining": "0"}, ErrorKind.RATE_LIMITED,
     "HTTP 403 rate limit: x-ratelimit-remaining 0"),
    (403, b"", {"Retry-After": "30"}, ErrorKind.RATE_LIMITED, "HTTP 403 rate limit: retry-after"),
    (403, {"message": "You have triggered an abuse detection mechanism and have been "
                      "temporarily blocked from content creation."}, {}, ErrorKind.RATE_LIMITED,
     "HTTP 403 secondary rate limit: You have triggered an abuse detection mechanism and have "
     "been temporarily blocke…"),
    (429, b"", {}, ErrorKind.RATE_LIMITED, "HTTP 429"),
    (404, b"<html>not here</html>", {}, ErrorKind.UNEXPECTED,
     "HTTP 404 without GitHub's 'Not Found' body"),
    (200, {"login": "octocat", "id": "1"}, {}, ErrorKind.PARSE, "HTTP 200, no numeric user id"),
    (200, {"login": "octocat", "id": True}, {}, ErrorKind.PARSE, "HTTP 200, no numeric user id"),
    (200, b"{", {}, ErrorKind.PARSE, "HTTP 200, body is not JSON"),
    (502, b"", {}, ErrorKind.SERVER_ERROR, "HTTP 502"),
    (451, {"message": "Unavailable For Legal Reasons"}, {}, ErrorKind.UNEXPECTED,
     "HTTP 451: Unavailable For Legal Reasons"),
])
def test_classify_errors(status: int, body: object, headers: dict[str, str], kind: ErrorKind,
                         evidence: str) -> None:
    obs = classify(status, body, headers)
    assert (obs.result, obs.error, obs.evidence) == (Result.ERROR, kind, evidence)


def test_organisations_are_present_and_say_so() -> None:
    obs = classify(200, {"login": "github", "id": 9919, "type": "Organization"})
    assert (obs.result, obs.account_id, obs.evidence) == (
        Result.PRESENT, "9919", "HTTP 200 id=9919, type Organization")


def test_classify_reads_the_rate_limit_headers() -> None:
    obs = classify(200, {"login": "octocat", "id": 1},
                   {"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4999",
                    "x-ratelimit-reset": "1700003600", "x-ratelimit-used": "1"})
    assert obs.rate_limit == RateLimit(remaining=4999, limit=5000, reset_at=1_700_003_600.0)


# --------------------------------------------------------------------------- fake shapes


async def test_fake_answers_in_the_reference_shapes(
        base_url: str, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{base_url}/users/leaver") as r:
        assert r.status == 404
        assert await r.json() == {"message": "Not Found", "status": "404",
                                  "documentation_url": "https://docs.github.com/rest/users/users"
                                                       "#get-a-user"}
        assert {"x-ratelimit-limit", "x-ratelimit-remaining",
                "x-ratelimit-reset"} <= {k.lower() for k in r.headers}
    async with session.get(f"{base_url}/user/{OCTOCAT}") as r:
        user = await r.json()
    assert (user["login"], user["id"], user["type"]) == ("octocat", int(OCTOCAT), "User")
