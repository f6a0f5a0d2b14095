"""The watchlist file (accounts_file: CSV or JSON lines): read line by line, each row checked
by the model an accounts: entry is, every problem as file:line: field: reason, reloadable."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from monitor import watchfile
from monitor.app import Monitor
from monitor.cli import main
from monitor.config import AccountConfig, ConfigError, load_config, parse_config
from monitor.fakes.mastodon import FakeMastodon
from monitor.model import AccountKey, State
from tests.conftest import deadline, mastodon_config, state_of, wait_for

PLATFORMS = """\
platforms:
  x: {probe: x, base_url: "https://api.x.com"}
  m: {probe: mastodon, base_url: "https://m.example"}
"""
HEADER = "platform,handle,id,protected,canary,team,owner,interval,label.tier,label.region\n"


def write_config(tmp_path: Path, name: str, body: str | bytes, accounts: str = "") -> Path:
    """A config naming ``name`` (written with ``body``) as its accounts_file."""
    (tmp_path / name).write_bytes(body.encode() if isinstance(body, str) else body)
    cfg = tmp_path / "m.yaml"
    cfg.write_text(PLATFORMS + accounts + f"accounts_file: {name}\n")
    return cfg


def problems_of(cfg: Path) -> list[tuple[str, int | None, str, str]]:
    """(file, line, field, reason) of each problem load_config finds."""
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    return [(p.file or info.value.file, p.line, p.path, p.reason) for p in info.value.problems]


def check_config(cfg: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with deadline():
        code = main(["check-config", str(cfg)])
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- reading


def test_a_csv_watchlist_means_what_the_same_yaml_entries_mean(tmp_path: Path) -> None:
    csv_body = HEADER + (
        "x,POTUS,822215679726100480,true,,core,ops@example.com,,1,us\n"
        'm,"Gargron",, false ,yes,,,5m,,\n'
        "x, padded ,,,,,,1h30m,2,\n"
        "\n"  # blank lines are skipped
        "x,short\n")  # cells a short row leaves off are empty
    yaml_accounts = """accounts:
  - {platform: x, handle: POTUS, id: "822215679726100480", protected: true, team: core,
     owner: ops@example.com, labels: {tier: "1", region: us}}
  - {platform: m, handle: Gargron, canary: true, interval: 5m}
  - {platform: x, handle: padded, interval: 1h30m, labels: {tier: "2"}}
  - {platform: x, handle: short}
"""
    from_file = load_config(write_config(tmp_path, "w.csv", csv_body))
    from_yaml = parse_config(PLATFORMS + yaml_accounts, env={})
    assert from_file.accounts == from_yaml.accounts
    assert from_file.accounts_file == "w.csv"
    assert [from_file.policy(a).interval for a in from_file.accounts] == [60, 300, 5400, 60]


def test_a_json_lines_watchlist_takes_accounts_entries(tmp_path: Path) -> None:
    rows = [{"platform": "x", "handle": "POTUS", "id": 822215679726100480, "protected": True,
             "labels": {"tier": "1"}},
            {"platform": "m", "handle": "Gargron", "interval": "5m", "failure_threshold": 3},
            {"platform": "x", "handle": "jack", "id": None, "team": "core"}]
    body = "\n".join(json.dumps(r) for r in rows) + "\n\n"
    for name in ("w.jsonl", "w.ndjson"):
        config = load_config(write_config(tmp_path, name, body))
        assert config.accounts == [AccountConfig(**r) for r in rows]  # type: ignore[arg-type]
        assert config.accounts[0].id == "822215679726100480"  # a number becomes text


def test_yaml_accounts_and_the_file_are_watched_together(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "w.csv", "platform,handle\nx,a\nx,b\n",
                       "accounts:\n  - {platform: x, handle: POTUS}\n")
    assert [str(a.key) for a in load_config(cfg).accounts] == ["x/POTUS", "x/a", "x/b"]


def test_the_path_is_relative_to_the_config_file(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "w.csv").write_text("platform,handle\nx,a\n")
    cfg = tmp_path / "m.yaml"
    cfg.write_text(PLATFORMS + "accounts_file: lists/w.csv\n")
    monkeypatch.chdir("/")
    assert [a.handle for a in load_config(cfg).accounts] == ["a"]
    absolute = tmp_path / "abs.yaml"
    absolute.write_text(PLATFORMS + f"accounts_file: {tmp_path / 'lists' / 'w.csv'}\n")
    assert len(load_config(absolute).accounts) == 1


def test_shared_values_are_one_object_and_labels_are_read_only(tmp_path: Path) -> None:
    body = "platform,handle,team,label.tier\n" + "".join(
        f"{'mx'[i % 2]},u{i},core,{i % 2}\n" for i in range(6))
    body += 'x,odd,core,"1"\n'  # quoted: read by the csv module, still shared
    accounts = load_config(write_config(tmp_path, "w.csv", body)).accounts
    assert len({id(a.platform) for a in accounts}) == 2
    assert len({id(a.team) for a in accounts}) == 1
    assert len({id(a.labels) for a in accounts}) == 2
    with pytest.raises(TypeError):
        accounts[0].labels["tier"] = "9"  # type: ignore[index]
    jsonl = "".join(json.dumps({"platform": "x", "handle": f"u{i}", "labels": {"a": "b"}})
                    + "\n" for i in range(3))
    accounts = load_config(write_config(tmp_path, "w.jsonl", jsonl)).accounts
    assert len({id(a.labels) for a in accounts}) == 1


# --------------------------------------------------------------------------- the fast path

CSV_ROWS = [
    "x,a,,,,,,,,", "x,a,1,true,false,t,o,,1,eu", "x,a,1,TRUE,,,,,,", "x,a,,yes,,,,,,",
    "x,a,,1,,,,,,", "x,a,,maybe,,,,,,", "x,a,,,,,,5m,,", "x,a,,,,,,often,,", ",a,,,,,,,,",
    "x,,,,,,,,,", " x , a ,  , true ,,  ,,,, ", "x,a,,,,,,,2,", "x,a,ID,false,true,,,,,",
    "x,é ü,,,,,,,,", "x,a\tb,,,,,,,,",
]
JSON_ROWS: list[Any] = [
    {"platform": "x", "handle": "a"}, {"platform": "x", "handle": "a", "id": "1"},
    {"platform": "x", "handle": "a", "id": 1}, {"platform": "x", "handle": "a", "id": None},
    {"platform": "x", "handle": "a", "protected": True, "canary": False},
    {"platform": "x", "handle": "a", "protected": "true"},
    {"platform": "x", "handle": "a", "protected": None},
    {"platform": "x", "handle": "a", "protected": 1}, {"platform": "x", "handle": ""},
    {"platform": "", "handle": "a"}, {"platform": 5, "handle": "a"}, {"handle": "a"},
    {"platform": "x", "handle": "a", "team": None, "owner": "o"},
    {"platform": "x", "handle": "a", "team": 3},
    {"platform": "x", "handle": "a", "labels": {"k": "v"}},
    {"platform": "x", "handle": "a", "labels": {}},
    {"platform": "x", "handle": "a", "labels": {"k": 1}},
    {"platform": "x", "handle": "a", "labels": ["k"]},
    {"platform": "x", "handle": "a", "interval": "5m"},
    {"platform": "x", "handle": "a", "colour": "red"},
]


def test_the_fast_path_knows_the_model_it_stands_in_for() -> None:
    # Fails when AccountConfig changes: update watchfile._SHAPE and its fast path with it.
    assert watchfile.model_shape(AccountConfig) == watchfile._SHAPE
    assert watchfile._builder() is not None


def _model(values: dict[str, Any]) -> AccountConfig | str:
    try:
        return AccountConfig(**values)
    except ValidationError as exc:
        return f"{exc.error_count()} problem(s)"


def test_the_fast_path_builds_exactly_what_the_model_builds(tmp_path: Path) -> None:
    reader = watchfile._Reader(str(tmp_path / "w.csv"), None, {})
    plan = reader._header(HEADER.rstrip("\n").split(","))
    assert plan is not None
    fast_rows = 0
    for text in CSV_ROWS:
        row = text.split(",")
        fast = watchfile._csv_fast(row, plan, reader)
        if fast is not None:
            fast_rows += 1
            assert fast == _model(watchfile._csv_fields(plan.columns, row)), text
    fast_objects = 0
    for values in JSON_ROWS:
        fast = watchfile._json_fast(dict(values), reader)
        if fast is not None:
            fast_objects += 1
            assert fast == _model(values), values
    assert (fast_rows, fast_objects) == (7, 8)  # the rest went to the model


@pytest.mark.parametrize("name", ["w.csv", "w.jsonl"])
def test_a_file_reads_the_same_with_and_without_the_fast_path(name: str,
                                                               tmp_path: Path) -> None:
    path = tmp_path / name
    if name.endswith(".csv"):
        path.write_text(HEADER + "".join(CSV_ROWS[i].replace(",a,", f",u{i},") + "\n"
                                         for i in range(len(CSV_ROWS))))
    else:
        path.write_text("".join(json.dumps({**v, "handle": f"u{i}"}) + "\n"
                                for i, v in enumerate(JSON_ROWS)))
    fast, model = (watchfile.read(str(path), fast=f) for f in (True, False))
    assert fast.accounts == model.accounts and len(fast.accounts) > 5
    assert fast.problems == model.problems and fast.problems


def test_rows_the_fast_path_leaves_to_the_model_still_load(tmp_path: Path) -> None:
    body = "platform,handle,protected,interval\nx,a,YES,\nx,b,,5m\nx,c,0,\n"
    accounts = load_config(write_config(tmp_path, "w.csv", body)).accounts
    assert [(a.protected, a.interval) for a in accounts] == [(True, None), (False, 300),
                                                            (False, None)]


# --------------------------------------------------------------------------- problems


def test_every_row_problem_names_the_file_line_and_column(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    body = ("platform,handle,protected,interval,label.tier\n"
            "x,alice,true,,1\n"
            "x,bob,maybe,often,\n"
            "y,carol,,,\n"
            "x,alice,,,\n"
            "x,POTUS,,,\n"
            'x,"open,,,\n'
            "x,d,,,,extra\n"
            ",e,,,\n"
            "x,,,,\n"
            'x,"f"g,,,\n')
    cfg = write_config(tmp_path, "w.csv", body,
                       "accounts:\n  - {platform: m, handle: a}\n  - {platform: x, "
                       "handle: POTUS}\n")
    code, _, err = check_config(cfg, capsys)
    assert code == 2
    file = str(tmp_path / "w.csv")
    header, *lines = err.splitlines()
    assert header == f"{cfg}: 10 problem(s):"
    found = {(int(m[1]), m[2]): m[3] for m in
             (re.match(rf"^  {re.escape(file)}:(\d+): (\S+): (.+)$", line) for line in lines)
             if m}
    assert len(found) == 10, err
    assert found[(3, "protected")] == "expected true or false, found 'maybe'"
    assert "invalid duration 'often'" in found[(3, "interval")]
    assert found[(4, "platform")] == "'y' is not configured under platforms (have: m, x)"
    assert found[(5, "handle")] == "x/alice is listed twice (first on line 2)"
    assert found[(6, "handle")] == (f"x/POTUS is listed twice (first at {cfg}:6, "
                                    "accounts[1]); keep one of them")
    assert "quoted value is not closed" in found[(7, "(row)")]
    assert "6 values, but the header (line 1) names 5 columns" in found[(8, "(row)")]
    assert found[(9, "platform")].startswith("missing")
    assert found[(10, "handle")].startswith("missing")
    assert "not valid CSV" in found[(11, "(row)")]
    assert (2, "handle") not in found  # the good row is fine


def test_header_problems_are_named_and_stop_the_file(tmp_path: Path) -> None:
    found = problems_of(write_config(tmp_path, "w.csv",
                                     "platform,handel,labels,platform\nx,a,b,x\n"))
    assert [(line, field) for _, line, field, _ in found] == [
        (1, "handel"), (1, "labels"), (1, "handle"), (1, "platform")]
    assert "unknown column" in found[0][3] and "label.<name>" in found[1][3]
    assert "missing column" in found[2][3] and "named twice" in found[3][3]
    (file, line, field, reason), = problems_of(write_config(tmp_path, "w.csv", "\n\n"))
    assert (file.endswith("m.yaml"), line, field) == (True, 4, "accounts_file")
    assert "header row" in reason


def test_json_lines_problems(tmp_path: Path) -> None:
    body = ('{"platform": "x", "handle": "a"}\n'
            "{not json\n"
            "[1, 2]\n"
            '{"platform": "x", "handle": "b", "colour": "red", "labels": {"k": 1}}\n'
            + "[" * 5000 + "]" * 5000 + "\n"
            + '{"platform": "x", "handle": "c", "id": ' + "9" * 5000 + "}\n")
    found = [(line, field, reason) for _, line, field, reason in
             problems_of(write_config(tmp_path, "w.jsonl", body))]
    assert found[0][:2] == (2, "(row)") and "not valid JSON" in found[0][2]
    assert found[1][:2] == (3, "(row)") and "expected a JSON object" in found[1][2]
    assert {(line, field) for line, field, _ in found[2:4]} == {(4, "colour"),
                                                              (4, "labels.k")}
    assert found[4][:2] == (5, "(row)") and "not valid JSON" in found[4][2]
    assert found[5][:2] == (6, "(row)") and "not valid JSON" in found[5][2]


def test_problems_are_capped_and_the_rest_counted(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    body = "platform,handle,protected\n" + "".join(f"x,u{i},maybe\n" for i in range(250))
    code, _, err = check_config(write_config(tmp_path, "w.csv", body), capsys)
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 1 + watchfile.MAX_PROBLEMS + 1
    assert lines[-1] == (f"  {tmp_path / 'w.csv'}: (top level): 150 more problem(s) not "
                         "listed (the first 100 are)")


BAD_BYTES = {
    "latin-1": ("platform,handle\nx,zoë\nx,b\n".encode("latin-1"), 2, "byte 0xeb at column 5"),
    "nul": (b"platform,handle\nx,a\x00b\nx,c\n", 2, "NUL byte at column 4"),
    "utf-16": ("platform,handle\nx,a\n".encode("utf-16"), 1, "UTF-16"),
    "long line": (b"platform,handle\nx," + b"a" * (watchfile.MAX_LINE_BYTES + 10) + b"\nx,b\n",
                  2, "longer than 64 KiB"),
}


@pytest.mark.parametrize("name", BAD_BYTES)
def test_bytes_that_are_not_a_utf8_line_are_one_problem_each(name: str,
                                                             tmp_path: Path) -> None:
    body, line, fragment = BAD_BYTES[name]
    (file, found_line, field, reason), *_ = problems_of(write_config(tmp_path, "w.csv", body))
    assert (file, found_line, field) == (str(tmp_path / "w.csv"), line, "(row)")
    assert fragment in reason


def test_a_utf8_bom_is_fine(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "w.csv", b"\xef\xbb\xbfplatform,handle\nx,a\n")
    assert [a.handle for a in load_config(cfg).accounts] == ["a"]


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo", "format"])
def test_a_file_that_cannot_be_read_is_a_problem_of_accounts_file(kind: str,
                                                                  tmp_path: Path) -> None:
    name = "w.txt" if kind == "format" else "w.csv"
    cfg = tmp_path / "m.yaml"
    cfg.write_text(PLATFORMS + f"accounts_file: {name}\n")
    if kind == "directory":
        (tmp_path / name).mkdir()
    elif kind == "fifo":
        os.mkfifo(tmp_path / name)  # opening it would block until a writer came
    elif kind == "format":
        (tmp_path / name).write_text("x,a\n")
    with deadline():
        (file, line, field, reason), = problems_of(cfg)
    assert (file, line, field) == (str(cfg), 4, "accounts_file")
    assert {"missing": "No such file", "directory": "not a regular file",
            "fifo": "not a regular file", "format": "unknown format"}[kind] in reason


def test_an_invalid_config_still_lists_the_files_problems(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, "w.csv", "platform,handle,protected\nzz,a,maybe\n")
    cfg.write_text(cfg.read_text().replace('"https://api.x.com"', "api.x.com"))
    found = problems_of(cfg)
    assert ("platforms.x.base_url" in {f for _, _, f, _ in found})
    assert (str(tmp_path / "w.csv"), 2, "protected") in {p[:3] for p in found}
    assert "platform" not in {f for file, _, f, _ in found if file.endswith("w.csv")}


# --------------------------------------------------------------------------- reload


async def test_reload_rereads_the_file_and_a_bad_one_keeps_the_running_watchlist(
        tmp_path: Path) -> None:
    masto = FakeMastodon({"alice": "present", "bob": "present"})
    async with masto.running() as base:
        cfg = tmp_path / "m.yaml"
        cfg.write_text(mastodon_config(base, [], state_path=str(tmp_path / "s.db"))
                       .replace("accounts:\n", "accounts_file: w.csv\n"))
        watch = tmp_path / "w.csv"
        watch.write_text("platform,handle,protected\nmasto,alice,true\n")
        mon = Monitor(load_config(cfg), config_path=str(cfg))
        await mon.start()
        try:
            await wait_for(lambda: state_of(mon, "masto", "alice") is State.UP, what="alice")
            watch.write_text("platform,handle,protected\nmasto,alice,true\nmasto,bob,\n")
            assert await mon.reload() == []
            await wait_for(lambda: state_of(mon, "masto", "bob") is State.UP, what="bob")
            assert not mon.accounts[AccountKey("masto", "bob")].config.protected

            watch.write_text("platform,handle,protected\nmasto,alice,true\nmasto,bob,maybe\n")
            problems = await mon.reload()
            assert problems == [f"{watch}:3: protected: expected true or false, found "
                                "'maybe'"]
            assert set(mon.accounts) == {AccountKey("masto", "alice"),
                                         AccountKey("masto", "bob")}  # kept, both watched
            watch.unlink()
            (problem,) = await mon.reload()
            assert problem.startswith(f"{cfg}:") and "No such file" in problem
            assert len(mon.accounts) == 2
            rejected = mon.metrics.registry.get_sample_value(
                "accmon_config_reloads_total", {"outcome": "rejected"})
            assert rejected == 2.0
            watch.write_text("platform,handle\nmasto,bob\n")
            assert await mon.reload() == []
            assert set(mon.accounts) == {AccountKey("masto", "bob")}
        finally:
            await mon.stop()
