"""Imports flow one way: no cycle among the modules of `lab` and `widgets`, and `lab` never imports `widgets`.

Every module under lab/ and widgets/ is parsed with `ast` (nothing is imported), and each import
statement becomes an edge, whether it runs when the module loads or inside a function: a function-level
import only postpones a cycle, it does not remove it. Imports under `if TYPE_CHECKING:` never run
and are left out.

The rules:
1. Modules: the import graph over modules is a DAG. Importing `a.b.c` also runs `a/__init__` and
   `a/b/__init__`, so an import of a module is an edge to each of its packages too. The one edge left
   out is a module's import of its own enclosing package (`from . import strategy` inside
   `lab/strategies/sync.py`): Python runs that package first anyway, and it is how a registry's
   `__init__` (which defines the registry and decorator before it imports its members) is used.
2. Packages: collapsing modules to their top-level part of `lab` (`lab.data`, `lab.tasks`,
   `lab.models`, `lab.agents`, `lab.strategies`, ..., and each top-level module such as `lab.runs`)
   still gives a DAG, so the layers read bottom-up: data, envs, models < tasks < config (which also
   sits above strategies and compression, whose knobs it composes) < train < worker < remote < runs
   < cluster; agents, compare and bench above what they use.
3. Nothing in `lab` imports `widgets`: the engine emits records; dashboards subscribe and draw.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("lab", "widgets")

# Known edges that close a cycle, each to be removed by the work named beside it (issue 14).
# The check ignores them, and fails once one is gone from the code so the entry is deleted too.
KNOWN = {
    # config composes the strategies' and compressors' knobs (it imports them), so it sits above
    # them; a component takes its config as an argument or declares its own Options, never imports it.
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> Dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> Set[int]:
    """ids of nodes under `if TYPE_CHECKING:` (never executed)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = getattr(test, "id", None) or getattr(test, "attr", None)
            if name == "TYPE_CHECKING":
                for child in node.body:
                    skip.update(id(n) for n in ast.walk(child))
    return skip


def imports_of(name: str, path: Path, modules: Dict[str, Path]) -> Dict[str, int]:
    """{imported lab/widgets module: line} for every import in one module (module- or function-level)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: Dict[str, int] = {}

    def add(target: str, line: int):
        # the module itself and each package above it run on import
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            t = ".".join(parts[:i])
            if t in modules:
                found.setdefault(t, line)

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            add(source, node.lineno)
            for alias in node.names:  # `from pkg import submodule`
                sub = f"{source}.{alias.name}"
                if sub in modules:
                    add(sub, node.lineno)
    found.pop(name, None)
    return found


def import_graph(known=()) -> Dict[str, Dict[str, int]]:
    """{module: {imported module: line}}, without a module's edges to its own enclosing packages
    nor the `known` edges."""
    modules = all_modules()
    graph = {}
    for name, path in modules.items():
        edges = imports_of(name, path, modules)
        graph[name] = {t: line for t, line in edges.items()
                       if not name.startswith(t + ".") and (name, t) not in known}
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One cycle as [a, b, ..., a], or None when the graph is a DAG (iterative DFS)."""
    state: Dict[str, int] = {}  # 1 on the stack, 2 done
    for start in sorted(graph):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(sorted(graph.get(nxt, ())))))
    return None


def layer(name: str) -> str:
    """The top-level part of a package a module belongs to: lab.data.text -> lab.data, lab.runs -> lab.runs."""
    return ".".join(name.split(".")[:2])


def package_graph(graph) -> Dict[str, Set[str]]:
    out: Dict[str, Set[str]] = {}
    for a, edges in graph.items():
        out.setdefault(layer(a), set())
        for b in edges:
            if layer(a) != layer(b) and not layer(a).startswith(layer(b) + "."):
                out[layer(a)].add(layer(b))
    return out


def _explain(cycle, graph) -> str:
    steps = []
    for a, b in zip(cycle, cycle[1:]):
        if b in graph.get(a, {}):
            steps.append(f"{a} imports {b} ({all_modules()[a].relative_to(ROOT)}:{graph[a][b]})")
        else:  # package level: name one import that makes the step
            for m, edges in graph.items():
                hit = [t for t in edges if layer(m) == a and layer(t) == b]
                if hit:
                    steps.append(f"{a} imports {b} ({m} -> {hit[0]}, {all_modules()[m].relative_to(ROOT)}:{edges[hit[0]]})")
                    break
    return "import cycle " + " -> ".join(cycle) + ":\n  " + "\n  ".join(steps)


def test_graph_sees_the_tree():
    graph = import_graph()
    assert {"lab", "lab.train", "lab.strategies", "widgets.dashboard"} <= set(graph)
    assert "lab.config" in graph["lab.train"]  # a module-level relative import
    assert "lab.strategies" in graph["lab.train"]


def test_finder_reports_a_cycle():
    """The check itself can fail: a made-up two-step cycle is found and named."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_modules_form_a_dag():
    graph = import_graph(KNOWN)
    cycle = find_cycle({k: set(v) for k, v in graph.items()})
    assert cycle is None, _explain(cycle, graph)


def test_packages_form_a_dag():
    graph = import_graph(KNOWN)
    cycle = find_cycle(package_graph(graph))
    assert cycle is None, _explain(cycle, graph)


def test_known_edges_still_exist():
    """A known edge that was removed must leave KNOWN too, so the list only shrinks."""
    graph = import_graph()
    gone = [f"{a} -> {b}" for a, b in KNOWN if b not in graph.get(a, {})]
    assert not gone, "remove from KNOWN (fixed): " + ", ".join(gone)


def test_lab_never_imports_widgets():
    bad = [f"{m} imports {t} (line {line})" for m, edges in import_graph().items() if m.split(".")[0] == "lab"
           for t, line in edges.items() if t.split(".")[0] == "widgets"]
    assert not bad, "\n".join(bad)
