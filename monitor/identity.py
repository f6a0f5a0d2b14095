"""Who is this account? Ids learned, renames and moves told from disappearance. Pure.

Platforms with immutable ids (X, Bluesky DIDs, GitHub, Mastodon per instance) let us follow
an account rather than a handle. The first answer that shows the id teaches it; from then
on:

* the same id under a new handle is a rename: a ``renamed`` event, no page, still followed;
* a Mastodon account that says it moved is a ``moved`` event;
* a handle that now answers with a *different* id belongs to someone else (freed handles get
  re-registered), so for the account we watch that answer is an absence (``renamed``),
  never "present".
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol

from monitor.model import (
    AbsentReason,
    AccountKey,
    AccountState,
    Event,
    EventKind,
    Identity,
    MovedDetails,
    Observation,
    RenamedDetails,
    Result,
)


@dataclass(frozen=True, slots=True)
class Reconciled:
    """An observation seen through the account's identity."""

    observation: Observation  # as given, or turned into an absence (someone else's handle)
    identity: Identity  # what we know after it
    events: tuple[Event, ...] = ()  # renamed / moved
    learned: bool = False  # the id was learned from this observation

    @property
    def changed(self) -> bool:
        """The identity must be written even if the state does not change."""
        return self.learned or bool(self.events)


class Known(Protocol):
    """What :func:`says_nothing_new` reads of the identity known: an :class:`Identity`, or a
    watched account, which holds the same fields (no Identity built per probe)."""

    @property
    def account_id(self) -> str | None: ...

    @property
    def current_handle(self) -> str | None: ...


def says_nothing_new(key: AccountKey, known: Known, obs: Observation) -> bool:
    """True when ``obs`` cannot change the identity (the common case, checked per probe
    before any :class:`Reconciled` is built): no id, or the known id under the known handle
    and no move."""
    if obs.account_id is None:
        return True
    if obs.account_id != known.account_id or obs.moved_to:
        return False
    return obs.handle is None or obs.handle == (known.current_handle or key.handle) or (
        obs.handle.lower() == (known.current_handle or key.handle).lower())


def reconcile(key: AccountKey, known: Identity, st: AccountState,
              obs: Observation) -> Reconciled:
    """Learn the id, or check the answer against it."""
    if obs.account_id is None:
        return Reconciled(obs, known)
    if known.account_id is None:
        return Reconciled(obs, replace(known, account_id=obs.account_id), learned=True)
    if obs.account_id != known.account_id:
        evidence = (f"handle now belongs to another account (id {obs.account_id}, "
                    f"watching id {known.account_id})")
        return Reconciled(Observation.absent(obs.at, AbsentReason.RENAMED, evidence,
                                             latency=obs.latency), known)
    events: list[Event] = []
    identity = known
    current = known.current_handle or key.handle
    if obs.result is Result.PRESENT and obs.handle and obs.handle.lower() != current.lower():
        identity = replace(identity, current_handle=obs.handle)
        events.append(Event(EventKind.RENAMED, key, obs.at, st.state, st.state, None,
                            RenamedDetails(old_handle=current, new_handle=obs.handle,
                                           account_id=obs.account_id, summary=(
                                               f"now @{obs.handle} (same id "
                                               f"{obs.account_id}); still followed"))))
    if obs.moved_to and obs.moved_to != known.moved_to:
        identity = replace(identity, moved_to=obs.moved_to)
        events.append(Event(EventKind.MOVED, key, obs.at, st.state, st.state, None,
                            MovedDetails(moved_to=obs.moved_to, account_id=obs.account_id,
                                         summary=f"migrated to {obs.moved_to}")))
    return Reconciled(obs, identity, tuple(events))
