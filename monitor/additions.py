"""Accounts added through the API: validated like the config's, kept in the state file.

During an incident nobody wants to edit YAML and reload to watch one more account. An
addition is checked exactly as a config entry is (the same model, the platform must be
configured, the shard must own it), stored in SQLite with the audit row in one
transaction, and applied at once: the account joins the watchlist, is probed immediately
and counts in the capacity estimate. The config file wins: an account listed there cannot
be added or removed here (409), and an addition later written into the file is the file's.
``watch export`` prints the additions as YAML ready to paste under ``accounts:``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog
import yaml
from pydantic import TypeAdapter, ValidationError

from monitor import sharding
from monitor.config import AccountConfig, Config
from monitor.model import AccountKey
from monitor.store import AuditEntry, Store

log = structlog.get_logger("monitor")

_ACCOUNT = TypeAdapter(AccountConfig)
SOURCE_CONFIG, SOURCE_API = "config", "api"


class AdditionRejected(Exception):
    """The API refuses the change: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, problems: list[str]):
        self.status, self.problems = status, problems
        super().__init__("; ".join(problems))


def validate(raw: Any, config: Config) -> AccountConfig:
    """One account as the config would take it, or :class:`AdditionRejected` (422)."""
    if not isinstance(raw, dict):
        raise AdditionRejected(422, ["expected a JSON object like a config `accounts:` entry "
                                     "(platform, handle, protected, team, labels, ...)"])
    try:
        account = _ACCOUNT.validate_python(raw)
    except ValidationError as exc:
        raise AdditionRejected(422, [_problem(e) for e in exc.errors(include_url=False)]) \
            from None
    if account.platform not in config.platforms:
        raise AdditionRejected(422, [
            f"platform: {account.platform!r} is not configured under platforms (have: "
            f"{', '.join(sorted(config.platforms)) or 'none'})"])
    return account


def _problem(error: Mapping[str, Any]) -> str:
    where = ".".join(str(part) for part in error["loc"]) or "(account)"
    if error["type"] == "unexpected_keyword_argument":
        return f"{where}: unknown key (check the spelling; see README's config reference)"
    return f"{where}: {str(error['msg']).removeprefix('Value error, ')}"


def as_stored(account: AccountConfig) -> dict[str, Any]:
    """The entry as it would be written in the config: only what differs from defaults."""
    out: dict[str, Any] = {"platform": account.platform, "handle": account.handle}
    for name in ("id", "protected", "canary", "team", "owner", "interval",
                 "failure_threshold", "recovery_threshold", "confirm_interval", "staleness"):
        value = getattr(account, name)
        if value not in (None, False):
            out[name] = value
    if account.labels:
        out["labels"] = dict(account.labels)
    return out


def merged(config: Config, additions: Iterable[AccountConfig]) -> Config:
    """``config`` with the additions the file does not list appended (the file wins)."""
    listed = {a.key for a in config.accounts}
    extra = [a for a in additions if a.key not in listed]
    if not extra:
        return config
    copy = config.model_copy(update={"accounts": [*config.accounts, *extra]})
    return copy


def load(store: Store, config: Config) -> dict[AccountKey, AccountConfig]:
    """The stored additions; one that no longer validates (its platform was removed from
    the config) is skipped with a warning, and kept in the file for later."""
    accounts: dict[AccountKey, AccountConfig] = {}
    for raw in store.watch_additions():
        try:
            account = validate(raw, config)
        except AdditionRejected as exc:
            log.warning("stored watchlist addition skipped", account=raw.get("handle"),
                        platform=raw.get("platform"), problems=exc.problems)
            continue
        accounts[account.key] = account
    return accounts


@dataclass(slots=True)
class Additions:
    """The API's view of the watchlist; ``apply`` re-applies the merged config."""

    store: Callable[[], Store | None]
    file_config: Callable[[], Config]  # the config file as loaded, without additions
    shard: Callable[[], sharding.Shard | None]
    apply: Callable[[], None]
    accounts: dict[AccountKey, AccountConfig]

    def entries(self) -> list[tuple[AccountConfig, str]]:
        config = self.file_config()
        listed = {a.key for a in config.accounts}
        return [*((a, SOURCE_CONFIG) for a in config.accounts),
                *((a, SOURCE_API) for k, a in self.accounts.items() if k not in listed)]

    def source(self, key: AccountKey) -> str:
        return SOURCE_API if key in self.accounts and not self._in_file(key) else SOURCE_CONFIG

    def _in_file(self, key: AccountKey) -> bool:
        return any(a.key == key for a in self.file_config().accounts)

    def add(self, raw: Any, actor: str, remote: str | None) -> AccountConfig:
        account = validate(raw, self.file_config())
        if self._in_file(account.key):
            raise AdditionRejected(409, [f"{account.key} is already in the config file, "
                                         "which wins; change it there"])
        if account.key in self.accounts:
            raise AdditionRejected(409, [f"{account.key} was already added through the API"
                                         "; remove it first to change it"])
        shard = self.shard()
        if shard is not None and not sharding.owns(shard, account.key):
            raise AdditionRejected(422, [
                f"{account.key} belongs to another shard than this monitor's {shard}; add "
                "it on the replica that owns it"])
        store = self._store()
        store.add_watch(as_stored(account), AuditEntry(actor, "watch.add", str(account.key),
                                                       as_stored(account), remote))
        self.accounts[account.key] = account
        self.apply()
        log.info("account added to the watchlist", platform=account.platform,
                 account=account.handle, actor=actor)
        return account

    def remove(self, platform: str, handle: str, actor: str, remote: str | None) -> None:
        key = AccountKey(platform, handle)
        if self._in_file(key):
            raise AdditionRejected(409, [f"{key} is listed in the config file, which wins; "
                                         "remove it there and reload"])
        if key not in self.accounts:
            raise AdditionRejected(404, [f"{key} is not on the watchlist"])
        store = self._store()
        store.remove_watch(platform, handle, AuditEntry(actor, "watch.remove", str(key), {},
                                                        remote))
        del self.accounts[key]
        self.apply()
        log.info("account removed from the watchlist", platform=platform, account=handle,
                 actor=actor)

    def export_yaml(self) -> str:
        """The API's additions as config ``accounts:`` entries."""
        listed = {a.key for a in self.file_config().accounts}
        entries = [as_stored(a) for k, a in self.accounts.items() if k not in listed]
        if not entries:
            return "# no accounts were added through the API\n"
        header = "# accounts added through the API: paste under `accounts:` in the config\n"
        return header + yaml.safe_dump(entries, sort_keys=False, allow_unicode=True)

    def _store(self) -> Store:
        store = self.store()
        if store is None:
            raise AdditionRejected(503, ["the monitor is not running"])
        return store
