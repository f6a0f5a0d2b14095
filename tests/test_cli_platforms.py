"""`account-monitor probe` works for every platform and prints the evidence."""

from __future__ import annotations

import asyncio
import contextlib
import io
import sys
from pathlib import Path
from typing import Any

import pytest

from monitor.cli import main
from monitor.fakes import bluesky, github, reddit, twitch, x, youtube
from monitor.fakes.accounts import FakePlatform

ROOT = Path(__file__).resolve().parent.parent

# platform -> (fake factory, token line, present handle, absent state, expected absent reason)
CASES: dict[str, tuple[Any, str, str, str, str]] = {
    "x": (lambda: x.FakeX({"XDevelopers": "present", "gone": "suspended"}),
          f"token: {x.TOKEN}", "XDevelopers", "gone", "suspended"),
    "bluesky": (lambda: bluesky.FakeBluesky({"bsky.app": "present", "gone.bsky.social":
                                            "deactivated"}),
                "", "bsky.app", "gone.bsky.social", "deactivated"),
    "github": (lambda: github.FakeGitHub({"octocat": "present", "gone": "deleted"}),
               "", "octocat", "gone", "not_found"),
    "reddit": (lambda: reddit.FakeReddit({"spez": "present", "gone": "suspended"}),
               "", "spez", "gone", "suspended"),
    "youtube": (lambda: youtube.FakeYouTube({"mkbhd": "present", "gone": "terminated"}),
                f"token: {youtube.API_KEY}", "mkbhd", "gone", "not_found"),
    "twitch": (lambda: twitch.FakeTwitch({"shroud": "present", "gone": "suspended"}),
               f"token: {twitch.TOKEN}\n    client_id: {twitch.CLIENT_ID}", "shroud", "gone",
               "not_found"),
}


async def _probe(cfg: Path, platform: str, handle: str) -> tuple[int, str]:
    """``account-monitor probe`` as a real process for X; for the others the same CLI
    entry point in a thread of this process (a dozen interpreter start-ups saved)."""
    argv = ["probe", "--config", str(cfg), platform, handle]
    if platform != "x":
        return await asyncio.to_thread(_probe_in_process, argv)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", *argv,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 30)
    return proc.returncode or 0, out.decode()


def _probe_in_process(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = main(argv)
    return code, out.getvalue()


@pytest.mark.parametrize("platform", sorted(CASES))
async def test_probe_command_classifies_each_platform(platform: str, tmp_path: Path) -> None:
    make, token, present, absent, reason = CASES[platform]
    fake: FakePlatform = make()
    async with fake.running() as base:
        cfg = tmp_path / "m.yaml"
        cfg.write_text(f"""
platforms:
  {platform}:
    probe: {platform}
    base_url: {base}
    {token}
accounts: []
""")
        code, out = await _probe(cfg, platform, present)
        assert code == 0, out
        assert out.splitlines()[0] == f"{platform}/{present}: present"
        assert f"account id: {fake.account_id(present)}" in out
        assert "evidence: " in out and "evidence: -" not in out

        code, out = await _probe(cfg, platform, absent)
        assert code == 1, out
        # GitHub, YouTube and Twitch show a suspended or deleted account as never existed.
        assert out.splitlines()[0] == f"{platform}/{absent}: absent ({reason})", out
