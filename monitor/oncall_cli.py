"""The on-call commands: ``silence add|list|expire``, ``ack``, ``watch add|remove|list|export``.

They talk HTTP to the running monitor (:mod:`monitor.apiclient`), never to its state file:
the monitor owns the file, applies a change at once and records who made it. Where: ``--url``,
else ``$ACCMON_URL``, else the config's listen address. Who: ``ACCMON_WRITE_TOKEN`` (or
``ACCMON_WRITE_TOKEN_FILE``) for changes, ``ACCMON_READ_TOKEN`` or the write token for
reads.

Exit codes: 0 done; 1 the monitor refused or could not be reached (the line says the HTTP
status and the monitor's reason); 2 bad input (a bad matcher, duration or time), found
before anything is sent. Tables for people by default, ``--json`` for scripts.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from monitor import timefmt
from monitor.apiclient import BadInput, Client, Refused, quote
from monitor.config_types import parse_duration
from monitor.matchers import Matcher, parse_matcher, validate_matchers

AddConfigArg = Callable[[argparse.ArgumentParser], object]


def add_subparsers(sub: Any, add_config_arg: AddConfigArg) -> None:
    """Register ``silence``, ``ack`` and ``watch`` on ``sub`` (an argparse subparsers
    action); ``add_config_arg(parser)`` adds the ``--config`` option as the CLI's other
    commands have it."""
    def common(p: argparse.ArgumentParser, *, json_out: bool = True) -> None:
        add_config_arg(p)
        p.add_argument("--url", help="the monitor's base URL, e.g. http://127.0.0.1:9464 "
                       "(default: $ACCMON_URL, else the config's listen address)")
        if json_out:
            p.add_argument("--json", action="store_true", help="print JSON, for scripts")

    def by(p: argparse.ArgumentParser) -> None:
        p.add_argument("--by", default=None, help="who does this, for the audit trail "
                       "(default: your user name)")

    silence = sub.add_parser("silence", help="silence pages for matching accounts "
                             "(Alertmanager's model); add, list, expire")
    silence_sub = silence.add_subparsers(dest="silence_command", required=True)
    p = silence_sub.add_parser("add", help="create a silence: no page for matching accounts "
                               "until it ends")
    p.add_argument("matchers", nargs="+", metavar="MATCHER",
                   help='amtool syntax: platform="x" account=~"a|b" team!="ops"')
    when = p.add_mutually_exclusive_group(required=True)
    when.add_argument("--duration", help="how long from its start, e.g. 2h, 30m, 1d")
    when.add_argument("--ends", help="when it ends, ISO 8601 with an offset "
                      "(2026-12-02T18:00:00+01:00)")
    p.add_argument("--starts", help="when it starts, ISO 8601 with an offset (default: now)")
    p.add_argument("--comment", required=True, help="why (shown to whoever wonders why "
                   "nothing paged)")
    by(p)
    common(p)
    p = silence_sub.add_parser("list", aliases=["query"], help="list silences (not expired "
                               "ones unless --expired)")
    p.add_argument("filters", nargs="*", metavar="MATCHER", help="only silences with these "
                   "matchers (exactly as written in them)")
    p.add_argument("--expired", action="store_true", help="include expired silences")
    common(p)
    p = silence_sub.add_parser("expire", help="end silences now")
    p.add_argument("ids", nargs="+", metavar="ID")
    by(p)
    common(p)
    silence.set_defaults(func=cmd_silence)

    p = sub.add_parser("ack", help="acknowledge an open outage: reminders stop; PagerDuty and "
                       "Opsgenie get the acknowledgement")
    p.add_argument("outage_id", type=_outage_id, metavar="OUTAGE_ID",
                   help="the id shown by `history` and /api/v1/outages")
    by(p)
    p.add_argument("--comment", help="a note kept with the acknowledgement")
    common(p)
    p.set_defaults(func=cmd_ack)

    watch = sub.add_parser("watch", help="change the watchlist without editing YAML: add, "
                           "remove, list, export")
    watch_sub = watch.add_subparsers(dest="watch_command", required=True)
    p = watch_sub.add_parser("add", help="watch one more account, probed at once")
    p.add_argument("platform")
    p.add_argument("handle")
    p.add_argument("--protected", action="store_true", help="page on-call when it vanishes")
    p.add_argument("--team")
    p.add_argument("--owner")
    p.add_argument("--id", dest="account_id", help="the platform's immutable account id")
    p.add_argument("--interval", help="probe interval, e.g. 30s (default: the config's)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE",
                   help="a label on its alerts (repeatable)")
    by(p)
    common(p)
    p = watch_sub.add_parser("remove", help="stop watching an account added with watch add")
    p.add_argument("platform")
    p.add_argument("handle")
    by(p)
    common(p)
    p = watch_sub.add_parser("list", help="every watched account, with where it comes from")
    p.add_argument("--source", choices=["config", "api"])
    common(p)
    p = watch_sub.add_parser("export", help="print the accounts added through the API as "
                             "YAML to paste under accounts: in the config")
    common(p, json_out=False)
    watch.set_defaults(func=cmd_watch)


def _outage_id(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise argparse.ArgumentTypeError(f"{text!r} is not an outage id (a positive integer)")
    return int(text)


# ----------------------------------------------------------------- running a command


def _run(args: argparse.Namespace, name: str, action: Callable[[Client], None]) -> int:
    """One command: the client from the arguments, the action, each failure one line."""
    try:
        client = Client.from_args(args.url, getattr(args, "config", None))
        action(client)
    except BadInput as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    except Refused as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    return 0


def _actor(args: argparse.Namespace) -> str:
    if args.by:
        return str(args.by)
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no USER and no passwd entry (a bare container)
        return "cli"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for line in (header, *rows):
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=True)]
        print("  ".join(cells).rstrip())


# ----------------------------------------------------------------- silence


def cmd_silence(args: argparse.Namespace) -> int:
    command = {"add": _silence_add, "list": _silence_list, "query": _silence_list,
               "expire": _silence_expire}[args.silence_command]
    return _run(args, f"silence {args.silence_command}", lambda client: command(client, args))


def parse_matchers(texts: Sequence[str], *, for_silence: bool) -> list[Matcher]:
    """amtool-syntax matchers, or :class:`BadInput` naming the bad one."""
    try:
        matchers = [parse_matcher(text) for text in texts]
        if for_silence:
            validate_matchers(matchers)
    except ValueError as exc:
        raise BadInput(str(exc)) from None
    return matchers


def parse_time(text: str, option: str) -> float:
    """ISO 8601 with an offset (``Z`` or ``+01:00``) -> epoch seconds."""
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadInput(f"{option}: {text[:60]!r} is not an ISO 8601 time; write e.g. "
                       "2026-12-02T18:00:00+01:00") from None
    if parsed.tzinfo is None:
        raise BadInput(f"{option}: {text[:60]!r} has no time zone offset; add Z or +01:00")
    return parsed.timestamp()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace(
        "+00:00", "Z")


def silence_body(args: argparse.Namespace, now: float) -> dict[str, Any]:
    """The ``postableSilence`` for ``silence add``; :class:`BadInput` before sending."""
    matchers = parse_matchers(args.matchers, for_silence=True)
    starts = parse_time(args.starts, "--starts") if args.starts else now
    if args.duration is not None:
        try:
            ends = starts + parse_duration(args.duration)
        except ValueError as exc:
            raise BadInput(f"--duration: {exc}") from None
    else:
        ends = parse_time(args.ends, "--ends")
    if ends <= max(starts, now):
        raise BadInput(f"the silence would end ({_iso(ends)}) before it starts or in the "
                       "past; check --ends / --duration")
    if not args.comment.strip():
        raise BadInput("--comment: say why (it is what the next on-call reads)")
    return {"matchers": [m.to_json() for m in matchers], "startsAt": _iso(starts),
            "endsAt": _iso(ends), "createdBy": _actor(args), "comment": args.comment}


def _silence_add(client: Client, args: argparse.Namespace) -> None:
    body = silence_body(args, time.time())
    answer = client.post("/api/v1/silences", body)
    if args.json:
        _print_json(answer)
        return
    shown = " ".join(args.matchers)
    print(f"silence {answer['silenceID']} created: {shown}, from {body['startsAt']} until "
          f"{body['endsAt']}, by {body['createdBy']}")


def _matchers_text(silence: dict[str, Any]) -> str:
    try:
        return " ".join(str(Matcher.from_json(m)) for m in silence.get("matchers", []))
    except ValueError:
        return json.dumps(silence.get("matchers"))


def _silence_list(client: Client, args: argparse.Namespace) -> None:
    filters = parse_matchers(args.filters, for_silence=False)
    silences = client.get("/api/v1/silences", [("filter", str(f)) for f in filters])
    if not args.expired:
        silences = [s for s in silences if s.get("status", {}).get("state") != "expired"]
    if args.json:
        _print_json(silences)
        return
    if not silences:
        print("no silences" + ("" if args.expired else " (expired ones: --expired)"))
        return
    rows = [[s["id"], s["status"]["state"], s["startsAt"], s["endsAt"], s["createdBy"],
             _matchers_text(s), s.get("comment", "")] for s in silences]
    _table(["ID", "STATE", "STARTS", "ENDS", "CREATED BY", "MATCHERS", "COMMENT"], rows)


def _silence_expire(client: Client, args: argparse.Namespace) -> None:
    expired = []
    for silence_id in args.ids:
        answer = client.delete(f"/api/v1/silences/{quote(silence_id)}",
                               [("by", _actor(args))])
        expired.append(answer)
        if not args.json:
            print(f"silence {silence_id} expired ({_matchers_text(answer)}; ended "
                  f"{answer.get('endsAt')})")
    if args.json:
        _print_json(expired)


# ----------------------------------------------------------------- ack


def cmd_ack(args: argparse.Namespace) -> int:
    def ack(client: Client) -> None:
        body: dict[str, Any] = {"by": _actor(args)}
        if args.comment:
            body["comment"] = args.comment
        answer = client.post(f"/api/v1/outages/{args.outage_id}/ack", body)
        if args.json:
            _print_json(answer)
            return
        outage = answer["outage"]
        what = f"outage {outage['id']} ({outage['platform']}/{outage['account']})"
        if answer["status"] == "already":
            print(f"{what} was already acknowledged by {outage.get('acked_by')} at "
                  f"{timefmt.when(outage.get('acked_at'))}")
        else:
            print(f"{what} acknowledged by {outage.get('acked_by') or body['by']}: reminders "
                  "stop; PagerDuty/Opsgenie notifiers get the acknowledgement")

    return _run(args, "ack", ack)


# ----------------------------------------------------------------- watch


def cmd_watch(args: argparse.Namespace) -> int:
    command = {"add": _watch_add, "remove": _watch_remove, "list": _watch_list,
               "export": _watch_export}[args.watch_command]
    return _run(args, f"watch {args.watch_command}", lambda client: command(client, args))


def parse_labels(texts: Sequence[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for text in texts:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--label {text[:60]!r}: write KEY=VALUE, e.g. --label tier=1")
        if key.strip() in labels:
            raise BadInput(f"--label: {key.strip()!r} is given twice")
        labels[key.strip()] = value
    return labels


def account_body(args: argparse.Namespace) -> dict[str, Any]:
    """The config ``accounts:`` entry for ``watch add`` (the monitor validates it)."""
    body: dict[str, Any] = {"platform": args.platform, "handle": args.handle,
                            "protected": bool(args.protected)}
    for name, value in (("team", args.team), ("owner", args.owner),
                        ("id", args.account_id), ("interval", args.interval)):
        if value is not None:
            body[name] = value
    labels = parse_labels(args.label)
    if labels:
        body["labels"] = labels
    return body


def _watch_add(client: Client, args: argparse.Namespace) -> None:
    body = account_body(args)
    answer = client.post("/api/v1/watchlist", {**body, "by": _actor(args)})
    if args.json:
        _print_json(answer)
        return
    account = answer["account"]
    flag = "protected" if account.get("protected") else "not protected"
    print(f"watching {account['platform']}/{account['handle']} ({flag}, source: api); it is "
          "probed now. Make it permanent: `watch export`, then paste into the config")


def _watch_remove(client: Client, args: argparse.Namespace) -> None:
    answer = client.delete(f"/api/v1/watchlist/{quote(args.platform)}/{quote(args.handle)}",
                           [("by", _actor(args))])
    if args.json:
        _print_json(answer)
        return
    print(f"no longer watching {args.platform}/{args.handle}")


def _watch_list(client: Client, args: argparse.Namespace) -> None:
    query = [("source", args.source)] if args.source else []
    accounts = client.get("/api/v1/watchlist", query)["accounts"]
    if args.json:
        _print_json(accounts)
        return
    if not accounts:
        print("no accounts")
        return
    rows = [[a["platform"], a["handle"], a["source"], "yes" if a.get("protected") else "no",
             a.get("team") or "-", a.get("state") or "-"] for a in accounts]
    _table(["PLATFORM", "HANDLE", "SOURCE", "PROTECTED", "TEAM", "STATE"], rows)


def _watch_export(client: Client, args: argparse.Namespace) -> None:
    sys.stdout.write(client.get_text("/api/v1/watchlist", [("format", "yaml")]))
