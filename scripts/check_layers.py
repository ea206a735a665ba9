# SPDX-License-Identifier: MIT
"""The layer contract of `ppi_cli` (docs/design.md, "Dependencies point one way"), checked by an AST walk.

    cli  →  engine, reports, bench  →  ppi  →  autograd, saliency, models  →  data, config  →  the root modules

An import may point down the list or stay in its own layer; it may never climb, and no chain of
imports may lead from a module back to itself. Every import counts, at module level or inside a
function (a lazy import still ties the two modules together), and so does a string that names a
module of ours exactly (what `importlib.import_module` would load). `ppi_cli.__init__` is the
package's version and counts as a root module.

    python scripts/check_layers.py            # exit 1 and one line per violation
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LAYERS", "Violation", "module_graph", "check", "main"]

# Top to bottom; a package or root module of `ppi_cli` per name. Same layer: siblings.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli", "__main__"),
    ("engine", "reports", "bench"),
    ("ppi",),
    ("autograd", "saliency", "models"),
    ("data", "config"),
    ("files", "errors", "console", "workspace", "checkpoint", "device", "__init__"),
)


@dataclass(frozen=True)
class Violation:
    """One broken rule: an import that climbs a layer, or a circle of imports."""

    kind: str  # "upward" | "circle" | "unplaced"
    modules: tuple[str, ...]
    where: str

    def __str__(self) -> str:
        if self.kind == "circle":
            return f"{self.where}: circle: these modules import each other: {', '.join(self.modules)}"
        return f"{self.where}: {self.kind}: {' -> '.join(self.modules)}"


def _module_name(root: Path, path: Path, package: str) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join([package, *parts])


def _imported(node: ast.AST, current: str, is_package: bool) -> Iterable[tuple[str, ...]]:
    """Candidate module names an import node refers to, most specific first per imported name."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield (alias.name,)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = current.split(".") if is_package else current.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            module = ".".join(base + ([node.module] if node.module else []))
        else:
            module = node.module or ""
        for alias in node.names:
            yield (f"{module}.{alias.name}", module)


def module_graph(root: Path, package: str = "ppi_cli") -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    """Edges `{importer: {imported: line}}` between the modules of the package at `root`."""
    files = {_module_name(root, p, package): p for p in sorted(root.rglob("*.py"))}
    edges: dict[str, dict[str, int]] = {m: {} for m in files}
    for module, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in ast.walk(tree):
            candidates: Iterable[tuple[str, ...]] = ()
            if isinstance(node, ast.Import | ast.ImportFrom):
                candidates = _imported(node, module, is_package)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in files:
                candidates = ((node.value,),)
            for names in candidates:
                target = next((n for n in names if n in files), None)
                if target is None:  # `import ppi_cli.x.y` names its deepest module; walk up to one we have
                    parts = names[-1].split(".")
                    while parts and ".".join(parts) not in files:
                        parts.pop()
                    target = ".".join(parts) if parts else None
                if target and target != module:
                    edges[module].setdefault(target, node.lineno)
    return edges, files


def _layer_of(module: str, package: str) -> int | None:
    parts = module.split(".")
    name = "__init__" if len(parts) == 1 else parts[1]
    for index, layer in enumerate(LAYERS):
        if name in layer:
            return index
    return None


def _circles(edges: dict[str, dict[str, int]]) -> list[tuple[str, ...]]:
    """One circle per strongly connected component of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, {}):
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
                found.append(tuple(sorted(component)))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def check(root: Path, package: str = "ppi_cli") -> list[Violation]:
    """Every violation of the layer contract in the package at `root` (empty when it holds)."""
    edges, files = module_graph(root, package)
    problems: list[Violation] = []
    for module in sorted(edges):
        here = _layer_of(module, package)
        if here is None:
            problems.append(Violation("unplaced", (module,), f"{files[module]}: add its package to LAYERS"))
            continue
        for target, line in sorted(edges[module].items()):
            there = _layer_of(target, package)
            if there is not None and there < here:
                problems.append(Violation("upward", (module, target), f"{files[module]}:{line}"))
    for component in _circles(edges):
        problems.append(Violation("circle", component, str(files[component[0]])))
    return problems


def main(argv: list[str] | None = None) -> int:
    """Check `ppi_cli` (or the package folder given) and print each violation; 1 when any."""
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else Path(__file__).resolve().parents[1] / "ppi_cli"
    problems = check(root, root.name)
    for problem in problems:
        print(problem)
    edges, _ = module_graph(root, root.name)
    print(f"layers: {len(edges)} modules, {sum(map(len, edges.values()))} imports, "
          f"{len(problems)} violation{'s' if len(problems) != 1 else ''}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
