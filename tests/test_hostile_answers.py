"""The hostile-answer behaviour suite: a probe of the registry, from its own fake, against
every hostile answer, ends in one specific ``error(kind)``: never present, never absent.

This module holds the machinery (:func:`serving`, :data:`EXPECTED`, :func:`faults_for`) and
the checks that go beyond one answer (batch lookups, what the evidence names, a real
process). The registry walk that runs every probe through every hostile answer, after it
first answers ``present`` from the same fake, is tests/test_probe_contract.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.config import PlatformConfig
from monitor.fakes import HOSTILE_ANSWERS, PlatformFake, platform_fakes
from monitor.fakes.processes import probe_process
from monitor.fakes.server import FakeServer
from monitor.model import ErrorKind, Observation, Result
from monitor.probes import PROBES, BatchProbe, Probe, Target, batch_size_of

ROOT = Path(__file__).resolve().parent.parent
CAP = 256 * 1024  # max_body_bytes of every probe here
TIMEOUT = 5.0  # generous: only the slowloris case is meant to run into it
SLOWLORIS_TIMEOUT = 0.5

# The sizes of HOSTILE_ANSWERS are for the benchmark; here they are shrunk to stay quick
# while still far past CAP (64 MiB inflated from 64 KiB on the wire, under CAP).
SHRUNK: dict[str, dict[str, Any]] = {
    "deep_json": {"deep_json_depth": 100_000},  # 200 KB: under CAP, so the parser sees it
    "gzip_bomb": {"gzip_bomb_bytes": 64 << 20},
    "slowloris": {"slowloris_interval": 0.05},
}

EXPECTED: dict[str, ErrorKind] = {
    "deep_json": ErrorKind.PARSE,
    "gzip_bomb": ErrorKind.TOO_LARGE,
    "cross_host": ErrorKind.REDIRECT,
    "redirect_loop": ErrorKind.REDIRECT,
    "slowloris": ErrorKind.TIMEOUT,
    "huge_headers": ErrorKind.TOO_LARGE,
    "truncated": ErrorKind.CONNECTION,
    "non_utf8": ErrorKind.PARSE,
    "login_wall": ErrorKind.PARSE,  # an API answered with an HTML form
}
# The http probe reads pages by its rules (the catalogue's Instagram rules here): a JSON
# answer matches none of them, and the login wall is its first error rule.
EXPECTED_BY_PROBE: dict[str, dict[str, ErrorKind]] = {
    "http": {"deep_json": ErrorKind.UNEXPECTED, "non_utf8": ErrorKind.UNEXPECTED,
             "login_wall": ErrorKind.BLOCKED},
    "reddit": {"login_wall": ErrorKind.BLOCKED},  # it reads any HTML page as a block page
}
BATCHING = sorted(name for name, cls in PROBES.items() if batch_size_of(cls) > 1)


def expected(probe: str, answer: str) -> ErrorKind:
    return EXPECTED_BY_PROBE.get(probe, {}).get(answer, EXPECTED[answer])


def faults_for(answer: str) -> dict[str, Any]:
    return {**HOSTILE_ANSWERS[answer], **SHRUNK.get(answer, {})}


def timeout_for(answer: str) -> float:
    return SLOWLORIS_TIMEOUT if answer == "slowloris" else TIMEOUT


@dataclass
class Served:
    """A probe's fake, running, and the probe pointed at it."""

    fake: FakeServer
    spec: PlatformFake
    config: PlatformConfig
    base_url: str

    def probe(self, session: aiohttp.ClientSession, timeout: float = TIMEOUT) -> Probe:
        return PROBES[self.name](self.config, session, timeout=timeout, max_body_bytes=CAP)

    @property
    def name(self) -> str:
        return self.config.probe or ""

    def target(self) -> Target:
        """The account as the monitor polls it in steady state: by id where there is one."""
        return Target(self.spec.handle, self.fake.account_id(self.spec.handle))


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@contextlib.asynccontextmanager
async def serving(name: str) -> AsyncIterator[Served]:
    spec = platform_fakes()[name]
    fake = spec.make()
    async with fake.running() as base_url:
        config = PlatformConfig.model_validate(
            {"probe": name, **spec.settings(base_url), "base_url": base_url})
        yield Served(fake, spec, config, base_url)


@pytest.fixture(params=sorted(PROBES))
async def served(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    async with serving(request.param) as served:
        yield served


def test_every_hostile_answer_has_an_expected_error() -> None:
    assert sorted(EXPECTED) == sorted(HOSTILE_ANSWERS)
    for overrides in EXPECTED_BY_PROBE.values():
        assert set(overrides) <= set(HOSTILE_ANSWERS)


@pytest.mark.parametrize("answer", sorted(HOSTILE_ANSWERS))
@pytest.mark.parametrize("name", BATCHING)
async def test_hostile_answer_to_a_batch_lookup_is_an_error_for_every_account(
        name: str, answer: str, session: aiohttp.ClientSession) -> None:
    async with serving(name) as served:
        probe = served.probe(session, timeout_for(answer))
        assert isinstance(probe, BatchProbe)
        served.fake.set_faults(**faults_for(answer))
        results: Mapping[str, Observation] = await probe.check_many([served.target()])
    assert [(o.result, o.error) for o in results.values()] == [
        (Result.ERROR, expected(name, answer))]


async def test_gzip_bomb_stops_at_the_cap_while_inflating(
        served: Served, session: aiohttp.ClientSession) -> None:
    served.fake.set_faults(**faults_for("gzip_bomb"))
    obs = await served.probe(session).check(served.target())
    # Not "body of N bytes over the cap": the wire size was under it; inflating stopped.
    assert f"decompressed body over the {CAP}-byte cap" in obs.evidence


async def test_cross_host_redirect_names_the_other_host_only(
        served: Served, session: aiohttp.ClientSession) -> None:
    served.fake.set_faults(**faults_for("cross_host"))
    obs = await served.probe(session).check(served.target())
    elsewhere = await served.fake.elsewhere_url()
    assert obs.evidence == (f"HTTP 302 redirect to another host "
                            f"({elsewhere.removeprefix('http://')})")


def assert_secret_free(obs: Observation, config: PlatformConfig) -> None:
    """Evidence never carries a query string (keys live there) or the platform's token."""
    assert "?" not in obs.evidence and "key=" not in obs.evidence
    if config.token is not None:
        assert config.token.get_secret_value() not in obs.evidence


# --------------------------------------------------------------------------- a real process




async def test_probe_command_rejects_a_gzip_bomb_in_bounded_memory(tmp_path: Path) -> None:
    """256 MiB inflated from 256 KiB: before the streaming cap the child grew by ~0.5 GB."""
    spec = platform_fakes()["mastodon"]
    fake = spec.make()
    async with fake.running() as base_url:
        cfg = tmp_path / "monitor.yaml"
        cfg.write_text(f"""
defaults:
  max_body_bytes: 1MiB
  timeout: 20s
platforms:
  mastodon:
    probe: mastodon
    base_url: {base_url}
accounts: []
""")
        code, out, baseline = await asyncio.to_thread(probe_process, cfg, "mastodon", "alice")
        assert code == 0, out
        fake.set_faults(gzip_bomb_rate=1.0, gzip_bomb_bytes=256 << 20)
        code, out, bombed = await asyncio.to_thread(probe_process, cfg, "mastodon", "alice")
    assert code == 3, out
    assert out.splitlines()[0] == "mastodon/alice: error (too_large)", out
    assert bombed - baseline < 64 << 20, (baseline, bombed)
