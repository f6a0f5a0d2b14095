#!/usr/bin/env python3
"""The two commands of README's quick start, on a machine with only Python 3.11+.

    python3 dev.py run [ARGS...]    start the monitor (bundled config, SQLite state file)
    python3 dev.py test [ARGS...]   install what the tests need, then lint, type-check and run
                                    every test

Both create ``.venv`` on first use and reinstall only when pyproject.toml changes.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
# Debian packages the suite runs for real (installed with apt-get when missing, as root),
# each keyed by the command (or absolute path) that shows it is there.
DEBIAN_PACKAGES: dict[str, str] = {
    "promtool": "prometheus",  # tests/test_prometheus_rules.py: check and unit-test rules
    "prometheus": "prometheus",  # tests/test_prometheus_live.py: dashboards vs a real one
    # tests/test_alertmanager_live.py: our alerts through a real Alertmanager
    "prometheus-alertmanager": "prometheus-alertmanager",
    # tests/browser.py: pages tested in real headless Chromium, driven by Playwright with
    # executable_path (never `playwright install`, whose browser download is blocked here).
    "/usr/bin/chromium": "chromium",
    # ... and a font, so its screenshots show letters, not boxes, where an image has none.
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf": "fonts-dejavu-core",
}


def is_present(need: str) -> bool:
    """A need of DEBIAN_PACKAGES is met: an absolute path exists, or a command is on PATH."""
    return Path(need).exists() if need.startswith("/") else shutil.which(need) is not None


def ensure_venv(extras: str) -> None:
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py is what an old Python runs first
        sys.exit(f"account-monitor needs Python 3.11+, this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print(f"creating {VENV} ...", flush=True)
        venv.create(VENV, with_pip=True)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes() + extras.encode()).hexdigest()
    stamp = VENV / f".installed-{extras or 'base'}"
    if stamp.exists() and stamp.read_text() == digest:
        return
    target = f"{ROOT}[{extras}]" if extras else str(ROOT)
    print(f"installing account-monitor{'[' + extras + ']' if extras else ''} ...", flush=True)
    subprocess.run([BIN / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-e", target], check=True)
    stamp.write_text(digest)


def ensure_debian_packages() -> None:
    missing = sorted({pkg for need, pkg in DEBIAN_PACKAGES.items() if not is_present(need)})
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"note: cannot install {', '.join(missing)} (needs root and apt-get); "
              "the tests that need them will be skipped with a message", flush=True)
        return
    print(f"installing Debian packages: {', '.join(missing)} ...", flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                   check=True, env=env)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "test"):
        print(__doc__, file=sys.stderr)
        return 2
    os.chdir(ROOT)
    if argv[0] == "run":
        ensure_venv("")
        os.execv(BIN / "account-monitor", [str(BIN / "account-monitor"), "run", *argv[1:]])
    ensure_venv("test")
    ensure_debian_packages()
    lint = subprocess.run([BIN / "ruff", "check", "."])
    types = subprocess.run([BIN / "mypy", "--strict", "monitor"])
    # Six workers, even on two cores: the suite mostly waits (loopback servers, real timers).
    # The tests marked slow go out first, one at a time, so none is left running alone at the end.
    tests = subprocess.run([BIN / "python", "-m", "pytest", "-n", "6", "--maxschedchunk", "1",
                            *argv[1:]])
    return tests.returncode or lint.returncode or types.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
