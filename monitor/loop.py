"""Which event loop runs the monitor, and the heap settled once the watchlist is built.

``run(main)`` is ``asyncio.run(main)`` on uvloop when it is installed (``pip install
'account-monitor[fast]'``), else on asyncio's own loop; ``ACCMON_LOOP=asyncio`` forces
asyncio's, ``ACCMON_LOOP=uvloop`` asks for uvloop (asyncio's, with a warning, when it is not
installed). One log line says which loop runs. The default loop is what every target is
measured on (bench/throughput.py); uvloop is the optional extra measured beside it.

``freeze_heap()`` moves everything alive into the collector's permanent generation once the
watchlist is built: what start-up made (a config, a Watched, a view and a state per account)
lives as long as the process, so the cyclic collector need not walk it again on every full
collection. Measured: at 10k accounts a full collection took ~0.2 s every ~5 s of probing
(~4% of the CPU), at a million it is seconds long and stalls every probe meanwhile.
"""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, TypeVar

import structlog

log = structlog.get_logger("monitor.loop")

T = TypeVar("T")
ENV = "ACCMON_LOOP"
CHOICES = ("asyncio", "uvloop")

LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def choose(env: Mapping[str, str] | None = None) -> tuple[str, LoopFactory, str]:
    """(loop name, loop factory, why): uvloop when installed unless ``ACCMON_LOOP`` says
    asyncio. An unknown ``ACCMON_LOOP`` is named in ``why`` and the default is used."""
    wanted = (os.environ if env is None else env).get(ENV, "").strip().lower()
    if wanted == "asyncio":
        return "asyncio", asyncio.new_event_loop, f"{ENV}=asyncio"
    factory = _uvloop_factory()
    why = "installed" if not wanted else f"{ENV}={wanted}"
    if wanted and wanted not in CHOICES:
        why = f"{ENV}={wanted!r} is not one of {', '.join(CHOICES)}; the default is used"
    if factory is not None:
        return "uvloop", factory, why
    if wanted == "uvloop":
        return "asyncio", asyncio.new_event_loop, (
            f"{ENV}=uvloop but uvloop is not installed (pip install 'account-monitor[fast]')")
    return "asyncio", asyncio.new_event_loop, "uvloop is not installed" if not wanted else why


def _uvloop_factory() -> LoopFactory | None:
    try:
        import uvloop  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    factory: LoopFactory = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], env: Mapping[str, str] | None = None) -> T:
    """``asyncio.run(main)`` on the loop :func:`choose` picks. Which one runs is in the
    "monitor started" line (:func:`running`); a warning comes first when ``ACCMON_LOOP``
    asked for something it could not have."""
    name, factory, why = choose(env)
    wanted = (os.environ if env is None else env).get(ENV, "").strip().lower()
    if wanted and wanted != name:
        log.warning("event loop", loop=name, why=why)
    _WHY[:] = [why]
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


_WHY: list[str] = []  # why run() chose the loop it chose


def running() -> dict[str, str]:
    """The loop this process runs on, and why, for the start-up log line."""
    loop = asyncio.get_running_loop()
    name = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
    return {"loop": name, "loop_why": _WHY[0] if _WHY else "started without monitor.loop.run"}


def freeze_heap() -> int:
    """``gc.freeze()``: every object alive now is left out of future collections (it is
    still freed by reference counting). Call it once start-up has built the watchlist (and
    again after a reload that added many accounts). Returns how many objects it froze."""
    # No gc.collect() first: at a million accounts one full pass is ~4 s of start-up, and
    # start-up leaves next to no cyclic garbage (what it does leave is kept, once).
    gc.freeze()
    return gc.get_freeze_count()
