"""``notify-test``: a [TEST] page and its resolve through one configured notifier, end to end.

Every provider of the registry is driven against its fake receiver on loopback from a real
config file, through :func:`monitor.notify.testpage.cmd_notify_test` (in a worker thread:
it runs its own event loop, as the command does), and once as a real process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from monitor.fakes.pagers import (
    CONTRACT_ROUTING_KEY,
    RECEIVERS,
    FakeAlertmanager,
    FakePagerDuty,
)
from monitor.notify import NOTIFIERS
from monitor.notify.testpage import cmd_notify_test

ROOT = Path(__file__).resolve().parent.parent
PLATFORMS = """
platforms: {x: {base_url: "http://127.0.0.1:9", probe: http,
                rules: {present: [{status: 200}]}}}
accounts: [{platform: x, handle: alice, protected: true}]
"""
NETWORKED = sorted(name for name, r in RECEIVERS.items() if r.fake is not None)
TEST_KEY = re.compile(r"^accmon/test/(?P<name>[a-z-]+)/\d{10}$")


def write_config(tmp_path: Path, notifiers: dict[str, dict[str, Any]]) -> str:
    path = tmp_path / "monitor.yaml"
    path.write_text(PLATFORMS + f"notifiers: {json.dumps(notifiers)}\n", encoding="utf-8")
    return str(path)


async def notify_test(config: str, notifier: str, **extra: Any) -> int:
    """The command's function, in a thread: it calls asyncio.run itself."""
    args = argparse.Namespace(config=config, notifier=notifier, **extra)
    return await asyncio.to_thread(cmd_notify_test, args)


def payload_texts(doc: Any) -> str:
    return json.dumps(doc, ensure_ascii=False)


@pytest.mark.parametrize("type_name", NETWORKED)
async def test_a_test_page_and_its_resolve_reach_every_provider(
        type_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    receiver = RECEIVERS[type_name]
    assert receiver.fake is not None
    fake = receiver.fake()
    async with fake.running() as url:
        config = write_config(tmp_path, {"oncall": receiver.config(url),
                                         "other": RECEIVERS["log"].config(url)})
        code = await notify_test(config, "oncall")
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    assert [r.status // 100 for r in fake.requests] == [2, 2], "the fake refused a payload"
    assert len(fake.accepted) == 2
    trigger = payload_texts(fake.accepted[0])
    assert "[TEST]" in trigger and "oncall" in trigger
    if receiver.open_incidents is not None:
        assert receiver.open_incidents(fake) == 0  # resolved: nothing left open
    lines = out.splitlines()
    key = re.search(r"dedup key (\S+)", lines[0])
    assert key is not None and TEST_KEY.match(key.group(1))
    assert key.group(1) == f"accmon/test/oncall/{key.group(1).rsplit('/', 1)[1]}"
    assert lines[1].startswith(f"trigger: HTTP {fake.requests[0].status}")
    assert lines[2].startswith(f"resolve: HTTP {fake.requests[1].status}")
    assert lines[-1].startswith("OK: 'oncall' accepted the test page")


async def test_pagerduty_gets_a_critical_trigger_under_a_test_key_then_its_resolve(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakePagerDuty()
    async with fake.running() as url:
        config = write_config(tmp_path, {"pd": RECEIVERS["pagerduty"].config(url)})
        assert await notify_test(config, "pd") == 0
    trigger, resolve = fake.accepted
    payload = trigger["payload"]
    assert payload["summary"].startswith("[TEST] account-monitor test page through notifier "
                                         "'pd' (pagerduty)")
    assert (payload["severity"], payload["class"]) == ("critical", "test")
    assert TEST_KEY.match(trigger["dedup_key"])
    assert resolve == {"routing_key": CONTRACT_ROUTING_KEY, "event_action": "resolve",
                       "dedup_key": trigger["dedup_key"]}
    assert fake.incidents[trigger["dedup_key"]].status == "resolved"
    out = capsys.readouterr().out
    assert '"Event processed"' in out and CONTRACT_ROUTING_KEY not in out


async def test_alertmanager_resolves_the_same_test_alert_it_fired(tmp_path: Path) -> None:
    fake = FakeAlertmanager()
    async with fake.running() as url:
        config = write_config(tmp_path, {"am": RECEIVERS["alertmanager"].config(url)})
        assert await notify_test(config, "am") == 0
    (alert,) = fake.alerts.values()  # one label set: the resolve matched the trigger
    assert alert.labels["alertname"] == "AccountMonitorTestPage"
    assert alert.labels["severity"] == "page" and alert.posts == 2
    assert fake.firing() == []


async def test_the_log_notifier_every_monitor_has_can_be_tested(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, {})
    assert await notify_test(config, "log") == 0
    out = capsys.readouterr().out
    assert "trigger: written to the log" in out and "resolve: written to the log" in out


async def test_a_refused_page_exits_1_with_the_providers_error_and_no_secret(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakePagerDuty()
    async with fake.running() as url:
        config = write_config(tmp_path, {"pd": RECEIVERS["pagerduty"].config(url)})
        fake.script(400)
        code = await notify_test(config, "pd")
    out, err = capsys.readouterr()
    assert code == 1
    assert "trigger: FAILED (permanent: fix the config): HTTP 400" in err
    assert "invalid event" in err  # PagerDuty's own words
    assert "resolve" not in out + err and len(fake.requests) == 1


async def test_an_unreachable_provider_exits_1_as_retryable(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakePagerDuty()
    async with fake.running() as url:
        config = write_config(tmp_path, {"pd": RECEIVERS["pagerduty"].config(url)})
        fake.script(503)
        assert await notify_test(config, "pd") == 1
    assert "trigger: FAILED (retryable): HTTP 503" in capsys.readouterr().err


async def test_a_failed_resolve_says_which_incident_may_be_left_open(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fake = FakePagerDuty()
    async with fake.running() as url:
        config = write_config(tmp_path, {"pd": RECEIVERS["pagerduty"].config(url)})
        fake.script("ok", 500)
        assert await notify_test(config, "pd") == 1
    err = capsys.readouterr().err
    (incident,) = fake.open_incidents()
    assert "resolve: FAILED (retryable): HTTP 500" in err
    assert f"resolve {incident.dedup_key} by hand" in err


@pytest.fixture
async def echo_url() -> AsyncIterator[str]:
    async def echo(request: web.Request) -> web.Response:
        return web.Response(status=400, text=(await request.read()).decode())
    app = web.Application()
    app.router.add_post("/{tail:.*}", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield f"http://{host}:{port}"
    await runner.cleanup()


async def test_a_receiver_echoing_the_routing_key_never_gets_it_printed(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], echo_url: str) -> None:
    config = write_config(tmp_path, {"pd": RECEIVERS["pagerduty"].config(echo_url)})
    assert await notify_test(config, "pd") == 1
    out, err = capsys.readouterr()
    assert CONTRACT_ROUTING_KEY not in out + err and "[redacted]" in err


async def test_an_unknown_notifier_exits_2_listing_the_configured_names(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, {"pd": RECEIVERS["pagerduty"].config("http://127.0.0.1:9"),
                                     "chat": RECEIVERS["slack"].config("http://127.0.0.1:9")})
    assert await notify_test(config, "pagerduty") == 2
    err = capsys.readouterr().err
    assert err.strip() == f"{config}: notifiers.pagerduty: not configured (have: chat, log, pd)"


@pytest.mark.parametrize("text", ["platforms: [", "accounts: []\n", "notifiers: {pd: {type: x}}"])
async def test_a_bad_config_exits_2_with_every_problem(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    assert await notify_test(str(path), "pd") == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: ") and "problem(s)" in err and "Traceback" not in err


async def test_a_missing_config_file_exits_2(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert await notify_test(str(tmp_path / "nope.yaml"), "pd") == 2
    assert str(tmp_path / "nope.yaml") in capsys.readouterr().err


def test_every_provider_is_covered() -> None:
    assert set(NETWORKED) | {"log"} == set(NOTIFIERS)


@pytest.mark.slow
async def test_notify_test_as_a_real_process(tmp_path: Path) -> None:
    fake = FakePagerDuty()
    async with fake.running() as url:
        config = write_config(tmp_path, {"pd": RECEIVERS["pagerduty"].config(url)})
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "notify-test", "--config", config, "pd",
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        async with asyncio.timeout(30):
            out, err = await process.communicate()
        missing = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "notify-test", "--config", config, "nope",
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        async with asyncio.timeout(30):
            _, missing_err = await missing.communicate()
    assert process.returncode == 0, err.decode()
    assert b"trigger: HTTP 202" in out and b"resolve: HTTP 202" in out
    assert len(fake.accepted) == 2 and fake.open_incidents() == []
    assert missing.returncode == 2 and b"(have: log, pd)" in missing_err
