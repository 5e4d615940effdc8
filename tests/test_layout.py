"""The package's layout rules, read from the source with ``ast``: imports point one way, lineage stays lazy.

Every import counts: at module level, inside functions and under ``TYPE_CHECKING`` alike, because a
cycle through any of them makes the modules impossible to read (or to split) one at a time.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import airflow_provider_kumulos

PACKAGE = "airflow_provider_kumulos"
ROOT = Path(airflow_provider_kumulos.__file__).parent


def _modules() -> dict[str, Path]:
    """Every module of the package (``testing/`` included) by dotted name; a package is its ``__init__``."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imported(name: str, path: Path) -> Iterator[str]:
    """Every dotted name ``path`` imports (``from a import b`` gives ``a`` and ``a.b``), relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (a name resolves to the closest module that holds it)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in _imported(name, path):
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name:
                targets.add(imported)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
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
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_package_has_no_import_cycle() -> None:
    graph = import_graph()
    assert len(graph) > 50, "the walk should see every module of the package"
    assert cycles(graph) == []


def test_the_cycle_finder_reports_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_the_graph_sees_function_level_and_type_checking_imports() -> None:
    graph = import_graph()
    # execute() imports the bulk run inside the method; the runner types against nothing above it.
    assert f"{PACKAGE}._bulk.run" in graph[f"{PACKAGE}.operators.attributes"]
    # the bulk report names SyncOutcome only under TYPE_CHECKING.
    assert f"{PACKAGE}._bulk.sync" in graph[f"{PACKAGE}._bulk.report"]


def test_bulk_records_is_a_leaf_and_sync_sits_above_the_runner() -> None:
    graph = import_graph()
    assert not {
        target for target in graph[f"{PACKAGE}._bulk.records"] if target.startswith(f"{PACKAGE}._bulk")
    }
    assert f"{PACKAGE}._bulk.runner" in graph[f"{PACKAGE}._bulk.sync"]
    assert f"{PACKAGE}._bulk.sync" not in graph[f"{PACKAGE}._bulk.runner"]


def test_nothing_below_the_operators_imports_them() -> None:
    graph = import_graph()
    above = (f"{PACKAGE}.operators", f"{PACKAGE}.sensors")
    below = [name for name in graph if name.startswith((f"{PACKAGE}._", f"{PACKAGE}.hooks"))]
    offenders = {name: sorted(t for t in graph[name] if t.startswith(above)) for name in below}
    assert {name: targets for name, targets in offenders.items() if targets} == {}


def test_lineage_is_imported_only_where_the_openlineage_listener_asks_for_facets() -> None:
    importers = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        enclosing = {}
        for function in ast.walk(tree):
            if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                enclosing.update({id(node): function.name for node in ast.walk(function)})
        for node in ast.walk(tree):
            lineage = f"{PACKAGE}._lineage"
            names = [alias.name for alias in getattr(node, "names", [])]
            if (
                (isinstance(node, ast.ImportFrom) and node.module == lineage)
                or (isinstance(node, ast.ImportFrom) and node.module == PACKAGE and "_lineage" in names)
                or (isinstance(node, ast.Import) and lineage in names)
            ):
                importers.append((name, enclosing.get(id(node), "<module>")))
    assert importers, "the operators build their lineage through _lineage"
    assert {where for _, where in importers} == {"get_openlineage_facets_on_complete"}, importers
