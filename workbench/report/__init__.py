"""Results documents rendered from ``results/``, never typed by hand.

``python -m workbench report`` writes ``docs/results.md`` (every table below, each naming its results
file and the run and commit that wrote it, from ``results/provenance.json``) and three blocks of the
README: the headline between :data:`BEGIN` and :data:`END`, the findings (:mod:`workbench.report.findings`),
and the quick start's sentence on the main job's wall time between :data:`JOB_BEGIN` and
:data:`JOB_END` (from ``results/main_run.json``, :func:`workbench.main_job.describe`). ``--check``
only compares, and fails when a committed document differs from a fresh render or when a results
file's provenance is missing or incomplete (:func:`workbench.provenance.problems`). Numbers are
rounded by :func:`format_number` alone, so a test can check every number of a document against the
results files (``tests/test_report.py``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from workbench.main_job import describe
from workbench.paths import PROJECT_ROOT, RESULTS_DIR
from workbench.report import findings
from workbench.report.numbers import format_number, markdown_table
from workbench.report.tables import TABLES, Table, columns, provenance_line, render_table

__all__ = ["TABLES", "Table", "columns", "format_number", "provenance_line", "render", "render_table"]

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
JOB_BEGIN, JOB_END = "<!-- main-run:begin -->", "<!-- main-run:end -->"
DOCUMENT = Path("docs") / "results.md"

# The README's headline: (task, what, metric, strategy of the model, strategy of the constant prior).
HEADLINE_FILE = "02_metric_aware.csv"
HEADLINE = (
    ("sst5", "accuracy (exact match)", "exact_match", "exact mode", "prior mode"),
    ("sst5", "RMSE", "rmse", "exact mean", "prior mean"),
    ("stsb", "RMSE", "rmse", "exact mean", "prior mean"),
    ("stsb", "Spearman", "spearman", "exact mean", None),
)


def render_headline(results: Path = RESULTS_DIR) -> str:
    """The README block: a few headline numbers beside the constant prior, their source, a link."""
    table = pd.read_csv(results / HEADLINE_FILE)
    table = table[table.model == "finetuned"].set_index(["task", "strategy"])
    rows = []
    for task, what, metric, strategy, prior in HEADLINE:
        ours = table.loc[(task, strategy)]
        baseline = format_number(table.loc[(task, prior), metric]) if prior else "none (a constant has no rank)"
        rows.append(
            [
                task,
                f"{what} of the {strategy}",
                f"{format_number(ours[metric])} {ours[f'{metric} CI']}",
                baseline,
                format_number(ours["n"]),
            ]
        )
    return "\n\n".join(
        [
            BEGIN,
            markdown_table(["task", "metric", "fine-tuned model [95% CI]", "constant prior", "test items"], rows),
            f"The fine-tuned stage of notebook 04 (rows `model = finetuned`), zero-shot, scored exactly. "
            f"{provenance_line(results, HEADLINE_FILE)} Every table: [docs/results.md](docs/results.md).",
            END,
        ]
    )


def render_document(results: Path = RESULTS_DIR) -> str:
    """``docs/results.md``: every table of :data:`TABLES`, with a table of contents."""
    contents = [f"{i}. [{t.title}](#{anchor(t.title)})" for i, t in enumerate(TABLES, 1)]
    header = (
        "# Results\n\nRendered by `python -m workbench report` from `results/` and `results/provenance.json`; "
        "do not edit by hand (a test compares this file with a fresh render). What the numbers mean, and the "
        "commands that measured them, are in the README and the other documents of `docs/`."
    )
    return "\n\n".join([header, "\n".join(contents)] + [render_table(t, results) for t in TABLES]) + "\n"


def anchor(title: str) -> str:
    """GitHub's anchor for a heading.

    >>> anchor("SimCT: A/A false-alarm rate")
    'simct-aa-false-alarm-rate'
    """
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def with_headline(readme: str, block: str, begin: str = BEGIN, end: str = END) -> str:
    """``readme`` with the text between ``begin`` and ``end`` (markers included) replaced by ``block``."""
    start, stop = readme.find(begin), readme.find(end)
    if start < 0 or stop < start:
        raise ValueError(f"the README has no {begin} ... {end} block")
    return readme[:start] + block + readme[stop + len(end) :]


def render_job(results: Path = RESULTS_DIR) -> str:
    """The README quick start's block: the main job's measured wall time (:func:`workbench.main_job.describe`)."""
    return f"{JOB_BEGIN}\n{describe(results)}\n{JOB_END}"


def render(root: Path = PROJECT_ROOT, results: Path | None = None, check: bool = False) -> list[Path]:
    """Render (or with ``check`` only compare) ``docs/results.md`` and the README's three blocks.

    Returns:
        The documents that differed from a fresh render (rewritten unless ``check``).
    """
    results = results or root / "results"
    readme_path, document_path = root / "README.md", root / DOCUMENT
    readme = with_headline(readme_path.read_text(), render_headline(results))
    readme = with_headline(readme, findings.render(results), findings.BEGIN, findings.END)
    wanted = {
        document_path: render_document(results),
        readme_path: with_headline(readme, render_job(results), JOB_BEGIN, JOB_END),
    }
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
    if not check:
        for path in stale:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(wanted[path])
    return stale
