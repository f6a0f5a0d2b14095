"""The config reference in README.md, generated from the models in :mod:`monitor.config`.

    python -m monitor.docs                     # print the Markdown reference
    python -m monitor.docs --write README.md   # replace the text between the markers
    python -m monitor.docs --check README.md   # exit 1 when README's copy is out of date

Every section (a pydantic model or pydantic dataclass reachable from :class:`Config`) and
every field is listed with its YAML name, type, default and a one-line description: the
field's ``Field(description=...)`` when it has one, else :data:`DESCRIPTIONS`. A field that
has neither renders as undocumented, which ``tests/test_docs.py`` refuses, as it refuses a
README whose section differs from this output: the docs cannot drift from the code.
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union, cast, get_args, get_origin

import annotated_types
from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from monitor import config as cfg
from monitor.sharding import Shard

START = "<!-- config-reference:start -->"
END = "<!-- config-reference:end -->"
UNDOCUMENTED = "*(undocumented)*"

# Each section's heading (where it lives in the YAML file, in Markdown) and what it is for.
SECTIONS: dict[str, tuple[str, str]] = {
    "Config": ("The top level", "The whole file. Only `platforms` and `accounts` are required."),
    "MonitorSettings": ("`monitor`", "The process itself: HTTP listener, state file, logs, "
                        "shutdown and sharding."),
    "Defaults": ("`defaults`", "Timing and thresholds for every account; each account may "
                 "override `interval`, the thresholds, `confirm_interval` and `staleness`."),
    "PlatformConfig": ("`platforms.NAME`", "One platform, or one instance of one (a Mastodon "
                       "server); NAME is what accounts refer to in `platform`."),
    "AnomalyConfig": ("`platforms.NAME.anomaly`", "When many of a platform's accounts vanish "
                      "at once (or a canary does), that is one platform anomaly alert, and "
                      "individual vanish pages are held until it clears."),
    "HttpRules": ("`platforms.NAME.rules`", "Declarative checks for `probe: http`. Evaluated in "
                  "order: `error` rules, then `absent`, then `present`; an answer that "
                  "matches none is `error(unexpected)`, never `absent`."),
    "Match": ("`rules.present[]`", "Conditions on one HTTP answer: every condition given must "
              "hold. The `absent` and `error` rules take the same conditions."),
    "AbsentRule": ("`rules.absent[]`", "An answer that proves the account is gone: the "
                   "conditions of a `present` match plus the reason it is gone."),
    "ErrorRule": ("`rules.error[]`", "An answer that proves nothing about the account (login "
                  "wall, captcha, our credentials): the conditions plus the error kind."),
    "AccountConfig": ("`accounts[]`", "One watched account. Unset thresholds fall back to "
                      "`defaults`."),
    "PagerDutyConfig": ("`notifiers.NAME` with `type: pagerduty`", "PagerDuty Events API v2; "
                        "incidents are deduplicated by `dedup_key` (one per outage)."),
    "OpsgenieConfig": ("`notifiers.NAME` with `type: opsgenie`", "Opsgenie Alert API; alerts are "
                       "deduplicated by `alias` (one per outage)."),
    "SlackConfig": ("`notifiers.NAME` with `type: slack`", "A Slack incoming webhook (chat, not "
                    "paging)."),
    "WebhookConfig": ("`notifiers.NAME` with `type: webhook`", "Any HTTP endpoint: JSON POSTs, "
                      "optionally HMAC-signed (`X-Accmon-Signature`)."),
    "AlertmanagerConfig": ("`notifiers.NAME` with `type: alertmanager`", "Prometheus Alertmanager "
                           "API v2: the recommended path for HA pairs of monitors (see "
                           "Scale-out)."),
    "LogNotifierConfig": ("`notifiers.NAME` with `type: log`", "Writes notifications to the log "
                          "only (always available as `log` in routes)."),
    "JetstreamConfig": ("`streams.NAME` with `type: jetstream`", "A Bluesky Jetstream "
                        "websocket that pushes changes to the watched accounts of one "
                        "platform between polls; polling still covers every account."),
    "Routing": ("`routing`", "Which events go to which notifiers, and how delivery is retried. "
                "Without `routes`, protected accounts page every paging notifier and "
                "everything else goes to chat."),
    "Route": ("`routing.routes[]`", "One route: the first match wins unless it says "
              "`continue: true`."),
    "RouteMatch": ("`routing.routes[].match`", "Every condition given must hold; an empty "
                   "match matches every event."),
}

# One line per field, keyed "Model.field" (the class that declares the field; subclasses
# inherit its line unless they have their own).
DESCRIPTIONS: dict[str, str] = {
    # Config
    "Config.monitor": "How the process runs: listener, state file, logs, sharding.",
    "Config.defaults": "Timing and thresholds applied to every account.",
    "Config.platforms": "The platforms to probe, by the name accounts use.",
    "Config.accounts": "The watchlist: each platform and handle once.",
    "Config.notifiers": "Where notifications can go, by the name routes use.",
    "Config.streams": "Push sources that report changes between polls, by name.",
    "Config.routing": "Which events go to which notifiers; delivery retries.",
    # MonitorSettings
    "MonitorSettings.listen_host": "Address of the HTTP server (metrics, health, API); "
                                   "`0.0.0.0` in a container. `--host` overrides it.",
    "MonitorSettings.listen_port": "Port of the HTTP server; 0 picks a free one. `--port` "
                                   "overrides it.",
    "MonitorSettings.state_path": "The SQLite state file (states, outages, outbox); its "
                                  "directory must be writable. `--state` overrides it.",
    "MonitorSettings.log_format": "`json` lines, a readable `console`, or `auto`: console "
                                  "on a TTY, else JSON. `--log-format` overrides it.",
    "MonitorSettings.log_level": "The least severe level logged.",
    "MonitorSettings.shutdown_grace": "How long SIGTERM waits for in-flight probes and "
                                      "deliveries before closing the database.",
    "MonitorSettings.shard": "Watch only this shard of the accounts, `I/N` (0-based, by "
                             "stable hash); `--shard` and `ACCMON_SHARD` override it. "
                             "Unset: every account.",
    # Thresholds / Defaults
    "Thresholds.interval": "How often each account is probed (with `jitter`).",
    "Thresholds.failure_threshold": "Absent answers in a row before an account is down "
                                    "(and pages).",
    "Thresholds.recovery_threshold": "Present answers in a row before a down account is "
                                     "up again (and the page resolves).",
    "Thresholds.confirm_interval": "The quicker re-check interval while an account looks "
                                   "absent but is not yet down.",
    "Thresholds.staleness": "Only errors for this long flag the account *blind* (its own "
                            "alert).",
    "Defaults.timeout": "Per-request timeout, unless the platform sets its own.",
    "Defaults.max_body_bytes": "Larger answers are `error(too_large)`, unless the platform "
                               "sets its own cap.",
    "Defaults.jitter": "Random spread of each probe's time, as a fraction of its interval.",
    # PlatformConfig
    "PlatformConfig.probe": "The probe module (`http`, `mastodon`, `x`, ...); unset: the "
                            "platform's name.",
    "PlatformConfig.base_url": "The API's root URL (http or https); point it at a proxy or "
                               "a fake to test.",
    "PlatformConfig.token": "Bearer token sent as `Authorization`; an empty value means "
                            "none.",
    "PlatformConfig.user_agent": "The `User-Agent` of every request.",
    "PlatformConfig.timeout": "Per-request timeout; unset: `defaults.timeout`.",
    "PlatformConfig.max_body_bytes": "Body size cap; unset: `defaults.max_body_bytes`.",
    "PlatformConfig.concurrency": "Requests in flight at once to this platform.",
    "PlatformConfig.rate_per_second": "Sustained request rate (token bucket).",
    "PlatformConfig.burst": "Requests allowed at once above the sustained rate.",
    "PlatformConfig.max_rate_limit_pause": "On a 429 the platform's probes pause until its "
                                           "reset time, but never longer than this.",
    "PlatformConfig.anomaly": "When mass vanishing on this platform is an anomaly, not N "
                              "pages.",
    "PlatformConfig.rules": "The declarative checks; required by `probe: http`.",
    # AnomalyConfig
    "AnomalyConfig.enabled": "Detect platform anomalies at all (off: every vanish pages).",
    "AnomalyConfig.fraction": "Trips when this share of the platform's watched accounts "
                              "(but at least `min_accounts`) went absent within `window`.",
    "AnomalyConfig.min_accounts": "The fewest absent accounts that can trip it.",
    "AnomalyConfig.window": "How recent the absences counted together must be.",
    "PlatformConfig.catalogue": "A site from the bundled catalogue of http rules "
                                "(telegram, instagram, threads): fills probe, base_url and "
                                "rules.",
    "AnomalyConfig.hold_for": "Vanish pages wait this long for a possible anomaly, so the "
                              "first accounts of a mass event are held too (`0s`: page at "
                              "once). Only where an anomaly can trip.",
    "PlatformConfig.profile_url": "An account's public page for links in pages, e.g. "
                                  "`https://x.com/{handle}`.",
    # HttpRules
    "HttpRules.url": "Request URL template: `{base_url}`, `{handle}` and `{id}` (needs the "
                     "account's `id`).",
    "HttpRules.method": "HTTP method; `HEAD` when the status alone decides.",
    "HttpRules.headers": "Extra request headers (e.g. an API version).",
    "HttpRules.present": "Answers that prove the account exists (at least one).",
    "HttpRules.absent": "Answers that prove the account is gone, with the reason.",
    "HttpRules.error": "Answers that prove nothing (checked first), with the error kind.",
    "HttpRules.known_present": "Handles known to exist: self-check examples for the rules.",
    "HttpRules.known_absent": "Handles known not to exist: self-check examples for the "
                              "rules.",
    # Match / AbsentRule / ErrorRule
    "Match.status": "HTTP status codes, one or a list; unset: any status.",
    "Match.body_contains": "Strings the body must all contain (one or a list).",
    "Match.body_not_contains": "Strings the body must not contain (one or a list).",
    "Match.final_url_contains": "A string the URL after redirects must contain (login "
                                "walls).",
    "Match.json_fields": "Dotted JSON path to expected value; `null` means missing or "
                         "null.",
    "Match.json_has": "Dotted JSON paths that must hold a non-null value (e.g. `data.id`).",
    "AbsentRule.reason": "Why the account is gone, as recorded on the outage.",
    "ErrorRule.kind": "The kind of error counted in `accmon_probe_errors_total`.",
    # AccountConfig
    "AccountConfig.platform": "The name of an entry under `platforms`.",
    "AccountConfig.handle": "The account's handle (username) on that platform.",
    "AccountConfig.id": "The platform's immutable account id, when known: renames are then "
                        "`renamed` events, not outages.",
    "AccountConfig.protected": "Page on-call when it vanishes (else a warning to chat).",
    "AccountConfig.canary": "Known to stay up: if it looks gone, the platform is in trouble "
                            "(a platform anomaly), not the account.",
    "AccountConfig.team": "Owning team: a label on alerts and a routing condition.",
    "AccountConfig.owner": "Who to escalate to, shown in pages.",
    "AccountConfig.labels": "Extra labels carried on alerts and usable in routes.",
    "AccountConfig.interval": "Overrides `defaults.interval` for this account.",
    "AccountConfig.failure_threshold": "Overrides `defaults.failure_threshold`.",
    "AccountConfig.recovery_threshold": "Overrides `defaults.recovery_threshold`.",
    "AccountConfig.confirm_interval": "Overrides `defaults.confirm_interval`.",
    "AccountConfig.staleness": "Overrides `defaults.staleness`.",
    # Notifiers
    "PagerDutyConfig.type": "Selects this notifier.",
    "PagerDutyConfig.routing_key": "The 32-character Events API v2 integration key.",
    "PagerDutyConfig.url": "The Events API endpoint (EU accounts, proxies, tests).",
    "PagerDutyConfig.timeout": "Per-request timeout.",
    "OpsgenieConfig.type": "Selects this notifier.",
    "OpsgenieConfig.api_key": "An Opsgenie API integration key.",
    "OpsgenieConfig.region": "The API region: `us` or `eu`.",
    "OpsgenieConfig.base_url": "The API root, overriding `region` (proxies, tests).",
    "OpsgenieConfig.priority": "The priority of created alerts.",
    "OpsgenieConfig.responders": "Responders as Opsgenie takes them: each with `type` and "
                                 "`id`, `name` or `username`.",
    "OpsgenieConfig.timeout": "Per-request timeout.",
    "SlackConfig.type": "Selects this notifier.",
    "SlackConfig.webhook_url": "The incoming webhook URL (the URL itself is the secret).",
    "SlackConfig.timeout": "Per-request timeout.",
    "WebhookConfig.type": "Selects this notifier.",
    "WebhookConfig.url": "The endpoint that receives each notification as a JSON POST.",
    "WebhookConfig.secret": "HMAC-SHA256 key for `X-Accmon-Signature`; unset: unsigned.",
    "WebhookConfig.headers": "Extra request headers.",
    "WebhookConfig.timeout": "Per-request timeout.",
    "AlertmanagerConfig.type": "Selects this notifier.",
    "AlertmanagerConfig.urls": "Every replica of the Alertmanager cluster; a delivery "
                               "succeeds when one accepts.",
    "AlertmanagerConfig.resend_interval": "How often firing alerts are re-posted.",
    "AlertmanagerConfig.ends_at_after": "Firing alerts carry `endsAt` = now + this, so a "
                                        "dead monitor's alerts expire.",
    "AlertmanagerConfig.generator_url": "The `generatorURL` of every alert (a link back).",
    "AlertmanagerConfig.timeout": "Per-request timeout.",
    "LogNotifierConfig.type": "Selects this notifier.",
    # Streams
    "JetstreamConfig.type": "Selects this stream.",
    "JetstreamConfig.url": "The Jetstream `subscribe` endpoint (`ws://` or `wss://`).",
    "JetstreamConfig.platform": "The platform (under `platforms`) whose accounts' DIDs it "
                                "follows.",
    "JetstreamConfig.rewind": "On reconnect, resume from the saved cursor minus this, so no "
                              "event is missed.",
    "JetstreamConfig.backoff_max": "Longest wait between reconnection attempts.",
    # Routing
    "Routing.routes": "Routes in order; empty: the default routing described above.",
    "Routing.reminder_interval": "Notify again this often while an account stays down; "
                                 "`null` disables reminders.",
    "Routing.max_age": "Give up delivering a notification after this long (logged and "
                       "counted as failed).",
    "Routing.retry_initial": "First retry delay; it doubles on each failure.",
    "Routing.retry_max": "Longest retry delay.",
    "Routing.monitor_team": "The team owning the monitor itself (platform anomalies go to "
                            "it).",
    "Routing.runbook_url": "A runbook link included in every page.",
    "Route.match": "Which events this route takes.",
    "Route.notifiers": "Names under `notifiers` (or `log`) to send matching events to.",
    "Route.continue_": "Also try the routes after this one when it matches.",
    "RouteMatch.protected": "Only protected (`true`) or unprotected (`false`) accounts.",
    "RouteMatch.platform": "Platform names, one or a list.",
    "RouteMatch.team": "Account teams, one or a list.",
    "RouteMatch.labels": "Account labels that must all be equal.",
    "RouteMatch.events": "Event kinds; a route taking `vanished` also takes its `recovered` "
                         "and `reminder`, `blind` takes `sighted`.",
}

_NONE = type(None)
_UNION_ORIGINS: tuple[Any, ...] = (Union, types.UnionType)


@dataclass(frozen=True, slots=True)
class FieldDoc:
    """One row of a section's table."""

    model: str
    attribute: str  # the Python name
    name: str  # the YAML key (the alias, when there is one)
    type: str
    default: str
    description: str


@dataclass(frozen=True, slots=True)
class SectionDoc:
    model: type[Any]
    path: str
    intro: str
    fields: tuple[FieldDoc, ...]

    @property
    def anchor(self) -> str:
        return anchor(self.model)


def anchor(model: type[Any]) -> str:
    return f"config-{model.__name__.lower()}"


def is_section(tp: Any) -> bool:
    return isinstance(tp, type) and (issubclass(tp, BaseModel)
                                     or "__pydantic_fields__" in vars(tp))


def model_fields(model: type[Any]) -> dict[str, FieldInfo]:
    """The fields of a pydantic model or pydantic dataclass, in declaration order."""
    if issubclass(model, BaseModel):
        return dict(model.model_fields)
    return dict(cast(dict[str, FieldInfo], model.__pydantic_fields__))


def sections(root: type[Any] = cfg.Config) -> list[type[Any]]:
    """Every section model reachable from ``root``, depth first in field order."""
    found: list[type[Any]] = []

    def visit(model: type[Any]) -> None:
        if model in found:
            return
        found.append(model)
        for info in model_fields(model).values():
            for tp in _walk(info.annotation):
                if is_section(tp):
                    visit(tp)

    visit(root)
    return found


def _walk(tp: Any) -> Iterator[Any]:
    yield tp
    for arg in get_args(tp):
        if not isinstance(arg, FieldInfo | str | int | float | bool):
            yield from _walk(arg)


# --------------------------------------------------------------------------- rendering


def _constraints(metadata: Sequence[Any], container: bool) -> list[str]:
    """``Ge(1)`` -> "≥ 1" and friends, from Field(...) or Annotated metadata."""
    found: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, FieldInfo):
            found.update({type(m).__name__: m for m in item.metadata})
        else:
            found[type(item).__name__] = item
    words: list[str] = []
    ge, le = found.get("Ge"), found.get("Le")
    gt, lt = found.get("Gt"), found.get("Lt")
    if isinstance(ge, annotated_types.Ge) and isinstance(le, annotated_types.Le):
        words.append(f"{_scalar(ge.ge)} to {_scalar(le.le)}")
    else:
        if isinstance(ge, annotated_types.Ge):
            words.append(f"≥ {_scalar(ge.ge)}")
        if isinstance(gt, annotated_types.Gt):
            words.append(f"> {_scalar(gt.gt)}")
        if isinstance(le, annotated_types.Le):
            words.append(f"≤ {_scalar(le.le)}")
    if isinstance(lt, annotated_types.Lt):
        words.append(f"< {_scalar(lt.lt)}")
    min_len = found.get("MinLen")
    if isinstance(min_len, annotated_types.MinLen) and min_len.min_length > 0:
        words.append(f"at least {min_len.min_length} item" if container else "not empty")
    return words


def _validator_kind(metadata: Sequence[Any]) -> str | None:
    for item in metadata:
        func = getattr(item, "func", None)
        if func is cfg.parse_duration:
            return "duration"
        if func is cfg.parse_size:
            return "size"
    return None


def _with(text: str, words: list[str]) -> str:
    return f"{text} ({', '.join(words)})" if words else text


def _literal(values: Sequence[Any]) -> str:
    return ", ".join(f"`{_scalar(v)}`" for v in values)


def render_type(tp: Any, metadata: Sequence[Any] = ()) -> str:
    """A reader's name for a field type: ``duration``, ``list of string``, a section link."""
    origin = get_origin(tp)
    if origin is Annotated:
        base, *extra = get_args(tp)
        return render_type(base, [*metadata, *extra])
    container = origin in (list, dict)
    kind = _validator_kind(metadata)
    if kind is not None:
        return _with(kind, _constraints(metadata, container))
    if origin in _UNION_ORIGINS:
        args = get_args(tp)
        members = [a for a in args if a is not _NONE]
        text = " or ".join(render_type(a) for a in members)
        words = _constraints(metadata, container)
        return _with(text, words) + (" or `null`" if len(members) < len(args) else "")
    words = _constraints(metadata, container)
    if origin is Literal:
        values = get_args(tp)
        return f"`{_scalar(values[0])}`" if len(values) == 1 else f"one of {_literal(values)}"
    if origin is list:
        (item,) = get_args(tp)
        if get_origin(item) is Literal or (isinstance(item, type) and issubclass(item, enum.Enum)):
            return _with(f"list, each {render_type(item)}", words)
        return _with(f"list of {render_type(item)}", words)
    if origin is dict:
        key, value = get_args(tp)
        return _with(f"map of {render_type(key)} to {render_type(value)}", words)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return f"one of {_literal([m.value for m in tp])}"
    if is_section(tp):
        return f"[{tp.__name__}](#{anchor(tp)})"
    names: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean",
                             Any: "any", SecretStr: "secret", Shard: "shard `I/N`"}
    name = names.get(tp, getattr(tp, "__name__", str(tp)))
    return _with(name, words)


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def format_duration(seconds: float) -> str:
    """60.0 -> ``1m``, 0.25 -> ``250ms``: the largest unit that is exact."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


def format_size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)


def render_default(info: FieldInfo) -> str:
    if info.default_factory is not None:
        value = cast(Callable[[], Any], info.default_factory)()
        if isinstance(value, BaseModel):
            return "(its defaults)"
        return f"`{json.dumps(value, default=str)}`"
    if info.default is PydanticUndefined:
        return "**required**"
    value = info.default
    kind = _validator_kind(_all_metadata(info))
    if value is not None and kind == "duration":
        return f"`{format_duration(float(value))}`"
    if value is not None and kind == "size":
        return f"`{format_size(int(value))}`"
    if isinstance(value, str) and not value:
        return '`""`'
    return f"`{_scalar(value)}`"


def _all_metadata(info: FieldInfo) -> list[Any]:
    """The field's metadata, plus that of an ``Annotated`` inside ``X | None``."""
    found = list(info.metadata)
    for tp in _walk(info.annotation):
        if get_origin(tp) is Annotated:
            found.extend(get_args(tp)[1:])
    return found


def describe(model: type[Any], attribute: str, info: FieldInfo) -> str:
    if info.description:
        return info.description
    for klass in model.__mro__:
        text = DESCRIPTIONS.get(f"{klass.__name__}.{attribute}")
        if text is not None:
            return text
    return UNDOCUMENTED


def _is_secret(tp: Any) -> bool:
    return tp is SecretStr or any(a is SecretStr for a in get_args(tp))


def section_doc(model: type[Any]) -> SectionDoc:
    path, intro = SECTIONS.get(model.__name__, (f"`{model.__name__}`", ""))
    if not intro:
        intro = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    rows = []
    for attribute, info in model_fields(model).items():
        name = info.alias or attribute
        type_text = render_type(info.annotation, info.metadata)
        if _is_secret(info.annotation):
            type_text += f"; or `{name}_file`: a file holding it"
        rows.append(FieldDoc(model.__name__, attribute, name, type_text, render_default(info),
                             describe(model, attribute, info)))
    return SectionDoc(model, path, intro, tuple(rows))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def config_reference() -> str:
    """The Markdown reference of every config section and field."""
    out = [
        "### Config reference",
        "",
        "Generated from `monitor/config.py` by `python -m monitor.docs --write README.md` "
        "(`tests/test_docs.py` fails when this copy is out of date). Durations: `250ms`, "
        "`30s`, `5m`, `1h30m`, `1d`. Sizes: `512KiB`, `1MiB`. A *secret* field `x` may "
        "instead be given as `x_file: /path`; any string may use `${ENV_VAR}` or "
        "`${ENV_VAR:-default}`.",
    ]
    for doc in map(section_doc, sections()):
        out += ["", f'<a id="{doc.anchor}"></a>', "",
                f"#### {doc.path} ({doc.model.__name__})", ""]
        if doc.intro:
            out += [doc.intro, ""]
        out += ["| field | type | default | description |", "|---|---|---|---|"]
        out += [f"| `{f.name}` | {_cell(f.type)} | {_cell(f.default)} | {_cell(f.description)} |"
                for f in doc.fields]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- README


def extract_section(text: str) -> str:
    """What stands between the markers (ValueError when they are missing)."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"no {START} ... {END} markers (in this order)")
    return text[start + len(START):end].strip("\n") + "\n"


def replace_section(text: str, reference: str) -> str:
    """``text`` with the markers' contents replaced by ``reference``."""
    extract_section(text)  # the markers exist
    start, end = text.find(START), text.find(END)
    return f"{text[:start]}{START}\n\n{reference.strip()}\n\n{text[end:]}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m monitor.docs",
                                     description="Generate the config reference Markdown.")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--write", metavar="FILE",
                       help=f"replace the text between {START} and {END} in FILE")
    group.add_argument("--check", metavar="FILE",
                       help="exit 1 when FILE's section differs from the generated one")
    args = parser.parse_args(argv)
    reference = config_reference()
    target = args.write or args.check
    if target is None:
        sys.stdout.write(reference)
        return 0
    path = Path(target)
    try:
        text = path.read_text(encoding="utf-8")
        current = extract_section(text)
    except (OSError, ValueError) as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if current.strip() != reference.strip():
            print(f"{path}: the config reference is out of date; run "
                  f"`python -m monitor.docs --write {path}`", file=sys.stderr)
            return 1
        return 0
    path.write_text(replace_section(text, reference), encoding="utf-8")
    print(f"{path}: config reference written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
