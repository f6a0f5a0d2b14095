"""The on-call commands against a running monitor on loopback: ``silence``, ``ack`` and
``watch`` through the same argument parsing the CLI uses, over real HTTP; exit 2 for bad
input found before anything is sent, exit 1 with the HTTP status and the monitor's reason
when it refuses or cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import structlog
import yaml

from monitor import oncall_cli
from monitor.apiclient import BadInput, base_url, listen_address
from monitor.app import Monitor
from monitor.config import load_config, parse_config
from monitor.fakes.mastodon import FakeMastodon
from monitor.model import State
from tests.conftest import RefusedPort, mastodon_config, state_of, wait_for

WRITE = "write-T0ken-cli-77b1"

def build_parser() -> argparse.ArgumentParser:
    """The CLI's own parser: the commands are checked as cli.py registers them."""
    from monitor import cli

    return cli.build_parser()


@dataclass
class Cli:
    mon: Monitor
    masto: FakeMastodon
    tmp: Path
    capsys: pytest.CaptureFixture[str]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.mon.port}"

    async def run(self, *argv: str, url: str | None = "") -> tuple[int, str, str]:
        """Run one command (in a thread: it blocks on HTTP while this loop serves it);
        ``url=""`` means this monitor's, None no --url at all."""
        given = [*argv, "--url", url or self.url] if url is not None else list(argv)
        self.capsys.readouterr()
        try:
            args = build_parser().parse_args(given)
            code = await asyncio.to_thread(args.func, args)
        except SystemExit as exc:  # argparse's own refusals
            code = int(exc.code or 0)
        out, err = self.capsys.readouterr()
        return code, out, err

    async def http(self, path: str) -> Any:
        async with aiohttp.ClientSession() as session, session.get(self.url + path) as resp:
            return await resp.json()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("ACCMON_READ_TOKEN", "ACCMON_WRITE_TOKEN_FILE", "ACCMON_READ_TOKEN_FILE",
                 "ACCMON_URL", "ACCMON_WRITE_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    yield


@pytest.fixture
async def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None,
              capsys: pytest.CaptureFixture[str]) -> AsyncIterator[Cli]:
    """alice up, carol down (one open outage), dave known to the platform only."""
    monkeypatch.setenv("ACCMON_WRITE_TOKEN", WRITE)
    masto = FakeMastodon({"alice": "present", "carol": "gone", "dave": "present"})
    async with masto.running() as base:
        cfg = tmp_path / "monitor.yaml"
        cfg.write_text(mastodon_config(base, ["alice", "carol"],
                                       state_path=str(tmp_path / "state.db")))
        mon = Monitor(load_config(cfg), config_path=str(cfg))
        await mon.start()
        # The monitor logs to stdout in this process too: keep its lines out of the output
        # the commands are checked by.
        with structlog.testing.capture_logs():
            try:
                await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP
                               and state_of(mon, "masto", "carol") is State.DOWN,
                               what="alice up, carol down")
                yield Cli(mon, masto, tmp_path, capsys)
            finally:
                await mon.stop()


# ----------------------------------------------------------------- silence


async def test_silence_add_list_expire(cli: Cli) -> None:
    code, out, err = await cli.run("silence", "add", 'account="carol"', "platform=masto",
                                   "--duration", "2h", "--comment", "planned deactivation",
                                   "--by", "alice@oncall")
    assert code == 0, err
    assert out.startswith("silence ") and "created" in out and "by alice@oncall" in out
    silence_id = out.split()[1]
    (stored,) = await cli.http("/api/v1/silences")
    assert stored["id"] == silence_id and stored["createdBy"] == "alice@oncall"
    assert [m["name"] for m in stored["matchers"]] == ["account", "platform"]

    code, out, _ = await cli.run("silence", "list")
    header, row = out.splitlines()
    assert header.split()[:3] == ["ID", "STATE", "STARTS"]
    assert row.startswith(silence_id) and " active " in row
    assert 'account="carol" platform="masto"' in row and "planned deactivation" in row
    code, out, _ = await cli.run("silence", "list", "--json")
    assert code == 0 and [s["id"] for s in json.loads(out)] == [silence_id]
    code, out, _ = await cli.run("silence", "query", 'account="alice"')
    assert code == 0 and out.startswith("no silences")

    code, out, err = await cli.run("silence", "expire", silence_id, "--by", "bob")
    assert code == 0, err
    assert out.startswith(f"silence {silence_id} expired")
    assert (await cli.run("silence", "list"))[1].startswith("no silences")
    code, out, _ = await cli.run("silence", "list", "--expired")
    assert silence_id in out and " expired " in out
    audit = (await cli.http("/api/v1/audit"))["entries"]
    assert [(e["action"], e["actor"]) for e in audit] == [("silence.create", "alice@oncall"),
                                                          ("silence.expire", "bob")]


async def test_silence_add_with_ends_and_a_pending_start(cli: Cli) -> None:
    code, out, err = await cli.run("silence", "add", "account=alice", "--starts",
                                   "2099-01-01T10:00:00+01:00", "--ends",
                                   "2099-01-01T12:00:00Z", "--comment", "later")
    assert code == 0, err
    assert "from 2099-01-01T09:00:00Z until 2099-01-01T12:00:00Z" in out
    (stored,) = await cli.http("/api/v1/silences")
    assert stored["status"]["state"] == "pending"
    assert stored["startsAt"].startswith("2099-01-01T09:00:00")
    assert stored["createdBy"]  # the user name when --by is not given


@pytest.mark.parametrize(("argv", "words"), [
    (["account=carol", "--duration", "soon"], "--duration: invalid duration"),
    (["team=~.*", "--duration", "1h"], "must not match the empty string"),
    (["account=~(a", "--duration", "1h"], "invalid regular expression"),
    (['account="carol', "--duration", "1h"], "never closed"),
    (["bad-name=x", "--duration", "1h"], "label name"),
    (["account=carol", "--ends", "2099-01-01T12:00:00"], "no time zone offset"),
    (["account=carol", "--ends", "next tuesday"], "not an ISO 8601 time"),
    (["account=carol", "--ends", "2001-01-01T00:00:00Z"], "in the past"),
    (["account=carol", "--duration", "1h", "--comment", " "], "--comment"),
])
async def test_bad_silence_input_exits_2_before_anything_is_sent(
        clean_env: None, capsys: pytest.CaptureFixture[str], argv: list[str],
        words: str) -> None:
    with RefusedPort() as nothing:  # were anything sent, it would be refused: exit 1
        args = build_parser().parse_args(["silence", "add", *argv, *(
            [] if "--comment" in argv else ["--comment", "why"]),
            "--url", f"http://127.0.0.1:{nothing.port}"])
        code = oncall_cli.cmd_silence(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("silence add: ") and words in err, err
    assert len(err.strip().splitlines()) == 1


async def test_a_refusal_exits_1_with_the_status_and_the_monitors_reason(
        cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = await cli.run("watch", "remove", "masto", "alice")
    assert code == 1
    assert err.strip() == ("watch remove: monitor refused (HTTP 409): masto/alice is listed "
                           "in the config file, which wins; remove it there and reload")

    monkeypatch.delenv("ACCMON_WRITE_TOKEN")
    code, _, err = await cli.run("silence", "add", "account=carol", "--duration", "1h",
                                 "--comment", "x")
    assert code == 1
    assert "HTTP 401" in err and "no token sent: set ACCMON_WRITE_TOKEN" in err, err
    monkeypatch.setenv("ACCMON_WRITE_TOKEN", "not-the-token")
    code, _, err = await cli.run("silence", "expire", "some-id")
    assert code == 1 and "HTTP 401" in err and "not-the-token" not in err, err
    assert (await cli.http("/api/v1/silences")) == []


async def test_an_unreachable_monitor_exits_1_saying_where(clean_env: None,
                                                           capsys: pytest.CaptureFixture[str]
                                                           ) -> None:
    with RefusedPort() as nothing:
        url = f"http://127.0.0.1:{nothing.port}"
        args = build_parser().parse_args(["silence", "list", "--url", url])
        code = await asyncio.to_thread(oncall_cli.cmd_silence, args)
    err = capsys.readouterr().err
    assert code == 1
    assert err.strip() == f"silence list: cannot reach the monitor at {url}: connection " \
                          "refused (is it running? is the port right?)"


# ----------------------------------------------------------------- ack


async def test_ack_an_open_outage(cli: Cli) -> None:
    (outage,) = (await cli.http("/api/v1/outages?open=true"))["outages"]
    oid = str(outage["id"])
    code, out, err = await cli.run("ack", oid, "--by", "bob", "--comment", "looking")
    assert code == 0, err
    assert out.startswith(f"outage {oid} (masto/carol) acknowledged by bob")
    code, out, _ = await cli.run("ack", oid, "--by", "carla")
    assert code == 0 and out.startswith(f"outage {oid} (masto/carol) was already "
                                        "acknowledged by bob at ")
    code, out, _ = await cli.run("ack", oid, "--json")
    assert json.loads(out)["outage"]["ack_comment"] == "looking"

    code, _, err = await cli.run("ack", "424242")
    assert code == 1 and "HTTP 404" in err and "outage 424242 not found" in err
    code, _, err = await cli.run("ack", "twelve")
    assert code == 2 and "not an outage id" in err


# ----------------------------------------------------------------- watch


async def test_watch_add_list_export_remove(cli: Cli) -> None:
    code, out, err = await cli.run("watch", "add", "masto", "dave", "--protected", "--team",
                                   "comms", "--label", "tier=1", "--label", "region=eu",
                                   "--by", "bob")
    assert code == 0, err
    assert out.startswith("watching masto/dave (protected, source: api)")
    await wait_for(lambda: state_of(cli.mon, "masto", "dave") is State.UP, what="dave up")

    code, out, _ = await cli.run("watch", "list")
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["PLATFORM", "HANDLE", "SOURCE", "PROTECTED", "TEAM", "STATE"]
    assert ["masto", "dave", "api", "yes", "comms", "up"] in rows
    assert ["masto", "alice", "config", "yes", "-", "up"] in rows
    code, out, _ = await cli.run("watch", "list", "--source", "api", "--json")
    assert [a["handle"] for a in json.loads(out)] == ["dave"]

    code, exported, _ = await cli.run("watch", "export")
    assert code == 0
    entries = yaml.safe_load(exported)
    assert entries == [{"platform": "masto", "handle": "dave", "protected": True,
                        "team": "comms", "labels": {"tier": "1", "region": "eu"}}]
    # Ready to paste: the config with it under accounts: validates, and lists dave.
    pasted = cli.mon.config_path and Path(cli.mon.config_path).read_text()
    assert pasted
    indented = "".join(f"  {line}\n" for line in exported.splitlines())
    config = parse_config(pasted.rstrip("\n") + "\n" + indented, env={})
    assert [a.handle for a in config.accounts] == ["alice", "carol", "dave"]

    code, _, err = await cli.run("watch", "add", "masto", "dave")
    assert code == 1 and "HTTP 409" in err and "already" in err
    code, out, err = await cli.run("watch", "remove", "masto", "dave", "--by", "bob")
    assert code == 0 and out.strip() == "no longer watching masto/dave", err
    code, out, _ = await cli.run("watch", "export")
    assert "no accounts were added" in out


async def test_watch_add_input_and_validation_errors(cli: Cli) -> None:
    code, _, err = await cli.run("watch", "add", "masto", "eve", "--label", "tier")
    assert code == 2 and "--label 'tier': write KEY=VALUE" in err
    code, _, err = await cli.run("watch", "add", "nowhere", "eve")
    assert code == 1 and "HTTP 422" in err and "not configured under platforms" in err
    code, _, err = await cli.run("watch", "add", "masto", "eve", "--interval", "often")
    assert code == 1 and "HTTP 422" in err and "interval" in err


# ----------------------------------------------------------------- where the monitor is


async def test_the_url_comes_from_the_config_listen_address(cli: Cli) -> None:
    """A config whose other values name secrets this shell lacks still gives the address."""
    config = cli.tmp / "other.yaml"
    config.write_text(f"""
monitor:
  listen_host: 0.0.0.0
  listen_port: {cli.mon.port}
platforms:
  x:
    token: ${{X_BEARER_TOKEN_NOT_SET_HERE}}
accounts: []
""")
    code, out, err = await cli.run("silence", "list", "--config", str(config), url=None)
    assert code == 0 and out.startswith("no silences"), err


def test_base_url_rules(tmp_path: Path, clean_env: None) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("monitor:\n  listen_host: '::'\n  listen_port: 9999\n")
    assert base_url(None, str(config), {}) == "http://[::1]:9999"
    assert base_url(None, str(config), {"ACCMON_URL": "http://mon:1/"}) == "http://mon:1"
    assert base_url("https://mon.example:8443", str(config), {}) == "https://mon.example:8443"
    config.write_text("platforms: {}\n")
    assert listen_address(str(config)) == ("127.0.0.1", 9464)  # the monitor's defaults
    config.write_text("monitor:\n  listen_port: 0\n")
    for url, path, words in ((None, str(config), "listen_port is 0"),
                             (None, str(tmp_path / "missing.yaml"), "cannot read"),
                             ("ftp://x", None, "not an http:// or https:// URL"),
                             ("http://x:99999", None, "invalid port"),
                             (None, None, "give --url")):
        with pytest.raises(BadInput, match=words):
            base_url(url, path, {})
    config.write_text("monitor: [\n")
    with pytest.raises(BadInput, match="or give --url"):
        base_url(None, str(config), {})


async def test_a_missing_config_without_url_exits_2(clean_env: None, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    args = build_parser().parse_args(["watch", "list", "--config",
                                      str(tmp_path / "nope.yaml")])
    assert oncall_cli.cmd_watch(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("watch list: cannot read ") and "or give --url" in err


# ----------------------------------------------------------------- the real command


@pytest.mark.slow
async def test_the_installed_command_talks_to_the_monitor(cli: Cli) -> None:
    """``python -m monitor silence add`` as a real process."""
    env = {**os.environ, "ACCMON_WRITE_TOKEN": WRITE}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "silence", "add", "account=carol", "--duration",
        "1h", "--comment", "from a real process", "--url", cli.url, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    async with asyncio.timeout(60):
        out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith("silence ")
    (stored,) = await cli.http("/api/v1/silences")
    assert stored["comment"] == "from a real process"
