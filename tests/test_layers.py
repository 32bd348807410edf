"""The package's layers stay one-way: a module imports only from its own package or from a lower layer.

Bottom to top: paths; text cleaning, progress bars and tracking; inference and tasks; metric_aware
and run records; lifecycle; serving; consistency and cost; the command line. Imports inside functions count too: a late import still ties a
lower layer to a higher one.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "workbench"
LAYERS = {
    "paths": 0,
    "text": 1, "progress": 1, "tracking": 1, "widgets": 1,
    "inference": 2, "tasks": 2,
    "metric_aware": 3, "runs": 3,
    "lifecycle": 4,
    "serving": 5,
    "consistency": 6, "cost": 6, "report": 6,
    "cli": 7, "__init__": 7,
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
