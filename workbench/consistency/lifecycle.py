"""Notebook 06's SimCT study of a model's lifecycle changes, step by step.

:func:`lifecycle_variants` lists the variants (a reference, a control, the changes the
classifiers train on and those they never see) and :class:`LifecycleStudy` runs the study on
them: plan the query budget and the pair score on a pilot, generate, featurise, score the labelled
pair set, decide on every change next to the MMD baseline, compare pair scores and measure the A/A
false alarm rate. Each method is one step; what a later step needs is kept on the object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from workbench.consistency import FeatureConfig, PairFeaturizer, ResponseWiseConfig, aa_false_alarm_rate, score_cube
from workbench.consistency.budget import plan_score_and_budget, stratified_head
from workbench.consistency.crossfit import (
    POSITIVES,
    CrossFitScorer,
    feature_ablations,
    featurised_score_fn,
    folds_of,
    response_wise_table,
    study_pairs,
    training_pairs,
)
from workbench.consistency.generate import Variant, build_queries, generate_responses, stage_tokenizer
from workbench.consistency.mmd_baseline import MMDConfig, mmd_aa_false_alarm_rate, stage_tokens
from workbench.consistency.pairset import fit_threshold, pair_set, pair_set_auc, score_pair_set, threshold_table
from workbench.consistency.study import Change, analyse_change, compare_scores, decision_table, pool_stages
from workbench.inference.models import model_id
from workbench.lifecycle.stages import FingerprintMismatch, list_stages, load_stage
from workbench.paths import cache_dir
from workbench.progress import tqdm

REFERENCE, TRAIN_REFERENCE = "reference", "train-reference"


def lifecycle_variants(
    reference_stage: str, finetuned_stage: str, model: str, max_new_tokens: int, short_tokens: int
) -> tuple[list[Variant], list[Change], str]:
    """The variants of the study and the changes tested against the reference.

    The reference samples ``reference_stage`` at temperature 0.7, batch size 8. Changes in folds 0
    and 1 train the cross-fitted classifiers; int8, batch size, attention kernels and the served
    endpoint are never trained on. The fine-tuned stage joins (fold 1) when it is registered for
    ``model`` with matching weights.

    Returns:
        (variants, changes, a Markdown note on the fine-tuned stage: its notes, or why it was left out).
    """
    local = dict(temperature=0.7, max_new_tokens=max_new_tokens, batch_size=8)
    variants = [
        Variant(REFERENCE, reference_stage, **local),
        Variant(TRAIN_REFERENCE, reference_stage, **local),
        Variant("aa-new-seeds", reference_stage, **local),
        Variant("temperature-1.0", reference_stage, **{**local, "temperature": 1.0}),
        Variant("top-p-0.8", reference_stage, **local, top_p=0.8),
        Variant(
            "system-prompt",
            reference_stage,
            **local,
            system_prompt="You are a concise assistant. Answer in one short sentence.",
        ),
        Variant(f"max-tokens-{short_tokens}", reference_stage, **{**local, "max_new_tokens": short_tokens}),
        Variant("bf16", "base-bf16", **local),
        Variant("int8", "base-int8", **local),
        Variant("batch-1", reference_stage, **{**local, "batch_size": 1}),
        Variant("eager", reference_stage, **local, attn_implementation="eager"),
        # the same stage behind the workbench server's OpenAI-compatible /v1 on loopback; another server
        # (vLLM, TGI, llama.cpp) serving the same weights: backend="openai", endpoint="http://host:port/v1"
        Variant("served", reference_stage, temperature=0.7, max_new_tokens=max_new_tokens, backend="openai"),
    ]
    changes = [
        Change("aa-new-seeds", "A/A: same stage, new seeds", control=True),
        Change("temperature-1.0", "temperature 0.7 -> 1.0", fold=0),
        Change("top-p-0.8", "top-p 1.0 -> 0.8", fold=1),
        Change("system-prompt", "system prompt", fold=0),
        Change(f"max-tokens-{short_tokens}", f"max new tokens {max_new_tokens} -> {short_tokens}", fold=1),
        Change("bf16", "bf16 vs fp32", fold=0),
        Change("int8", "int8 (head, down-proj fp32) vs fp32"),
        Change("batch-1", "batch size 8 -> 1"),
        Change("eager", "attention sdpa -> eager"),
        Change("served", "served (OpenAI-compatible API) vs local"),
    ]
    try:
        load_stage(finetuned_stage, device="cpu", base_model=model)
    except KeyError:
        problem = f"stage {finetuned_stage!r} is not registered for {model} (run notebook 04 first)"
    except FingerprintMismatch as error:
        problem = str(error)
    else:
        variants.append(Variant("finetuned", finetuned_stage, **local))
        changes.append(Change("finetuned", "fine-tuned vs base", fold=1))
        info = list_stages(base_model=model).set_index("name").loc[finetuned_stage]
        return (
            variants,
            changes,
            f"Fine-tuned stage `{finetuned_stage}`: task {info.task}; {info.notes} (registered {info.registered}).",
        )
    return (
        variants,
        changes,
        (f"**SKIPPED the change 'fine-tuned vs base': {problem}.** The planner then plans for temperature alone."),
    )


@dataclass
class LifecycleStudy:
    """SimCT against the lifecycle changes of one model, sized by a profile section.

    Args:
        model: the base model whose stages are compared.
        reference_stage: the reference's stage, e.g. ``"base-fp32"``.
        finetuned_stage: the fine-tuned stage of notebook 04 (left out when missing).
        sizes: notebook 06's profile section (pool, pilot, grid, min_queries, samples, token limits, runs).
        profile: the profile's name (responses of each profile are kept apart).
        labelling: the classifier's consistent pairs, "reference" or "both" (the paper's).
        alpha: the tests' level.
        power: the wanted power against the target changes.
        seed: queries, samples, classifiers and resampling.
        responses_dir: per-variant JSONL files of responses (reruns resume, and the final set reuses the
            pilot's); default ``<cache>/responses/<model id>/06_<profile>``.
        device: where the stages generate.

    After :meth:`decide`, ``results`` holds each change's :class:`workbench.consistency.study.ChangeResult`.
    """

    model: str
    reference_stage: str
    finetuned_stage: str
    sizes: Mapping
    profile: str
    labelling: str = "reference"
    alpha: float = 0.05
    power: float = 0.8
    seed: int = 0
    responses_dir: str | None = None
    device: str = "auto"
    results: dict = field(default_factory=dict)

    def __post_init__(self):
        self.variants, self.changes, self.finetuned_note = lifecycle_variants(
            self.reference_stage,
            self.finetuned_stage,
            self.model,
            self.sizes["max_new_tokens"],
            self.sizes["short_tokens"],
        )
        self.targets = [stage for stage in ("finetuned", "temperature-1.0") if stage in {c.stage for c in self.changes}]
        self.description = {c.stage: c.description for c in self.changes}
        self.featurizer = PairFeaturizer(FeatureConfig())
        self.classifier = ResponseWiseConfig(random_state=self.seed)
        self.folds = folds_of(self.changes)
        self.k = self.sizes["samples"]
        self.pool = build_queries(*self.sizes["pool"], seed=self.seed)
        self.responses_dir = (
            self.responses_dir or cache_dir() / "responses" / model_id(self.model) / f"06_{self.profile}"
        )

    def variant_table(self) -> pd.DataFrame:
        return pd.DataFrame([v.describe() for v in self.variants]).set_index("name")

    def _generate(self, queries: pd.DataFrame) -> pd.DataFrame:
        return generate_responses(
            self.variants,
            queries,
            self.k,
            seed=self.seed,
            out_dir=self.responses_dir,
            device=self.device,
            base_model=self.model,
        )

    def score_functions(self, pairs: pd.DataFrame) -> dict[str, Callable[[pd.DataFrame], object]]:
        """The candidate pair scores: the classifiers fitted (cross-fitted by fold) on these featurised pairs, and the
        cosine."""
        paper = feature_ablations(self.classifier)["paper's features (no lengths)"]
        fitted = {
            name: CrossFitScorer.fit(pairs, TRAIN_REFERENCE, self.folds, config, positives=self.labelling)
            for name, config in (("SimCT classifier", self.classifier), ("SimCT classifier, paper's features", paper))
        }
        scores = {name: featurised_score_fn(self.featurizer, scorer) for name, scorer in fitted.items()}
        return {**scores, "cosine": lambda p: self.featurizer.transform(p)["cosine"].to_numpy()}

    def plan(self, score: str = "auto"):
        """Generate the pilot, plan the budget of every candidate score and pick one (``"auto"``: the fewest queries).

        Returns:
            {score name: :class:`workbench.consistency.budget.BudgetPlan`}; the chosen score is ``self.score``,
            its plan ``self.budget``.
        """
        pilot = stratified_head(self.pool, self.sizes["pilot"])
        table = self._generate(pilot)
        pairs = self.featurizer.transform(study_pairs(table, REFERENCE, TRAIN_REFERENCE, self.changes))
        cubes = {
            name: {self.description[stage]: score_cube(table, REFERENCE, stage, fn, self.k) for stage in self.targets}
            for name, fn in self.score_functions(pairs).items()
        }
        chosen, self.plans = plan_score_and_budget(
            cubes,
            self.sizes["grid"],
            self.power,
            self.alpha,
            self.k,
            self.sizes["min_queries"],
            n_runs=self.sizes["simct_runs"],
            seed=self.seed,
        )
        self.score = chosen if score == "auto" else score
        self.budget = self.plans[self.score]
        self.grid = [n for n in self.sizes["grid"] if n <= self.budget.n_queries]
        return self.plans

    def plan_summary(self) -> str:
        """Markdown: the chosen pair score, the budget, and the power reached against each target."""
        plan = self.budget
        verdict = "reaches" if plan.reached else "does NOT reach, within the grid,"
        return (
            f"Pair score: **{self.score}**. Budget: **{plan.n_queries} queries** x {self.k} samples per stage; "
            "at it the "
            f"test {verdict} power {self.power} against "
            + ", ".join(
                f"{r.target} (pilot d_z {r.effect_dz:.2f}, simulated power {r.power_at_budget:.2f})"
                for r in plan.targets.itertuples()
            )
        )

    def generate(self, on_model: Callable[[dict], None] = lambda fingerprint: None) -> pd.DataFrame:
        """Every variant's responses to the budget's queries (the pilot's are reused); records each stage's
        fingerprint."""
        self.queries = stratified_head(self.pool, self.budget.n_queries)
        self.table = self._generate(self.queries)
        for stage in sorted({v.stage for v in self.variants}):
            on_model(load_stage(stage, device="cpu", base_model=self.model).fingerprint)
        return self.table

    def featurise(self) -> pd.DataFrame:
        """Featurise every pair the study needs, fit the scorers; the response-wise table of both labellings."""
        self.pairs = self.featurizer.transform(study_pairs(self.table, REFERENCE, TRAIN_REFERENCE, self.changes))
        self.scorers = {
            labelling: CrossFitScorer.fit(self.pairs, TRAIN_REFERENCE, self.folds, self.classifier, positives=labelling)
            for labelling in POSITIVES
        }
        self.score_fn = self.score_functions(self.pairs)[self.score]
        return response_wise_table(self.pairs, TRAIN_REFERENCE, REFERENCE, self.folds, self.classifier)

    def pair_set_scores(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """AUCs on the labelled pair set (pooled over known changes, and per change), and threshold accuracies.

        Returns:
            (AUC rows per group, threshold accuracy, the pooled AUC rows).
        """
        known = [c.stage for c in self.changes if c.fold is not None]
        column = {"cosine": "cosine", "ROUGE-L": "rougeL"}
        self.similarity = {
            "SimCT classifier": featurised_score_fn(self.featurizer, self.scorers[self.labelling]),
            **{name: (lambda p, c=c: self.featurizer.transform(p)[c].to_numpy()) for name, c in column.items()},
        }
        scored = score_pair_set(
            pair_set(self.table, REFERENCE, [c.stage for c in self.changes if not c.control]), self.similarity
        )
        options = dict(n_resamples=self.sizes["bootstrap"], seed=self.seed)
        pooled = pair_set_auc(scored[scored.change.isin(known)], list(self.similarity), "SimCT classifier", **options)
        by_change = pair_set_auc(scored, list(self.similarity), "SimCT classifier", by="change", **options)
        by_change = by_change[by_change.group != "all"].assign(group=lambda t: t.group.map(self.description))
        aucs = pd.concat([pooled.assign(group="known changes, pooled"), by_change], ignore_index=True)
        reference_pairs = self.pairs[(self.pairs.stage1 == TRAIN_REFERENCE) | (self.pairs.stage2 == TRAIN_REFERENCE)]
        train_set = training_pairs(reference_pairs, TRAIN_REFERENCE, REFERENCE)
        thresholds = {
            "SimCT classifier": 0.5,
            **{name: fit_threshold(train_set[c], train_set.same_stage) for name, c in column.items()},
        }
        return aucs, threshold_table(scored[scored.change.isin(known)], thresholds, **options), pooled

    def decide(self) -> pd.DataFrame:
        """Every change: SimCT's model-wise test with the chosen score and the MMD baseline on the same responses."""
        tokenizer = stage_tokenizer(self.reference_stage, base_model=self.model)
        self.mmd_config = MMDConfig(
            tokenizer=lambda text: tokenizer.encode(text, add_special_tokens=False),
            max_length=self.sizes["max_new_tokens"],
            n_permutations=self.sizes["mmd_permutations"],
        )
        self.results = {
            change.stage: analyse_change(
                self.table,
                REFERENCE,
                change,
                self.score_fn,
                self.grid,
                self.k,
                self.mmd_config,
                simct_runs=self.sizes["simct_runs"],
                mmd_runs=self.sizes["mmd_runs"],
                alpha=self.alpha,
                seed=self.seed,
            )
            for change in tqdm(self.changes, desc="changes")
        }
        return decision_table(list(self.results.values()), alpha=self.alpha, power=self.power)

    def _flat(self, table: pd.DataFrame) -> pd.DataFrame:
        flat = (
            table.set_axis([f"{score}: {stat}" for score, stat in table.columns], axis=1)
            .rename_axis("change")
            .reset_index()
        )
        return flat.assign(description=lambda d: d.change.map(self.description))

    def compare_labellings(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(decisions under each labelling and the cosine alone, with MMD's p and power; the same flattened for
        saving)."""
        fns = {
            f"{labelling} labelling" + (" (paper)" if labelling == "both" else ""): featurised_score_fn(
                self.featurizer, scorer
            )
            for labelling, scorer in self.scorers.items()
        }
        fns["cosine only"] = self.similarity["cosine"]
        table = compare_scores(
            self.table, REFERENCE, self.changes, fns, self.k, self.sizes["simct_runs"], self.alpha, self.seed
        )
        for stage, result in self.results.items():
            table.loc[stage, ("MMD", "p")] = result.mmd.p_value
            table.loc[stage, ("MMD", "power")] = result.mmd_curve.set_index("n_queries").rate[result.simct.n_queries]
        return table, self._flat(table)

    def compare_ablations(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(decisions under each feature ablation, flattened for saving, their pair-set AUCs)."""
        fns = {
            name: featurised_score_fn(
                self.featurizer,
                CrossFitScorer.fit(self.pairs, TRAIN_REFERENCE, self.folds, config, positives=self.labelling),
            )
            for name, config in feature_ablations(self.classifier).items()
        }
        table = compare_scores(
            self.table, REFERENCE, self.changes, fns, self.k, self.sizes["simct_runs"], self.alpha, self.seed
        )
        known = [c.stage for c in self.changes if c.fold is not None]
        aucs = pair_set_auc(
            score_pair_set(pair_set(self.table, REFERENCE, known), fns),
            list(fns),
            "all features",
            n_resamples=self.sizes["bootstrap"],
            seed=self.seed,
        )
        return table, self._flat(table), aucs

    def false_alarms(self) -> tuple[pd.DataFrame, str]:
        """A/A false alarm rates of SimCT and MMD per query count (the reference pooled with its rerun, split in
        halves).

        Returns:
            (one row per test and query count, a line per test at the budget against the target: at most
            alpha, and the upper end of the 95% interval below 0.07).
        """
        pooled = pool_stages(self.table, [REFERENCE, "aa-new-seeds"], "reference+aa")
        cube, tokens = (
            score_cube(pooled, "reference+aa", None, self.score_fn),
            stage_tokens(pooled, "reference+aa", self.mmd_config),
        )
        rows = []
        for n in tqdm(self.grid, desc="A/A runs"):
            rates = (
                ("SimCT", aa_false_alarm_rate(cube, n, self.k, self.sizes["aa_runs"], self.alpha, seed=self.seed)),
                (
                    "MMD",
                    mmd_aa_false_alarm_rate(
                        tokens, n, self.k, self.sizes["mmd_runs"], self.alpha, self.mmd_config, self.seed
                    ),
                ),
            )
            rows += [{"test": test, **dataclasses.asdict(rate)} for test, rate in rates]
        table = pd.DataFrame(rows)
        lines = []
        for test, row in table[table.n_queries == self.budget.n_queries].set_index("test").iterrows():
            verdict = "meets" if row.rate <= self.alpha and row.ci_high < 0.07 else "MISSES"
            lines.append(
                f"{test}: A/A false alarm rate {row.rate:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}] "
                f"over {row.n_runs:.0f} "
                f"runs at {row.n_queries:.0f} queries: {verdict} the target (<= {self.alpha}, upper bound < 0.07)"
            )
        return table, "\n".join(lines)


def decision_summary(decisions: pd.DataFrame) -> str:
    """One line per change of :func:`workbench.consistency.study.decision_table`: decision, p-values, power, which test
    won."""
    lines = []
    for _, row in decisions.iterrows():
        kind = "control" if row.control else f"more powerful: {row.more_powerful}"
        lines.append(
            f"{row.description}: {row.decision} (SimCT p {row.simct_p:.2g}, power {row.simct_power:.2f}; "
            f"MMD p {row.mmd_p:.2g}, power {row.mmd_power:.2f}); {kind}"
        )
    return "\n".join(lines)
