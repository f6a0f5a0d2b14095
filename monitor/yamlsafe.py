"""Reading a YAML file that may be hostile: bounded, strictly UTF-8, no alias bombs.

The config file (and a ``*_file`` secret) is read by a process that pages people, so bad
input must become a clear problem, never a traceback, a hang or a memory blow-up:

* :func:`read_bounded` reads only regular files, and at most ``limit`` bytes (``/dev/zero``
  or a FIFO is refused before it is opened);
* :func:`decode_utf8` names the line and column of the first byte that is not UTF-8, and
  refuses NUL bytes (a binary file);
* :func:`compose` parses with libyaml, then refuses, before anything is constructed,
  duplicate mapping keys (YAML 1.2 forbids them; PyYAML keeps the last one silently),
  recursive aliases, nesting deeper than :data:`MAX_DEPTH`, and aliases that together
  expand to more than :data:`MAX_ALIAS_NODES` nodes ("billion laughs": nine levels of nine
  aliases are 387 million nodes once anything walks them).

Each refusal is a :class:`YamlProblem` with the line, the field path where known, and the
fix.
"""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Iterator
from typing import Any

import yaml

MAX_DEPTH = 32  # the bundled config nests 6 deep; libyaml itself stops at 1000
MAX_ALIASES = 10_000  # alias references to mappings or sequences
MAX_ALIAS_NODES = 200_000  # nodes that alias references add once expanded
MERGE_TAG = "tag:yaml.org,2002:merge"

# libyaml's parser when PyYAML was built with it (the wheels are): ~10x faster on big files.
Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlProblem(Exception):
    """Why a file cannot be read; ``line`` and ``path`` when known."""

    def __init__(self, reason: str, line: int | None = None, path: str = ""):
        super().__init__(reason)
        self.reason, self.line, self.path = reason, line, path


# --------------------------------------------------------------------------- bytes


def read_bounded(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, or :class:`YamlProblem`.

    ``stat`` first, so a device, FIFO or directory is refused without opening it (opening
    a FIFO blocks; reading ``/dev/zero`` never ends); then at most ``limit + 1`` bytes are
    read, so a file that grows meanwhile is still bounded.
    """
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise YamlProblem(f"{path} is not a regular file ({_kind(info.st_mode)}); "
                              "give the path of a file")
        if info.st_size > limit:
            raise YamlProblem(f"{path} is {info.st_size} bytes, more than the "
                              f"{_bytes(limit)} allowed; check it is the right file")
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise YamlProblem(f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise YamlProblem(f"{path} is more than the {_bytes(limit)} allowed; check it is the "
                          "right file")
    return data


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a file"


def _bytes(n: int) -> str:
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"


def decode_utf8(data: bytes) -> str:
    """Strict UTF-8 (a leading BOM is allowed); the first bad byte is named by line:column."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise YamlProblem("the file is UTF-16; save it as UTF-8", 1)
    nul = data.find(b"\0")
    if nul >= 0:
        line, column = _position(data, nul)
        raise YamlProblem(f"a NUL byte at line {line}, column {column}: this looks like a "
                          "binary file, not YAML; give the YAML config file", line)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line, column = _position(data, exc.start)
        raise YamlProblem(f"not UTF-8: byte 0x{data[exc.start]:02x} at line {line}, column "
                          f"{column}; save the file as UTF-8", line) from None


def _position(data: bytes | str, offset: int) -> tuple[int, int]:
    """1-based line and column of ``offset``."""
    if isinstance(data, bytes):  # not decoded: the bytes are what cannot be
        return data.count(b"\n", 0, offset) + 1, offset - data.rfind(b"\n", 0, offset)
    return data.count("\n", 0, offset) + 1, offset - data.rfind("\n", 0, offset)


# --------------------------------------------------------------------------- nodes


def compose(text: str) -> tuple[yaml.Node | None, yaml.SafeLoader]:
    """Parse into a node graph and check it (see the module docstring).

    Returns the root node (``None`` for an empty document) and the loader, whose
    ``construct_document(root)`` builds the Python value. Raises :class:`YamlProblem`.
    """
    loader = Loader(text)
    try:
        root = loader.get_single_node()
    except yaml.YAMLError as exc:
        loader.dispose()
        raise _yaml_problem(exc, text) from None
    if root is not None:
        problems = check_graph(root)
        if problems:
            loader.dispose()
            raise problems[0] if len(problems) == 1 else YamlProblems(problems)
    return root, loader


class YamlProblems(Exception):
    """Several problems at once (duplicate keys are all listed)."""

    def __init__(self, problems: list[YamlProblem]):
        super().__init__("; ".join(p.reason for p in problems))
        self.problems = problems


def construct(loader: yaml.SafeLoader, root: yaml.Node) -> Any:
    """Build the Python value of a checked graph; a scalar the constructor chokes on (an
    integer of 5,000 digits, the 31st of February) is a :class:`YamlProblem` with its line."""
    try:
        return loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise _yaml_problem(exc) from None
    except (ValueError, OverflowError, TypeError) as exc:
        raise YamlProblem(f"a value cannot be read: {_short(str(exc))}; quote it to keep it "
                          "as text", _bad_scalar_line(root)) from None
    finally:
        loader.dispose()


def _bad_scalar_line(root: yaml.Node) -> int | None:
    """Failure path only: find the scalar the safe constructor cannot build."""
    probe = yaml.SafeLoader("")
    for node in _nodes(root):
        if isinstance(node, yaml.ScalarNode) and node.tag != MERGE_TAG:
            try:
                probe.construct_object(node)
            except (ValueError, OverflowError, TypeError):
                return node.start_mark.line + 1
            except yaml.YAMLError:
                continue
    return None


def _nodes(root: yaml.Node) -> list[yaml.Node]:
    seen: set[int] = set()
    found, stack = [], [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        found.append(node)
        stack.extend(reversed(list(_children(node))))
    return found


def _yaml_problem(exc: yaml.YAMLError, text: str = "") -> YamlProblem:
    if isinstance(exc, yaml.reader.ReaderError):
        line, column = _position(text, min(exc.position, len(text)))
        return YamlProblem(f"not valid YAML: {exc.reason} at line {line}, column {column}; "
                           "remove the control character", line)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    mark_line: int | None = mark.line + 1 if mark is not None else None
    return YamlProblem(f"not valid YAML: {_short(str(exc))}", mark_line)


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "…"


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            yield key
            yield value
    elif isinstance(node, yaml.SequenceNode):
        yield from node.value


def check_graph(root: yaml.Node) -> list[YamlProblem]:
    """Duplicate keys, cycles, depth and alias expansion of a composed graph.

    libyaml's composer returns the anchored node itself for each alias, so the graph is a
    DAG (or cyclic, for ``&a [*a]``). One iterative depth-first walk in document order
    finds the first visit of each collection (literal) and every later reference (an
    alias), and sums what each alias would add once a consumer expands it. Scalars cannot
    explode, so only collections are tracked: the walk stays linear in the file.
    """
    if not isinstance(root, _COLLECTIONS):
        return []  # a lone scalar: nothing to expand
    problems: list[YamlProblem] = []
    size: dict[int, int] = {}  # collection -> nodes once fully expanded
    height: dict[int, int] = {}  # collection -> nesting levels once expanded
    parent: dict[int, tuple[yaml.Node, Any]] = {}  # first reference: (parent, key or index)
    inner: dict[int, list[tuple[Any, yaml.Node]]] = {}  # collection -> its collection edges
    aliases = 0
    alias_nodes = 0
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        nid = id(node)
        if leaving:
            total, deepest = 1 + _scalar_children(node), 0
            for key, child in inner.pop(nid):
                cid = id(child)
                first = parent[cid]
                if first[0] is not node or first[1] != key:
                    aliases += 1
                    alias_nodes += size[cid]
                total += size[cid]
                deepest = max(deepest, height[cid])
            size[nid], height[nid] = total, deepest + 1
            if height[nid] > MAX_DEPTH:
                return [YamlProblem(f"nested more than {MAX_DEPTH} levels deep; a config "
                                    "needs a few", _line(node), _path(node, parent))]
            if aliases > MAX_ALIASES or alias_nodes > MAX_ALIAS_NODES:
                return [YamlProblem(
                    f"aliases expand to more than {MAX_ALIAS_NODES:,} nodes or number more "
                    f"than {MAX_ALIASES:,} (an alias bomb?); write the values out, or put "
                    "what every account shares under defaults:", _line(node),
                    _path(node, parent))]
            continue
        if nid in size:
            continue  # an alias to a collection already walked
        if nid in inner:  # reached again from inside itself
            return [YamlProblem("a recursive alias (a node that contains itself); remove the "
                                "alias", _line(node), _path(node, parent))]
        if isinstance(node, yaml.MappingNode):
            problems.extend(_duplicate_keys(node, parent))
        edges: list[tuple[Any, yaml.Node]] = [
            (key, child) for key, child in _edges(node) if isinstance(child, _COLLECTIONS)]
        if not edges:  # a leaf: nothing below it can be an alias worth counting
            size[nid], height[nid] = 1 + len(node.value) * _SLOTS[type(node)], 1
            continue
        inner[nid] = edges
        stack.append((node, True))
        for key, child in reversed(edges):
            if id(child) not in parent:
                parent[id(child)] = (node, key)
            stack.append((child, False))
    return problems


_COLLECTIONS = (yaml.MappingNode, yaml.SequenceNode)
_SLOTS: dict[type[yaml.Node], int] = {yaml.MappingNode: 2, yaml.SequenceNode: 1}  # per item


def _scalar_children(node: yaml.Node) -> int:
    if isinstance(node, yaml.MappingNode):
        return sum(not isinstance(n, _COLLECTIONS) for pair in node.value for n in pair)
    return sum(not isinstance(n, _COLLECTIONS) for n in node.value)


def _edges(node: yaml.Node) -> Iterator[tuple[Any, yaml.Node]]:
    """(key, child) pairs of a collection; keys of a mapping are children too."""
    if isinstance(node, yaml.MappingNode):
        for i, (key, value) in enumerate(node.value):
            yield ("key", i), key
            yield _key_text(key), value
    else:
        yield from enumerate(node.value)


def _key_text(key: yaml.Node) -> str | tuple[str, int]:
    return key.value if isinstance(key, yaml.ScalarNode) else ("complex", id(key))


def _duplicate_keys(node: yaml.MappingNode,
                    parent: dict[int, tuple[yaml.Node, Any]]) -> list[YamlProblem]:
    texts = [key.value for key, _ in node.value if isinstance(key, yaml.ScalarNode)]
    if len(set(texts)) == len(texts):
        return []  # the common case, decided without building problems
    seen: dict[tuple[str, str], int] = {}
    found = []
    for key, _ in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == MERGE_TAG:
            continue
        ident = (key.tag, key.value)
        line = key.start_mark.line + 1
        if ident in seen:
            path = join_path(_path(node, parent), key.value)
            found.append(YamlProblem(f"duplicate key {_short(key.value, 60)!r} (first on line "
                                     f"{seen[ident]}); YAML keeps only one: remove or merge "
                                     "them", line, path))
        else:
            seen[ident] = line
    return found


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def _path(node: yaml.Node, parent: dict[int, tuple[yaml.Node, Any]]) -> str:
    """The dotted field path of a collection, through its first reference."""
    parts: list[Any] = []
    current = node
    for _ in range(MAX_DEPTH * 4):
        up = parent.get(id(current))
        if up is None:
            break
        current, key = up
        parts.append(key)
    path = ""
    for key in reversed(parts):
        if isinstance(key, tuple):  # a complex key: no readable path
            return path
        path = join_path(path, key)
    return path


_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_.@/+~-]+$")


def join_path(path: str, key: Any) -> str:
    """``accounts`` + 3 -> ``accounts[3]``; ``platforms`` + ``x`` -> ``platforms.x``.

    A key with spaces, quotes, colons or line breaks is written ``["like this"]`` (JSON
    escaped, cut short), so a problem stays one line that parses as ``path: reason``.
    """
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    text = str(key)
    if not _PLAIN_KEY.match(text):
        return f"{path}[{json.dumps(text[:60])}]"
    return f"{path}.{text}" if path else text
