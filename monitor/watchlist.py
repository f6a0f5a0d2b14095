"""The accounts this process watches, with their live state, and the per-platform picture.

The table the rest of the shell reads: one :class:`Watched` per account (its config, policy,
identity and live view), plus what the verdicts need per platform without scanning every
account (how many are watched, which are absent, whether a canary is among them, the
shortest interval). :meth:`Watchlist.apply` makes it match a config at start and on every
reload: accounts no longer listed (or not this shard's) leave, new ones resume their stored
state, kept ones keep their live state and open outages under their new settings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import structlog

from monitor import anomaly, scheduler, sharding
from monitor import state as machine
from monitor.capacity import PlatformLoad
from monitor.config import AccountConfig, Config
from monitor.metrics import AccountView
from monitor.model import AccountKey, AccountState, Identity, Policy
from monitor.store import StoredAccount

log = structlog.get_logger("monitor")


@dataclass(slots=True)
class Ahead:
    """While a decision of an account is being written: the state the state machine goes
    on from, and the last state handed to the writer (its commit shows what is ahead)."""

    working: AccountState
    written: AccountState


@dataclass(slots=True, eq=False)
class Watched(AccountView):
    """One account on the watchlist: its live view (what the collector reads), its config,
    policy and identity, and its place in the scheduler, in one slotted object. A million
    accounts are a million of these: a view and a record apart cost 48 bytes an account
    more, an Identity object of its own 40 more than its three fields here, and a
    scheduler entry of its own (with its due time's float, and the scheduler's dict of
    them) 124 more than its four.

    ``state`` is what is shown (metrics, API, status page): a decision's state only once
    the state file has committed it. The state machine goes on from :attr:`working`, which
    is ahead of it while a decision is being written (an :class:`Ahead`, only then)."""

    config: AccountConfig = field(kw_only=True)
    policy: Policy = field(kw_only=True)
    account_id: str | None = field(default=None, kw_only=True)  # as Identity's fields
    current_handle: str | None = field(default=None, kw_only=True)
    moved_to: str | None = field(default=None, kw_only=True)
    # Its place in the scheduler (monitor.scheduler.Schedulable), the scheduler's to write.
    lane: str | None = field(default=None, init=False, repr=False)
    priority: int = field(default=1, init=False, repr=False)
    slot: int = field(default=scheduler.NOWHERE, init=False, repr=False)
    token: int = field(default=0, init=False, repr=False)
    ahead: Ahead | None = field(default=None, init=False, repr=False)

    @property
    def working(self) -> AccountState:
        """The state the state machine goes on from: the newest, committed or not."""
        ahead = self.ahead
        return self.state if ahead is None else ahead.working

    def stepped(self, new: AccountState) -> None:
        """A state kept in memory only (an answer that changes nothing to write): shown at
        once, unless a decision is being written, then once it is committed."""
        ahead = self.ahead
        if ahead is None:
            self.state = new
        else:
            ahead.working = new

    def decided(self, new: AccountState) -> None:
        """A decision's state, about to be handed to the writer: worked from now, shown
        once committed (:meth:`committed`)."""
        ahead = self.ahead
        if ahead is None:
            self.ahead = Ahead(new, new)
        else:
            ahead.working = ahead.written = new

    def committed(self, new: AccountState) -> None:
        """The writer committed the decision that made ``new``: show it, or (the last one
        written) whatever has been worked out since."""
        ahead = self.ahead
        if ahead is not None and ahead.written is new:
            self.state, self.ahead = ahead.working, None
        else:
            self.state = new

    @property
    def identity(self) -> Identity:
        return Identity(self.account_id, self.current_handle, self.moved_to)

    @identity.setter
    def identity(self, value: Identity) -> None:
        self.account_id, self.current_handle, self.moved_to = (
            value.account_id, value.current_handle, value.moved_to)


class Watchlist:
    """Every watched account, by key, and the per-platform figures derived from them."""

    def __init__(self) -> None:
        self.accounts: dict[AccountKey, Watched] = {}
        self.counts: dict[str, int] = {}  # platform -> accounts watched
        self.absent: dict[str, set[AccountKey]] = {}  # platform -> suspect or down
        self.canaries: set[str] = set()  # platforms with a canary account
        self.intervals: dict[str, float] = {}  # platform -> shortest probe interval

    def __len__(self) -> int:
        return len(self.accounts)

    def __iter__(self) -> Iterator[Watched]:
        return iter(self.accounts.values())

    def get(self, key: object) -> Watched | None:
        return self.accounts.get(key) if isinstance(key, AccountKey) else None

    def views(self) -> Iterator[AccountView]:
        return iter(self.accounts.values())

    def of(self, platform: str) -> list[Watched]:
        return [w for k, w in self.accounts.items() if k.platform == platform]

    def wanted(self, config: Config, shard: sharding.Shard | None) -> dict[AccountKey,
                                                                          AccountConfig]:
        return {a.key: a for a in config.accounts
                if shard is None or sharding.owns(shard, a.key)}

    def apply(self, config: Config, wanted: Mapping[AccountKey, AccountConfig],
              stored: Mapping[AccountKey, StoredAccount],
              now: float) -> tuple[list[Watched], list[Watched]]:
        """Match ``wanted``; returns (accounts removed, accounts added)."""
        removed = [w for k, w in self.accounts.items() if k not in wanted]
        for gone in removed:
            del self.accounts[gone.key]
        added: list[Watched] = []
        fresh: AccountState | None = None  # one shared (frozen) state for every new account
        for key, account in wanted.items():
            policy = config.policy(account)
            watched = self.accounts.get(key)
            if watched is not None:
                watched.config, watched.policy = account, policy
                watched.protected = account.protected
                if account.id:
                    watched.account_id = account.id
                continue
            saved = stored.get(key)
            if saved is not None:
                st = machine.watching(saved.state, now)
            else:
                st = fresh = fresh or machine.watching(AccountState(), now)
            known = saved.identity if saved else Identity()
            watched = Watched(key, account.protected, st, config=account, policy=policy,
                              account_id=account.id or known.account_id,
                              current_handle=known.current_handle, moved_to=known.moved_to)
            self.accounts[key] = watched
            added.append(watched)
        self._recount(config)
        return removed, added

    def _recount(self, config: Config) -> None:
        self.counts = dict.fromkeys(config.platforms, 0)
        self.absent = {name: set() for name in config.platforms}
        self.canaries = set()
        self.intervals = {}
        for key, watched in self.accounts.items():
            self.counts[key.platform] += 1
            if watched.working.state in anomaly.ABSENT_STATES:
                self.absent[key.platform].add(key)
            if watched.config.canary:
                self.canaries.add(key.platform)
            interval = watched.policy.interval
            self.intervals[key.platform] = min(self.intervals.get(key.platform, interval),
                                               interval)

    def moved(self, watched: Watched, new: AccountState) -> None:
        """Keep the absent sets right when ``watched`` is about to enter ``new``."""
        absent = self.absent.setdefault(watched.key.platform, set())
        if new.state in anomaly.ABSENT_STATES:
            absent.add(watched.key)
        else:
            absent.discard(watched.key)

    def report(self, loads: Iterable[PlatformLoad]) -> None:
        """Say what is watched, when the first answers are due and whether each platform's
        budget keeps up (:mod:`monitor.capacity`), so a first run does not look dead."""
        for load in loads:
            if not load.accounts:
                continue
            interval = self.intervals.get(load.platform, 0.0)
            log.info("watching", platform=load.platform, accounts=load.accounts,
                     protected=sum(w.config.protected for w in self.of(load.platform)),
                     interval_seconds=interval,
                     first_results_within_seconds=round(min(interval, 60.0), 1),
                     needed_requests_per_second=round(load.needed_rps, 3))
            if not load.ok:
                log.warning("this platform's budget cannot keep up with its watchlist",
                            platform=load.platform, detail=load.render())

    def dids(self, platform: str) -> dict[str, AccountKey]:
        """DID -> account, for the accounts of ``platform`` whose DID is known (streams)."""
        return {w.account_id: key for key, w in self.accounts.items()
                if key.platform == platform and w.account_id
                and w.account_id.startswith("did:")}
