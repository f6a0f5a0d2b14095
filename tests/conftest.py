"""Shared fixtures: a monitor running in-process against loopback fakes."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import selectors
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.app import Monitor
from monitor.config import parse_config
from monitor.model import AccountKey, ErrorKind, State

# With PYTHONDONTWRITEBYTECODE set (some shells and CI images set it), every pytest
# process, each parallel worker included, would rewrite and compile every test module anew:
# about 4 s of CPU each. Keep the compiled tests, but in .pytest_cache (git-ignored), not
# beside the sources, which is what the setting is usually there to prevent.
if sys.dont_write_bytecode:
    sys.pycache_prefix = str(Path(__file__).resolve().parent.parent / ".pytest_cache" / "pyc")
    sys.dont_write_bytecode = False

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
    """Poll ``predicate`` (plain, or returning an awaitable: an HTTP look-up, say) until
    truthy; fail the test with ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        await asyncio.sleep(0.02)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def state_of(monitor: Monitor, platform: str, handle: str) -> State:
    return monitor.accounts[AccountKey(platform, handle)].state.state


def last_probed(monitor: Monitor, platform: str, handle: str) -> float:
    """When the account's latest answer came in (0 before the first)."""
    return monitor.accounts[AccountKey(platform, handle)].last_probe_at or 0.0


async def probed_again(monitor: Monitor, handles: Iterable[str], *, platform: str = "masto",
                       times: int = 2, timeout: float = 10.0) -> None:
    """A positive sign that the monitor has moved on: every one of ``handles`` was answered
    and decided on ``times`` more times from now. (A decision is taken in the same step as
    the answer is recorded, so whatever those answers cause, a transition or a page row, is
    written by the time this returns.)"""
    handles = list(handles)
    for round_ in range(1, times + 1):
        await wait_for(_answered_after(monitor, platform, handles, time.time()),
                       timeout=timeout, what=f"{handles} probed again ({round_}/{times})")


def _answered_after(monitor: Monitor, platform: str, handles: list[str],
                    mark: float) -> Callable[[], bool]:
    return lambda: all(last_probed(monitor, platform, h) > mark for h in handles)


def outbox_settled(monitor: Monitor) -> bool:
    """No decision waits to be written and no outbox row waits to be sent (each one is
    delivered, failed, dropped or held): no page can go out until a new decision."""
    return (monitor.store is not None and not monitor.store.outbox_pending()
            and not (monitor.writer is not None and monitor.writer.backlog))


async def quiet(monitor: Monitor, handles: Iterable[str], *, platform: str = "masto",
                times: int = 2, timeout: float = 10.0) -> None:
    """"Nothing more arrives", as a positive sign instead of a sleep: the outbox has sent
    what it had, the monitor then decided ``times`` fresh answers of each of ``handles``, and
    after those the outbox again has nothing to send. A duplicate page, or one that should
    have stayed held, would be in the receiver's hands (or failing the wait) by then."""
    await wait_for(lambda: outbox_settled(monitor), timeout=timeout, what="the outbox sent")
    await probed_again(monitor, handles, platform=platform, times=times, timeout=timeout)
    await wait_for(lambda: outbox_settled(monitor), timeout=timeout,
                   what="the outbox sent, after the fresh answers")


# ------------------------------------------------------------------ virtual time


class _FastForward(selectors.BaseSelector):
    """The selector of :class:`VirtualTimeLoop`: polls for I/O without waiting, and where the
    loop would wait ``timeout`` for its next timer, moves the virtual clock on by that."""

    def __init__(self, loop: VirtualTimeLoop):
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:
            raise RuntimeError("virtual time: nothing is due and nothing is ready; "
                               "the test would wait forever")
        self._loop.advance(timeout)
        return ready

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on virtual time, for code that takes a clock (the scheduler): whenever
    nothing is ready it jumps straight to the next timer. ``sleep(60)`` takes no real time,
    ``loop.time()`` moves only by the delays the code asked for, and a count "per second"
    is exact however loaded the machine is."""

    def __init__(self) -> None:
        self._virtual_now = 0.0
        super().__init__(selector=_FastForward(self))

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        self._virtual_now += max(0.0, seconds)


def on_virtual_time(test: Callable[[], Awaitable[None]]) -> Callable[[], None]:
    """Run an ``async def`` test without arguments on a fresh :class:`VirtualTimeLoop`;
    inside it, ``asyncio.get_running_loop().time`` is the clock to inject."""
    def run() -> None:
        loop = VirtualTimeLoop()
        try:
            loop.run_until_complete(test())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    run.__name__, run.__qualname__ = test.__name__, test.__qualname__
    run.__doc__, run.__module__ = test.__doc__, test.__module__
    return run


async def scrape(port: int, path: str = "/metrics") -> str:
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{port}{path}") as resp:
        assert resp.status == 200, path
        return await resp.text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RefusedPort:
    """A loopback port bound but not listening: connecting is refused at once, and no other
    test (parallel workers included) can take the port meanwhile, as it could a port from
    :func:`free_port`. ``release()`` lets a server of the test's own listen there."""

    def __init__(self) -> None:
        self._socket: socket.socket | None = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])

    def release(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> RefusedPort:
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` (seconds of real processes and timers) run first, in their
    usual order: under pytest-xdist they start at once, spread over the workers, instead of
    arriving last and leaving the other workers idle while one finishes them."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test that ran the monitor as a process shows the end of that process's log
    (any ``*.log`` in its tmp_path): what the monitor did is half of why a test timed out,
    and a CI run on a loaded machine is seldom reproduced by hand."""
    report = yield
    if report.failed and call.when == "call":
        tmp = getattr(item, "funcargs", {}).get("tmp_path")
        for log_file in sorted(Path(tmp).glob("*.log")) if isinstance(tmp, Path) else ():
            with contextlib.suppress(OSError):
                lines = log_file.read_text(errors="replace").splitlines()[-150:]
                report.sections.append((f"monitor log {log_file.name} (last 150 lines)",
                                        "\n".join(lines)))
    return report
