"""Signals: SIGTERM and SIGINT drain and stop, SIGHUP reloads the config."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable


async def run_until_stopped(start: Callable[[], Awaitable[None]],
                            stop: Callable[[], Awaitable[None]],
                            reload: Callable[[], Awaitable[list[str]]]) -> None:
    """``start()``, then wait for SIGTERM/SIGINT and ``stop()``; every SIGHUP runs
    ``reload()`` (a reload's problems are its own to log)."""
    loop, stopping = asyncio.get_running_loop(), asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    reloads: set[asyncio.Task[list[str]]] = set()

    def hup() -> None:
        task = asyncio.ensure_future(reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, hup)
    await start()
    try:
        await stopping.wait()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await stop()
