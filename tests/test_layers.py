"""The package's layers stay one-way: a module imports only from its own package or from a lower layer.

Bottom to top: paths; text cleaning, progress bars, tracking, widgets, the profiles' sizes and
side-by-side timings; inference and tasks; metric_aware and the provenance of results files; run
records and lifecycle; the main job's record and serving; consistency, cost and the report; the
command line and the notebooks' start-up. Imports inside functions count too: a late import still ties a
lower layer to a higher one.

Within a package no two modules import each other, directly or through others: the import graph of
the whole package, built from the AST with the imports inside functions, has no cycle. (A late
import that closes a cycle only hides it.) Late imports of optional third-party packages (ray,
vllm, ...) are outside the graph.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "workbench"
LAYERS = {
    "paths": 0,
    "text": 1,
    "progress": 1,
    "tracking": 1,
    "widgets": 1,
    "profiles": 1,
    "sidebyside": 1,
    "inference": 2,
    "tasks": 2,
    "metric_aware": 3,
    "provenance": 3,
    "runs": 4,
    "lifecycle": 4,
    "main_job": 5,
    "serving": 5,
    "consistency": 6,
    "cost": 6,
    "report": 6,
    "cli": 7,
    "notebook": 7,
    "__init__": 7,
    "__main__": 8,
}


def _unit(module: str) -> str:
    """workbench.inference.engine -> inference; workbench.paths -> paths."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("workbench"):
            names = [node.module] if node.module != "workbench" else [f"workbench.{a.name}" for a in node.names]
            found += [(node.lineno, name) for name in names]
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("workbench.")]
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_top_level_unit_has_a_layer():
    units = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in MODULES}
    assert units <= set(LAYERS), f"give these a layer: {sorted(units - set(LAYERS))}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_from_a_layer_above_or_beside_it(path):
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    wrong = [
        f"line {line}: {module}"
        for line, module in _imports(path)
        if _unit(module) != own and LAYERS[_unit(module)] >= LAYERS[own]
    ]
    assert not wrong, f"{path.name} (layer {LAYERS[own]}) imports from its layer or above: {wrong}"


# ---------------------------------------------------------------------------------------- import cycles


def module_name(path: Path, package: Path) -> str:
    """workbench/tasks/base.py -> workbench.tasks.base; workbench/tasks/__init__.py -> workbench.tasks."""
    parts = (package.name, *path.relative_to(package).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(package: Path) -> dict[str, dict[str, list[str]]]:
    """Module -> {imported module of the same package: ["line N (in f)", ...]}, from the AST.

    Every import counts, at module level or inside a function. ``from p import x`` names the module
    ``p.x`` when that is a module of the package, else ``p``. The parent packages that Python runs
    before a submodule are left out: a package's ``__init__`` importing its own submodules would
    otherwise close a loop through every one of them.
    """
    modules = {module_name(path, package): path for path in sorted(package.rglob("*.py"))}
    graph = {}
    for name, path in modules.items():
        edges: dict[str, list[str]] = {}
        is_package = path.name == "__init__.py"
        for node, function in _import_nodes(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:  # relative: from the module's own package, up level - 1 more
                    anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names
                ]
            where = f"line {node.lineno}" + (f" (in {function})" if function else "")
            for target in targets:
                if target not in modules or target == name:
                    continue  # another package, or the module itself
                lines = edges.setdefault(target, [])
                if where not in lines:  # one line per statement, however many names it imports
                    lines.append(where)
        graph[name] = edges
    return graph


def _import_nodes(tree: ast.AST, function: str | None = None):
    """(import statement, name of the enclosing function or None) for every import in ``tree``."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, function
        inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
        yield from _import_nodes(child, inner)


def find_cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module, as [a, b, ..., a].

    >>> find_cycles({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}, "d": {"a": []}})
    [['a', 'b', 'c', 'a']]
    >>> find_cycles({"a": {"b": []}, "b": {}})
    []
    """
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    components: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while not component or component[-1] != node:
                component.append(stack.pop())
            if len(component) > 1:
                components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_cycle_through(graph, sorted(component)) for component in components]


def _cycle_through(graph: dict[str, dict[str, list[str]]], component: list[str]) -> list[str]:
    """A shortest cycle from the component's first module back to itself (breadth first)."""
    start, members = component[0], set(component)
    previous = {start: None}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node]):
                if target == start:
                    path = [node]
                    while previous[path[-1]] is not None:
                        path.append(previous[path[-1]])
                    return [*reversed(path), start]
                if target in members and target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle within the component {component}")


def describe(cycle: list[str], graph: dict[str, dict[str, list[str]]]) -> str:
    """``a -> b (line 3) -> a (line 9 (in f))``: each step with the import lines that make it."""
    steps = [cycle[0]] + [f"{b} ({', '.join(graph[a][b])})" for a, b in zip(cycle, cycle[1:])]
    return " -> ".join(steps)


def test_the_package_has_no_import_cycle():
    graph = import_graph(PACKAGE)
    cycles = [describe(cycle, graph) for cycle in find_cycles(graph)]
    assert not cycles, (
        "import cycles (break them by moving what both sides need to a module both can import):\n" + "\n".join(cycles)
    )


def test_the_cycle_check_sees_imports_inside_functions(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from pkg.sub import low  # a package importing its submodule\n")
    (package / "sub" / "low.py").write_text("def late():\n    from pkg import high\n    return high\n")
    (package / "high.py").write_text("import json\nfrom pkg.sub import low\n")
    graph = import_graph(package)
    assert graph["pkg.high"] == {"pkg.sub.low": ["line 2"]}
    assert graph["pkg.sub.low"] == {"pkg.high": ["line 2 (in late)"]}
    assert [describe(cycle, graph) for cycle in find_cycles(graph)] == [
        "pkg.high -> pkg.sub.low (line 2) -> pkg.high (line 2 (in late))"
    ]
    (package / "sub" / "low.py").write_text("def late():\n    import json\n")
    assert find_cycles(import_graph(package)) == []
