"""README's loopback walkthrough, run exactly as written: its commands, its ports, its config.

The commands come from the fenced blocks between ``<!-- walkthrough:start -->`` and
``<!-- walkthrough:end -->``: the first two keep running (the fake and the monitor), the
others are run one line at a time with bash, as a person would type them. Between them the
test waits on what the text promises (all up; the page; the resolve). It must page exactly
once, for realDonaldTrump, and never for the two accounts that stayed present.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"```sh\n(.*?)```", re.S)


def walkthrough() -> list[list[str]]:
    text = (ROOT / "README.md").read_text()
    body = text.split("<!-- walkthrough:start -->", 1)[1].split("<!-- walkthrough:end -->")[0]
    return [[line for line in block.splitlines() if line.strip()]
            for block in BLOCK.findall(body)]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


class Output:
    """Collects a process's output lines on a thread (so its pipe never fills)."""

    def __init__(self, proc: subprocess.Popen[str]):
        self.lines: list[str] = []
        assert proc.stdout is not None
        stream = proc.stdout
        self._thread = threading.Thread(target=lambda: self.lines.extend(stream), daemon=True)
        self._thread.start()

    def notifications(self) -> list[dict[str, object]]:
        out = []
        for line in list(self.lines):
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("event") == "notification":
                out.append(doc)
        return out


def wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def accounts() -> dict[str, str]:
    try:
        with urllib.request.urlopen("http://127.0.0.1:9464/api/v1/accounts", timeout=2) as r:
            return {a["account"]: a["state"] for a in json.load(r)["accounts"]}
    except OSError:
        return {}


def bash(line: str, cwd: Path) -> str:
    done = subprocess.run(["bash", "-c", line], cwd=cwd, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, f"{line!r} failed: {done.stderr}"
    return done.stdout


@pytest.mark.slow
def test_the_loopback_walkthrough_pages_once_and_only_for_the_vanished_account(
        tmp_path: Path) -> None:
    if not (ROOT / ".venv" / "bin" / "account-monitor").exists():
        pytest.skip("the walkthrough runs .venv/bin/...: create it with `python3 dev.py run`")
    if shutil.which("curl") is None:
        pytest.skip("the walkthrough uses curl, which is not installed")
    if not (port_free(8083) and port_free(9464)):
        pytest.skip("the walkthrough's ports 8083 and 9464 are in use on this machine")
    # The checkout, as the reader has it, but with its own state/ directory.
    for name in (".venv", "config", "monitor"):
        (tmp_path / name).symlink_to(ROOT / name)
    (fake_cmd,), (monitor_cmd,), steps, finish = walkthrough()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("X_BEARER_TOKEN", None)
    procs = [subprocess.Popen(["bash", "-c", f"exec {cmd}"], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for cmd in (fake_cmd, monitor_cmd)]
    try:
        monitor = Output(procs[1])
        Output(procs[0])
        wait(lambda: accounts() == dict.fromkeys(
            ("realDonaldTrump", "POTUS", "XDevelopers"), "up"), 30, "all three up")
        listing, vanish = steps
        assert '"state": "up"' in bash(listing, tmp_path)
        bash(vanish, tmp_path)
        triggers = lambda: [n for n in monitor.notifications()  # noqa: E731
                            if n["action"] == "trigger"]
        wait(triggers, 40, "the page")
        recover, history = finish
        bash(recover, tmp_path)
        wait(lambda: any(n["action"] == "resolve" for n in monitor.notifications()), 30,
             "the resolve")
        printed = bash(history, tmp_path)
        assert "realDonaldTrump" in printed
        sent = [(n["action"], n["account"]) for n in monitor.notifications()]
        assert sent == [("trigger", "realDonaldTrump"), ("resolve", "realDonaldTrump")]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
