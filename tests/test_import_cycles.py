"""No module-level import cycle in ``src/augret``.

Every ``import`` counts, at the top of a module or inside a function, except those under
``if TYPE_CHECKING:``. ``from pkg import name`` is an import of the submodule ``pkg.name``
when there is one, else of ``pkg``. Importing ``pkg.mod`` does not count as importing the
package ``pkg`` (Python runs ``pkg/__init__.py`` first, but that is not a dependency the
importing module chose).
"""

from __future__ import annotations

import ast
from collections import deque
from itertools import pairwise
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = "augret"


def module_files(src: Path = SRC, root: str = ROOT) -> dict[str, Path]:
    """Every module of the package by dotted name (``pkg/__init__.py`` is ``pkg``)."""
    out = {}
    for path in sorted((src / root).rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, outside ``if TYPE_CHECKING:`` bodies."""
    found: list[ast.Import | ast.ImportFrom] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return found


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that module ``name`` (at ``path``) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in _import_nodes(ast.parse(path.read_text("utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name in modules)
            continue
        if node.level:
            base = package.split(".")
            base = base[: len(base) - node.level + 1]
            target = ".".join([*base, node.module] if node.module else base)
        else:
            target = node.module or ""
        for alias in node.names:
            sub = f"{target}.{alias.name}"
            if sub in modules:
                out.add(sub)
            elif target in modules:
                out.add(target)
    out.discard(name)
    return out


def import_graph(src: Path = SRC, root: str = ROOT) -> dict[str, set[str]]:
    """``{module: modules it imports}`` over the package."""
    modules = module_files(src, root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def _components(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                members = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    members.append(m)
                    if m == node:
                        break
                if len(members) > 1:
                    out.append(sorted(members))
    return out


def _shortest_cycle(graph: dict[str, set[str]], start: str, within: set[str]) -> list[str]:
    """The shortest chain ``start -> ... -> start`` inside one component."""
    parent: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for child in sorted(graph[node] & within):
            if child == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(parent[chain[-1]])
                return [*reversed(chain), start]
            if child not in parent:
                parent[child] = node
                queue.append(child)
    raise AssertionError(f"{start} is on no cycle")


def cycles(graph: dict[str, set[str]]) -> list[str]:
    """Each import cycle as a chain ``a -> b -> a``: the shortest through every module of
    every component, without repeats."""
    chains: list[str] = []
    seen: set[frozenset[tuple[str, str]]] = set()
    for members in _components(graph):
        for start in members:
            chain = _shortest_cycle(graph, start, set(members))
            edges = frozenset(pairwise(chain))
            if edges not in seen:
                seen.add(edges)
                chains.append(" -> ".join(chain))
    return chains


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_no_import_cycle_in_augret() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(found)


@pytest.mark.parametrize(("files", "want"), [
    ({"a.py": "def f():\n    from p import b\n", "b.py": "import p.a\n"},
     ["p.a -> p.b -> p.a"]),
    ({"a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p import b\n",
      "b.py": "from p.a import x\n"}, []),
    ({"__init__.py": "from p.a import f\n", "a.py": "from p import b\n",
      "b.py": "from p import f\n"}, ["p -> p.a -> p.b -> p"]),
    ({"__init__.py": "from p.a import f\n", "a.py": "from p import b\n", "b.py": "x = 1\n"},
     []),
    ({"s/__init__.py": "", "s/a.py": "from . import b\n", "s/b.py": "from .a import x\n"},
     ["p.s.a -> p.s.b -> p.s.a"]),
])
def test_the_check_finds_cycles(tmp_path: Path, files: dict[str, str], want: list[str]
                                ) -> None:
    """Imports in functions count, TYPE_CHECKING ones do not, ``from pkg import name`` is
    the submodule when there is one, relative imports resolve."""
    _write(tmp_path / "p", {"__init__.py": "", **files})
    assert cycles(import_graph(tmp_path, "p")) == want
