"""The declarative http probe: pure rule evaluation, and against the fake site over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from monitor.config import HttpRules, PlatformConfig
from monitor.fakes.site import FakeSite
from monitor.model import AbsentReason, ErrorKind, Observation, Result
from monitor.probes.base import Answer, Target
from monitor.probes.http import RulesProbe, classify_answer

AT = 1_700_000_000.0

# Instagram-like: a login wall (redirect) or a captcha must never read as absence.
SITE_RULES: dict[str, Any] = {
    "url": "{base_url}/{handle}",
    "error": [
        {"final_url_contains": "/accounts/login", "kind": "blocked"},
        {"body_contains": "verify you are a human", "kind": "blocked"},
    ],
    "absent": [{"status": 404, "body_contains": "isn't available", "reason": "not_found"}],
    "present": [{"status": 200, "body_contains": "profile-name"}],
}


def rules(data: dict[str, Any]) -> HttpRules:
    return HttpRules.model_validate(data)


def classify(data: dict[str, Any], status: int, body: str | bytes = b"",
             url: str = "https://example.test/x") -> Observation:
    raw = body.encode() if isinstance(body, str) else body
    return classify_answer(rules(data), Answer(status, {}, raw, url), AT)


# --------------------------------------------------------------------------- pure rules

TELEGRAM: dict[str, Any] = {
    "url": "{base_url}/{handle}",
    "present": [{"status": 200, "body_contains": "tgme_page_title"}],
    # t.me is always 200: a missing user is the bare "Telegram Messenger" page.
    "absent": [{"status": 200, "body_not_contains": "tgme_page_title", "reason": "not_found"}],
}


def test_telegram_page_with_title_marker_is_present() -> None:
    obs = classify(TELEGRAM, 200, '<div class="tgme_page_title">Durov</div>')
    assert (obs.result, obs.evidence, obs.at) == (
        Result.PRESENT, "present rule #1: HTTP 200, marker 'tgme_page_title'", AT)


def test_telegram_bare_page_is_absent() -> None:
    obs = classify(TELEGRAM, 200, "<title>Telegram Messenger</title>")
    assert (obs.result, obs.reason, obs.evidence) == (
        Result.ABSENT, AbsentReason.NOT_FOUND,
        "absent rule #1: HTTP 200, no marker 'tgme_page_title'")


def test_error_rules_are_checked_before_absent_rules() -> None:
    obs = classify(SITE_RULES, 404, "please verify you are a human; isn't available")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.BLOCKED, "error rule #2: marker 'verify you are a human'")


def test_login_wall_by_final_url_is_blocked() -> None:
    obs = classify(SITE_RULES, 200, "<title>Login</title>",
                   url="https://example.test/accounts/login/?next=/x")
    assert (obs.error, obs.evidence) == (
        ErrorKind.BLOCKED, "error rule #1: final URL has '/accounts/login'")


@pytest.mark.parametrize(("status", "kind"), [
    (429, ErrorKind.RATE_LIMITED), (500, ErrorKind.SERVER_ERROR),
    (503, ErrorKind.SERVER_ERROR), (401, ErrorKind.AUTH)])
def test_throttle_and_server_errors_beat_absent_rules(status: int, kind: ErrorKind) -> None:
    data = {**SITE_RULES, "absent": [{"status": [404, status], "reason": "not_found"}]}
    obs = classify(data, status, "isn't available")
    assert (obs.result, obs.error, obs.evidence) == (Result.ERROR, kind, f"HTTP {status}")


def test_an_error_rule_may_claim_a_5xx_first() -> None:
    data = {**SITE_RULES, "error": [{"status": 503, "body_contains": "captcha",
                                     "kind": "blocked"}]}
    obs = classify(data, 503, "<div class=captcha>")
    assert (obs.error, obs.evidence) == (
        ErrorKind.BLOCKED, "error rule #1: HTTP 503, marker 'captcha'")


def test_unmatched_answer_is_unexpected_never_absent() -> None:
    obs = classify(SITE_RULES, 200, "<html>a redesigned page</html>")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.UNEXPECTED, "HTTP 200: no rule matched")


def test_later_rule_number_is_named_in_evidence() -> None:
    data = {**SITE_RULES, "absent": [
        {"status": 404, "body_contains": "never there", "reason": "not_found"},
        {"status": 410, "reason": "deleted"}]}
    obs = classify(data, 410)
    assert (obs.reason, obs.evidence) == (AbsentReason.DELETED, "absent rule #2: HTTP 410")


def test_rule_without_conditions_matches_any_answer() -> None:
    obs = classify({"present": [{}]}, 204)
    assert (obs.result, obs.evidence) == (Result.PRESENT, "present rule #1: any answer (HTTP 204)")


TWITCH: dict[str, Any] = {
    "url": "{base_url}/helix/users?login={handle}",
    "present": [{"status": 200, "json_fields": {"data.0.login": "alice"}}],
    # Helix answers {"data":[]} when the user is gone.
    "absent": [{"status": 200, "json_fields": {"data.0": None}, "reason": "not_found"}],
}


def test_json_list_index_path_matches() -> None:
    obs = classify(TWITCH, 200, '{"data":[{"id":"1","login":"alice"}]}')
    assert (obs.result, obs.evidence) == (
        Result.PRESENT, 'present rule #1: HTTP 200, data.0.login="alice"')


@pytest.mark.parametrize("body", ['{"data":[]}', '{"data":null}', "{}", '{"data":[null]}'])
def test_json_null_means_missing_or_null(body: str) -> None:
    obs = classify(TWITCH, 200, body)
    assert (obs.result, obs.reason) == (Result.ABSENT, AbsentReason.NOT_FOUND)


def test_json_rule_on_non_json_body_does_not_match_or_crash() -> None:
    obs = classify(TWITCH, 200, "<html>not json</html>")
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.UNEXPECTED)


@pytest.mark.parametrize(("body", "evidence"), [
    (b'{"data":[' * 200 + b"]}" * 200, "HTTP 200, JSON nested deeper than 100 levels"),
    (b"[" * 200_000 + b"]" * 200_000, "HTTP 200, JSON nested deeper than 100 levels"),
    (b'{"data":[{"login":"\\ud800alice"}]}', "HTTP 200, JSON has a lone surrogate escape"),
])
def test_hostile_json_under_a_json_rule_is_a_parse_error(body: bytes, evidence: str) -> None:
    obs = classify(TWITCH, 200, body)
    assert (obs.result, obs.error, obs.evidence) == (Result.ERROR, ErrorKind.PARSE, evidence)


def test_body_not_utf8_is_not_json_to_json_rules() -> None:
    obs = classify(TWITCH, 200, b'{"data":[],"note":"\xff\xfe"}')  # else: absent
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.UNEXPECTED)


def test_deep_json_is_never_parsed_by_marker_rules() -> None:
    obs = classify(SITE_RULES, 200, b"[" * 200_000 + b"]" * 200_000)
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.UNEXPECTED)


def test_json_path_through_a_scalar_is_missing() -> None:
    obs = classify(TWITCH, 200, '{"data":"oops"}')
    assert obs.result is Result.ABSENT


def test_json_true_does_not_equal_one() -> None:
    data = {"present": [{"json_fields": {"user.active": True}}]}
    assert classify(data, 200, '{"user":{"active":1}}').error is ErrorKind.UNEXPECTED
    assert classify(data, 200, '{"user":{"active":true}}').result is Result.PRESENT


def test_status_list_and_all_markers_must_hold() -> None:
    data = {"present": [{"status": [200, 203], "body_contains": ["a", "b"]}]}
    assert classify(data, 203, "a b").result is Result.PRESENT
    assert classify(data, 200, "a").error is ErrorKind.UNEXPECTED
    assert classify(data, 201, "a b").error is ErrorKind.UNEXPECTED


def test_long_markers_are_shortened_in_evidence() -> None:
    marker = "x" * 60
    obs = classify({"present": [{"body_contains": marker}]}, 200, marker)
    assert obs.evidence == f"present rule #1: marker '{'x' * 40}…'"


# --------------------------------------------------------------------------- request


def make_probe(base_url: str, session: aiohttp.ClientSession, data: dict[str, Any],
               timeout: float = 2.0) -> RulesProbe:
    config = PlatformConfig.model_validate({"base_url": base_url, "probe": "http", "rules": data})
    return RulesProbe(config, session, timeout=timeout, max_body_bytes=1 << 20)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def test_request_quotes_the_handle_and_uses_rule_headers(
        session: aiohttp.ClientSession) -> None:
    data = {**SITE_RULES, "url": "{base_url}/u/{handle}?id={id}", "method": "HEAD",
            "headers": {"Accept-Language": "en"}}
    probe = make_probe("https://site.test/", session, data)
    method, url, headers = probe.request(Target("a b/../c", "7&x"))
    assert (method, url) == ("HEAD", "https://site.test/u/a%20b%2F..%2Fc?id=7%26x")
    assert headers["Accept-Language"] == "en"
    assert headers["Accept"].startswith("text/html")


async def test_url_needing_an_unknown_id_is_an_error_not_an_exception(
        session: aiohttp.ClientSession) -> None:
    probe = make_probe("https://site.test", session, {**SITE_RULES, "url": "{base_url}/{id}"})
    obs = await probe.check(Target("alice"))
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.UNEXPECTED)


async def test_probe_refuses_a_platform_without_rules_or_with_a_bad_placeholder(
        session: aiohttp.ClientSession) -> None:
    bare = PlatformConfig.model_validate({"base_url": "https://site.test"})
    with pytest.raises(ValueError, match="needs rules"):
        RulesProbe(bare, session, timeout=1.0, max_body_bytes=1024)
    # The config refuses it first where it validates rules.url; the probe checks too.
    with pytest.raises(ValueError, match="placeholder"):
        make_probe("https://site.test", session, {**SITE_RULES, "url": "{base_url}/{handle}/{x}"})


# --------------------------------------------------------------------------- real site


@pytest.fixture
def site() -> FakeSite:
    return FakeSite({"alice": "present", "walled": "login_wall", "robot": "captcha"},
                    default_state="absent")


@pytest.fixture
async def site_url(site: FakeSite) -> AsyncIterator[str]:
    async with site.running() as url:
        yield url


async def probe_site(site_url: str, session: aiohttp.ClientSession, handle: str) -> Observation:
    return await make_probe(site_url, session, SITE_RULES).check(Target(handle))


async def test_site_present_profile(site_url: str, session: aiohttp.ClientSession) -> None:
    obs = await probe_site(site_url, session, "alice")
    assert (obs.result, obs.evidence) == (
        Result.PRESENT, "present rule #1: HTTP 200, marker 'profile-name'")


async def test_site_missing_profile_is_absent(
        site: FakeSite, site_url: str, session: aiohttp.ClientSession) -> None:
    obs = await probe_site(site_url, session, "nobody")
    assert (obs.result, obs.reason, obs.evidence) == (
        Result.ABSENT, AbsentReason.NOT_FOUND,
        "absent rule #1: HTTP 404, marker \"isn't available\"")
    assert site.request_count("nobody") == 1


async def test_site_login_wall_redirect_is_blocked(
        site_url: str, session: aiohttp.ClientSession) -> None:
    obs = await probe_site(site_url, session, "walled")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.BLOCKED, "error rule #1: final URL has '/accounts/login'")


async def test_site_login_wall_on_another_host_is_a_redirect_error(
        site: FakeSite, site_url: str, session: aiohttp.ClientSession) -> None:
    site.set_answer("walled", 302,
                    headers={"Location": "https://login.example.test/accounts/login/?next=x"})
    obs = await probe_site(site_url, session, "walled")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.REDIRECT,
        "HTTP 302 redirect to another host (login.example.test:443)")


async def test_site_redirect_to_another_host_is_not_believed(
        site: FakeSite, site_url: str, session: aiohttp.ClientSession) -> None:
    """The elsewhere server has alice's profile page too; following it would say present."""
    site.set_faults(cross_host_rate=1.0)
    obs = await probe_site(site_url, session, "nobody")
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.REDIRECT)
    assert site.elsewhere_requests == 0


async def test_site_captcha_is_blocked(site_url: str, session: aiohttp.ClientSession) -> None:
    obs = await probe_site(site_url, session, "robot")
    assert (obs.result, obs.error) == (Result.ERROR, ErrorKind.BLOCKED)


async def test_site_unrecognised_page_is_unexpected(
        site: FakeSite, site_url: str, session: aiohttp.ClientSession) -> None:
    site.set_answer("alice", 200, "<html>We changed our layout</html>")
    obs = await probe_site(site_url, session, "alice")
    assert (obs.result, obs.error, obs.evidence) == (
        Result.ERROR, ErrorKind.UNEXPECTED, "HTTP 200: no rule matched")


@pytest.mark.parametrize(("fault", "kind"), [
    ("rate_limit_rate", ErrorKind.RATE_LIMITED), ("server_error_rate", ErrorKind.SERVER_ERROR)])
async def test_site_429_and_503_are_errors_even_for_missing_handles(
        fault: str, kind: ErrorKind, site: FakeSite, site_url: str,
        session: aiohttp.ClientSession) -> None:
    site.set_faults(**{fault: 1.0})
    obs = await probe_site(site_url, session, "nobody")
    assert (obs.result, obs.error) == (Result.ERROR, kind)


async def test_site_scripted_5xx_is_a_server_error(
        site: FakeSite, site_url: str, session: aiohttp.ClientSession) -> None:
    site.set_answer("alice", 502, "isn't available")
    obs = await probe_site(site_url, session, "alice")
    assert (obs.error, obs.evidence) == (ErrorKind.SERVER_ERROR, "HTTP 502")


async def test_site_handle_with_reserved_characters_reaches_its_page(
        site: FakeSite, site_url: str, session: aiohttp.ClientSession) -> None:
    site.set_state("a b?c", "present")
    obs = await probe_site(site_url, session, "a b?c")
    assert obs.result is Result.PRESENT
    assert site.request_count("a b?c") == 1


async def test_site_default_state_answers_handles_never_set(
        session: aiohttp.ClientSession) -> None:
    async with FakeSite().running() as url:
        obs = await probe_site(url, session, "anyone")
    assert obs.result is Result.PRESENT


async def test_site_head_request_decides_on_status_alone(
        site_url: str, session: aiohttp.ClientSession) -> None:
    data = {"url": "{base_url}/{handle}", "method": "HEAD",
            "present": [{"status": 200}], "absent": [{"status": 404, "reason": "not_found"}]}
    probe = make_probe(site_url, session, data)
    present, absent = await probe.check(Target("alice")), await probe.check(Target("nobody"))
    assert (present.result, absent.result) == (Result.PRESENT, Result.ABSENT)


async def test_site_http_control_scripts_an_answer(
        site_url: str, session: aiohttp.ClientSession) -> None:
    async with session.post(f"{site_url}/_control/accounts/alice",
                            json={"status": 404, "body": "isn't available"}) as resp:
        assert (await resp.json()) == {"handle": "alice", "state": "scripted 404"}
    assert (await probe_site(site_url, session, "alice")).result is Result.ABSENT
    async with session.post(f"{site_url}/_control/accounts/alice",
                            json={"state": "captcha"}) as resp:
        assert resp.status == 200
    assert (await probe_site(site_url, session, "alice")).error is ErrorKind.BLOCKED
    async with session.post(f"{site_url}/_control/accounts/alice", json={"state": "gone"}) as bad:
        assert bad.status == 400


def test_json_has_needs_a_non_null_value() -> None:
    data = {"present": [{"status": 200, "json_has": "data.id"}]}
    assert classify(data, 200, '{"data":{"id":"25073877"}}').result is Result.PRESENT
    assert classify(data, 200, '{"data":{"id":null}}').error is ErrorKind.UNEXPECTED
    assert classify(data, 200, '{"errors":[]}').error is ErrorKind.UNEXPECTED
    assert classify(data, 200, "not json").error is ErrorKind.UNEXPECTED


# ------------------------------------------------- the bundled watchlist's rules, on real shapes


def _bundled_rules(platform: str) -> HttpRules:
    from pathlib import Path

    from monitor.config import load_config

    config = load_config(Path(__file__).resolve().parent.parent / "config" / "monitor.yaml")
    found = config.platforms[platform].rules
    assert found is not None
    return found


# Bodies from docs/platforms.md (documented answers).
X_SUSPENDED = ('{"errors":[{"parameter":"username","resource_id":"u","value":"u","detail":'
               '"User has been suspended: [u].","title":"Forbidden","resource_type":"user",'
               '"type":"https://api.twitter.com/2/problems/resource-not-found"}]}')
X_NOT_FOUND = ('{"errors":[{"value":"123","detail":"Could not find user with id: [123].",'
               '"title":"Not Found Error","resource_type":"user","parameter":"id",'
               '"resource_id":"123","type":"https://api.twitter.com/2/problems/resource-not-found"}]}')


@pytest.mark.parametrize(("platform", "status", "body", "expected"), [
    ("x", 200, '{"data":{"id":"25073877","name":"Donald J. Trump","username":"realDonaldTrump"}}',
     (Result.PRESENT, None)),
    ("x", 200, '{"data":{"id":"1","username":"p","protected":true}}', (Result.PRESENT, None)),
    ("x", 200, X_SUSPENDED, (Result.ABSENT, AbsentReason.SUSPENDED)),
    ("x", 200, X_NOT_FOUND, (Result.ABSENT, AbsentReason.NOT_FOUND)),
    ("x", 401, '{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}',
     (Result.ERROR, ErrorKind.AUTH)),
    ("x", 429, '{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank",'
     '"status":429}', (Result.ERROR, ErrorKind.RATE_LIMITED)),
    ("x", 429, '{"title":"UsageCapExceeded","detail":"Usage cap exceeded: Monthly product cap",'
     '"type":"https://api.twitter.com/2/problems/usage-capped"}',
     (Result.ERROR, ErrorKind.RATE_LIMITED)),
    ("bluesky", 200, '{"did":"did:plc:z72i7hdynmk6r22z27h6tvur","handle":"bsky.app"}',
     (Result.PRESENT, None)),
    ("bluesky", 400, '{"error":"InvalidRequest","message":"Profile not found"}',
     (Result.ABSENT, AbsentReason.NOT_FOUND)),
    ("bluesky", 400, '{"error":"AccountTakedown","message":"Account has been suspended"}',
     (Result.ABSENT, AbsentReason.SUSPENDED)),
    ("bluesky", 400, '{"error":"AccountDeactivated","message":"Account is deactivated"}',
     (Result.ABSENT, AbsentReason.DEACTIVATED)),
    ("bluesky", 400, '{"error":"InvalidRequest","message":"Error: actor must be a valid did"}',
     (Result.ERROR, ErrorKind.UNEXPECTED)),
    ("bluesky", 429, '{"error":"RateLimitExceeded","message":"Rate Limit Exceeded"}',
     (Result.ERROR, ErrorKind.RATE_LIMITED)),
    ("github", 200, '{"login":"torvalds","id":1024025,"type":"User"}', (Result.PRESENT, None)),
    ("github", 404, '{"message":"Not Found","documentation_url":"https://docs.github.com",'
     '"status":"404"}', (Result.ABSENT, AbsentReason.NOT_FOUND)),
    ("github", 403, '{"message":"API rate limit exceeded for 127.0.0.1."}',
     (Result.ERROR, ErrorKind.RATE_LIMITED)),
])
def test_bundled_rules_read_the_documented_answers(platform: str, status: int, body: str,
                                                   expected: tuple[Result, Any]) -> None:
    obs = classify_answer(_bundled_rules(platform), Answer(status, {}, body.encode(), ""), AT)
    assert (obs.result, obs.reason or obs.error) == expected, obs.evidence
