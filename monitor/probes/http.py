"""Declarative HTTP rules for sites without a usable API (the ``http`` probe).

Status code, body markers, the final URL after same-host redirects and JSON fields decide,
as in Maigret's ``data.json`` (a redirect to another host is ``error(redirect)``, never
followed: see :func:`~monitor.probes.base.fetch`). Login walls and captchas must be
``error`` rules (Instagram and Threads put a login wall in front of absence), so error rules
are checked first; an answer no rule recognises is ``error(unexpected)``, never ``absent``.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import aiohttp

from monitor.model import ErrorKind, Observation
from monitor.probes.base import (
    Answer,
    HttpProbe,
    NotJSON,
    ProbeError,
    Target,
    classified,
    quote_part,
    status_error,
)
from monitor.probes.evidence import short

if TYPE_CHECKING:  # for types only: monitor.config imports the probe registry
    from monitor.config import PlatformConfig
    from monitor.rules import HttpRules, Match

_MARKER_CHARS = 40  # markers are quoted in evidence, kept short
_HTML_ACCEPT = "text/html,application/xhtml+xml,application/json;q=0.9,*/*;q=0.8"
_UNREAD = object()
_NOT_JSON = object()
_MISSING = object()
_STATUSES_REMEMBERED = 1000  # HTTP statuses are three digits: the memo cannot grow past this


class RulesProbe(HttpProbe):
    """Asks ``rules.url`` and lets :func:`classify_answer` read the answer."""

    name = "http"

    def __init__(self, platform: PlatformConfig, session: aiohttp.ClientSession,
                 *, timeout: float, max_body_bytes: int) -> None:
        super().__init__(platform, session, timeout=timeout, max_body_bytes=max_body_bytes)
        if platform.rules is None:
            raise ValueError("the http probe needs rules")
        self.rules: HttpRules = platform.rules
        try:  # a bad placeholder should fail at start-up, not on every check
            self.rules.url.format(base_url="", handle="", id="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"rules.url {self.rules.url!r}: bad placeholder {exc}") from None
        # The same for every target: built once, copied per request (aiohttp may keep it).
        self._headers = self.base_headers()
        self._headers["Accept"] = _HTML_ACCEPT  # most such sites serve pages, not JSON
        self._headers.update(self.rules.headers)
        # Evidence text of each rule, less the status: built once, not on every answer.
        rules = (*self.rules.error, *self.rules.absent, *self.rules.present)
        self._conditions = {id(m): _conditions(m) for m in rules}
        self._uses_id = "{id}" in self.rules.url
        # When every rule tests the status alone (or nothing), the status alone decides:
        # each status's verdict is worked out once (see stamped()), not on every answer.
        self._by_status: dict[int, Observation] | None = (
            {} if all(_status_only(m) for m in rules) else None)

    def request(self, target: Target) -> tuple[str, str, dict[str, str]]:
        if self._uses_id and target.account_id is None:
            raise ProbeError(ErrorKind.UNEXPECTED, "rules.url needs {id}; the account has none")
        url = self.rules.url.format(
            base_url=self.platform.base_url,
            handle=quote_part(target.handle, "@"),
            id=quote_part(target.account_id or "") if self._uses_id else "",
        )
        return self.rules.method, url, self._headers.copy()

    def classify(self, answer: Answer, target: Target, at: float) -> Observation:
        return classify_answer(self.rules, answer, at, self._conditions)

    def stamped(self, answer: Answer, target: Target, at: float,
                started: float) -> Observation:
        """``classify(...).timed(...)`` in one allocation: with status-only rules, the
        verdict for this status, classified the first time it is seen."""
        memo = self._by_status
        if memo is None:
            return super().stamped(answer, target, at, started)
        verdict = memo.get(answer.status)
        if verdict is None:
            verdict = self.classify(answer, target, at)
            if len(memo) < _STATUSES_REMEMBERED:
                memo[answer.status] = verdict
        return Observation(verdict.result, at, reason=verdict.reason, error=verdict.error,
                           evidence=verdict.evidence, account_id=verdict.account_id,
                           handle=verdict.handle, latency=time.monotonic() - started,
                           rate_limit=verdict.rate_limit, moved_to=verdict.moved_to)


def _status_only(match: Match) -> bool:
    """Whether nothing but the status decides if ``match`` holds."""
    return not (match.body_contains or match.body_not_contains or match.json_fields
                or match.json_has or match.final_url_contains is not None)


def classify_answer(rules: HttpRules, answer: Answer, at: float,
                    conditions: dict[int, str] | None = None) -> Observation:
    """Pure: error rules, then 429/5xx, then absent rules, then present rules, else unexpected.

    ``conditions`` optionally maps ``id(match)`` to its precomputed :func:`_conditions` text.
    A body a JSON rule cannot read safely (nested past :data:`MAX_JSON_DEPTH`) is
    ``error(parse)``: it is hostile, not merely "not JSON".
    """
    return classified(answer, at,
                      lambda answer, at: _first_rule(rules, _Reading(answer, conditions or {}),
                                                     at))


def _first_rule(rules: HttpRules, reading: _Reading, at: float) -> Observation:
    answer = reading.answer
    for i, error_rule in enumerate(rules.error, 1):
        if reading.matches(error_rule):
            return Observation.failed(at, error_rule.kind,
                                      f"error rule #{i}: {reading.describe(error_rule)}")
    # 429, 5xx (and 401/407) never mean absence, whatever an absent rule says.
    error = status_error(answer)
    if error is not None:
        return Observation.failed(at, error.kind, error.evidence)
    for i, absent_rule in enumerate(rules.absent, 1):
        if reading.matches(absent_rule):
            return Observation.absent(at, absent_rule.reason,
                                      f"absent rule #{i}: {reading.describe(absent_rule)}")
    for i, present_rule in enumerate(rules.present, 1):
        if reading.matches(present_rule):
            return Observation.present(at, f"present rule #{i}: {reading.describe(present_rule)}")
    return Observation.failed(at, ErrorKind.UNEXPECTED, f"HTTP {answer.status}: no rule matched")


class _Reading:
    """One answer, with its text and JSON decoded at most once for all rules."""

    def __init__(self, answer: Answer, conditions: dict[int, str]) -> None:
        self.answer = answer
        self.conditions = conditions
        self._text: str | None = None
        self._json: Any = _UNREAD

    @property
    def text(self) -> str:
        """The decoded body; decoded only if a rule looks at markers."""
        if self._text is None:
            self._text = self.answer.text()
        return self._text

    def json(self) -> Any:
        """The parsed body, or ``_NOT_JSON``; raises :class:`ProbeError` for hostile JSON.

        A site may serve HTML for one answer and JSON for another, so "not JSON" only means
        a JSON rule does not apply; a 100 000-deep array is an attack on the parser.
        """
        if self._json is _UNREAD:
            try:
                self._json = self.answer.json()
            except NotJSON:  # a page, not UTF-8, cut short: other errors propagate
                self._json = _NOT_JSON
        return self._json

    def matches(self, match: Match) -> bool:
        if match.status is not None and self.answer.status not in match.status:
            return False
        # Each test only when the rule has it: most rules are a status alone, and an empty
        # all()/any() still builds a generator per answer.
        if match.body_contains and not all(marker in self.text
                                           for marker in match.body_contains):
            return False
        if match.body_not_contains and any(marker in self.text
                                           for marker in match.body_not_contains):
            return False
        if match.final_url_contains is not None and match.final_url_contains not in self.answer.url:
            return False
        if match.json_fields or match.json_has:
            doc = self.json()
            if doc is _NOT_JSON:
                return False  # JSON tests on a non-JSON body: the rule does not apply
            if not all(_field_is(doc, path, want) for path, want in match.json_fields.items()):
                return False
            if any(_lookup(doc, path) in (None, _MISSING) for path in match.json_has):
                return False
        return True

    def describe(self, match: Match) -> str:
        """Short, secret-free evidence: the conditions that held (never the URL itself)."""
        conditions = self.conditions.get(id(match))
        if conditions is None:
            conditions = _conditions(match)
        status = f"HTTP {self.answer.status}"
        if match.status is None:
            return conditions or f"any answer ({status})"
        return f"{status}, {conditions}" if conditions else status


def _conditions(match: Match) -> str:
    """The non-status conditions of a rule, as evidence text."""
    parts = [f"marker {_quoted(m)}" for m in match.body_contains]
    parts += [f"no marker {_quoted(m)}" for m in match.body_not_contains]
    if match.final_url_contains is not None:
        parts.append(f"final URL has {_quoted(match.final_url_contains)}")
    parts += [f"{path}={json.dumps(value)}" for path, value in match.json_fields.items()]
    parts += [f"has {path}" for path in match.json_has]
    return ", ".join(parts)


def _lookup(doc: Any, path: str) -> Any:
    """The value at a dotted path (``items.0.id``), or ``_MISSING``."""
    value = doc
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and _is_index(part, value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _field_is(doc: Any, path: str, expected: Any) -> bool:
    """Dotted path equals ``expected``; ``None`` means missing or null."""
    value = _lookup(doc, path)
    if expected is None:
        return value is None or value is _MISSING
    if value is _MISSING:
        return False
    # JSON true is not 1: compare booleans only with booleans.
    if isinstance(value, bool) or isinstance(expected, bool):
        return type(value) is type(expected) and value == expected
    return bool(value == expected)


def _is_index(part: str, items: list[Any]) -> bool:
    return part.isascii() and part.isdigit() and int(part) < len(items)


def _quoted(text: str) -> str:
    return repr(short(text, _MARKER_CHARS))
