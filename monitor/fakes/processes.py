"""Run the real ``account-monitor`` command against the fakes and measure it (tests, bench)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


# Peak RSS must be measured in a child forked from a small process: Linux starts a child's
# maxrss at its parent's RSS (the fork copies the page tables, exec keeps the high-water
# mark), so a child of this process would report at least this process's size. The launcher
# is a bare interpreter (~10 MB) that forks the probe, waits and reports its ru_maxrss.
LAUNCHER = """
import os, sys
pid = os.fork()
if pid == 0:
    os.dup2(1, 2)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss, file=sys.stderr)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def probe_process(cfg: Path, platform: str, handle: str,
                  account_id: str | None = None) -> tuple[int, str, int]:
    """Run ``account-monitor probe``: (exit code, output, peak RSS in bytes) of that process."""
    argv = [sys.executable, "-m", "monitor", "probe", "--config", str(cfg), platform, handle]
    if account_id:
        argv += ["--id", account_id]
    done = subprocess.run([sys.executable, "-S", "-c", LAUNCHER, *argv], cwd=ROOT,
                          capture_output=True, check=False)
    peak_kib = int(done.stderr.decode().split()[-1])  # Linux reports KiB
    return done.returncode, done.stdout.decode(errors="replace"), peak_kib * 1024
