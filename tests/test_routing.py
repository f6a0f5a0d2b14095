"""Routing: protected accounts page, others go to chat; resolutions follow their triggers."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.config import Config, parse_config
from monitor.model import AbsentReason, AccountKey, Event, EventKind, State
from monitor.routing import notification_for, notifiers_for, outage_key, outbox_items

BASE = """
platforms:
  x:
    probe: http
    base_url: https://api.x.com
    profile_url: "https://x.com/{handle}"
    rules: {present: [{status: 200}]}
accounts:
  - {platform: x, handle: realDonaldTrump, id: "25073877", protected: true, team: comms,
     labels: {tier: head-of-state}}
  - {platform: x, handle: someone, team: social}
"""
NOTIFIERS = """
notifiers:
  pd: {type: pagerduty, routing_key: "0123456789abcdef0123456789abcdef"}
  am: {type: alertmanager, urls: ["http://127.0.0.1:9093"]}
  chat: {type: slack, webhook_url: "https://hooks.slack.test/T/B/x"}
routing:
  runbook_url: https://runbooks.example/accmon
"""
KEY = AccountKey("x", "realDonaldTrump")
OTHER = AccountKey("x", "someone")


def config(extra: str = NOTIFIERS) -> Config:
    return parse_config(BASE + extra, env={})


def event(kind: EventKind, key: AccountKey = KEY, **details: Any) -> Event:
    old, new = {EventKind.VANISHED: (State.SUSPECT, State.DOWN),
                EventKind.RECOVERED: (State.DOWN, State.UP)}.get(kind, (State.UP, State.UP))
    return Event(kind, key, 1509663600.0, old, new, AbsentReason.NOT_FOUND, details)


def account(cfg: Config, key: AccountKey = KEY):  # type: ignore[no-untyped-def]
    return next(a for a in cfg.accounts if a.key == key)


def test_protected_vanish_pages_every_paging_notifier_with_a_stable_outage_key() -> None:
    cfg = config()
    n = notification_for(event(EventKind.VANISHED, absent_streak=2, first_absent_at=1509663000.0,
                               evidence="absent rule #2"), account(cfg), cfg, 17)
    assert n is not None
    assert (n.kind, n.action, n.severity) == ("vanished", "trigger", "critical")
    assert n.dedup_key == outage_key(KEY, 17) == "accmon/x/realDonaldTrump/outage-17"
    assert n.summary.startswith("PROTECTED x/realDonaldTrump vanished (not_found)")
    assert n.details["first_seen_absent_at"] == "2017-11-02T22:50:00Z"
    assert {"href": "https://x.com/realDonaldTrump", "text": "profile"} in n.links
    assert (n.team, n.labels) == ("comms", {"tier": "head-of-state"})
    assert notifiers_for(n, account(cfg), cfg) == ["pd", "am"]


def test_recovery_resolves_the_same_key_on_the_same_notifiers() -> None:
    cfg = config()
    n = notification_for(event(EventKind.RECOVERED, outage_id=17, duration=660.0),
                         account(cfg), cfg, None)
    assert n is not None
    assert (n.action, n.dedup_key) == ("resolve", "accmon/x/realDonaldTrump/outage-17")
    assert "back after 11m00s" in n.summary
    assert notifiers_for(n, account(cfg), cfg) == ["pd", "am"]


def test_unprotected_accounts_and_renames_go_to_chat_never_page() -> None:
    cfg = config()
    n = notification_for(event(EventKind.VANISHED, OTHER), account(cfg, OTHER), cfg, 3)
    assert n is not None and n.severity == "warning"
    assert notifiers_for(n, account(cfg, OTHER), cfg) == ["chat"]
    renamed = notification_for(event(EventKind.RENAMED, summary="now @newname"), account(cfg),
                               cfg, None)
    assert renamed is not None and renamed.action == "notify"
    assert notifiers_for(renamed, account(cfg), cfg) == ["chat"]


def test_plain_transitions_notify_nobody() -> None:
    cfg = config()
    assert notification_for(event(EventKind.TRANSITION), account(cfg), cfg, None) is None


def test_blind_and_sighted_share_one_key_per_blind_period() -> None:
    cfg = config()
    blind = notification_for(event(EventKind.BLIND, last_decisive_at=1509663000.5, error="auth",
                                   stale_for=700.0), account(cfg), cfg, None)
    sighted = notification_for(event(EventKind.SIGHTED, last_decisive_at=1509663000.5,
                                     unseen_for=900.0), account(cfg), cfg, None)
    assert blind is not None and sighted is not None
    assert blind.dedup_key == sighted.dedup_key
    assert "not vanished" in blind.summary
    assert (blind.action, sighted.action) == ("trigger", "resolve")


def test_without_notifiers_everything_goes_to_the_log() -> None:
    cfg = config(extra="")
    n = notification_for(event(EventKind.VANISHED), account(cfg), cfg, 1)
    assert n is not None
    assert [i.notifier for i in outbox_items(n, account(cfg), cfg)] == ["log"]


def test_routes_match_in_order_and_resolutions_follow_their_trigger() -> None:
    cfg = config(NOTIFIERS + """  routes:
    - match: {team: comms, events: [vanished]}
      notifiers: [pd]
      continue: true
    - match: {labels: {tier: head-of-state}}
      notifiers: [chat]
    - notifiers: [am]
""")
    acc = account(cfg)
    vanished = notification_for(event(EventKind.VANISHED), acc, cfg, 1)
    recovered = notification_for(event(EventKind.RECOVERED, outage_id=1), acc, cfg, None)
    blind = notification_for(event(EventKind.BLIND, last_decisive_at=1.0), acc, cfg, None)
    assert vanished is not None and recovered is not None and blind is not None
    assert notifiers_for(vanished, acc, cfg) == ["pd", "chat"]
    assert notifiers_for(recovered, acc, cfg) == ["pd", "chat"]  # follows "vanished"
    assert notifiers_for(blind, acc, cfg) == ["chat"]
    other = account(cfg, OTHER)
    n = notification_for(event(EventKind.VANISHED, OTHER), other, cfg, 2)
    assert n is not None and notifiers_for(n, other, cfg) == ["am"]


def test_a_route_naming_an_unknown_notifier_is_a_config_error() -> None:
    from monitor.config import ConfigError

    with pytest.raises(ConfigError, match=r"routing.routes\[0\].notifiers: 'pagerduty'"):
        config(NOTIFIERS + "  routes:\n    - notifiers: [pagerduty]\n")
