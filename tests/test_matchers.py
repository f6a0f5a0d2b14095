"""monitor.matchers: Alertmanager's matcher semantics (pkg/labels/matcher.go, parse.go)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.matchers import (
    MAX_VALUE_LENGTH,
    Matcher,
    matches_all,
    parse_matcher,
    subject_labels,
    validate_matchers,
)

# text -> (name, value, is_regex, is_equal), as Alertmanager's ParseMatcher reads it
PARSED = [
    ('platform="x"', ("platform", "x", False, True)),
    ("platform=x", ("platform", "x", False, True)),
    ("team!=sre", ("team", "sre", False, False)),
    ('team=~"a|b"', ("team", "a|b", True, True)),
    ("team!~a.*", ("team", "a.*", True, False)),
    ("  team  =   core  ", ("team", "core", False, True)),  # whitespace around tokens
    ('team=" core "', ("team", " core ", False, True)),  # kept inside quotes
    ("team=", ("team", "", False, True)),
    ('team=""', ("team", "", False, True)),
    ('a="x\\"y"', ("a", 'x"y', False, True)),
    ('a="x\\ny"', ("a", "x\ny", False, True)),
    ('a="x\\\\y"', ("a", "x\\y", False, True)),
    ('a="x\\qy"', ("a", "x\\qy", False, True)),  # a spurious escape is a literal backslash
    ("a=x\\", ("a", "x\\", False, True)),  # a final backslash is literal
    ("a==b", ("a", "=b", False, True)),
    ("a=~=b", ("a", "=b", True, True)),  # '=~' is tried before '='
    ('a=~"\\\\d+"', ("a", "\\d+", True, True)),
    ("_x9=1", ("_x9", "1", False, True)),
    ('a="a,b"', ("a", "a,b", False, True)),
]


@pytest.mark.parametrize(("text", "expected"), PARSED)
def test_parse_reads_amtool_syntax(text: str, expected: tuple[str, str, bool, bool]) -> None:
    assert parse_matcher(text) == Matcher(*expected)


BAD = [
    ("", "bad matcher"),
    ("platform", "bad matcher"),
    ("=x", "label name ''"),
    ("9a=x", "label name '9a'"),
    ("a:b=x", "label name 'a:b'"),  # Prometheus allows ':', our labels never have it
    ("a-b=x", "label name 'a-b'"),
    ("foo bar=x", "bad matcher"),
    ('a="x', "never closed"),
    ('a=x"y', "unescaped double quote"),
    ('a="x"y"', "unescaped double quote"),
    ('a=x"', "unescaped double quote"),
    ("a=~(", "invalid regular expression '('"),
    ("a=~a)|(b", "unbalanced parenthesis"),  # must not close the wrapping (?:...)
    ("a=~(?=x)y", "lookahead"),
    ("a!~(a)\\1", "backreference"),
    ("a=~a++", "possessive"),
    ("a=~(?>a)", "atomic group"),
    ("a=~(a)?(?(1)b|c)", "conditional"),
    ("a=~[[:alpha:]]", "POSIX classes"),
    ("a=" + "x" * (MAX_VALUE_LENGTH + 1), "longer than 1024"),
    ("a=" + "x" * 5000, "longer than 4096"),
    ("a=\ud800", "not valid UTF-8"),
]


@pytest.mark.parametrize(("text", "reason"), BAD)
def test_bad_matcher_is_a_clear_value_error(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=None) as caught:
        parse_matcher(text)
    assert reason in str(caught.value)


def test_non_text_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="must be text"):
        parse_matcher(3)  # type: ignore[arg-type]


MATCHES = [
    # matcher, labels, expected
    ('platform="x"', {"platform": "x"}, True),
    ('platform="x"', {"platform": "X"}, False),
    ('platform!="x"', {"platform": "y"}, True),
    ('platform!="x"', {}, True),  # missing reads as ""
    ('team=""', {}, True),
    ('team=""', {"team": "sre"}, False),
    ('team!=""', {}, False),
    ('platform=~"x"', {"platform": "xbox"}, False),  # fully anchored
    ('platform=~"x"', {"platform": "box"}, False),
    ('platform=~"x|y"', {"platform": "y"}, True),
    ('platform=~"x|y"', {"platform": "xy"}, False),  # the alternation is grouped
    ('platform=~"x$"', {"platform": "x\n"}, False),  # Go's $: end of text only
    ('platform=~".*"', {}, True),
    ('platform!~"x.*"', {"platform": "xbox"}, False),
    ('platform!~"x.*"', {"platform": "bluesky"}, True),
    ('platform!~"x.*"', {}, True),
    ('n=~"\\\\d+"', {"n": "42"}, True),
    ('n=~"\\\\d+"', {"n": "\u0664\u0662"}, False),  # Go's \d is ASCII
    ('t=~"(?i)SRE"', {"t": "sre"}, True),
    ('t=~"."', {"t": "\n"}, False),  # '.' does not match a newline without (?s)
]


@pytest.mark.parametrize(("text", "labels", "expected"), MATCHES)
def test_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


def test_matches_all_needs_every_matcher() -> None:
    ms = [parse_matcher('platform="x"'), parse_matcher('team=~"core|sre"')]
    assert matches_all(ms, {"platform": "x", "team": "sre"})
    assert not matches_all(ms, {"platform": "x", "team": "web"})
    assert not matches_all(ms, {"team": "sre"})
    assert matches_all([], {"platform": "x"})


@pytest.mark.parametrize(("text", "shown"), [
    ('platform="x"', 'platform="x"'),
    ("team=~a|b", 'team=~"a|b"'),
    ("team!=x", 'team!="x"'),
    ("team!~x", 'team!~"x"'),
    ('a="q\\"b\\\\c\\nd"', 'a="q\\"b\\\\c\\nd"'),
])
def test_str_is_amtool_syntax_and_reparses(text: str, shown: str) -> None:
    matcher = parse_matcher(text)
    assert str(matcher) == shown
    assert parse_matcher(str(matcher)) == matcher


@pytest.mark.parametrize(("is_regex", "is_equal"), [
    (False, True), (False, False), (True, True), (True, False)])
def test_json_round_trip(is_regex: bool, is_equal: bool) -> None:
    matcher = Matcher("team", "a|b", is_regex, is_equal)
    wire = json.loads(json.dumps(matcher.to_json()))
    assert wire == {"name": "team", "value": "a|b", "isRegex": is_regex, "isEqual": is_equal}
    assert Matcher.from_json(wire) == matcher


def test_from_json_defaults_as_alertmanager() -> None:
    assert Matcher.from_json({"name": "a", "value": "b"}) == Matcher("a", "b", False, True)


@pytest.mark.parametrize(("obj", "reason"), [
    ([], "must be an object"),
    ({"value": "x"}, '"name" and "value"'),
    ({"name": "a", "value": 3}, '"name" and "value"'),
    ({"name": "a", "value": "x", "isRegex": "yes"}, "true or false"),
    ({"name": "a", "value": "x", "isEqual": 1}, "true or false"),
    ({"name": "a b", "value": "x"}, "label name 'a b'"),
    ({"name": "a", "value": "(", "isRegex": True}, "invalid regular expression"),
])
def test_from_json_refuses_bad_objects(obj: object, reason: str) -> None:
    with pytest.raises(ValueError) as caught:
        Matcher.from_json(obj)
    assert reason in str(caught.value)


def test_regex_matcher_is_validated_at_construction() -> None:
    with pytest.raises(ValueError, match="invalid regular expression"):
        Matcher("a", "[", is_regex=True)
    assert Matcher("a", "[", is_regex=False).matches({"a": "["})


@pytest.mark.parametrize("texts", [
    ['team=~".*"'],
    ['team!="x"'],
    ['team=""'],
    ['team!~"x"', 'platform=~"x|"'],
])
def test_validate_refuses_sets_that_match_everything(texts: list[str]) -> None:
    with pytest.raises(ValueError, match="must not match the empty string"):
        validate_matchers([parse_matcher(t) for t in texts])


@pytest.mark.parametrize("texts", [
    ['platform="x"'],
    ['team=~".+"'],
    ['team!~".*"'],  # matches only... nothing, but it does not match ""
    ['team=~".*"', 'platform="x"'],
])
def test_validate_accepts_sets_with_a_non_empty_matcher(texts: list[str]) -> None:
    validate_matchers([parse_matcher(t) for t in texts])


def test_validate_needs_a_matcher() -> None:
    with pytest.raises(ValueError, match="at least one matcher is required"):
        validate_matchers([])


def test_subject_labels_builtins_win() -> None:
    labels = subject_labels("x", "potus", None, True,
                            {"platform": "fake", "region": "us", "protected": "false"})
    assert labels == {"platform": "x", "account": "potus", "team": "", "protected": "true",
                      "region": "us"}
    assert subject_labels("github", "a", "sre", False, {})["protected"] == "false"
    assert subject_labels("github", "a", "sre", False, {})["team"] == "sre"


names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True)
values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(names, values, st.booleans())
def test_any_literal_matcher_round_trips_through_str(name: str, value: str,
                                                     is_equal: bool) -> None:
    matcher = Matcher(name, value, False, is_equal)
    assert parse_matcher(str(matcher)) == matcher


@given(st.text(max_size=60))
def test_parse_never_crashes_and_its_str_reparses(text: str) -> None:
    try:
        matcher = parse_matcher(text)
    except ValueError:
        return
    assert parse_matcher(str(matcher)) == matcher


amtool_like = st.builds(lambda name, op, value: f"{name}{op}{value}", names,
                        st.sampled_from(["=", "!=", "=~", "!~"]),
                        st.text(alphabet='ab"\\ \n,.*', max_size=12))


@given(amtool_like)
def test_quotes_and_escapes_reparse_to_the_same_matcher(text: str) -> None:
    try:
        matcher = parse_matcher(text)
    except ValueError as exc:
        assert str(exc).startswith("bad matcher")
        return
    assert parse_matcher(str(matcher)) == matcher
