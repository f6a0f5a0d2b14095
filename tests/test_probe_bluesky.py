"""The Bluesky probe against the fake AppView (real loopback HTTP) and as a pure function."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from monitor.config import PlatformConfig
from monitor.fakes.bluesky import FakeBluesky
from monitor.fakes.server import serve
from monitor.model import AbsentReason, ErrorKind, Observation, RateLimit, Result
from monitor.probes.base import Answer, ProbeError, Target
from monitor.probes.bluesky import (
    BlueskyProbe,
    classify_profile,
    classify_profiles,
    classify_repo_status,
    did_document_url,
    read_did_document,
)
from monitor.probes.corroboration import Unconfirmed
from tests.conftest import HOSTILE

AT = 1_700_000_000.0
ALICE_DID = "did:plc:ufbl4k27gp6kzas5glhz7fim"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def fake() -> FakeBluesky:
    return FakeBluesky({"alice.bsky.social": (ALICE_DID, "present"),
                        "broken.example.com": "invalid_handle", "bad.bsky.social": "takendown",
                        "paused.bsky.social": "suspended", "resting.bsky.social": "deactivated",
                        "gone.bsky.social": "deleted"})


@pytest.fixture
async def base_url(fake: FakeBluesky) -> AsyncIterator[str]:
    async with fake.running() as url:
        yield url


def make_probe(base_url: str, session: aiohttp.ClientSession) -> BlueskyProbe:
    # The fake is AppView, PDS and PLC directory in one; the directory lives under /plc.
    config = PlatformConfig.model_validate({"base_url": base_url, "plc_url": f"{base_url}/plc"})
    return BlueskyProbe(config, session, timeout=2.0, max_body_bytes=1 << 20)


async def check(base_url: str, session: aiohttp.ClientSession, handle: str,
                did: str | None = None) -> Observation:
    return await make_probe(base_url, session).check(Target(handle, did))


# --------------------------------------------------------------------------- every state


async def test_present_by_handle_reports_did_and_handle(
        base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, "@alice.bsky.social")
    assert (obs.result, obs.account_id, obs.handle, obs.evidence) == (
        Result.PRESENT, ALICE_DID, "alice.bsky.social", f"HTTP 200 did={ALICE_DID}")
    assert obs.rate_limit is not None and obs.rate_limit.limit == 3000


async def test_known_did_is_polled_by_did(
        fake: FakeBluesky, base_url: str, session: aiohttp.ClientSession) -> None:
    probe = make_probe(base_url, session)
    _, url, _ = probe.request(Target("alice.bsky.social", ALICE_DID))
    assert url == f"{base_url}/xrpc/app.bsky.actor.getProfile?actor={ALICE_DID}"
    obs = await probe.check(Target("old-name", ALICE_DID))
    assert (obs.result, obs.handle) == (Result.PRESENT, "alice.bsky.social")
    assert fake.request_count("alice.bsky.social") == 1


async def test_broken_handle_is_present_by_did_and_noted(
        fake: FakeBluesky, base_url: str, session: aiohttp.ClientSession) -> None:
    did = fake.account_id("broken.example.com")
    obs = await check(base_url, session, "broken.example.com", did)
    assert (obs.result, obs.handle, obs.evidence) == (
        Result.PRESENT, "handle.invalid", f"HTTP 200 did={did}, broken handle (handle.invalid)")


@pytest.mark.parametrize(("handle", "reason", "evidence"), [
    ("bad.bsky.social", AbsentReason.TAKEN_DOWN,
     "HTTP 400 AccountTakedown: Account has been suspended"),
    ("paused.bsky.social", AbsentReason.TAKEN_DOWN,
     "HTTP 400 AccountTakedown: Account has been suspended"),
    ("resting.bsky.social", AbsentReason.DEACTIVATED,
     "HTTP 400 AccountDeactivated: Account is deactivated"),
])
async def test_named_gone_answers_are_absent_with_their_reason(
        handle: str, reason: AbsentReason, evidence: str, fake: FakeBluesky, base_url: str,
        session: aiohttp.ClientSession) -> None:
    by_handle = await check(base_url, session, handle)
    assert (by_handle.result, by_handle.reason, by_handle.evidence) == (
        Result.ABSENT, reason, evidence)
    by_did = await check(base_url, session, handle, fake.account_id(handle))
    assert (by_did.result, by_did.reason) == (Result.ABSENT, reason)


# --------------------------------------------------------------------------- corroboration

NOT_FOUND = "HTTP 400 InvalidRequest: Profile not found"


@pytest.mark.parametrize(("state", "result", "detail", "evidence"), [
    # The PDS hosts no repo for the DID: deleted (the DID document still names the PDS).
    ("deleted", Result.ABSENT, AbsentReason.DELETED, f"{NOT_FOUND}; repo: RepoNotFound"),
    # did-method-plc answers 404 "DID not available" for a tombstoned DID.
    ("tombstoned", Result.ABSENT, AbsentReason.DELETED, f"{NOT_FOUND}; PLC 404: DID tombstoned"),
    # bluesky-social/pds#358: the AppView lost a live account; its repo is active.
    ("unindexed", Result.ERROR, ErrorKind.UNEXPECTED,
     f"{NOT_FOUND}; repo active on its PDS: the AppView is wrong (not indexed)"),
    ("desynchronized", Result.ERROR, ErrorKind.UNEXPECTED,
     f"{NOT_FOUND}; repo inactive: desynchronized"),
    ("throttled", Result.ERROR, ErrorKind.UNEXPECTED, f"{NOT_FOUND}; repo inactive: throttled"),
])
async def test_profile_not_found_counts_only_as_the_repository_says(
        state: str, result: Result, detail: object, evidence: str, fake: FakeBluesky,
        base_url: str, session: aiohttp.ClientSession) -> None:
    did = fake.set_state(f"{state}.bsky.social", state)
    fake.reset_counts()
    obs = await check(base_url, session, f"{state}.bsky.social", did)
    assert (obs.result, obs.reason or obs.error, obs.evidence) == (result, detail, evidence)
    assert obs.account_id == did
    assert obs.rate_limit is not None and obs.rate_limit.limit == 3000  # the AppView's budget


async def test_a_live_unindexed_account_found_by_handle_is_not_absent(
        fake: FakeBluesky, base_url: str, session: aiohttp.ClientSession) -> None:
    did = fake.set_state("moved.example.com", "unindexed")
    obs = await check(base_url, session, "moved.example.com")  # no DID learned yet
    assert (obs.result, obs.error, obs.account_id) == (Result.ERROR, ErrorKind.UNEXPECTED, did)
    assert "repo active" in obs.evidence


@pytest.mark.parametrize("handle", ["gone.bsky.social", "never.bsky.social"])
async def test_profile_not_found_for_a_handle_that_resolves_nowhere_is_an_error(
        handle: str, base_url: str, session: aiohttp.ClientSession) -> None:
    """Without a DID no repository can confirm it: a deleted account by handle alone is
    error (and shows as blind), never absent on the AppView's word."""
    obs = await check(base_url, session, handle)
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.UNEXPECTED)
    assert obs.evidence.startswith(f"{NOT_FOUND}; not confirmed: handle resolves to no DID")


async def test_a_did_the_plc_never_had_is_an_error(
        base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, "x.bsky.social", "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa")
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.UNEXPECTED)
    assert obs.evidence == (f"{NOT_FOUND}; not confirmed: PLC 404: DID not registered: "
                            "did:plc:aaaaaaaaaaaaaaaaaaaaaaaa")


async def test_did_web_is_resolved_through_its_own_host(
        fake: FakeBluesky, base_url: str, session: aiohttp.ClientSession) -> None:
    port = base_url.rsplit(":", 1)[1]
    did = f"did:web:localhost%3A{port}"  # http for localhost, as @atproto/identity does
    fake.set_state("web.example", "deleted", account_id=did)
    obs = await check(base_url, session, "web.example", did)
    assert (obs.result, obs.reason) == (Result.ABSENT, AbsentReason.DELETED)
    fake.set_state("web.example", "unindexed")
    obs = await check(base_url, session, "web.example", did)
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.UNEXPECTED)


@pytest.mark.parametrize(("faults", "kind"), HOSTILE)
async def test_a_failing_corroboration_is_an_error_never_absence(
        faults: dict[str, object], kind: ErrorKind, fake: FakeBluesky, base_url: str,
        session: aiohttp.ClientSession) -> None:
    """The AppView answers; the PLC directory (the same fake, after the first request)
    misbehaves: the answer stays an error of the directory's kind."""
    did = fake.account_id("gone.bsky.social")
    probe = make_probe(base_url, session)
    probe.timeout = 0.3
    first = await probe.check(Target("gone.bsky.social", did))
    assert first.reason is AbsentReason.DELETED  # corroborated when nothing misbehaves
    original = probe.confirm

    async def confirm_under_faults(target: Target, claim):  # type: ignore[no-untyped-def]
        fake.set_faults(**faults)  # type: ignore[arg-type]
        return await original(target, claim)

    probe.confirm = confirm_under_faults  # type: ignore[method-assign]
    obs = await probe.check(Target("gone.bsky.social", did))
    assert (obs.result, obs.error) == (Result.ERROR, kind)
    assert obs.evidence.startswith(f"{NOT_FOUND}; not confirmed: ")


async def test_corroboration_never_sends_the_appview_token_elsewhere(
        fake: FakeBluesky, base_url: str, session: aiohttp.ClientSession) -> None:
    seen: list[tuple[str, str | None]] = []

    @web.middleware
    async def spy(request: web.Request, handler):  # type: ignore[no-untyped-def]
        seen.append((request.path, request.headers.get("Authorization")))
        return await handler(request)

    app = fake.app()
    app.middlewares.insert(0, spy)
    closing = asyncio.Event()
    async with serve(app, closing) as url:
        config = PlatformConfig.model_validate({"base_url": url, "plc_url": f"{url}/plc",
                                                "token": "s3cret"})
        probe = BlueskyProbe(config, session, timeout=2.0, max_body_bytes=1 << 20)
        obs = await probe.check(Target("gone.bsky.social", fake.account_id("gone.bsky.social")))
    assert obs.reason is AbsentReason.DELETED
    assert [path for path, _ in seen] == ["/xrpc/app.bsky.actor.getProfile",
                                          f"/plc/{fake.account_id('gone.bsky.social')}",
                                          "/xrpc/com.atproto.sync.getRepoStatus"]
    assert [auth for _, auth in seen] == ["Bearer s3cret", None, None]


async def test_rename_keeps_the_did_with_the_new_handle(
        fake: FakeBluesky, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.rename("alice.bsky.social", "alice.example.com")
    obs = await check(base_url, session, "alice.bsky.social", ALICE_DID)
    assert (obs.result, obs.account_id, obs.handle) == (
        Result.PRESENT, ALICE_DID, "alice.example.com")


async def test_reregistered_handle_reports_its_own_did(
        fake: FakeBluesky, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.rename("alice.bsky.social", "alice.example.com")
    newcomer = fake.set_state("alice.bsky.social", "present")
    obs = await check(base_url, session, "alice.bsky.social")
    assert newcomer != ALICE_DID and newcomer.startswith("did:plc:")
    assert (obs.result, obs.account_id, obs.handle) == (
        Result.PRESENT, newcomer, "alice.bsky.social")


# --------------------------------------------------------------------------- errors


async def test_rate_limited_answer_is_an_error(
        fake: FakeBluesky, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.set_faults(rate_limit_rate=1.0)
    obs = await check(base_url, session, "gone.bsky.social")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.RATE_LIMITED, "HTTP 429 RateLimitExceeded")
    assert obs.rate_limit is not None and obs.rate_limit.remaining == 0


async def test_server_error_is_not_absence(
        fake: FakeBluesky, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.set_faults(server_error_rate=1.0)
    obs = await check(base_url, session, "gone.bsky.social")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.SERVER_ERROR, "HTTP 500 InternalServerError")


async def test_invalid_actor_is_unexpected_not_absent(
        base_url: str, session: aiohttp.ClientSession) -> None:
    obs = await check(base_url, session, "not a handle")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.UNEXPECTED,
        "HTTP 400 InvalidRequest: Error: actor must be a valid did or a handle")




@pytest.mark.parametrize(("faults", "kind"), HOSTILE)
async def test_hostile_answers_are_errors_never_absence(
        faults: dict[str, object], kind: ErrorKind, fake: FakeBluesky, base_url: str,
        session: aiohttp.ClientSession) -> None:
    fake.set_faults(**faults)  # type: ignore[arg-type]
    probe = make_probe(base_url, session)
    probe.timeout = 0.3
    obs = await probe.check(Target("gone.bsky.social"))
    assert (obs.result, obs.error) == (Result.ERROR, kind)


# --------------------------------------------------------------------------- batch


async def test_batch_asks_singly_only_for_the_dids_getprofiles_left_out(
        fake: FakeBluesky, base_url: str, session: aiohttp.ClientSession) -> None:
    handles = ["alice.bsky.social", "broken.example.com", "bad.bsky.social",
               "resting.bsky.social", "gone.bsky.social"]
    targets = [Target(h, fake.account_id(h)) for h in handles]
    fake.reset_counts()
    found = await make_probe(base_url, session).check_many(targets)
    # One getProfiles, three follow-up getProfile, and for "Profile not found" the PLC
    # directory and the PDS.
    assert fake.requests_total == 1 + 3 + 2
    assert {h: found[fake.account_id(h)].reason for h in handles} == {
        "alice.bsky.social": None, "broken.example.com": None,
        "bad.bsky.social": AbsentReason.TAKEN_DOWN,
        "resting.bsky.social": AbsentReason.DEACTIVATED,
        "gone.bsky.social": AbsentReason.DELETED}
    assert found[ALICE_DID].result is Result.PRESENT
    assert found[fake.account_id("broken.example.com")].handle == "handle.invalid"


async def test_an_account_getprofiles_omits_is_not_believed_absent(
        fake: FakeBluesky, base_url: str, session: aiohttp.ClientSession) -> None:
    """getProfiles leaves out an unindexed live account exactly as a deleted one."""
    lost = fake.set_state("lost.example.com", "unindexed")
    found = await make_probe(base_url, session).check_many(
        [Target("alice.bsky.social", ALICE_DID), Target("lost.example.com", lost)])
    assert found[ALICE_DID].result is Result.PRESENT
    assert (found[lost].result, found[lost].error) == (Result.ERROR, ErrorKind.UNEXPECTED)


async def test_batch_splits_into_requests_of_at_most_25(
        fake: FakeBluesky, base_url: str, session: aiohttp.ClientSession) -> None:
    targets = [Target(f"u{i}.bsky.social", fake.set_state(f"u{i}.bsky.social", "present"))
               for i in range(30)]
    fake.reset_counts()
    found = await make_probe(base_url, session).check_many(targets)
    assert fake.requests_total == 2
    assert all(o.result is Result.PRESENT for o in found.values()) and len(found) == 30


async def test_batch_failure_is_an_error_for_every_did_without_follow_ups(
        fake: FakeBluesky, base_url: str, session: aiohttp.ClientSession) -> None:
    fake.set_faults(rate_limit_rate=1.0)
    fake.reset_counts()
    found = await make_probe(base_url, session).check_many(
        [Target("a", ALICE_DID), Target("b", fake.account_id("gone.bsky.social"))])
    assert [o.error for o in found.values()] == [ErrorKind.RATE_LIMITED] * 2
    assert fake.requests_total == 1


async def test_batch_needs_dids(base_url: str, session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="needs DIDs"):
        await make_probe(base_url, session).check_many([Target("alice.bsky.social")])


# --------------------------------------------------------------------------- pure classify


def answer(status: int, body: object, headers: dict[str, str] | None = None) -> Answer:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Answer(status, headers or {}, raw)


def classify(status: int, body: object, headers: dict[str, str] | None = None) -> Observation:
    return classify_profile(answer(status, body, headers), Target("a.b"), AT)


@pytest.mark.parametrize(("status", "body", "kind", "evidence"), [
    (200, b"nope", ErrorKind.PARSE, "HTTP 200, body is not JSON"),
    (200, {"handle": "a.b"}, ErrorKind.PARSE, "HTTP 200, profile without a DID"),
    (200, ["x"], ErrorKind.PARSE, "HTTP 200, not a JSON object"),
    (400, {"error": "InvalidRequest", "message": "Something else"}, ErrorKind.UNEXPECTED,
     "HTTP 400 InvalidRequest: Something else"),
    (400, b"<html>", ErrorKind.UNEXPECTED, "HTTP 400"),
    (401, {"error": "AuthMissing", "message": "Authentication Required"}, ErrorKind.AUTH,
     "HTTP 401 AuthMissing"),
    (502, b"bad gateway", ErrorKind.SERVER_ERROR, "HTTP 502"),
    (404, b"", ErrorKind.UNEXPECTED, "HTTP 404"),
])
def test_classify_errors(status: int, body: object, kind: ErrorKind, evidence: str) -> None:
    obs = classify(status, body)
    assert (obs.result, obs.error, obs.evidence) == (Result.ERROR, kind, evidence)


def test_classify_reads_the_rate_limit_headers() -> None:
    obs = classify(200, {"did": ALICE_DID, "handle": "a.b"},
                   {"RateLimit-Limit": "3000", "RateLimit-Remaining": "2999",
                    "RateLimit-Reset": "1700000300"})
    assert obs.rate_limit == RateLimit(remaining=2999, limit=3000, reset_at=1_700_000_300.0)


def test_classify_profiles_leaves_out_what_the_answer_omits() -> None:
    body = {"profiles": [{"did": ALICE_DID, "handle": "a.b"}, {"did": "did:plc:other"}]}
    found = classify_profiles(answer(200, body), [ALICE_DID, "did:plc:gone"], AT)
    assert list(found) == [ALICE_DID]
    assert found[ALICE_DID].result is Result.PRESENT


# --------------------------------------------------------------------------- fake shapes


async def test_fake_answers_in_the_reference_shapes(
        base_url: str, session: aiohttp.ClientSession) -> None:
    path = f"{base_url}/xrpc/app.bsky.actor.getProfile?actor="
    async with session.get(path + "bad.bsky.social") as r:
        assert r.status == 400
        assert await r.read() == (
            b'{"error":"AccountTakedown","message":"Account has been suspended"}')
        assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(r.headers)
    async with session.get(path + "resting.bsky.social") as r:
        assert await r.read() == (
            b'{"error":"AccountDeactivated","message":"Account is deactivated"}')
    async with session.get(path + "gone.bsky.social") as r:
        assert await r.read() == b'{"error":"InvalidRequest","message":"Profile not found"}'
    async with session.get(path + ALICE_DID) as r:
        profile = await r.json()
    assert (profile["did"], profile["handle"], profile["followersCount"]) == (
        ALICE_DID, "alice.bsky.social", 42)


# --------------------------------------------------------------------------- pure corroboration

DID = "did:plc:ufbl4k27gp6kzas5glhz7fim"


def test_profile_not_found_alone_is_unconfirmed_never_absent() -> None:
    obs = classify_profile(answer(400, {"error": "InvalidRequest", "message": "Profile not found"}),
                           Target("a.b", DID), AT)
    assert isinstance(obs, Unconfirmed)
    assert (obs.result, obs.error, obs.account_id) == (Result.ERROR, ErrorKind.UNEXPECTED, DID)


@pytest.mark.parametrize(("status", "body", "result", "detail"), [
    (200, {"did": DID, "active": True, "rev": "3l4v"}, Result.ERROR, ErrorKind.UNEXPECTED),
    (200, {"did": DID, "active": False, "status": "deactivated"}, Result.ABSENT,
     AbsentReason.DEACTIVATED),
    (200, {"did": DID, "active": False, "status": "takendown"}, Result.ABSENT,
     AbsentReason.TAKEN_DOWN),
    (200, {"did": DID, "active": False, "status": "suspended"}, Result.ABSENT,
     AbsentReason.SUSPENDED),
    (200, {"did": DID, "active": False, "status": "deleted"}, Result.ABSENT, AbsentReason.DELETED),
    (200, {"did": DID, "active": False, "status": "throttled"}, Result.ERROR, ErrorKind.UNEXPECTED),
    (200, {"did": DID, "active": False, "status": "someday"}, Result.ERROR, ErrorKind.UNEXPECTED),
    (200, {"did": DID, "active": False}, Result.ERROR, ErrorKind.UNEXPECTED),  # no claim made
    (200, {"did": "did:plc:other", "active": False, "status": "deleted"}, Result.ERROR,
     ErrorKind.PARSE),
    (200, {"did": DID, "active": "no"}, Result.ERROR, ErrorKind.PARSE),
    (400, {"error": "RepoNotFound", "message": f"Could not find repo for DID: {DID}"},
     Result.ABSENT, AbsentReason.DELETED),
    (400, {"error": "RepoSuspended", "message": "Repo has been suspended"}, Result.ABSENT,
     AbsentReason.SUSPENDED),
    (400, {"error": "InvalidRequest", "message": "Error: did must be a valid did"},
     Result.ERROR, ErrorKind.UNEXPECTED),
    (429, {"error": "RateLimitExceeded"}, Result.ERROR, ErrorKind.RATE_LIMITED),
    (502, b"<html>", Result.ERROR, ErrorKind.SERVER_ERROR),
])
def test_repo_status_means_what_the_lexicon_says(status: int, body: object, result: Result,
                                                  detail: object) -> None:
    obs = classify_repo_status(answer(status, body), DID, AT)
    assert (obs.result, obs.reason or obs.error) == (result, detail)


def _document(**service: object) -> dict[str, object]:
    entry = {"id": "#atproto_pds", "type": "AtprotoPersonalDataServer",
             "serviceEndpoint": "https://pds.example/"} | service
    return {"id": DID, "service": [entry]}


def test_did_document_names_the_pds_or_the_tombstone() -> None:
    assert read_did_document(answer(200, _document()), DID, AT) == "https://pds.example"
    tombstone = read_did_document(answer(404, {"message": f"DID not available: {DID}"}), DID, AT)
    assert isinstance(tombstone, Observation) and tombstone.reason is AbsentReason.DELETED
    gone = read_did_document(answer(410, b""), DID, AT)
    assert isinstance(gone, Observation) and gone.reason is AbsentReason.DELETED


@pytest.mark.parametrize(("status", "body", "kind"), [
    (404, {"message": f"DID not registered: {DID}"}, ErrorKind.UNEXPECTED),
    (200, _document(serviceEndpoint="ftp://pds.example"), ErrorKind.PARSE),
    (200, _document(type="SomethingElse"), ErrorKind.UNEXPECTED),
    (200, {"id": "did:plc:other", "service": []}, ErrorKind.PARSE),
    (200, [], ErrorKind.PARSE),
    (503, b"", ErrorKind.SERVER_ERROR),
])
def test_a_did_document_that_names_no_pds_is_an_error(status: int, body: object,
                                                      kind: ErrorKind) -> None:
    with pytest.raises(ProbeError) as caught:
        read_did_document(answer(status, body), DID, AT)
    assert caught.value.kind is kind


def test_did_document_urls() -> None:
    assert did_document_url(DID, "https://plc.directory/") == f"https://plc.directory/{DID}"
    assert did_document_url("did:web:example.com", "x") == "https://example.com/.well-known/did.json"
    assert did_document_url("did:web:localhost%3A8080", "x") == (
        "http://localhost:8080/.well-known/did.json")
    for unsupported in ("did:web:example.com:user:alice", "did:key:z6Mk", "did:web:"):
        with pytest.raises(ProbeError):
            did_document_url(unsupported, "x")
