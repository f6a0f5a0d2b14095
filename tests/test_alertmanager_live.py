"""A real Alertmanager (Debian's prometheus-alertmanager) between the monitor and a receiver.

The monitor posts to Alertmanager's API v2; Alertmanager's webhook receiver calls a capture
server on loopback: the vanished account's alert must come out firing, then resolved.

And the heartbeat: a real Prometheus with the shipped rules sends the always-firing Watchdog
to an Alertmanager running the compose config (deploy/compose/alertmanager.yml), whose
Watchdog route must deliver it to the dead man's switch receiver, and nothing else there.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from monitor.fakes.mastodon import FakeMastodon
from monitor.fakes.pagers import CaptureServer
from monitor.model import State
from tests.conftest import free_port, mastodon_config, running_monitor, state_of, wait_for
from tests.test_prometheus_live import Prometheus, start_prometheus  # noqa: F401 (fixture)
from tests.test_prometheus_rules import RULE_FILES, require_tool

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_ALERTMANAGER = ROOT / "deploy" / "compose" / "alertmanager.yml"


def am_config(receiver_url: str) -> dict[str, Any]:
    return {
        "route": {"receiver": "capture", "group_by": ["alertname", "dedup_key"],
                  "group_wait": "1s", "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "capture", "webhook_configs": [
            {"url": f"{receiver_url}/hook", "send_resolved": True}]}],
    }


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Any]:
    binary = require_tool("prometheus-alertmanager")
    procs: list[subprocess.Popen[bytes]] = []

    def start(receiver_url: str, config: dict[str, Any] | None = None) -> tuple[str, Path]:
        cfg = tmp_path / "am.yml"
        cfg.write_text(yaml.safe_dump(config or am_config(receiver_url)))
        port, log = free_port(), tmp_path / "am.log"
        procs.append(subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.path={tmp_path / 'am-data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address=",
             "--log.level=warn"],
            stdout=log.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        return f"http://127.0.0.1:{port}", log

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def _ready(url: str, log: Path) -> None:
    async with aiohttp.ClientSession() as http:
        async def ready() -> bool:
            try:
                async with http.get(f"{url}/-/ready") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        try:
            await wait_for(ready, timeout=20, what="alertmanager ready")
        except BaseException:
            print(f"alertmanager log:\n{log.read_text()[-2000:]}")
            raise


def _alerts(capture: CaptureServer, status: str) -> list[dict[str, Any]]:
    return [a for _, doc in capture.posts if doc.get("status") == status
            for a in doc.get("alerts", []) if a.get("status") == status]


@pytest.mark.slow
async def test_vanish_fires_through_a_real_alertmanager_then_resolves(
        alertmanager: Any, state_file: str) -> None:
    masto, capture = FakeMastodon({"alice": "present", "bob": "present"}), CaptureServer()
    async with masto.running() as m_url, capture.running() as receiver:
        am_url, log = alertmanager(receiver)
        await _ready(am_url, log)
        extra = f"""
notifiers:
  am:
    type: alertmanager
    urls: ["{am_url}"]
    resend_interval: 1s
    ends_at_after: 1m
routing:
  retry_initial: 100ms
  retry_max: 1s
  reminder_interval: null
"""
        config = mastodon_config(m_url, ["alice", "bob"], state_path=state_file, extra=extra)
        async with running_monitor(config) as mon:
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="up")
            masto.set_state("alice", "suspended")
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.DOWN, what="down")
            fired = await wait_for(lambda: _alerts(capture, "firing"), timeout=20,
                                   what="Alertmanager's firing webhook")
            labels = fired[0]["labels"]
            assert (labels["alertname"], labels["account"], labels["platform"]) == (
                "AccountVanished", "alice", "masto")
            assert labels["severity"] == "page"
            assert "suspended" in fired[0]["annotations"]["summary"]

            masto.set_state("alice", "present")
            resolved = await wait_for(lambda: _alerts(capture, "resolved"), timeout=20,
                                      what="Alertmanager's resolved webhook")
            assert resolved[0]["labels"] == labels
        firing_accounts = {a["labels"]["account"] for a in _alerts(capture, "firing")}
        assert firing_accounts == {"alice"}  # bob never vanished, never alerted


def compose_config_with_a_capturing_switch(receiver_url: str) -> dict[str, Any]:
    """The compose Alertmanager config as shipped, its dead man's switch pointed at us."""
    config = yaml.safe_load(COMPOSE_ALERTMANAGER.read_text())
    (switch,) = [r for r in config["receivers"] if r["name"] == "deadmansswitch"]
    assert set(switch) == {"name"}, "shipped without a target: the operator fills it in"
    switch["webhook_configs"] = [{"url": f"{receiver_url}/switch", "send_resolved": False}]
    return config


@pytest.mark.slow
async def test_the_watchdog_reaches_the_dead_mans_switch_through_the_compose_config(
        alertmanager: Any,
        start_prometheus: Callable[..., Prometheus]) -> None:  # noqa: F811 (fixture)
    capture = CaptureServer()
    async with capture.running() as receiver:
        am_url, log = alertmanager(receiver, compose_config_with_a_capturing_switch(receiver))
        await _ready(am_url, log)
        # No monitor at all: the heartbeat does not depend on the monitor being up.
        prom = start_prometheus(free_port(), list(RULE_FILES), alertmanager=am_url)
        try:
            posts = await wait_for(lambda: capture.posts, timeout=30,
                                   what="the Watchdog at the dead man's switch")
        except BaseException:
            print("prometheus log:\n" + prom.output() + "\nalertmanager log:\n"
                  + log.read_text()[-2000:])
            raise
    path, doc = posts[0]
    assert (path, doc["receiver"], doc["status"]) == ("/switch", "deadmansswitch", "firing")
    assert [a["labels"] for a in doc["alerts"]] == [{"alertname": "Watchdog",
                                                     "severity": "none"}]
    assert {a["labels"]["alertname"] for _, d in capture.posts for a in d["alerts"]} == {
        "Watchdog"}
