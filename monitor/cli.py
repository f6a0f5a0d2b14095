"""Command line: ``account-monitor run|check-config|probe|demo|history`` (``python -m monitor``)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from monitor import __version__
from monitor.config import Config, ConfigError, load_config
from monitor.sharding import parse_shard

DEFAULT_CONFIG = "config/monitor.yaml"


def _load(path: str) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return None


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.app import Monitor
    from monitor.logs import configure

    config = _load(args.config)
    if config is None:
        return 2
    configure(args.log_format or config.monitor.log_format, config.monitor.log_level)
    shard_text = args.shard or os.environ.get("ACCMON_SHARD")
    try:
        shard = parse_shard(shard_text) if shard_text else None
    except ValueError as exc:
        print(f"--shard/ACCMON_SHARD: {exc}", file=sys.stderr)
        return 2
    monitor = Monitor(config, config_path=args.config, state_path=args.state,
                      listen_host=args.host, listen_port=args.port, shard=shard,
                      reload_token=os.environ.get("ACCMON_RELOAD_TOKEN") or None)
    asyncio.run(monitor.run_forever())
    return 0


def cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 2
    protected = sum(1 for a in config.accounts if a.protected)
    print(f"{args.config}: OK — {len(config.platforms)} platform(s), "
          f"{len(config.accounts)} account(s), {protected} protected")
    return 0


def cmd_probe(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return 2
    if args.platform not in config.platforms:
        print(f"{args.config}: platforms.{args.platform}: not configured "
              f"(have: {', '.join(sorted(config.platforms))})", file=sys.stderr)
        return 2
    obs = asyncio.run(_probe_once(config, args.platform, args.handle, args.id))
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


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def cmd_history(args: argparse.Namespace) -> int:
    from monitor.store import Store
    from monitor.web import outage_json

    state_path = args.state
    if state_path is None:
        config = _load(args.config)
        if config is None:
            return 2
        state_path = config.monitor.state_path
    if not Path(state_path).exists():
        print(f"{state_path}: no state file yet (has the monitor run?)", file=sys.stderr)
        return 2
    store = Store(state_path)
    try:
        outages = store.outages(limit=args.limit, platform=args.platform, handle=args.account,
                                open_only=args.open)
    finally:
        store.close()
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
            took = f"OPEN for {_span(now - o.first_seen_absent_at)}"
        else:
            lo, hi = o.duration_bounds or (0.0, 0.0)
            took = f"{_span(o.duration)} ({_span(lo)} to {_span(hi)})"
        print(f"{o.id:>5}  {o.key!s:<32} {o.reason:<12} {_when(o.first_seen_absent_at):<23} "
              f"{_when(o.recovered_at):<21} {took}")
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

    p = sub.add_parser("check-config", help="validate a config file; list every problem")
    p.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
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
    p.set_defaults(func=cmd_history)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
