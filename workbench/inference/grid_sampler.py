"""Answer-grid samples from the exact one-pass distribution: only the draws that land off the grid are decoded.

A grid task (SST-5 ratings, STS-B scores) asks the model for K samples per item *and* scores the
whole grid exactly in one tree pass (:meth:`~workbench.inference.engine.HFEngine.score`). That pass
already holds the sampler's distribution over the grid: the probability of each answer's tokens
followed by the end of turn, and the mass off the grid. So the K samples are drawn from the
categorical over {grid answers} and {off grid} (:class:`~workbench.inference.answer_trie.TrieDistribution`),
and only the off-grid draws are decoded, conditioned on leaving the grid: a walk down the answer
trie, each token drawn with its off-grid mass, fixes a *forced prefix* that ends with the first
token off the trie; the engine's own sampler (same temperature, top-k, top-p, stop strings,
end-of-sequence tokens, seeded generators) then decodes the rest from the prompt's keys and the
trie's keys, which are reused, never recomputed: one extra one-token step per walk depth.

Exactness, and when the engine falls back to real decoding (:func:`fast_path_refusal` per prompt):

* temperature, top-k and top-p: exact. The trie distribution is computed with the sampler's own
  filter (:func:`~workbench.inference.logits.filter_logits`) at every node, so truncation is
  applied where the sampler applies it, token by token (the returned *score* is unfiltered, as
  ``score`` gives it). Up to float rounding: the tree pass and the decoding steps compute the same
  logits in different batch shapes, the same approximation the engine's tree decoding makes.
* stop strings and end-of-sequence tokens: a grid answer is a complete answer only if the sampler
  would produce it whole. A prompt where a stop string fires inside a grid answer, an answer holds
  an end-of-sequence token before its end, or an answer does not fit ``max_new_tokens``, is
  decoded for real (:meth:`~workbench.inference.engine.HFEngine.sample`'s own samples). Off-grid
  samples are checked for stop strings over the forced prefix and the decoded rest together, as
  the sampler checks them.
* temperature 0 (greedy): nothing to draw; real decoding.
* a prompt the model answers far off the grid (more than ``MAX_PREFIX_SHARE`` x n distinct forced
  prefixes expected): real decoding, because each prefix costs its own copy of the prompt's keys.
  Decided from the distribution before drawing, so the samples are exact either way.

:attr:`GridSamples.fallbacks` names, per prompt, why it was decoded for real (None: from the grid).

Draws are seeded by the run seed and the prompt (:func:`~workbench.inference.answer_trie.draw_generator`),
the decoding of each forced prefix by the seed, the prompt and the prefix, so a prompt's samples do
not depend on the other prompts of its batch. They are a different random stream from
:meth:`~workbench.inference.engine.HFEngine.sample`'s (the same distribution, other draws), so they
are cached under their own kind and :data:`GRID_SAMPLER_VERSION`, never mixed with real samples.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from workbench.inference.answer_trie import (
    AnswerTrie,
    TrieDistribution,
    draw_generator,
    fast_path_refusal,
    first_end,
)
from workbench.inference.attention import Pass, Segment
from workbench.inference.frontier import PromptBatch
from workbench.inference.logits import filter_logits
from workbench.inference.stops import finish_text
from workbench.inference.types import GridScore, SampleSet, SamplingConfig

# Bump when the grid draws change, so that cached grid samples from the old procedure are not reused.
GRID_SAMPLER_VERSION = 1
_SAMPLE_FIELDS = ("texts", "token_ids", "token_logprobs", "finish_reasons")
# A prompt whose n draws are expected to need more than this share of n distinct forced prefixes
# decoded is decoded for real: each prefix costs a copy of the prompt's keys and its own decoding
# row, so the walk no longer saves time (a prompt the model mostly answers far off the grid).
MAX_PREFIX_SHARE = 0.5
# Forced prefixes extended at once: each holds a copy of its prompt's keys.
_PREFIXES_PER_STEP = 64


@dataclass
class GridSamples:
    """Samples and the exact grid distribution of B prompts.

    Attributes:
        samples: B :class:`SampleSet`.
        score: the (B, K) :class:`GridScore` at the sampling temperature (no top-k/top-p).
        fallbacks: per prompt, None where the samples came from the grid, else why they were
            decoded for real; None when the engine has no grid sampler.
    """

    samples: list[SampleSet]
    score: GridScore
    fallbacks: list[str | None] | None = None


@dataclass
class AnswerTree:
    """B prompts prefilled, and their answer tries pushed through the model in the same pass.

    Attributes:
        prompts: the prefilled prompts; ``last_logits`` are the tries' roots.
        tries: B :class:`AnswerTrie`.
        tree: the tries' keys and values, one column per non-root node (column = node row - 1).
        node_logits: (B, width, vocab) next-token logits after each non-root node, same columns.
    """

    prompts: PromptBatch
    tries: list[AnswerTrie]
    tree: Segment
    node_logits: torch.Tensor

    def logits(self, row: int) -> torch.Tensor:
        """(nodes, vocab) float32 next-token logits at every node of prompt ``row``'s trie, rows as its ``nodes``."""
        count = len(self.tries[row].nodes)
        return torch.cat([self.prompts.last_logits[row : row + 1], self.node_logits[row, : count - 1].float()])


def sample_with_grid(engine, prompts: list[str], n: int, config: SamplingConfig, candidates: list[str]) -> GridSamples:
    """``n`` samples per prompt and the exact grid distribution, by the fastest exact route ``engine`` has.

    An engine with ``sample_grid`` (:class:`~workbench.inference.engine.HFEngine`) draws both from
    one tree pass; any other :class:`~workbench.inference.protocol.Engine` samples and scores.
    """
    fast = getattr(engine, "sample_grid", None)
    if callable(fast):
        return fast(prompts, n, candidates, config)
    return GridSamples(engine.sample(prompts, n, config), engine.score(prompts, candidates, config.temperature))


class RealSampling:
    """An engine seen through the :class:`~workbench.inference.protocol.Engine` members only, so that
    :func:`sample_with_grid` samples and scores it (real decoding): the reference the grid sampler
    is checked against, and how backends without ``sample_grid`` (a server, Ray actors) draw.

    Args:
        engine: any engine; its ``tokenizer`` (if any) is kept for formatting prompts.
    """

    def __init__(self, engine):
        self.engine, self.tokenizer, self.fingerprint = engine, getattr(engine, "tokenizer", None), engine.fingerprint

    def sample(self, prompts: list[str], n: int, config: SamplingConfig | None = None) -> list[SampleSet]:
        return self.engine.sample(prompts, n, config)

    def greedy(self, prompts: list[str], max_new_tokens: int = 32, stop: tuple[str, ...] = ()) -> list[str]:
        return self.engine.greedy(prompts, max_new_tokens, stop)

    def score(self, prompts: list[str], candidates: list[str], temperature: float = 1.0) -> GridScore:
        return self.engine.score(prompts, candidates, temperature)


def sampler_name(engine) -> str:
    """How :func:`sample_with_grid` draws with ``engine``, for run files and provenance."""
    if callable(getattr(engine, "sample_grid", None)):
        return f"grid v{GRID_SAMPLER_VERSION} ({type(engine).__name__})"
    return f"{type(engine).__name__}.sample"


def sample_grid(
    engine, prompts: list[str], n: int, candidates: list[str], config: SamplingConfig, decoder_version: int
) -> GridSamples:
    """:meth:`HFEngine.sample_grid <workbench.inference.engine.HFEngine.sample_grid>` (cached per prompt).

    ``decoder_version`` is the engine's sampler version: off-grid draws are decoded by it, so it is
    part of the cache key with :data:`GRID_SAMPLER_VERSION`.
    """
    if not candidates:
        raise ValueError("sample_grid needs at least one candidate")
    if config.temperature == 0:
        samples = engine.sample(prompts, n, config)
        return GridSamples(samples, engine.score(prompts, candidates, config.temperature), ["greedy"] * len(prompts))
    candidates = list(candidates)
    settings = {
        "n": n,
        "candidates": candidates,
        "rows_per_chunk": min(n, engine.max_rows),
        "sampler": decoder_version,
        "grid_sampler": GRID_SAMPLER_VERSION,
        **asdict(config),
    }
    values = engine._cached_map(
        "grid_sample",
        prompts,
        settings,
        config.seed,
        prompts_per_batch=engine.batch_size,
        compute=lambda batch, ids, stops: _grid_batch(engine, batch, ids, n, candidates, config),
        decode=lambda value: value,
    )
    samples = [SampleSet(**{name: value[name] for name in _SAMPLE_FIELDS}) for value in values]
    score = GridScore(candidates, [value["grid_logprobs"] for value in values])
    return GridSamples(samples, score, [value["fallback"] for value in values])


@torch.inference_mode()
def _grid_batch(engine, prompts, token_ids, n, candidates, config: SamplingConfig) -> list[dict]:
    """One batch: a tree pass, the draws, and the decoding of every off-grid draw's rest."""
    tree = engine._answer_tree(token_ids, candidates)
    grid_logprobs = engine._grid_logprobs(tree, config.temperature)
    decode = engine.tokenizer.decode
    results: list[dict | None] = [None] * len(prompts)
    draws, forced_counts = {}, {}
    for row, trie in enumerate(tree.tries):
        refusal = fast_path_refusal(
            trie, config.temperature, config.max_new_tokens, engine.eos_ids, config.stop, decode
        )
        if refusal is not None:  # the engine's own samples for this prompt
            real = engine._sample_batch([prompts[row]], [token_ids[row]], n, config, min(n, engine.max_rows))[0]
            results[row] = {**real, "grid_logprobs": grid_logprobs[row], "fallback": refusal}
            continue
        logits = tree.logits(row)
        probs = torch.softmax(filter_logits(logits, config.temperature, config.top_k, config.top_p).double(), dim=-1)
        model_logprobs = torch.log_softmax(logits, dim=-1)
        exact = TrieDistribution(trie, probs.cpu().numpy(), model_logprobs.cpu().numpy())
        if (
            exact.expected_prefixes(n, engine.eos_ids) > MAX_PREFIX_SHARE * n
        ):  # decided before drawing: exact either way
            real = engine._sample_batch([prompts[row]], [token_ids[row]], n, config, min(n, engine.max_rows))[0]
            results[row] = {**real, "grid_logprobs": grid_logprobs[row], "fallback": "most draws need decoding"}
            continue
        draws[row] = (exact, exact.draw(n, draw_generator(config.seed, prompts[row])))
        for outcome in draws[row][1]:
            if isinstance(outcome, tuple):
                forced_counts[row, outcome] = forced_counts.get((row, outcome), 0) + 1
    rests = _decode_after(engine, tree, prompts, forced_counts, config)
    for row, (exact, outcomes) in draws.items():
        result = {name: [] for name in _SAMPLE_FIELDS}
        for outcome in outcomes:
            if isinstance(outcome, tuple):
                rest = rests[row, outcome]
                tokens, logprobs = list(outcome) + rest["token_ids"].pop(0), rest["token_logprobs"].pop(0)
                logprobs = exact.token_logprobs(outcome) + logprobs
                reason = rest["finish_reasons"].pop(0)
            else:
                tokens, reason = list(exact.trie.paths[outcome]), "eos"
                logprobs = exact.token_logprobs(tokens)
            end = first_end(tokens, engine.eos_ids, config.stop, decode)
            if end is not None:  # a stop string across the forced prefix and the rest, as the sampler sees it
                tokens, logprobs, reason = tokens[: end[0] + 1], logprobs[: end[0] + 1], end[1]
            elif len(tokens) >= config.max_new_tokens:
                reason = "length"
            text, reason = finish_text(engine.tokenizer, engine.eos_ids, tokens, reason, config.stop)
            for name, value in zip(_SAMPLE_FIELDS, (text, tokens, logprobs, reason)):
                result[name].append(value)
        results[row] = {**result, "grid_logprobs": grid_logprobs[row], "fallback": None}
    return results


def _decode_after(engine, tree: AnswerTree, prompts, forced_counts: dict, config: SamplingConfig) -> dict:
    """Decode ``count`` continuations of each (prompt row, forced prefix), with the engine's sampler.

    Returns:
        (row, forced prefix) -> lists ``token_ids``, ``token_logprobs``, ``finish_reasons`` of the
        tokens generated after the prefix (empty where the prefix already ends the sample).
    """
    rests = {}
    pending: dict[int, list[tuple[int, tuple[int, ...], int]]] = {}  # walk depth -> (row, prefix, count)
    for (row, forced), count in forced_counts.items():
        if forced[-1] in engine.eos_ids or len(forced) >= config.max_new_tokens:  # nothing left to decode
            rests[row, forced] = {
                "token_ids": [[]] * count,
                "token_logprobs": [[]] * count,
                "finish_reasons": [""] * count,
            }
        else:
            pending.setdefault(len(forced) - 1, []).append((row, forced, count))
    slices = [
        (depth, part[start : start + _PREFIXES_PER_STEP])
        for depth, part in sorted(pending.items())
        for start in range(0, len(part), _PREFIXES_PER_STEP)
    ]
    for depth, part in slices:
        continued = _after_prefixes(engine, tree, part)
        names = [f"{prompts[row]}\0grid exit\0{list(forced)}" for row, forced, _ in part]
        chunks = [
            (g, start, min(engine.max_rows, count - start))
            for g, (_, _, count) in enumerate(part)
            for start in range(0, count, engine.max_rows)
        ]
        decoded = [{"texts": [], "token_ids": [], "token_logprobs": [], "finish_reasons": []} for _ in part]
        rest_config = replace(config, max_new_tokens=config.max_new_tokens - depth - 1)
        group: list[tuple[int, int, int]] = []
        for chunk in chunks + [None]:  # groups of at most max_rows rows, as HFEngine.sample packs them
            if chunk is not None and sum(c[2] for c in group) + chunk[2] <= engine.max_rows:
                group.append(chunk)
                continue
            if group:
                engine._decode_group(continued, names, group, rest_config, decoded)
            group = [chunk] if chunk is not None else []
        for (row, forced, _), result in zip(part, decoded):
            rests[row, forced] = {name: result[name] for name in ("token_ids", "token_logprobs", "finish_reasons")}
    return rests


def _after_prefixes(engine, tree: AnswerTree, part: list[tuple[int, tuple[int, ...], int]]) -> PromptBatch:
    """The prompts of ``part`` extended by their forced prefixes (same length), ready to decode from.

    A prefix is a trie path, whose keys the tree pass computed, and one token off the trie, which
    is run here: one step for the whole part.
    """
    rows = [row for row, _, _ in part]
    depth = len(part[0][1]) - 1
    base = tree.prompts.select(rows)
    prompt, device = base.segments[-1], base.next_position.device
    columns = torch.tensor(
        [[tree.tries[row].nodes[f[:j]] - 1 for j in range(1, depth + 1)] for row, f, _ in part], dtype=torch.long
    ).view(len(part), depth)
    columns = columns.to(device)
    index = torch.tensor(rows, device=device)[:, None]
    steps = base.next_position[:, None] + torch.arange(depth + 1, device=device)
    extended = Segment(
        "prompt",
        torch.cat([prompt.positions, steps], dim=1),
        torch.cat([prompt.valid, torch.ones_like(steps, dtype=torch.bool)], dim=1),
    )
    for store, source, target in (
        (prompt.keys, tree.tree.keys, extended.keys),
        (prompt.values, tree.tree.values, extended.values),
    ):
        for module, own in store.items():
            path = source[module][index, :, columns].transpose(1, 2)  # (rows, kv_heads, depth, dim)
            target[module] = torch.cat([own, path], dim=2)
    segments = base.segments[:-1] + [extended]
    exits = torch.tensor([[forced[-1]] for _, forced, _ in part], device=device)
    positions = steps[:, -1:]
    out = Pass(segments, ("append", extended), positions).run(engine.model, input_ids=exits, position_ids=positions)
    return PromptBatch(segments, base.next_position + depth + 1, out.logits[:, -1].float())
