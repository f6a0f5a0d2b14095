"""The API's tokens, through a running monitor on loopback: writes need the write token
(none configured: off), reads need a token only once a read token is configured, reload
takes its own token or the write token, and no token ever shows in a log line or answer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
from multidict import CIMultiDict

from monitor.app import Monitor
from monitor.auth import Tokens, resolve_tokens
from monitor.config import load_config, parse_config
from monitor.fakes.mastodon import FakeMastodon
from tests.conftest import mastodon_config

WRITE = "write-T0ken-8c1e2f"
READ = "read-T0ken-47aa90"
RELOAD = "reload-T0ken-5d3b"
ENV_VARS = ("ACCMON_WRITE_TOKEN", "ACCMON_READ_TOKEN", "ACCMON_WRITE_TOKEN_FILE",
            "ACCMON_READ_TOKEN_FILE")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No token from the machine running the tests leaks into them."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
async def masto() -> AsyncIterator[str]:
    async with FakeMastodon({"alice": "present"}).running() as base:
        yield base


async def _monitor(tmp_path: Path, base: str, extra: str = "",
                   reload_token: str | None = None) -> Monitor:
    cfg = tmp_path / "monitor.yaml"
    cfg.write_text(mastodon_config(base, ["alice"], state_path=str(tmp_path / "state.db"),
                                   extra=extra))
    mon = Monitor(load_config(cfg), config_path=str(cfg), reload_token=reload_token)
    await mon.start()
    return mon


async def call(mon: Monitor, method: str, path: str, token: str | None = None,
               **kwargs: Any) -> tuple[int, Any, CIMultiDict[str]]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with aiohttp.ClientSession() as http, http.request(
            method, f"http://127.0.0.1:{mon.port}{path}", headers=headers, **kwargs) as resp:
        body = await resp.json() if resp.content_type == "application/json" else \
            await resp.text()
        return resp.status, body, CIMultiDict(resp.headers)


# A write that passes authentication reaches the handler, which refuses the body: the
# 400 proves the token was accepted without changing anything.
NOT_JSON: dict[str, Any] = {"data": b"{not json"}


# ----------------------------------------------------------------- resolution


def test_tokens_come_from_env_then_file_then_config(tmp_path: Path) -> None:
    token_file = tmp_path / "write.token"
    token_file.write_text("from-the-file\n")
    config_file = tmp_path / "config.token"
    config_file.write_text("from-config-file")
    text = mastodon_config("http://127.0.0.1:1", ["alice"], state_path="x")
    config = parse_config(text.replace("  shutdown_grace: 2s\n", f"""  shutdown_grace: 2s
  api:
    write_token: from-config
    read_token_file: {config_file}
"""), env={})
    assert resolve_tokens(config, {}) == Tokens(write="from-config", read="from-config-file")
    env = {"ACCMON_WRITE_TOKEN_FILE": str(token_file)}
    assert resolve_tokens(config, env).write == "from-the-file"
    env["ACCMON_WRITE_TOKEN"] = "from-env"
    assert resolve_tokens(config, env).write == "from-env"
    assert resolve_tokens(None, {"ACCMON_READ_TOKEN": " r "}) == Tokens(read="r")
    assert resolve_tokens(None, {"ACCMON_WRITE_TOKEN": ""}) == Tokens()  # empty: unset


@pytest.mark.parametrize(("content", "problem"), [
    (None, "cannot read"),
    ("", "the token is empty"),
    ("secret-one\nsecret-two\n", "line break or control character"),
    (b"\xff\xfe\x00", "not UTF-8"),
])
def test_an_unusable_token_file_is_a_problem_naming_the_variable_not_the_token(
        tmp_path: Path, content: str | bytes | None, problem: str) -> None:
    path = tmp_path / "token"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    tokens = resolve_tokens(None, {"ACCMON_WRITE_TOKEN_FILE": str(path),
                                   "ACCMON_READ_TOKEN": READ})
    assert tokens.write is None and tokens.write_problem is not None
    assert tokens.write_problem.startswith("ACCMON_WRITE_TOKEN_FILE"), tokens.write_problem
    assert problem in tokens.write_problem
    assert tokens.read == READ and tokens.read_problem is None  # the other one still works
    assert "secret-" not in tokens.write_problem and READ not in repr(tokens)


def test_a_directory_is_no_token_file(tmp_path: Path) -> None:
    tokens = resolve_tokens(None, {"ACCMON_READ_TOKEN_FILE": str(tmp_path)})
    assert tokens.read_problem is not None and "not a regular file" in tokens.read_problem


# ----------------------------------------------------------------- writes


async def test_writes_are_off_until_a_write_token_is_configured(
        tmp_path: Path, masto: str) -> None:
    mon = await _monitor(tmp_path, masto)
    try:
        for method, path in (("POST", "/api/v1/silences"), ("DELETE", "/api/v1/silences/x"),
                             ("POST", "/api/v1/outages/1/ack"),
                             ("POST", "/api/v1/watchlist"),
                             ("DELETE", "/api/v1/watchlist/masto/alice")):
            status, body, _ = await call(mon, method, path, "anything", **NOT_JSON)
            assert status == 403, (method, path)
            assert body["error"].startswith("disabled: set ACCMON_WRITE_TOKEN"), body
        status, body, _ = await call(mon, "GET", "/api/v1/outages")
        assert status == 200 and body == {"outages": []}  # reads stay open
    finally:
        await mon.stop()


async def test_a_write_needs_exactly_the_write_token(
        tmp_path: Path, masto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCMON_WRITE_TOKEN", WRITE)
    monkeypatch.setenv("ACCMON_READ_TOKEN", READ)
    mon = await _monitor(tmp_path, masto)
    try:
        status, body, headers = await call(mon, "POST", "/api/v1/silences", **NOT_JSON)
        assert status == 401
        assert body["error"] == "send exactly 'Authorization: Bearer <token>'"
        assert headers["WWW-Authenticate"] == 'Bearer realm="account-monitor"'

        for wrong in (WRITE + "x", WRITE[:-1], "", f" {WRITE}", WRITE.upper()):
            status, _, headers = await call(mon, "POST", "/api/v1/silences", wrong,
                                            **NOT_JSON)
            assert status == 401, wrong
            assert 'error="invalid_token"' in headers["WWW-Authenticate"]

        status, body, headers = await call(mon, "DELETE", "/api/v1/silences/x", READ)
        assert status == 403 and "only read" in body["error"]
        assert 'error="insufficient_scope"' in headers["WWW-Authenticate"]

        status, body, _ = await call(mon, "POST", "/api/v1/silences", WRITE, **NOT_JSON)
        assert status == 400 and "not JSON" in body["error"], body
    finally:
        await mon.stop()


async def test_an_unusable_write_token_file_refuses_writes_and_leaves_reads_open(
        tmp_path: Path, masto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCMON_WRITE_TOKEN_FILE", str(tmp_path / "missing.token"))
    mon = await _monitor(tmp_path, masto)
    try:
        status, body, _ = await call(mon, "POST", "/api/v1/silences", "x", **NOT_JSON)
        assert status == 503, body
        assert "ACCMON_WRITE_TOKEN_FILE" in body["error"] and "missing.token" in body["error"]
        assert (await call(mon, "GET", "/api/v1/accounts"))[0] == 200
    finally:
        await mon.stop()


# ----------------------------------------------------------------- reads


async def test_reads_are_open_until_a_read_token_is_configured(
        tmp_path: Path, masto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCMON_WRITE_TOKEN", WRITE)
    mon = await _monitor(tmp_path, masto)
    try:
        for token in (None, "garbage", WRITE):
            assert (await call(mon, "GET", "/api/v1/accounts", token))[0] == 200, token
    finally:
        await mon.stop()


READS = ["/api/v1/accounts", "/api/v1/outages", "/api/v1/audit", "/api/v1/silences",
         "/api/v1/watchlist"]


async def test_a_read_token_guards_every_api_read_but_not_health_or_metrics(
        tmp_path: Path, masto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCMON_WRITE_TOKEN", WRITE)
    monkeypatch.setenv("ACCMON_READ_TOKEN", READ)
    mon = await _monitor(tmp_path, masto)
    try:
        for path in [*READS, "/api/v1/events?last_event_id=999999"]:
            status, _, headers = await call(mon, "GET", path)
            assert status == 401, path
            assert headers["WWW-Authenticate"] == 'Bearer realm="account-monitor"'
            assert (await call(mon, "GET", path, "nope"))[0] == 401, path
        for path in READS:
            assert (await call(mon, "GET", path, READ))[0] == 200, path
            assert (await call(mon, "GET", path, WRITE))[0] == 200, path
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await call(mon, "GET", path))[0] == 200, path
    finally:
        await mon.stop()


# ----------------------------------------------------------------- reload


async def test_reload_takes_the_reload_token_or_the_write_token(
        tmp_path: Path, masto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCMON_WRITE_TOKEN", WRITE)
    monkeypatch.setenv("ACCMON_READ_TOKEN", READ)
    mon = await _monitor(tmp_path, masto, reload_token=RELOAD)
    try:
        for token in (RELOAD, WRITE):
            status, body, _ = await call(mon, "POST", "/-/reload", token)
            assert (status, body) == (200, {"status": "reloaded", "accounts": 1}), token
        for refused in (READ, None, "x"):
            status, body, _ = await call(mon, "POST", "/-/reload", refused)
            assert status == 401, refused
            assert body["status"] == "unauthorized"
    finally:
        await mon.stop()


async def test_reload_with_only_the_write_token_configured(
        tmp_path: Path, masto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    mon = await _monitor(tmp_path, masto)
    try:
        status, body, _ = await call(mon, "POST", "/-/reload", WRITE)
        assert status == 403 and "ACCMON_WRITE_TOKEN" in body["error"]
    finally:
        await mon.stop()
    monkeypatch.setenv("ACCMON_WRITE_TOKEN", WRITE)
    mon = await _monitor(tmp_path, masto)
    try:
        assert (await call(mon, "POST", "/-/reload", WRITE))[0] == 200
    finally:
        await mon.stop()


async def test_a_rotated_token_file_is_read_again_on_reload(
        tmp_path: Path, masto: str, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "write.token"
    token_file.write_text("first-T0ken")
    monkeypatch.setenv("ACCMON_WRITE_TOKEN_FILE", str(token_file))
    mon = await _monitor(tmp_path, masto)
    try:
        assert (await call(mon, "POST", "/api/v1/silences", "first-T0ken", **NOT_JSON)
                )[0] == 400
        token_file.write_text("second-T0ken")  # the secret is rotated: applied on reload
        assert (await call(mon, "POST", "/-/reload", "first-T0ken"))[0] == 200
        assert (await call(mon, "POST", "/api/v1/silences", "first-T0ken", **NOT_JSON)
                )[0] == 401
        assert (await call(mon, "POST", "/api/v1/silences", "second-T0ken", **NOT_JSON)
                )[0] == 400
    finally:
        await mon.stop()


# ----------------------------------------------------------------- secrecy


async def test_no_token_appears_in_logs_or_answers(
        tmp_path: Path, masto: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Every path through the guard, good and bad tokens alike, with structlog and the
    standard library's logging both captured."""
    caplog.set_level(logging.DEBUG)
    bad_file = tmp_path / "read.token"
    bad_file.write_text("leaky-T0ken-line-one\nline-two")  # unusable: two lines
    monkeypatch.setenv("ACCMON_WRITE_TOKEN", WRITE)
    monkeypatch.setenv("ACCMON_READ_TOKEN_FILE", str(bad_file))
    secrets = (WRITE, "leaky-T0ken-line-one", RELOAD, "guess-T0ken")
    answers: list[str] = []
    with structlog.testing.capture_logs() as logs:
        mon = await _monitor(tmp_path, masto, reload_token=RELOAD)
        try:
            for method, path, token in (
                    ("GET", "/api/v1/accounts", None), ("GET", "/api/v1/accounts", WRITE),
                    ("POST", "/api/v1/silences", "guess-T0ken"),
                    ("POST", "/api/v1/silences", WRITE), ("POST", "/-/reload", RELOAD),
                    ("POST", "/-/reload", "guess-T0ken")):
                status, body, headers = await call(mon, method, path, token, **NOT_JSON)
                answers.append(f"{status} {body} {dict(headers)}")
        finally:
            await mon.stop()
    assert any("503" in a and "ACCMON_READ_TOKEN_FILE" in a for a in answers), answers
    assert any(entry.get("problem", "").startswith("ACCMON_READ_TOKEN_FILE")
               for entry in logs), logs  # the problem is logged, by its variable
    written = "\n".join([*map(str, logs), caplog.text, *answers])
    for secret in secrets:
        assert secret not in written, secret
