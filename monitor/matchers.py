"""Alertmanager's label matcher model, for silences and maintenance windows.

Semantics follow Alertmanager (pkg/labels/matcher.go, parse.go, silence/silence.go):

* a matcher tests one label; a label the subject lacks reads as ``""`` (so
  ``team=""`` matches an account with no team, and ``team!="x"`` matches it too);
* a regex is fully anchored, ``^(?:re)$``: ``platform=~"x"`` does not match ``xbox``;
* the text form is amtool's: ``name=value``, ``name!=value``, ``name=~re``, ``name!~re``, the
  value optionally double-quoted, with OpenMetrics escapes ``\\"``, ``\\n``, ``\\\\`` (a
  backslash before anything else is literal, as in Alertmanager);
* a set of matchers is only a valid silence when at least one of them does not match the
  empty string, or it would silence every subject that lacks the label: everything.

Regexes run on Python's :mod:`re` (Alertmanager uses Go's RE2 syntax); constructs RE2 does
not have (backreferences, lookaround, atomic groups, possessive repeats, conditionals) are
refused, so a matcher valid here means the same in Alertmanager.
"""

from __future__ import annotations

import functools
import importlib
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
MAX_NAME_LENGTH = 256
MAX_VALUE_LENGTH = 1024
_MAX_TEXT = 4 * MAX_VALUE_LENGTH  # escapes and quotes at most double a value, plus spaces

# The matcher grammar of Alertmanager's parse.go (names without ':', which our labels never
# have); `\Z`, not `$`: Python's `$` also matches before a final newline.
_MATCHER = re.compile(r"[ \t\n\f\r]*([^=!~ \t\n\f\r]*)[ \t\n\f\r]*(=~|=|!=|!~)"
                      r"[ \t\n\f\r]*(.*?)[ \t\n\f\r]*\Z", re.DOTALL)
_OPERATORS = {"=": (False, True), "!=": (False, False), "=~": (True, True),
              "!~": (True, False)}
_FIX = 'write name=value, name!=value, name=~regex or name!~regex, e.g. platform="x"'
# sre opcodes of constructs RE2 (Go's regexp, Alertmanager's engine) does not support.
_NOT_IN_RE2 = {
    "GROUPREF": "a backreference", "GROUPREF_EXISTS": "a conditional group",
    "ASSERT": "a lookahead/lookbehind", "ASSERT_NOT": "a negative lookahead/lookbehind",
    "ATOMIC_GROUP": "an atomic group", "POSSESSIVE_REPEAT": "a possessive repeat",
    "POSSESSIVE_REPEAT_ONE": "a possessive repeat",
}


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label test: ``name`` (=|!=|=~|!~) ``value``. Construction validates it."""

    name: str
    value: str
    is_regex: bool = False
    is_equal: bool = True

    def __post_init__(self) -> None:
        _check_name(self.name)
        _check_value(self.value)
        if self.is_regex:
            _compiled(self.value)

    @property
    def operator(self) -> str:
        """``=``, ``!=``, ``=~`` or ``!~``."""
        if self.is_regex:
            return "=~" if self.is_equal else "!~"
        return "=" if self.is_equal else "!="

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfies this matcher (a missing label reads as ``""``)."""
        return self.matches_value(labels.get(self.name, ""))

    def matches_value(self, value: str) -> bool:
        """Whether the label value ``value`` satisfies this matcher."""
        hit = (_compiled(self.value).fullmatch(value) is not None if self.is_regex
               else value == self.value)
        return hit == self.is_equal

    def to_json(self) -> dict[str, Any]:
        """Alertmanager API v2 shape: ``{"name", "value", "isRegex", "isEqual"}``."""
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex,
                "isEqual": self.is_equal}

    @classmethod
    def from_json(cls, obj: object) -> Matcher:
        """The matcher of an API v2 object; ``isRegex`` defaults false, ``isEqual`` true."""
        if not isinstance(obj, Mapping):
            raise ValueError('a matcher must be an object {"name", "value", "isRegex", '
                             '"isEqual"}')
        name, value = obj.get("name"), obj.get("value")
        is_regex, is_equal = obj.get("isRegex", False), obj.get("isEqual", True)
        if not isinstance(name, str) or not isinstance(value, str):
            raise ValueError('a matcher needs "name" and "value" strings')
        if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
            raise ValueError(f'matcher {name!r}: "isRegex" and "isEqual" must be true or '
                             "false")
        return cls(name, value, is_regex, is_equal)

    def __str__(self) -> str:
        """amtool syntax, always quoted: ``platform="x"``, ``team=~"a|b"``."""
        escaped = self.value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        return f'{self.name}{self.operator}"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """One matcher in amtool syntax (Alertmanager's ParseMatcher); ValueError says why."""
    if not isinstance(text, str):
        raise ValueError(f"a matcher must be text such as platform=\"x\", not "
                         f"{type(text).__name__}")
    if len(text) > _MAX_TEXT:
        raise ValueError(f"bad matcher {_shown(text)}: longer than {_MAX_TEXT} characters")
    found = _MATCHER.fullmatch(text)
    if found is None:
        raise ValueError(f"bad matcher {_shown(text)}: {_FIX}")
    name, operator, raw = found.groups()
    if not LABEL_NAME.fullmatch(name):
        raise ValueError(f"bad matcher {_shown(text)}: label name {name!r} must match "
                         f"[a-zA-Z_][a-zA-Z0-9_]*; {_FIX}")
    is_regex, is_equal = _OPERATORS[operator]
    try:
        return Matcher(name, _unquote(raw, text), is_regex, is_equal)
    except ValueError as exc:
        if str(exc).startswith("bad matcher"):
            raise
        raise ValueError(f"bad matcher {_shown(text)}: {exc}") from None


def _unquote(raw: str, text: str) -> str:
    """The value of a matcher: an opening ``"`` needs its closing one; escapes as parse.go."""
    quoted = raw.startswith('"')
    body = raw[1:] if quoted else raw
    out: list[str] = []
    escaped = closed = False
    for i, char in enumerate(body):
        if escaped:
            escaped = False
            out.append("\n" if char == "n" else char if char in '"\\' else "\\" + char)
        elif char == "\\" and i < len(body) - 1:
            escaped = True
        elif char == '"':
            if not quoted or i < len(body) - 1:
                raise ValueError(f"bad matcher {_shown(text)}: the value contains an "
                                 'unescaped double quote; write \\" inside a quoted value')
            closed = True
        else:
            out.append(char)
    if quoted and not closed:
        raise ValueError(f"bad matcher {_shown(text)}: the value's opening double quote is "
                         'never closed; end it with "')
    return "".join(out)


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """Whether every matcher matches ``labels`` (no matchers: true, like Alertmanager)."""
    return all(m.matches(labels) for m in matchers)


def validate_matchers(matchers: Iterable[Matcher]) -> None:
    """ValueError unless the matchers can form a silence (silence.go's validateSilence).

    At least one matcher, and at least one must not match the empty string: a silence of
    only ``team=~".*"`` or ``team!="x"`` would cover every account, even one without labels.
    Each matcher was validated when it was built (name, length, regex).
    """
    listed = list(matchers)
    if not listed:
        raise ValueError('at least one matcher is required, e.g. platform="x"')
    if all(m.matches_value("") for m in listed):
        shown = ", ".join(str(m) for m in listed)
        raise ValueError(f"at least one matcher must not match the empty string ({shown} "
                         'would match everything): add one such as platform="x"')


def subject_labels(platform: str, account: str, team: str | None, protected: bool,
                   labels: Mapping[str, str]) -> dict[str, str]:
    """The label set a silence or window matches for one account.

    The account's own ``labels`` first, then the built-ins, which win: a label named
    ``platform`` in the watchlist cannot make a silence of another platform apply.
    """
    subject = dict(labels)
    subject.update(platform=platform, account=account, team=team or "",
                   protected="true" if protected else "false")
    return subject


# --------------------------------------------------------------------------- validation


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 80 else repr(text[:77]) + "..."


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not LABEL_NAME.fullmatch(name):
        raise ValueError(f"label name {_shown(str(name))} must match [a-zA-Z_][a-zA-Z0-9_]*")
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(f"label name {_shown(name)} is longer than {MAX_NAME_LENGTH} "
                         "characters")


def _check_value(value: object) -> None:
    if not isinstance(value, str):
        raise ValueError(f"a matcher value must be a string, not {type(value).__name__}")
    if len(value) > MAX_VALUE_LENGTH:
        raise ValueError(f"matcher value {_shown(value)} is longer than {MAX_VALUE_LENGTH} "
                         "characters")
    if any("\ud800" <= c <= "\udfff" for c in value):
        raise ValueError(f"matcher value {_shown(value)} is not valid UTF-8 text")


@functools.lru_cache(maxsize=1024)
def _compiled(pattern: str) -> re.Pattern[str]:
    """The regex of a matcher value, used with fullmatch: Go's ``^(?:re)$``.

    ASCII classes: Go's ``\\d``, ``\\w``, ``\\s`` are ASCII only. A warning (a POSIX
    ``[[:alpha:]]`` that Python reads differently) is an error too.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            # compiled alone, as silence.go validates it: wrapped, "a)|(b" would pass
            compiled = re.compile(pattern, re.ASCII)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {_shown(pattern)}: {exc}") from None
    except (FutureWarning, DeprecationWarning) as exc:
        raise ValueError(f"invalid regular expression {_shown(pattern)}: {exc} (POSIX "
                         "classes such as [[:alpha:]] are not supported: write [a-zA-Z]; "
                         "escape a literal [ as \\[)") from None
    unsupported = _re2_unsupported(pattern)
    if unsupported:
        raise ValueError(f"invalid regular expression {_shown(pattern)}: {unsupported} is "
                         "not supported (Alertmanager's RE2 syntax has none)")
    return compiled


def _re2_unsupported(pattern: str) -> str | None:
    """The first construct of ``pattern`` that RE2 lacks, by name, or None."""
    try:
        parser: Any = importlib.import_module("re._parser")
    except ImportError:  # pragma: no cover - a future Python without the module
        return None
    return _first_unsupported(parser.parse(pattern))


def _first_unsupported(node: Any) -> str | None:
    """Walk an sre parse tree (SubPatterns, lists, tuples of opcode and argument)."""
    data = getattr(node, "data", None)
    items = data if data is not None else node if isinstance(node, list | tuple) else ()
    for item in items:
        name = getattr(item, "name", None)
        if isinstance(name, str) and name in _NOT_IN_RE2:
            return _NOT_IN_RE2[name]
        if not isinstance(item, int | str | bytes):
            found = _first_unsupported(item)
            if found:
                return found
    return None
