"""The README's findings, written from ``results/`` as sentences, so that no number in them is typed by hand.

Each finding reads one or more results files and ends by naming them; ``tests/test_report.py`` checks every
number of a finding against the files it names. A finding whose file is missing says so instead of guessing.
:mod:`workbench.report` puts the block between :data:`BEGIN` and :data:`END` of the README.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from workbench.metric_aware.ladder import FINE_TUNED
from workbench.report.numbers import format_number as _fmt  # the one rounding rule of the documents
from workbench.report.readers import roofline_errors

BEGIN, END = "<!-- findings:begin -->", "<!-- findings:end -->"
# the ladder and seeds findings: each task with its headline metric
TASK_METRICS = (("stsb", "spearman"), ("sick", "spearman"), ("sst5", "exact_match"))


def _ci(row: pd.Series, value: str = "value", low: str = "ci_low", high: str = "ci_high", decimals: int = 3) -> str:
    if pd.isna(row[value]):
        return "undefined (constant answers)"
    return f"{_fmt(row[value], decimals)} [{_fmt(row[low], decimals)}, {_fmt(row[high], decimals)}]"


def _sources(*files: str) -> str:
    return "(" + ", ".join(f"`results/{f}`" for f in files) + ")"


def ladder(results: Path) -> str:
    """Per task: the RAIL rows of the ladder against the few-shot greedy row and the constant prior."""
    table = pd.read_csv(results / "ladder.csv")
    table = table[table.seed.isna() | (table.seed == 0)].set_index(["task", "arm", "metric"])
    tests = pd.read_csv(results / "ladder_tests.csv")
    parts = []
    for task, metric in TASK_METRICS:
        rows = table.xs((task, metric), level=("task", "metric"))
        fine_tuned = rows.loc[[arm for arm in FINE_TUNED if arm in rows.index]]
        best = fine_tuned.value.idxmax()
        has_prior = "prior" in rows.index and pd.notna(rows.loc["prior", "value"])  # a constant has no rank
        prior = f", constant prior {_fmt(rows.loc['prior', 'value'])}" if has_prior else ""
        parts.append(
            f"{task} {metric.replace('_', ' ')}: few-shot greedy {_ci(rows.loc['few-shot greedy'])}, best fine-tuned "
            f"arm `{best}` {_ci(rows.loc[best])}{prior}"
        )
    better = tests[tests.better.astype(bool)]
    return (
        "**The regression-aware ladder** (seed 0). "
        + "; ".join(parts)
        + f". Each rung against the one below it: {len(better)} of {len(tests)} paired tests find it better "
        + "at p < 0.05 "
        + _sources("ladder.csv", "ladder_tests.csv")
        + "."
    )


def seeds(results: Path) -> str:
    """Per task's headline metric: the default recipe's arm across fine-tuning seeds, and every fine-tuned arm's
    mean beside it."""
    table = pd.read_csv(results / "seeds_summary.csv")
    default = table.loc[table["default model"].astype(bool), "arm"].iloc[0]
    parts = []
    for task, metric in TASK_METRICS:
        rows = table[(table.task == task) & (table.metric == metric)].set_index("arm")
        ours = rows.loc[default]
        others = ", ".join(
            f"`{arm}` {_fmt(rows.loc[arm, 'mean'])}" for arm in FINE_TUNED if arm in rows.index and arm != default
        )
        parts.append(
            f"{task} {metric.replace('_', ' ')}: mean {_fmt(ours['mean'])} (sd {_fmt(ours['sd'])}, min "
            f"{_fmt(ours['min'])}, max {_fmt(ours['max'])}; other arms' means: {others})"
        )
    count = int(table.seeds.max())
    return (
        f"**Fine-tuning seeds** ({count} seeds of every fine-tuned arm; the default model's recipe is `{default}`, "
        "the notebooks use its seed 0). " + "; ".join(parts) + " " + _sources("seeds_summary.csv") + "."
    )


def pattern(results: Path) -> str:
    """How often the Bayes rule of each metric wins its family on the fine-tuned stage, and where there is no signal."""
    table = pd.read_csv(results / "02_pattern_check.csv")
    counts = []
    for model, part in table.groupby("model", sort=False):
        verdicts = part.verdict.str.replace(r" \(.*", "", regex=True).value_counts()  # "no signal (why)": "no signal"
        shown = ", ".join(f"{count} {verdict}" for verdict, count in verdicts.items())
        counts.append(f"{model} stage: {shown} of {len(part)} checks")
    return (
        "**Which rule wins** (expected rule against every rival of its family, paired bootstrap): "
        + "; ".join(counts)
        + ". `no signal` marks a model whose exact mean does not beat the constant prior or whose fitted temperature "
        "sits at its search bound " + _sources("02_pattern_check.csv") + "."
    )


def e2e(results: Path) -> str:
    """MBR-chrF against the published TGen on chrF, and how often MBR with metric X wins X."""
    table = pd.read_csv(results / "e2e.csv").set_index(["system", "metric"])
    diagonal = pd.read_csv(results / "e2e_diagonal.csv")
    items = int(table.loc[("mbr-chrf", "chrf"), "items"])
    line = ", ".join(
        f"{system} {_ci(table.loc[(system, 'chrf')], decimals=2)}"
        for system in ("greedy", "beam", "mbr-chrf", "tgen-std", "sclstm")
        if (system, "chrf") in table.index
    )
    own = diagonal[~diagonal.other.isin(["tgen-std", "sclstm", "mr-values"])]
    wins = own[own.p_better < 0.05]
    return (
        f"**Text metrics on E2E** ({items} test MRs, corpus chrF against all references): {line}. MBR with metric X "
        f"beats another of our decision rules on X in {len(wins)} of {len(own)} paired comparisons (p < 0.05) "
        + _sources("e2e.csv", "e2e_diagonal.csv")
        + "."
    )


def consistency(results: Path) -> str:
    """Per method: real changes of the fine-tuned model's stages found different, and the A/A false-alarm rate."""
    table = pd.read_csv(results / "06_decisions.csv")
    stages = table[table.change.str.startswith("finetuned-") & ~table.change.str.contains("aa-")]
    aa = table[table.change.str.startswith("finetuned-aa")]  # the fine-tuned stage against itself, new seeds
    parts = []
    for method, part in stages.groupby("method", sort=False):
        decided = part.decision.value_counts()
        alarm = aa[aa.method == method].false_alarm
        parts.append(
            f"`{method}` {decided.get('different', 0)} different, {decided.get('equivalent', 0)} equivalent, "
            f"{decided.get('inconclusive', 0)} inconclusive"
            + (f" (A/A false alarm {_fmt(alarm.iloc[0])})" if len(alarm) else "")
        )
    n = stages.n_queries.iloc[0] if len(stages) else 0
    samples = stages.samples_per_query.iloc[0] if len(stages) else 0
    return (
        f"**Consistency of the fine-tuned model's {stages.change.nunique()} lifecycle changes** ({_fmt(n)} queries "
        f"x {_fmt(samples)} samples): " + "; ".join(parts) + " " + _sources("06_decisions.csv") + "."
    )


def cost(results: Path) -> str:
    """The roofline's held-out error per source (thread count), and the orthogonality verdicts."""
    errors = roofline_errors(results / "07_roofline_validation.csv")
    roofline = "; ".join(
        f"{row.source}: mean {_fmt(row['mean'])}, max {_fmt(row['max'])} over {_fmt(row['count'])} held-out passes"
        for _, row in errors.iterrows()
    )
    ortho = pd.read_csv(results / "07_orthogonality.csv")
    verdicts = "; ".join(f"{row.axis_a} vs {row.axis_b}: {row.verdict}" for row in ortho.itertuples())
    stages = int(ortho.stages.iloc[0])
    return (
        f"**Cost.** The calibrated roofline's relative error on passes it was not fitted on: {roofline}. Orthogonality "
        f"over {stages} stages, grouping respected: {verdicts} "
        + _sources("07_roofline_validation.csv", "07_orthogonality.csv")
        + "."
    )


FINDINGS: tuple[tuple[tuple[str, ...], Callable[[Path], str]], ...] = (
    (("02_pattern_check.csv",), pattern),
    (("ladder.csv", "ladder_tests.csv"), ladder),
    (("seeds_summary.csv",), seeds),
    (("e2e.csv", "e2e_diagonal.csv"), e2e),
    (("06_decisions.csv",), consistency),
    (("07_roofline_validation.csv", "07_orthogonality.csv"), cost),
)


def render(results: Path) -> str:
    """The README block: one bullet per finding (or the files it still waits for)."""
    bullets = []
    for files, finding in FINDINGS:
        missing = [f for f in files if not (results / f).exists()]
        bullets.append(
            f"* Not measured yet: {', '.join(f'`results/{f}`' for f in missing)} (the main job writes it; "
            "`seeds_summary.csv`: the seeds command)."
            if missing
            else f"* {finding(results)}"
        )
    return "\n".join([BEGIN, *bullets, END])
