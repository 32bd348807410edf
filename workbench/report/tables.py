"""Every table of ``docs/results.md``: its results file, rows, columns and note, and how it is rendered.

A missing file renders as "Not measured yet", a file without a column the table shows as "Stale"; neither
shows a number.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from workbench.lifecycle.finetune.config import FinetuneConfig
from workbench.paths import PROJECT_ROOT
from workbench.report.numbers import format_number, markdown_table
from workbench.report.readers import dev_history, roofline_errors, where, wide, with_intervals


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
        writer: what writes the file, named while the file does not exist yet (default: the notebook
            its ``NN_`` prefix names).
    """

    title: str
    file: str
    columns: tuple[Column, ...]
    rows: Callable[[pd.DataFrame], pd.DataFrame] = lambda table: table
    note: str = ""
    read: Callable[[Path], pd.DataFrame] = field(default=pd.read_csv)
    writer: str = ""

    def frame(self, results: Path) -> pd.DataFrame:
        return self.rows(self.read(results / self.file))


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


def writer(table: Table) -> str:
    """What writes the table's file: ``table.writer``, else the notebook named by its ``NN_`` prefix."""
    if table.writer:
        return f"`{table.writer}`"
    number = table.file[:3] if re.match(r"\d\d_", table.file) else None
    notebooks = sorted((PROJECT_ROOT / "notebooks").glob(f"{number}*.ipynb")) if number else []
    return f"`notebooks/{notebooks[0].name}`" if notebooks else "the main job"


def render_table(table: Table, results: Path) -> str:
    if not (results / table.file).exists():
        return (
            f"## {table.title}\n\nNot measured yet: `results/{table.file}` does not exist; "
            f"{writer(table)} writes it (see the README's quick start)."
        )
    frame = table.frame(results)
    missing = sorted({s for c in table.columns for s in c.sources} - set(frame.columns))
    if missing:  # written by an older version of its notebook: its numbers are not shown in another layout
        return (
            f"## {table.title}\n\nStale: `results/{table.file}` has no column(s) {', '.join(map(repr, missing))}; "
            f"it was written by an older version of the code ({provenance_line(results, table.file)}), and "
            f"{writer(table)} rewrites it in the next main run."
        )
    return f"## {table.title}\n\n" + table_body(table, frame, results)


def table_body(table: Table, frame: pd.DataFrame, results: Path) -> str:
    rows = [
        [" ".join(part for s in c.sources if (part := format_number(row[s], c.decimals))) for c in table.columns]
        for _, row in frame.iterrows()
    ]
    parts = [provenance_line(results, table.file)] + ([table.note] if table.note else [])
    return "\n\n".join(parts + [markdown_table([c.header for c in table.columns], rows)])


# Each metric-aware row: a point estimate followed by its 95% bootstrap interval.
MIX_WEIGHT = FinetuneConfig.mse_weight  # the ladder's raft+ce arm trains the `mix` objective with the default weight
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
        "The regression-aware fine-tuning ladder",
        "ladder.csv",
        columns(("task", "task"), ("arm", "arm"))
        + columns(
            ("RMSE [95% CI]", "rmse + rmse CI"),
            ("MAE [95% CI]", "mae + mae CI"),
            ("exact match [95% CI]", "exact_match + exact_match CI"),
            ("Spearman [95% CI]", "spearman + spearman CI"),
        ),
        note="Seed 0 of each fine-tuned arm (equal examples and steps); `rail`: the Bayes rule of each metric on the "
        f"exact grid distribution; `raft+ce`: trained on {MIX_WEIGHT:g} x the squared error of the grid mean + "
        f"{1 - MIX_WEIGHT:g} x the answer's "
        "cross-entropy (RAFT alone fits the constant on SST-5 from this base model). Prior and ridge rows are the "
        "baselines; `bert-base (published)` is a published figure, not measured here.",
        read=wide(["task", "arm"], select=lambda t: t[t.seed.isna() | (t.seed == 0)]),  # baselines have no seed
        writer="notebooks/02_metric_aware_inference.ipynb",
    ),
    Table(
        "The ladder: adjacent rows, paired tests",
        "ladder_tests.csv",
        columns(
            ("task", "task"),
            ("arm", "arm"),
            ("against", "against"),
            ("metric", "metric"),
            ("difference [95% CI]", "difference + CI"),
            ("p", "p"),
            ("better", "better"),
        ),
        note="Paired bootstrap over test items; `better`: the arm beats the row below it at p < 0.05.",
        read=with_intervals(("CI", "ci_low", "ci_high")),
        writer="notebooks/02_metric_aware_inference.ipynb",
    ),
    Table(
        "Fine-tuning seeds: spread of the ladder's fine-tuned arms",
        "seeds_summary.csv",
        columns(
            ("task", "task"),
            ("arm", "arm"),
            ("metric", "metric"),
            ("mean", "mean"),
            ("sd", "sd"),
            ("min", "min"),
            ("max", "max"),
            ("seeds", "seeds"),
            ("default model", "default model"),
        ),
        note="The seeds command (`bash scripts/main.sh --seeds 3`), beside the main job; the notebooks use seed 0.",
        writer="python -m workbench seeds",
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
        "What the fitted temperature does to each Bayes rule",
        "02_temperature_effects.csv",
        columns(
            ("model", "model"),
            ("task", "task"),
            ("metric", "metric"),
            ("rule", "rule"),
            ("tuned T", "tuned T", 2),
            ("change at tuned T", "difference"),
            ("p", "p"),
            ("effect", "effect"),
            ("predicted sd / RMSE (T=1)", "sd / rmse (T=1)", 2),
            ("predicted sd / RMSE (tuned T)", "sd / rmse (tuned T)", 2),
        ),
        note="Difference in the metric (tuned T minus T=1), paired bootstrap p. The mean is optimal for squared error "
        "only under calibrated probabilities: sd / RMSE far from 1 says the predicted spread is not the real one.",
    ),
    Table(
        "E2E: decision rule x metric",
        "e2e.csv",
        columns(("system", "system"), ("model", "model"), ("items", "items"))
        + columns(
            ("BLEU [95% CI]", "bleu + bleu CI", 2),
            ("chrF [95% CI]", "chrf + chrf CI", 2),
            ("ROUGE-L [95% CI]", "rougel + rougel CI"),
            ("MiniLM cosine [95% CI]", "cosine + cosine CI"),
            ("slot error [95% CI]", "slot_error + slot_error CI"),
        ),
        note="Corpus BLEU and chrF against all references of each MR as sacrebleu computes them; `tgen-std` and "
        "`sclstm` are the published systems' outputs scored by the same code; `mr-values` is the trivial baseline "
        "(the MR's values joined).",
        read=wide(["system", "model", "items"]),
        writer="notebooks/08_e2e_text_metrics.ipynb",
    ),
    Table(
        "E2E: does MBR with metric X win metric X?",
        "e2e_diagonal.csv",
        columns(
            ("MBR", "mbr"),
            ("against", "other"),
            ("metric", "metric"),
            ("items", "items"),
            ("difference [95% CI]", "difference + CI", 2),
            ("p (MBR not better)", "p_better"),
        ),
        note="Paired bootstrap over MRs.",
        read=with_intervals(("CI", "ci_low", "ci_high")),
        writer="notebooks/08_e2e_text_metrics.ipynb",
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
        "Lifecycle evaluation (zero-shot)",
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
        "Serving: clients that hang up",
        "05_abandoned_clients.csv",
        columns(
            ("clients", "clients", 0),
            ("hung up after (s)", "give_up_after_s", 1),
            ("gave up before their answer", "gave_up", 0),
            ("dropped from the queue", "dropped_queued", 0),
            ("stopped mid-batch", "dropped_running", 0),
            ("computed for nobody", "computed_for_nobody", 0),
            ("queue depth after", "queue_depth_after", 0),
            ("heavy work: requests", "blocker_requests", 0),
            ("prompts each", "blocker_prompts", 0),
            ("next request (s)", "next_request_s", 2),
            ("same request, idle server (s)", "next_request_alone_s", 2),
            ("verdict", "verdict"),
        ),
        note="Notebook 05's abandoned-clients phase, same server: a patient client keeps the engine busy with heavy "
        "work while the clients send a request each and hang up; the server's `workbench_abandoned_*` "
        "counters say what became of their work (`workbench.serving.loadtest.abandoned_clients_test`).",
    ),
    Table(
        "Consistency: decisions per method",
        "06_decisions.csv",
        columns(
            ("change", "change"),
            ("method", "method"),
            ("queries", "n_queries"),
            ("samples / query", "samples_per_query"),
            ("p", "p_value"),
            ("decision", "decision"),
            ("power", "power"),
            ("A/A false alarm", "false_alarm"),
            ("stage B's own A/A", "stage_b_false_alarm"),
            ("its samples / query", "stage_b_aa_samples"),
        ),
        note="`simct-paper`: LightGBM response-wise test with the paper's labelling plus the model-wise t-test; "
        "`simct-variant`: the project's labelling; `cosine`: MiniLM-cosine t-test; `mmd`: MMD (Model Equality "
        "Testing); `logprob`: log-likelihood ratios of the responses under both stages. `equivalent`: two one-sided "
        "tests at the margin fixed before the run; `inconclusive`: neither. Changes prefixed `finetuned-` compare "
        "stages of the default fine-tuned model; p below 0.0005 shows as 0.000. `A/A false alarm`: the reference "
        "pooled with its rerun, split in halves at the budget; `stage B's own A/A`: the compared stage's own responses "
        "split in halves (no rerun of it: half the samples per query).",
    ),
    Table(
        "Consistency: the query budget planned on the pilot",
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
        "Cost: metric-aware overhead, multiple of greedy decoding",
        "07_overhead.csv",
        columns(
            ("method", "method"),
            ("n", "n"),
            ("this CPU, measured", "this CPU (measured, HFEngine)", 2),
            ("this CPU, roofline", "this CPU roofline (calibrated)", 2),
            ("H100, roofline (assumed efficiency)", "H100 roofline (assumed efficiency)", 2),
        ),
    ),
    Table(
        "Cost model error: the roofline on held-out passes",
        "07_roofline_validation.csv",
        columns(
            ("timed by", "source"),
            ("threads", "threads"),
            ("held-out passes", "count"),
            ("mean absolute error", "mean"),
            ("max absolute error", "max"),
        ),
        note="Relative error of the calibrated roofline's predicted pass time against the measured one, on passes "
        "not used to fit it.",
        read=roofline_errors,
    ),
    Table(
        "Cost: break-even against gpt-4o-mini (N=1), unadjusted for quality",
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
        "Cost per correct answer (SST-5)",
        "07_quality_adjusted.csv",
        columns(
            ("stage or API", "name"),
            ("kind", "kind"),
            ("accuracy", "accuracy"),
            ("source of the accuracy", "quality_source"),
            ("US$/1,000 requests", "usd_per_1000", 5),
            ("US$/1,000 correct", "usd_per_1000_correct", 5),
            ("Pareto", "pareto"),
        ),
        note="API accuracies are stated assumptions or published figures (column 4), never measured here.",
    ),
    Table(
        "Fine-tuning's effect per task and metric (against the base stage)",
        "07_finetuning_effects.csv",
        columns(
            ("stage", "stage"),
            ("set", "set"),
            ("metric", "metric"),
            ("stage", "stage_value"),
            ("base", "base_value"),
            ("improvement [95% CI]", "better + CI"),
            ("verdict", "verdict"),
        ),
        note="`hurt`: fine-tuning made the metric worse with an interval that excludes zero.",
        read=with_intervals(("CI", "low", "high")),
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
            ("drop [95% CI]", "drop + CI"),
            ("significant", "significant"),
        ),
        where(rule="exact mean"),
        read=with_intervals(("CI", "drop_low", "drop_high")),
    ),
    Table(
        "The Costly Dilemma scorecard",
        "07_scorecard.csv",
        columns(
            ("stage", "stage"),
            ("family", "family"),
            ("precision", "precision"),
            ("trained on", "trained_on"),
            ("quality (skill)", "quality"),
            ("generalization (skill) [95% CI]", "generalization + generalization CI"),
            ("evaluation US$ [95% CI]", "evaluation_usd + evaluation CI", 0),
            ("serving US$/1,000, this CPU (measured) [95% CI]", "serving_usd_per_1000 + serving CI", 4),
            ("L4 (predicted)", "serving_usd_per_1000 l4 (predicted)", 5),
            ("H100 (predicted)", "serving_usd_per_1000 h100-sxm (predicted)", 5),
            ("Pareto", "pareto"),
        ),
        note="Skill = 1 - RMSE / RMSE of the constant prior; evaluation cost from the items that subsampling shows "
        "are needed; serving at 50% utilisation.",
        read=with_intervals(
            ("generalization CI", "generalization_low", "generalization_high"),
            ("evaluation CI", "evaluation_usd_low", "evaluation_usd_high"),
            ("serving CI", "serving_usd_per_1000_low", "serving_usd_per_1000_high"),
        ),
    ),
    Table(
        "Evaluation cost measured on its own: items to tell stages apart",
        "07_separation.csv",
        columns(
            ("stage", "stage_a"),
            ("next better stage", "stage_b"),
            ("set", "set"),
            ("RMSE", "rmse_a"),
            ("RMSE (next)", "rmse_b"),
            ("items to tell apart", "items_to_tell_apart"),
            ("items evaluated", "items evaluated"),
        ),
        note="Found by subsampling the evaluated items (not from the quality estimate's variance).",
    ),
    Table(
        "Is the dilemma orthogonal?",
        "07_orthogonality.csv",
        columns(
            ("axis", "axis_a"),
            ("against", "axis_b"),
            ("Spearman rho [95% CI]", "rho + CI", 2),
            ("p (within families)", "p"),
            ("partial rho [95% CI]", "partial_rho + partial CI", 2),
            ("p (partial)", "p_partial"),
            ("stages", "stages"),
            ("families", "families"),
            ("verdict", "verdict"),
        ),
        note="p from permutations within model families; partial correlation controls for precision and training "
        "run; intervals from a bootstrap over stages and items with every axis resampled.",
        read=with_intervals(("CI", "low", "high"), ("partial CI", "partial_low", "partial_high")),
    ),
)
