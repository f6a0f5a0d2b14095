"""A watchlist file: one account per line, in CSV or JSON lines, for watchlists too big for
YAML (a million accounts load in seconds, and each is checked with its line number).

The config names it with ``accounts_file: path`` (relative to the config file); its
accounts join the config's own ``accounts:`` and the two together must not list an account
twice. The format follows the name:

* ``.csv`` -- a header row names the columns, in any order: ``platform`` and ``handle``
  (required), and any of ``id``, ``protected``, ``canary``, ``team``, ``owner``, ``interval``,
  ``failure_threshold``, ``recovery_threshold``, ``confirm_interval``, ``staleness``, with
  labels as one column each, ``label.<name>`` (a spreadsheet edits them as it edits any
  column; a JSON cell inside CSV would not survive one). Values are trimmed; an empty cell
  is an unset field (a label left empty is not set), and so are the cells a short row leaves
  off at its end. Quote a value that holds a comma (RFC 4180: ``"a,b"``, a quote doubled
  inside); a value may not run onto the next line.
* ``.jsonl`` / ``.ndjson`` -- one JSON object per line, the fields of an ``accounts:`` entry
  (``{"platform": "x", "handle": "POTUS", "protected": true, "labels": {"tier": "1"}}``).

Blank lines are skipped. Each row is validated by the same model as an ``accounts:`` entry
(:class:`monitor.config.AccountConfig`), so a value means the same in all three places.

The file is read line by line, never whole: a line may hold at most
:data:`MAX_LINE_BYTES`, the file :data:`MAX_FILE_BYTES` and :data:`MAX_ACCOUNTS` accounts;
it must be a regular file in UTF-8 (a BOM is allowed). Every problem is reported as
``file:line: field: reason``, up to :data:`MAX_PROBLEMS` of them and a count of the rest.
"""

from __future__ import annotations

import csv
import gc
import json
import os
import stat
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from functools import cache
from types import MappingProxyType
from typing import Any, BinaryIO

from pydantic import TypeAdapter, ValidationError

from monitor.config_types import shown
from monitor.yamlsafe import join_path

# monitor.config (which defines AccountConfig and imports this module) hands the model over
# with use_model(); it is reached through _model().

MAX_FILE_BYTES = 1024**3  # a million accounts are ~40-80 MB; a gigabyte is the wrong file
MAX_LINE_BYTES = 64 * 1024  # an account is a few hundred bytes
MAX_ACCOUNTS = 5_000_000  # ~5 GB of watchlist: shard it over several monitors instead
MAX_PROBLEMS = 100  # listed; the rest are counted
# Values many accounts share (platform, team, owner, a label set, an interval) are kept
# once: a million accounts on three platforms hold three platform strings, not a million.
MAX_SHARED = 10_000

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
LABEL_PREFIX = "label."
ROW = "(row)"  # the field of a problem with the row (or line) as a whole
_SHARED_FIELDS = ("platform", "team", "owner", "interval", "confirm_interval", "staleness")


@dataclass(frozen=True, slots=True)
class RowProblem:
    """One problem at ``line`` of the file (``None``: the file as a whole)."""

    line: int | None
    field: str  # a column (CSV) or a key (JSON lines); "" for the row or the file
    reason: str
    listed_at: int | None = None  # the index in the config's accounts: it repeats


@dataclass(slots=True)
class Watchfile:
    """What a watchlist file holds: its valid accounts, and every problem found."""

    accounts: list[Any] = field(default_factory=list)  # AccountConfig, in file order
    problems: list[RowProblem] = field(default_factory=list)  # at most MAX_PROBLEMS
    unlisted: int = 0  # problems found beyond MAX_PROBLEMS

    @property
    def ok(self) -> bool:
        return not self.problems


def format_of(path: str) -> str | None:
    """``csv`` or ``jsonl`` by the file's extension, None for any other."""
    return FORMATS.get(os.path.splitext(path)[1].lower())


def read(path: str, *, platforms: Collection[str] | None = None,
         listed: Mapping[tuple[str, str], int] | None = None, fast: bool = True) -> Watchfile:
    """Read and validate the watchlist file at ``path``.

    ``platforms``: the configured platform names each row's ``platform`` must be one of
    (None: not checked, the config itself is invalid). ``listed``: (platform, handle) -> index
    of the config's own ``accounts:``, so a row repeating one is a problem naming both.
    ``fast=False`` sends every row through the model (bench/watchlist_load.py compares).
    Never raises for bad input: every problem is in the result.
    """
    reader = _Reader(path, platforms, listed or {})
    reader.fast = fast
    with collector_paused():
        reader.run()
    return reader.result


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while a watchlist is built: a million new objects that
    make no cycles would otherwise trigger full collections that walk every one of them
    (1M CSV rows: 6.1 s -> 4.9 s). The collector runs again, as before, afterwards."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# --------------------------------------------------------------------------- reading


class _Reader:
    def __init__(self, path: str, platforms: Collection[str] | None,
                 listed: Mapping[tuple[str, str], int]) -> None:
        self.path = path
        self.platforms = platforms
        self.listed = listed
        self.result = Watchfile()
        self.seen: dict[str, dict[str, int]] = {}  # platform -> handle -> line
        self.shared: dict[Any, Any] = {}  # see share()
        self.label_sets: dict[tuple[tuple[str, str], ...], Mapping[str, str]] = {}
        self.line = 0  # the line being read
        self.adapter = _adapter()
        self.fast = True  # plain rows built without the model (see _csv_fast)

    def problem(self, line: int | None, name: str, reason: str,
                listed_at: int | None = None) -> None:
        if len(self.result.problems) < MAX_PROBLEMS:
            self.result.problems.append(RowProblem(line, name, reason, listed_at))
        else:
            self.result.unlisted += 1

    def run(self) -> None:
        kind = format_of(self.path)
        if kind is None:
            self.problem(None, "", "unknown format: name the file .csv, .jsonl or .ndjson")
            return
        handle = self._open()
        if handle is None:
            return
        with handle:
            lines = self._lines(handle)
            if kind == "csv":
                self._csv(lines)
            else:
                self._jsonl(lines)

    def _open(self) -> BinaryIO | None:
        """The file, opened only once it is known to be a regular file of a sane size (a FIFO
        would block the open, ``/dev/zero`` would never end)."""
        try:
            info = os.stat(self.path)
            if not stat.S_ISREG(info.st_mode):
                self.problem(None, "", "not a regular file; give the path of a CSV or JSON "
                                       "lines file")
                return None
            if info.st_size > MAX_FILE_BYTES:
                self.problem(None, "", f"{info.st_size} bytes, more than the "
                                       f"{MAX_FILE_BYTES >> 20} MiB allowed; check it is the "
                                       "right file")
                return None
            return open(self.path, "rb", buffering=1 << 20)  # closed by run()
        except OSError as exc:
            self.problem(None, "", f"cannot read it: {exc.strerror or exc}")
            return None

    def _lines(self, handle: BinaryIO) -> Iterator[str]:
        """Each line as text, ``self.line`` its number; a bad line is a problem and skipped."""
        total = 0
        while True:
            raw = handle.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            self.line += 1
            total += len(raw)
            if total > MAX_FILE_BYTES:  # it grew while being read
                self.problem(self.line, ROW, f"the file is more than {MAX_FILE_BYTES >> 20} "
                                            "MiB; check it is the right file")
                return
            if len(raw) > MAX_LINE_BYTES:
                total += self._skip_rest(handle)
                self.problem(self.line, ROW, f"longer than {MAX_LINE_BYTES >> 10} KiB; one "
                                            "account per line")
                continue
            if self.line == 1:
                if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
                    self.problem(1, ROW, "the file is UTF-16; save it as UTF-8")
                    return
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            nul = raw.find(b"\0")
            if nul >= 0:
                self.problem(self.line, ROW, f"a NUL byte at column {nul + 1}: "
                                            "this looks like a binary file; give the CSV or "
                                            "JSON lines watchlist")
                return
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                self.problem(self.line, ROW, f"not UTF-8: byte 0x{raw[exc.start]:02x} at "
                                            f"column {exc.start + 1}; save the file as UTF-8")
                continue
            yield text

    def _skip_rest(self, handle: BinaryIO) -> int:
        skipped = 0
        while True:
            chunk = handle.readline(MAX_LINE_BYTES)
            skipped += len(chunk)
            if not chunk or chunk.endswith(b"\n") or skipped > MAX_FILE_BYTES:
                return skipped

    # ----------------------------------------------------------------------- formats

    def _csv(self, lines: Iterator[str]) -> None:
        feed = _OneLine()
        rows = csv.reader(feed, strict=True)
        header: _Columns | None = None
        for text in lines:
            body = text.rstrip("\r\n")
            if '"' not in body and "\r" not in body:  # nothing quoted: a split is the parse
                row = body.split(",")
            else:
                feed.line = text
                try:
                    row = next(rows)
                except csv.Error as exc:
                    self.problem(self.line, ROW, _csv_reason(exc))
                    if header is None:
                        return
                    continue
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # a blank line
            if header is None:
                header = self._header(row)
                if header is None:
                    return
                continue
            if len(row) > header.width:
                self.problem(self.line, ROW, f"{len(row)} values, but the header (line "
                                             f"{header.line}) names {header.width} columns; "
                                             "quote a value that holds a comma")
                continue
            self._row(row, header)
        if header is None and not self.result.problems:
            self.problem(None, "", "empty: a CSV watchlist starts with a header row naming "
                                   "its columns (platform,handle,...)")

    def _header(self, row: list[str]) -> _Columns | None:
        """What each column holds, from the header row (None: the header is wrong)."""
        names = [cell.strip() for cell in row]
        known = {f.name for f in fields(_model())} - {"labels"}
        columns: list[tuple[str, bool]] = []
        bad = False
        for name in names:
            if name.startswith(LABEL_PREFIX) and len(name) > len(LABEL_PREFIX):
                columns.append((name[len(LABEL_PREFIX):], True))
                continue
            if name not in known:
                hint = " (labels are one column each: label.<name>)" if name == "labels" else ""
                self.problem(self.line, _path(name), f"unknown column{hint}; the columns are "
                             f"{', '.join(sorted(known))} and label.<name>")
                bad = True
            columns.append((name, False))
        for required in ("platform", "handle"):
            if required not in names:
                self.problem(self.line, required, "missing column: the header row must name "
                                                  "platform and handle")
                bad = True
        for name in sorted({n for n in names if names.count(n) > 1}):
            self.problem(self.line, _path(name), "this column is named twice")
            bad = True
        return None if bad else _Columns(columns, self.line)

    def _jsonl(self, lines: Iterator[str]) -> None:
        for text in lines:
            if not text.strip():
                continue
            try:
                values = json.loads(text)
            except RecursionError:
                self.problem(self.line, ROW, "not valid JSON: nested too deeply")
                continue
            except ValueError as exc:  # JSONDecodeError, or an integer of 5,000 digits
                self.problem(self.line, ROW, f"not valid JSON: {_short(str(exc))}")
                continue
            if not isinstance(values, dict):
                self.problem(self.line, ROW, f"expected a JSON object (an accounts: entry), "
                                            f"found {shown(values)}")
                continue
            self._object(values)

    # ----------------------------------------------------------------------- rows

    def _row(self, row: list[str], plan: _Columns) -> None:
        """One CSV row: built directly when it holds only plain values, else by the model."""
        if len(row) < plan.width:
            row = row + [""] * (plan.width - len(row))
        account = _csv_fast(row, plan, self) if self.fast else None
        if account is None:
            account = self._validated(_csv_fields(plan.columns, row), csv_labels=True)
        if account is not None:
            self._keep(account)

    def _object(self, values: dict[str, Any]) -> None:
        """One JSON object: built directly when its values are plain, else by the model."""
        account = _json_fast(values, self) if self.fast else None
        if account is None:
            account = self._validated(values, csv_labels=False)
        if account is not None:
            self._keep(account)

    def _validated(self, values: dict[str, Any], *, csv_labels: bool) -> Any | None:
        """The row through :class:`~monitor.config.AccountConfig` (None: its problems noted)."""
        try:
            account = self.adapter.validate_python(values)
        except ValidationError as exc:
            for error in exc.errors(include_url=False):
                self.problem(self.line, _field(error["loc"], csv_labels), _reason(error))
            return None
        self._share_fields(account)
        return account

    def _keep(self, account: Any) -> None:
        """Keep a valid account, unless its platform is unknown or it is listed already."""
        line = self.line
        if self.platforms is not None and account.platform not in self.platforms:
            self.problem(line, "platform", f"{shown(account.platform)} is not configured "
                                           f"under platforms (have: "
                                           f"{', '.join(sorted(self.platforms)) or 'none'})")
            return
        handles = self.seen.get(account.platform)
        if handles is None:
            handles = self.seen[account.platform] = {}
        first = handles.get(account.handle)
        if first is not None:
            self.problem(line, "handle", f"{account.platform}/{_short(account.handle)} is "
                                         f"listed twice (first on line {first})")
            return
        listed_at = self.listed.get((account.platform, account.handle)) if self.listed else None
        if listed_at is not None:
            self.problem(line, "handle", f"{account.platform}/{_short(account.handle)} is "
                                         "listed twice", listed_at)
            return
        if len(self.result.accounts) >= MAX_ACCOUNTS:
            self.problem(line, ROW, f"more than {MAX_ACCOUNTS:,} accounts: shard them over "
                                    "several monitors (monitor.shard)")
            return
        handles[account.handle] = line
        self.result.accounts.append(account)

    def share(self, value: Any) -> Any:
        """One object for equal values, while there are few distinct ones."""
        kept = self.shared.get(value)
        if kept is not None:
            return kept
        if len(self.shared) < MAX_SHARED:
            self.shared[value] = value
        return value

    def label_set(self, labels: dict[str, str]) -> Mapping[str, str]:
        """A read-only label set, one object for each distinct one (while there are few)."""
        items = tuple(labels.items())
        kept = self.label_sets.get(items)
        if kept is None:
            kept = MappingProxyType(labels)
            if len(self.label_sets) < MAX_SHARED:
                self.label_sets[items] = kept
        return kept

    def _share_fields(self, account: Any) -> None:
        """What the model built anew for each account becomes one shared object: strings,
        durations and label sets (the account is ours alone yet, so it may be set)."""
        for name in _SHARED_FIELDS:
            value = getattr(account, name)
            if value is not None:
                object.__setattr__(account, name, self.share(value))
        if account.labels:
            object.__setattr__(account, "labels", self.label_set(dict(account.labels)))


_FAST_FIELDS = ("platform", "handle", "id", "protected", "canary", "team", "owner", "labels")
_BOOLS = {"true": True, "false": False, "": False}


class _Columns:
    """Where each field is in a CSV row, from its header."""

    def __init__(self, columns: list[tuple[str, bool]], line: int) -> None:
        self.columns = columns  # (field or label name, is a label), in order
        self.width = len(columns)
        self.line = line  # the header's
        where = {name: i for i, (name, is_label) in enumerate(columns) if not is_label}
        self.platform, self.handle = where["platform"], where["handle"]
        self.id, self.protected, self.canary, self.team, self.owner = (
            where.get(name) for name in ("id", "protected", "canary", "team", "owner"))
        self.labels = [(name, i) for i, (name, is_label) in enumerate(columns) if is_label]
        # Columns only the model reads (durations, thresholds): set, the row takes its path.
        self.others = [i for name, i in where.items() if name not in _FAST_FIELDS]


def _csv_fast(row: list[str], plan: _Columns, reader: _Reader) -> Any | None:
    """The account of a CSV row of plain values (text, ``true``/``false``, labels), exactly as
    the model would build it; None for anything else, which the model then reads."""
    build = _builder()
    if build is None:
        return None
    for i in plan.others:
        if row[i].strip():
            return None
    platform, handle = row[plan.platform].strip(), row[plan.handle].strip()
    if not platform or not handle:
        return None
    protected = _BOOLS.get(row[plan.protected].strip()) if plan.protected is not None else False
    canary = _BOOLS.get(row[plan.canary].strip()) if plan.canary is not None else False
    if protected is None or canary is None:
        return None
    labels: dict[str, str] = {}
    for name, i in plan.labels:
        cell = row[i].strip()
        if cell:
            labels[name] = cell
    share = reader.share
    return build(share(platform), handle, _cell(row, plan.id), protected, canary,
                 share(_cell(row, plan.team)), share(_cell(row, plan.owner)),
                 reader.label_set(labels) if labels else _no_labels())


def _cell(row: list[str], i: int | None) -> str | None:
    return (row[i].strip() or None) if i is not None else None


def _json_fast(values: dict[str, Any], reader: _Reader) -> Any | None:
    """The account of a JSON object of plain values (strings, booleans, labels), exactly as
    the model would build it; None for anything else, which the model then reads."""
    build = _builder()
    if build is None or not _FAST_KEYS.issuperset(values):
        return None
    platform, handle = values.get("platform"), values.get("handle")
    if type(platform) is not str or type(handle) is not str or not handle:
        return None
    protected, canary = values.get("protected", False), values.get("canary", False)
    if type(protected) is not bool or type(canary) is not bool:
        return None
    ident, team, owner = values.get("id"), values.get("team"), values.get("owner")
    for text in (ident, team, owner):
        if text is not None and type(text) is not str:
            return None
    labels = values.get("labels")
    if labels is not None and (type(labels) is not dict or not all(
            type(k) is str and type(v) is str for k, v in labels.items())):
        return None
    share = reader.share
    return build(share(platform), handle, ident, protected, canary, share(team), share(owner),
                 reader.label_set(labels) if labels else _no_labels())


_FAST_KEYS = frozenset(_FAST_FIELDS)

# The model as the fast path was written for it: its fields in order, what the fast fields
# accept, and its one validator (``id`` given as a number becomes text: the fast path takes
# only text). Should AccountConfig change, the fast path turns itself off (every row then
# goes through the model) and tests/test_watchfile.py says so.
_SHAPE = (
    ("platform", "<class 'str'>", "[]"),
    ("handle", "<class 'str'>", "[MinLen(min_length=1)]"),
    ("id", "str | None", "[]"),
    ("protected", "<class 'bool'>", "[]"),
    ("canary", "<class 'bool'>", "[]"),
    ("team", "str | None", "[]"),
    ("owner", "str | None", "[]"),
    ("labels", "collections.abc.Mapping[str, str]", "[]"),
    ("interval", None), ("failure_threshold", None), ("recovery_threshold", None),
    ("confirm_interval", None), ("staleness", None),
    ("validators", (("_id_as_text", ("id",), "before"),), ()),
)


def model_shape(model: Any) -> tuple[Any, ...]:
    """What :data:`_SHAPE` records, for the model as it is now."""
    shape: list[Any] = []
    for name, info in model.__pydantic_fields__.items():
        if name in _FAST_FIELDS:
            shape.append((name, str(info.annotation), repr(info.metadata)))
        else:  # the fast path leaves it unset: it must default to None
            shape.append((name, None) if info.default is None else (name, "not None"))
    decorators = model.__pydantic_decorators__
    shape.append(("validators",
                  tuple((name, d.info.fields, d.info.mode)
                        for name, d in decorators.field_validators.items()),
                  tuple(decorators.model_validators) + tuple(decorators.validators)
                  + tuple(decorators.root_validators)
                  + (("__post_init__",) if hasattr(model, "__post_init__") else ())))
    return tuple(shape)


@cache
def _builder() -> Callable[..., Any] | None:
    """Builds an account without running the model (None: the model is not the one the fast
    path knows). Slots are set through their descriptors, as a frozen dataclass's own
    ``__init__`` does with ``object.__setattr__``."""
    model = _model()
    if model_shape(model) != _SHAPE:
        return None
    new = object.__new__
    (platform_, handle_, id_, protected_, canary_, team_, owner_, labels_, interval_,
     failure_, recovery_, confirm_, staleness_) = (
        getattr(model, name).__set__ for name in model.__pydantic_fields__)

    def build(platform: str, handle: str, ident: str | None, protected: bool, canary: bool,
              team: str | None, owner: str | None, labels: Mapping[str, str]) -> Any:
        account = new(model)
        platform_(account, platform)
        handle_(account, handle)
        id_(account, ident)
        protected_(account, protected)
        canary_(account, canary)
        team_(account, team)
        owner_(account, owner)
        labels_(account, labels)
        interval_(account, None)
        failure_(account, None)
        recovery_(account, None)
        confirm_(account, None)
        staleness_(account, None)
        return account

    return build


@cache
def _no_labels() -> Mapping[str, str]:
    """The model's own default: the one empty mapping every account without labels shares."""
    factory = _model().__pydantic_fields__["labels"].default_factory
    labels: Mapping[str, str] = factory()
    return labels


class _OneLine:
    """Hands the CSV reader one line at a time: a quote left open ends at its own line
    (``unexpected end of data``) instead of swallowing the rest of the file."""

    def __init__(self) -> None:
        self.line: str | None = None

    def __iter__(self) -> _OneLine:
        return self

    def __next__(self) -> str:
        line, self.line = self.line, None
        if line is None:
            raise StopIteration
        return line


def _csv_reason(exc: csv.Error) -> str:
    if "unexpected end of data" in str(exc):
        return ("a quoted value is not closed on its line: close the quote (a value may not "
                "hold a line break)")
    return (f"not valid CSV: {exc}; quote a value holding a comma or a quote (\"a,b\", "
            "\"say \"\"hi\"\"\")")


def _csv_fields(columns: list[tuple[str, bool]], row: list[str]) -> dict[str, Any]:
    """A CSV row as an ``accounts:`` entry: empty cells left out, labels gathered."""
    values: dict[str, Any] = {}
    labels: dict[str, str] | None = None
    for (name, is_label), cell in zip(columns, row, strict=False):  # short: the rest empty
        cell = cell.strip()
        if not cell:
            continue
        if is_label:
            if labels is None:
                labels = {}
            labels[name] = cell
        else:
            values[name] = cell
    if labels is not None:
        values["labels"] = labels
    return values


@cache
def _adapter() -> TypeAdapter[Any]:
    return TypeAdapter(_model())


_MODELS: list[Any] = []  # the account model, given by monitor.config (use_model)


def use_model(model: Any) -> None:
    """monitor.config hands over its AccountConfig: this module reads rows into it without
    importing the config module (which imports this one to load ``accounts_file``)."""
    _MODELS[:] = [model]
    _adapter.cache_clear()


def _model() -> Any:
    if not _MODELS:
        raise RuntimeError("monitor.config has not given its account model (use_model)")
    return _MODELS[0]


def _field(loc: tuple[int | str, ...], csv_labels: bool) -> str:
    """The column (``label.tier``) or key path (``labels.tier``) a problem is about."""
    if csv_labels and len(loc) == 2 and loc[0] == "labels":
        return _path(LABEL_PREFIX + str(loc[1]))
    path = ""
    for part in loc:
        path = join_path(path, part)
    return path


def _path(name: str) -> str:
    return join_path("", name)


def _reason(error: Any) -> str:
    kind = error["type"]
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return "unknown key (check the spelling; see README's config reference)"
    if kind in ("missing", "missing_argument"):
        return "missing: every account needs a platform and a handle"
    if kind in ("bool_parsing", "bool_type"):
        return f"expected true or false, found {shown(error.get('input'))}"
    return str(error["msg"]).removeprefix("Value error, ")


def _short(text: str, limit: int = 60) -> str:
    """A value quoted in a problem: one line, cut short (the input may be hostile)."""
    text = json.dumps(text)[1:-1] if not text.isprintable() else text
    return text if len(text) <= limit else text[:limit] + "…"
