"""Every scorecard stage on every item set, and generalization reported whole (notebook 07, sections 5-6).

:func:`score_stages` answers each set with the exact grid distribution of each stage (its mean, its
mode, its mass off the grid), the base model with demonstrations of the in-domain task (the same
ones under the out-of-domain items, so only the item changes), and times single requests of each set.
:func:`generalization_table` reports every metric (Spearman first) in and out of domain with the
drop; :func:`finetuning_effects` compares each fine-tuned stage with the base model on every set by
a paired bootstrap and says where fine-tuning helped, hurt, or the data cannot tell.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from workbench.cost.generalization import _resampled, drop_table, rule_predictions
from workbench.cost.generalization_study import GeneralizationSets, _prior_rows
from workbench.cost.scorecard import StageScores
from workbench.cost.stage_grid import ScoredStage
from workbench.cost.study_steps import request_tokens
from workbench.inference.engine import HFEngine
from workbench.inference.gencache import GenerationCache
from workbench.inference.models import load_model
from workbench.lifecycle.finetune.selection import TrunkScorer
from workbench.lifecycle.finetune.trunk import scoring_trunk
from workbench.lifecycle.stages import FingerprintMismatch, load_stage
from workbench.metric_aware.metrics import get_metric
from workbench.paths import cache_dir
from workbench.progress import tqdm

# Spearman first: the task metric of STS-B and SICK; RMSE is what skill is made of.
METRICS = ("spearman", "rmse", "mae", "exact_match")


def time_requests(engine, prompts: Sequence[str], candidates: Sequence[str], repeats: int) -> np.ndarray:
    """Measured seconds of single exact-scoring requests, one prompt per call, every prompt ``repeats`` times
    (round-robin, after one untimed warm-up call), no cache: (repeats * len(prompts),)."""
    engine.score([prompts[0]], list(candidates))
    seconds = []
    for _ in range(repeats):
        for prompt in prompts:
            start = time.perf_counter()
            engine.score([prompt], list(candidates))
            seconds.append(time.perf_counter() - start)
    return np.asarray(seconds)


def score_stages(
    stages: Sequence[ScoredStage],
    model: str,
    device: str,
    sets: GeneralizationSets,
    time_prompts: int,
    repeats: int,
    seed: int = 0,
    on_model: Callable[[dict], None] = lambda fingerprint: None,
) -> list[StageScores]:
    """Every stage's exact-distribution answers on every set (generation cache), and its measured request times.

    A stage registered under other weights (:class:`FingerprintMismatch`) is skipped with a message.
    """
    own_of = {unseen: own for own, unseen in sets.transfer.items()}
    # fp32 stages fine-tuned on their top layers read the base model's lower layers from one shared cache
    # (scoring_trunk); the timed requests run each stage's own engine whole
    base = load_model(model, device=device)
    scores = []
    for stage in tqdm(stages, desc="scorecard stages"):
        try:
            lm = load_stage(stage.name, device=device, base_model=model)
        except FingerprintMismatch as error:
            print(f"SKIPPED {stage.name}: {error}")
            continue
        on_model(lm.fingerprint)
        engine = HFEngine(lm, cache=GenerationCache(cache_dir() / "generations", lm.fingerprint), progress=False)
        trunk = scoring_trunk(lm.model, base.model)
        if trunk is not None:
            engine.grid_scorer = TrunkScorer(lm.model, lm.tokenizer, trunk).logprobs
        timer = HFEngine(lm, cache=None, progress=False)
        parts = {key: {} for key in ("gold", "mean", "mode", "outside", "seconds", "tokens")}
        for name, (task, examples) in sets.sets.items():
            demos = sets.sets[own_of.get(name, name)][0].fewshot(stage.shots, seed=seed)
            gold, rules, outside = rule_predictions(engine, task, examples, demos)
            prompts = task.prompts(examples, lm.tokenizer, demos)
            tokens = sum(request_tokens(lm.tokenizer, prompts, task.candidates))
            for key, value in zip(parts, (gold, rules["exact mean"], rules["exact mode"], outside), strict=False):
                parts[key][name] = value
            parts["tokens"][name] = tokens
            parts["seconds"][name] = time_requests(timer, prompts[:time_prompts], task.candidates, repeats)
        request = float(np.median(parts["seconds"]["SST-5"]))
        scores.append(
            StageScores(
                stage.name,
                parts["gold"],
                parts["mean"],
                request,
                parts["mode"],
                parts["outside"],
                parts["seconds"],
                parts["tokens"],
            )
        )
        del lm, engine, timer, trunk
    return scores


def generalization_table(
    scores: Sequence[StageScores], sets: GeneralizationSets, n_resamples: int, seed: int = 0
) -> pd.DataFrame:
    """Every metric (:data:`METRICS`, Spearman first) in and out of domain with the drop, per stage and transfer,
    and the constant prior's RMSE rows (the trivial baseline)."""
    rows = []
    for score in scores:
        for own, unseen in sets.transfer.items():
            table = drop_table(
                (score.gold[own], {"exact mean": score.predictions[own]}),
                (score.gold[unseen], {"exact mean": score.predictions[unseen]}),
                metrics=METRICS,
                grid=sets.sets[own][0].grid,
                n_resamples=n_resamples,
                seed=seed,
            )
            rows.append(table.assign(stage=score.stage, in_domain_set=own, out_of_domain_set=unseen))
    rows += [_prior_rows(scores[0].gold, sets, own, unseen, n_resamples, seed) for own, unseen in sets.transfer.items()]
    return pd.concat(rows, ignore_index=True)


def finetuning_effects(
    scores: Sequence[StageScores],
    reference: str,
    metrics: Sequence[str] = ("spearman", "rmse"),
    n_resamples: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Each stage minus ``reference`` (the base model) on every set and metric, with a paired bootstrap interval.

    Returns:
        One row per (stage, set, metric): both values, ``better`` (the difference signed so that positive means
        the stage is better), its 95% interval, and ``verdict``: "helped" or "hurt" when the interval excludes 0,
        else "inconclusive" (no equivalence margin is claimed).
    """
    base = next(s for s in scores if s.stage == reference)
    rows = []
    for score in scores:
        if score.stage == reference:
            continue
        for name, gold in base.gold.items():
            gold = np.asarray(gold, float)
            for metric in metrics:
                spec = get_metric(metric)
                sign = 1.0 if spec.higher_is_better else -1.0
                # The same seed draws the same resamples for both stages: a paired bootstrap.
                ours, ours_boot = _resampled(
                    spec, np.asarray(score.predictions[name], float), gold, n_resamples, np.random.default_rng(seed)
                )
                theirs, theirs_boot = _resampled(
                    spec, np.asarray(base.predictions[name], float), gold, n_resamples, np.random.default_rng(seed)
                )
                low, high = np.nanquantile(sign * (ours_boot - theirs_boot), [0.025, 0.975])
                verdict = "helped" if low > 0 else "hurt" if high < 0 else "inconclusive"
                rows.append(
                    {
                        "stage": score.stage,
                        "set": name,
                        "metric": metric,
                        "stage_value": ours,
                        "base_value": theirs,
                        "better": sign * (ours - theirs),
                        "low": low,
                        "high": high,
                        "verdict": verdict,
                    }
                )
    return pd.DataFrame(rows)


def effects_summary(effects: pd.DataFrame, reference: str) -> str:
    """Markdown: where fine-tuning hurt against ``reference``, plainly, and how many comparisons helped or were
    inconclusive."""
    hurt = effects[effects.verdict == "hurt"]
    lines = [
        f"- **hurt**: {r.stage} on {r.set}, {r.metric} {r.stage_value:.3f} vs {reference}'s {r.base_value:.3f} "
        f"(better by {r.better:+.3f}, 95% interval [{r.low:+.3f}, {r.high:+.3f}])"
        for r in hurt.itertuples()
    ]
    counts = effects.verdict.value_counts().to_dict()
    lines.append(
        f"Of {len(effects)} comparisons with {reference}: {counts.get('helped', 0)} helped, "
        f"{counts.get('hurt', 0)} hurt, {counts.get('inconclusive', 0)} inconclusive (interval includes 0)."
    )
    return "\n".join(lines)


def transfer_matrix(generalization: pd.DataFrame, stages: pd.DataFrame, metric: str = "spearman") -> pd.DataFrame:
    """``metric`` of every stage on every set, with what the stage was trained on: the transfer between tasks.

    Args:
        generalization: :func:`generalization_table`.
        stages: :func:`workbench.cost.stage_grid.stage_table` (its ``trained_on`` column).
    """
    rows = generalization[(generalization.metric == metric) & (generalization.stage.isin(stages.index))]
    inside = rows.pivot_table(index="stage", columns="in_domain_set", values="in_domain", sort=False)
    outside = rows.pivot_table(index="stage", columns="out_of_domain_set", values="out_of_domain", sort=False)
    table = inside.join(outside)
    return stages.loc[table.index, ["trained_on", "shots"]].join(table)
