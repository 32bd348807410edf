"""Results documents rendered from ``results/``, never typed by hand.

``python -m workbench report`` writes ``docs/results.md`` (every table below, each naming its results
file and the run and commit that wrote it, from ``results/provenance.json``), the README's
headline block between :data:`BEGIN` and :data:`END` and its quick start's sentence on the main job's
wall time between :data:`JOB_BEGIN` and :data:`JOB_END` (from ``results/main_run.json``,
:func:`workbench.main_job.describe`); ``--check`` only compares, and fails when a committed document
differs from a fresh render or when a results file's provenance is missing or incomplete
(:func:`workbench.provenance.problems`). Numbers are rounded by :func:`format_number` alone,
so a test can check every number of a document against the results files (``tests/test_report.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.main_job import describe
from workbench.paths import PROJECT_ROOT, RESULTS_DIR

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
JOB_BEGIN, JOB_END = "<!-- main-run:begin -->", "<!-- main-run:end -->"
DOCUMENT = Path("docs") / "results.md"


def format_number(value, decimals: int = 3) -> str:
    """A result value as the documents show it: integers whole, other numbers to ``decimals`` places.

    >>> format_number(2210), format_number(0.82753), format_number(1.5e-18), format_number(0.0043, 4)
    ('2210', '0.828', '0.000', '0.0043')
    >>> format_number(float("nan")), format_number(True), format_number("[0.803, 0.855]"), format_number("[nan, nan]")
    ('', 'yes', '[0.803, 0.855]', '')
    """
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, str):
        return "" if value == "[nan, nan]" else value  # the interval of an undefined statistic
    if value is None or pd.isna(value):
        return ""
    if isinstance(value, int | np.integer) or (float(value).is_integer() and abs(value) >= 1):
        return str(int(value))
    return f"{value:.{decimals}f}"


@dataclass(frozen=True)
class Column:
    """One column of a rendered table: its header and the results columns joined into each cell
    (e.g. a value and its interval), numbers to ``decimals`` places."""

    header: str
    sources: tuple[str, ...]
    decimals: int = 3


def columns(*specs) -> tuple[Column, ...]:
    """Columns from ``(header, source)`` or ``(header, source, decimals)`` tuples; a source "a + b"
    joins two results columns in one cell."""
    return tuple(Column(spec[0], tuple(s.strip() for s in spec[1].split(" + ")), *spec[2:]) for spec in specs)


@dataclass(frozen=True)
class Table:
    """One results table: where its rows come from, which rows and columns it shows, what it means.

    Attributes:
        title: the section heading.
        file: the results file, relative to ``results/``.
        columns: what each column shows.
        rows: selects and orders the rows shown (default: all, in file order).
        note: one or two sentences on what the table says and how it was measured.
        read: turns the file into a table (default: ``pd.read_csv``).
    """

    title: str
    file: str
    columns: tuple[Column, ...]
    rows: Callable[[pd.DataFrame], pd.DataFrame] = lambda table: table
    note: str = ""
    read: Callable[[Path], pd.DataFrame] = field(default=pd.read_csv)

    def frame(self, results: Path) -> pd.DataFrame:
        return self.rows(self.read(results / self.file))


def where(**equal) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Rows whose columns take the given values (a list: any of them, in that order).

    >>> where(task=["stsb", "sst5"])(pd.DataFrame({"task": ["sst5", "gsm8k", "stsb"]})).task.tolist()
    ['stsb', 'sst5']
    """

    def select(table: pd.DataFrame) -> pd.DataFrame:
        for name, wanted in equal.items():
            table = table[table[name].isin(wanted) if isinstance(wanted, list) else table[name] == wanted]
        order = [name for name, wanted in equal.items() if isinstance(wanted, list)]  # the first list orders first
        return (
            table.sort_values(order, key=lambda values: values.map(equal[values.name].index), kind="stable")
            if order
            else table
        )

    return select


def dev_history(path: Path) -> pd.DataFrame:
    """A fine-tuning record's dev evaluations (``04_finetune.json``), one row per step, ``task:metric`` columns."""
    record = json.loads(path.read_text())
    return pd.DataFrame(
        [
            {
                "step": entry["step"],
                **{
                    f"{task}:{name}": value
                    for task, scores in entry["scores"].items()
                    for name, value in scores.items()
                },
            }
            for entry in record["dev_history"]
        ]
    )


def provenance_line(results: Path, file: str) -> str:
    """Where a results file came from, as ``provenance.json`` records it (and says when it does not).

    Entries written before :mod:`workbench.provenance` (``notebook`` and ``git: {commit, dirty}``)
    are read too, until the main run rewrites them.
    """
    path = results / "provenance.json"
    record = json.loads(path.read_text()).get(file) if path.exists() else None
    if record is None:
        return f"Source: `results/{file}`; `results/provenance.json` has no record of it."
    git = record.get("git") or {"commit": record.get("commit"), "dirty": record.get("clean") is False}
    state = "uncommitted changes" if git.get("dirty") else "clean tree"
    commit = f"commit `{git['commit'][:7]}` ({state})" if git.get("commit") else "no git commit recorded"
    writer = record.get("writer") or record["notebook"]
    writer = ", ".join(f"`{w}`" for w in writer) if isinstance(writer, list) else f"`{writer}`"  # records: scripts
    profile = f" (profile {record['profile']})" if record.get("profile") else ""
    run = f" in run `{record['run']}`" if record.get("run") else ""
    return f"Source: `results/{file}`, written by {writer}{profile}{run}, {commit}, {record['written']}."


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def render_table(table: Table, results: Path) -> str:
    frame = table.frame(results)
    missing = sorted({s for c in table.columns for s in c.sources} - set(frame.columns))
    if missing:
        raise KeyError(f"results/{table.file} has no column(s) {missing}; it has {list(frame.columns)}")
    rows = [
        [" ".join(part for s in c.sources if (part := format_number(row[s], c.decimals))) for c in table.columns]
        for _, row in frame.iterrows()
    ]
    parts = [f"## {table.title}", provenance_line(results, table.file)]
    parts += [table.note] if table.note else []
    return "\n\n".join(parts + [markdown_table([c.header for c in table.columns], rows)])


# Each metric-aware row: a point estimate followed by its 95% bootstrap interval.
SCORES = columns(
    ("n", "n"),
    ("RMSE [95% CI]", "rmse + rmse CI"),
    ("MAE [95% CI]", "mae + mae CI"),
    ("exact match [95% CI]", "exact_match + exact_match CI"),
    ("Spearman [95% CI]", "spearman + spearman CI"),
)
FINETUNED_STRATEGIES = [
    "exact mean",
    "exact median",
    "exact mode",
    "greedy",
    "mean",
    "one sample",
    "prior mean",
    "prior mode",
    "tfidf ridge",
    "minilm ridge",
]

TABLES = (
    Table(
        "Metric-aware inference: the fine-tuned stage",
        "02_metric_aware.csv",
        columns(("task", "task"), ("strategy", "strategy")) + SCORES,
        where(model="finetuned", task=["sst5", "stsb"], strategy=FINETUNED_STRATEGIES),
        "Notebook 02, default profile: exact strategies on the whole test sets, sampled ones (K=32, T=1) on seeded "
        "subsets (column n); prior and ridge rows are the baselines, fitted on the train split.",
    ),
    Table(
        "Metric-aware inference: the base stage (few-shot)",
        "02_metric_aware.csv",
        columns(("task", "task"), ("strategy", "strategy")) + SCORES,
        where(
            model="base",
            task=["sst5", "stsb"],
            strategy=["exact mean", "exact median", "exact mode", "greedy", "mean", "mode (self-consistency)"],
        ),
    ),
    Table(
        "Which rule wins: paired tests",
        "02_pattern_check.csv",
        columns(
            ("model", "model"),
            ("task", "task"),
            ("family", "family"),
            ("metric", "metric"),
            ("expected winner", "expected winner"),
            ("observed winner", "observed winner"),
            ("verdict", "verdict"),
        ),
        where(task=["sst5", "stsb"]),
        "`holds`: the expected rule beats every rival of its family with paired bootstrap p < 0.05; "
        "`fails`: a rival beats it; otherwise inconclusive.",
    ),
    Table(
        "Calibration",
        "02_calibration.csv",
        columns(
            ("model", "model"),
            ("task", "task"),
            ("n", "n"),
            ("NLL", "nll"),
            ("ECE", "ece"),
            ("fitted T", "temperature", 2),
            ("NLL at T", "nll tuned T"),
            ("ECE at T", "ece tuned T"),
            ("mass outside the grid", "outside mass (mean)"),
        ),
    ),
    Table(
        "Fine-tuning: dev evaluations of the final run",
        "04_finetune.json",
        columns(
            ("dev step", "step"),
            ("SST-5 accuracy (exact mode)", "sst5:accuracy"),
            ("SST-5 RMSE (exact mean)", "sst5:rmse"),
            ("STS-B RMSE (exact mean)", "stsb:rmse"),
            ("STS-B Spearman", "stsb:spearman"),
        ),
        read=dev_history,
    ),
    Table(
        "Fine-tuning objectives on one budget",
        "04_objectives.csv",
        columns(
            ("objective", "objective"),
            ("task", "task"),
            ("accuracy", "accuracy"),
            ("RMSE", "rmse"),
            ("Spearman", "spearman"),
            ("NLL", "nll", 2),
            ("mass outside the grid", "outside_mass"),
        ),
    ),
    Table(
        "Lifecycle evaluation (120 test items per task, zero-shot)",
        "04_evaluation.csv",
        columns(
            ("stage", "stage"),
            ("task", "task"),
            ("accuracy", "accuracy"),
            ("macro F1", "macro_f1"),
            ("AUC (OvR)", "auc_ovr"),
            ("ECE", "ece"),
            ("RMSE (exact mean)", "rmse"),
            ("mass outside the grid", "outside_mass"),
            ("perplexity", "perplexity", 1),
        ),
    ),
    Table(
        "Serving: load test",
        "05_load_test.csv",
        columns(
            ("concurrency", "concurrency"),
            ("throughput (req/s)", "throughput (req/s)", 1),
            ("p50 (ms)", "p50 (ms)", 1),
            ("p95 (ms)", "p95 (ms)", 1),
            ("p99 (ms)", "p99 (ms)", 1),
            ("lost", "lost", 0),
            ("duplicated", "duplicated", 0),
        ),
        note="Notebook 05, default profile: the embedded model behind the server on loopback.",
    ),
    Table(
        "SimCT: the query budget planned on the pilot",
        "06_simct_budget.csv",
        columns(
            ("pair score", "score"),
            ("target", "target"),
            ("pilot d_z", "effect_dz", 2),
            ("queries for power 0.8 (formula)", "n_formula"),
            ("power at the budget", "power_at_budget"),
            ("budget", "budget"),
            ("reached", "reached"),
            ("chosen", "chosen"),
        ),
    ),
    Table(
        "SimCT: decisions",
        "06_simct_decisions.csv",
        columns(
            ("change", "description"),
            ("decision", "decision"),
            ("SimCT p", "simct_p"),
            ("SimCT power", "simct_power"),
            ("MMD p", "mmd_p"),
            ("MMD power", "mmd_power"),
            ("d_z", "effect_dz", 2),
        ),
        note="100 queries x 6 samples per stage, alpha 0.05; p below 0.0005 shows as 0.000.",
    ),
    Table(
        "SimCT: A/A false-alarm rate",
        "06_simct_false_alarms.csv",
        columns(
            ("test", "test"),
            ("queries", "n_queries"),
            ("rate", "rate"),
            ("95% CI", "ci_low + ci_high"),
            ("runs", "n_runs"),
        ),
    ),
    Table(
        "SimCT: two labellings side by side (p-values)",
        "06_simct_labellings.csv",
        columns(
            ("change", "description"),
            ("reference-only labelling", "reference labelling: p"),
            ("paper's labelling", "both labelling (paper): p"),
            ("cosine", "cosine only: p"),
            ("MMD", "MMD: p"),
        ),
    ),
    Table(
        "Cost: metric-aware overhead, multiple of greedy decoding",
        "07_overhead.csv",
        columns(
            ("method", "method"),
            ("n", "n"),
            ("this CPU, measured", "this CPU (measured, Engine)", 2),
            ("this CPU, roofline", "this CPU roofline (calibrated)", 2),
            ("H100, roofline (assumed efficiency)", "H100 roofline (assumed efficiency)", 2),
        ),
    ),
    Table(
        "Cost: break-even against gpt-4o-mini (N=1)",
        "07_break_even.csv",
        columns(
            ("hosting", "hosting"),
            ("API US$/1,000", "api_usd_per_1000", 4),
            ("self-hosted US$/1,000 at capacity", "self_hosted_usd_per_1000_at_capacity", 5),
            ("break-even (M requests/month)", "break_even_millions_per_month", 1),
        ),
        where(api="OpenAI/gpt-4o-mini", n=1),
    ),
    Table(
        "Generalization to unseen rating sets (exact mean)",
        "07_generalization.csv",
        columns(
            ("stage", "stage"),
            ("metric", "metric"),
            ("in domain", "in_domain_set"),
            ("value", "in_domain"),
            ("out of domain", "out_of_domain_set"),
            ("value", "out_of_domain"),
            ("drop [95% CI]", "drop + drop_low + drop_high"),
            ("significant", "significant"),
        ),
        where(rule="exact mean"),
    ),
    Table(
        "The Costly Dilemma scorecard",
        "07_scorecard.csv",
        columns(
            ("stage", "stage"),
            ("quality (skill)", "quality"),
            ("generalization (skill)", "generalization"),
            ("evaluation items", "evaluation_items"),
            ("evaluation US$", "evaluation_usd", 0),
            ("serving US$/1,000, this CPU", "serving_usd_per_1000", 4),
            ("L4 (predicted)", "serving_usd_per_1000 l4 (predicted)", 5),
            ("H100 (predicted)", "serving_usd_per_1000 h100-sxm (predicted)", 5),
            ("Pareto", "pareto"),
        ),
        note="Skill = 1 - RMSE / RMSE of the constant prior; serving at 50% utilisation.",
    ),
    Table(
        "Is the dilemma orthogonal?",
        "07_orthogonality.csv",
        columns(
            ("axis", "axis_a"),
            ("against", "axis_b"),
            ("Spearman rho", "rho", 2),
            ("p", "p"),
            ("95% interval", "low + high", 2),
            ("verdict", "verdict"),
        ),
    ),
)

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
        raise ValueError(f"the README has no {begin} ... {end} block for the results headline")
    return readme[:start] + block + readme[stop + len(end) :]


def render_job(results: Path = RESULTS_DIR) -> str:
    """The README quick start's block: the main job's measured wall time (:func:`workbench.main_job.describe`)."""
    return f"{JOB_BEGIN}\n{describe(results)}\n{JOB_END}"


def render(root: Path = PROJECT_ROOT, results: Path | None = None, check: bool = False) -> list[Path]:
    """Render (or with ``check`` only compare) ``docs/results.md`` and the README's two blocks.

    Returns:
        The documents that differed from a fresh render (rewritten unless ``check``).
    """
    results = results or root / "results"
    readme_path, document_path = root / "README.md", root / DOCUMENT
    readme = with_headline(readme_path.read_text(), render_headline(results))
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
