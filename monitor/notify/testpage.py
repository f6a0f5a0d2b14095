"""``account-monitor notify-test NOTIFIER``: one clearly marked test page, then its resolve.

On-call wants to know that a page reaches them *before* the night it matters: a wrong
routing key, an archived Slack channel or a proxy eating requests shows up here as the
provider's own answer instead of as silence. The test goes through the configured notifier
exactly as a page would (same client, same payload shape, same credentials) and is
delivered like one: severity ``critical``, so urgency rules that quieten ``info`` or
``warning`` (PagerDuty's low urgency, Opsgenie's P5, ntfy's silent priorities) cannot hide
a broken path. What marks it as a test is everything a human reads: the summary starts with
``[TEST]``, the kind is ``test``, the dedup key is ``accmon/test/<notifier>/<unix time>``
(never an outage's), and its resolve follows at once (or after ``--resolve-after``), so no
incident is left open.

Exit codes: 0 both were accepted (each answer printed); 1 the provider refused or could not
be reached (its error printed, secrets blanked); 2 a bad config or an unknown notifier (the
configured names listed).
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import time
from dataclasses import replace

import aiohttp

from monitor.config import Config, ConfigError, load_config
from monitor.notify import FALLBACK_NAME, build_notifiers
from monitor.notify.base import Answer, DeliveryError, Notification, Notifier

KIND = "test"


def cmd_notify_test(args: argparse.Namespace) -> int:
    """``args.config`` (path), ``args.notifier`` (name), optional ``args.resolve_after``."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return 2
    names = notifier_names(config)
    if args.notifier not in names:
        print(f"{args.config}: notifiers.{args.notifier}: not configured (have: "
              f"{', '.join(names)})", file=sys.stderr)
        return 2
    resolve_after = float(getattr(args, "resolve_after", None) or 0.0)
    return asyncio.run(send_test(config, args.notifier, resolve_after))


def notifier_names(config: Config) -> list[str]:
    """Every name ``notify-test`` takes: the configured ones and the implicit log."""
    return sorted({*config.notifiers, FALLBACK_NAME})


def trigger_for(name: str, notifier_type: str, now: float) -> Notification:
    """The [TEST] page: a critical trigger under a key no outage ever has."""
    return Notification(
        kind=KIND, action="trigger", dedup_key=f"accmon/test/{name}/{int(now)}",
        platform="test", account=name,
        summary=(f"[TEST] account-monitor test page through notifier {name!r} "
                 f"({notifier_type}) from {socket.gethostname()}: not an outage; it resolves "
                 "by itself"),
        severity="critical", at=now, protected=True,
        details={"test": True, "notifier": name, "notifier_type": notifier_type})


def resolve_for(trigger: Notification, now: float) -> Notification:
    """Its resolve: the same key, so the provider closes what the trigger opened."""
    return replace(trigger, action="resolve", severity="info", at=now,
                   summary=f"[TEST] resolved: the test page through {trigger.account!r} "
                           "was accepted")


async def send_test(config: Config, name: str, resolve_after: float = 0.0) -> int:
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        specs = {name: config.notifiers[name]} if name in config.notifiers else {}
        notifier = build_notifiers(specs, session)[name]
        trigger = trigger_for(name, notifier.type, time.time())
        print(f"notify-test: a [TEST] page through {name!r} ({notifier.type}), "
              f"dedup key {trigger.dedup_key}")
        if not await _step("trigger", notifier, trigger):
            return 1
        if resolve_after > 0:
            print(f"waiting {resolve_after:g}s before the resolve ...", flush=True)
            await asyncio.sleep(resolve_after)
        if not await _step("resolve", notifier, resolve_for(trigger, time.time())):
            print(f"the test incident may still be open: resolve {trigger.dedup_key} by hand",
                  file=sys.stderr)
            return 1
    print(f"OK: {name!r} accepted the test page and its resolve; check that on-call got it.")
    return 0


async def _step(step: str, notifier: Notifier, n: Notification) -> bool:
    """Send one, print the provider's answer or error; True when it was accepted."""
    try:
        answer: Answer = await notifier.send(n)
    except DeliveryError as exc:  # already redacted by the notifier
        kind = "permanent: fix the config" if exc.permanent else "retryable"
        print(f"{step}: FAILED ({kind}): {exc}", file=sys.stderr)
        return False
    except Exception as exc:  # a notifier bug: the type only, a message may hold secrets
        print(f"{step}: FAILED: internal error ({type(exc).__name__})", file=sys.stderr)
        return False
    print(f"{step}: {answer}", flush=True)
    return True
