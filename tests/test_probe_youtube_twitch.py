"""The YouTube and Twitch probes against their fakes (real loopback HTTP) and as pure functions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from monitor.config import PlatformConfig
from monitor.fakes.twitch import CLIENT_ID, TOKEN, FakeTwitch
from monitor.fakes.youtube import API_KEY, FakeYouTube
from monitor.model import AbsentReason, ErrorKind, Observation, RateLimit, Result
from monitor.probes.base import Answer, Target
from monitor.probes.twitch import TwitchProbe, classify_users
from monitor.probes.youtube import YouTubeProbe, classify_channels
from tests.conftest import HOSTILE

AT = 1_700_000_000.0
MRBEAST = "UCX6OQ3DkcsbYNE6H8uQQuVA"
TWITCHDEV = "141981764"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s





# =========================================================================== YouTube


@pytest.fixture
def youtube() -> FakeYouTube:
    return FakeYouTube({"MrBeast": (MRBEAST, "present"), "Banned": "terminated",
                        "Quit": "deleted"})


@pytest.fixture
async def youtube_url(youtube: FakeYouTube) -> AsyncIterator[str]:
    async with youtube.running() as url:
        yield url


def youtube_probe(base_url: str, session: aiohttp.ClientSession,
                  key: str | None = API_KEY) -> YouTubeProbe:
    config = PlatformConfig.model_validate({"base_url": base_url, "token": key})
    return YouTubeProbe(config, session, timeout=2.0, max_body_bytes=1 << 20)


async def check_channel(base_url: str, session: aiohttp.ClientSession, handle: str,
                        channel_id: str | None = None, key: str | None = API_KEY) -> Observation:
    return await youtube_probe(base_url, session, key).check(Target(handle, channel_id))


def test_youtube_key_travels_as_a_query_parameter_only() -> None:
    probe = youtube_probe("https://www.googleapis.com", None)  # type: ignore[arg-type]
    _, url, headers = probe.request(Target("@MrBeast"))
    assert url == ("https://www.googleapis.com/youtube/v3/channels?part=id,snippet"
                   f"&forHandle=@MrBeast&key={API_KEY}")
    assert "Authorization" not in headers and API_KEY not in json.dumps(headers)
    _, by_id, _ = probe.request(Target("MrBeast", MRBEAST))
    assert f"&id={MRBEAST}&" in by_id


async def test_youtube_present_reports_channel_id_and_custom_url(
        youtube_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check_channel(youtube_url, session, "mrbeast")
    assert (obs.result, obs.account_id, obs.handle, obs.evidence) == (
        Result.PRESENT, MRBEAST, "@mrbeast", f"HTTP 200 id={MRBEAST}")


@pytest.mark.parametrize("handle", ["Banned", "Quit", "NeverWas"])
@pytest.mark.parametrize("empty_items", [False, True])
async def test_youtube_gone_channels_are_absent_not_found(
        handle: str, empty_items: bool, session: aiohttp.ClientSession) -> None:
    fake = FakeYouTube({"Banned": "terminated", "Quit": "deleted"}, empty_items=empty_items)
    async with fake.running() as url:
        by_handle = await check_channel(url, session, handle)
        by_id = (await check_channel(url, session, handle, fake.account_id(handle))
                 if fake.account(handle) else by_handle)
    for obs in (by_handle, by_id):
        assert (obs.result, obs.reason, obs.evidence) == (
            Result.ABSENT, AbsentReason.NOT_FOUND,
            "HTTP 200, no items (channel gone or handle unused)")


async def test_youtube_rename_keeps_the_channel_id(
        youtube: FakeYouTube, youtube_url: str, session: aiohttp.ClientSession) -> None:
    youtube.rename("MrBeast", "MrBeast6000")
    newcomer = youtube.set_state("MrBeast", "present")
    by_id = await check_channel(youtube_url, session, "MrBeast", MRBEAST)
    by_handle = await check_channel(youtube_url, session, "MrBeast")
    assert (by_id.account_id, by_id.handle) == (MRBEAST, "@mrbeast6000")
    assert (by_handle.account_id, by_handle.handle) == (newcomer, "@mrbeast")
    assert newcomer != MRBEAST


async def test_youtube_quota_is_rate_limited(
        youtube: FakeYouTube, youtube_url: str, session: aiohttp.ClientSession) -> None:
    youtube.set_override("quota")
    obs = await check_channel(youtube_url, session, "Quit")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.RATE_LIMITED, "HTTP 403 quotaExceeded")


@pytest.mark.parametrize(("key", "evidence"), [
    ("wrong-key", "HTTP 400 API_KEY_INVALID/badRequest"),
    (None, "no YouTube API key (set the platform's token)"),
])
async def test_youtube_bad_or_missing_key_is_auth_and_never_leaks(
        key: str | None, evidence: str, youtube_url: str,
        session: aiohttp.ClientSession) -> None:
    obs = await check_channel(youtube_url, session, "MrBeast", key=key)
    assert (obs.result, obs.error, obs.evidence) == (Result.ERROR, ErrorKind.AUTH, evidence)
    assert "wrong-key" not in obs.evidence and youtube_url not in obs.evidence


async def test_youtube_server_error_is_not_absence(
        youtube: FakeYouTube, youtube_url: str, session: aiohttp.ClientSession) -> None:
    youtube.set_faults(server_error_rate=1.0)
    obs = await check_channel(youtube_url, session, "Quit")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.SERVER_ERROR, "HTTP 503 backendError")


async def test_youtube_fake_refuses_keyless_callers(
        youtube_url: str, session: aiohttp.ClientSession) -> None:
    async with session.get(f"{youtube_url}/youtube/v3/channels?part=id&forHandle=@x") as r:
        assert r.status == 403
        body = await r.json()
    assert body["error"]["status"] == "PERMISSION_DENIED"
    obs = classify_channels(Answer(403, {}, json.dumps(body).encode()), Target("x"), AT)
    assert (obs.error, obs.evidence) == (ErrorKind.AUTH, "HTTP 403 forbidden")


@pytest.mark.parametrize(("faults", "kind"), HOSTILE)
async def test_youtube_hostile_answers_are_errors_never_absence(
        faults: dict[str, object], kind: ErrorKind, youtube: FakeYouTube, youtube_url: str,
        session: aiohttp.ClientSession) -> None:
    youtube.set_faults(**faults)  # type: ignore[arg-type]
    probe = youtube_probe(youtube_url, session)
    probe.timeout = 0.3
    obs = await probe.check(Target("Quit"))
    assert (obs.result, obs.error) == (Result.ERROR, kind)


def youtube_answer(status: int, body: object) -> Observation:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return classify_channels(Answer(status, {}, raw), Target("x"), AT)


@pytest.mark.parametrize(("status", "body", "kind", "evidence"), [
    (200, {}, ErrorKind.PARSE, "HTTP 200, not a channelListResponse"),
    (200, {"kind": "youtube#channelListResponse", "items": [{"snippet": {}}]}, ErrorKind.PARSE,
     "HTTP 200, channel without an id"),
    (200, {"kind": "youtube#channelListResponse", "items": {"id": "UC1"}}, ErrorKind.PARSE,
     "HTTP 200, items is not a list"),
    (400, {"error": {"code": 400, "errors": [{"reason": "keyInvalid"}]}}, ErrorKind.AUTH,
     "HTTP 400 keyInvalid"),
    (400, {"error": {"code": 400, "errors": [{"reason": "invalidHandle"}]}},
     ErrorKind.UNEXPECTED, "HTTP 400 invalidHandle"),
    (403, {"error": {"errors": [{"reason": "accessNotConfigured"}]}}, ErrorKind.AUTH,
     "HTTP 403 accessNotConfigured"),
    (403, {"error": {"errors": [{"reason": "rateLimitExceeded"}]}}, ErrorKind.RATE_LIMITED,
     "HTTP 403 rateLimitExceeded"),
    (429, b"", ErrorKind.RATE_LIMITED, "HTTP 429"),
    (404, b"<html>", ErrorKind.UNEXPECTED, "HTTP 404"),
])
def test_youtube_classify_errors(status: int, body: object, kind: ErrorKind,
                                 evidence: str) -> None:
    obs = youtube_answer(status, body)
    assert (obs.result, obs.error, obs.evidence) == (Result.ERROR, kind, evidence)


def test_youtube_evidence_never_echoes_error_messages() -> None:
    obs = youtube_answer(403, {"error": {"message": "key=AIzaSECRET is bad",
                                         "errors": [{"reason": "forbidden",
                                                     "message": "key=AIzaSECRET"}]}})
    assert "AIza" not in obs.evidence


# =========================================================================== Twitch


@pytest.fixture
def twitch() -> FakeTwitch:
    return FakeTwitch({"TwitchDev": (TWITCHDEV, "present"), "banned_one": "suspended",
                       "gone_one": "deleted"})


@pytest.fixture
async def twitch_url(twitch: FakeTwitch) -> AsyncIterator[str]:
    async with twitch.running() as url:
        yield url


def twitch_probe(base_url: str, session: aiohttp.ClientSession, token: str | None = TOKEN,
                 client_id: str | None = CLIENT_ID) -> TwitchProbe:
    config = PlatformConfig.model_validate({"base_url": base_url, "token": token,
                                            "client_id": client_id})
    return TwitchProbe(config, session, timeout=2.0, max_body_bytes=1 << 20)


async def check_user(base_url: str, session: aiohttp.ClientSession, login: str,
                     user_id: str | None = None, token: str | None = TOKEN,
                     client_id: str | None = CLIENT_ID) -> Observation:
    probe = twitch_probe(base_url, session, token, client_id)
    return await probe.check(Target(login, user_id))


def test_twitch_request_sends_token_and_client_id() -> None:
    probe = twitch_probe("https://api.twitch.tv", None)  # type: ignore[arg-type]
    _, url, headers = probe.request(Target("TwitchDev"))
    assert url == "https://api.twitch.tv/helix/users?login=twitchdev"
    assert (headers["Authorization"], headers["Client-Id"]) == (f"Bearer {TOKEN}", CLIENT_ID)
    assert probe.request(Target("x", TWITCHDEV))[1].endswith(f"/helix/users?id={TWITCHDEV}")


async def test_twitch_present_reports_id_and_login(
        twitch_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check_user(twitch_url, session, "TwitchDev")
    assert (obs.result, obs.account_id, obs.handle, obs.evidence) == (
        Result.PRESENT, TWITCHDEV, "twitchdev", f"HTTP 200 id={TWITCHDEV}")
    assert obs.rate_limit is not None and obs.rate_limit.limit == 800


@pytest.mark.parametrize("login", ["banned_one", "gone_one", "never_was"])
async def test_twitch_gone_users_are_absent_not_found(
        login: str, twitch: FakeTwitch, twitch_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check_user(twitch_url, session, login)
    assert (obs.result, obs.reason, obs.evidence) == (
        Result.ABSENT, AbsentReason.NOT_FOUND,
        "HTTP 200, empty data (not found, suspended or deleted)")
    if twitch.account(login):
        by_id = await check_user(twitch_url, session, login, twitch.account_id(login))
        assert by_id.reason is AbsentReason.NOT_FOUND


async def test_twitch_rename_keeps_the_id_and_a_new_holder_has_its_own(
        twitch: FakeTwitch, twitch_url: str, session: aiohttp.ClientSession) -> None:
    twitch.rename("TwitchDev", "TwitchDevs")
    newcomer = twitch.set_state("TwitchDev", "present")
    by_id = await check_user(twitch_url, session, "TwitchDev", TWITCHDEV)
    by_login = await check_user(twitch_url, session, "TwitchDev")
    assert (by_id.account_id, by_id.handle) == (TWITCHDEV, "twitchdevs")
    assert (by_login.account_id, by_login.handle) == (newcomer, "twitchdev")
    assert newcomer != TWITCHDEV


async def test_twitch_bad_token_is_auth(twitch_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check_user(twitch_url, session, "TwitchDev", token="nope")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.AUTH, "HTTP 401: Invalid OAuth token")


async def test_twitch_missing_client_id_is_auth_without_a_request(
        twitch: FakeTwitch, twitch_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check_user(twitch_url, session, "TwitchDev", client_id=None)
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.AUTH, "no Twitch client id (set the platform's client_id)")
    no_token = await check_user(twitch_url, session, "TwitchDev", token=None, client_id=None)
    assert no_token.error is ErrorKind.AUTH
    assert twitch.requests_total == 0


async def test_twitch_wrong_client_id_is_auth(
        twitch_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check_user(twitch_url, session, "TwitchDev", client_id="someone-else")
    assert (obs.error, obs.evidence) == (
        ErrorKind.AUTH, "HTTP 401: Client ID and OAuth token do not match")


async def test_twitch_rate_limit_is_an_error_with_an_empty_budget(
        twitch: FakeTwitch, twitch_url: str, session: aiohttp.ClientSession) -> None:
    twitch.set_faults(rate_limit_rate=1.0)
    obs = await check_user(twitch_url, session, "gone_one")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.RATE_LIMITED, "HTTP 429")
    assert obs.rate_limit is not None and obs.rate_limit.remaining == 0


async def test_twitch_server_error_is_not_absence(
        twitch: FakeTwitch, twitch_url: str, session: aiohttp.ClientSession) -> None:
    twitch.set_faults(server_error_rate=1.0)
    obs = await check_user(twitch_url, session, "gone_one")
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.SERVER_ERROR)


@pytest.mark.parametrize(("faults", "kind"), HOSTILE)
async def test_twitch_hostile_answers_are_errors_never_absence(
        faults: dict[str, object], kind: ErrorKind, twitch: FakeTwitch, twitch_url: str,
        session: aiohttp.ClientSession) -> None:
    twitch.set_faults(**faults)  # type: ignore[arg-type]
    probe = twitch_probe(twitch_url, session)
    probe.timeout = 0.3
    obs = await probe.check(Target("gone_one"))
    assert (obs.result, obs.error) == (Result.ERROR, kind)


@pytest.mark.parametrize(("status", "body", "kind", "evidence"), [
    (200, {"data": {}}, ErrorKind.PARSE, "HTTP 200, no data list"),
    (200, {"data": [{"login": "x"}]}, ErrorKind.PARSE, "HTTP 200, user without an id"),
    (400, {"error": "Bad Request", "status": 400, "message": "Invalid login names"},
     ErrorKind.UNEXPECTED, "HTTP 400: Invalid login names"),
    (403, b"", ErrorKind.AUTH, "HTTP 403"),
    (503, b"", ErrorKind.SERVER_ERROR, "HTTP 503"),
])
def test_twitch_classify_errors(status: int, body: object, kind: ErrorKind,
                                evidence: str) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    obs = classify_users(Answer(status, {}, raw), Target("x"), AT)
    assert (obs.result, obs.error, obs.evidence) == (Result.ERROR, kind, evidence)


def test_twitch_classify_reads_ratelimit_headers() -> None:
    headers = {"Ratelimit-Limit": "800", "Ratelimit-Remaining": "799",
               "Ratelimit-Reset": "1700000060"}
    obs = classify_users(Answer(200, headers, b'{"data":[]}'), Target("x"), AT)
    assert obs.reason is AbsentReason.NOT_FOUND
    assert obs.rate_limit == RateLimit(remaining=799, limit=800, reset_at=1_700_000_060.0)
