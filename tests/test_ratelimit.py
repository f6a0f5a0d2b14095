"""Rate-limit header parsers: each platform's names and units, and garbage never raises."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from monitor.model import Observation, RateLimit
from monitor.probes.base import Answer, classified
from monitor.probes.ratelimit import (
    bluesky_rate_limit,
    github_rate_limit,
    mastodon_rate_limit,
    reddit_rate_limit,
    retry_after,
    twitch_rate_limit,
    x_rate_limit,
)

NOW = 1_700_000_000.0
Parser = Callable[[dict[str, str], float], RateLimit | None]
PARSERS: list[Parser] = [x_rate_limit, github_rate_limit, mastodon_rate_limit,
                         reddit_rate_limit, bluesky_rate_limit, twitch_rate_limit]


def test_x_reset_is_epoch_seconds() -> None:
    headers = {"x-rate-limit-limit": "300", "x-rate-limit-remaining": "299",
               "x-rate-limit-reset": "1700000900"}
    assert x_rate_limit(headers, NOW) == RateLimit(299, 300, 1_700_000_900.0, None)


def test_github_reads_epoch_reset_and_retry_after() -> None:
    headers = {"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0",
               "X-RateLimit-Reset": "1700003600", "Retry-After": "60"}
    assert github_rate_limit(headers, NOW) == RateLimit(0, 60, 1_700_003_600.0, 60.0)


def test_mastodon_reset_is_iso8601_with_microseconds() -> None:
    headers = {"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "12",
               "X-RateLimit-Reset": "2024-05-01T12:05:00.000000Z"}
    assert mastodon_rate_limit(headers, NOW) == RateLimit(12, 300, 1_714_565_100.0, None)


def test_mastodon_reset_without_zone_is_utc() -> None:
    headers = {"X-RateLimit-Reset": "2024-05-01T12:05:00"}
    found = mastodon_rate_limit(headers, NOW)
    assert found is not None and found.reset_at == 1_714_565_100.0


def test_reddit_reset_is_seconds_until_and_remaining_may_be_a_float() -> None:
    headers = {"X-Ratelimit-Used": "2", "X-Ratelimit-Remaining": "598.0",
               "X-Ratelimit-Reset": "412"}
    assert reddit_rate_limit(headers, NOW) == RateLimit(598, 600, NOW + 412, None)


def test_reddit_without_used_has_no_limit() -> None:
    headers = {"x-ratelimit-remaining": "5.0", "x-ratelimit-reset": "10"}
    assert reddit_rate_limit(headers, NOW) == RateLimit(5, None, NOW + 10, None)


@pytest.mark.parametrize("parse", [bluesky_rate_limit, twitch_rate_limit])
def test_ietf_draft_names_are_epoch_seconds(parse: Parser) -> None:
    headers = {"RateLimit-Limit": "3000", "RateLimit-Remaining": "2999",
               "RateLimit-Reset": "1700000300", "RateLimit-Policy": "3000;w=300"}
    assert parse(headers, NOW) == RateLimit(2999, 3000, 1_700_000_300.0, None)


def test_aiohttp_headers_are_case_insensitive() -> None:
    headers = CIMultiDictProxy(CIMultiDict({"X-Rate-Limit-Remaining": "7"}))
    assert x_rate_limit(headers, NOW) == RateLimit(remaining=7)


@pytest.mark.parametrize("parse", PARSERS)
def test_no_headers_is_none(parse: Parser) -> None:
    assert parse({"Content-Type": "application/json"}, NOW) is None


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize("garbage", ["", "abc", "-5", "nan", "inf", "1e400", "  ", "0x10",
                                     "2024-13-45T99:99:99Z", "\x00"])
def test_garbage_values_are_none_fields(parse: Parser, garbage: str) -> None:
    names = ["x-rate-limit-", "x-ratelimit-", "ratelimit-"]
    headers = {f"{p}{f}": garbage for p in names for f in ("limit", "remaining", "reset")}
    headers["retry-after"] = garbage
    found = parse(headers, NOW)
    assert found == RateLimit(None, None, None, None)


def test_epoch_in_milliseconds_is_rejected_not_trusted() -> None:
    found = x_rate_limit({"x-rate-limit-reset": "1700000900000"}, NOW)
    assert found == RateLimit(reset_at=None)


@pytest.mark.parametrize(("value", "seconds"), [
    ("120", 120.0),
    ("1.5", 1.5),
    ("Tue, 14 Nov 2023 22:15:20 GMT", 120.0),  # NOW is 22:13:20
    ("Mon, 01 Jan 2001 00:00:00 GMT", 0.0),  # in the past: no wait
    ("soon", None),
    (None, None),
])
def test_retry_after_takes_seconds_or_an_http_date(value: str | None,
                                                   seconds: float | None) -> None:
    assert retry_after(value, NOW) == seconds


@given(st.dictionaries(st.sampled_from(["x-rate-limit-reset", "X-RateLimit-Reset",
                                        "x-ratelimit-remaining", "RateLimit-Limit",
                                        "retry-after", "x-ratelimit-used"]),
                       st.text(max_size=40)))
def test_parsers_never_raise(headers: dict[str, str]) -> None:
    for parse in PARSERS:
        found = parse(headers, NOW)
        assert found is None or isinstance(found, RateLimit)


def test_the_classify_wrapper_attaches_the_budget_only_when_there_is_one() -> None:
    obs = Observation.present(NOW, "HTTP 200")
    bare = Answer(200, {}, b"{}")
    assert classified(bare, NOW, lambda answer, at: obs, x_rate_limit) is obs
    budget = Answer(200, {"x-rate-limit-limit": "2", "x-rate-limit-remaining": "1"}, b"{}")
    found = classified(budget, NOW, lambda answer, at: obs, x_rate_limit)
    assert found.rate_limit == RateLimit(1, 2)
