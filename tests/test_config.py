"""Config: typed, every problem listed with file, field path, line and fix; secrets by reference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config import ConfigError, load_config, parse_config, parse_duration, parse_size

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "config" / "monitor.yaml"

MINIMAL = """
platforms:
  mastodon.social:
    probe: mastodon
    base_url: https://mastodon.social
accounts:
  - platform: mastodon.social
    handle: Gargron
"""


def problems(text: str, env: dict[str, str] | None = None) -> list[tuple[str, int | None, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "watch.yaml", env=env or {})
    return [(p.path, p.line, p.reason) for p in info.value.problems]


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("1h30m", 5400.0), ("250ms", 0.25),
    ("2d", 172800.0), (45, 45.0), (0.5, 0.5),
])
def test_durations_parse(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5 minutes", "m5", "-1s", "0s", "1h 30m", True, None])
def test_bad_durations_are_rejected(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


def test_sizes_parse() -> None:
    assert parse_size("1MiB") == 1048576
    assert parse_size("512KiB") == 524288
    assert parse_size(100) == 100
    with pytest.raises(ValueError):
        parse_size("lots")


def test_bundled_example_config_is_valid_and_watches_the_2017_account() -> None:
    config = load_config(BUNDLED)
    by_handle = {a.handle: a for a in config.accounts}
    trump = by_handle["realDonaldTrump"]
    assert (trump.platform, trump.id, trump.protected) == ("x", "25073877", True)
    assert by_handle["POTUS"].protected
    assert {a.platform for a in config.accounts} >= {"x", "mastodon.social", "bluesky", "github"}


def test_defaults_apply_and_accounts_override_them() -> None:
    config = parse_config(MINIMAL.replace("handle: Gargron", "handle: Gargron\n    interval: 5m\n"
                                          "    failure_threshold: 3"), env={})
    policy = config.policy(config.accounts[0])
    assert (policy.interval, policy.failure_threshold, policy.confirm_interval) == (300, 3, 10)


def test_every_problem_is_listed_with_its_path_and_line() -> None:
    text = """
defaults:
  interval: soon
  faliure_threshold: 2
platforms:
  mastodon.social:
    probe: mastodon
    base_url: mastodon.social
accounts:
  - platform: mastodon.social
    handle: Gargron
    recovery_threshold: 0
  - platform: myspace
    handle: tom
"""
    found = problems(text)
    paths = {path: (line, reason) for path, line, reason in found}
    assert paths["defaults.interval"][0] == 3
    assert "30s" in paths["defaults.interval"][1]  # says how to fix it
    assert paths["defaults.faliure_threshold"] == (4, paths["defaults.faliure_threshold"][1])
    assert "unknown key" in paths["defaults.faliure_threshold"][1]
    assert "http://" in paths["platforms.mastodon.social.base_url"][1]
    assert paths["accounts[0].recovery_threshold"][0] == 12
    assert len(found) == 4  # myspace is checked only once the models are valid


def test_unknown_platform_and_duplicates_are_named() -> None:
    text = MINIMAL + """  - platform: myspace
    handle: tom
  - platform: mastodon.social
    handle: Gargron
"""
    found = problems(text)
    assert found[0][:2] == ("accounts[1].platform", 9)
    assert "myspace" in found[0][2] and "mastodon.social" in found[0][2]
    assert found[1][0] == "accounts[2]" and "twice" in found[1][2]


def test_unknown_probe_is_an_error_listing_the_choices() -> None:
    found = problems(MINIMAL.replace("probe: mastodon", "probe: friendster"))
    assert found[0][0] == "platforms.mastodon.social.probe"
    assert "mastodon" in found[0][2] and "http" in found[0][2]


def test_env_references_are_expanded_and_missing_ones_reported() -> None:
    text = MINIMAL.replace("base_url: https://mastodon.social",
                           "base_url: https://mastodon.social\n    token: ${MASTO_TOKEN}")
    config = parse_config(text, env={"MASTO_TOKEN": "s3cret"})
    token = config.platforms["mastodon.social"].token
    assert token is not None and token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)  # secrets never print
    (path, line, reason), = problems(text)
    assert (path, line) == ("platforms.mastodon.social.token", 6)
    assert "MASTO_TOKEN" in reason and "token_file" in reason


def test_env_default_syntax_allows_an_optional_secret() -> None:
    text = MINIMAL.replace("base_url: https://mastodon.social",
                           "base_url: https://mastodon.social\n    token: ${MASTO_TOKEN:-}")
    assert parse_config(text, env={}).platforms["mastodon.social"].token is None


def test_secret_files_fill_the_secret(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("from-a-file\n")
    text = MINIMAL.replace("base_url: https://mastodon.social",
                           f"base_url: https://mastodon.social\n    token_file: {secret}")
    token = parse_config(text, env={}).platforms["mastodon.social"].token
    assert token is not None and token.get_secret_value() == "from-a-file"
    missing = text.replace(str(secret), str(tmp_path / "nope"))
    (path, line, reason), = problems(missing)
    assert (path, line) == ("platforms.mastodon.social.token_file", 6)
    assert "cannot read" in reason and "nope" in reason


def test_http_rules_reject_unknown_keys_like_a_misspelt_marker() -> None:
    text = """
platforms:
  telegram:
    probe: http
    base_url: https://t.me
    rules:
      present:
        - body_contians: tgme_page_title
accounts: []
"""
    (path, line, reason), = problems(text)
    assert path == "platforms.telegram.rules.present[0].body_contians"
    assert line == 8 and "unknown key" in reason


def test_invalid_yaml_names_the_line() -> None:
    (_, line, reason), = problems("platforms: [\n  oops: {\n")
    assert line is not None and "YAML" in reason


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", *args], capture_output=True,
                          text=True, cwd=ROOT)


def test_check_config_cli_exit_codes(tmp_path: Path) -> None:
    ok = _cli("check-config", str(BUNDLED))
    assert ok.returncode == 0, ok.stderr
    assert "OK" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.replace("handle: Gargron", "handle: Gargron\n    interval: often\n"
                                   "    protect: true"))
    result = _cli("check-config", str(bad))
    assert result.returncode == 2
    assert f"{bad}:9: accounts[0].interval" in result.stderr
    assert f"{bad}:10: accounts[0].protect: unknown key" in result.stderr


def test_a_catalogue_site_fills_the_http_probe_and_unknown_sites_are_named() -> None:
    text = """
platforms:
  telegram: {catalogue: telegram}
  tg-proxy: {catalogue: telegram, base_url: "http://127.0.0.1:8080"}
accounts: [{platform: telegram, handle: durov}]
"""
    config = parse_config(text, env={})
    tg = config.platforms["telegram"]
    assert (tg.probe, tg.base_url) == ("http", "https://t.me")
    assert tg.rules is not None and tg.rules.known_present
    assert config.platforms["tg-proxy"].base_url == "http://127.0.0.1:8080"
    (path, _, reason), = problems(text.replace("{catalogue: telegram}", "{catalogue: myspace}",
                                               1))
    assert path == "platforms.telegram" and "myspace" in reason and "instagram" in reason


def test_a_notifier_problem_names_the_path_the_reader_wrote() -> None:
    text = """
platforms: {x: {probe: x, base_url: "https://api.x.com"}}
accounts: [{platform: x, handle: a}]
notifiers:
  pd: {type: pagerduty, routing_key: "0123456789abcdef0123456789abcdef", timeout: soon}
"""
    with pytest.raises(ConfigError) as info:
        parse_config(text, "t.yaml", env={})
    rendered = info.value.render()
    assert "t.yaml:5: notifiers.pd.timeout:" in rendered
    assert "notifiers.pd.pagerduty" not in rendered


def test_accounts_without_labels_share_a_read_only_mapping() -> None:
    config = parse_config("""
platforms: {x: {probe: x, base_url: "https://api.x.com"}}
accounts: [{platform: x, handle: a}, {platform: x, handle: b}, {platform: x, handle: c,
            labels: {tier: head-of-state}}]
""", "t.yaml", env={})
    a, b, c = config.accounts
    assert a.labels is b.labels and dict(a.labels) == {}
    with pytest.raises(TypeError):
        a.labels["tier"] = "oops"  # type: ignore[index]
    assert dict(c.labels) == {"tier": "head-of-state"}
