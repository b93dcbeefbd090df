"""No import cycles inside our packages, lazy (function-level) imports included: a cycle hidden by a lazy import
still means two modules that cannot be read, tested or moved apart (issue 14 found export.py <-> export_cmd.py and
app.py <-> supervisor.py)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "rewarddance": ROOT / "src" / "rewarddance",
    "rewarddance_exporter": ROOT / "exporter" / "rewarddance_exporter",
    "rewarddance_server": ROOT / "server" / "rewarddance_server",
    "rewarddance_trainer": ROOT / "trainer" / "rewarddance_trainer",
}


def modules(package: str, root: Path) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Modules of ``known`` that ``name`` imports anywhere in its body (``from pkg import sub`` counts sub)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_no_import_cycles(package: str):
    known = modules(package, PACKAGES[package])
    # a package's __init__ re-exporting its submodules is not a cycle with them
    graph = {
        m: {t for t in imports(m, p, known) if not (p.name != "__init__.py" and m.startswith(t + "."))}
        for m, p in known.items()
    }
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_lazy_loop():
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
