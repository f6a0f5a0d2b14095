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
from collections.abc import Collection, Iterator
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


# --------------------------------------------------------------------------- fast load


def load(text: str) -> Any:
    """The Python value of ``text``, exactly as :func:`compose` + :func:`construct` build it,
    or the :class:`YamlProblem` (or :class:`YamlProblems`) they raise.

    A 100k-account watchlist composed into PyYAML nodes peaks at ~300 MB (a node, a mark
    pair and a tuple per scalar) and takes seconds more to walk; built straight from
    libyaml's events (:class:`_EventBuilder`), the peak is the Python value itself. The
    builder keeps the graph checks (depth, alias expansion, recursion, duplicate keys) and
    gives up on anything it does not reproduce exactly (a parse error, a tagged collection,
    a merge of several mappings, a key collision, a scalar it cannot build): then the node
    path runs, so every problem is still the one :func:`compose` names, with its line.
    """
    try:
        return _EventBuilder(text).build()
    except _NotFast:
        pass
    root, loader = compose(text)
    return construct(loader, root) if root is not None else None


class _NotFast(Exception):
    """The event builder cannot be sure to match the node path: use that instead."""


STR_TAG = "tag:yaml.org,2002:str"
_DEFAULT_TAGS = (None, "!")


class _Open:
    """A collection being built: its value, and its expanded size and height so far."""

    __slots__ = ("anchor", "has_key", "height", "is_map", "key", "merge", "pairs", "size",
                 "value")

    def __init__(self, value: dict[Any, Any] | list[Any], anchor: str | None) -> None:
        self.value = value
        self.is_map = isinstance(value, dict)
        self.key: Any = None
        self.has_key = False  # a mapping's key is read, its value is next
        self.pairs = 0  # a mapping's pairs other than merges
        self.merge: dict[Any, Any] | None = None  # what ``<<: *anchor`` brings in
        self.size = 1
        self.height = 1
        self.anchor = anchor


class _EventBuilder:
    """Builds the document from libyaml's events (see :func:`load`); raises :class:`_NotFast`."""

    def __init__(self, text: str) -> None:
        self.loader: Any = Loader(text)  # get_event and resolve are untyped in the stubs
        self.anchors: dict[str, tuple[Any, int, int]] = {}  # name -> (value, size, height)
        self.open_anchors: set[str] = set()
        self.stack: list[_Open] = []
        self.aliases = 0
        self.alias_nodes = 0
        self.root: Any = None
        self.done = False

    def build(self) -> Any:
        try:
            return self._run()
        except (yaml.YAMLError, ValueError, OverflowError, TypeError, RecursionError):
            raise _NotFast from None
        finally:
            self.loader.dispose()

    def _run(self) -> Any:
        get = self.loader.get_event
        get()  # StreamStart
        event = get()
        if isinstance(event, yaml.StreamEndEvent):
            return None
        while True:
            event = get()
            kind = type(event)
            if kind is yaml.ScalarEvent:
                self._scalar(event)
            elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
                self._start(event)
            elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
                self._end()
            elif kind is yaml.AliasEvent:
                self._alias(event)
            elif kind is yaml.DocumentEndEvent:
                break
            else:
                raise _NotFast
        if not isinstance(get(), yaml.StreamEndEvent):  # a second document
            raise _NotFast
        return self.root

    def _scalar(self, event: yaml.ScalarEvent) -> None:
        tag = event.tag
        if tag in _DEFAULT_TAGS:
            tag = self.loader.resolve(yaml.ScalarNode, event.value, event.implicit)
        if tag == STR_TAG:
            value: Any = event.value
        elif tag == MERGE_TAG and self._expects_key():
            self._add_merge_key()
            return
        else:
            constructor = self.loader.yaml_constructors.get(tag)
            if constructor is None:
                raise _NotFast  # an unknown tag: the node path names it
            # no marks: a constructor error means _NotFast, and the node path names it
            node = yaml.ScalarNode(tag, event.value, None, None, style=event.style)
            value = constructor(self.loader, node)
        if event.anchor is not None:
            self._anchor(event.anchor, value, 0, 0)
        self._add(value, 0, 0)

    def _start(self, event: yaml.MappingStartEvent | yaml.SequenceStartEvent) -> None:
        if event.tag not in _DEFAULT_TAGS or self._expects_key():
            raise _NotFast  # a tagged collection, or a collection as a key
        if len(self.stack) >= MAX_DEPTH:
            raise _NotFast
        anchor = event.anchor
        if anchor is not None:
            if anchor in self.anchors or anchor in self.open_anchors:
                raise _NotFast
            self.open_anchors.add(anchor)
        value: dict[Any, Any] | list[Any] = (
            {} if isinstance(event, yaml.MappingStartEvent) else [])
        self.stack.append(_Open(value, anchor))

    def _end(self) -> None:
        frame = self.stack.pop()
        value: Any = frame.value
        if frame.is_map:
            if len(value) != frame.pairs:
                raise _NotFast  # a duplicate key (or two keys that are equal once built)
            if frame.merge is not None:
                value = {**frame.merge, **value}
        if frame.anchor is not None:
            self.open_anchors.discard(frame.anchor)
            self._anchor(frame.anchor, value, frame.size, frame.height)
        self._add(value, frame.size, frame.height)

    def _alias(self, event: yaml.AliasEvent) -> None:
        name = event.anchor
        if name in self.open_anchors or name not in self.anchors:
            raise _NotFast  # recursive, or undefined
        value, size, height = self.anchors[name]
        if self._expects_key() and size:
            raise _NotFast
        if size:  # a collection: what it adds once a consumer expands it
            self.aliases += 1
            self.alias_nodes += size
            if self.aliases > MAX_ALIASES or self.alias_nodes > MAX_ALIAS_NODES:
                raise _NotFast
        self._add(value, size, height)

    def _anchor(self, name: str, value: Any, size: int, height: int) -> None:
        if name in self.anchors or (size == 0 and name in self.open_anchors):
            raise _NotFast
        self.anchors[name] = (value, size, height)

    def _expects_key(self) -> bool:
        return bool(self.stack) and self.stack[-1].is_map and not self.stack[-1].has_key

    def _add_merge_key(self) -> None:
        frame = self.stack[-1]
        if frame.merge is not None:
            raise _NotFast  # several merges: PyYAML's order rules are its own
        frame.key, frame.has_key = _MERGE, True
        frame.size += 1

    def _add(self, value: Any, size: int, height: int) -> None:
        """Put a built value into the open collection (``size`` 0: a scalar)."""
        if not self.stack:
            self.root = value
            return
        frame = self.stack[-1]
        frame.size += size or 1
        if height >= frame.height:
            frame.height = height + 1
            if frame.height > MAX_DEPTH:
                raise _NotFast
        if not frame.is_map:
            frame.value.append(value)  # type: ignore[union-attr]
        elif not frame.has_key:
            if value != value:  # NaN: never equal to itself, so never a dict collision
                raise _NotFast
            hash(value)  # TypeError for an unhashable key
            frame.key, frame.has_key = value, True
        else:
            frame.has_key = False
            if frame.key is _MERGE:
                if not isinstance(value, dict) or size == 0:
                    raise _NotFast  # a list of mappings, or not a mapping: the node path
                frame.merge = value
            else:
                frame.value[frame.key] = value
                frame.pairs += 1


_MERGE = object()


def lines_of(text: str, wanted: Collection[str]) -> dict[str, int]:
    """The 1-based line of each field path in ``wanted`` that the document has.

    A mapping's child is found at its key's line, a list item at the item's; an alias at
    the alias (what it points to is not walked). One pass over libyaml's events and no node
    graph: only for files that parsed already (a problem being located), so a parse error
    here just ends the walk with what was found.
    """
    found: dict[str, int] = {}
    loader: Any = Loader(text)
    # Each open collection: [path, is a mapping, next item index, key path awaiting a value]
    stack: list[list[Any]] = []
    try:
        while True:
            event = loader.get_event()
            if isinstance(event, yaml.StreamEndEvent | yaml.DocumentEndEvent):
                break
            if not isinstance(event, yaml.NodeEvent | yaml.CollectionEndEvent):
                continue
            if isinstance(event, yaml.CollectionEndEvent):
                stack.pop()
                _lines_value_done(stack)
                continue
            line = event.start_mark.line + 1 if event.start_mark is not None else 0
            path = _lines_path(stack, event, line, wanted, found)
            if path is _KEY:
                continue
            if path is not None and path in wanted:
                found.setdefault(path, line)
            if isinstance(event, yaml.CollectionStartEvent):
                stack.append([path, isinstance(event, yaml.MappingStartEvent), 0, None])
            else:
                _lines_value_done(stack)
    except yaml.YAMLError:
        pass
    finally:
        loader.dispose()
    return found


# What an open mapping expects next (else it holds the path of the value it expects).
_EXPECT_KEY = None
_IN_COMPLEX_KEY = "\0complex key"  # a collection as a key: its value has no readable path
_VALUE_NO_PATH = "\0no path"
_KEY = "\0key"  # returned by _lines_path: the event was a mapping's key


def _lines_path(stack: list[list[Any]], event: Any, line: int, wanted: Collection[str],
                found: dict[str, int]) -> str | None:
    """The path of the node ``event`` starts (None: no readable path), or _KEY for a key."""
    if not stack:
        return ""
    frame = stack[-1]
    parent, is_map, index, expects = frame
    if not is_map:
        frame[2] = index + 1
        return None if parent is None else join_path(parent, index)
    if expects is _EXPECT_KEY:
        if isinstance(event, yaml.CollectionStartEvent):
            frame[3] = _IN_COMPLEX_KEY
            return None
        if isinstance(event, yaml.ScalarEvent) and parent is not None:
            child = join_path(parent, event.value)
            if child in wanted:
                found[child] = line
            frame[3] = child
        else:
            frame[3] = _VALUE_NO_PATH
        return _KEY
    return None if expects is _VALUE_NO_PATH else str(expects)


def _lines_value_done(stack: list[list[Any]]) -> None:
    """A node ended: in a mapping, after a complex key comes its value, after a value a key."""
    if stack and stack[-1][1]:
        stack[-1][3] = _VALUE_NO_PATH if stack[-1][3] is _IN_COMPLEX_KEY else _EXPECT_KEY
