"""Notifier registry: provider type -> notifier class.

Each provider module holds its notifier class, its config model (``config_model``, every
field described), whether it pages (``pages``) and whether its receiver keeps an
acknowledged state (``acknowledges``). Everything else is built from this registry: the
config's ``notifiers:`` union (:data:`NotifierConfig`), default routing (:func:`pages`,
:func:`acknowledges`) and the config reference. Adding a provider is one module plus one entry in
:data:`PROVIDERS` (and its fake receiver in :mod:`monitor.fakes.pagers`, and its tests).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

import aiohttp
from pydantic import Field

from monitor.notify.alertmanager import AlertmanagerNotifier
from monitor.notify.base import Notifier, NotifierClass, NotifierSettings
from monitor.notify.log import LogNotifier, LogNotifierConfig
from monitor.notify.ntfy import NtfyNotifier
from monitor.notify.opsgenie import OpsgenieNotifier
from monitor.notify.pagerduty import PagerDutyNotifier
from monitor.notify.slack import SlackNotifier
from monitor.notify.webhook import WebhookNotifier

PROVIDERS: tuple[NotifierClass, ...] = (
    PagerDutyNotifier,
    OpsgenieNotifier,
    SlackNotifier,
    WebhookNotifier,
    AlertmanagerNotifier,
    LogNotifier,
    NtfyNotifier,
)
NOTIFIERS: dict[str, NotifierClass] = {cls.type: cls for cls in PROVIDERS}

# The name of the log notifier every running monitor has, configured or not: routing's last
# resort (the app adds it unless the config names its own).
FALLBACK_NAME = "log"


def _config_union() -> Any:
    """``A | B | ...`` of every provider's config model, told apart by ``type``."""
    models = [cls.config_model for cls in PROVIDERS]
    return Annotated[functools.reduce(operator.or_, models), Field(discriminator="type")]


if TYPE_CHECKING:
    NotifierConfig: TypeAlias = NotifierSettings
else:
    NotifierConfig = _config_union()


def pages(notifier_type: str) -> bool:
    """Whether default routing sends pages (True) or chat (False) to this provider type."""
    return NOTIFIERS[notifier_type].pages


def acknowledges(notifier_type: str) -> bool:
    """Whether this provider type sets an incident's acknowledged state (PagerDuty, Opsgenie).

    The others are told of an acknowledgement only as far as their receiver can use it: chat
    and push providers post a one-line note, the generic webhook forwards the event, the log
    logs it and Alertmanager sends nothing (a silence is its acknowledgement).
    """
    return NOTIFIERS[notifier_type].acknowledges


def build_notifier(name: str, config: NotifierSettings,
                   session: aiohttp.ClientSession) -> Notifier:
    """The notifier for one ``notifiers:`` entry; the config model's ``type`` picks the class."""
    try:
        cls = NOTIFIERS[config.type]
    except KeyError:
        raise ValueError(f"notifier {name!r}: unknown type {config.type!r}; "
                         f"choose one of {', '.join(sorted(NOTIFIERS))}") from None
    return cls(name, config, session)


def build_notifiers(configs: Mapping[str, NotifierSettings],
                    session: aiohttp.ClientSession) -> dict[str, Notifier]:
    """Every configured notifier, plus the fallback log notifier every monitor has."""
    specs: dict[str, NotifierSettings] = dict(configs)
    specs.setdefault(FALLBACK_NAME, LogNotifierConfig(type="log"))
    return {name: build_notifier(name, spec, session) for name, spec in specs.items()}
