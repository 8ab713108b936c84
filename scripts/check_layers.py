"""Check the package's architecture: no import cycles, no import from a lower layer into a higher
one, and the exact engine and the primitives path independent of each other.

    python scripts/check_layers.py          # prints the layers, exits 1 on any violation

Every ``import`` is counted, module level or inside a function, since either is a dependency.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGE = "qlam_qiskit"
LAYERS = [  # lowest first; a module may import its own layer and any layer below it
    ["errors"],
    ["io"],
    ["circuits", "data"],
    ["backends.engine", "backends.primitives"],
    ["backends"],
    ["models"],
    ["training"],
    ["deploy"],
    ["reports"],
    ["bench"],
    ["cli", "__main__", ""],  # "" is the package's own __init__: the public API on top
]
APART = [("backends.engine", "backends.primitives")]
"""Pairs of parts that must not import each other in either direction."""


def part(module: str) -> str:
    """The LAYERS entry a dotted module (without the package prefix) belongs to: longest match."""
    names = [p for layer in LAYERS for p in layer if p]
    hits = [p for p in names if module == p or module.startswith(p + ".")]
    return max(hits, key=len) if hits else ""


def layer(module: str) -> int:
    p = part(module)
    return next(i for i, names in enumerate(LAYERS) if p in names)


def modules(root: Path) -> dict[str, Path]:
    """Dotted module name (without the package prefix) -> file."""
    out = {}
    for f in sorted((root / PACKAGE).rglob("*.py")):
        rel = f.relative_to(root / PACKAGE).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Package modules that ``name`` imports (relative and absolute, any depth)."""
    is_pkg = path.name == "__init__.py"
    base = name.split(".") if name else []
    pkg = base if is_pkg else base[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = pkg[:len(pkg) - (node.level - 1)] if node.level > 1 else pkg
                target = anchor + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == PACKAGE:
                target = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:  # "from . import kernels" names a module
                sub = ".".join(target + [alias.name])
                found.add(sub if sub in known else ".".join(target))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    found.add(".".join(alias.name.split(".")[1:]))
    return {m for m in found if m in known and m != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def problems(root: Path) -> list[str]:
    """Every violation, one line each (empty when the architecture holds)."""
    known = modules(root)
    graph = {m: imports(m, p, known) for m, p in known.items()}
    # a package's __init__ re-exporting its children is not a dependency of the children on it
    graph_no_init = {m: {d for d in deps if not (m.startswith(d + ".") or d == "")}
                     for m, deps in graph.items()}
    out = [f"import cycle: {' -> '.join(c)}" for c in cycles(graph_no_init)]
    for m, deps in graph.items():
        for d in deps:
            if m.startswith(d + ".") or d == "":
                continue  # importing an enclosing package's API from inside it is not upward
            if layer(d) > layer(m):
                out.append(f"upward import: {PACKAGE}.{m} (layer {part(m) or PACKAGE}) imports "
                           f"{PACKAGE}.{d} (layer {part(d)}, higher)")
            for a, b in APART:
                if {part(m), part(d)} == {a, b}:
                    out.append(f"{PACKAGE}.{m} imports {PACKAGE}.{d}: {a} and {b} stay apart")
    return sorted(out)


def main() -> int:
    root = Path(__file__).resolve().parents[1]
    found = problems(root)
    for line in found:
        print(line)
    if not found:
        print("layers (lowest first): " + " < ".join("/".join(n or PACKAGE for n in layer)
                                                     for layer in LAYERS))
        print(f"{len(modules(root))} modules: no import cycles, no upward imports")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
