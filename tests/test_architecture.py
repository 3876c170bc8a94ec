"""The package's import graph, read from the source: no file imports another that imports
it back (directly or round a longer loop), and each layer imports only the layers that
docs/architecture.md lists above it. Every import statement counts, the ones inside
functions too: a late import hides a circle from Python, not from a reader."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "assay"
#: modules of the package's root that any layer may use: they import nothing of assay's
BASE = {"assay.errors", "assay.files", "assay.options", "assay.heartbeat", "assay.hf", "assay.adamw"}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imported(module: str, node: ast.Import | ast.ImportFrom, known: dict[str, Path]) -> list[str]:
    """The assay modules an import statement reads (a name imported from a package is
    its submodule when there is one, else the package)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".")
            if known[module].name != "__init__.py":
                package = package[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([base] if base else []))
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    out = []
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name.startswith("assay"):
            out.append(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """Each module's assay imports, wherever in the file they are, except under
    `if TYPE_CHECKING:` (never run)."""
    known = modules()
    graph = {}
    for module, path in known.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        typing_only = {id(n) for block in ast.walk(tree)
                       if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                       for n in ast.walk(block)}
        graph[module] = {target for node in ast.walk(tree)
                         if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in typing_only
                         for target in _imported(module, node, known) if target != module}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layers() -> list[set[str]]:
    """The packages of each layer, in the order of docs/architecture.md's table."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = text[text.index("## Layers"):text.index("## Data flow")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and "assay/" in line]
    return [{f"assay.{m}" for m in re.findall(r"`assay/(\w+)(?:/|\.py)`", row)} for row in rows]


def layer_of(module: str, order: list[set[str]]) -> int | None:
    top = ".".join(module.split(".")[:2])
    return next((i for i, packages in enumerate(order) if top in packages), None)


def test_the_graph_is_read_whole():
    graph = import_graph()
    assert "assay.training.trainer" in graph and "assay.verifiers" in graph["assay.training.trainer"]
    # a late import is an edge too: trl.py's backend imports the trainer inside a function
    assert "assay.training" in {".".join(m.split(".")[:2]) for m in graph["assay.integrations.trl"]}


def test_no_module_imports_one_that_imports_it_back():
    found = circles(import_graph())
    assert found == [], "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_each_layer_imports_only_the_layers_above_it_in_the_architecture_doc():
    order = layers()
    assert len(order) == 10 and order[0] == {"assay.verifiers"} and order[-1] == {"assay.cli"}
    graph = import_graph()
    upward, stray = [], []
    for module, targets in sorted(graph.items()):
        mine = layer_of(module, order)
        for target in sorted(targets):
            theirs = layer_of(target, order)
            if target in BASE or module == "assay" or module == "assay.__main__":
                continue
            if theirs is None or mine is None:
                stray.append(f"{module} -> {target}")
            elif theirs > mine:
                upward.append(f"{module} -> {target}")
    for module in BASE:
        assert not graph.get(module, set()) - BASE, f"{module} must import nothing of assay's"
    assert upward == [], "imports against the layer order: " + "; ".join(upward)
    assert stray == [], "modules in no layer of docs/architecture.md: " + "; ".join(stray)


def test_verification_goes_through_one_front_door():
    """Repeats are removed in one place, Environment.verify_many: outside the envs nothing
    calls verify_batch (which would skip it), and no module keeps a de-duplicating copy."""
    bypass, copies = [], []
    for module, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr == "verify_batch"
                    and not module.startswith("assay.envs.")):
                bypass.append(f"{module}:{node.lineno}")
            if isinstance(node, ast.FunctionDef) and node.name in ("verify_distinct", "verify_unique"):
                copies.append(f"{module}:{node.lineno}")
    assert bypass == [] and copies == [], bypass + copies
