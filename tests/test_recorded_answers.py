"""Real answers, recorded by public client libraries, replayed through our classifiers.

Each fixture under ``tests/fixtures/recorded/<platform>/`` is one answer a real platform
gave (tweepy cassettes, PyGithub ReplayData, PRAW cassettes, Mastodon.py cassettes, the
atproto SDK's test data, issue threads), with its source (repository, path, commit) and the
result the platform's documentation gives it (``expected``, with the reason in ``why``).
The expectations were written from the documentation, not from what our code says: a
failure here is a classifier that disagrees with the platform.

Three layers:

- every fixture through its platform's pure classifier, with the documented expectation;
- every fixture through *every* classifier: whatever the platform, an answer is classified
  (one observation, never a traceback);
- every single-lookup fixture served by the platform's fake for one account and checked by
  the real probe over loopback HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.config import PlatformConfig
from monitor.fakes.bluesky import FakeBluesky
from monitor.fakes.github import FakeGitHub
from monitor.fakes.mastodon import FakeMastodon
from monitor.fakes.recorded import Recording, load_all
from monitor.fakes.reddit import FakeReddit
from monitor.fakes.server import FakeServer
from monitor.fakes.x import TOKEN, FakeX
from monitor.model import Observation, Result
from monitor.probes import PROBES, bluesky, github, mastodon, reddit, x
from monitor.probes.base import Answer, ProbeError, Target
from monitor.probes.corroboration import Unconfirmed

ROOT = Path(__file__).parent / "fixtures" / "recorded"
RECORDINGS = load_all(ROOT)
AT = 1_700_000_000.0
PLATFORMS = ("bluesky", "github", "mastodon", "reddit", "x")


def answer_of(rec: Recording) -> Answer:
    return Answer(rec.status, dict(rec.headers), rec.body.encode(), rec.request.get("url", ""))


def matches(obs: Observation, expected: dict[str, Any]) -> bool:
    """Does ``obs`` say what the documentation says (result, and reason/error when given)?"""
    if obs.result.value != expected["result"]:
        return False
    if "reason" in expected and (obs.reason is None or obs.reason.value != expected["reason"]):
        return False
    if "error" in expected and (obs.error is None or obs.error.value != expected["error"]):
        return False
    if "unconfirmed" in expected:
        return isinstance(obs, Unconfirmed) and obs.claim.value == expected["unconfirmed"]
    return not isinstance(obs, Unconfirmed)


# --------------------------------------------------------------------------- the fixtures


def test_there_are_enough_recordings_from_every_platform() -> None:
    counts = {p: sum(r.platform == p for r in RECORDINGS) for p in PLATFORMS}
    assert sum(counts.values()) >= 60, counts
    assert min(counts.values()) >= 5, counts


@pytest.mark.parametrize("rec", RECORDINGS, ids=lambda r: r.name)
def test_every_fixture_names_its_source_and_keeps_no_secret(rec: Recording) -> None:
    assert rec.platform == rec.path.parent.name
    assert {"repository", "path", "commit"} <= rec.source.keys()
    assert "/" in rec.source["repository"] and rec.source["path"]
    if rec.source["commit"] == "-":  # an issue thread, not a file: it names the thread
        assert str(rec.source.get("issue", "")).startswith("https://github.com/")
    else:
        assert len(rec.source["commit"]) == 40
    assert rec.expected["why"], "the expectation cites the documentation"
    lowered = {k.lower() for k in rec.headers}
    assert not lowered & {"set-cookie", "cookie", "authorization"}


# --------------------------------------------------------------------------- pure classifiers


def classify_one(rec: Recording) -> list[tuple[str, Observation]]:
    """The platform's pure classifier on one recording: (what, observation) pairs."""
    answer, handle = answer_of(rec), "recorded"
    if rec.platform == "github":
        return [("user", github.classify_user(answer, Target(handle), AT))]
    if rec.platform == "reddit":
        return [("about", reddit.classify_about(answer, Target(handle), AT))]
    if rec.platform == "mastodon":
        return [("account", mastodon.classify_account(answer, AT))]
    if rec.platform == "x":
        if rec.lookup == "batch":
            found = x.classify_batch(answer, rec.expected["ids"], AT)
            return [(i, found[i]) for i in rec.expected["ids"]]
        return [("user", x.classify_user(answer, Target(handle), AT))]
    assert rec.platform == "bluesky"
    return [("profile", bluesky.classify_profile(answer, Target(handle), AT))]


def read_bluesky_identity(rec: Recording) -> dict[str, str]:
    """The identity readers (resolveHandle, DID document) on one recording."""
    try:
        if rec.lookup == "resolve_handle":
            return {"result": "did", "did": bluesky.read_resolved_handle(answer_of(rec))}
        pds = bluesky.read_did_document(answer_of(rec), rec.expected["did"], AT)
    except ProbeError as exc:
        return {"result": "error", "error": exc.kind.value}
    if isinstance(pds, Observation):
        return {"result": pds.result.value}
    return {"result": "pds", "did": rec.expected["did"], "pds": pds}


# Recordings a classifier gets wrong for a reason outside this suite's files, each with the
# fix that is due. strict: once fixed, the xfail fails and the entry must go.
KNOWN_WRONG: dict[str, str] = {}  # fixture name -> why our classifier is wrong (xfail)


def _marked(recs: list[Recording]) -> list[Any]:
    return [pytest.param(r, id=r.name, marks=pytest.mark.xfail(
                strict=True, reason=KNOWN_WRONG[r.name])) if r.name in KNOWN_WRONG
            else pytest.param(r, id=r.name) for r in recs]


CLASSIFIED = [r for r in RECORDINGS if r.lookup in ("single", "batch")]
IDENTITY = [r for r in RECORDINGS if r.lookup in ("resolve_handle", "did_document")]


@pytest.mark.parametrize("rec", _marked(CLASSIFIED))
def test_recorded_answer_classifies_as_the_platform_documents(rec: Recording) -> None:
    for what, obs in classify_one(rec):
        assert matches(obs, rec.expected), (
            f"{rec.name} [{what}]: got {obs.result}/{obs.reason or obs.error} "
            f"({obs.evidence!r}); the docs say {rec.expected}")
        if obs.result is Result.PRESENT and rec.platform != "reddit":
            assert obs.account_id, "a present answer reports the platform's id"


@pytest.mark.parametrize("rec", IDENTITY, ids=lambda r: r.name)
def test_recorded_identity_answer_reads_as_documented(rec: Recording) -> None:
    got = read_bluesky_identity(rec)
    wanted = {k: v for k, v in rec.expected.items() if k != "why"}
    assert {k: got.get(k) for k in wanted} == wanted


CLASSIFIERS: dict[str, Callable[[Answer], object]] = {
    "bluesky.profile": lambda a: bluesky.classify_profile(a, Target("h"), AT),
    "bluesky.profiles": lambda a: bluesky.classify_profiles(a, ["did:plc:a"], AT),
    "bluesky.repo_status": lambda a: bluesky.classify_repo_status(a, "did:plc:a", AT),
    "github.user": lambda a: github.classify_user(a, Target("h"), AT),
    "mastodon.account": lambda a: mastodon.classify_account(a, AT),
    "reddit.about": lambda a: reddit.classify_about(a, Target("h"), AT),
    "x.user": lambda a: x.classify_user(a, Target("h"), AT),
    "x.batch": lambda a: x.classify_batch(a, ["1"], AT),
}


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_every_recorded_answer_through_every_classifier_is_one_observation(name: str) -> None:
    """Another platform's answer (a wrong base_url, a proxy) still classifies, never raises."""
    for rec in RECORDINGS:
        got = CLASSIFIERS[name](answer_of(rec))
        observations = list(got.values()) if isinstance(got, dict) else [got]
        for obs in observations:
            assert isinstance(obs, Observation), (name, rec.name)
            assert (obs.reason is not None) == (obs.result is Result.ABSENT), (name, rec.name)
            assert (obs.error is not None) == (obs.result is Result.ERROR), (name, rec.name)


def test_bluesky_profile_not_found_from_a_live_account_is_never_absent_on_its_own() -> None:
    """bluesky-social/pds#113: the AppView said "Profile not found" for a live did:web."""
    rec = next(r for r in RECORDINGS if r.name == "bluesky/pds113_profile_not_found_live_did_web")
    obs = bluesky.classify_profile(answer_of(rec), Target("btmfor.top", "did:web:btmfor.top"), AT)
    assert obs.result is Result.ERROR and isinstance(obs, Unconfirmed)
    assert obs.account_id == "did:web:btmfor.top"


# --------------------------------------------------------------------------- through the fakes


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def _fake(platform: str) -> tuple[FakeServer, str, dict[str, Any]]:
    """A fake with one account for the recording, that account's handle, extra config."""
    if platform == "x":
        return FakeX({"recorded": "present"}), "recorded", {"token": TOKEN}
    if platform == "github":
        return FakeGitHub({"recorded": "present"}), "recorded", {}
    if platform == "reddit":
        return FakeReddit({"recorded": "present"}), "recorded", {}
    if platform == "mastodon":
        return FakeMastodon({"recorded": "present"}), "recorded", {}
    # The account is live on its PDS: an AppView "Profile not found" must stay an error.
    return FakeBluesky({"recorded.bsky.social": "unindexed"}), "recorded.bsky.social", {}


def through_the_probe_expected(rec: Recording) -> dict[str, Any]:
    """What the real probe must make of it: Bluesky's unconfirmed absence is corroborated
    against the fake's PDS, where the account is live, so it stays ``error``."""
    if "unconfirmed" in rec.expected:
        return {"result": "error"}
    return {k: v for k, v in rec.expected.items() if k in ("result", "reason", "error")}


SERVED = [r for r in RECORDINGS if r.lookup in ("single", "batch")]


@pytest.mark.parametrize("rec", _marked(SERVED))
async def test_recorded_answer_served_by_the_fake_reads_the_same_through_the_probe(
        rec: Recording, session: aiohttp.ClientSession) -> None:
    fake, handle, extra = _fake(rec.platform)
    async with fake.running() as base:
        config = PlatformConfig.model_validate(
            {"base_url": base, "plc_url": f"{base}/plc", **extra})
        probe = PROBES[rec.platform](config, session, timeout=2.0, max_body_bytes=1 << 20)
        if rec.lookup == "batch":
            targets = [Target(f"u{i}", i) for i in rec.expected["ids"]]
            for target in targets:
                fake.serve_recorded(target.account_id or "", rec)  # type: ignore[attr-defined]
            found = await probe.check_many(targets)  # type: ignore[attr-defined]
            observations = [found[t.account_id or ""] for t in targets]
        else:
            fake.serve_recorded(handle, rec)  # type: ignore[attr-defined]
            did = fake.account_id(handle) if isinstance(fake, FakeBluesky) else None
            observations = [await probe.check(Target(handle, did))]
    wanted = through_the_probe_expected(rec)
    for obs in observations:
        assert matches(obs, wanted), (rec.name, obs)


async def test_a_recorded_answer_is_sent_as_recorded_headers_included(
        session: aiohttp.ClientSession) -> None:
    """The fake's own budget headers are not laid over a recording (a spent budget stays 0)."""
    rec = next(r for r in RECORDINGS if r.name == "github/primary_rate_limit_403")
    fake = FakeGitHub({"recorded": "present"})
    fake.serve_recorded("recorded", rec)
    async with fake.running() as base:
        async with session.get(f"{base}/users/recorded") as resp:
            assert resp.status == 403
            assert resp.headers["x-ratelimit-remaining"] == "0"
            assert await resp.text() == rec.body
        fake.serve_recorded("recorded", None)
        async with session.get(f"{base}/users/recorded") as resp:
            assert resp.status == 200


def test_fixture_loading_rejects_a_file_in_another_format(tmp_path: Path) -> None:
    bad = tmp_path / "x" / "broken.json"
    bad.parent.mkdir()
    bad.write_text('{"platform": "x"}')
    with pytest.raises(ValueError, match=r"broken\.json: not a recorded-answer fixture"):
        load_all(tmp_path)

