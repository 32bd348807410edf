"""Thin notebooks: each at most 150 lines of code, no function longer than 10 lines, sizes from the profiles.

Lines of code are the non-blank lines of code cells (the parameters cell included) that are not only
a comment. Logic a second notebook could use belongs in the package, with docstrings and tests.
"""

import ast

import nbformat
import pytest

from workbench.paths import PROJECT_ROOT

NOTEBOOKS = sorted((PROJECT_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
MAX_CODE_LINES = 150
MAX_FUNCTION_LINES = 10


def code_cells(path):
    return [cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code"]


def code_lines(source: str) -> int:
    """Non-blank lines that are not only a comment.

    >>> code_lines("x = 1\\n\\n# why\\ny = 2  # how")
    2
    """
    return sum(1 for line in source.splitlines() if line.strip() and not line.strip().startswith("#"))


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[str]:
    """Names and lengths of the functions (and lambdas) in ``source`` longer than ``limit`` lines.

    >>> long_functions("def f():\\n" + "    x = 1\\n" * 11, limit=10)
    ['f (12 lines)']
    """
    tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            length = node.end_lineno - node.lineno + 1
            if length > limit:
                found.append(f"{getattr(node, 'name', 'lambda')} ({length} lines)")
    return found


def test_there_are_eight_notebooks():
    assert [path.name[:2] for path in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07", "08"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name[:2])
def test_notebook_is_thin(path):
    cells = code_cells(path)
    total = sum(code_lines(source) for source in cells)
    assert total <= MAX_CODE_LINES, f"{path.name}: {total} lines of code (at most {MAX_CODE_LINES})"
    too_long = [name for source in cells for name in long_functions(source)]
    assert not too_long, f"{path.name}: functions longer than {MAX_FUNCTION_LINES} lines: {too_long}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name[:2])
def test_notebook_reads_its_sizes_from_the_profiles(path):
    source = "\n".join(code_cells(path))
    assert "start_notebook(" in source, f"{path.name} does not start through workbench.notebook.start_notebook"
    assert '"smoke":' not in source and "[PROFILE]" not in source, f"{path.name} defines its own per-profile sizes"
