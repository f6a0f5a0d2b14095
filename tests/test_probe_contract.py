"""The probe registry's contract, walked entry by entry.

Adding a platform is one module under ``monitor/probes/``, one line in
:data:`monitor.probes.PROBES`, its fake (one line in :func:`monitor.fakes.platform_fakes`)
and its tests. For every entry of the registry this checks that the line names the module's
own probe, that a config naming it validates, that the probe tells a present account from a
gone one on its fake (through ``check_many`` too, for a :class:`~monitor.probes.BatchProbe`),
and that it passes the shared hostile-answer behaviour suite (tests/test_hostile_answers.py).
A new probe without a fake, or one that believes a hostile answer, fails here on its first day.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from monitor.config import parse_config
from monitor.fakes import HOSTILE_ANSWERS, platform_fakes
from monitor.model import Observation, Result
from monitor.probes import PROBES, BatchProbe, HttpProbe
from tests.test_hostile_answers import (
    BATCHING,
    Served,
    assert_secret_free,
    expected,
    faults_for,
    serving,
    timeout_for,
)

NAMES = sorted(PROBES)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture(params=NAMES)
async def served(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    async with serving(request.param) as served:
        yield served


def test_the_registry_has_the_documented_platforms() -> None:
    # Not vacuous: the walk below covers these at least (README, "Probes").
    assert {"bluesky", "github", "http", "mastodon", "reddit", "twitch", "x",
            "youtube"} <= set(PROBES)


@pytest.mark.parametrize("name", NAMES)
def test_each_registry_line_names_the_probe_of_its_own_module(name: str) -> None:
    """``probe: <name>`` runs the one probe class that ``monitor/probes/<name>.py`` defines
    under that name: the registry line, the module and the class's name agree."""
    module = importlib.import_module(f"monitor.probes.{name}")
    own = [cls for cls in vars(module).values()
           if isinstance(cls, type) and issubclass(cls, HttpProbe)
           and cls.__module__ == module.__name__ and cls.name == name]
    assert own == [PROBES[name]]


@pytest.mark.parametrize("name", NAMES)
def test_each_probe_has_a_fake(name: str) -> None:
    assert name in platform_fakes()


def test_every_fake_is_for_a_registered_probe() -> None:
    assert sorted(platform_fakes()) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_a_config_naming_each_probe_validates(name: str) -> None:
    spec = platform_fakes()[name]
    base_url = "http://127.0.0.1:9"
    platform = {"probe": name, **spec.settings(base_url), "base_url": base_url}
    text = json.dumps({"platforms": {name: platform},  # JSON is YAML
                       "accounts": [{"platform": name, "handle": spec.handle}]})
    config = parse_config(text, env={})
    assert PROBES[config.platforms[name].probe or name] is PROBES[name]
    assert [a.handle for a in config.accounts] == [spec.handle]


async def test_each_probe_tells_present_from_gone_on_its_fake(
        served: Served, session: aiohttp.ClientSession) -> None:
    probe = served.probe(session)
    present = await probe.check(served.target())
    assert present.result is Result.PRESENT, present
    served.fake.set_state(served.spec.handle, served.spec.gone)
    gone = await probe.check(served.target())
    assert gone.result is Result.ABSENT, gone
    assert gone.reason is not None


def test_the_batch_probes_are_the_platforms_with_batch_lookups() -> None:
    assert BATCHING == ["bluesky", "x"]  # getProfiles (25 DIDs), /2/users?ids= (100 ids)


@pytest.mark.parametrize("name", BATCHING)
async def test_each_batch_probe_answers_the_same_through_check_many(
        name: str, session: aiohttp.ClientSession) -> None:
    async with serving(name) as served:
        probe = served.probe(session)
        assert isinstance(probe, BatchProbe)
        target = served.target()
        assert target.account_id is not None  # batches go by id
        present = await probe.check_many([target])
        served.fake.set_state(served.spec.handle, served.spec.gone)
        gone = await probe.check_many([target])
    assert _results(present) == {target.account_id: Result.PRESENT}
    assert _results(gone) == {target.account_id: Result.ABSENT}


@pytest.mark.parametrize("answer", sorted(HOSTILE_ANSWERS))
async def test_hostile_answer_is_a_classified_error(
        served: Served, answer: str, session: aiohttp.ClientSession) -> None:
    obs = await served.probe(session).check(served.target())
    assert obs.result is Result.PRESENT, obs  # the fake works: what follows is the answer's
    served.fake.set_faults(**faults_for(answer))
    obs = await served.probe(session, timeout_for(answer)).check(served.target())
    assert (obs.result, obs.error) == (Result.ERROR, expected(served.name, answer)), obs
    assert_secret_free(obs, served.config)
    assert served.fake.elsewhere_requests == 0  # the other host was never asked


def _results(found: dict[str, Observation]) -> dict[str, Result]:
    return {key: obs.result for key, obs in found.items()}
