"""Declarative rules for sites without an API (``probe: http``): what an answer must look
like to mean present, absent (with the reason) or an error (with the kind).

A model of the config, kept apart from :mod:`monitor.config` so that the bundled catalogue
of rules (:mod:`monitor.probes.catalogue`), which the config reads, needs nothing of it.
"""

from __future__ import annotations

import string
from typing import Any, Literal

from pydantic import Field, field_validator

from monitor.config_types import Strict, shown
from monitor.model import AbsentReason, ErrorKind


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
    """Conditions on one HTTP answer: every condition given must hold. The `absent` and
    `error` rules take the same conditions."""

    status: list[int] | None = Field(
        default=None, description="HTTP status codes, one or a list; unset: any status.")
    body_contains: list[str] = Field(
        default_factory=list, description="Strings the body must all contain (one or a list).")
    body_not_contains: list[str] = Field(
        default_factory=list, description="Strings the body must not contain (one or a list).")
    final_url_contains: str | None = Field(default=None, description=(
        "A string the URL after redirects must contain (login walls)."))
    json_fields: dict[str, Any] = Field(default_factory=dict, description=(
        "Dotted JSON path to expected value; `null` means missing or null."))
    json_has: list[str] = Field(default_factory=list, description=(
        "Dotted JSON paths that must hold a non-null value (e.g. `data.id`)."))

    @field_validator("body_contains", "body_not_contains", "json_has", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("status", mode="before")
    @classmethod
    def _status_one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, int) else value


class AbsentRule(Match):
    """An answer that proves the account is gone: the conditions of a `present` match plus
    the reason it is gone."""

    reason: AbsentReason = Field(description="Why the account is gone, as recorded on the "
                                             "outage.")


class ErrorRule(Match):
    """An answer that proves nothing about the account (login wall, captcha, our
    credentials): the conditions plus the error kind."""

    kind: ErrorKind = Field(description="The kind of error counted in "
                                        "`accmon_probe_errors_total`.")


class HttpRules(Strict):
    """Declarative checks for `probe: http`. Evaluated in order: `error` rules, then
    `absent`, then `present`; an answer that matches none is `error(unexpected)`, never
    `absent`.

    For a site without an API (see probes/http.py): ``error`` rules catch login walls and
    captchas before anything is read as ``absent``.
    """

    url: str = Field(default="{base_url}/{handle}", description=(
        "Request URL template: `{base_url}`, `{handle}` and `{id}` (needs the account's "
        "`id`)."))
    method: Literal["GET", "HEAD"] = Field(
        default="GET", description="HTTP method; `HEAD` when the status alone decides.")
    headers: dict[str, str] = Field(default_factory=dict, description=(
        "Extra request headers (e.g. an API version)."))
    present: list[Match] = Field(min_length=1, description=(
        "Answers that prove the account exists (at least one)."))
    absent: list[AbsentRule] = Field(default_factory=list, description=(
        "Answers that prove the account is gone, with the reason."))
    error: list[ErrorRule] = Field(default_factory=list, description=(
        "Answers that prove nothing (checked first), with the error kind."))
    known_present: list[str] = Field(default_factory=list, description=(
        "Handles known to exist: self-check examples for the rules."))
    known_absent: list[str] = Field(default_factory=list, description=(
        "Handles known not to exist: self-check examples for the rules."))

    @field_validator("url")
    @classmethod
    def _url_has_handle(cls, value: str) -> str:
        check_template(value, ("base_url", "handle", "id"))  # what probes/http.py fills in
        if "{handle}" not in value and "{id}" not in value:
            raise ValueError("url must contain {handle} or {id}, e.g. '{base_url}/{handle}'")
        return value
