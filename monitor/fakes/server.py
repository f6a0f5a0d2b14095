"""The server shell every fake platform shares: serving, control endpoints, the command line.

A fake built on :class:`FakeServer` adds its platform's routes (:meth:`FakeServer.add_routes`)
and gets, without code of its own:

- every fault of :mod:`monitor.fakes.faults`, drawn per request from its :class:`Faults`;
- ``running()``: served on a loopback port for as long as a ``with`` block lasts, plus the
  "elsewhere" server the cross-host redirect points at, started on first use;
- control endpoints, for other processes:

  - ``POST /_control/accounts/{handle}`` -- the platform's own account script (see subclasses)
  - ``POST /_control/faults`` -- JSON with :class:`Faults` fields; replaces the whole profile
  - ``POST /_control/reset`` -- zero the request counters
  - ``GET /_control/stats`` -- counters, account states and the current faults

- ``python -m monitor.fakes.<name>``: :func:`fake_arguments` and :func:`serve_main`.

Control endpoints and the login page never see faults, latency or counting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, ClassVar

from aiohttp import web

from monitor.fakes.faults import LOGIN_PAGE, LOGIN_PATH, Canned, Faults, Handler, misbehave

CONTROL_PREFIX = "/_control/"
# Marks the app the "elsewhere" server runs: it answers plainly, never with a fault.
ELSEWHERE = web.AppKey("elsewhere", bool)


@contextlib.asynccontextmanager
async def serve(app: web.Application, closing: asyncio.Event, host: str = "127.0.0.1",
                port: int = 0, *, scheme: str = "http",
                runners: list[web.AppRunner] | None = None,
                **runner_options: Any) -> AsyncIterator[str]:
    """Serve a fake on ``host:port`` (0: any free port); yields its base URL. On exit,
    ``closing`` is set first so hanging and slow handlers end and shutdown is quick.

    ``runner_options`` go to :class:`aiohttp.web.AppRunner`, over these defaults; the
    runner is added to ``runners`` while it serves (for its open connections).
    """
    # handler_cancellation: a hanging handler ends when its client gives up.
    options: dict[str, Any] = {"access_log": None, "handler_cancellation": True,
                               "shutdown_timeout": 1.0, **runner_options}
    runner = web.AppRunner(app, **options)
    await runner.setup()
    if runners is not None:
        runners.append(runner)
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield f"{scheme}://{shown}:{bound_port}"
    finally:
        closing.set()
        if runners is not None:
            runners.remove(runner)
        await runner.cleanup()



class FakeServer:
    """Faults, counters, control endpoints and ``running()``; subclasses add the platform."""

    server_error_answer: ClassVar[Canned]
    rate_limited_answer: ClassVar[Canned]

    def __init__(self, *, faults: Faults | None = None, seed: int = 0) -> None:
        self.faults = Faults()
        self._rng = random.Random(seed)
        self._counts: Counter[str] = Counter()
        self._injected: Counter[str] = Counter()
        self.requests_total = 0
        self.elsewhere_requests = 0  # answered by the elsewhere server: a client followed
        self._closing = asyncio.Event()
        # Who answers on the other host of the cross-host redirect; None: see elsewhere_twin.
        self.elsewhere: FakeServer | None = None
        self._elsewhere_url: str | None = None
        self._elsewhere_lock = asyncio.Lock()
        self._servers: contextlib.AsyncExitStack | None = None
        self._host = "127.0.0.1"
        if faults is not None:
            self.set_faults(faults)

    # ------------------------------------------------------------------ Python control

    def set_faults(self, faults: Faults | None = None, /, **fields: Any) -> Faults:
        """Replace the fault profile: ``set_faults(server_error_rate=0.2)``; no args clears it."""
        self.faults = faults if faults is not None else Faults(**fields)
        if self.faults.seed is not None:
            self._rng.seed(self.faults.seed)
        return self.faults

    def request_count(self, handle: str) -> int:
        """Requests addressed to this account (faulted ones included)."""
        return self._counts[handle]

    def reset_counts(self) -> None:
        self._counts.clear()
        self._injected.clear()
        self.requests_total = 0
        self.elsewhere_requests = 0

    def stats(self) -> dict[str, Any]:
        return {
            "requests_total": self.requests_total,
            "elsewhere_requests": self.elsewhere_requests,
            "requests": dict(self._counts),
            "faults_injected": dict(self._injected),
            "faults": self.faults.to_json(),
            "accounts": self.account_states(),
        }

    # ------------------------------------------------------------------ subclass hooks

    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def handle_of(self, request: web.Request) -> str | None:
        """Which account a request is about, for the counters."""
        raise NotImplementedError

    def control_account(self, handle: str, data: Any) -> dict[str, Any]:
        """Apply ``POST /_control/accounts/{handle}``; raise ValueError on bad input."""
        raise NotImplementedError

    def set_state(self, handle: str, state: str) -> object:
        """Create the account or put it in ``state``, one of the platform's own (a subclass's
        ``STATES``); ValueError for any other."""
        raise NotImplementedError

    def account_id(self, handle: str) -> str | None:
        """The platform's immutable id of the account holding ``handle``, as a probe learns
        it; None on a platform without ids (a website)."""
        return None

    def account_states(self) -> dict[str, str]:
        raise NotImplementedError

    def answer_headers(self, fault: str | None) -> dict[str, str]:
        """Headers on every platform answer (rate-limit headers, say)."""
        return {}

    def elsewhere_twin(self) -> FakeServer:
        """The fake the elsewhere server runs: :attr:`elsewhere` if set, else this one.

        This one means the same accounts, same ids, with no faults: believing it hides an
        outage. Set :attr:`elsewhere` to a fake with other ids to show the worse outcome, a
        changed identity (and a false page).
        """
        return self.elsewhere if self.elsewhere is not None else self

    # ------------------------------------------------------------------ serving

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._misbehave])
        app.router.add_get(LOGIN_PATH, self._login)
        app.router.add_post(CONTROL_PREFIX + "accounts/{handle}", self._control_account)
        app.router.add_post(CONTROL_PREFIX + "faults", self._control_faults)
        app.router.add_post(CONTROL_PREFIX + "reset", self._control_reset)
        app.router.add_get(CONTROL_PREFIX + "stats", self._control_stats)
        self.add_routes(app)
        return app

    @contextlib.asynccontextmanager
    async def running(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve on ``host:port`` (0: any free port); yields the base URL.

        The elsewhere server, if a cross-host redirect asks for it, stops with this one.
        """
        self._closing = asyncio.Event()
        self._host, self._elsewhere_url = host, None
        async with contextlib.AsyncExitStack() as servers:
            self._servers = servers
            try:
                yield await servers.enter_async_context(
                    serve(self.app(), self._closing, host, port))
            finally:
                self._servers = None

    async def elsewhere_url(self) -> str:
        """The base URL of the elsewhere server, started on first use (needs ``running()``)."""
        async with self._elsewhere_lock:
            if self._elsewhere_url is None:
                if self._servers is None:
                    raise RuntimeError("the cross-host fault needs the fake served by running()")
                app = self.elsewhere_twin().app()
                app[ELSEWHERE] = True
                app.middlewares.insert(0, self._count_elsewhere)
                self._elsewhere_url = await self._servers.enter_async_context(
                    serve(app, asyncio.Event(), _other_loopback(self._host)))
            return self._elsewhere_url

    @web.middleware
    async def _count_elsewhere(self, request: web.Request,
                               handler: Handler) -> web.StreamResponse:
        self.elsewhere_requests += 1
        return await handler(request)

    @web.middleware
    async def _misbehave(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if (request.path.startswith(CONTROL_PREFIX) or request.path == LOGIN_PATH
                or request.app.get(ELSEWHERE, False)):
            return await handler(request)
        self.requests_total += 1
        handle = self.handle_of(request)
        if handle is not None:
            self._counts[handle] += 1
        faults = self.faults
        if faults.latency:
            await self.pause(faults.latency)
        fault = faults.pick(self._rng)
        headers = self.answer_headers(fault)
        if fault is not None:
            self._injected[fault] += 1
        return await misbehave(self, request, handler, fault, faults, headers)

    async def _login(self, request: web.Request) -> web.Response:
        return web.Response(text=LOGIN_PAGE, content_type="text/html", charset="utf-8")

    @property
    def stopping(self) -> bool:
        return self._closing.is_set()

    async def pause(self, seconds: float) -> None:
        """Sleep, but end early when the server shuts down."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):  # not wait_for: it can swallow a cancel
                await self._closing.wait()

    # ------------------------------------------------------------------ control endpoints

    async def _control_account(self, request: web.Request) -> web.Response:
        try:
            result = self.control_account(request.match_info["handle"], await request.json())
        except ValueError as exc:  # JSONDecodeError included
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(result)

    async def _control_faults(self, request: web.Request) -> web.Response:
        try:
            faults = self.set_faults(Faults.from_json(await request.json()))
        except (ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(faults.to_json())

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset_counts()
        return web.json_response(self.stats())

    async def _control_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())



def _other_loopback(host: str) -> str:
    """Another address for the elsewhere server: 127.0.0.2 beside 127.0.0.1 (Linux answers on
    all of 127/8), else the same host, where only the port differs (still another origin)."""
    if host != "127.0.0.1":
        return host
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.2", 0))
        except OSError:
            return host
    return "127.0.0.2"



# ---------------------------------------------------------------------- command line


def fake_arguments(description: str) -> argparse.ArgumentParser:
    """The flags every fake takes; a fake may add its own before :func:`serve_main`."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--account", type=_account_arg, action="append", default=[],
                        metavar="HANDLE=STATE", help="repeatable")
    parser.add_argument("--faults", type=json.loads, metavar="JSON", help="a Faults object")
    return parser


def serve_main(make: Callable[[argparse.Namespace], FakeServer],
               parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Build the fake from parsed flags and serve it until SIGTERM or SIGINT.

    Prints the base URL on one line of stdout once listening, so a parent process that
    passed ``--port 0`` learns the port.
    """
    args = parser.parse_args(argv)
    try:
        fake = make(args)
        if args.faults is not None:
            fake.set_faults(Faults.from_json(args.faults))
    except (ValueError, TypeError) as exc:
        parser.error(str(exc))
    asyncio.run(serve_until_signal(fake.running(args.host, args.port)))
    return 0


def _account_arg(text: str) -> tuple[str, str]:
    handle, sep, state = text.partition("=")
    if not sep or not handle:
        raise argparse.ArgumentTypeError(f"{text!r}: use HANDLE=STATE")
    return handle, state


async def serve_until_signal(running: contextlib.AbstractAsyncContextManager[str]) -> None:
    """Enter ``running`` (a fake's ``running(host, port)``), print the base URL it yields on
    one line of stdout, and stay until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with running as base_url:
        print(base_url, flush=True)
        await stop.wait()
    sys.stdout.flush()

