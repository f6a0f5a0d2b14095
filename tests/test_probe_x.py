"""The X API v2 probe against the fake (real loopback HTTP) and as a pure function."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections.abc import AsyncIterator

import aiohttp
import pytest

from monitor.config import PlatformConfig
from monitor.fakes.x import TOKEN, FakeX
from monitor.model import AbsentReason, ErrorKind, Observation, RateLimit, Result
from monitor.probes.base import Answer, Target
from monitor.probes.x import XProbe, classify_batch, classify_user
from tests.conftest import HOSTILE

AT = 1_700_000_000.0
TRUMP = "25073877"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def fake() -> FakeX:
    return FakeX({"realDonaldTrump": (TRUMP, "present"), "XDevelopers": ("2244994945", "present"),
                  "locked": "protected", "censored": "withheld", "banned": "suspended",
                  "quitter": "deactivated", "erased": "deleted", "blocker": "restricted"})


@pytest.fixture
async def base_url(fake: FakeX) -> AsyncIterator[str]:
    async with fake.running() as url:
        yield url


def make_probe(base_url: str, session: aiohttp.ClientSession, token: str | None = TOKEN) -> XProbe:
    config = PlatformConfig.model_validate({"base_url": base_url, "token": token})
    return XProbe(config, session, timeout=2.0, max_body_bytes=1 << 20)


async def check(base_url: str, session: aiohttp.ClientSession, handle: str,
                account_id: str | None = None) -> Observation:
    return await make_probe(base_url, session).check(Target(handle, account_id))


# --------------------------------------------------------------------------- every state


async def test_present_by_username_reports_id_and_handle(
        base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, "realdonaldtrump")
    assert (obs.result, obs.reason, obs.error) == (Result.PRESENT, None, None)
    assert (obs.account_id, obs.handle) == (TRUMP, "realDonaldTrump")
    assert obs.evidence == f"HTTP 200 id={TRUMP}"
    assert obs.latency > 0


async def test_present_by_id_is_polled_by_id(
        fake: FakeX, base_url: str, session: aiohttp.ClientSession) -> None:
    probe = make_probe(base_url, session)
    _, url, headers = probe.request(Target("whatever", TRUMP))
    assert url == f"{base_url}/2/users/{TRUMP}?user.fields=protected,withheld"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    obs = await probe.check(Target("whatever", TRUMP))
    assert (obs.result, obs.account_id, obs.handle) == (Result.PRESENT, TRUMP, "realDonaldTrump")
    assert fake.request_count("realDonaldTrump") == 1


async def test_protected_account_is_present_and_says_so(
        fake: FakeX, base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, "locked")
    assert (obs.result, obs.evidence) == (
        Result.PRESENT, f"HTTP 200 id={fake.account_id('locked')}, protected")


async def test_withheld_account_is_present_and_names_the_countries(
        fake: FakeX, base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, "censored")
    assert (obs.result, obs.evidence) == (
        Result.PRESENT, f"HTTP 200 id={fake.account_id('censored')}, withheld in DE")


@pytest.mark.parametrize("by_id", [False, True])
async def test_suspended_account_is_absent_suspended(
        by_id: bool, fake: FakeX, base_url: str, session: aiohttp.ClientSession) -> None:
    account_id = fake.account_id("banned") if by_id else None
    obs = await check(base_url, session, "banned", account_id)
    assert (obs.result, obs.reason, obs.evidence) == (
        Result.ABSENT, AbsentReason.SUSPENDED, "HTTP 200 suspended")
    assert obs.account_id == account_id  # by id the answer names the id; by name, no id


@pytest.mark.parametrize("by_id", [False, True])
async def test_not_authorized_for_resource_is_present_but_restricted(
        by_id: bool, fake: FakeX, base_url: str, session: aiohttp.ClientSession) -> None:
    """X names the account and will not show it to us: it exists, so it is not absent."""
    account_id = fake.account_id("blocker") if by_id else None
    obs = await check(base_url, session, "blocker", account_id)
    assert (obs.result, obs.evidence) == (
        Result.PRESENT, "HTTP 200 not authorized to see it (restricted)")
    assert obs.account_id == account_id


async def test_not_authorized_in_a_batch_is_present_for_that_id(
        fake: FakeX, base_url: str, session: aiohttp.ClientSession) -> None:
    blocker, banned = fake.account_id("blocker"), fake.account_id("banned")
    found = await make_probe(base_url, session).check_many(
        [Target("blocker", blocker), Target("banned", banned)])
    assert (found[blocker].result, found[banned].reason) == (
        Result.PRESENT, AbsentReason.SUSPENDED)


@pytest.mark.parametrize("handle", ["quitter", "erased", "nobody"])
async def test_deactivated_deleted_and_unknown_look_alike_not_found(
        handle: str, base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, handle)
    assert (obs.result, obs.reason, obs.evidence) == (
        Result.ABSENT, AbsentReason.NOT_FOUND, "HTTP 200 not found (deactivated or deleted)")
    assert (obs.account_id, obs.handle) == (None, None)


async def test_unknown_id_is_absent_not_found_and_names_the_id(
        base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, "x", account_id="123")
    assert (obs.result, obs.reason, obs.account_id) == (
        Result.ABSENT, AbsentReason.NOT_FOUND, "123")


async def test_state_changes_keep_the_same_id(
        fake: FakeX, base_url: str, session: aiohttp.ClientSession) -> None:
    results = []
    for state in ("present", "suspended", "present"):
        fake.set_state("realDonaldTrump", state)
        results.append(await check(base_url, session, "x", TRUMP))
    assert [o.result for o in results] == [Result.PRESENT, Result.ABSENT, Result.PRESENT]
    assert [o.account_id for o in results] == [TRUMP] * 3


async def test_rename_keeps_the_id_with_the_new_handle(
        fake: FakeX, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.rename("realDonaldTrump", "TrumpNew")
    by_id = await check(base_url, session, "realDonaldTrump", TRUMP)
    by_old_name = await check(base_url, session, "realDonaldTrump")
    assert (by_id.result, by_id.account_id, by_id.handle) == (Result.PRESENT, TRUMP, "TrumpNew")
    assert (by_old_name.result, by_old_name.reason) == (Result.ABSENT, AbsentReason.NOT_FOUND)


async def test_reregistered_handle_reports_its_own_different_id(
        fake: FakeX, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.rename("realDonaldTrump", "TrumpNew")
    squatter = fake.set_state("realDonaldTrump", "present")
    obs = await check(base_url, session, "realDonaldTrump")
    assert squatter != TRUMP
    assert (obs.result, obs.account_id, obs.handle) == (
        Result.PRESENT, squatter, "realDonaldTrump")


# --------------------------------------------------------------------------- errors


async def test_wrong_or_missing_token_is_an_auth_error(
        base_url: str, session: aiohttp.ClientSession) -> None:
    for token in ("wrong", None):
        obs = await make_probe(base_url, session, token).check(Target("realDonaldTrump"))
        assert (obs.result, obs.error, obs.evidence) == (
            Result.ERROR, ErrorKind.AUTH, "HTTP 401 Unauthorized"), token


async def test_rate_limited_answer_is_an_error_with_an_empty_budget(
        fake: FakeX, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.set_faults(rate_limit_rate=1.0)
    obs = await check(base_url, session, "erased")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.RATE_LIMITED, "HTTP 429 Too Many Requests")
    assert obs.rate_limit is not None
    assert (obs.rate_limit.remaining, obs.rate_limit.limit) == (0, 300)


async def test_usage_cap_is_rate_limited_not_absent(
        fake: FakeX, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.set_override("usage_cap")
    obs = await check(base_url, session, "erased")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.RATE_LIMITED,
        "HTTP 429 UsageCapExceeded: Usage cap exceeded: Monthly product cap")


async def test_server_error_is_not_absence(
        fake: FakeX, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.set_faults(server_error_rate=1.0)
    obs = await check(base_url, session, "erased")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.SERVER_ERROR, "HTTP 503 Service Unavailable")


async def test_malformed_username_is_unexpected_not_absent(
        base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, "way_too_long_for_x_handles")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.UNEXPECTED, "HTTP 400 Invalid Request")


async def test_every_answer_carries_the_rate_limit_budget(
        fake: FakeX, base_url: str, session: aiohttp.ClientSession) -> None:
    first = await check(base_url, session, "realDonaldTrump")
    second = await check(base_url, session, "nobody")
    assert first.rate_limit is not None and second.rate_limit is not None
    assert first.rate_limit.limit == 300
    assert second.rate_limit.remaining == first.rate_limit.remaining - 1  # type: ignore[operator]
    assert first.rate_limit.reset_at is not None and first.rate_limit.reset_at > AT




@pytest.mark.parametrize(("faults", "kind"), HOSTILE)
async def test_hostile_answers_are_errors_never_absence(
        faults: dict[str, object], kind: ErrorKind, fake: FakeX, base_url: str,
        session: aiohttp.ClientSession) -> None:
    fake.set_faults(**faults)  # type: ignore[arg-type]
    probe = make_probe(base_url, session)
    probe.timeout = 0.3
    obs = await probe.check(Target("erased"))
    assert (obs.result, obs.error) == (Result.ERROR, kind)


# --------------------------------------------------------------------------- batch


async def test_batch_maps_every_id_to_its_own_observation(
        fake: FakeX, base_url: str, session: aiohttp.ClientSession) -> None:
    ids = {h: fake.account_id(h) for h in ("realDonaldTrump", "banned", "quitter", "locked")}
    targets = [Target(h, i) for h, i in ids.items()] + [Target("ghost", "999")]
    fake.reset_counts()
    found = await make_probe(base_url, session).check_many(targets)
    assert fake.requests_total == 1
    assert set(found) == {*ids.values(), "999"}
    assert (found[TRUMP].result, found[TRUMP].handle) == (Result.PRESENT, "realDonaldTrump")
    assert found[ids["locked"]].evidence.endswith(", protected")
    assert (found[ids["banned"]].reason, found[ids["banned"]].account_id) == (
        AbsentReason.SUSPENDED, ids["banned"])
    assert found[ids["quitter"]].reason is AbsentReason.NOT_FOUND
    assert found["999"].reason is AbsentReason.NOT_FOUND
    assert all(o.rate_limit is not None and o.latency > 0 for o in found.values())


async def test_batch_splits_into_requests_of_at_most_100_ids(
        fake: FakeX, base_url: str, session: aiohttp.ClientSession) -> None:
    targets = [Target(f"u{i}", str(1000 + i)) for i in range(150)] + [Target("t", TRUMP)]
    fake.reset_counts()
    found = await make_probe(base_url, session).check_many(targets)
    assert fake.requests_total == 2
    assert len(found) == 151
    assert found[TRUMP].result is Result.PRESENT
    assert found["1000"].reason is AbsentReason.NOT_FOUND


async def test_batch_failure_is_the_same_error_for_every_id(
        fake: FakeX, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.set_faults(server_error_rate=1.0)
    found = await make_probe(base_url, session).check_many([Target("a", TRUMP), Target("b", "1")])
    assert {i: o.error for i, o in found.items()} == {
        TRUMP: ErrorKind.SERVER_ERROR, "1": ErrorKind.SERVER_ERROR}
    # one answer, one observation: each account's last error refers to it, not a copy
    assert found[TRUMP] is found["1"]
    assert found[TRUMP].latency > 0 and found[TRUMP].rate_limit is not None


async def test_batch_needs_ids(base_url: str, session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="needs account ids"):
        await make_probe(base_url, session).check_many([Target("handle-only")])
    assert await make_probe(base_url, session).check_many([]) == {}


def test_batch_id_in_neither_data_nor_errors_is_unexpected() -> None:
    body = {"data": [{"id": "1", "name": "A", "username": "a"}]}
    found = classify_batch(answer(200, body), ["1", "2"], AT)
    assert found["1"].result is Result.PRESENT
    assert (found["2"].result, found["2"].error, found["2"].evidence) == (
        Result.ERROR, ErrorKind.UNEXPECTED, "HTTP 200, id in neither data nor errors")


# --------------------------------------------------------------------------- pure classify

REFERENCE_NOT_FOUND = {"errors": [{
    "value": "u", "detail": "Could not find user with username: [u].",
    "title": "Not Found Error", "resource_type": "user", "parameter": "username",
    "resource_id": "u", "type": "https://api.twitter.com/2/problems/resource-not-found"}]}
REFERENCE_SUSPENDED = {"errors": [{
    "parameter": "username", "resource_id": "u", "value": "u",
    "detail": "User has been suspended: [u].", "title": "Forbidden", "resource_type": "user",
    "type": "https://api.twitter.com/2/problems/resource-not-found"}]}


def answer(status: int, body: object, headers: dict[str, str] | None = None) -> Answer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Answer(status, headers or {}, raw)


def classify(status: int, body: object, headers: dict[str, str] | None = None) -> Observation:
    return classify_user(answer(status, body, headers), Target("u"), AT)


def test_reference_present_body_is_present() -> None:
    obs = classify(200, b'{"data":{"id":"2244994945","name":"X Developers",'
                        b'"username":"XDevelopers"}}')
    assert (obs.result, obs.account_id, obs.handle, obs.at) == (
        Result.PRESENT, "2244994945", "XDevelopers", AT)


def test_reference_error_bodies_are_absent() -> None:
    assert classify(200, REFERENCE_NOT_FOUND).reason is AbsentReason.NOT_FOUND
    assert classify(200, REFERENCE_SUSPENDED).reason is AbsentReason.SUSPENDED


def test_suspended_is_told_by_title_alone() -> None:
    body = {"errors": [{**REFERENCE_SUSPENDED["errors"][0], "detail": "reworded"}]}
    assert classify(200, body).reason is AbsentReason.SUSPENDED


def test_data_beside_errors_is_present() -> None:
    body = {"data": {"id": "1", "username": "a"},
            "errors": [{"title": "Not Found Error", "resource_type": "tweet"}]}
    assert classify(200, body).result is Result.PRESENT


@pytest.mark.parametrize(("status", "body", "kind", "evidence"), [
    (200, b"<html>", ErrorKind.PARSE, "HTTP 200, body is not JSON"),
    (200, {}, ErrorKind.PARSE, "HTTP 200 with neither data nor errors"),
    (200, [], ErrorKind.PARSE, "HTTP 200, not a JSON object"),
    (200, {"data": {"username": "a"}}, ErrorKind.PARSE, "HTTP 200, data without an id"),
    (200, {"errors": [{"title": "Authorization Error", "resource_type": "tweet"}]},
     ErrorKind.UNEXPECTED, "HTTP 200, error not about a user: Authorization Error"),
    (200, {"errors": [{"title": "Odd", "resource_type": "user", "type": "about:blank"}]},
     ErrorKind.UNEXPECTED, "HTTP 200 error: Odd"),
    (401, {"title": "Unauthorized", "type": "about:blank", "status": 401,
           "detail": "Unauthorized"}, ErrorKind.AUTH, "HTTP 401 Unauthorized"),
    (403, {"title": "Client Forbidden", "reason": "client-not-enrolled"}, ErrorKind.AUTH,
     "HTTP 403 Client Forbidden"),
    (429, {"title": "UsageCapExceeded", "detail": "Usage cap exceeded: Monthly product cap",
           "type": "https://api.twitter.com/2/problems/usage-capped", "period": "Monthly",
           "scope": "Product"}, ErrorKind.RATE_LIMITED,
     "HTTP 429 UsageCapExceeded: Usage cap exceeded: Monthly product cap"),
    (500, b"oops", ErrorKind.SERVER_ERROR, "HTTP 500"),
    (404, b"", ErrorKind.UNEXPECTED, "HTTP 404"),
])
def test_classify_errors(status: int, body: object, kind: ErrorKind, evidence: str) -> None:
    obs = classify(status, body)
    assert (obs.result, obs.error, obs.evidence) == (Result.ERROR, kind, evidence)


SUSPENDED_ERROR = {"parameter": "id", "resource_id": "123", "value": "123",
                   "detail": "User has been suspended: [123].", "title": "Forbidden",
                   "resource_type": "user",
                   "type": "https://api.twitter.com/2/problems/resource-not-found"}
NOT_FOUND_ERROR = {"value": "123", "detail": "Could not find user with id: [123].",
                   "title": "Not Found Error", "resource_type": "user", "parameter": "id",
                   "resource_id": "123",
                   "type": "https://api.twitter.com/2/problems/resource-not-found"}


@pytest.mark.parametrize(("body", "reason", "evidence"), [
    ({"errors": [SUSPENDED_ERROR]}, AbsentReason.SUSPENDED, "HTTP 404 suspended"),
    ({"errors": [NOT_FOUND_ERROR]}, AbsentReason.NOT_FOUND,
     "HTTP 404 not found (deactivated or deleted)"),
    ({"title": "Not Found Error", "detail": "Could not find user with id: [123].",
      "type": "https://api.twitter.com/2/problems/resource-not-found", "status": 404},
     AbsentReason.NOT_FOUND, "HTTP 404 not found (deactivated or deleted)"),
])
def test_a_404_single_lookup_in_xs_own_words_is_an_absence(
        body: object, reason: AbsentReason, evidence: str) -> None:
    """X's guide: a suspended or deleted user's single lookup returns 404."""
    obs = classify(404, body)
    assert (obs.result, obs.reason, obs.evidence) == (Result.ABSENT, reason, evidence)


@pytest.mark.parametrize("body", [b"<html>Not Found</html>", {"message": "Not Found"},
                                  {"errors": [{"title": "Odd", "resource_type": "tweet"}]}])
def test_any_other_404_is_no_evidence(body: object) -> None:
    obs = classify(404, body)
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.UNEXPECTED)


def test_classify_carries_the_rate_limit_headers() -> None:
    headers = {"x-rate-limit-limit": "300", "x-rate-limit-remaining": "0",
               "x-rate-limit-reset": "1700000900"}
    obs = classify(429, {"title": "Too Many Requests"}, headers)
    assert obs.rate_limit == RateLimit(remaining=0, limit=300, reset_at=1_700_000_900.0)


# --------------------------------------------------------------------------- fake shapes


async def test_fake_answers_in_the_reference_shapes(
        base_url: str, session: aiohttp.ClientSession) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with session.get(f"{base_url}/2/users/by/username/XDevelopers", headers=auth) as r:
        assert r.status == 200
        assert await r.read() == (b'{"data":{"id":"2244994945","name":"XDevelopers",'
                                  b'"username":"XDevelopers"}}')
        assert {"x-rate-limit-limit", "x-rate-limit-remaining",
                "x-rate-limit-reset"} <= {k.lower() for k in r.headers}
    async with session.get(f"{base_url}/2/users/by/username/u", headers=auth) as r:
        assert (r.status, await r.json()) == (200, REFERENCE_NOT_FOUND)
    async with session.get(f"{base_url}/2/users/by/username/u", headers={}) as r:
        assert r.status == 401
        assert await r.read() == (b'{"title":"Unauthorized","type":"about:blank",'
                                  b'"status":401,"detail":"Unauthorized"}')


async def test_http_control_renames_and_sets_state(
        fake: FakeX, base_url: str, session: aiohttp.ClientSession) -> None:
    async with session.post(f"{base_url}/_control/accounts/realDonaldTrump",
                            json={"rename_to": "Renamed"}) as resp:
        assert await resp.json() == {"handle": "Renamed", "id": TRUMP, "state": "present"}
    async with session.post(f"{base_url}/_control/accounts/Renamed",
                            json={"state": "suspended"}) as resp:
        assert resp.status == 200
    async with session.post(f"{base_url}/_control/override", json={"name": "nope"}) as resp:
        assert resp.status == 400
    obs = await check(base_url, session, "x", TRUMP)
    assert (obs.reason, obs.account_id) == (AbsentReason.SUSPENDED, TRUMP)
    async with session.get(f"{base_url}/_control/stats") as resp:
        stats = await resp.json()
    assert stats["accounts"]["Renamed"] == "suspended"
    assert stats["requests"] == {"Renamed": 1}


@pytest.mark.slow
async def test_fake_runs_as_a_separate_process(session: aiohttp.ClientSession) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor.fakes.x", "--port", "0",
        "--account", f"realDonaldTrump={TRUMP}:present", "--account", "banned=suspended",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode().strip()
        assert url.startswith("http://127.0.0.1:")
        present = await check(url, session, "x", TRUMP)
        assert (present.result, present.handle) == (Result.PRESENT, "realDonaldTrump")
        assert (await check(url, session, "banned")).reason is AbsentReason.SUSPENDED
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 10)
    assert code == 0, (await proc.stderr.read()).decode() if proc.stderr else ""


@pytest.mark.parametrize(("state", "reason"), [("suspended", AbsentReason.SUSPENDED),
                                               ("deleted", AbsentReason.NOT_FOUND)])
async def test_a_fake_answering_404_as_xs_guide_says_still_reads_absent(
        state: str, reason: AbsentReason) -> None:
    fake = FakeX({"gone": ("123", state)}, not_found_status=404)
    async with fake.running() as url, aiohttp.ClientSession() as session:
        probe = make_probe(url, session)
        obs = await probe.check(Target("gone", "123"))
        by_name = await probe.check(Target("gone"))
    assert (obs.result, obs.reason, obs.evidence.split()[:2]) == (Result.ABSENT, reason,
                                                                  ["HTTP", "404"])
    assert (by_name.result, by_name.reason) == (Result.ABSENT, reason)
