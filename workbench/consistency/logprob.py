"""The log-probability test: each stage's responses scored under both stages, tested on log-likelihood ratios.

A local stage knows the probability of any response, not only of its own samples. For stages A and B and a
response r to a query, ``f(r) = log p_A(r) - log p_B(r)`` is one fixed function of the text. Per query, with
responses ``a_1..a_k`` of A and ``b_1..b_k`` of B,

    d_q = mean_i f(a_i) - mean_j f(b_j),

whose expectation is ``KL(A || B) + KL(B || A)``: zero when the stages draw from one distribution, positive
otherwise. Under H0 the a's and b's are exchangeable, so ``E d_q = 0`` for *any* f, including one computed with
rounding noise or with the floor below: the test stays valid whatever the scorer's numerics. The test is the
one-sided paired t-test over queries (H1: ``d_q > 0``), the same as SimCT's model-wise test, so the planner,
the power simulation and the three-way decisions of :mod:`~workbench.consistency.equivalence` apply unchanged.

``log p_s(r)`` is the probability that stage s *as it samples* emits r: its weights and prompt (system prompt,
template), its temperature and nucleus (top-p), and its length limit m: a response of L < m tokens ends with an
end-of-turn token, one of L = m tokens is cut there, and one longer than m cannot come from s. A token a stage
cannot emit (outside its nucleus, past its limit) counts as :attr:`LogprobConfig.floor` nats rather than -inf,
so every ratio is finite (any fixed f keeps the test valid; the floor bounds its tails).

>>> fa = np.array([[0.4, 0.6], [0.5, 0.3]]); fb = np.array([[-0.2, 0.0], [0.1, -0.1]])
>>> cube = RatioCube(("q1", "q2"), fa, fb, "A", "B")
>>> np.round(query_differences(cube), 2)
array([0.6, 0.4])
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench.consistency.generate import Variant
from workbench.inference.end_of_turn import end_of_turn
from workbench.inference.engine import answer_tokens
from workbench.inference.logits import filter_logits, tempered_log_softmax
from workbench.inference.models import LoadedModel

SCORER_VERSION = 1  # bump when the log-likelihood's definition changes: cached scores are then recomputed


@dataclasses.dataclass(frozen=True)
class LogprobConfig:
    """Settings of the log-likelihood scorer.

    Attributes:
        floor: log-probability (nats) given to a token the stage cannot emit; finite so that ratios are.
        pass_overhead: what one more forward pass costs, in padded tokens, when a prompt's responses are cut
            into batches of similar length (:func:`~workbench.inference.prompt_logprobs.length_groups`); a huge
            value runs each prompt's responses as one batch padded to the longest.
    """

    floor: float = -30.0
    pass_overhead: int = 32


def view_of(variant: Variant) -> tuple:
    """What fixes the logits a variant sees: stage, attention kernels and prompt format (not the decoding)."""
    return (variant.stage_label, variant.attn_implementation, variant.system_prompt, variant.template)


def scorable(variant: Variant) -> bool:
    """Whether the test can score under this variant: an in-process stage that samples (temperature > 0)."""
    return variant.backend == "local" and variant.endpoint is None and variant.temperature > 0


def _stop_ids(lm: LoadedModel) -> list[int]:
    """The tokens that end a sample (as :class:`~workbench.inference.engine.HFEngine` stops on them)."""
    ids = {lm.tokenizer.eos_token_id, end_of_turn(lm.tokenizer, lm.model.generation_config).token_id}
    configured = getattr(lm.model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return sorted(i for i in ids if i is not None)


def _predicting_logits(
    lm: LoadedModel, prompt_ids: list[int], responses: list[list[int]], overhead: int
) -> list[torch.Tensor]:
    """For each response of one prompt, the (L + 1, vocab) logits that predict its L tokens and what follows.

    The prompt runs once; the responses run after it in right-padded batches of similar length
    (:func:`~workbench.inference.prompt_logprobs.length_groups`; one batch padded to the longest response was
    1.18x slower on notebook 06's eight response sets of the reference's format, ``benchmarks/logprob_grouping.py``),
    each on the prompt's cache expanded, not copied.
    """
    from workbench.inference.prompt_logprobs import _has_sliding_window, length_groups, prefill, rows_after

    device = next(lm.model.parameters()).device
    out: list[torch.Tensor | None] = [None] * len(responses)
    if _has_sliding_window(lm.model):  # the window needs the model's own cache layout: plain passes, no shared prompt
        start = len(prompt_ids) - 1
        for group in length_groups([len(prompt_ids) + len(ids) for ids in responses], overhead):
            logits = rows_after(lm.model, None, 0, [prompt_ids + responses[i] for i in group], device)
            for row, i in enumerate(group):
                out[i] = logits[row, start : start + len(responses[i]) + 1]
        return out
    cache, last = prefill(lm.model, prompt_ids, device, last_only=True)
    for group in length_groups([len(ids) for ids in responses], overhead):
        logits = rows_after(lm.model, cache, len(prompt_ids), [responses[i] for i in group], device)
        for row, i in enumerate(group):
            out[i] = torch.cat([last, logits[row, : len(responses[i])]])
    return out


def _loglik(logits: torch.Tensor, ids: list[int], variant: Variant, stops: list[int], floor: float) -> float:
    """log p(response) under the variant's sampling distribution, from the (L + 1, vocab) predicting logits."""
    if variant.top_p < 1.0:
        logq = torch.log_softmax(filter_logits(logits, variant.temperature, 0, variant.top_p), dim=-1)
    else:
        logq = tempered_log_softmax(logits, variant.temperature)
    length, limit = len(ids), variant.max_new_tokens
    kept = min(length, limit)
    terms = logq[torch.arange(kept), torch.tensor(ids[:kept], dtype=torch.long)].double().clamp(min=floor)
    total = float(terms.sum()) + floor * max(0, length - limit)  # tokens past the limit: the stage cannot emit them
    if length < limit:  # the stage stopped by itself: it emitted an end-of-turn token here
        total += max(float(torch.logsumexp(logq[length, stops].double(), dim=0)), floor)
    return total


@torch.inference_mode()
def response_logliks(
    lm: LoadedModel, variants: Sequence[Variant], responses: pd.DataFrame, config: LogprobConfig = LogprobConfig()
) -> np.ndarray:
    """log p_v(response) of every response under every variant, all sharing one view (:func:`view_of`).

    Args:
        lm: the variants' model (loaded with their attention kernels).
        variants: V scorable variants of one view; they differ in temperature, top-p and length limit only.
        responses: R rows of a response table (``query``, ``response``).
        config: the floor.

    Returns:
        (V, R) log-likelihoods in nats.
    """
    if len({view_of(v) for v in variants}) != 1 or not all(scorable(v) for v in variants):
        raise ValueError(f"variants must be scorable and share one view, got {[v.name for v in variants]}")
    stops = _stop_ids(lm)
    out = np.empty((len(variants), len(responses)))
    positions = {
        query: np.flatnonzero(responses["query"].to_numpy() == query) for query in dict.fromkeys(responses["query"])
    }
    for query, rows in positions.items():
        prompt_ids = lm.tokenizer(variants[0].prompt(query, lm.tokenizer), add_special_tokens=False)["input_ids"]
        texts = responses.response.to_numpy()[rows]
        ids = [answer_tokens(lm.tokenizer, prompt_ids, text) if text else [] for text in texts]
        for i, (row, logits) in enumerate(zip(rows, _predicting_logits(lm, prompt_ids, ids, config.pass_overhead))):
            for v, variant in enumerate(variants):
                out[v, row] = _loglik(logits, ids[i], variant, stops, config.floor)
    return out


def score_responses(
    table: pd.DataFrame,
    variants: Sequence[Variant],
    requests: Sequence[tuple[str, str]],
    out_dir: str | Path | None = None,
    device: str = "cpu",
    base_model: str | None = None,
    config: LogprobConfig = LogprobConfig(),
    progress: bool = True,
) -> pd.DataFrame:
    """Log-likelihoods of some stages' responses under some stages, loading each model once, cached on disk.

    Args:
        table: a response table from :func:`~workbench.consistency.generate.generate_responses` (with ``variant_key``).
        variants: the study's variants (looked up by name).
        requests: ``(responses stage, scorer stage)`` pairs; scorers must be :func:`scorable`.
        out_dir: folder of the cached scores (``<responses>__<scorer>.json``, keyed by responses, scorer and weights).
        device: where the scoring models run.
        base_model: whose stage registry the stage names refer to (None: the embedded model).
        config: scorer settings.
        progress: show a progress bar.

    Returns:
        Rows ``query_id, seed, responses, scorer, loglik``.
    """
    from workbench.consistency.generate import stage_fingerprint
    from workbench.inference.models import DEFAULT_MODEL
    from workbench.lifecycle.stages import load_stage
    from workbench.progress import tqdm

    base_model = base_model or DEFAULT_MODEL
    by_name = {v.name: v for v in variants}
    bad = [scorer for _, scorer in requests if not scorable(by_name[scorer])]
    if bad:
        raise ValueError(f"stages {sorted(set(bad))} cannot score responses (not local, or greedy)")
    frames, todo = [], {}
    for responses, scorer in dict.fromkeys(requests):
        rows = table[table.stage == responses].reset_index(drop=True)
        variant = by_name[scorer]
        key = scores_key(str(rows.variant_key.iloc[0]), variant, stage_fingerprint(variant.stage, base_model), config)
        path = Path(out_dir) / f"{responses}__{scorer}.json" if out_dir is not None else None
        cached = load_scores(path, key) if path is not None else None
        if cached is not None and all(f"{q}\t{s}" in cached for q, s in zip(rows.query_id, rows.seed)):
            values = [cached[f"{q}\t{s}"] for q, s in zip(rows.query_id, rows.seed)]
            frames.append(rows[["query_id", "seed"]].assign(responses=responses, scorer=scorer, loglik=values))
            continue
        # one prompt pass per (model, prompt format, query), then every response set needing it in one batch;
        # variants that differ only in decoding share the logits
        todo.setdefault((variant.stage, variant.attn_implementation), {}).setdefault(view_of(variant), []).append(
            (responses, variant, key, path)
        )
    bar = tqdm(total=sum(len(views) for views in todo.values()), desc="log-likelihoods", disable=not progress)
    for (stage, attn), views in todo.items():
        lm = load_stage(stage, device=device, base_model=base_model, attn_implementation=attn)
        for jobs in views.values():
            scorers = list({variant.name: variant for _, variant, _, _ in jobs}.values())
            names = [variant.name for variant in scorers]
            sets = list(dict.fromkeys(responses for responses, _, _, _ in jobs))
            rows = pd.concat([table[table.stage == responses] for responses in sets], ignore_index=True)
            values = response_logliks(lm, scorers, rows, config)
            for responses, variant, key, path in jobs:
                mine = (rows.stage == responses).to_numpy()
                part, row_values = rows[mine], values[names.index(variant.name), mine]
                if path is not None:
                    scores = {f"{q}\t{s}": float(v) for q, s, v in zip(part.query_id, part.seed, row_values)}
                    save_scores(path, key, scores)
                frames.append(
                    part[["query_id", "seed"]].assign(responses=responses, scorer=variant.name, loglik=row_values)
                )
            bar.update(1)
    bar.close()
    return pd.concat(frames, ignore_index=True)


def scores_key(responses_key: str, scorer: Variant, fingerprint: dict, config: LogprobConfig) -> str:
    """A hash of everything that determines one set of scores (the responses' key, the scorer, its weights)."""
    blob = {
        "responses": responses_key,
        "scorer": {**scorer.describe(), "name": None, "batch_size": None, "backend": None},
        "fingerprint": fingerprint,
        "floor": config.floor,
        "version": SCORER_VERSION,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_scores(path: Path, key: str) -> dict | None:
    """The cached scores ``{"<query_id>\\t<seed>": loglik}`` stored under ``key``, or None."""
    if not path.exists():
        return None
    stored = json.loads(path.read_text())
    return stored["scores"] if stored.get("key") == key else None


def save_scores(path: Path, key: str, scores: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"key": key, "scores": scores}))
    tmp.replace(path)


@dataclasses.dataclass(frozen=True)
class RatioCube:
    """Log-likelihood ratios ``f = log p_A - log p_B`` of both stages' responses, per query and sample.

    Attributes:
        query_ids: Q queries.
        fa: (Q, n_a) f of A's responses; fb: (Q, n_b) f of B's responses.
        stage_a, stage_b: the stages.
        fa_rerun: (Q, n_r) f of A's responses under new seeds (A/A runs pool them with ``fa``), or None.
    """

    query_ids: tuple
    fa: np.ndarray
    fb: np.ndarray
    stage_a: str
    stage_b: str
    fa_rerun: np.ndarray | None = None


def ratio_cube(logliks: pd.DataFrame, stage_a: str, stage_b: str, rerun: str | None = None) -> RatioCube:
    """The :class:`RatioCube` of a comparison from a long table of log-likelihoods.

    Args:
        logliks: rows ``query_id, seed, responses, scorer, loglik`` (responses: the stage that wrote the
            response; scorer: the stage it is scored under).
        stage_a, stage_b: the compared stages; ``rerun``: A's rerun under new seeds (optional).
    """
    wide = logliks.pivot_table(index=["responses", "query_id", "seed"], columns="scorer", values="loglik")

    def block(responses: str) -> np.ndarray:
        rows = wide.loc[responses]
        ratio = (rows[stage_a] - rows[stage_b]).unstack("seed")
        return ratio.loc[list(query_ids)].to_numpy()

    query_ids = tuple(dict.fromkeys(logliks[logliks.responses == stage_a].query_id))
    return RatioCube(query_ids, block(stage_a), block(stage_b), stage_a, stage_b, block(rerun) if rerun else None)


def query_differences(cube: RatioCube) -> np.ndarray:
    """(Q,) per-query ``d_q`` on all samples."""
    return cube.fa.mean(axis=1) - cube.fb.mean(axis=1)


def simulate_ratios(
    cube: RatioCube, n_queries: int, samples_per_query: int, n_runs: int, seed=0, aa: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per-query means of A's and of B's ratios in simulated runs (queries resampled with replacement).

    Args:
        cube: the ratios.
        n_queries, samples_per_query: the budget of a run (k may be 1).
        n_runs: runs.
        seed: seeds the draws.
        aa: A/A runs: two disjoint halves of A's responses (with the rerun's, when the cube has them) play A and B.

    Returns:
        (first, second), each (n_runs, n_queries); the test is ``first > second``.
    """
    rng = np.random.default_rng(seed)
    first_pool = np.concatenate([cube.fa, cube.fa_rerun], axis=1) if aa and cube.fa_rerun is not None else cube.fa
    second_pool = first_pool if aa else cube.fb
    need = 2 * samples_per_query if aa else samples_per_query
    if need > first_pool.shape[1] or (not aa and samples_per_query > second_pool.shape[1]):
        raise ValueError(f"{samples_per_query} samples per query need more responses than the cube holds")
    queries = rng.integers(0, len(cube.query_ids), size=(n_runs, n_queries))
    order = np.argsort(rng.random((n_runs, n_queries, first_pool.shape[1])), axis=-1)
    first = np.take_along_axis(first_pool[queries], order[..., :samples_per_query], axis=-1).mean(axis=-1)
    if aa:
        second = np.take_along_axis(first_pool[queries], order[..., samples_per_query:need], axis=-1).mean(axis=-1)
    else:
        other = np.argsort(rng.random((n_runs, n_queries, second_pool.shape[1])), axis=-1)[..., :samples_per_query]
        second = np.take_along_axis(second_pool[queries], other, axis=-1).mean(axis=-1)
    return first, second
