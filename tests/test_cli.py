"""The command line: probe prints the classification and evidence; run exits cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from monitor.fakes.mastodon import FakeMastodon
from tests.conftest import free_port, mastodon_config

ROOT = Path(__file__).resolve().parent.parent


async def _cli(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_probe_prints_classification_evidence_and_exit_code(tmp_path: Path) -> None:
    fake = FakeMastodon({"alice": "present", "bob": "suspended"})
    async with fake.running() as base:
        cfg = tmp_path / "m.yaml"
        cfg.write_text(mastodon_config(base, ["alice"], state_path=str(tmp_path / "s.db")))
        code, out, _ = await _cli("probe", "--config", str(cfg), "masto", "alice")
        assert code == 0
        assert out.startswith("masto/alice: present\n")
        assert f"account id: {fake.account_id('alice')}" in out and "evidence: HTTP 200" in out

        code, out, _ = await _cli("probe", "--config", str(cfg), "masto", "bob")
        assert (code, out.splitlines()[0]) == (1, "masto/bob: absent (suspended)")

        fake.set_faults(server_error_rate=1.0)
        code, out, _ = await _cli("probe", "--config", str(cfg), "masto", "alice")
        assert (code, out.splitlines()[0]) == (3, "masto/alice: error (server_error)")

        code, _, err = await _cli("probe", "--config", str(cfg), "myspace", "tom")
        assert code == 2 and "platforms.myspace" in err


async def test_run_exits_zero_on_sigterm_and_two_on_a_bad_config(tmp_path: Path) -> None:
    fake = FakeMastodon({"alice": "present"})
    async with fake.running() as base:
        cfg = tmp_path / "m.yaml"
        cfg.write_text(mastodon_config(base, ["alice"], state_path=str(tmp_path / "s.db")))
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "run", "--config", str(cfg), "--port",
            str(free_port()), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=dict(os.environ))
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert b"monitor started" in line
        proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), 8)
        assert proc.returncode == 0
        assert b"monitor stopped" in out

    bad = tmp_path / "bad.yaml"
    bad.write_text("platforms: {}\naccounts: [{platform: nowhere, handle: x}]\n")
    code, _, err = await _cli("run", "--config", str(bad))
    assert code == 2 and "accounts[0].platform" in err
