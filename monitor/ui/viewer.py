"""Who sees what in the UI: the full view, the public view, or a login prompt.

* A valid read or write token (a Bearer header, or the password of HTTP Basic with any user
  name: the browser's own login prompt) sees everything;
* else, with ``ui.public.enabled``, the visitor gets the public view, on every listener
  (behind a reverse proxy every visitor is a loopback visitor);
* else a loopback listener (the quick start, ``python3 dev.py run``) shows everything;
* else 401 with a Basic challenge, so the browser asks for the token.

The public view shows only the accounts ``ui.public.accounts`` matches (Alertmanager
matchers over the same labels silences use) and none of their evidence, labels, errors,
team or owner, silences or acknowledgement comments. The decision is pure
(:func:`decide`); :class:`PublicScope` caches which accounts are public per config.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from monitor.auth import Grant, Tokens
from monitor.config import AccountConfig, Config
from monitor.matchers import Matcher, matches_all, parse_matcher, subject_labels
from monitor.model import AccountKey
from monitor.watchlist import Watched


class Access(enum.Enum):
    FULL = "full"
    PUBLIC = "public"


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is looking. ``signed_in``: they presented a valid token."""

    access: Access
    signed_in: bool = False

    @property
    def full(self) -> bool:
        return self.access is Access.FULL


@dataclass(frozen=True, slots=True)
class Refused:
    """No view: 401 (ask for the token) or 503 (the read token's source is unusable; the
    problem names the variable or file, never the token)."""

    status: int
    problem: str | None = None


FULL = Viewer(Access.FULL)
PUBLIC = Viewer(Access.PUBLIC)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or ``localhost``: only this machine can reach the listener."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def decide(grant: Grant, tokens: Tokens, public_enabled: bool,
           listen_host: str) -> Viewer | Refused:
    """The viewer of one request (pure; the order is the one in the module docstring)."""
    if grant in (Grant.READ, Grant.WRITE):
        return Viewer(Access.FULL, signed_in=True)
    if public_enabled:
        return PUBLIC
    if is_loopback(listen_host):
        return FULL
    if tokens.read_problem:
        return Refused(503, tokens.read_problem)
    return Refused(401)


def shows(matchers: tuple[Matcher, ...], account: AccountConfig) -> bool:
    """Whether the public view shows ``account``."""
    return matches_all(matchers, subject_labels(account.platform, account.handle,
                                                account.team, account.protected,
                                                account.labels))


class PublicScope:
    """The accounts the public view shows, worked out once per config (and watchlist size:
    an addition through the API makes a new config object too)."""

    def __init__(self) -> None:
        self._config: Config | None = None
        self._size = -1
        self._matchers: tuple[Matcher, ...] = ()
        self._keys: frozenset[AccountKey] = frozenset()

    def matchers(self, config: Config) -> tuple[Matcher, ...]:
        if config is not self._config:
            self._config, self._size = config, -1
            self._matchers = tuple(parse_matcher(text) for text in config.ui.public.accounts)
        return self._matchers

    def keys(self, config: Config, accounts: Mapping[AccountKey, Watched]
             ) -> frozenset[AccountKey]:
        matchers = self.matchers(config)
        if len(accounts) != self._size:
            self._size = len(accounts)
            self._keys = frozenset(key for key, watched in accounts.items()
                                   if shows(matchers, watched.config))
        return self._keys
