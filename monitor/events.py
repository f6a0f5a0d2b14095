"""The event bus: committed decisions, told to whoever listens (SSE clients, the demo).

A listener is called with (event, transition row id, new state) once the decision is in
the state file, never before: what a listener sees is on disk. A listener that raises is
logged and dropped from nothing else's way.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from monitor.model import AccountState, Event

log = structlog.get_logger("monitor.events")

Listener = Callable[[Event, int | None, AccountState], None]


class EventBus:
    def __init__(self) -> None:
        self.listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Listen; returns the call that stops listening."""
        self.listeners.append(listener)
        return lambda: self.listeners.remove(listener) if listener in self.listeners else None

    def publish(self, event: Event, row_id: int | None, state: AccountState) -> None:
        for listener in list(self.listeners):
            try:
                listener(event, row_id, state)
            except Exception as exc:
                log.error("event listener failed", exc_info=exc)
