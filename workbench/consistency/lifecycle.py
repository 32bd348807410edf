"""Notebook 06's consistency study of a model's lifecycle changes and of its fine-tuned stage's, step by step.

:func:`lifecycle_variants` lists the variants (two references, their A/A reruns, the changes the classifiers
train on and those they never see, the fine-tuned model's lifecycle) and :class:`LifecycleStudy` runs the study
on them: plan the query budget on a pilot and for the equivalence margin, generate, featurise, score the labelled
pair set, then decide on every comparison with every method of :mod:`~workbench.consistency.methods` (three-way,
with power and A/A false alarms over a grid of budgets) and ablate the classifier's features on the fine-tuned
stages. Each step is one method; what a later step needs is kept on the object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from workbench.consistency import FeatureConfig, PairFeaturizer, ResponseWiseConfig, score_cube
from workbench.consistency.budget import plan_score_and_budget, stratified_head
from workbench.consistency.crossfit import (
    CrossFitScorer,
    feature_ablations,
    featurised_score_fn,
    folds_of,
    response_wise_table,
    study_pairs,
    training_pairs,
)
from workbench.consistency.equivalence import plan_margin
from workbench.consistency.generate import Variant, build_queries, generate_responses, stage_tokenizer
from workbench.consistency.logprob import ratio_cube, scorable, score_responses, view_of
from workbench.consistency.methods import (
    METHODS,
    Comparison,
    best_methods,
    mmd_rows,
    pair_score_method,
    paired_grid,
    paired_rows,
    ratio_method,
    stage_b_pair_score_aa,
    stage_b_ratio_aa,
)
from workbench.consistency.mmd_baseline import MMDConfig
from workbench.consistency.pairset import fit_threshold, pair_set, pair_set_auc, score_pair_set, threshold_table
from workbench.consistency.power import ScoreCube
from workbench.consistency.study import Change, pool_stages
from workbench.inference.models import model_id
from workbench.lifecycle.stages import FingerprintMismatch, list_stages, load_stage
from workbench.paths import cache_dir
from workbench.progress import tqdm

REFERENCE, TRAIN_REFERENCE, FINETUNED = "reference", "train-reference", "finetuned"


def lifecycle_variants(
    reference_stage: str,
    finetuned_stage: str,
    model: str,
    max_new_tokens: int,
    short_tokens: int,
    sibling_stages: Mapping[str, str] | None = None,
) -> tuple[list[Variant], list[Change], list[Change], str]:
    """The variants of the study and the changes tested against each reference.

    The base reference samples ``reference_stage`` at temperature 0.7 with the engine's default batch (16
    prompts). Changes in folds 0 and 1 train the cross-fitted classifiers; int8, batch size, attention kernels
    and the served endpoint are never trained on. When ``finetuned_stage`` is registered for ``model`` with
    matching weights, it joins (fold 1) as the change "fine-tuned vs base", and becomes the reference of its own
    lifecycle: its bf16 and int8 stages, served, batch 1, eager attention, and the registered siblings of
    :mod:`workbench.lifecycle.siblings` (half the steps, LoRA), with its own A/A rerun.

    Returns:
        (variants, the base reference's changes, the fine-tuned reference's changes, a Markdown note on the
        fine-tuned stage: its notes, or why it was left out).
    """
    local = dict(temperature=0.7, max_new_tokens=max_new_tokens)
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
        Variant("batch-1", reference_stage, **local, batch_size=1),
        Variant("eager", reference_stage, **local, attn_implementation="eager"),
        # the same stage behind the workbench server's OpenAI-compatible /v1 on loopback; another server
        # (vLLM, TGI, llama.cpp) serving the same weights: backend="openai", endpoint="http://host:port/v1"
        Variant("served", reference_stage, **local, backend="openai"),
    ]
    changes = [
        Change("aa-new-seeds", "A/A: same stage, new seeds", control=True),
        Change("temperature-1.0", "temperature 0.7 -> 1.0", fold=0),
        Change("top-p-0.8", "top-p 1.0 -> 0.8", fold=1),
        Change("system-prompt", "system prompt", fold=0),
        Change(f"max-tokens-{short_tokens}", f"max new tokens {max_new_tokens} -> {short_tokens}", fold=1),
        Change("bf16", "bf16 vs fp32", fold=0),
        Change("int8", "int8 (head, down-proj fp32) vs fp32"),
        Change("batch-1", "batch size 16 -> 1"),
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
        prefix = finetuned_stage.rsplit("-", 1)[0]
        registered = set(list_stages(base_model=model).name)
        siblings = {name: stage for name, stage in (sibling_stages or {}).items() if stage in registered}
        variants += [
            Variant(FINETUNED, finetuned_stage, **local),
            Variant(f"{FINETUNED}-aa-new-seeds", finetuned_stage, **local),
            Variant(f"{FINETUNED}-bf16", f"{prefix}-bf16", **local),
            Variant(f"{FINETUNED}-int8", f"{prefix}-int8", **local),
            Variant(f"{FINETUNED}-served", finetuned_stage, **local, backend="openai"),
            Variant(f"{FINETUNED}-batch-1", finetuned_stage, **local, batch_size=1),
            Variant(f"{FINETUNED}-eager", finetuned_stage, **local, attn_implementation="eager"),
            *(Variant(f"{FINETUNED}-{name}", stage, **local) for name, stage in siblings.items()),
        ]
        changes.append(Change(FINETUNED, "fine-tuned vs base", fold=1))
        sibling_text = {"half": "half the training steps", "lora": "LoRA vs top layers"}
        finetuned_changes = [
            Change(f"{FINETUNED}-aa-new-seeds", "fine-tuned A/A: same stage, new seeds", control=True),
            Change(f"{FINETUNED}-bf16", "fine-tuned: bf16 vs fp32"),
            Change(f"{FINETUNED}-int8", "fine-tuned: int8 vs fp32"),
            Change(f"{FINETUNED}-served", "fine-tuned: served vs local"),
            Change(f"{FINETUNED}-batch-1", "fine-tuned: batch size 16 -> 1"),
            Change(f"{FINETUNED}-eager", "fine-tuned: attention sdpa -> eager"),
            *(Change(f"{FINETUNED}-{name}", f"fine-tuned: {sibling_text[name]}") for name in siblings),
        ]
        info = list_stages(base_model=model).set_index("name").loc[finetuned_stage]
        missing = sorted(set(sibling_stages or {}) - set(siblings))
        return (
            variants,
            changes,
            finetuned_changes,
            f"Fine-tuned stage `{finetuned_stage}`: task {info.task}; {info.notes} (registered {info.registered})."
            + (f" **Siblings not registered, left out: {missing}.**" if missing else ""),
        )
    return (
        variants,
        changes,
        [],
        (
            f"**SKIPPED the change 'fine-tuned vs base' and the fine-tuned lifecycle: {problem}.** The planner then "
            "plans for temperature alone."
        ),
    )


@dataclass
class LifecycleStudy:
    """Every consistency method against the lifecycle changes of one model and of its fine-tuned stage.

    Args:
        model: the base model whose stages are compared.
        reference_stage: the reference's stage, e.g. ``"base-fp32"``.
        finetuned_stage: the fine-tuned stage of notebook 04 (left out when missing).
        sizes: notebook 06's profile section (pool, pilot, grid, min_queries, samples, token limits, runs, margin,
            power grid).
        profile: the profile's name (responses of each profile are kept apart).
        sibling_stages: {sibling: registry name} of :mod:`workbench.lifecycle.siblings` (left out when missing).
        alpha: the tests' level.
        power: the wanted power against the target changes and at the margin.
        seed: queries, samples, classifiers and resampling.
        responses_dir: per-variant JSONL files of responses and the cached log-likelihoods (reruns resume, and
            the final set reuses the pilot's); default ``<cache>/responses/<model id>/06_<profile>``.
        device: where the stages generate and score.
    """

    model: str
    reference_stage: str
    finetuned_stage: str
    sizes: Mapping
    profile: str
    sibling_stages: Mapping[str, str] = field(default_factory=dict)
    alpha: float = 0.05
    power: float = 0.8
    seed: int = 0
    responses_dir: str | None = None
    device: str = "auto"

    def __post_init__(self):
        self.variants, self.changes, self.finetuned_changes, self.finetuned_note = lifecycle_variants(
            self.reference_stage,
            self.finetuned_stage,
            self.model,
            self.sizes["max_new_tokens"],
            self.sizes["short_tokens"],
            self.sibling_stages,
        )
        self.targets = [stage for stage in (FINETUNED, "temperature-1.0") if stage in {c.stage for c in self.changes}]
        self.description = {c.stage: c.description for c in self.changes + self.finetuned_changes}
        self.comparisons = [
            Comparison(c.stage, REFERENCE, c.stage, "aa-new-seeds", c.description, c.control) for c in self.changes
        ] + [
            Comparison(c.stage, FINETUNED, c.stage, f"{FINETUNED}-aa-new-seeds", c.description, c.control)
            for c in self.finetuned_changes
        ]
        self.featurizer = PairFeaturizer(FeatureConfig())
        self.classifier = ResponseWiseConfig(random_state=self.seed)
        self.folds = folds_of(self.changes)
        self.k = self.sizes["samples"]
        self.margin = plan_margin(self.sizes["margin_dz"], self.alpha, self.power)
        self.pool = build_queries(*self.sizes["pool"], seed=self.seed)
        self.responses_dir = Path(
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
        """The pair-score methods, their classifiers fitted (cross-fitted by fold) on these featurised pairs.

        ``simct-paper``: the paper's labelling (within pairs of both stages consistent) on the paper's features;
        ``simct-variant``: the reference-only labelling on all features; ``cosine``: the MiniLM cosine alone.
        """
        paper = feature_ablations(self.classifier)["paper's features (no lengths)"]
        fitted = {
            "simct-paper": CrossFitScorer.fit(pairs, TRAIN_REFERENCE, self.folds, paper, positives="both"),
            "simct-variant": CrossFitScorer.fit(pairs, TRAIN_REFERENCE, self.folds, self.classifier, "reference"),
        }
        scores = {name: featurised_score_fn(self.featurizer, scorer) for name, scorer in fitted.items()}
        return {**scores, "cosine": lambda p: self.featurizer.transform(p)["cosine"].to_numpy()}

    def plan(self, score: str = "auto"):
        """Generate the pilot, plan the budget of every pair score on it, and size the study for the margin.

        The budget is the larger of the pilot's plan (the fewest queries at which the chosen score has the
        wanted power against every target) and the margin's (:func:`~workbench.consistency.equivalence.plan_margin`:
        both the equality and the equivalence test at the margin), at most the pool.

        Returns:
            {score name: :class:`workbench.consistency.budget.BudgetPlan`}; the chosen score is ``self.score``.
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
        self.n_queries = min(max(self.budget.n_queries, self.margin.n_queries), len(self.pool))
        return self.plans

    def plan_summary(self) -> str:
        """Markdown: the chosen pair score, the pilot's and the margin's budgets, and the one used."""
        plan, margin = self.budget, self.margin
        verdict = "reaches" if plan.reached else "does NOT reach, within the grid,"
        capped = " (capped at the pool)" if self.n_queries < max(plan.n_queries, margin.n_queries) else ""
        return (
            f"Pilot: with **{self.score}** the test {verdict} power {self.power} at {plan.n_queries} queries against "
            + ", ".join(
                f"{r.target} (pilot d_z {r.effect_dz:.2f}, simulated power {r.power_at_budget:.2f})"
                for r in plan.targets.itertuples()
            )
            + f". Margin d_z {margin.margin_dz} (stated in the profile before the run): the equality test needs "
            f"{margin.n_difference} queries for power {self.power} at the margin, the equivalence test (TOST) "
            f"{margin.n_equivalence} when there is no change (predicted, noncentral t). "
            f"**Budget: {self.n_queries} queries x {self.k} samples per stage**{capped}."
        )

    def generate(self, on_model: Callable[[dict], None] = lambda fingerprint: None) -> pd.DataFrame:
        """Every variant's responses to the budget's queries (the pilot's are reused); records each stage's
        fingerprint."""
        self.queries = stratified_head(self.pool, self.n_queries)
        self.table = self._generate(self.queries)
        for stage in sorted({v.stage for v in self.variants}):
            on_model(load_stage(stage, device="cpu", base_model=self.model).fingerprint)
        return self.table

    def featurise(self) -> pd.DataFrame:
        """Featurise every pair the study needs, fit the scorers; the response-wise table of both labellings."""
        self.pairs = self.featurizer.transform(study_pairs(self.table, REFERENCE, TRAIN_REFERENCE, self.changes))
        self.score_fns = self.score_functions(self.pairs)
        return response_wise_table(self.pairs, TRAIN_REFERENCE, REFERENCE, self.folds, self.classifier)

    def pair_set_scores(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """AUCs on the labelled pair set (pooled over known changes, and per change), and threshold accuracies.

        Returns:
            (AUC rows per group, threshold accuracy, the pooled AUC rows).
        """
        known = [c.stage for c in self.changes if c.fold is not None]
        column = {"cosine": "cosine", "ROUGE-L": "rougeL"}
        similarity = {
            "simct-variant": self.score_fns["simct-variant"],
            **{name: (lambda p, c=c: self.featurizer.transform(p)[c].to_numpy()) for name, c in column.items()},
        }
        scored = score_pair_set(
            pair_set(self.table, REFERENCE, [c.stage for c in self.changes if not c.control]), similarity
        )
        options = dict(n_resamples=self.sizes["bootstrap"], seed=self.seed)
        pooled = pair_set_auc(scored[scored.change.isin(known)], list(similarity), "simct-variant", **options)
        by_change = pair_set_auc(scored, list(similarity), "simct-variant", by="change", **options)
        by_change = by_change[by_change.group != "all"].assign(group=lambda t: t.group.map(self.description))
        aucs = pd.concat([pooled.assign(group="known changes, pooled"), by_change], ignore_index=True)
        reference_pairs = self.pairs[(self.pairs.stage1 == TRAIN_REFERENCE) | (self.pairs.stage2 == TRAIN_REFERENCE)]
        train_set = training_pairs(reference_pairs, TRAIN_REFERENCE, REFERENCE)
        thresholds = {
            "simct-variant": 0.5,
            **{name: fit_threshold(train_set[c], train_set.same_stage) for name, c in column.items()},
        }
        return aucs, threshold_table(scored[scored.change.isin(known)], thresholds, **options), pooled

    def logliks(self) -> pd.DataFrame:
        """Log-likelihoods of every scorable comparison's responses (and its reference's rerun) under both stages."""
        by_name = {v.name: v for v in self.variants}
        requests = [
            (responses, scorer)
            for c in self.logprob_comparisons()
            for responses in (c.stage_a, c.stage_b, c.rerun)
            for scorer in (c.stage_a, c.stage_b)
        ]
        if not requests:
            return pd.DataFrame(columns=["query_id", "seed", "responses", "scorer", "loglik"])
        table = self.table[self.table.stage.isin({r for r, _ in requests})]
        return score_responses(
            table,
            list(by_name.values()),
            requests,
            self.responses_dir / "logliks",
            "cpu" if self.device == "auto" else self.device,
            self.model,
        )

    def logprob_comparisons(self) -> list[Comparison]:
        """The comparisons the log-probability test applies to: both stages local and sampling, and not the same
        distribution function (a batch-size change scores every response the same under both stages)."""
        by_name = {v.name: v for v in self.variants}

        def decoding(v: Variant) -> tuple:
            return view_of(v) + (v.temperature, v.top_p, v.max_new_tokens)

        return [
            c
            for c in self.comparisons
            if scorable(by_name[c.stage_a])
            and scorable(by_name[c.stage_b])
            and decoding(by_name[c.stage_a]) != decoding(by_name[c.stage_b])
        ]

    def _pooled_cube(self, comparison: Comparison, name: str, fn, cache: dict) -> ScoreCube:
        key = (comparison.stage_a, comparison.rerun, name)
        if key not in cache:
            pooled = pool_stages(self.table, [comparison.stage_a, comparison.rerun], "pooled")
            cache[key] = score_cube(pooled, "pooled", None, fn)
        return cache[key]

    def _own_cube(self, comparison: Comparison, name: str, fn, cache: dict) -> ScoreCube:
        """Stage B's own within-pair scores (its A/A runs split them in halves); one per (stage, score)."""
        key = (comparison.stage_b, name)
        if key not in cache:
            cache[key] = score_cube(self.table, comparison.stage_b, None, fn, self.k)
        return cache[key]

    def decide(self) -> pd.DataFrame:
        """Every comparison with every method: the three-way decision, power and A/A false-alarm rate at the
        budget (the reference's, and stage B's own at half the samples), and the power / false-alarm grid over
        queries x samples per query (``self.grid``).

        Returns:
            The decisions with the details (``tost_p``, ``effect_dz``, the false-alarm interval...); the columns of
            ``results/06_decisions.csv`` are :func:`~workbench.consistency.methods.decision_columns` of it.
        """
        tokenizer = stage_tokenizer(self.reference_stage, base_model=self.model)
        mmd_config = MMDConfig(
            tokenizer=lambda text: tokenizer.encode(text, add_special_tokens=False),
            max_length=self.sizes["max_new_tokens"],
            n_permutations=self.sizes["mmd_permutations"],
        )
        logliks = self.logliks()
        scorable_changes = {c.change for c in self.logprob_comparisons()}
        grid_args = (self.sizes["power_queries"], self.sizes["power_samples"])
        runs = (self.sizes["simct_runs"], self.sizes["aa_runs"])
        rows, grids, pooled, own_cubes, aa_grids, fns = [], [], {}, {}, {}, self.score_fns
        for c in tqdm(self.comparisons, desc="comparisons"):
            methods = {
                name: pair_score_method(
                    score_cube(self.table, c.stage_a, c.stage_b, fn, self.k), self._pooled_cube(c, name, fn, pooled)
                )
                for name, fn in self.score_fns.items()
            }
            own = {name: stage_b_pair_score_aa(self._own_cube(c, name, fn, own_cubes)) for name, fn in fns.items()}
            if c.change in scorable_changes:
                cube = ratio_cube(logliks, c.stage_a, c.stage_b, c.rerun)
                methods["logprob"], own["logprob"] = ratio_method(cube), stage_b_ratio_aa(cube)
            for name, method in methods.items():
                rows.append(
                    paired_rows(c, name, method, self.k, self.margin.margin_dz, *runs, self.alpha, self.seed, own[name])
                )
                # a pair score's A/A runs use only the pooled reference: one grid per (reference, score)
                key = (c.stage_a, c.rerun, name) if name != "logprob" else (c.change, name)
                if key not in aa_grids:
                    aa_grids[key] = paired_grid(method, *grid_args, *runs, self.alpha, self.seed, ["false alarm"])
                grid = paired_grid(method, *grid_args, *runs, self.alpha, self.seed, ["power"])
                grids.append(pd.concat([grid, aa_grids[key]]).assign(change=c.change, method=name))
            mmd_runs = self.sizes["mmd_runs"]
            row, grid = mmd_rows(
                c, self.table, mmd_config, self.k, grid_args[0], [self.k], mmd_runs, self.alpha, self.seed, aa_grids
            )
            rows.append(row)
            grids.append(grid.assign(change=c.change, method="mmd"))
        order = {name: i for i, name in enumerate(METHODS)}
        self.details = pd.DataFrame(rows).sort_values("method", key=lambda m: m.map(order), kind="stable")
        self.details = self.details.sort_values("change", key=lambda s: s.map(self._change_order()), kind="stable")
        self.grid = pd.concat(grids, ignore_index=True)
        return self.details.reset_index(drop=True)

    def _change_order(self) -> dict[str, int]:
        return {c.change: i for i, c in enumerate(self.comparisons)}

    def compare_ablations(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The classifier's feature ablations (reference-only labelling) on the fine-tuned stages.

        Does the response-wise classifier work on a model with skill? Each ablation's classifiers (trained on the
        base model's changes, as every classifier here) score the fine-tuned reference against each of its
        changes: the model-wise test's decision and power, and the pair AUC of same-stage against cross pairs.

        Returns:
            (one row per (ablation, change): p-value, decision, power; the pair-set AUCs of the ablations).
        """
        fns = {
            name: featurised_score_fn(
                self.featurizer, CrossFitScorer.fit(self.pairs, TRAIN_REFERENCE, self.folds, config, "reference")
            )
            for name, config in feature_ablations(self.classifier).items()
        }
        finetuned = [c for c in self.comparisons if c.stage_a == FINETUNED and not c.control]
        rows, pooled = [], {}
        for c in finetuned:
            for name, fn in fns.items():
                method = pair_score_method(
                    score_cube(self.table, c.stage_a, c.stage_b, fn, self.k), self._pooled_cube(c, name, fn, pooled)
                )
                row = paired_rows(
                    c, name, method, self.k, self.margin.margin_dz, self.sizes["simct_runs"], 2, self.alpha, self.seed
                )
                rows.append({k: row[k] for k in ("change", "method", "p_value", "decision", "power", "effect_dz")})
        if not finetuned:
            return pd.DataFrame(rows), pd.DataFrame()
        aucs = pair_set_auc(
            score_pair_set(pair_set(self.table, FINETUNED, [c.stage_b for c in finetuned]), fns),
            list(fns),
            "all features",
            n_resamples=self.sizes["bootstrap"],
            seed=self.seed,
        )
        return pd.DataFrame(rows).rename(columns={"method": "ablation"}), aucs


def decision_summary(details: pd.DataFrame, alpha: float = 0.05, power: float = 0.8) -> str:
    """Markdown: per real change, the most powerful method at the budget and whether it meets the goal (power at
    least ``power``); per method, the range of its A/A false-alarm rates against [0.03, 0.07], the reference's and
    each compared stage's own."""
    lines = []
    for row in best_methods(details).itertuples():
        verdict = "meets" if row.power >= power else "MISSES"
        lines.append(
            f"* {row.description}: best **{row.method}**, power {row.power:.2f} ({verdict} {power}); "
            f"decision {row.decision} (p {row.p_value:.2g})"
        )
    for method, group in details.groupby("method", sort=False):
        rates, own = group.false_alarm, group.stage_b_false_alarm.dropna()
        inside = rates.between(0.03, 0.07).mean()
        own_text = (
            f"; each stage's own A/A ({own.size} stages, halves of "
            f"{', '.join(map(str, sorted(group.stage_b_aa_samples.dropna().astype(int).unique())))} samples) "
            f"{own.min():.3f}-{own.max():.3f}, {own.between(0.03, 0.07).mean():.0%} inside"
            if own.size
            else ""
        )
        lines.append(
            f"* {method}: A/A false-alarm rates {rates.min():.3f}-{rates.max():.3f} over {rates.notna().sum()} "
            f"comparisons; {inside:.0%} inside [0.03, 0.07] (alpha {alpha}){own_text}"
        )
    return "\n".join(lines)
