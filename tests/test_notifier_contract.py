"""The notifier contract: every entry of the registry, walked, passes the same suite.

Each provider in :data:`monitor.notify.NOTIFIERS` must describe itself (a config model with
every field described, a ``pages`` flag), have a fake receiver in
:data:`monitor.fakes.pagers.RECEIVERS`, and behave like a notifier over real loopback HTTP:
a trigger then its resolve are accepted by the fake (which validates the vendor's payload
schema), an acknowledge between them keeps the one incident open, a 5xx is retryable, the
vendor's documented final 4xx is permanent, ``send`` returns the receiver's bounded answer,
and no secret of its config reaches an error message or an answer even when the receiver
echoes the request.
A new provider gets all of this by adding its registry line and its fake.
"""

from __future__ import annotations

import json
import typing
from collections.abc import AsyncIterator
from dataclasses import replace
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from monitor.config import parse_config
from monitor.fakes.pagers import RECEIVERS
from monitor.notify import NOTIFIERS, acknowledges, build_notifier
from monitor.notify.base import (
    ANSWER_MAX,
    Answer,
    DeliveryError,
    Notification,
    Notifier,
    NotifierSettings,
    Resending,
)
from monitor.routing import notifiers_for

PROVIDERS = sorted(NOTIFIERS)
# A registry entry without a receiver fails test_every_registered_notifier_has_a_fake_receiver.
NETWORKED = [name for name in PROVIDERS if name in RECEIVERS and RECEIVERS[name].fake]
OFFLINE = [name for name in PROVIDERS if name in RECEIVERS and not RECEIVERS[name].fake]
PLATFORMS = """
platforms: {x: {base_url: "http://127.0.0.1:9", probe: http,
                rules: {present: [{status: 200}]}}}
"""

TRIGGER = Notification(
    kind="vanished", action="trigger", dedup_key="accmon/x/alice/outage-1", platform="x",
    account="alice", summary="PROTECTED x/alice vanished (suspended); confirmed after 2 "
    "absent checks", severity="critical", at=1_700_000_000.0, protected=True, team="trust",
    owner="@carol", reason="suspended", outage_id=1, labels={"tier": "gold"},
    details={"first_seen_absent_at": "2023-11-14T22:12:20Z", "evidence": "HTTP 404"},
    links=[{"href": "https://x.example/alice", "text": "profile"},
           {"href": "https://runbooks.example/vanished", "text": "runbook"}])
RESOLVE = replace(TRIGGER, kind="recovered", action="resolve", severity="info",
                  at=TRIGGER.at + 303, summary="PROTECTED x/alice is back after 5m03s",
                  details={"duration_seconds": 303.0})
ACK = replace(TRIGGER, kind="acknowledged", action="acknowledge", severity="info",
              at=TRIGGER.at + 60, summary="PROTECTED x/alice: acknowledged by carol",
              details={"acknowledged_by": "carol", "acknowledged_at": "2023-11-14T22:14:20Z",
                       "comment": "looking <now> & then"})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def notifier_for(type_name: str, base_url: str,
                 session: aiohttp.ClientSession) -> tuple[Notifier, NotifierSettings]:
    """The notifier of ``type_name`` as a config file would build it, aimed at ``base_url``."""
    model = NOTIFIERS[type_name].config_model
    settings = model.model_validate({**RECEIVERS[type_name].config(base_url), "timeout": 2.0}
                                    if "timeout" in model.model_fields else
                                    RECEIVERS[type_name].config(base_url))
    return build_notifier(f"contract-{type_name}", settings, session), settings


def secrets_of(settings: NotifierSettings) -> list[str]:
    """Every secret of the config; of a secret URL (Slack's), its path too."""
    found: list[str] = []
    for value in dict(settings).values():
        if isinstance(value, SecretStr):
            secret = value.get_secret_value()
            found += [secret, urlsplit(secret).path] if "://" in secret else [secret]
    return [s for s in found if len(s) > 1]


async def failure(notifier: Notifier, n: Notification) -> DeliveryError:
    with pytest.raises(DeliveryError) as info:
        await notifier.send(n)
    return info.value


# =========================================================================== self-description


def test_every_registered_notifier_has_a_fake_receiver() -> None:
    assert set(RECEIVERS) == set(NOTIFIERS)


@pytest.mark.parametrize("type_name", PROVIDERS)
def test_each_provider_describes_itself(type_name: str) -> None:
    cls = NOTIFIERS[type_name]
    assert cls.type == type_name
    assert isinstance(cls.pages, bool)
    model = cls.config_model
    assert issubclass(model, NotifierSettings)
    assert typing.get_args(model.model_fields["type"].annotation) == (type_name,)
    assert (model.__doc__ or "").strip(), f"{model.__name__}: the docstring is its README intro"
    undocumented = [name for name, info in model.model_fields.items() if not info.description]
    assert not undocumented, f"{model.__name__}: add Field(description=...) to {undocumented}"


@pytest.mark.parametrize("type_name", PROVIDERS)
def test_each_provider_says_whether_it_acknowledges(type_name: str) -> None:
    cls = NOTIFIERS[type_name]
    assert "acknowledges" in vars(cls), f"{type_name}: declare acknowledges: ClassVar[bool]"
    assert acknowledges(type_name) is cls.acknowledges
    assert isinstance(cls.acknowledges, bool)


def test_exactly_the_pagers_with_an_acknowledged_state_acknowledge() -> None:
    assert sorted(name for name in PROVIDERS if acknowledges(name)) == ["opsgenie", "pagerduty"]


@pytest.mark.parametrize("type_name", PROVIDERS)
def test_the_config_file_builds_each_provider_from_the_registry(type_name: str) -> None:
    entry = RECEIVERS[type_name].config("http://127.0.0.1:9")
    config = parse_config(PLATFORMS + "accounts: [{platform: x, handle: alice}]\n"
                          f"notifiers: {json.dumps({'n': entry})}\n", env={})
    assert type(config.notifiers["n"]) is NOTIFIERS[type_name].config_model


def test_default_routing_pages_exactly_the_providers_that_say_they_page() -> None:
    entries = {f"n-{name}": RECEIVERS[name].config("http://127.0.0.1:9") for name in PROVIDERS}
    config = parse_config(PLATFORMS + "accounts: [{platform: x, handle: alice, protected: true},"
                          " {platform: x, handle: bob}]\n"
                          f"notifiers: {json.dumps(entries)}\n", env={})
    alice, bob = config.accounts
    paging = [f"n-{name}" for name in PROVIDERS if NOTIFIERS[name].pages]
    chat = [f"n-{name}" for name in PROVIDERS if not NOTIFIERS[name].pages]
    assert paging and chat
    assert notifiers_for(TRIGGER, alice, config) == paging
    assert notifiers_for(replace(TRIGGER, account="bob", protected=False), bob, config) == chat


@pytest.mark.parametrize("type_name", PROVIDERS)
async def test_a_resending_provider_says_how_often(type_name: str,
                                                   session: aiohttp.ClientSession) -> None:
    notifier, _ = notifier_for(type_name, "http://127.0.0.1:9", session)
    if isinstance(notifier, Resending):
        assert notifier.resend_interval > 0


# =========================================================================== behaviour


@pytest.mark.parametrize("type_name", NETWORKED)
async def test_trigger_then_resolve_are_accepted_by_the_fake(
        type_name: str, session: aiohttp.ClientSession) -> None:
    receiver = RECEIVERS[type_name]
    assert receiver.fake is not None
    fake = receiver.fake()
    async with fake.running() as url:
        notifier, _ = notifier_for(type_name, url, session)
        await notifier.send(TRIGGER)
        if receiver.open_incidents is not None:
            assert receiver.open_incidents(fake) == 1
        await notifier.send(RESOLVE)
        if receiver.open_incidents is not None:
            assert receiver.open_incidents(fake) == 0
    assert len(fake.accepted) == 2, "the fake refused a payload: see fake.requests"
    assert [r.status // 100 for r in fake.requests] == [2, 2]


@pytest.mark.parametrize("type_name", NETWORKED)
async def test_an_acknowledge_keeps_the_one_incident_open_until_the_resolve(
        type_name: str, session: aiohttp.ClientSession) -> None:
    receiver = RECEIVERS[type_name]
    assert receiver.fake is not None
    fake = receiver.fake()
    async with fake.running() as url:
        notifier, _ = notifier_for(type_name, url, session)
        await notifier.send(TRIGGER)
        answer = await notifier.send(ACK)
        if receiver.open_incidents is not None:
            assert receiver.open_incidents(fake) == 1
        await notifier.send(RESOLVE)
        if receiver.open_incidents is not None:
            assert receiver.open_incidents(fake) == 0
    assert all(r.status // 100 == 2 for r in fake.requests), "a fake refused: see requests"
    # Providers without an acknowledged state send nothing, or one more accepted message.
    assert len(fake.requests) == (3 if answer.status else 2)


@pytest.mark.parametrize("type_name", NETWORKED)
async def test_send_returns_the_receivers_answer(type_name: str,
                                                 session: aiohttp.ClientSession) -> None:
    receiver = RECEIVERS[type_name]
    assert receiver.fake is not None
    fake = receiver.fake()
    async with fake.running() as url:
        notifier, _ = notifier_for(type_name, url, session)
        answer = await notifier.send(TRIGGER)
    assert isinstance(answer, Answer)
    assert answer.status == fake.requests[-1].status and 200 <= answer.status < 300


@pytest.mark.parametrize("type_name", NETWORKED)
async def test_a_5xx_is_retryable_and_normal_service_resumes(
        type_name: str, session: aiohttp.ClientSession) -> None:
    receiver = RECEIVERS[type_name]
    assert receiver.fake is not None
    fake = receiver.fake()
    async with fake.running() as url:
        notifier, _ = notifier_for(type_name, url, session)
        fake.script(503)
        error = await failure(notifier, TRIGGER)
        await notifier.send(TRIGGER)
    assert not error.permanent
    assert error.status == 503
    assert len(fake.accepted) == 1


@pytest.mark.parametrize("type_name", NETWORKED)
async def test_the_documented_final_4xx_is_permanent(
        type_name: str, session: aiohttp.ClientSession) -> None:
    receiver = RECEIVERS[type_name]
    assert receiver.fake is not None and receiver.permanent is not None
    assert 400 <= receiver.permanent < 500 and receiver.permanent not in (408, 429)
    fake = receiver.fake()
    async with fake.running() as url:
        notifier, _ = notifier_for(type_name, url, session)
        fake.script(receiver.permanent)
        error = await failure(notifier, TRIGGER)
    assert (error.permanent, error.status) == (True, receiver.permanent)
    assert fake.accepted == []


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    """A hostile receiver: 400 echoing where credentials travel (path, Authorization, body),
    shortest first, so they fall within the part of a body an error message quotes."""
    async def echo(request: web.Request) -> web.Response:
        text = (f"{request.raw_path} {request.headers.get('Authorization')} "
                f"{(await request.read()).decode()}")
        return web.Response(status=400, text=text)
    app = web.Application()
    app.router.add_post("/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


@pytest.mark.parametrize("type_name", NETWORKED)
async def test_no_secret_reaches_an_error_even_when_the_receiver_echoes_it(
        type_name: str, session: aiohttp.ClientSession, echo_url: str) -> None:
    notifier, settings = notifier_for(type_name, echo_url, session)
    error = await failure(notifier, TRIGGER)
    assert error.permanent
    for secret in secrets_of(settings):
        assert secret not in str(error), f"{type_name} leaks a secret into its error"
        assert secret not in repr(notifier)


@pytest.fixture
async def echo_ok_url() -> AsyncIterator[str]:
    """A receiver that accepts (200) and echoes the request, padded past any answer bound."""
    async def echo(request: web.Request) -> web.Response:
        text = (f"{request.raw_path} {request.headers.get('Authorization')} "
                f"{(await request.read()).decode()} {'p' * 5000}")
        return web.Response(status=200, text=text)
    app = web.Application()
    app.router.add_post("/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


@pytest.mark.parametrize("type_name", NETWORKED)
async def test_an_answer_is_bounded_and_never_shows_a_secret(
        type_name: str, session: aiohttp.ClientSession, echo_ok_url: str) -> None:
    notifier, settings = notifier_for(type_name, echo_ok_url, session)
    answer = await notifier.send(TRIGGER)
    assert answer.status == 200
    assert len(answer.body) <= ANSWER_MAX
    assert answer.body.count("p") < 5000, "the answer is not bounded"
    for secret in secrets_of(settings):
        assert secret not in answer.body, f"{type_name} leaks a secret into its answer"
        assert secret not in str(answer)


@pytest.mark.parametrize("type_name", OFFLINE)
async def test_an_offline_provider_never_fails(type_name: str,
                                               session: aiohttp.ClientSession) -> None:
    notifier, _ = notifier_for(type_name, "http://127.0.0.1:9", session)
    for n in (TRIGGER, ACK, RESOLVE):
        answer = await notifier.send(n)
        assert isinstance(answer, Answer) and answer.status == 0 and answer.body
