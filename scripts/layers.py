"""The package's import rules, checked: layers import downward only, and no cycles.

    web            OffloadTasks, the status, dashboard and metrics routers
    core           admission, routing, the ledger, the runner, start and stop
    lanes | stores | backends    side by side: none imports another
    foundation     the top-level private modules (settings, models, errors, ...)

`fastapi_offload` itself, `_offload` (the `Offload` facade, with its router methods in
`_offload_routers`) and `testing` sit above
them all. Every import counts, including those inside functions and under
`TYPE_CHECKING`: a type is a dependency too. Written here rather than with
import-linter because the rules are five lines and the cycle check needs the same
graph.

Usage: python scripts/layers.py [--graph]   (exit status 1 on a broken rule)
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "fastapi_offload"
SRC = Path(__file__).resolve().parents[1] / "src" / PACKAGE

TOP = {PACKAGE, f"{PACKAGE}._offload", f"{PACKAGE}._offload_routers", f"{PACKAGE}.testing"}
# layer name -> the layers it may import (besides itself and the foundation)
ALLOWED = {
    "web": {"core", "lanes", "stores", "backends"},
    "core": {"lanes", "stores", "backends"},
    "lanes": {"backends"},  # the remote lane wraps a backend (backends.base)
    "stores": set(),
    "backends": set(),
    "foundation": set(),
}


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(SRC).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def layer(module: str) -> str:
    if module in TOP:
        return "top"
    parts = module.split(".")
    if len(parts) > 2 or (len(parts) == 2 and parts[1] in ALLOWED):
        return parts[1]
    return "foundation"


def imports(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules `module` imports."""
    is_package = path.name == "__init__.py"
    base = module.split(".") if is_package else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base[: len(base) - (node.level - 1)]
                parent = ".".join([*anchor, *([node.module] if node.module else [])])
            else:
                parent = node.module or ""
            # `from pkg import mod` imports a module; `from mod import name` a name
            targets = [f"{parent}.{a.name}" for a in node.names if f"{parent}.{a.name}" in known]
            targets = targets or [parent]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE) and target != module:
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in graph:
        if node not in index:
            visit(node)
    return found


def depth(graph: dict[str, set[str]]) -> int:
    """The longest chain of imports (valid once there is no cycle)."""
    memo: dict[str, int] = {}

    def longest(node: str) -> int:
        if node not in memo:
            memo[node] = 1 + max((longest(n) for n in graph[node]), default=0)
        return memo[node]

    return max(longest(n) for n in graph)


def main() -> int:
    known = modules()
    # A package's __init__ that re-exports (fastapi_offload, backends.celery) is the
    # module users import; its own imports still follow the rules below.
    graph = {m: imports(m, p, known) for m, p in known.items()}
    broken = []
    for module, targets in sorted(graph.items()):
        mine = layer(module)
        if mine == "top":
            continue
        for target in sorted(targets):
            theirs = layer(target)
            if theirs in (mine, "foundation") or theirs in ALLOWED[mine]:
                continue
            broken.append(f"{module} ({mine}) imports {target} ({theirs})")
    broken.extend("import cycle: " + " -> ".join(loop) for loop in cycles(graph))
    edges = sum(len(t) for t in graph.values())
    if "--graph" in sys.argv:
        for module, targets in sorted(graph.items()):
            print(f"{module} [{layer(module)}]: {', '.join(sorted(targets))}")
    if broken:
        print("\n".join(broken))
        print(f"layers: {len(broken)} broken rule(s)", file=sys.stderr)
        return 1
    print(
        f"layers: {len(known)} modules, {edges} internal imports, "
        f"{depth(graph)} import levels, no upward import, no cycle"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
