"""Typed configuration: the only place the YAML file is parsed and validated.

``load_config(path)`` returns a :class:`Config` or raises :class:`ConfigError` listing *every*
problem with the file, the field path, the line and the fix. Unknown keys are errors (a
misspelt ``faliure_threshold`` must not be silently ignored).

Secrets are never written in the file itself: a string may reference ``${ENV_VAR}``, and any
secret field ``x`` may instead be given as ``x_file: /path`` (Docker/Kubernetes secrets).
Secret values are :class:`pydantic.SecretStr`, so they print as ``**********``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass as pydantic_dataclass

from monitor import yamlsafe
from monitor.config_types import Duration, DurationOrZero, Size, Strict
from monitor.config_types import parse_duration as parse_duration  # re-exported
from monitor.config_types import parse_size as parse_size  # re-exported: it was defined here
from monitor.maintenance import MaintenanceWindow
from monitor.model import AccountKey, Policy
from monitor.notify import FALLBACK_NAME, NOTIFIERS, NotifierConfig
from monitor.notify.alertmanager import AlertmanagerConfig as AlertmanagerConfig
from monitor.notify.log import LogNotifierConfig as LogNotifierConfig
from monitor.notify.opsgenie import OpsgenieConfig as OpsgenieConfig
from monitor.notify.pagerduty import PagerDutyConfig as PagerDutyConfig
from monitor.notify.slack import SlackConfig as SlackConfig
from monitor.notify.webhook import WebhookConfig as WebhookConfig
from monitor.probes import PROBES
from monitor.probes.catalogue import load_sites
from monitor.rules import AbsentRule as AbsentRule
from monitor.rules import ErrorRule as ErrorRule
from monitor.rules import HttpRules, check_template
from monitor.rules import Match as Match
from monitor.sharding import Shard, parse_shard

# Each notifier's config model lives in its provider module and the ``notifiers:`` union is
# built from the registry (monitor/notify/__init__.py); the models are re-exported above for
# the code that imported them from here.

# --------------------------------------------------------------------------- main models


class Thresholds(Strict):
    """Timing and thresholds; set under ``defaults`` and overridable per account."""

    interval: Duration | None = Field(default=None, description=(
        "How often each account is probed (with `jitter`)."))
    failure_threshold: int | None = Field(default=None, ge=1, description=(
        "Absent answers in a row before an account is down (and pages)."))
    recovery_threshold: int | None = Field(default=None, ge=1, description=(
        "Present answers in a row before a down account is up again (and the page "
        "resolves)."))
    confirm_interval: Duration | None = Field(default=None, description=(
        "The quicker re-check interval while an account looks absent but is not yet down."))
    staleness: Duration | None = Field(default=None, description=(
        "Only errors for this long flag the account *blind* (its own alert)."))


class Defaults(Thresholds):
    """Timing and thresholds for every account; each account may override `interval`, the
    thresholds, `confirm_interval` and `staleness`.

    The threshold fields keep the descriptions of :class:`Thresholds`; only their defaults
    change here.
    """

    interval: Duration = 60.0
    failure_threshold: int = Field(default=2, ge=1)
    recovery_threshold: int = Field(default=1, ge=1)
    confirm_interval: Duration = 10.0
    staleness: Duration = 600.0
    timeout: Duration = Field(default=10.0, description=(
        "Per-request timeout, unless the platform sets its own."))
    max_body_bytes: Size = Field(default=1024 * 1024, description=(
        "Larger answers are `error(too_large)`, unless the platform sets its own cap."))
    jitter: float = Field(default=0.1, ge=0.0, le=0.5, description=(
        "Random spread of each probe's time, as a fraction of its interval."))


class AnomalyConfig(Strict):
    """When many of a platform's accounts vanish at once (or a canary does), that is one
    platform anomaly alert, and individual vanish pages are held until it clears.

    It trips when at least max(min_accounts, fraction x watched accounts) of the platform's
    accounts went absent within ``window``, or when any canary account looks absent.
    """

    enabled: bool = Field(default=True, description=(
        "Detect platform anomalies at all (off: every vanish pages)."))
    fraction: float = Field(default=0.3, gt=0, le=1, description=(
        "Trips when this share of the platform's watched accounts (but at least "
        "`min_accounts`) went absent within `window`."))
    min_accounts: int = Field(default=3, ge=2, description=(
        "The fewest absent accounts that can trip it."))
    window: Duration = Field(default=600.0, description=(
        "How recent the absences counted together must be."))
    hold_for: DurationOrZero = Field(
        default=15.0, description=(
            "Vanish pages wait this long for a possible anomaly, so the first accounts of a "
            "mass event are held too (`0s`: page at once). Only where an anomaly can trip."))


class PlatformConfig(Strict):
    """One platform, or one instance of one (a Mastodon server); NAME is what accounts refer
    to in `platform`."""

    probe: str | None = Field(default=None, description=(
        "The probe module (`http`, `mastodon`, `x`, ...); unset: the platform's name."))
    base_url: str = Field(description=(
        "The API's root URL (http or https); point it at a proxy or a fake to test."))
    token: SecretStr | None = Field(default=None, description=(
        "Bearer token sent as `Authorization`; an empty value means none."))
    user_agent: str = Field(default="account-monitor/0.1 (+https://github.com/account-monitor)",
                            description="The `User-Agent` of every request.")
    timeout: Duration | None = Field(default=None, description=(
        "Per-request timeout; unset: `defaults.timeout`."))
    max_body_bytes: Size | None = Field(default=None, description=(
        "Body size cap; unset: `defaults.max_body_bytes`."))
    concurrency: int = Field(default=8, ge=1, le=1024, description=(
        "Requests in flight at once to this platform."))
    rate_per_second: float = Field(default=5.0, gt=0, description=(
        "Sustained request rate (token bucket)."))
    burst: int = Field(default=5, ge=1, description=(
        "Requests allowed at once above the sustained rate."))
    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig, description=(
        "When mass vanishing on this platform is an anomaly, not N pages."))
    max_rate_limit_pause: Duration = Field(default=3600.0, description=(
        "On a 429 the platform's probes pause until its reset time, but never longer than "
        "this."))
    rules: HttpRules | None = Field(default=None, description=(
        "The declarative checks; required by `probe: http`."))
    profile_url: str | None = Field(default=None, description=(
        "An account's public page for links in pages, e.g. `https://x.com/{handle}`."))
    plc_url: str = Field(
        default="https://plc.directory", pattern=r"^https?://\S+$",
        description="Bluesky: the PLC directory that resolves `did:plc` identities, so an "
                    "AppView \"Profile not found\" is confirmed by the account's own PDS.")
    client_id: Annotated[str | None, BeforeValidator(lambda v: None if v == "" else v)] = Field(
        default=None, pattern=r"^[!-~]+$",
        description="Twitch: the client id the app access token (`token`) was issued to, sent "
                    "as `Client-Id` (e.g. `${TWITCH_CLIENT_ID}`; empty means none).")

    # The bundled catalogue is monitor/probes/catalogue.yaml; given fields override the site's.
    catalogue: str | None = Field(default=None, description=(
        "A site from the bundled catalogue of http rules (telegram, instagram, threads): "
        "fills probe, base_url and rules."))

    @model_validator(mode="before")
    @classmethod
    def _from_catalogue(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("catalogue"):
            return data

        sites = load_sites()
        name = data["catalogue"]
        if not isinstance(name, str) or name not in sites:
            raise ValueError(f"catalogue: no site {name!r} in the bundled catalogue "
                             f"(have: {', '.join(sorted(sites))})")
        site = sites[name]
        return {"probe": "http", "base_url": site.base_url, "rules": site.rules} | data

    @field_validator("token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: Any) -> Any:
        # ``token: ${X_BEARER_TOKEN:-}`` with the variable unset means "no token".
        return None if value == "" else value

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("profile_url")
    @classmethod
    def _profile_template(cls, value: str | None) -> str | None:
        # routing.links_for fills it with the handle and the id
        return None if value is None else check_template(value, ("handle", "id"))


# Most accounts have no labels: they share one empty mapping (100k accounts, 100k fewer
# dicts), read-only so that no code can give every account a label by mutating it.
_NO_LABELS: Mapping[str, str] = MappingProxyType({})


@pydantic_dataclass(frozen=True, slots=True,
                    config=ConfigDict(extra="forbid", allow_inf_nan=False))
class AccountConfig:
    """One watched account. Unset thresholds fall back to `defaults`.

    A slotted pydantic dataclass, not a model: a 100k-account watchlist costs ~200 bytes per
    account instead of ~1 KB. The threshold fields mirror :class:`Thresholds`.
    """

    platform: Annotated[str, Field(description="The name of an entry under `platforms`.")]
    handle: Annotated[str, Field(min_length=1, description=(
        "The account's handle (username) on that platform."))]
    id: str | None = Field(default=None, description=(
        "The platform's immutable account id, when known: renames are then `renamed` "
        "events, not outages."))
    protected: bool = Field(default=False, description=(
        "Page on-call when it vanishes (else a warning to chat)."))
    canary: bool = Field(default=False, description=(
        "Known to stay up: if it looks gone, the platform is in trouble (a platform "
        "anomaly), not the account."))
    team: str | None = Field(default=None, description=(
        "Owning team: a label on alerts and a routing condition."))
    owner: str | None = Field(default=None, description="Who to escalate to, shown in pages.")
    labels: Mapping[str, str] = Field(default_factory=lambda: _NO_LABELS, description=(
        "Extra labels carried on alerts and usable in routes."))
    interval: Duration | None = Field(default=None, description=(
        "Overrides `defaults.interval` for this account."))
    failure_threshold: Annotated[int, Field(ge=1)] | None = Field(default=None, description=(
        "Overrides `defaults.failure_threshold`."))
    recovery_threshold: Annotated[int, Field(ge=1)] | None = Field(default=None, description=(
        "Overrides `defaults.recovery_threshold`."))
    confirm_interval: Duration | None = Field(default=None, description=(
        "Overrides `defaults.confirm_interval`."))
    staleness: Duration | None = Field(default=None, description=(
        "Overrides `defaults.staleness`."))

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @property
    def key(self) -> AccountKey:
        return AccountKey(self.platform, self.handle)


# --------------------------------------------------------------------------- streams


class JetstreamConfig(Strict):
    """A Bluesky Jetstream websocket that pushes changes to the watched accounts of one
    platform between polls; polling still covers every account."""

    type: Literal["jetstream"] = Field(description="Selects this stream.")
    url: str = Field(default="wss://jetstream2.us-east.bsky.network/subscribe", description=(
        "The Jetstream `subscribe` endpoint (`ws://` or `wss://`)."))
    platform: str = Field(default="bluesky", description=(
        "The platform (under `platforms`) whose accounts' DIDs it follows."))
    rewind: Duration = Field(default=5.0, description=(
        "On reconnect, resume from the saved cursor minus this, so no event is missed."))
    backoff_max: Duration = Field(default=30.0, description=(
        "Longest wait between reconnection attempts."))

    @field_validator("url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("url must start with ws:// or wss://")
        return value


EventName = Literal["vanished", "recovered", "reminder", "renamed", "moved", "blind", "sighted",
                    "platform_anomaly", "brief_outage", "monitor_blind"]


class RouteMatch(Strict):
    """Every condition given must hold; an empty match matches every event."""

    protected: bool | None = Field(default=None, description=(
        "Only protected (`true`) or unprotected (`false`) accounts."))
    platform: list[str] | None = Field(default=None, description=(
        "Platform names, one or a list."))
    team: list[str] | None = Field(default=None, description="Account teams, one or a list.")
    labels: dict[str, str] = Field(default_factory=dict, description=(
        "Account labels that must all be equal."))
    events: list[EventName] | None = Field(default=None, description=(
        "Event kinds; a route taking `vanished` also takes its `recovered` and `reminder`, "
        "`blind` takes `sighted`."))

    @field_validator("platform", "team", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Route(Strict):
    """One route: the first match wins unless it says `continue: true`."""

    match: RouteMatch = Field(default_factory=RouteMatch,
                              description="Which events this route takes.")
    notifiers: list[str] = Field(min_length=1, description=(
        "Names under `notifiers` (or `log`) to send matching events to."))
    continue_: bool = Field(default=False, alias="continue", description=(
        "Also try the routes after this one when it matches."))


class Routing(Strict):
    """Which events go to which notifiers, and how delivery is retried. Without `routes`,
    protected accounts page every paging notifier and everything else goes to chat.

    Whether a notifier pages is its provider's own statement (``pages``, see
    :mod:`monitor.notify`).
    """

    routes: list[Route] = Field(default_factory=list, description=(
        "Routes in order; empty: the default routing described above."))
    reminder_interval: Duration | None = Field(default=3600.0, description=(
        "Notify again this often while an account stays down; `null` disables reminders."))
    max_age: Duration = Field(default=86400.0, description=(
        "Give up delivering a notification after this long (logged and counted as failed)."))
    retry_initial: Duration = Field(default=1.0, description=(
        "First retry delay; it doubles on each failure."))
    retry_max: Duration = Field(default=300.0, description="Longest retry delay.")
    monitor_team: str | None = Field(default=None, description=(
        "The team owning the monitor itself (platform anomalies go to it)."))
    runbook_url: str | None = Field(default=None, description=(
        "A runbook link included in every page."))

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _shard(value: Any) -> Any:
    return parse_shard(value) if isinstance(value, str) else value


class OwnBlindnessConfig(Strict):
    """When blindness across most accounts at once is the monitor's own trouble (its
    network, DNS, proxy or credentials): one "monitor blind" page instead of one per
    account, the per-account blind pages held until it clears."""

    enabled: bool = Field(default=True, description="Turn the one-page rule on or off.")
    fraction: float = Field(default=0.5, gt=0, le=1, description=(
        "Trips when at least max(min_accounts, fraction x watched accounts) are blind at "
        "once."))
    min_accounts: int = Field(default=3, ge=2, description=(
        "The fewest blind accounts that count as the monitor's own blindness."))
    hold_for: DurationOrZero = Field(
        default=120.0, description=(
            "Blind pages wait this long before their first attempt, so the first accounts "
            "to go blind are held too (accounts go blind up to one interval apart): at least "
            "the longest probe interval. Only where it can trip."))


class HeartbeatConfig(Strict):
    """A dead-man's switch: ping ``url`` every ``interval`` while the monitor is healthy
    (Healthchecks.io, Cronitor, Dead Man's Snitch, an Alertmanager-less on-call tool). When
    the pings stop, that service pages: the monitor died, hangs, or stopped watching."""

    url: SecretStr = Field(description=(
        "The ping URL (secret: it usually embeds its own key; `url_file` reads it from a "
        "file)."))
    interval: Duration = Field(default=60.0, description=(
        "How often to ping while healthy (ready, and no platform behind its interval)."))
    timeout: Duration = Field(default=10.0, description="How long one ping may take.")
    method: Literal["GET", "POST", "HEAD"] = Field(default="GET",
                                                   description="The HTTP method of a ping.")


class ApiConfig(Strict):
    """Who may use the HTTP API. Every mutating endpoint (silences, acknowledgements,
    watchlist changes, reload) needs the write token; reads need the read token (or the
    write token) once one is set. Tokens may also come from ``ACCMON_WRITE_TOKEN`` /
    ``ACCMON_READ_TOKEN`` or ``ACCMON_WRITE_TOKEN_FILE`` / ``ACCMON_READ_TOKEN_FILE``."""

    write_token: SecretStr | None = Field(default=None, description=(
        "Bearer token for changes (`write_token_file` reads it from a file). Unset (and no "
        "`ACCMON_WRITE_TOKEN`): changes over HTTP are off."))
    read_token: SecretStr | None = Field(default=None, description=(
        "Bearer token for reads (`read_token_file` reads it from a file). Unset: reads are "
        "open to whoever reaches the listener."))
    peer_token: SecretStr | None = Field(default=None, description=(
        "Bearer token the other vantages present to ask this one for a fresh probe "
        "(`POST /api/v1/probe`; `peer_token_file`, or `ACCMON_PEER_TOKEN`). It allows "
        "nothing else; the write token is accepted there too."))


class RetentionConfig(Strict):
    """How long history is kept, so the state file stays bounded. Pruning runs in small
    batches off the decision path; nothing unsent, no open outage and no account's newest
    transition is ever pruned."""

    transitions: Duration = Field(default=90 * 86400.0, description=(
        "Keep transitions (the event history `/api/v1/events` replays) this long."))
    outbox: Duration = Field(default=90 * 86400.0, description=(
        "Keep finished notifications (delivered, failed, dropped) this long."))
    outages: Duration = Field(default=400 * 86400.0, description=(
        "Keep recovered outages this long (availability reports look back up to a year)."))
    audit: Duration = Field(default=400 * 86400.0, description=(
        "Keep the audit trail (silences, acknowledgements, watchlist changes) this long."))
    silences: Duration = Field(default=30 * 86400.0, description=(
        "Keep silences this long after they end."))
    interval: Duration = Field(default=600.0, description="How often pruning runs.")
    batch: int = Field(default=500, ge=1, le=100_000, description=(
        "Rows deleted per transaction: small, so a decision never waits long behind it."))


class PublicPage(Strict):
    """A status page anyone who reaches the listener may see, without a token: only the
    accounts its matchers choose, and none of their evidence, labels or errors."""

    enabled: bool = Field(default=False, description=(
        "Serve the public view to visitors without a token (on every listener, loopback "
        "included: behind a reverse proxy everyone is a loopback visitor)."))
    title: str = Field(default="Account status", max_length=200, description=(
        "The page's heading."))
    accounts: list[str] = Field(default_factory=lambda: ['protected="true"'], description=(
        "Matchers (amtool syntax, all must match) choosing the accounts shown, over platform, "
        "account, team, protected and labels."))

    @field_validator("accounts")
    @classmethod
    def _matchers(cls, value: list[str]) -> list[str]:
        from monitor.matchers import parse_matcher

        for text in value:
            parse_matcher(text)  # ValueError names the bad matcher and the fix
        return value


class UiConfig(Strict):
    """The built-in web UI at `/`. On a loopback listener it shows everything; on any other
    it needs the read token (as a Bearer header, or as the password of the browser's login
    prompt) unless the public page is on."""

    enabled: bool = Field(default=True, description="Serve the UI at `/`.")
    public: PublicPage = Field(default_factory=PublicPage, description=(
        "What visitors without a token see, if anything."))


class Peer(Strict):
    """Another monitor watching the same accounts from elsewhere (the same shard)."""

    url: str = Field(pattern=r"^https?://[^\s/]+", description=(
        "The peer's base URL, e.g. `http://accmon-us-0.accmon-us:9464`."))
    token: SecretStr | None = Field(default=None, description=(
        "The peer's `monitor.api.peer_token` (`token_file` reads it from a file)."))
    timeout: Duration = Field(default=3.0, description=(
        "How long a fresh probe by this peer may take; later, it casts no vote."))
    name: str | None = Field(default=None, description=(
        "What to call it until it answers with its own vantage name."))


class QuorumConfig(Strict):
    """How many vantages must see an account gone before its vanish page goes out."""

    required: int = Field(default=2, ge=1, le=16, description=(
        "Vantages (this one included) that must see the account absent."))
    when_too_few: Literal["page", "hold"] = Field(default="page", description=(
        "When too few peers answer and none contradicts: `page` anyway (the page says "
        "\"single vantage\") or `hold` until enough answer or the account is back."))
    ask_again: Duration = Field(default=30.0, description=(
        "While vantages disagree (or too few answer under `hold`), ask again this often."))
    serve_rate: float = Field(default=5.0, gt=0, description=(
        "Fresh probes this monitor does for its peers, per second at most (429 beyond)."))


class MetricsConfig(Strict):
    """What `/metrics` exports. Aggregate series (per platform, state and protected flag)
    are always there, so the dashboards and alert rules work in every mode."""

    per_account: Literal["auto", "all", "protected", "none"] = Field(
        default="auto", description=(
            "Per-account series (`accmon_account_up` and its kin): `all`, only `protected` "
            "accounts, or `none`. `auto`: all up to 10,000 watched accounts, protected "
            "above (each account costs Prometheus about six series)."))


class MonitorSettings(Strict):
    """The process itself: HTTP listener, state file, logs, shutdown and sharding."""

    listen_host: str = Field(default="127.0.0.1", description=(
        "Address of the HTTP server (metrics, health, API); `0.0.0.0` in a container. "
        "`--host` overrides it."))
    listen_port: int = Field(default=9464, ge=0, le=65535, description=(
        "Port of the HTTP server; 0 picks a free one. `--port` overrides it."))
    state_path: str = Field(default="state/monitor.db", description=(
        "The SQLite state file (states, outages, outbox); its directory must be writable. "
        "`--state` overrides it."))
    log_format: Literal["auto", "json", "console"] = Field(default="auto", description=(
        "`json` lines, a readable `console`, or `auto`: console on a TTY, else JSON. "
        "`--log-format` overrides it."))
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="The least severe level logged.")
    shutdown_grace: Duration = Field(default=5.0, description=(
        "How long SIGTERM waits for in-flight probes and deliveries before closing the "
        "database."))
    shard: Annotated[Shard | None, BeforeValidator(_shard)] = Field(default=None, description=(
        "Watch only this shard of the accounts, `I/N` (0-based, by stable hash); `--shard` "
        "and `ACCMON_SHARD` override it. Unset: every account."))
    vantage: str = Field(default="local", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$",
                         description=(
        "This monitor's vantage name (where it watches from, e.g. `eu-west`); peers and "
        "pages name it."))
    own_blindness: OwnBlindnessConfig = Field(
        default_factory=OwnBlindnessConfig,
        description="Most accounts blind at once: one page, per-account blind pages held.")
    heartbeat: HeartbeatConfig | None = Field(
        default=None, description="A dead-man's-switch URL pinged while the monitor is healthy.")
    metrics: MetricsConfig = Field(default_factory=MetricsConfig, description=(
        "What /metrics exports per account."))
    api: ApiConfig = Field(default_factory=ApiConfig, description=(
        "Tokens for the HTTP API's reads and writes."))
    retention: RetentionConfig = Field(default_factory=RetentionConfig, description=(
        "How long history is kept in the state file."))


    def needs_restart(self, old: MonitorSettings) -> list[str]:
        """The settings that differ from ``old`` and a reload cannot apply."""
        return [name for name in ("listen_host", "listen_port", "state_path")
                if getattr(self, name) != getattr(old, name)]

class Config(Strict):
    """The whole file. Only `platforms` and a watchlist (`accounts`, `accounts_file` or both)
    are required."""

    monitor: MonitorSettings = Field(default_factory=MonitorSettings, description=(
        "How the process runs: listener, state file, logs, sharding."))
    defaults: Defaults = Field(default_factory=Defaults, description=(
        "Timing and thresholds applied to every account."))
    platforms: dict[str, PlatformConfig] = Field(description=(
        "The platforms to probe, by the name accounts use."))
    accounts: list[AccountConfig] = Field(default_factory=list, description=(
        "The watchlist: each platform and handle once (here, in `accounts_file`, or both)."))
    accounts_file: str | None = Field(default=None, description=(
        "A watchlist file of CSV or JSON lines (one account per line, the fields of an "
        "`accounts` entry), relative to this file; for large watchlists: streamed, "
        "validated with line numbers, re-read on reload."))
    notifiers: dict[str, NotifierConfig] = Field(default_factory=dict, description=(
        "Where notifications can go, by the name routes use."))
    streams: dict[str, JetstreamConfig] = Field(default_factory=dict, description=(
        "Push sources that report changes between polls, by name."))
    routing: Routing = Field(default_factory=Routing, description=(
        "Which events go to which notifiers; delivery retries."))
    peers: list[Peer] = Field(default_factory=list, description=(
        "Other monitors watching the same accounts from elsewhere, asked before a vanish "
        "page goes out (multi-vantage quorum); empty: this vantage pages alone."))
    quorum: QuorumConfig = Field(default_factory=QuorumConfig, description=(
        "How many vantages must agree, when `peers` are configured."))
    ui: UiConfig = Field(default_factory=UiConfig, description=(
        "The built-in status UI: who sees what."))
    maintenance: list[MaintenanceWindow] = Field(default_factory=list, description=(
        "Planned windows (one-off or weekly) when matching accounts are watched but not "
        "paged; a page still due when the window ends goes out then, once."))
    # Policies by their overrides (a tuple) and by themselves: one object per distinct one.
    _policies: dict[Any, Policy] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        problems: list[str] = []
        for name, platform in self.platforms.items():
            probe = platform.probe or name
            if probe not in PROBES:
                problems.append(
                    f"platforms.{name}.probe: unknown probe {probe!r}; "
                    f"choose one of {', '.join(sorted(PROBES))}"
                )
            elif probe == "http" and platform.rules is None:
                problems.append(f"platforms.{name}.rules: the http probe needs rules")
        for name, stream in self.streams.items():
            if stream.platform not in self.platforms:
                problems.append(f"streams.{name}.platform: {stream.platform!r} is not "
                                "configured under platforms")
        for i, route in enumerate(self.routing.routes):
            for name in route.notifiers:
                if name not in self.notifiers and name != FALLBACK_NAME:
                    problems.append(
                        f"routing.routes[{i}].notifiers: {name!r} is not configured under "
                        f"notifiers (have: {', '.join(sorted(self.notifiers)) or 'none'})"
                    )
        if self.peers and self.quorum.required > len(self.peers) + 1:
            problems.append(
                f"quorum.required: {self.quorum.required} vantages can never agree: there "
                f"are {len(self.peers) + 1} (this one and {len(self.peers)} peer(s)); lower "
                "it or add peers")
        names: set[str] = set()
        for i, window in enumerate(self.maintenance):
            if window.name in names:
                problems.append(f"maintenance[{i}].name: {window.name!r} is used twice; "
                                "give each window its own name")
            names.add(window.name)
        seen: set[AccountKey] = set()
        for i, account in enumerate(self.accounts):
            if account.platform not in self.platforms:
                problems.append(
                    f"accounts[{i}].platform: {account.platform!r} is not configured under "
                    f"platforms (have: {', '.join(sorted(self.platforms)) or 'none'})"
                )
            if account.key in seen:
                problems.append(f"accounts[{i}]: {account.key} is listed twice")
            seen.add(account.key)
        if problems:
            raise ValueError("\n".join(problems))
        return self

    def policy(self, account: AccountConfig) -> Policy:
        """Defaults with the account's overrides applied: one object per distinct set of
        overrides, looked up by them (called once per account at start and reload, so a
        million-account watchlist must not build a Policy each time)."""
        overrides = (account.interval, account.failure_threshold, account.recovery_threshold,
                     account.confirm_interval, account.staleness)
        policies = self.__pydantic_private__["_policies"]  # type: ignore[index]
        found = policies.get(overrides)
        if found is None:
            d = self.defaults
            found = Policy(
                interval=d.interval if overrides[0] is None else overrides[0],
                failure_threshold=(d.failure_threshold if overrides[1] is None
                                   else overrides[1]),
                recovery_threshold=(d.recovery_threshold if overrides[2] is None
                                    else overrides[2]),
                confirm_interval=d.confirm_interval if overrides[3] is None else overrides[3],
                staleness=d.staleness if overrides[4] is None else overrides[4],
            )
            # Different overrides can give the same policy: still one object for them.
            found = policies.setdefault(found, found)
            policies[overrides] = found
        return found  # type: ignore[no-any-return]

    def platform_timeout(self, name: str) -> float:
        return self.platforms[name].timeout or self.defaults.timeout

    def platform_max_body(self, name: str) -> int:
        return self.platforms[name].max_body_bytes or self.defaults.max_body_bytes


# --------------------------------------------------------------------------- loading

from monitor import watchfile  # noqa: E402 (this section's own imports)
from monitor.config_types import shown  # noqa: E402

watchfile.use_model(AccountConfig)  # rows of accounts_file are read into the same model


@dataclass(frozen=True)
class Problem:
    path: str  # dotted field path, e.g. accounts[3].interval; a column of accounts_file
    line: int | None
    reason: str
    file: str | None = None  # where, when not the config file itself (the accounts_file)


class ConfigError(Exception):
    """The file is not a valid config. ``problems`` lists every problem found."""

    def __init__(self, file: str, problems: list[Problem]):
        self.file = file
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.file}: {len(self.problems)} problem(s):"]
        for p in self.problems:
            file = p.file or self.file
            where = f"{file}:{p.line}" if p.line else file
            lines.append(f"  {where}: {p.path or '(top level)'}: {p.reason}")
        return "\n".join(lines)


# A bigger "config" is the wrong file: 64 MiB of YAML is ~700,000 accounts with ids and
# labels (and ~1 KB of Python values each while it is validated); a watchlist that long
# belongs in accounts_file (monitor/watchfile.py: read line by line, ~250 bytes an account).
MAX_CONFIG_BYTES = 64 * 1024**2

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(node: Any, parts: list[Any], env: dict[str, str],
                problems: list[Problem]) -> Any:
    """Replace ``${VAR}`` in every string; a missing variable is a problem, not an empty string.

    What holds no reference comes back as the same object (a 100k-account watchlist is not
    copied to expand the one token it has); ``parts`` is the path, joined only for a problem.
    """
    if isinstance(node, dict):
        copy: dict[Any, Any] | None = None
        for key, value in node.items():
            parts.append(key)
            new = _expand_env(value, parts, env, problems)
            parts.pop()
            if new is not value:
                copy = dict(node) if copy is None else copy
                copy[key] = new
        return node if copy is None else copy
    if isinstance(node, list):
        items: list[Any] | None = None
        for i, value in enumerate(node):
            parts.append(i)
            new = _expand_env(value, parts, env, problems)
            parts.pop()
            if new is not value:
                items = list(node) if items is None else items
                items[i] = new
        return node if items is None else items
    if isinstance(node, str) and "${" in node:
        path = _path_of(parts)

        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name not in env and default is not None:
                return default
            if name not in env:
                problems.append(Problem(path, None, f"environment variable {name} is not set; "
                                        f"export it or use {path.rsplit('.', 1)[-1]}_file"))
                return ""
            return env[name]

        return _ENV_REF.sub(sub, node)
    return node


_join = yamlsafe.join_path


def _path_of(parts: Iterable[Any]) -> str:
    path = ""
    for part in parts:
        path = _join(path, part)
    return path


def _line_index(text: str, paths: Iterable[str]) -> dict[str, int]:
    """The 1-based line of each of ``paths`` (and of their ancestors), for error messages.

    Only when there are problems to place: one pass over the parser's events
    (:func:`yamlsafe.lines_of`), not the node graph a large watchlist would need.
    """
    wanted: set[str] = {""}
    for path in paths:
        while path and path not in wanted:
            wanted.add(path)
            parent = _LAST_PART.sub("", path)
            path = parent if parent != path else ""
    return yamlsafe.lines_of(text, wanted)


def _loc_to_path(loc: Iterable[Any]) -> str:
    path = ""
    parts = list(loc)
    for i, part in enumerate(parts):
        if isinstance(part, str) and part.startswith(("function-", "model-")):
            continue
        # pydantic names the union member it tried (notifiers.pd.pagerduty.routing_key):
        # the reader wrote notifiers.pd.routing_key, so the tag is left out.
        if i == 2 and parts[0] == "notifiers" and part in NOTIFIERS:
            continue
        path = _join(path, part)
    return path


def _line_for(path: str, lines: dict[str, int]) -> int | None:
    """The line of ``path``, or of its nearest ancestor present in the file."""
    while path:
        if path in lines:
            return lines[path]
        parent = _LAST_PART.sub("", path)
        path = parent if parent != path else ""
    return lines.get("")


_LAST_PART = re.compile(r'(\.[^.\[]+|\[\d+\]|\["(?:[^"\\]|\\.)*"\])$')


def _validation_problems(exc: ValidationError) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        path = _loc_to_path(err["loc"])
        if err["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
            reason = "unknown key (check the spelling; see README's config reference)"
        elif err["type"] == "field_problem":
            ctx = err.get("ctx") or {}
            problems.append(Problem(_join(path, ctx["field"]), None, ctx["reason"]))
            continue
        else:
            reason = err["msg"].removeprefix("Value error, ")
        for part in reason.split("\n"):
            # cross-field problems carry their own path as "path: reason"
            sub_path, sep, sub_reason = part.partition(": ")
            if sep and not path and re.match(r"^[\w.\[\]]+$", sub_path):
                problems.append(Problem(sub_path, None, sub_reason))
            else:
                problems.append(Problem(path, None, part))
    return problems


def parse_config(text: str, file: str = "<config>", env: dict[str, str] | None = None, *,
                 base_dir: str | os.PathLike[str] | None = None) -> Config:
    """Validate YAML text into a :class:`Config`; raise :class:`ConfigError` with every problem.

    ``accounts_file`` is read relative to ``base_dir`` (default: the directory of ``file``)
    and its accounts follow the file's own ``accounts:`` in ``Config.accounts``.
    Nothing else is raised, whatever the text: reload relies on it to reject a bad file.
    """
    with watchfile.collector_paused():  # a big watchlist makes no cycles: see there
        return _parse(text, file, env, base_dir)


def _parse(text: str, file: str, env: dict[str, str] | None,
           base_dir: str | os.PathLike[str] | None) -> Config:
    raw = _parse_yaml(text, file)
    problems: list[Problem] = []
    raw = _expand_env(raw, [], dict(os.environ) if env is None else env, problems)
    config: Config | None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_validation_problems(exc))
        config = None
    base = os.path.dirname(file) if base_dir is None else os.fspath(base_dir)
    found = _read_accounts_file(raw, config, base, problems)
    if problems or (found is not None and not found[1].ok):
        raise ConfigError(file, _placed(text, file, problems, found))
    assert config is not None
    if found is not None and found[1].accounts:
        accounts = found[1].accounts
        if config.accounts:
            accounts = [*config.accounts, *accounts]
        config = config.model_copy(update={"accounts": accounts})
    return config


def _parse_yaml(text: str, file: str) -> dict[Any, Any]:
    """The YAML as Python values (built without a node graph: :func:`yamlsafe.load`)."""
    try:
        raw = yamlsafe.load(text)
    except yamlsafe.YamlProblems as exc:
        raise ConfigError(file, [Problem(p.path, p.line, p.reason)
                                 for p in exc.problems]) from None
    except yamlsafe.YamlProblem as exc:
        raise ConfigError(file, [Problem(exc.path, exc.line, exc.reason)]) from None
    if not isinstance(raw, dict):
        raise ConfigError(file, [Problem("", 1, "expected a mapping with platforms: and "
                                         "accounts:")])
    return raw


def _read_accounts_file(raw: dict[Any, Any], config: Config | None, base: str,
                        problems: list[Problem]) -> tuple[str, watchfile.Watchfile] | None:
    """The watchlist file's name and contents, when the config names one.

    With an invalid config its rows are still checked, all but their platforms; a file that
    cannot be read at all is a problem of ``accounts_file`` (in the config, with its line).
    """
    name = config.accounts_file if config is not None else raw.get("accounts_file")
    if not isinstance(name, str):
        return None
    if watchfile.format_of(name) is None:
        problems.append(Problem("accounts_file", None, f"{shown(name)}: unknown format; name "
                                "the file .csv (a header row, then one account per row) or "
                                ".jsonl (one JSON object per line)"))
        return None
    path = os.path.join(base, os.path.expanduser(name))
    listed = ({(a.platform, a.handle): i for i, a in enumerate(config.accounts)}
              if config is not None else {})
    found = watchfile.read(path, platforms=config.platforms if config is not None else None,
                           listed=listed)
    for p in found.problems:
        if p.line is None:  # the file as a whole
            problems.append(Problem("accounts_file", None, f"{path}: {p.reason}"))
    return path, found


def _placed(text: str, file: str, problems: list[Problem],
            found: tuple[str, watchfile.Watchfile] | None) -> list[Problem]:
    """Every problem with its line: the config's from the YAML, the watchlist file's its own
    (a row repeating an ``accounts:`` entry names that entry's line too)."""
    rows = [p for p in found[1].problems if p.line is not None] if found is not None else []
    lines = _line_index(text, [p.path for p in problems]
                        + [f"accounts[{p.listed_at}]" for p in rows if p.listed_at is not None])
    placed = [replace(p, line=_line_for(p.path, lines)) for p in problems]
    if found is None:
        return placed
    path, contents = found
    for p in rows:
        reason = p.reason
        if p.listed_at is not None:
            entry = f"accounts[{p.listed_at}]"
            reason += (f" (first at {file}:{_line_for(entry, lines)}, {entry}); keep one "
                       "of them")
        placed.append(Problem(p.field, p.line, reason, file=path))
    if contents.unlisted:
        placed.append(Problem("", None, f"{contents.unlisted:,} more problem(s) not listed "
                              f"(the first {watchfile.MAX_PROBLEMS} are)", file=path))
    return placed


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate the config file; :class:`ConfigError` for every bad input.

    The file must be a regular file of at most :data:`MAX_CONFIG_BYTES`, in UTF-8.
    """
    file = str(path)
    try:
        text = yamlsafe.decode_utf8(yamlsafe.read_bounded(path, MAX_CONFIG_BYTES))
    except yamlsafe.YamlProblem as exc:
        raise ConfigError(file, [Problem("", exc.line, exc.reason)]) from None
    return parse_config(text, file)
