"""Fuzz check-config with mutations of the bundled config: never a traceback, never a hang.

Each example mutates ``config/monitor.yaml`` (a hostile value somewhere, a key removed or
added, bytes inserted, a line duplicated, the file cut short, a YAML trick spliced in) and
runs ``check-config`` in-process through the CLI's ``main()`` under a SIGALRM deadline. It
must exit 0 (and say OK) or 2 (and list problems as ``file[:line]: field.path: reason``);
any exception, or running past the deadline, fails the example.
"""

from __future__ import annotations

import contextlib
import copy
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.cli import main
from tests.conftest import deadline

ROOT = Path(__file__).resolve().parent.parent
BUNDLED_TEXT = (ROOT / "config" / "monitor.yaml").read_text()
BUNDLED = yaml.safe_load(BUNDLED_TEXT)
DEADLINE_SECONDS = 10.0

HOSTILE_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2**64, 10**400, float("nan"), float("inf"), float("-inf"),
    1e308, -0.0, "", " ", "x" * 10_000, "\x00", "\x01", "\x1b[2J", "é", "\u202e", "{}", "{0}",
    "{handle", "handle}", "{user}", "{handle.x}", "{handle!r}", "{base_url}/{id:>5}",
    "${NOPE}", "${NOPE:-}", "${", ".nan", ".inf", "99999999999999999999999d", "1e400",
    "-5s", "0s", "1ms", "366d", "367d", "1h30m", "5 minutes", "64MiB", "65MiB",
    "99999999999GiB", "0/0", "5/3", "1/1024", "/dev/zero", "/", "/etc/passwd", "/nonexistent",
    "http://", "https://", "ws://x", "GET", "present", "suspended", [], {}, [[]], [None],
    {"a": {"b": {"c": {}}}}, list(range(100)), {"status": "x"}, b"\xff\x00binary",
]
KEYS: list[Any] = ["token_file", "routing_key_file", "webhook_url_file", "unknown", "interval",
                   "url", "rules", "catalogue", "probe", "id", "shard", "<<", "handle", 1,
                   "x" * 300]
SNIPPETS = [
    "bomb0: &b0 [x, x, x, x, x, x, x, x, x]\nbomb1: &b1 [*b0, *b0, *b0, *b0, *b0, *b0, *b0, *b0]"
    "\nbomb2: &b2 [*b1, *b1, *b1, *b1, *b1, *b1, *b1, *b1]\nbomb3: [*b2, *b2, *b2, *b2, *b2]",
    "loop: &loop [*loop]", "bad: *undefined", "? [a, b]\n: c", "x: !!python/object:os.system",
    "x: !!binary '!!!'", "x: !!timestamp 2001-02-31", "x: " + "[" * 60 + "]" * 60,
    "%YAML 9.9\n---", "---\nsecond: document", "platforms: {}", "accounts: []", "\t- tab",
    "x: '\\x00'", "x: \"\\ud800\"", "<<: {monitor: {listen_port: 70000}}", "x: &a 1\ny: *a",
    "x: " + "1" * 5000, "x: [" + ", ".join(["{}"] * 2000) + "]",
]


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _paths(value, (*prefix, i))


PATHS = [p for p in _paths(BUNDLED) if p]
def _walk(node: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        node = node[part]
    return node


MAPPING_PATHS = [p for p in _paths(BUNDLED) if isinstance(_walk(BUNDLED, p), dict)]


def _dump(data: Any) -> bytes:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode()


@st.composite
def structural(draw: st.DrawFn) -> bytes:
    """A value replaced, a key removed or a key added, then dumped back to YAML."""
    data = copy.deepcopy(BUNDLED)
    kind = draw(st.sampled_from(["replace", "delete", "add"]))
    if kind == "add":
        parent = _walk(data, draw(st.sampled_from(MAPPING_PATHS)))
        parent[draw(st.sampled_from(KEYS))] = draw(_values())
        return _dump(data)
    path = draw(st.sampled_from(PATHS))
    parent = _walk(data, path[:-1])
    if kind == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(_values())
    return _dump(data)


def _values() -> st.SearchStrategy[Any]:
    text = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
    return st.one_of(st.sampled_from(HOSTILE_VALUES), text, st.integers(),
                     st.floats(allow_nan=True, allow_infinity=True))


@st.composite
def textual(draw: st.DrawFn) -> bytes:
    """Bytes inserted, a range cut, a line duplicated, the file cut short or a trick added."""
    data = BUNDLED_TEXT.encode()
    kind = draw(st.sampled_from(["insert", "cut", "duplicate", "truncate", "snippet"]))
    at = draw(st.integers(0, len(data)))
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=8)) + data[at:]
    if kind == "cut":
        return data[:at] + data[at + draw(st.integers(1, 200)):]
    if kind == "truncate":
        return data[:at]
    lines = data.split(b"\n")
    i = draw(st.integers(0, len(lines) - 1))
    if kind == "duplicate":
        return b"\n".join(lines[:i + 1] + lines[i:])
    snippet = draw(st.sampled_from(SNIPPETS)).encode()
    if draw(st.booleans()):
        return data + b"\n" + snippet + b"\n"
    indent = re.match(rb"^ *", lines[i]).group(0)  # type: ignore[union-attr]
    spliced = [indent + line for line in snippet.split(b"\n")]
    return b"\n".join(lines[:i] + spliced + lines[i:])




# A field path is plain (platforms.x.rules.url) or quotes odd keys: accounts[0]["a b"].
_PATH = r'(?:\(top level\)|(?:[^\s"]|"(?:[^"\\]|\\.)*")+)'
_PROBLEM = re.compile(rf"^  (?P<file>.+?)(?::\d+)?: {_PATH}: .+$")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@pytest.mark.slow
@given(content=st.one_of(structural(), textual()))
def test_check_config_survives_mutations_of_the_bundled_config(workdir: Path,
                                                               content: bytes) -> None:
    cfg = workdir / "mutated.yaml"
    cfg.write_bytes(content)
    out, err = io.StringIO(), io.StringIO()
    with deadline(DEADLINE_SECONDS), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        code = main(["check-config", str(cfg)])
    assert code in (0, 2), (code, err.getvalue())
    if code == 0:
        assert out.getvalue().startswith(f"{cfg}: OK")
        return
    header, *problems = err.getvalue().splitlines()
    assert header.startswith(f"{cfg}: ") and problems, err.getvalue()
    for line in problems:
        match = _PROBLEM.match(line)
        assert match and match["file"] == str(cfg), line

