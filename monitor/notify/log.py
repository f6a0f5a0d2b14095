"""The log notifier: one structured line per notification, the destination that never fails.

Always present (routing's fallback), so a notification with nowhere else to go is at least
on record. It needs no network; the session argument keeps the constructor uniform.
"""

from __future__ import annotations

import contextlib
from typing import ClassVar, Literal

import aiohttp
import structlog

from monitor.notify.base import NO_HTTP, Answer, Notification, NotifierSettings, type_field

log = structlog.get_logger("notify")


class LogNotifierConfig(NotifierSettings):
    """Writes notifications to the log only (always available as `log` in routes)."""

    type: Literal["log"] = type_field()


class LogNotifier:
    """Writes ``notification`` lines to the ``notify`` logger."""

    config_model: ClassVar[type[LogNotifierConfig]] = LogNotifierConfig
    type: ClassVar[str] = "log"
    pages: ClassVar[bool] = False
    acknowledges: ClassVar[bool] = False

    def __init__(self, name: str, config: LogNotifierConfig,
                 session: aiohttp.ClientSession | None = None):
        self.name = name
        self.config = config

    async def send(self, n: Notification) -> Answer:
        # A closed or broken stdout is the only way this can fail: nothing better to do then.
        with contextlib.suppress(OSError, ValueError):
            log.info("notification", notifier=self.name, kind=n.kind, action=n.action,
                     platform=n.platform, account=n.account, severity=n.severity,
                     dedup_key=n.dedup_key, summary=n.summary)
        return Answer(NO_HTTP, "written to the log (logger 'notify')")
