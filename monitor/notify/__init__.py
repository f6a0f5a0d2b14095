"""Notifier registry: provider type -> class. Adding a pager is one module + one line."""

from __future__ import annotations

import aiohttp

from monitor.config import NotifierConfig
from monitor.notify.alertmanager import AlertmanagerNotifier
from monitor.notify.base import Notifier
from monitor.notify.log import LogNotifier
from monitor.notify.opsgenie import OpsgenieNotifier
from monitor.notify.pagerduty import PagerDutyNotifier
from monitor.notify.slack import SlackNotifier
from monitor.notify.webhook import WebhookNotifier

# Keyed by each config model's ``type``; tests check it against the NotifierConfig union.
NOTIFIERS: dict[str, type] = {
    cls.type: cls
    for cls in (PagerDutyNotifier, OpsgenieNotifier, SlackNotifier, WebhookNotifier,
                AlertmanagerNotifier, LogNotifier)
}


def build_notifier(name: str, config: NotifierConfig,
                   session: aiohttp.ClientSession) -> Notifier:
    """The notifier for one ``notifiers:`` entry; the config model's ``type`` picks the class."""
    try:
        cls = NOTIFIERS[config.type]
    except KeyError:
        raise ValueError(f"notifier {name!r}: unknown type {config.type!r}; "
                         f"choose one of {', '.join(sorted(NOTIFIERS))}") from None
    notifier: Notifier = cls(name, config, session)
    return notifier
