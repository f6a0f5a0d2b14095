"""Reload without restart: SIGHUP and authenticated POST /-/reload keep state and outages;
a bad new config is rejected with its problems and the running one is kept."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp

from monitor.app import Monitor
from monitor.config import load_config
from monitor.fakes.mastodon import FakeMastodon
from monitor.model import AccountKey, State
from tests.conftest import free_port, mastodon_config, state_of, wait_for

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "reload-s3cret"


async def _post(port: int, token: str | None) -> tuple[int, dict]:  # type: ignore[type-arg]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as s, \
            s.post(f"http://127.0.0.1:{port}/-/reload", headers=headers) as resp:
        return resp.status, await resp.json()


async def test_reload_keeps_state_and_outages_and_rejects_bad_configs(tmp_path: Path) -> None:
    masto = FakeMastodon({"alice": "present", "bob": "present", "carol": "present"})
    async with masto.running() as base:
        cfg = tmp_path / "m.yaml"
        cfg.write_text(mastodon_config(base, ["alice", "bob"], state_path=str(tmp_path / "s")))
        mon = Monitor(load_config(cfg), config_path=str(cfg), reload_token=TOKEN)
        await mon.start()
        try:
            port = mon.port or 0
            await wait_for(lambda: state_of(mon, "masto", "bob") is State.UP, what="up")
            masto.set_state("alice", "gone")
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.DOWN, what="down")
            outage = mon.accounts[AccountKey("masto", "alice")].state.outage_id

            assert (await _post(port, None))[0] == 401
            assert (await _post(port, "wrong"))[0] == 401

            # Drop bob, add carol, raise alice's threshold.
            cfg.write_text(mastodon_config(base, ["alice", "carol"],
                                           state_path=str(tmp_path / "s")).replace(
                "failure_threshold: 2", "failure_threshold: 3"))
            status, body = await _post(port, TOKEN)
            assert (status, body["status"], body["accounts"]) == (200, "reloaded", 2)
            assert set(mon.accounts) == {AccountKey("masto", "alice"),
                                         AccountKey("masto", "carol")}
            alice = mon.accounts[AccountKey("masto", "alice")]
            assert (alice.state.state, alice.state.outage_id) == (State.DOWN, outage)
            assert alice.policy.failure_threshold == 3
            await wait_for(lambda: state_of(mon, "masto", "carol") is State.UP, what="carol")

            cfg.write_text(cfg.read_text().replace("interval: 100ms", "interval: often"))
            status, body = await _post(port, TOKEN)
            assert status == 422 and body["status"] == "rejected"
            assert any("defaults.interval" in p for p in body["problems"])
            assert alice.policy.interval == 0.1  # the running config is kept
            masto.set_state("alice", "present")
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="back")
            assert mon.store is not None
            (closed,) = mon.store.outages()
            assert closed.id == outage and closed.recovered_at is not None  # one outage
            text = mon.metrics.registry.get_sample_value(
                "accmon_config_reloads_total", {"outcome": "rejected"})
            assert text == 1.0
        finally:
            await mon.stop()


async def test_reload_that_protects_a_kept_account_raises_its_priority(
        tmp_path: Path) -> None:
    masto = FakeMastodon({"alice": "present", "bob": "present"})
    async with masto.running() as base:
        cfg = tmp_path / "m.yaml"
        text = mastodon_config(base, ["alice", "bob"], state_path=str(tmp_path / "s"),
                               protected=False)
        cfg.write_text(text)
        mon = Monitor(load_config(cfg), config_path=str(cfg), reload_token=TOKEN)
        await mon.start()
        try:
            alice = mon.accounts[AccountKey("masto", "alice")]
            assert (alice.protected, alice.priority) == (False, 1)
            cfg.write_text(text.replace("handle: alice\n    protected: false",
                                        "handle: alice\n    protected: true"))
            assert (await _post(mon.port or 0, TOKEN))[0] == 200
            assert mon.accounts[AccountKey("masto", "alice")] is alice  # kept, not re-added
            assert (alice.protected, alice.priority) == (True, 0)
            bob = mon.accounts[AccountKey("masto", "bob")]
            assert (bob.protected, bob.priority) == (False, 1)
        finally:
            await mon.stop()


async def test_reload_over_http_is_off_without_a_token(tmp_path: Path) -> None:
    masto = FakeMastodon({"alice": "present"})
    async with masto.running() as base:
        cfg = tmp_path / "m.yaml"
        cfg.write_text(mastodon_config(base, ["alice"], state_path=str(tmp_path / "s")))
        mon = Monitor(load_config(cfg), config_path=str(cfg))
        await mon.start()
        try:
            status, body = await _post(mon.port or 0, "anything")
            assert status == 403 and "ACCMON_RELOAD_TOKEN" in body["error"]
        finally:
            await mon.stop()


async def test_sighup_reloads_a_running_process(tmp_path: Path) -> None:
    masto = FakeMastodon({"alice": "present", "bob": "present"})
    async with masto.running() as base:
        cfg = tmp_path / "m.yaml"
        cfg.write_text(mastodon_config(base, ["alice"], state_path=str(tmp_path / "s")))
        port = free_port()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "run", "--config", str(cfg), "--port", str(port),
            "--log-format", "json", cwd=ROOT, env=dict(os.environ),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        lines: list[dict] = []  # type: ignore[type-arg]

        async def read_until(event: str) -> None:
            while True:
                raw = await asyncio.wait_for(proc.stdout.readline(), 20)  # type: ignore[union-attr]
                if raw.startswith(b"{"):
                    lines.append(json.loads(raw))
                    if lines[-1].get("event") == event:
                        return

        try:
            await read_until("monitor started")
            cfg.write_text(mastodon_config(base, ["alice", "bob"],
                                           state_path=str(tmp_path / "s")))
            proc.send_signal(signal.SIGHUP)
            await read_until("config reloaded")
            assert lines[-1]["accounts"] == 2
            cfg.write_text("accounts: [")
            proc.send_signal(signal.SIGHUP)
            await read_until("config reload rejected; keeping the running config")
            assert "not valid YAML" in " ".join(lines[-1]["problems"])
        finally:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 10)
        assert proc.returncode == 0
