"""The results documents come from results/: every number in docs/results.md and in the README's
headline block is a value of the results file its table names (rounded as the renderer rounds),
and the committed documents equal a fresh render."""

import csv
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from workbench import report
from workbench.paths import PROJECT_ROOT, RESULTS_DIR
from workbench.report import findings

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
SOURCE = re.compile(r"Source: `results/([^`]+)`")


def file_values(path: Path) -> list:
    """Every value in a results file: CSV cells as text, JSON leaves as parsed."""
    if path.suffix == ".json":
        leaves, stack = [], [json.loads(path.read_text())]
        while stack:
            value = stack.pop()
            if isinstance(value, dict | list):
                stack.extend(value.values() if isinstance(value, dict) else value)
            else:
                leaves.append(value)
        return leaves
    with open(path, newline="") as handle:
        return [cell for row in csv.reader(handle) for cell in row]


def shown_forms(path: Path) -> set[str]:
    """How the renderer can show the file's numbers: each numeric value at every precision it uses,
    and the digits inside text cells (an interval "[0.803, 0.855]", a name "exact q0.25") as written."""
    forms = set()
    for value in file_values(path):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                forms.update(NUMBER.findall(value))
                continue
        if isinstance(value, int | float) and not isinstance(value, bool):
            forms.update(report.format_number(value, decimals) for decimals in range(6))
    return forms


def derived_forms(path: Path) -> set[str]:
    """Numbers a table's reader derives from its file (e.g. the roofline's mean error), at every precision."""
    values = [
        value
        for table in report.TABLES
        if table.file == path.name and table.read is not pd.read_csv and path.exists()
        for value in table.read(path).to_numpy().ravel()
    ]
    numeric = [v for v in values if isinstance(v, int | float | np.number) and not isinstance(v, bool | np.bool_)]
    return {report.format_number(v, decimals) for v in numeric for decimals in range(6)}


def table_numbers(text: str) -> list[str]:
    """The numbers in the body rows of every markdown table in ``text`` (header rows left out)."""
    numbers, rows_seen = [], 0
    for line in text.splitlines():
        if not line.startswith("|"):
            rows_seen = 0
            continue
        rows_seen += 1
        if rows_seen > 2:  # row 1 is the header, row 2 the separator
            numbers += NUMBER.findall(line)
    return numbers


def unsupported_numbers(document: str, results: Path) -> list[str]:
    """Numbers of a document's tables that their section's results file does not hold."""
    missing = []
    for section in re.split(r"\n(?=## )", document):
        source = SOURCE.search(section)
        numbers = table_numbers(section)
        if not numbers:
            continue
        assert source, f"a table without a Source line: {section[:80]!r}"
        allowed = shown_forms(results / source.group(1)) | derived_forms(results / source.group(1))
        missing += [f"{source.group(1)}: {n}" for n in numbers if n not in allowed]
    return missing


def headline_block(readme: str) -> str:
    return readme[readme.index(report.BEGIN) : readme.index(report.END)]


def test_every_number_in_docs_results_is_in_its_results_file():
    document = (PROJECT_ROOT / report.DOCUMENT).read_text()
    assert len(table_numbers(document)) > 500
    assert unsupported_numbers(document, RESULTS_DIR) == []


def test_every_number_in_the_readme_headline_is_in_its_results_file():
    block = headline_block((PROJECT_ROOT / "README.md").read_text())
    assert f"Source: `results/{report.HEADLINE_FILE}`" in block and len(table_numbers(block)) >= 10
    assert unsupported_numbers(block, RESULTS_DIR) == []


def test_the_check_catches_a_number_typed_by_hand():
    document = (PROJECT_ROOT / report.DOCUMENT).read_text()
    cell = re.search(r"\| (\d\.\d{3}) \[", document)  # the first estimate with an interval, whatever the run gave
    edited = document[: cell.start(1)] + "9.876" + document[cell.end(1) :]
    assert [problem.split(": ")[-1] for problem in unsupported_numbers(edited, RESULTS_DIR)] == ["9.876"]


def test_the_committed_documents_equal_a_fresh_render():
    assert report.render(check=True) == []  # `report --check` also checks provenance: tests/test_provenance.py


def test_render_writes_what_check_then_accepts(tmp_path):
    job = f"{report.JOB_BEGIN}\nold figure\n{report.JOB_END}"
    old_findings = f"{findings.BEGIN}\nold findings\n{findings.END}"
    (tmp_path / "README.md").write_text(f"# title\n\n{job}\n\n{report.BEGIN}\nstale\n{report.END}\n\n{old_findings}\n")
    written = report.render(tmp_path, RESULTS_DIR)
    assert sorted(written) == [tmp_path / "README.md", tmp_path / report.DOCUMENT]
    readme = (tmp_path / "README.md").read_text()
    assert readme.startswith("# title\n\n" + report.JOB_BEGIN) and readme.endswith(findings.END + "\n")
    assert "stale" not in readme and "old figure" not in readme and "old findings" not in readme
    assert findings.render(RESULTS_DIR) in readme
    assert report.render_job(RESULTS_DIR) in readme
    assert report.render(tmp_path, RESULTS_DIR, check=True) == []
    (tmp_path / report.DOCUMENT).write_text("typed by hand\n")
    assert report.render(tmp_path, RESULTS_DIR, check=True) == [tmp_path / report.DOCUMENT]


def test_a_readme_without_markers_is_refused_and_a_stale_file_shows_no_numbers(tmp_path):
    with pytest.raises(ValueError, match="no <!-- results:begin --> ... <!-- results:end --> block"):
        report.with_headline("# no markers\n", "block")
    table = report.Table("t", "05_load_test.csv", report.columns(("x", "no such column")), writer="notebook 05")
    stale = report.render_table(table, RESULTS_DIR)
    assert stale.startswith("## t\n\nStale: `results/05_load_test.csv` has no column(s) 'no such column'")
    assert stale.endswith("`notebook 05` rewrites it in the next main run.") and "|" not in stale


def test_provenance_names_run_commit_and_state(tmp_path):
    record = {
        "notebook": "05_serve_and_monitor",
        "profile": "default",
        "run": "runs/default/m/20261203-135919-05",
        "written": "2026-12-03T14:01:47Z",
        "git": {"commit": "9d841c5988fe", "dirty": False},
        "models": [],
    }
    (tmp_path / "provenance.json").write_text(json.dumps({"05_load_test.csv": record}))
    assert report.provenance_line(tmp_path, "05_load_test.csv") == (
        "Source: `results/05_load_test.csv`, written by `05_serve_and_monitor` (profile default) in run "
        "`runs/default/m/20261203-135919-05`, commit `9d841c5` (clean tree), 2026-12-03T14:01:47Z."
    )
    record["git"]["dirty"] = True
    (tmp_path / "provenance.json").write_text(json.dumps({"05_load_test.csv": record}))
    assert "commit `9d841c5` (uncommitted changes)" in report.provenance_line(tmp_path, "05_load_test.csv")
    assert report.provenance_line(tmp_path, "other.csv").endswith("`results/provenance.json` has no record of it.")


def test_every_number_in_the_readme_findings_is_in_the_files_each_names():
    readme = (PROJECT_ROOT / "README.md").read_text()
    block = readme[readme.index(findings.BEGIN) : readme.index(findings.END)]
    bullets = [line for line in block.splitlines() if line.startswith("* ")]
    assert len(bullets) == len(findings.FINDINGS)
    for bullet in [b for b in bullets if not b.startswith("* Not measured yet")]:
        files = re.findall(r"`results/([^`]+)`", bullet)
        allowed = set().union(*(shown_forms(RESULTS_DIR / f) | derived_forms(RESULTS_DIR / f) for f in files))
        # measured values have decimals; whole numbers are counts of rows, and "p < 0.05" is the stated level
        text = re.sub(r"`[^`]*`|p < 0\.05", "", bullet)
        assert [n for n in NUMBER.findall(text) if "." in n and n not in allowed] == [], bullet


def test_a_finding_waits_for_its_files(tmp_path):
    assert findings.render(tmp_path).count("Not measured yet") == len(findings.FINDINGS)
