"""Platform state for fakes whose accounts have immutable ids: :class:`FakePlatform`.

Accounts keep their id through renames; a freed handle can be re-registered by someone else
(with another id), as on X, GitHub, Bluesky, Twitch and YouTube. A platform also has
platform-wide canned answers (``POST /_control/override``: a usage cap, a throttle sent
with status 200) and a request budget its answers report in rate-limit headers.
"""

from __future__ import annotations

import copy
import hashlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from aiohttp import web

from monitor.fakes.faults import Canned, Faults, Handler
from monitor.fakes.server import CONTROL_PREFIX, FakeServer

AccountSpec = str | tuple[str, str]  # a state, or (id, state) to pin the id


@dataclass(slots=True)
class FakeAccount:
    """One account on a fake platform: its immutable id, the handle it has now, its state."""

    id: str
    handle: str
    state: str


@dataclass(frozen=True, slots=True)
class Budget:
    """A fake platform's request budget as one answer reports it in its rate-limit headers."""

    limit: int
    remaining: int
    used: int
    reset_at: float  # epoch seconds, the end of the current window


def stable_number(text: str) -> int:
    """A number derived from ``text``: the same account gets the same id in every run."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


class FakePlatform(FakeServer):
    """A platform whose accounts have immutable ids: states, renames, re-registered handles.

    ``accounts`` maps handle -> state, or handle -> ``(id, state)`` to pin the id. Handles
    match case-insensitively, as on every platform faked here. ``overrides`` are canned
    platform-wide answers (a usage cap, a login wall, a throttle sent with status 200) that
    replace every account answer while one is set.
    """

    states: ClassVar[tuple[str, ...]]
    overrides: ClassVar[Mapping[str, Canned]] = {}
    exhausting: ClassVar[frozenset[str]] = frozenset()  # overrides that empty the budget
    budget_limit: int = 100  # requests per window; a subclass or an instance may change it
    budget_window: ClassVar[float] = 900.0  # seconds

    def __init__(self, accounts: Mapping[str, AccountSpec] | None = None, *,
                 faults: Faults | None = None, seed: int = 0) -> None:
        super().__init__(faults=faults, seed=seed)
        self.override: str | None = None
        self._accounts_by_handle: dict[str, FakeAccount] = {}  # by lower-case handle
        self._accounts_by_id: dict[str, FakeAccount] = {}
        self._window_start = 0.0
        self._window_used = 0
        for handle, spec in (accounts or {}).items():
            account_id, state = spec if isinstance(spec, tuple) else (None, spec)
            self.set_state(handle, state, account_id=account_id)

    # ------------------------------------------------------------------ subclass hooks

    def new_id(self, seed: str) -> str:
        """A platform-shaped id derived from ``seed``."""
        raise NotImplementedError

    def refuse(self, request: web.Request) -> web.Response | None:
        """The platform's answer to a request it will not serve (bad credentials), or None."""
        return None

    # ------------------------------------------------------------------ Python control

    def set_state(self, handle: str, state: str, *, account_id: str | None = None) -> str:
        """Create the account or change its state; returns its id.

        A different ``account_id`` for a handle someone holds re-registers the handle: the
        old account keeps its id and state but is reachable by id only.
        """
        if state not in self.states:
            raise ValueError(f"unknown state {state!r}; choose one of {', '.join(self.states)}")
        account = self._accounts_by_handle.get(handle.lower())
        if account is None or (account_id is not None and account_id != account.id):
            taken = self._accounts_by_id.get(account_id) if account_id is not None else None
            if taken is not None:
                raise ValueError(f"id {account_id} belongs to {taken.handle!r}")
            account = FakeAccount(account_id or self._fresh_id(handle), handle, state)
            self._accounts_by_handle[handle.lower()] = account
            self._accounts_by_id[account.id] = account
        account.state = state
        return account.id

    def rename(self, old: str, new: str) -> str:
        """Give the account a new handle, keeping its id; the old handle becomes free."""
        account = self._accounts_by_handle.get(old.lower())
        if account is None:
            raise ValueError(f"no account has the handle {old!r}")
        holder = self._accounts_by_handle.get(new.lower())
        if holder is not None and holder is not account:
            raise ValueError(f"the handle {new!r} is taken")
        del self._accounts_by_handle[old.lower()]
        account.handle = new
        self._accounts_by_handle[new.lower()] = account
        return account.id

    def elsewhere_twin(self) -> FakeServer:
        """:attr:`elsewhere` if set, else a copy of this platform whose accounts have other ids.

        The same handles in the same states, so a probe that followed the cross-host
        redirect would see its account "present" with a stranger's id.
        """
        if self.elsewhere is not None:
            return self.elsewhere
        twin = copy.copy(self)  # the subclass's own settings (tokens, withheld_in, ...)
        FakeServer.__init__(twin)  # its own faults (none), counters and shutdown event
        twin.override = None
        twin._accounts_by_handle, twin._accounts_by_id = {}, {}
        twin._window_start, twin._window_used = 0.0, 0
        for account in self._accounts_by_handle.values():
            twin.set_state(account.handle, account.state,
                           account_id=self.new_id(f"{account.handle.lower()}@elsewhere"))
        return twin

    def account(self, handle: str) -> FakeAccount | None:
        return self._accounts_by_handle.get(handle.lower())

    def account_by_id(self, account_id: str) -> FakeAccount | None:
        return self._accounts_by_id.get(account_id)

    def account_id(self, handle: str) -> str:
        """The id of the account holding ``handle`` (KeyError if none does)."""
        return self._accounts_by_handle[handle.lower()].id

    def set_override(self, name: str | None) -> None:
        """Answer every platform request with ``overrides[name]``; None goes back to normal."""
        if name is not None and name not in self.overrides:
            known = ", ".join(self.overrides) or "none"
            raise ValueError(f"unknown override {name!r}; this platform has: {known}")
        self.override = name

    def request_count(self, handle: str) -> int:
        account = self.account(handle)
        return super().request_count(account.handle if account else handle)

    def account_states(self) -> dict[str, str]:
        return {a.handle: a.state for a in self._accounts_by_handle.values()}

    def stats(self) -> dict[str, Any]:
        return {**super().stats(), "override": self.override}

    def control_account(self, handle: str, data: Any) -> dict[str, Any]:
        """``{"state": ..., "id": ...}`` (id optional) and/or ``{"rename_to": ...}``."""
        if not isinstance(data, dict) or not ({"state", "rename_to"} & data.keys()):
            raise ValueError('expected {"state": "<state>"} and/or {"rename_to": "<handle>"}')
        if "state" in data:
            account_id = data.get("id")
            self.set_state(handle, str(data["state"]),
                           account_id=None if account_id is None else str(account_id))
        if "rename_to" in data:
            self.rename(handle, str(data["rename_to"]))
            handle = str(data["rename_to"])
        account = self._accounts_by_handle[handle.lower()]
        return {"handle": account.handle, "id": account.id, "state": account.state}

    # ------------------------------------------------------------------ serving

    def app(self) -> web.Application:
        app = super().app()
        app.router.add_post(CONTROL_PREFIX + "override", self._control_override)
        return app

    def guard(self, handler: Handler) -> Handler:
        """``handler`` behind the credential check and the override every endpoint shares."""
        async def guarded(request: web.Request) -> web.StreamResponse:
            refused = self.refuse(request)
            if refused is not None:
                return refused
            if self.override is not None:
                return self.overrides[self.override].response()
            return await handler(request)
        return guarded

    def spend(self, fault: str | None) -> Budget:
        """Count one request against the current window (call from ``answer_headers``)."""
        now = time.time()
        start = now - now % self.budget_window
        if start != self._window_start:
            self._window_start, self._window_used = start, 0
        self._window_used += 1
        exhausted = fault == "rate_limit" or self.override in self.exhausting
        remaining = 0 if exhausted else max(0, self.budget_limit - self._window_used)
        return Budget(self.budget_limit, remaining, self._window_used,
                      start + self.budget_window)

    def _fresh_id(self, handle: str) -> str:
        """A new id; a re-registered handle gets a different one from its first holder."""
        seed, n = handle.lower(), 0
        while (candidate := self.new_id(seed)) in self._accounts_by_id:
            n += 1
            seed = f"{handle.lower()}#{n}"
        return candidate

    async def _control_override(self, request: web.Request) -> web.Response:
        try:
            data = await request.json()
            if not isinstance(data, dict) or "name" not in data:
                raise ValueError('expected {"name": "<override>"} or {"name": null}')
            self.set_override(None if data["name"] is None else str(data["name"]))
        except ValueError as exc:  # JSONDecodeError included
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"override": self.override})


def account_specs(pairs: Sequence[tuple[str, str]]) -> dict[str, AccountSpec]:
    """``--account`` values for a :class:`FakePlatform`: ``STATE`` or ``ID:STATE``.

    The id is everything before the last colon, so Bluesky DIDs (``did:plc:…:present``) work.
    """
    specs: dict[str, AccountSpec] = {}
    for handle, text in pairs:
        account_id, sep, state = text.rpartition(":")
        specs[handle] = (account_id, state) if sep and account_id else state
    return specs
