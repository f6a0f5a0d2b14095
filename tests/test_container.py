"""The container's exact entrypoint command, run as its non-root user, with nothing writable
but the state volume (no Docker engine here: the Dockerfile's ENTRYPOINT + CMD are run
directly, as uid 10001, with every other path root-owned and TMPDIR pointing nowhere).

The test venv's interpreter may live where uid 10001 cannot read it (pyenv under /root), so
the entrypoint script runs on the system's Python 3.11 with the venv's packages on its path:
the same console script and arguments as the image, another build of the same CPython."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import site
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from monitor.fakes.mastodon import FakeMastodon
from tests.conftest import free_port, mastodon_config, wait_for

ROOT = Path(__file__).resolve().parent.parent
UID = 10001


def dockerfile() -> dict[str, str]:
    rows: dict[str, str] = {}
    for line in (ROOT / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            rows[word.upper()] = rest.strip()  # the last of each: the runtime stage's
    return rows


@pytest.fixture
def sandbox() -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to run a command as uid 10001 (CI runs as root)")
    top = Path(tempfile.mkdtemp(prefix="accmon-container-"))
    top.chmod(0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def user_python() -> list[str]:
    """An interpreter uid 10001 can run: ours if readable by others, else the system's."""
    ours = Path(sys.executable).resolve()
    if all(os.stat(p).st_mode & stat.S_IXOTH for p in [*ours.parents, ours]):
        return [str(ours)]
    system = shutil.which("python3", path="/usr/local/bin:/usr/bin")
    if system is None:
        pytest.skip("no Python that uid 10001 may run (ours is in a private directory)")
    return [system]


async def _get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.get(url) as resp:
        return resp.status, await resp.text()


async def test_entrypoint_runs_as_non_root_with_only_the_state_volume_writable(
        sandbox: Path) -> None:
    rows = dockerfile()
    command = json.loads(rows["ENTRYPOINT"]) + json.loads(rows["CMD"])
    user = rows["USER"].split(":")[0]
    assert int(user) == UID
    config_path = command[command.index("--config") + 1]
    state_path = command[command.index("--state") + 1]
    volume = json.loads(rows["VOLUME"])[0]
    assert Path(state_path).parent == Path(volume)

    etc = sandbox / "etc"  # root-owned, read-only for the user, like the image's /etc
    etc.mkdir(mode=0o755)
    state_dir = sandbox / "volume"  # the only place the user may write
    state_dir.mkdir()
    os.chown(state_dir, UID, UID)
    masto = FakeMastodon({"alice": "present"})
    port = free_port()
    async with masto.running() as base:
        cfg = etc / Path(config_path).name
        cfg.write_text(mastodon_config(base, ["alice"], state_path="/nonexistent/unused.db")
                       .replace("listen_port: 0", f"listen_port: {port}"))
        cfg.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        argv = [*user_python(), str(Path(sys.executable).parent / command[0]), *command[1:]]
        argv[argv.index(config_path)] = str(cfg)
        argv[argv.index(state_path)] = str(state_dir / Path(state_path).name)
        argv[argv.index("0.0.0.0")] = "127.0.0.1"  # loopback only in tests
        env = {"PATH": os.environ["PATH"], "PYTHONDONTWRITEBYTECODE": "1",
               "PYTHONPATH": os.pathsep.join([str(ROOT), *site.getsitepackages()]),
               "PYTHONUNBUFFERED": "1", "HOME": "/nonexistent", "TMPDIR": "/nonexistent",
               "ACCMON_RELOAD_TOKEN": "tok"}
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=state_dir, env=env, user=UID, group=UID, extra_groups=[],
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        assert proc.stdout is not None
        try:
            first = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
            assert first["event"] == "monitor started", first
            async def ready() -> str | None:
                status, body = await _get(f"http://127.0.0.1:{port}/readyz")
                return body if status == 200 else None

            body = await wait_for(ready, timeout=10, what="/readyz answering 200")
            assert json.loads(body)["status"] == "ok"
            # The image's HEALTHCHECK command, as the image's user.
            health = json.loads(rows["HEALTHCHECK"].split("CMD", 1)[1].strip())
            health = [*user_python(), *health[1:]] if health[0] == "python" else health
            health[-1] = health[-1].replace("9464", str(port))
            check = await asyncio.create_subprocess_exec(*health, user=UID, group=UID,
                                                         extra_groups=[], env=env)
            assert await asyncio.wait_for(check.wait(), 10) == 0
            async with aiohttp.ClientSession() as s, s.post(
                    f"http://127.0.0.1:{port}/-/reload",
                    headers={"Authorization": "Bearer tok"}) as resp:
                assert resp.status == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            out, _ = await asyncio.wait_for(proc.communicate(), 10)
        assert proc.returncode == 0, out.decode()[-2000:]
    assert b"monitor stopped" in out
    written = sorted(p.name for p in state_dir.iterdir())
    assert written and all(p.startswith("monitor.db") for p in written), written
    assert all(p.stat().st_uid == UID for p in state_dir.iterdir())
    assert sorted(p.name for p in etc.iterdir()) == [cfg.name]  # nothing written beside it
