"""Command line: ``account-monitor run|check-config|probe|demo|history|notify-test`` and the
on-call clients of the HTTP API, ``silence|ack|watch`` (:mod:`monitor.oncall_cli`); also
``python -m monitor``.

Exit codes: 0 ok, 2 a problem the operator must fix (bad config, unusable state file, busy
port), each reported as one line naming the file or port and the fix, never a traceback;
``probe`` adds 1 (absent) and 3 (error).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import socket
import sqlite3
import sys
import time
from pathlib import Path

from monitor import __version__, capacity, timefmt
from monitor.config import AccountConfig, Config, ConfigError, load_config
from monitor.sharding import Shard, parse_shard

DEFAULT_CONFIG = "config/monitor.yaml"


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return None


def _shard(args: argparse.Namespace) -> tuple[bool, Shard | None]:
    """``--shard`` or ``ACCMON_SHARD``: (valid, shard); None means the config's."""
    shard_text = args.shard or os.environ.get("ACCMON_SHARD")
    try:
        return True, parse_shard(shard_text) if shard_text else None
    except ValueError as exc:
        print(f"--shard/ACCMON_SHARD: {exc}", file=sys.stderr)
        return False, None


def _config_and_shard(args: argparse.Namespace) -> tuple[Config, Shard | None] | None:
    """The config file and the shard flag, each problem printed; None when either is bad."""
    config = _load(args.config)
    if config is None:
        return None
    valid, shard = _shard(args)
    return (config, shard) if valid else None


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.app import Monitor
    from monitor.logs import configure

    loaded = _config_and_shard(args)
    if loaded is None:
        return 2
    config, shard = loaded
    from monitor import auth

    token_problems = auth.resolve_tokens(config).problems
    if token_problems:  # a token file that cannot be read: say so now, not as 503s later
        print(token_problems[0], file=sys.stderr)
        return 2
    state_path = args.state or config.monitor.state_path
    host = args.host or config.monitor.listen_host
    port = config.monitor.listen_port if args.port is None else args.port
    problem = _state_problem(state_path) or _port_problem(host, port)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    configure(args.log_format or config.monitor.log_format, config.monitor.log_level)
    monitor = Monitor(config, config_path=args.config, state_path=state_path,
                      listen_host=host, listen_port=port, shard=shard,
                      reload_token=os.environ.get("ACCMON_RELOAD_TOKEN") or None)
    try:
        from monitor import loop

        monitor.freeze_heap = True
        loop.run(monitor.run_forever())  # uvloop when installed, says which (monitor.loop)
    except (sqlite3.Error, OSError) as exc:  # lost a race with the checks above
        line = _startup_failure(exc, state_path, host, port)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return 2
    return 0


# --------------------------------------------------------------------------- start-up checks


def _state_problem(path: str) -> str | None:
    """One line naming the state file and the fix, if the monitor could not use it.

    Opens it as the monitor will (creating it and running migrations) and checks it is
    intact and writable, so a corrupt, truncated, newer or read-only file is refused
    before anything starts rather than as a traceback from inside start-up.
    """
    from monitor.store import Store, StoreError

    try:
        store = Store(path)
    except StoreError as exc:
        return str(exc)
    try:
        store.verify()
    except StoreError as exc:
        return str(exc)
    finally:
        store.close()
    return None


def _state_failure(path: str, exc: BaseException) -> str:
    from monitor.store import StoreError

    return str(exc) if isinstance(exc, StoreError) else str(StoreError.of(path, exc))


def _port_problem(host: str, port: int) -> str | None:
    """One line naming the address and the fix if ``host:port`` cannot be listened on.

    Binds as asyncio will (every address ``host`` resolves to, SO_REUSEADDR) and lets go.
    """
    if not 0 <= port <= 65535:
        return f"port {port}: out of range; choose 0 to 65535 (--port / monitor.listen_port)"
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in infos:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
    except OSError as exc:
        return _listen_failure(exc, host, port)
    return None


def _listen_failure(exc: OSError, host: str, port: int) -> str:
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (f"listen address {where}: port {port} is already in use (another monitor?); "
                "stop that process or choose another --port / monitor.listen_port")
    if exc.errno == errno.EACCES:
        return (f"listen address {where}: not allowed to listen on port {port}; use a port "
                "above 1023 (--port / monitor.listen_port)")
    return (f"listen address {where}: cannot listen there ({exc.strerror or exc}); fix "
            "--host / monitor.listen_host (an address of this machine, or 0.0.0.0)")


_LISTEN_ERRNOS = (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL)


def _startup_failure(exc: BaseException, state_path: str, host: str, port: int) -> str | None:
    """The one line for a state-file or listener failure; None for anything else (a bug,
    which keeps its traceback)."""
    from monitor.store import StoreError

    if isinstance(exc, sqlite3.Error | StoreError) or getattr(exc, "filename", None) == state_path:
        return _state_failure(state_path, exc)
    if isinstance(exc, socket.gaierror) or (
            isinstance(exc, OSError) and exc.errno in _LISTEN_ERRNOS):
        return _listen_failure(exc, host, port)
    return None


# --------------------------------------------------------------------------- check-config


def cmd_check_config(args: argparse.Namespace) -> int:
    loaded = _config_and_shard(args)
    if loaded is None:
        return 2
    config, shard = loaded
    protected = sum(1 for a in config.accounts if a.protected)
    print(f"{args.config}: OK — {len(config.platforms)} platform(s), "
          f"{len(config.accounts)} account(s), {protected} protected")
    loads = capacity.estimate(config, shard)
    print_capacity(loads)
    if config.maintenance:
        now = time.time()
        print(f"maintenance windows ({len(config.maintenance)}):")
        for window in config.maintenance:
            print(f"  {window.describe(now)}")
    return 0


def print_capacity(loads: list[capacity.PlatformLoad]) -> None:
    """The per-platform table on stdout; a WARNING block on stderr for each short lane.

    A config that cannot keep up is valid (exit 0) but dangerous: accounts are probed late.
    """
    shard = next((load.shard for load in loads if load.shard), None)
    print(f"capacity{f' of shard {shard}' if shard else ''} (requests/s; see "
          "monitor/capacity.py for the assumptions):")
    print(capacity.HEADER)
    for load in loads:
        print(load.row())
    short = [load for load in loads if not load.ok]
    if short:
        print(f"WARNING: {len(short)} platform(s) cannot keep up with their watchlist:",
              file=sys.stderr)
        for load in short:
            print(f"  {load.render()}", file=sys.stderr)


def cmd_probe(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 2
    if args.platform not in config.platforms:
        print(f"{args.config}: platforms.{args.platform}: not configured "
              f"(have: {', '.join(sorted(config.platforms))})", file=sys.stderr)
        return 2
    account = _configured_account(config, args.platform, args.handle)
    account_id = args.id or (account.id if account else None)
    rules = config.platforms[args.platform].rules
    if account_id is None and rules is not None and "{id}" in rules.url:
        print(f"{args.config}: platforms.{args.platform}.rules.url needs the account's id: "
              f"give --id ID, or add id: to {args.platform}/{args.handle} under accounts",
              file=sys.stderr)
        return 2
    obs = asyncio.run(_probe_once(config, args.platform, args.handle, account_id))
    detail = obs.reason or obs.error
    line = f"{args.platform}/{args.handle}: {obs.result.value}"
    if detail:
        line += f" ({detail.value})"
    print(line)
    print(f"  evidence: {obs.evidence or '-'}")
    if obs.account_id:
        print(f"  account id: {obs.account_id}")
    if obs.handle and obs.handle != args.handle:
        print(f"  handle now: {obs.handle}")
    print(f"  latency: {obs.latency * 1000:.0f} ms")
    return {"present": 0, "absent": 1, "error": 3}[obs.result.value]


def _configured_account(config: Config, platform: str, handle: str) -> AccountConfig | None:
    """The watchlist entry for ``platform``/``handle`` (exact handle first, then any case:
    most platforms treat handles case-insensitively)."""
    same = [a for a in config.accounts if a.platform == platform]
    exact = next((a for a in same if a.handle == handle), None)
    if exact is not None:
        return exact
    folded = handle.casefold()
    return next((a for a in same if a.handle.casefold() == folded), None)


async def _probe_once(config: Config, platform: str, handle: str, account_id: str | None):  # type: ignore[no-untyped-def]
    import aiohttp

    from monitor.probes import PROBES, Target

    spec = config.platforms[platform]
    async with aiohttp.ClientSession() as session:
        probe = PROBES[spec.probe or platform](spec, session,
                                               timeout=config.platform_timeout(platform),
                                               max_body_bytes=config.platform_max_body(platform))
        return await probe.check(Target(handle, account_id))


def cmd_demo(args: argparse.Namespace) -> int:
    from monitor.demo import run_demo
    from monitor.logs import configure

    configure("json", "error")  # the timeline is the output; log lines would drown it
    result = asyncio.run(run_demo(speed=args.speed))
    return 0 if result.pages == 1 and result.resolves == 1 else 1


def cmd_history(args: argparse.Namespace) -> int:
    from monitor import reports
    from monitor.availability import WINDOWS
    from monitor.store import Store, StoreError
    from monitor.webbase import outage_json

    state_path, listed = args.state, None
    if state_path is None:
        config = _load(args.config)
        if config is None:
            return 2
        state_path, listed = config.monitor.state_path, [a.key for a in config.accounts]
    if not Path(state_path).exists():
        print(f"{state_path}: no state file yet (has the monitor run?)", file=sys.stderr)
        return 2
    end = time.time()
    if args.end is not None:
        try:
            end = reports.parse_time(args.end)
        except ValueError as exc:
            print(f"--end: {exc}", file=sys.stderr)
            return 2
    try:
        store = Store(state_path)
        try:
            if args.sla:
                keys = reports.report_keys(store, listed, platform=args.platform,
                                           handle=args.account)
                report = reports.availability(store, keys, end,
                                              {args.window: WINDOWS[args.window]})
            else:
                outages = store.outages(limit=args.limit, platform=args.platform,
                                        handle=args.account, open_only=args.open)
        finally:
            store.close()
    except (StoreError, sqlite3.Error, OSError) as exc:
        print(_state_failure(state_path, exc), file=sys.stderr)
        return 2
    if args.sla:
        if args.json:
            print(json.dumps(report, indent=2))
        elif not report["accounts"]:
            print("no accounts recorded" + (" matching --platform/--account"
                                            if args.platform or args.account else ""))
        else:
            print("\n".join(reports.text_lines(report)))
        return 0
    if args.json:
        print(json.dumps([outage_json(o) for o in outages], indent=2))
        return 0
    if not outages:
        print("no outages recorded")
        return 0
    print(f"{'id':>5}  {'account':<32} {'reason':<12} {'vanished (first absent)':<23} "
          f"{'recovered':<21} duration (bounds)")
    now = time.time()
    for o in outages:
        if o.recovered_at is None:
            took = f"OPEN for {timefmt.span(now - o.first_seen_absent_at, '-')}"
        else:
            lo, hi = o.duration_bounds or (0.0, 0.0)
            took = (f"{timefmt.span(o.duration, '-')} ({timefmt.span(lo, '-')} to "
                    f"{timefmt.span(hi, '-')})")
        acked = "" if o.acked_at is None else (
            f"  acked by {o.acked_by} at {timefmt.when(o.acked_at)}"
            + (f": {o.ack_comment}" if o.ack_comment else ""))
        print(f"{o.id:>5}  {o.key!s:<32} {o.reason:<12} {timefmt.when(o.first_seen_absent_at):<23} "
              f"{timefmt.when(o.recovered_at):<21} {took}{acked}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="account-monitor",
        description="Watch high-profile accounts; page on-call when a protected one vanishes.",
    )
    parser.add_argument("--version", action="version", version=f"account-monitor {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", "-c", default=DEFAULT_CONFIG,
                       help=f"config file (default: {DEFAULT_CONFIG})")

    p = sub.add_parser("run", help="run the monitor until SIGTERM/SIGINT")
    with_config(p)
    p.add_argument("--state", help="SQLite state file (overrides monitor.state_path)")
    p.add_argument("--host", help="HTTP listen address (overrides monitor.listen_host)")
    p.add_argument("--port", type=int, help="HTTP port (overrides monitor.listen_port)")
    p.add_argument("--log-format", choices=["auto", "json", "console"])
    p.add_argument("--shard", metavar="I/N",
                   help="watch only shard I of N (0-based; default: ACCMON_SHARD or all)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check-config", help="validate a config file; list every problem; "
                       "warn when a platform's budget cannot keep up")
    p.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
    p.add_argument("--shard", metavar="I/N",
                   help="estimate the load of shard I of N (default: ACCMON_SHARD or the "
                        "config's monitor.shard)")
    p.set_defaults(func=cmd_check_config)

    p = sub.add_parser("probe", help="check one account once and print the evidence")
    with_config(p)
    p.add_argument("platform")
    p.add_argument("handle")
    p.add_argument("--id", help="the platform's immutable account id, if known")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("demo", help="replay 2 November 2017 offline: vanish, page, recover")
    p.add_argument("--speed", type=float, default=60.0,
                   help="time compression (default 60: a simulated minute per second)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("history", help="list recorded outages from the state file")
    with_config(p)
    p.add_argument("--state", help="SQLite state file (default: the config's state_path)")
    p.add_argument("--platform")
    p.add_argument("--account")
    p.add_argument("--open", action="store_true", help="only outages still open")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--json", action="store_true")
    p.add_argument("--sla", action="store_true",
                   help="availability per account and platform instead: lower to upper bound "
                        "(the truth lies between), seconds certainly and possibly down")
    p.add_argument("--window", choices=["24h", "7d", "30d", "90d"], default="30d",
                   help="with --sla: the window ending now (default: 30d)")
    p.add_argument("--end", metavar="TIME",
                   help="with --sla: the window ends then, not now (ISO 8601 such as "
                        "2025-02-01T00:00:00Z, or POSIX seconds)")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("notify-test", help="send a marked test page and its resolve through "
                       "one notifier; print the provider's answers")
    with_config(p)
    p.add_argument("notifier", help="a name under `notifiers:` in the config")
    p.add_argument("--resolve-after", type=float, default=0.0, metavar="SECONDS",
                   help="wait this long before the resolve, so the page can ring")
    p.set_defaults(func=cmd_notify_test)

    from monitor.oncall_cli import add_subparsers  # silence, ack, watch: the API's clients

    add_subparsers(sub, with_config)
    return parser


def cmd_notify_test(args: argparse.Namespace) -> int:
    from monitor.notify.testpage import cmd_notify_test as send_test

    return send_test(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:  # `account-monitor history | head`: the reader left, no error
        # The Python docs' recipe: point stdout at devnull so the exit flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
