"""The command line: probe prints the classification and evidence; run exits cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from monitor.fakes import x
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


BUNDLED = ROOT / "config" / "monitor.yaml"


def _bundled_against(x_base: str, tmp_path: Path) -> Path:
    """The bundled config, its X platform pointed at a fake X with the fake's token."""
    text = BUNDLED.read_text().replace("base_url: https://api.x.com", f"base_url: {x_base}")
    text = text.replace("token: ${X_BEARER_TOKEN:-}", f"token: {x.TOKEN}", 1)
    cfg = tmp_path / "bundled.yaml"
    cfg.write_text(text)
    return cfg


async def test_probe_uses_the_configured_id_of_the_account(tmp_path: Path) -> None:
    # The bundled X rules ask /2/users/{id}; the id comes from the account's entry.
    fake = x.FakeX({"realDonaldTrump": ("25073877", "present")})
    async with fake.running() as base:
        cfg = _bundled_against(base, tmp_path)
        code, out, err = await _cli("probe", "--config", str(cfg), "x", "realDonaldTrump")
        assert (code, out.splitlines()[0]) == (0, "x/realDonaldTrump: present"), err
        assert "present rule #1" in out
        # --id still wins over the configured one: an unknown id is not found.
        code, out, _ = await _cli("probe", "--config", str(cfg), "x", "realDonaldTrump",
                                  "--id", "1")
        assert (code, out.splitlines()[0]) == (1, "x/realDonaldTrump: absent (not_found)")


async def test_probe_without_an_id_where_the_url_needs_one_says_how_to_give_it(
        tmp_path: Path) -> None:
    fake = x.FakeX({"someone": ("42", "present")})
    async with fake.running() as base:
        cfg = _bundled_against(base, tmp_path)
        code, out, err = await _cli("probe", "--config", str(cfg), "x", "someone")
        assert code == 2 and out == ""
        assert "platforms.x.rules.url needs the account's id" in err and "--id" in err
        code, out, _ = await _cli("probe", "--config", str(cfg), "x", "someone", "--id", "42")
        assert (code, out.splitlines()[0]) == (0, "x/someone: present")
