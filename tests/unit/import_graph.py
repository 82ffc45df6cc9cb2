"""The project's import graph, read from the source files (nothing is imported).

Every ``import`` counts, wherever it sits: at the top of a file, inside a function (a lazy import
runs when the function does) or under ``if TYPE_CHECKING``. ``from a.b import c`` points at the
module ``a.b.c`` when ``c`` is a module of its own, else at ``a.b``; relative imports are resolved.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Import:
    """One import statement's target, as written in ``source`` at ``line``."""

    source: str
    target: str
    line: int


def modules_under(root: Path, packages: tuple[str, ...]) -> dict[str, Path]:
    """Module name → file for every ``.py`` file in the named top-level packages under ``root``."""
    found = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def _is_module(root: Path, name: str) -> bool:
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(root: Path, module: str, path: Path) -> list[Import]:
    """Every import in one file, resolved to module names."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append(Import(module, candidate if _is_module(root, candidate) else base, node.lineno))
    return found


def import_graph(root: Path, packages: tuple[str, ...]) -> dict[str, list[Import]]:
    """Module → its imports, for every module of ``packages`` under ``root``."""
    return {module: imports_of(root, module, path) for module, path in modules_under(root, packages).items()}


def import_cycles(graph: dict[str, list[Import]]) -> list[list[str]]:
    """Each group of project modules that import one another in a circle, sorted (empty when none).

    Tarjan's strongly connected components over the edges between the graph's own modules; a
    module that imports itself is a cycle of one.
    """
    edges = {module: sorted({i.target for i in imports if i.target in graph}) for module, imports in graph.items()}
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []

    def visit(module: str) -> None:
        index[module] = lowest[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in edges[module]:
            if target not in index:
                visit(target)
                lowest[module] = min(lowest[module], lowest[target])
            elif target in on_stack:
                lowest[module] = min(lowest[module], index[target])
        if lowest[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == module:
                    break
            if len(group) > 1 or module in edges[module]:
                cycles.append(sorted(group))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    return sorted(cycles)
