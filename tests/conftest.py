"""Shared fixtures: a monitor running in-process against loopback fakes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.app import Monitor
from monitor.config import parse_config
from monitor.model import AccountKey, ErrorKind, State

# Hostile answers every probe must turn into error(kind), never absent: (faults, kind).
HOSTILE = [({"malformed_rate": 1.0}, ErrorKind.PARSE),
           ({"huge_body_rate": 1.0, "huge_body_bytes": 2 << 20}, ErrorKind.TOO_LARGE),
           ({"huge_body_rate": 1.0, "huge_body_bytes": 2 << 20, "huge_body_chunked": True},
            ErrorKind.TOO_LARGE),
           ({"reset_rate": 1.0}, ErrorKind.CONNECTION),
           ({"timeout_rate": 1.0, "hang_seconds": 5.0}, ErrorKind.TIMEOUT)]

FAST_DEFAULTS = """
defaults:
  interval: 100ms
  confirm_interval: 50ms
  failure_threshold: 2
  recovery_threshold: 1
  staleness: 1h
  timeout: 500ms
  jitter: 0.1
"""


def mastodon_config(base_url: str, handles: list[str], *, state_path: str, extra: str = "",
                    protected: bool = True) -> str:
    flag = str(protected).lower()
    accounts = "".join(f"  - platform: masto\n    handle: {h}\n    protected: {flag}\n"
                       for h in handles)
    return f"""
monitor:
  listen_port: 0
  state_path: {state_path}
  shutdown_grace: 2s
{FAST_DEFAULTS}{extra}
platforms:
  masto:
    probe: mastodon
    base_url: {base_url}
    rate_per_second: 1000
    burst: 100
    concurrency: 8
accounts:
{accounts}"""


@asynccontextmanager
async def running_monitor(config_text: str) -> AsyncIterator[Monitor]:
    monitor = Monitor(parse_config(config_text, "test.yaml", env={}))
    await monitor.start()
    try:
        yield monitor
    finally:
        await monitor.stop()


async def wait_for(predicate: Callable[[], Any], timeout: float = 10.0,
                   what: str = "condition") -> Any:
    """Poll ``predicate`` until truthy; fail the test with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.02)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def state_of(monitor: Monitor, platform: str, handle: str) -> State:
    return monitor.accounts[AccountKey(platform, handle)].view.state.state


async def scrape(port: int, path: str = "/metrics") -> str:
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{port}{path}") as resp:
        assert resp.status == 200, path
        return await resp.text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def state_file(tmp_path: Path) -> str:
    return str(tmp_path / "state.db")


@contextlib.contextmanager
def deadline(seconds: float = 10.0) -> Iterator[None]:
    """Fail instead of hanging: SIGALRM raises in the main thread after ``seconds``."""
    def expired(signum: int, frame: Any) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
