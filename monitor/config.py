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
import string
from collections.abc import Iterable
from dataclasses import dataclass, replace
from dataclasses import field as dataclass_field
from typing import Annotated, Any, Literal

import yaml
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
from monitor.config_types import Duration, Size, Strict, parse_duration, shown
from monitor.config_types import parse_size as parse_size  # re-exported: it was defined here
from monitor.model import AbsentReason, AccountKey, ErrorKind, Policy
from monitor.notify import NotifierConfig
from monitor.notify.alertmanager import AlertmanagerConfig as AlertmanagerConfig
from monitor.notify.log import LogNotifierConfig as LogNotifierConfig
from monitor.notify.opsgenie import OpsgenieConfig as OpsgenieConfig
from monitor.notify.pagerduty import PagerDutyConfig as PagerDutyConfig
from monitor.notify.slack import SlackConfig as SlackConfig
from monitor.notify.webhook import WebhookConfig as WebhookConfig
from monitor.sharding import Shard, parse_shard

# Each notifier's config model lives in its provider module and the ``notifiers:`` union is
# built from the registry (monitor/notify/__init__.py); the models are re-exported above for
# the code that imported them from here.

# --------------------------------------------------------------------------- HTTP rules


def check_template(template: str, allowed: tuple[str, ...]) -> str:
    """Refuse a ``str.format`` template the probes could not fill.

    Probes fill templates with keywords only, so ``{}``/``{0}`` (positional), ``{handle.x}``
    (attribute), ``{site}`` (unknown), a format spec and a lone brace would each fail on
    every check (or at start-up, or on reload): all are config problems instead.
    """
    names = ", ".join(f"{{{name}}}" for name in allowed)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"{exc} in {shown(template)}; write a literal brace as {{{{ or }}}}"
                         ) from None
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name == "" or name.isdigit():
            raise ValueError(f"positional placeholder {{{name}}} in {shown(template)}; use "
                             f"a name: {names}")
        if name not in allowed:
            raise ValueError(f"unknown placeholder {{{name[:40]}}} in {shown(template)}; "
                             f"use only {names}")
        if spec or conversion:
            raise ValueError(f"a format spec or conversion in {shown(template)}; write "
                             f"plain placeholders: {names}")
    return template


class Match(Strict):
    """Conditions on one HTTP answer; every condition given must hold."""

    status: list[int] | None = None
    body_contains: list[str] = Field(default_factory=list)
    body_not_contains: list[str] = Field(default_factory=list)
    final_url_contains: str | None = None
    # JSON field tests: dotted path -> expected value (``null`` means "field missing/null").
    json_fields: dict[str, Any] = Field(default_factory=dict)
    # Dotted paths that must exist with a non-null value (e.g. ``data.id``).
    json_has: list[str] = Field(default_factory=list)

    @field_validator("body_contains", "body_not_contains", "json_has", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("status", mode="before")
    @classmethod
    def _status_one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value


class AbsentRule(Match):
    reason: AbsentReason


class ErrorRule(Match):
    kind: ErrorKind


class HttpRules(Strict):
    """Declarative checks for a site without an API (see probes/http.py).

    Order of evaluation: ``error`` rules (login walls, captchas), then ``absent``, then
    ``present``; an answer that matches nothing is ``error(unexpected)``, never ``absent``.
    """

    url: str = "{base_url}/{handle}"
    method: Literal["GET", "HEAD"] = "GET"
    headers: dict[str, str] = Field(default_factory=dict)
    present: list[Match] = Field(min_length=1)
    absent: list[AbsentRule] = Field(default_factory=list)
    error: list[ErrorRule] = Field(default_factory=list)
    # Self-check examples: handles known to exist / known not to exist.
    known_present: list[str] = Field(default_factory=list)
    known_absent: list[str] = Field(default_factory=list)

    @field_validator("url")
    @classmethod
    def _url_has_handle(cls, value: str) -> str:
        check_template(value, ("base_url", "handle", "id"))  # what probes/http.py fills in
        if "{handle}" not in value and "{id}" not in value:
            raise ValueError("url must contain {handle} or {id}, e.g. '{base_url}/{handle}'")
        return value


# --------------------------------------------------------------------------- main models


class Thresholds(Strict):
    """Timing and thresholds; set under ``defaults`` and overridable per account."""

    interval: Duration | None = None
    failure_threshold: int | None = Field(default=None, ge=1)
    recovery_threshold: int | None = Field(default=None, ge=1)
    confirm_interval: Duration | None = None
    staleness: Duration | None = None


class Defaults(Thresholds):
    interval: Duration = 60.0
    failure_threshold: int = Field(default=2, ge=1)
    recovery_threshold: int = Field(default=1, ge=1)
    confirm_interval: Duration = 10.0
    staleness: Duration = 600.0
    timeout: Duration = 10.0
    max_body_bytes: Size = 1024 * 1024
    jitter: float = Field(default=0.1, ge=0.0, le=0.5)


class AnomalyConfig(Strict):
    """When to call many vanishings on one platform a platform anomaly (one page, not N)."""

    enabled: bool = True
    # Trips when at least max(min_accounts, fraction x watched accounts) of the platform's
    # accounts went absent within `window`, or when any canary account looks absent.
    fraction: float = Field(default=0.3, gt=0, le=1)
    min_accounts: int = Field(default=3, ge=2)
    window: Duration = 600.0
    # Vanish pages wait this long before the first attempt, so the first accounts of a mass
    # event are held too, not paged before the pattern shows. Only where an anomaly can trip
    # (at least min_accounts accounts, or a canary).
    hold_for: Annotated[float, BeforeValidator(lambda v: 0.0 if v in (0, "0", "0s")
                                               else parse_duration(v))] = 15.0


class PlatformConfig(Strict):
    """One platform (or one instance of a platform, e.g. a Mastodon server)."""

    probe: str | None = None  # the probe module to use; defaults to the platform's name
    base_url: str
    token: SecretStr | None = None
    user_agent: str = "account-monitor/0.1 (+https://github.com/account-monitor)"
    timeout: Duration | None = None
    max_body_bytes: Size | None = None
    concurrency: int = Field(default=8, ge=1, le=1024)
    rate_per_second: float = Field(default=5.0, gt=0)
    burst: int = Field(default=5, ge=1)
    anomaly: AnomalyConfig = Field(default_factory=AnomalyConfig)
    # On a 429 the platform's probes pause until its reset time, but never longer than this.
    max_rate_limit_pause: Duration = 3600.0
    rules: HttpRules | None = None
    # The public page of an account, for links in pages: "https://x.com/{handle}".
    profile_url: str | None = None
    plc_url: str = Field(
        default="https://plc.directory", pattern=r"^https?://\S+$",
        description="Bluesky: the PLC directory that resolves `did:plc` identities, so an "
                    "AppView \"Profile not found\" is confirmed by the account's own PDS.")

    # A site from the bundled catalogue (monitor/probes/catalogue.yaml): fills probe: http,
    # base_url and rules, each of which may still be given to override it.
    catalogue: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_catalogue(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not data.get("catalogue"):
            return data
        from monitor.probes.catalogue import load_sites  # probes import this module

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


_NO_LABELS: dict[str, str] = {}


@pydantic_dataclass(frozen=True, slots=True,
                    config=ConfigDict(extra="forbid", allow_inf_nan=False))
class AccountConfig:
    """One watched account.

    A slotted pydantic dataclass, not a model: a 100k-account watchlist costs ~200 bytes per
    account instead of ~1 KB. The threshold fields mirror :class:`Thresholds`.
    """

    platform: str
    handle: Annotated[str, Field(min_length=1)]
    id: str | None = None  # the platform's immutable id, when known
    protected: bool = False
    canary: bool = False  # known to stay up: if it looks gone, the platform is in trouble
    team: str | None = None
    owner: str | None = None
    labels: dict[str, str] = dataclass_field(default_factory=lambda: _NO_LABELS)
    interval: Duration | None = None
    failure_threshold: Annotated[int, Field(ge=1)] | None = None
    recovery_threshold: Annotated[int, Field(ge=1)] | None = None
    confirm_interval: Duration | None = None
    staleness: Duration | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @property
    def key(self) -> AccountKey:
        return AccountKey(self.platform, self.handle)


# --------------------------------------------------------------------------- streams


class JetstreamConfig(Strict):
    """A Bluesky Jetstream push source for the DIDs of one configured platform's accounts."""

    type: Literal["jetstream"]
    url: str = "wss://jetstream2.us-east.bsky.network/subscribe"
    platform: str = "bluesky"  # whose accounts' DIDs it follows
    rewind: Duration = 5.0  # resume from the saved cursor minus this
    backoff_max: Duration = 30.0

    @field_validator("url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("url must start with ws:// or wss://")
        return value


EventName = Literal["vanished", "recovered", "reminder", "renamed", "moved", "blind", "sighted",
                    "platform_anomaly", "brief_outage", "monitor_blind"]


class RouteMatch(Strict):
    """Every condition given must hold (an empty match matches everything)."""

    protected: bool | None = None
    platform: list[str] | None = None
    team: list[str] | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    events: list[EventName] | None = None

    @field_validator("platform", "team", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class Route(Strict):
    match: RouteMatch = Field(default_factory=RouteMatch)
    notifiers: list[str] = Field(min_length=1)
    # Like Alertmanager: the first matching route wins unless it says continue.
    continue_: bool = Field(default=False, alias="continue")


class Routing(Strict):
    """Which events go to which notifiers. Without routes: protected accounts page every
    paging notifier (pagerduty, opsgenie, alertmanager), everything else goes to chat
    (slack, webhook, log)."""

    routes: list[Route] = Field(default_factory=list)
    reminder_interval: Duration | None = 3600.0  # re-notify while still down; null disables
    max_age: Duration = 86400.0  # give up delivering a notification after this long
    retry_initial: Duration = 1.0
    retry_max: Duration = 300.0
    monitor_team: str | None = None  # who owns the monitor (platform anomalies page them)
    runbook_url: str | None = None  # linked from every page

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
    hold_for: Annotated[float, BeforeValidator(lambda v: 0.0 if v in (0, "0", "0s")
                                               else parse_duration(v))] = Field(
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


class MonitorSettings(Strict):
    listen_host: str = "127.0.0.1"
    listen_port: int = Field(default=9464, ge=0, le=65535)
    state_path: str = "state/monitor.db"
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_grace: Duration = 5.0
    # This replica's part of the watchlist, "i/N" (0-based); --shard / ACCMON_SHARD override.
    shard: Annotated[Shard | None, BeforeValidator(_shard)] = None
    own_blindness: OwnBlindnessConfig = Field(
        default_factory=OwnBlindnessConfig,
        description="Most accounts blind at once: one page, per-account blind pages held.")
    heartbeat: HeartbeatConfig | None = Field(
        default=None, description="A dead-man's-switch URL pinged while the monitor is healthy.")


class Config(Strict):
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    defaults: Defaults = Field(default_factory=Defaults)
    platforms: dict[str, PlatformConfig]
    accounts: list[AccountConfig]
    notifiers: dict[str, NotifierConfig] = Field(default_factory=dict)
    streams: dict[str, JetstreamConfig] = Field(default_factory=dict)
    routing: Routing = Field(default_factory=Routing)
    _policies: dict[Policy, Policy] = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _cross_checks(self) -> Config:
        from monitor.probes import PROBES  # the registry; imported late to avoid a cycle

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
                if name not in self.notifiers and name != "log":
                    problems.append(
                        f"routing.routes[{i}].notifiers: {name!r} is not configured under "
                        f"notifiers (have: {', '.join(sorted(self.notifiers)) or 'none'})"
                    )
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
        """Defaults with the account's overrides applied."""
        def pick(name: str) -> Any:
            value = getattr(account, name)
            return getattr(self.defaults, name) if value is None else value

        policy = Policy(
            interval=pick("interval"),
            failure_threshold=pick("failure_threshold"),
            recovery_threshold=pick("recovery_threshold"),
            confirm_interval=pick("confirm_interval"),
            staleness=pick("staleness"),
        )
        # Most accounts share their policy: keep one object per distinct value.
        return self._policies.setdefault(policy, policy)

    def platform_timeout(self, name: str) -> float:
        return self.platforms[name].timeout or self.defaults.timeout

    def platform_max_body(self, name: str) -> int:
        return self.platforms[name].max_body_bytes or self.defaults.max_body_bytes


# --------------------------------------------------------------------------- loading


@dataclass(frozen=True)
class Problem:
    path: str  # dotted field path, e.g. accounts[3].interval
    line: int | None
    reason: str


class ConfigError(Exception):
    """The file is not a valid config. ``problems`` lists every problem found."""

    def __init__(self, file: str, problems: list[Problem]):
        self.file = file
        self.problems = problems
        super().__init__(self.render())

    def render(self) -> str:
        lines = [f"{self.file}: {len(self.problems)} problem(s):"]
        for p in self.problems:
            where = f"{self.file}:{p.line}" if p.line else self.file
            lines.append(f"  {where}: {p.path or '(top level)'}: {p.reason}")
        return "\n".join(lines)


# A watchlist of a million accounts is ~40 MB of YAML; a bigger "config" is the wrong file.
MAX_CONFIG_BYTES = 64 * 1024**2

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(node: Any, path: str, env: dict[str, str], problems: list[Problem]) -> Any:
    """Replace ``${VAR}`` in every string; a missing variable is a problem, not an empty string."""
    if isinstance(node, dict):
        return {k: _expand_env(v, _join(path, k), env, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, f"{path}[{i}]", env, problems) for i, v in enumerate(node)]
    if isinstance(node, str):

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


def _line_index(root: yaml.Node | None) -> dict[str, int]:
    """Map every field path in the composed YAML to its 1-based line, for error messages.

    The graph was checked by :func:`yamlsafe.compose`: no cycles, bounded depth and alias
    expansion, so walking it expanded is bounded too.
    """
    index: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        index.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = _join(path, key_node.value)
                index[child] = key_node.start_mark.line + 1
                walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{path}[{i}]")

    if root is not None:
        walk(root, "")
    return index


def _loc_to_path(loc: Iterable[Any]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, str) and part.startswith(("function-", "model-")):
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


def parse_config(text: str, file: str = "<config>", env: dict[str, str] | None = None) -> Config:
    """Validate YAML text into a :class:`Config`; raise :class:`ConfigError` with every problem.

    Nothing else is raised, whatever the text: reload relies on it to reject a bad file.
    """
    try:
        root, loader = yamlsafe.compose(text)
        raw = yamlsafe.construct(loader, root) if root is not None else None
    except yamlsafe.YamlProblems as exc:
        raise ConfigError(file, [Problem(p.path, p.line, p.reason)
                                 for p in exc.problems]) from None
    except yamlsafe.YamlProblem as exc:
        raise ConfigError(file, [Problem(exc.path, exc.line, exc.reason)]) from None
    if not isinstance(raw, dict):
        raise ConfigError(file, [Problem("", 1, "expected a mapping with platforms: and "
                                         "accounts:")])
    problems: list[Problem] = []
    raw = _expand_env(raw, "", dict(os.environ) if env is None else env, problems)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        problems.extend(_validation_problems(exc))
        config = None
    if problems:
        lines = _line_index(root)
        raise ConfigError(file, [replace(p, line=_line_for(p.path, lines)) for p in problems])
    assert config is not None
    return config


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
