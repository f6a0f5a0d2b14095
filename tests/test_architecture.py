"""Architecture as a specification: the `monitor` package imports without cycles, and the
repository stands alone (docs/architecture.md, "Invariants").

The import graph is read from the source with `ast`, not from `sys.modules`, so a late
import inside a function counts exactly like one at the top of a module: it runs, and a
cycle hidden behind it is still a cycle. Imports under `if TYPE_CHECKING:` never run and
are left out.
"""

from __future__ import annotations

import ast
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "monitor"


@dataclass(frozen=True)
class Edge:
    """`source` imports `target` at `line` of the source's file."""

    source: str
    target: str
    line: int


def module_names(root: Path = ROOT, package: str = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (a package is its `__init__.py`)."""
    modules: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`: imports that never run."""
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _run_time_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement under `node` that can run, at any depth (late imports too)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for branch in child.orelse:
                yield from _run_time_imports_of(branch)
            continue
        yield from _run_time_imports_of(child)


def _run_time_imports_of(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    yield from _run_time_imports(node)


def _base_of(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a `from X import ...` reads from, relative imports resolved."""
    if node.level == 0:
        return node.module or ""
    anchor = module.split(".") if is_package else module.split(".")[:-1]
    anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join([*anchor, node.module] if node.module else anchor)


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool,
             known: set[str]) -> Iterator[str]:
    """The package modules an import statement loads (the most specific one it names)."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name in known:
                yield alias.name
        return
    base = _base_of(node, module, is_package)
    for alias in node.names:
        submodule = f"{base}.{alias.name}"
        if submodule in known:
            yield submodule  # `from monitor.x import y` where y is a module: an edge to y
        elif base in known:
            yield base


def import_graph(root: Path = ROOT, package: str = PACKAGE) -> list[Edge]:
    """Every import edge between the package's own modules, with its line."""
    modules = module_names(root, package)
    known = set(modules)
    edges: set[Edge] = set()
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in _run_time_imports(tree):
            for target in _targets(node, name, is_package, known):
                edges.add(Edge(name, target, node.lineno))
    return sorted(edges, key=lambda e: (e.source, e.line, e.target))


def strongly_connected(nodes: set[str], edges: list[Edge]) -> list[list[str]]:
    """Tarjan's strongly connected components, each sorted, in a stable order."""
    successors: dict[str, list[str]] = {node: [] for node in nodes}
    for edge in edges:
        successors[edge.source].append(edge.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in successors[node]:
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return sorted(components)


def _shortest_cycle(start: str, members: set[str], edges: list[Edge]) -> list[Edge]:
    """One shortest chain of imports from `start` back to itself inside a component."""
    inside = [edge for edge in edges if edge.source in members and edge.target in members]
    frontier: list[list[Edge]] = [[edge] for edge in inside if edge.source == start]
    seen: set[str] = set()
    while frontier:
        path = frontier.pop(0)
        last = path[-1].target
        if last == start:
            return path
        if last in seen:
            continue
        seen.add(last)
        frontier.extend([*path, edge] for edge in inside if edge.source == last)
    return []


def cycles(root: Path = ROOT, package: str = PACKAGE) -> list[str]:
    """Each import cycle as a readable chain `a (a.py:12) -> b (b.py:3) -> a`.

    A strongly connected component can hold many cycles; this names the shortest one
    through each of its modules (each cycle once), which is what has to be cut.
    """
    modules = module_names(root, package)
    edges = import_graph(root, package)
    found: list[str] = []
    for component in strongly_connected(set(modules), edges):
        members = set(component)
        self_loop = any(e.source == e.target == component[0] for e in edges)
        if len(component) < 2 and not self_loop:
            continue
        seen: set[frozenset[Edge]] = set()
        for start in component:
            chain = _shortest_cycle(start, members, edges)
            if not chain or frozenset(chain) in seen:
                continue
            seen.add(frozenset(chain))
            hops = " -> ".join(
                f"{e.source} ({modules[e.source].relative_to(root)}:{e.line})" for e in chain)
            found.append(f"{hops} -> {start}")
    return found


# --- the graph reader is itself specified, on a package built for the purpose -------------

def _write(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_the_graph_reader_sees_late_relative_and_submodule_imports(tmp_path: Path) -> None:
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def late():\n    from pkg.b import thing\n",
        "pkg/b.py": "from . import c\n",
        "pkg/c.py": "from .sub import d\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/d.py": "import pkg.a\n",
        "pkg/e.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                     "    from pkg import a\nelse:\n    import pkg.c\n"),
    })
    edges = {(e.source, e.target, e.line) for e in import_graph(tmp_path, "pkg")}
    assert edges == {("pkg.a", "pkg.b", 2), ("pkg.b", "pkg.c", 1),
                     ("pkg.c", "pkg.sub.d", 1), ("pkg.sub.d", "pkg.a", 1),
                     ("pkg.e", "pkg.c", 5)}
    assert cycles(tmp_path, "pkg") == [
        "pkg.a (pkg/a.py:2) -> pkg.b (pkg/b.py:1) -> pkg.c (pkg/c.py:1) -> "
        "pkg.sub.d (pkg/sub/d.py:1) -> pkg.a"]


def test_the_graph_reader_reports_self_loops_and_passes_a_tree(tmp_path: Path) -> None:
    _write(tmp_path, {"pkg/__init__.py": "from pkg import a\n",
                      "pkg/a.py": "import pkg.b\n",
                      "pkg/b.py": "def f():\n    import pkg.b\n"})
    assert cycles(tmp_path, "pkg") == ["pkg.b (pkg/b.py:2) -> pkg.b"]
    _write(tmp_path, {"pkg/b.py": "import json\n"})
    assert cycles(tmp_path, "pkg") == []


def test_the_monitor_package_has_no_import_cycles() -> None:
    assert {"monitor.app", "monitor.probes.base"} <= module_names().keys()  # not vacuous
    found = cycles()
    assert not found, "import cycles (late imports included):\n" + "\n".join(found)


# --- the repository stands alone -------------------------------------------------------

# Pages of the workspace the project was built in, which a clone does not have. Built from
# pieces so that this file does not match its own patterns.
OUTSIDE = ("../" + "shared", "shared/" + "reference", "reference/" + "platforms.md",
           "reference/" + "pagers.md", "DESIGN" + ".md", "STYLE" + ".md")


def tracked_files() -> list[Path]:
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                             check=True).stdout.decode()
    return [ROOT / name for name in listing.split("\0") if name]


def references_outside(files: list[Path], root: Path = ROOT) -> list[str]:
    """Every `file:line: text` that points at something a clone of the project lacks."""
    found: list[str] = []
    for path in files:
        if not path.is_file():
            continue  # deleted in the work tree, not yet in the index
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        for number, line in enumerate(text.splitlines(), start=1):
            if any(pattern in line for pattern in OUTSIDE):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def test_the_reference_finder_finds_each_pattern(tmp_path: Path) -> None:
    _write(tmp_path, {"a.md": "see ../shared/x\nfine\n", "b.py": "# shared/reference/p\n",
                      "c.txt": "DESIGN.md", "d.md": "docs/architecture.md, docs/platforms.md\n",
                      "e.py": '"""(see ``reference/pagers.md``)"""\n'})
    found = references_outside(sorted(tmp_path.iterdir()), tmp_path)
    assert found == ["a.md:1: see ../shared/x", "b.py:1: # shared/reference/p",
                     "c.txt:1: DESIGN.md", 'e.py:1: """(see ``reference/pagers.md``)"""']


def test_no_tracked_file_points_outside_the_repository() -> None:
    this_file = Path(__file__).resolve()
    files = [path for path in tracked_files() if path.resolve() != this_file]
    assert ROOT / "README.md" in files  # not vacuous
    found = references_outside(files)
    assert not found, "files pointing outside the repository:\n" + "\n".join(found)
