"""Notebook 07's scorecard (its sections 5-6) on enough stages to test the Costly Dilemma, step by step.

:class:`ScorecardStudy` trains the arms (:mod:`~workbench.cost.stage_grid`), scores every stage on the
in- and out-of-domain sets (:mod:`~workbench.cost.stage_scoring`), prices evaluation by subsampling
(:mod:`~workbench.cost.item_budget`) and serving by measured requests, tests whether the axes move
together with grouping-respecting tests (:mod:`~workbench.cost.orthogonality`), and adjusts cost for
quality (:mod:`~workbench.cost.quality_adjusted`). Each method is one step; it keeps what later ones need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import pandas as pd

from workbench.cost import item_budget, orthogonality, quality_adjusted, stage_grid, stage_scoring
from workbench.cost.generalization_study import generalization_sets, predicted_serving_columns
from workbench.cost.hosting import api_cost_table
from workbench.cost.scorecard import nondominated, scorecard
from workbench.cost.study import CostStudy
from workbench.cost.study_steps import request_tokens

AXES = ["generalization", "evaluation_usd", "serving_usd_per_1000"]


@dataclass
class ScorecardStudy:
    """Sections 5-6 of notebook 07.

    Args:
        profile: the profile (its ``07_cost_generalization_evaluation`` section sizes everything here).
        costs: the cost study of sections 1-4 (model, device, assumptions, tokenizer, shape).
        sizes: the profile section.
        half_width: wanted 95% half-width of each own task's RMSE (prices the evaluation).
        margin: the equivalence margin of the orthogonality verdicts (rank correlation units).
        seed: items, demonstrations, resamples.
        resamples: bootstrap resamples of the generalization and fine-tuning tables.
        on_model: called with the fingerprint of every stage loaded.
        save: called as ``save(table, file name)`` with every table a step makes (a run's ``save_table``).
    """

    profile: str
    costs: CostStudy
    sizes: Mapping
    half_width: float
    margin: float
    seed: int = 0
    resamples: int = 1000
    on_model: Callable[[dict], None] = lambda fingerprint: None
    save: Callable[[pd.DataFrame, str], object] = lambda table, name: None

    @classmethod
    def from_parameters(cls, costs: CostStudy, params: Mapping, run) -> ScorecardStudy:
        """From a notebook's ``globals()`` (PROFILE, SCORECARD_HALF_WIDTH, ORTHOGONALITY_MARGIN, SEED), the cost study
        (its sizes and resamples) and the run that records models and saves tables."""
        return cls(
            params["PROFILE"],
            costs,
            costs.sizes,
            params["SCORECARD_HALF_WIDTH"],
            params["ORTHOGONALITY_MARGIN"],
            params["SEED"],
            costs.resamples,
            run.add_model,
            run.save_table,
        )

    def train(self) -> pd.DataFrame:
        """Train (or reuse) the arms; one row each with its measured training seconds."""
        self.arms = stage_grid.train_arms(
            self.profile,
            self.costs.model,
            self.costs.device,
            self.sizes["arms"],
            self.sizes["arm_variants"],
            self.seed,
        )
        self.save(self.arms, "07_arms.csv")
        return self.arms

    def stages(self) -> tuple[pd.DataFrame, str]:
        """(what sets each stage apart, a note on those left out); reads the item sets."""
        self.grid, note = stage_grid.scorecard_grid(
            self.profile,
            self.costs.model,
            self.arms,
            self.sizes["base_shots"],
            self.sizes["base_variants"],
            self.sizes["finetuned_variants"],
        )
        self.info = stage_grid.stage_table(self.grid)
        self.sets = generalization_sets(self.sizes["gen_items"], self.seed)
        return self.info, note

    def score(self) -> pd.DataFrame:
        """Score every stage on every set; the generalization table (every metric, Spearman first)."""
        self.scores = stage_scoring.score_stages(
            self.grid,
            self.costs.model,
            self.costs.device,
            self.sets,
            self.sizes["time_prompts"],
            self.sizes["time_repeats"],
            self.seed,
            self.on_model,
        )
        self.info = self.info.loc[[s.stage for s in self.scores]]
        self.generalization = stage_scoring.generalization_table(self.scores, self.sets, self.resamples, self.seed)
        self.save(self.generalization, "07_generalization.csv")
        return self.generalization

    def outside_mass(self) -> pd.DataFrame:
        """Mean probability off the answer grid per stage and set (near 1: a formatting failure, not a skill)."""
        return pd.DataFrame({s.stage: {n: float(v.mean()) for n, v in s.outside.items()} for s in self.scores}).T

    def transfer(self) -> pd.DataFrame:
        """Spearman of every stage on every set beside what it was trained on."""
        return stage_scoring.transfer_matrix(self.generalization, self.info)

    def effects(self) -> tuple[pd.DataFrame, str]:
        """Every fine-tuned stage against the base model (fp32, few-shot) on every set: where it helped or hurt."""
        reference = self.info.index[self.info.family == "base"][0]
        effects = stage_scoring.finetuning_effects(self.scores, reference, n_resamples=self.resamples, seed=self.seed)
        self.save(effects, "07_finetuning_effects.csv")
        return effects, stage_scoring.effects_summary(effects, reference)

    def _card(self, scores, rows=None, seconds=None, repeats=None) -> pd.DataFrame:
        assumed = self.costs.assumptions
        return scorecard(
            scores,
            self.sets.own,
            self.sets.unseen,
            self.sets.prior,
            self.half_width,
            assumed.label_usd_per_item,
            assumed.machine_usd_per_hour,
            assumed.utilisation,
            rows=rows,
            seconds=seconds,
            repeats=repeats or self.sizes["subsample_repeats"],
            seed=self.seed,
        )

    def card(self, replicates: int) -> pd.DataFrame:
        """One row per stage: the three axes (evaluation by subsampling, serving measured) with 95% intervals from
        ``replicates`` bootstrap scorecards (items and timed requests resampled; they also serve
        :meth:`orthogonality`), GPU prices predicted by the roofline, what sets the stage apart, the Pareto set."""
        card = self._card(self.scores)
        repeats = max(20, self.sizes["subsample_repeats"] // 4)
        self.replicates = orthogonality.resampled_cards(
            self.scores, self.info, partial(self._card, repeats=repeats), replicates, self.seed
        )
        card = card.join(orthogonality.stage_intervals(self.replicates, card.index, AXES))
        sst5, examples = self.sets.sets["SST-5"]
        tokenizer = self.costs.reference_cpu.tokenizer
        assumed = self.costs.assumptions
        card = predicted_serving_columns(
            card,
            self.costs.reference_cpu.model.config,
            assumed.efficiency,
            request_tokens(tokenizer, sst5.prompts(examples, tokenizer), sst5.candidates)[0],
            self.costs.answer_tokens,
            assumed.gpu_rows,
            assumed.utilisation,
        )
        card["seconds_per_request (measured)"] = [s.seconds_per_request for s in self.scores]
        card["pareto"] = nondominated(card[AXES])
        self.table = self.info.join(card)
        self.save(self.table.rename_axis("stage").reset_index(), "07_scorecard.csv")  # one row per stage
        return self.table

    def evaluation(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(items, tokens, seconds and US$ per stage and own set for the half-width, items to tell each stage from
        the next better one), both found by subsampling the evaluated items."""
        assumed = self.costs.assumptions
        repeats = self.sizes["subsample_repeats"]
        budget = item_budget.budget_table(
            self.scores,
            self.sets.own,
            self.half_width,
            assumed.label_usd_per_item,
            assumed.machine_usd_per_hour,
            repeats,
            self.seed,
        )
        order = list(self.table.sort_values("quality", ascending=False).index)
        separation = item_budget.separation_table(self.scores, order, self.sets.own, repeats, self.seed)
        self.save(budget, "07_evaluation_budget.csv")
        self.save(separation, "07_separation.csv")
        return budget, separation

    def orthogonality(self) -> tuple[pd.DataFrame, str]:
        """Grouping-respecting rank correlations between the axes, with intervals from :meth:`card`'s replicates
        (weight sets, items and timed requests resampled)."""
        table = orthogonality.grouped_correlations(self.table, self.replicates, AXES, self.margin, seed=self.seed)
        self.save(table, "07_orthogonality.csv")
        return table, orthogonality.orthogonality_summary(table, self.margin)

    def adjusted(
        self, api_accuracy: float, note: str = quality_adjusted.API_QUALITY_NOTE, save: bool = True
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(cost per 1,000 correct SST-5 answers of every stage and API, break-evens in correct answers of the
        cheapest stage per correct answer and of the reference against every API).

        Args:
            api_accuracy: the SST-5 accuracy assumed for every API (no API was run here).
            note: why that figure (the ``quality_source`` of every API row).
            save: save the tables (a widget re-drawing for another assumed accuracy does not).
        """
        assumed = self.costs.assumptions
        sst5, examples = self.sets.sets["SST-5"]
        tokenizer = self.costs.reference_cpu.tokenizer
        prompt_tokens, answer_tokens = request_tokens(tokenizer, sst5.prompts(examples, tokenizer), sst5.candidates)
        apis = api_cost_table(prompt_tokens, answer_tokens).api
        costs = quality_adjusted.adjusted_costs(
            self.scores,
            sst5.grid,
            "SST-5",
            {api: (api_accuracy, f"ASSUMED {api_accuracy:.2f}: {note}") for api in apis},
            prompt_tokens,
            answer_tokens,
            assumed.machine_usd_per_hour,
            assumed.utilisation,
            self.sets.prior["SST-5"],
        )
        stages = costs[costs.kind.str.startswith("stage")].sort_values("usd_per_1000_correct")
        chosen = [
            name for name in dict.fromkeys([stages.name.iloc[0], self.costs.reference]) if name in set(stages.name)
        ]
        breaks = quality_adjusted.adjusted_break_even(
            costs, chosen, list(apis), assumed.machine_usd_per_hour, assumed.utilisation
        )
        if save:
            self.save(costs, "07_quality_adjusted.csv")
            self.save(breaks, "07_quality_adjusted_break_even.csv")
        return costs, breaks
