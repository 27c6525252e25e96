"""The import graph of ustcp/ and its cycles.

Run: ``.venv/bin/python tools/import_graph.py [--table] [--package ustcp.tcp]``. Reads every
module's imports with ``ast`` (no code runs), keeps those between ustcp modules, and prints
the strongly connected components with more than one module: each is a set of modules that
import each other in a circle. Imports under ``if TYPE_CHECKING:`` are type-only (they never run)
and are counted apart. ``--table`` prints each module's ustcp imports, a table for the docs.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(current: str, is_package: bool, node: ast.ImportFrom) -> list[str]:
    if node.level:
        base = current.split(".")
        if not is_package:
            base = base[:-1]
        base = base[:len(base) - node.level + 1]
        prefix = ".".join(base)
        target = f"{prefix}.{node.module}" if node.module else prefix
    else:
        target = node.module or ""
    # "from pkg import mod" imports the module pkg.mod when it is one.
    return [target] + [f"{target}.{alias.name}" for alias in node.names]


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(modules: dict[str, Path]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """(runtime imports, type-only imports) between the modules."""
    runtime: dict[str, set[str]] = {m: set() for m in modules}
    typing_only: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text())
        is_package = path.name == "__init__.py"
        guarded: set[int] = set()
        for node in ast.walk(tree):
            if _type_checking_block(node):
                guarded.update(id(n) for n in ast.walk(node))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                targets = _resolve(name, is_package, node)
            else:
                continue
            edges = typing_only if id(node) in guarded else runtime
            for target in targets:
                if target in modules and target != name:
                    edges[name].add(target)
    return runtime, typing_only


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", action="store_true", help="print each module's ustcp imports")
    p.add_argument("--package", default="ustcp", help="only modules under this package")
    args = p.parse_args(argv)
    modules = {module_name(f): f for f in sorted((ROOT / "ustcp").rglob("*.py"))}
    runtime, typing_only = imports(modules)
    both = {m: runtime[m] | typing_only[m] for m in modules}
    selected = sorted(m for m in modules if m == args.package
                      or m.startswith(args.package + "."))
    if args.table:
        for m in selected:
            # A package the module sits in is no dependency ("from . import x" names it).
            deps = sorted(d for d in runtime[m] if not m.startswith(d + "."))
            print(f"{m:32} {' '.join(d.removeprefix('ustcp.') for d in deps) or '-'}")
        print()
    for label, graph in (("runtime imports", runtime), ("with type-only imports", both)):
        found = [c for c in cycles(graph) if any(m in selected for m in c)]
        print(f"cycles ({label}): {len(found)}")
        for component in found:
            print("  " + " <-> ".join(m.removeprefix("ustcp.") for m in component))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
