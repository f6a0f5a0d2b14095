"""Hostile configs and state: each is one clear problem (file, line, field, fix), exit 2.

Never a traceback, never a hang: check-config, run and reload all go through
``load_config``, which raises only :class:`ConfigError`. Commands run in-process through
the CLI's ``main()``; a SIGALRM deadline turns a hang into a failure.
"""

from __future__ import annotations

import gzip
import os
import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from monitor import yamlsafe
from monitor.app import Monitor
from monitor.cli import main
from monitor.config import ConfigError, load_config, parse_config
from monitor.fakes.mastodon import FakeMastodon
from monitor.store import Store
from tests.conftest import deadline, free_port, mastodon_config

ROOT = Path(__file__).resolve().parent.parent

VALID = """\
platforms:
  m:
    probe: mastodon
    base_url: https://mastodon.example
accounts:
  - platform: m
    handle: alice
"""
SITE = """\
platforms:
  site:
    probe: http
    base_url: https://site.example
    rules:
      url: "{url}"
      present: [{{status: 200}}]
accounts:
  - platform: site
    handle: alice
"""




def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with deadline():
        code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def check(tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | bytes,
          ) -> list[tuple[int | None, str, str]]:
    """check-config on ``content``: exit 2 and its problems as (line, field path, reason)."""
    cfg = tmp_path / "hostile.yaml"
    cfg.write_bytes(content.encode() if isinstance(content, str) else content)
    code, out, err = run_cli(capsys, "check-config", str(cfg))
    assert code == 2, (out, err)
    return parse_problems(err, str(cfg))


# A field path is plain (platforms.x.rules.url) or quotes odd keys: accounts[0]["a b"].
_PATH = r'\(top level\)|(?:[^\s"]|"(?:[^"\\]|\\.)*")+'
_PROBLEM = re.compile(rf"^  (?P<file>.+?)(?::(?P<line>\d+))?: (?P<path>{_PATH}): "
                      r"(?P<reason>.+)$")


def parse_problems(err: str, file: str) -> list[tuple[int | None, str, str]]:
    """Every line after the header is ``file[:line]: field.path: reason``."""
    header, *lines = err.splitlines()
    assert header.startswith(f"{file}: ") and "problem(s)" in header, err
    assert "Traceback" not in err
    found = []
    for line in lines:
        match = _PROBLEM.match(line)
        assert match and match["file"] == file, line
        found.append((int(match["line"]) if match["line"] else None, match["path"],
                      match["reason"]))
    assert found
    return found


# --------------------------------------------------------------------------- bytes

NOT_UTF8 = {
    "latin-1 in a comment": (VALID.replace("  m:\n", "  m:  # café\n").encode("latin-1"), 2,
                             "byte 0xe9 at line 2"),
    "latin-1 in a value": (VALID.replace("alice", "zoë").encode("latin-1"), 7, "byte 0xeb"),
    "windows-1252 quote": (VALID.encode() + b"# \x93quoted\x94\n", 8, "byte 0x93"),
    "utf-16": (VALID.encode("utf-16"), 1, "UTF-16"),
    "gzip": (gzip.compress(VALID.encode(), mtime=0), 1, "NUL byte at line 1, column 4"),
    "png": (b"\x89PNG\r\n\x1a\n" + bytes(64), 3, "NUL byte at line 3, column 1"),
    "png signature": (b"\x89PNG\r\n", 1, "byte 0x89 at line 1, column 1"),
    "elf": (b"\x7fELF\x02\x01\x01" + bytes(64), 1, "NUL byte"),
    "nul in yaml": (VALID.encode().replace(b"alice", b"al\x00ice"), 7, "NUL byte"),
    "all bytes": (bytes(range(256)), 1, "NUL byte"),
    "high bytes": (bytes(range(128, 256)) * 4, 1, "not UTF-8"),
    "truncated utf-8": (VALID.encode() + "# é".encode()[:-1], 8, "not UTF-8"),
    "control character": (VALID.replace("alice", "al\x01ice").encode(), 7,
                          "control character"),
    "escape sequence": (VALID.replace("alice", "\x1b[31malice").encode(), 7,
                        "control character"),
    "overlong encoding": (VALID.encode() + b"# \xc0\xaf\n", 8, "byte 0xc0"),
    "surrogate": (VALID.encode() + b"# \xed\xa0\x80\n", 8, "byte 0xed"),
}


@pytest.mark.parametrize("name", NOT_UTF8)
def test_non_utf8_and_binary_files_name_the_line_and_byte(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    content, line, fragment = NOT_UTF8[name]
    (found_line, path, reason), = check(tmp_path, capsys, content)
    assert found_line == line and fragment in reason, reason
    assert path == "(top level)"
    assert "UTF-8" in reason or "binary" in reason or "control character" in reason


def test_a_utf8_byte_order_mark_is_fine(tmp_path: Path) -> None:
    cfg = tmp_path / "bom.yaml"
    cfg.write_bytes(b"\xef\xbb\xbf" + VALID.encode())
    assert load_config(cfg).accounts[0].handle == "alice"


@pytest.mark.parametrize("target", ["/dev/zero", "directory", "fifo", "huge"])
def test_the_config_path_must_be_a_bounded_regular_file(
        target: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _special_file(target, tmp_path)
    code, _, err = run_cli(capsys, "check-config", path)
    assert code == 2
    (_, field, reason), = parse_problems(err, path)
    assert field == "(top level)"
    assert ("not a regular file" in reason) if target != "huge" else ("bytes" in reason)


def _special_file(kind: str, tmp_path: Path) -> str:
    if kind == "/dev/zero":
        return "/dev/zero"
    path = tmp_path / kind
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)  # opening it would block until a writer came
    elif kind == "huge":
        with path.open("wb") as f:  # sparse: costs no disk
            f.truncate(65 * 1024 * 1024)
    else:
        path.write_bytes(kind.encode())
    return str(path)


# --------------------------------------------------------------------------- YAML graph

BOMB = "".join(["bomb0: &a0 [x, x, x, x, x, x, x, x, x]\n"] + [
    f"bomb{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)])


def test_an_alias_bomb_is_refused_before_anything_expands_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (line, path, reason), = check(tmp_path, capsys, VALID + BOMB)
    assert "alias" in reason and "200,000" in reason
    assert line is not None and line > 7 and path.startswith("bomb")


def test_a_recursive_alias_and_deep_nesting_are_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (line, path, reason), = check(tmp_path, capsys, VALID + "loop: &l [*l]\n")
    assert (line, path) == (8, "loop") and "recursive alias" in reason
    deep = VALID + "deep: " + "[" * 40 + "]" * 40 + "\n"
    (line, _, reason), = check(tmp_path, capsys, deep)
    assert line == 8 and "nested more than 32 levels" in reason


def test_merge_keys_and_a_few_aliases_still_work() -> None:
    text = VALID.replace("  - platform: m\n    handle: alice\n",
                         "  - &alice {platform: m, handle: alice, team: core}\n"
                         "  - {<<: *alice, handle: bob}\n")
    config = parse_config(text, env={})
    assert [(a.handle, a.team) for a in config.accounts] == [("alice", "core"), ("bob", "core")]


def test_duplicate_keys_are_each_named_with_both_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = VALID.replace("    handle: alice\n", "    handle: alice\n    handle: bob\n")
    text += "platforms: {}\n"
    assert check(tmp_path, capsys, text) == [
        (9, "platforms", "duplicate key 'platforms' (first on line 1); YAML keeps only one: "
                         "remove or merge them"),
        (8, "accounts[0].handle", "duplicate key 'handle' (first on line 7); YAML keeps only "
                                  "one: remove or merge them")]


@pytest.mark.parametrize(("value", "fragment"), [
    ("1" * 5000, "quote it"),  # Python refuses int() of more than 4300 digits
    ("2001-02-31", "day is out of range"),
])
def test_scalars_the_yaml_constructor_cannot_build_name_their_line(
        value: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = VALID.replace("    handle: alice\n", f"    handle: alice\n    team: {value}\n")
    (line, _, reason), = check(tmp_path, capsys, text)
    assert line == 8 and fragment in reason


# --------------------------------------------------------------------------- values

DURATIONS = [".nan", ".NaN", ".inf", "-.inf", "1e400", "99999999999999999999999d",
             "99999999999999999999999", "1" * 400, "367d", "0s", "-5s", "'" + "1" * 10000 + "s'"]


@pytest.mark.parametrize("value", DURATIONS)
def test_nan_infinite_overflowing_and_absurd_durations_are_refused(
        value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "defaults:\n  confirm_interval: 5s\n  interval: " + value + "\n" + VALID
    (line, path, reason), = check(tmp_path, capsys, text)
    assert (line, path) == (3, "defaults.interval")
    assert any(word in reason for word in ("366", "NaN", "greater than zero", "e.g. 30s",
                                           "finite")), reason
    assert len(reason) < 200  # a 10,000-character value is not echoed back


@pytest.mark.parametrize("value", ["99999999999GiB", "1" * 30, "65MiB", ".inf", "-1", "0",
                                   "1.5MiB", "'" + "9" * 5000 + "'"])
def test_huge_and_invalid_sizes_are_refused(value: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    text = "defaults:\n  max_body_bytes: " + value + "\n" + VALID
    (line, path, reason), = check(tmp_path, capsys, text)
    assert (line, path) == (2, "defaults.max_body_bytes")
    assert "64MiB" in reason or "512KiB" in reason, reason


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf"])
def test_rates_and_fractions_must_be_finite(value: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    text = VALID.replace("    base_url: https://mastodon.example\n",
                         f"    base_url: https://mastodon.example\n    rate_per_second: "
                         f"{value}\n    anomaly: {{fraction: {value}}}\n")
    found = check(tmp_path, capsys, text)
    assert {(line, path) for line, path, _ in found} >= {
        (5, "platforms.m.rate_per_second"), (6, "platforms.m.anomaly.fraction")}


@pytest.mark.parametrize(("url", "fragment"), [
    ("{base_url}/{}", "positional placeholder {}"),
    ("{base_url}/{0}", "positional placeholder {0}"),
    ("{base_url}/{user}", "unknown placeholder {user}"),
    ("{base_url}/{handle.upper}", "unknown placeholder {handle.upper}"),
    ("{base_url}/{handle[0]}", "unknown placeholder {handle[0]}"),
    ("{base_url}/{handle!r}", "format spec or conversion"),
    ("{base_url}/{handle:>10}", "format spec or conversion"),
    ("{base_url}/{handle", "literal brace"),
    ("{base_url}/handle}", "literal brace"),
])
def test_url_templates_the_probe_could_not_fill_are_refused(
        url: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (line, path, reason), = check(tmp_path, capsys, SITE.format(url=url))
    assert (line, path) == (6, "platforms.site.rules.url")
    assert fragment in reason, reason
    if "brace" not in fragment:
        assert "{base_url}, {handle}, {id}" in reason  # says what may be used


def test_a_profile_url_template_is_checked_too(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = VALID.replace("    base_url: https://mastodon.example\n",
                         "    base_url: https://mastodon.example\n"
                         "    profile_url: https://m.example/@{user}\n")
    (line, path, reason), = check(tmp_path, capsys, text)
    assert (line, path) == (5, "platforms.m.profile_url") and "{handle}, {id}" in reason


def test_a_catalogue_that_is_not_a_name_is_a_problem_not_a_crash(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "platforms:\n  t: {catalogue: [telegram]}\naccounts: []\n"
    (line, path, reason), = check(tmp_path, capsys, text)
    assert (line, path) == (2, "platforms.t") and "no site" in reason


# --------------------------------------------------------------------------- secret files


@pytest.mark.parametrize(("kind", "fragment"), [
    ("/dev/zero", "not a regular file (a character device)"),
    ("directory", "not a regular file (a directory)"),
    ("fifo", "not a regular file (a FIFO)"),
    ("big", "more than the 4 KiB allowed"),
    ("binary", "not UTF-8"),
    ("empty", "is empty"),
    ("two lines", "more than one line"),
    ("missing", "cannot read"),
])
def test_secret_files_must_be_small_regular_text_files(
        kind: str, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = {"big": lambda: _write(tmp_path / "big", b"t" * 5000),
            "binary": lambda: _write(tmp_path / "bin", b"\xff\xfe\x00token"),
            "empty": lambda: _write(tmp_path / "empty", b"\n"),
            "two lines": lambda: _write(tmp_path / "two", b"line one\nline two\n"),
            "missing": lambda: str(tmp_path / "nope"),
            }.get(kind, lambda: _special_file(kind, tmp_path))()
    text = VALID.replace("    base_url: https://mastodon.example\n",
                         f"    base_url: https://mastodon.example\n    token_file: {path}\n")
    (line, field, reason), = check(tmp_path, capsys, text)
    assert (line, field) == (5, "platforms.m.token_file")
    assert fragment in reason, reason


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_a_secret_with_a_line_break_from_the_environment_is_refused() -> None:
    text = VALID.replace("    base_url: https://mastodon.example\n",
                         "    base_url: https://mastodon.example\n    token: ${T}\n")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.yaml", env={"T": "s3cret\nX-Injected: 1"})
    (problem,) = info.value.problems
    assert (problem.path, problem.line) == ("platforms.m.token", 5)
    assert "line break" in problem.reason and "s3cret" not in info.value.render()


# --------------------------------------------------------------------------- run and reload

HOSTILE = {
    "binary": bytes(range(128, 256)),
    "alias bomb": (VALID + BOMB).encode(),
    "duplicate keys": (VALID + "accounts: []\n").encode(),
    "nan interval": ("defaults: {interval: .nan}\n" + VALID).encode(),
    "overflowing interval": ("defaults: {interval: 99999999999999999999999d}\n"
                             + VALID).encode(),
    "huge size": ("defaults: {max_body_bytes: 99999999999GiB}\n" + VALID).encode(),
    "unknown placeholder": SITE.format(url="{base_url}/{user}").encode(),
    "positional placeholder": SITE.format(url="{base_url}/{}").encode(),
    "token_file /dev/zero": VALID.replace(
        "    base_url: https://mastodon.example\n",
        "    base_url: https://mastodon.example\n    token_file: /dev/zero\n").encode(),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_run_refuses_each_hostile_config_with_exit_2(
        name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "hostile.yaml"
    cfg.write_bytes(HOSTILE[name])
    code, _, err = run_cli(capsys, "run", "--config", str(cfg), "--state",
                           str(tmp_path / "s.db"), "--port", "0")
    assert code == 2
    parse_problems(err, str(cfg))
    assert not (tmp_path / "s.db").exists()  # refused before anything started


async def test_reload_rejects_and_counts_each_hostile_config(tmp_path: Path) -> None:
    masto = FakeMastodon({"alice": "present"})
    async with masto.running() as base:
        cfg = tmp_path / "m.yaml"
        good = mastodon_config(base, ["alice"], state_path=str(tmp_path / "s.db"))
        cfg.write_text(good)
        mon = Monitor(load_config(cfg), config_path=str(cfg))
        await mon.start()
        try:
            for n, (name, content) in enumerate(HOSTILE.items(), 1):
                cfg.write_bytes(content)
                problems = await mon.reload()
                assert problems and all(p.startswith(str(cfg)) for p in problems), name
                rejected = mon.metrics.registry.get_sample_value(
                    "accmon_config_reloads_total", {"outcome": "rejected"})
                assert rejected == n, name
            assert [str(k) for k in mon.accounts] == ["masto/alice"]  # the old one runs on
            cfg.write_text(good)
            assert await mon.reload() == []
        finally:
            await mon.stop()


# --------------------------------------------------------------------------- state and port


def _valid_config(tmp_path: Path) -> str:
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(VALID)
    return str(cfg)


def _run(capsys: pytest.CaptureFixture[str], tmp_path: Path, state: str,
         port: int = 0) -> tuple[int, str]:
    code, out, err = run_cli(capsys, "run", "--config", _valid_config(tmp_path), "--state",
                             state, "--host", "127.0.0.1", "--port", str(port))
    assert out == "" and "Traceback" not in err
    return code, err


def _truncated_store(path: Path) -> None:
    store = Store(path)
    store.db.execute("CREATE TABLE filler(x)")
    for _ in range(500):
        store.db.execute("INSERT INTO filler VALUES (?)", ("x" * 500,))
    store.close()
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_or_truncated_state_file_is_one_line_with_the_fix(
        damage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "monitor.db"
    if damage == "garbage":
        state.write_bytes(b"this is not sqlite\n" * 100)
    else:
        _truncated_store(state)
    code, err = _run(capsys, tmp_path, str(state))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"state file {state}: corrupt or truncated")
    assert "move it aside" in err and "backup" in err


def test_a_newer_schema_is_one_line_with_the_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "monitor.db"
    db = sqlite3.connect(state)
    db.execute("PRAGMA user_version = 99")
    db.close()
    code, err = _run(capsys, tmp_path, str(state))
    assert code == 2 and err.count("\n") == 1
    assert str(state) in err and "newer" in err and "upgrade account-monitor" in err


def test_a_state_path_that_cannot_be_created_is_one_line_with_the_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "afile").write_text("")
    state = tmp_path / "afile" / "monitor.db"  # its "directory" is a file
    code, err = _run(capsys, tmp_path, str(state))
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"state file {state}: cannot be written")
    assert "--state" in err


@pytest.mark.parametrize("readonly", ["file", "directory"])
def test_a_read_only_state_file_is_one_line_with_the_fix(readonly: str, tmp_path: Path) -> None:
    # Permissions do not stop root, so the check runs as nobody when the tests run as root.
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"accmon-ro-{os.getpid()}-{readonly}"
    work.mkdir(mode=0o777)
    try:
        state = work / "monitor.db"
        Store(state).close()
        cfg = work / "ok.yaml"
        cfg.write_text(VALID)
        for name in os.listdir(work):
            (work / name).chmod(0o444)
        work.chmod(0o555 if readonly == "directory" else 0o777)
        drop = (lambda: (os.setgid(65534), os.setuid(65534))) if os.geteuid() == 0 else None
        result = subprocess.run(
            [sys.executable, "-m", "monitor", "run", "--config", str(cfg), "--state",
             str(state), "--port", "0"], capture_output=True, text=True, cwd=ROOT,
            preexec_fn=drop, timeout=60, env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"))
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith(f"state file {state}: cannot be written")
        assert "writable by uid" in result.stderr
    finally:
        work.chmod(0o777)
        for name in os.listdir(work):
            (work / name).unlink()
        work.rmdir()


def test_a_busy_port_is_one_line_naming_it(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        code, err = _run(capsys, tmp_path, str(tmp_path / "s.db"), port)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(f"listen address 127.0.0.1:{port}: port {port} is already in use")
    assert "--port" in err


def test_history_on_a_corrupt_state_file_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "monitor.db"
    state.write_bytes(b"\x00" * 4096)
    state.write_bytes(b"garbage" * 1000)
    code, out, err = run_cli(capsys, "history", "--state", str(state))
    assert code == 2 and out == "" and err.count("\n") == 1 and "corrupt" in err


@pytest.mark.parametrize("text", ["", "# only a comment\n", "m", "just text\n", "[1, 2]\n",
                                  "42\n", "~\n", "&a x\n"])
def test_a_file_that_is_not_a_mapping_is_one_problem(
        text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (line, path, reason), = check(tmp_path, capsys, text)
    assert (line, path) == (1, "(top level)") and "expected a mapping" in reason


def test_odd_keys_are_quoted_so_each_problem_stays_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = VALID.replace("    probe: mastodon\n",
                         '    probe: mastodon\n    "s tatus": 1\n    "a\\nb: c": 2\n')
    found = check(tmp_path, capsys, text)
    assert [(line, path) for line, path, _ in found] == [
        (4, 'platforms.m["s tatus"]'), (5, 'platforms.m["a\\nb: c"]')]


# --------------------------------------------------------------------------- fast YAML load

TRICKY_YAML = [
    VALID, BOMB, "loop: &l [*l]\n", "deep: " + "[" * 40 + "]" * 40 + "\n",
    "a: &a {k: 1, j: 0}\nb: &b {<<: *a, k: 2}\nc: {<<: [*b, *a]}\nd: {<<: [*a, *b]}\n",
    "a: &a {k: 1}\nc: {k: 0, <<: *a, z: 1}\n", "a: &a {k: 1}\nc: {<<: *a, <<: {z: 1}}\n",
    "a: {<<: 1}\n", "a: {<<: [1]}\n", "x: <<\n", "x: =\n", "? [a, b]\n: c\n", "? {a: 1}\n: c\n",
    "{1: a, 01: b}\n", "{.nan: a, .nan: b}\n", "{1: a, 1.0: b}\n", "{a: 1, a: 2}\n",
    "x: &a 1\ny: *a\n", "x: &a [1]\ny: [*a, *a]\n", "x: &a 1\nx2: &a 2\n", "bad: *undefined\n",
    "x: !!python/object:os.system\n", "x: !!binary '!!!'\n", "x: !!binary aGVsbG8=\n",
    "x: !!timestamp 2001-02-31\n", "x: 2001-12-14t21:59:43.10-05:00\n", "x: !!set {a, b}\n",
    "x: !!omap [a: 1]\n", "x: !!str 1\n", "x: ! 1\n", "---\nsecond: document\n---\nthird: x\n",
    "---\n", "", "# only a comment\n", "[1, 2]\n", "x: '\\x00'\n", "x: \"\\ud800\"\n",
    "x: " + "1" * 5000 + "\n", "%YAML 9.9\n---\nx: 1\n", "x: [" + ", ".join(["{}"] * 2000) + "]\n",
    "&r {a: *r}\n", "x: &a {y: &a 1}\n", "? &k a\n: 1\n? *k\n: 2\n", "a: {b: [c, {d: e}]}\n",
    "x: 0x1F\ny: 1_000\nz: .inf\nw: ~\nv: yes\n",
]


def _slow_load(text: str) -> tuple[str, object]:
    """The node path: compose, check, construct (what parse_config used before)."""
    try:
        root, loader = yamlsafe.compose(text)
        return "value", yamlsafe.construct(loader, root) if root is not None else None
    except yamlsafe.YamlProblems as exc:
        return "problems", [(p.line, p.path, p.reason) for p in exc.problems]
    except yamlsafe.YamlProblem as exc:
        return "problem", (exc.line, exc.path, exc.reason)


def _fast_load(text: str) -> tuple[str, object]:
    try:
        return "value", yamlsafe.load(text)
    except yamlsafe.YamlProblems as exc:
        return "problems", [(p.line, p.path, p.reason) for p in exc.problems]
    except yamlsafe.YamlProblem as exc:
        return "problem", (exc.line, exc.path, exc.reason)


def _same(a: object, b: object) -> bool:
    return repr(a) == repr(b)  # NaN keys and values compare by their text


@pytest.mark.parametrize("text", TRICKY_YAML)
def test_the_event_loader_gives_what_the_node_path_gives(text: str) -> None:
    with deadline():
        assert _same(_fast_load(text), _slow_load(text))


def test_the_event_loader_builds_plain_configs_itself() -> None:
    # Without this, load() could always give up and fall back, and pass the test above.
    bundled = (ROOT / "config" / "monitor.yaml").read_text()
    for text in (bundled, VALID, "a: &a {k: 1}\nc: {k: 0, <<: *a}\n", "x: &a [1]\ny: *a\n"):
        value = yamlsafe._EventBuilder(text).build()
        assert _same(value, _slow_load(text)[1])
    for text in (BOMB, "{a: 1, a: 2}\n", "loop: &l [*l]\n", "{.nan: a}\n"):
        with pytest.raises(yamlsafe._NotFast):
            yamlsafe._EventBuilder(text).build()


def test_aliases_stay_shared_as_the_node_path_shares_them() -> None:
    value = yamlsafe.load("x: &a [1]\ny: *a\n")
    assert value["x"] is value["y"]
