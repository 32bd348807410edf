"""Batched, device-agnostic decoding: ``sample``, ``greedy`` and exact grid ``score``.

Why not ``model.generate(num_return_sequences=N)``? It copies each prompt N times *before* the
prefill, so the prompt (often hundreds of few-shot tokens) is pushed through the network N times,
and its KV cache grows by concatenation, a copy of the whole cache per generated token. Here:

* every prompt is prefilled once, and a token prefix all prompts of a call share (system prompt,
  few-shot examples) once per call;
* the N samples never copy the prompt's keys: they attend to them in place
  (:mod:`workbench.inference.attention`), as a tree of distinct continuations while they agree
  and as one row per sample, each with a buffer of its own tokens, once they have diverged
  (:mod:`workbench.inference.frontier`).

Layout of one prefilled batch, left-padded so that every row's next token sits in the last column::

    [ shared prefix (P, one row for all) ][ pad ... ][ prompt suffix ]

Positions are counted over real tokens only, so padding never shifts the rotary embedding, and
attention masks are computed from positions, so sliding windows stay exact.

``score`` gives the exact probability of each candidate answer *as a complete answer*: the
candidate's tokens followed by the end-of-turn token. Summed over all possible answers these
probabilities are 1, so the mass the grid misses is reported as ``outside_mass``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict

import numpy as np
import torch

from workbench.inference.answer_trie import AnswerTrie
from workbench.inference.attention import Pass, Segment, check_architecture
from workbench.inference.end_of_turn import end_of_turn
from workbench.inference.frontier import PromptBatch, RowFrontier, TreeFrontier
from workbench.inference.gencache import GenerationCache
from workbench.inference.grid_sampler import AnswerTree, GridSamples, sample_grid
from workbench.inference.logits import check_temperature, filter_logits, tempered_log_softmax
from workbench.inference.models import LoadedModel, load_model
from workbench.inference.protocol import greedy_by_sampling
from workbench.inference.stops import end_on_stop, finish_text
from workbench.inference.types import GridScore, SampleSet, SamplingConfig
from workbench.paths import cache_dir
from workbench.progress import tqdm

MIN_SHARED_PREFIX = 16  # below this, a separate prefix pass costs more than it saves
# Bump when the sampling procedure changes, so cached samples from the old one are not reused.
# 3: segment attention (no per-sample prompt copies), tree-to-rows hand-over, float64 tempering.
SAMPLER_VERSION = 3


class HFEngine:
    """Decoding with a shared prefill, a disk cache and length-grouped batches.

    Args:
        lm: a model from :func:`workbench.inference.models.load_model`.
        cache: a :class:`GenerationCache`; None disables caching.
        batch_size: prompts prefilled together (and decoded together, up to ``max_rows`` rows).
        max_rows: most sequences decoded together (prompts x samples); bounds memory.
        share_prefix: prefill the token prefix common to all prompts of a call only once.
        progress: show tqdm progress bars.

    Raises:
        NotImplementedError: for model architectures the engine has not been checked on
            (see :data:`workbench.inference.attention.TESTED_ARCHITECTURES`).
    """

    def __init__(
        self,
        lm: LoadedModel,
        cache: GenerationCache | None = None,
        batch_size: int = 16,
        max_rows: int = 256,
        share_prefix: bool = True,
        progress: bool = True,
    ):
        check_architecture(lm.model)
        self.lm = lm
        self.model = lm.model
        self.tokenizer = lm.tokenizer
        self.device = lm.device
        self.cache = cache
        self.batch_size = batch_size
        self.max_rows = max_rows
        self.share_prefix = share_prefix
        self.progress = progress
        self.end_of_turn = end_of_turn(lm.tokenizer, lm.model.generation_config).token_id
        self.eos_ids = _eos_ids(lm) | {self.end_of_turn}
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.end_of_turn
        self._prefix: tuple[tuple[int, ...], Segment] | None = None
        # Optional: (prompts' token ids, answers' token ids) -> (B, K) log-probabilities of the same distribution
        # that score computes, faster (a fine-tuned stage read from the base model's cached lower layers:
        # workbench.lifecycle.finetune.trunk.scoring_trunk); score uses it at temperature 1.
        self.grid_scorer: Callable[[list[list[int]], list[list[int]]], np.ndarray] | None = None

    @classmethod
    def load(
        cls,
        name_or_path: str = "smollm2-135m-instruct",
        device: str = "auto",
        dtype: str = "fp32",
        quantize: str | None = None,
        disk_cache: bool = True,
        **options,
    ) -> HFEngine:
        """Load a model and wrap it in an engine whose generations are cached under the user cache folder."""
        lm = load_model(name_or_path, device=device, dtype=dtype, quantize=quantize)
        cache = GenerationCache(cache_dir() / "generations", lm.fingerprint) if disk_cache else None
        return cls(lm, cache=cache, **options)

    @property
    def fingerprint(self) -> dict:
        """The model stage's fingerprint (part of the :class:`workbench.inference.protocol.Engine` protocol)."""
        return self.lm.fingerprint

    # ------------------------------------------------------------------ public API
    def sample(
        self,
        prompts: list[str],
        n: int,
        config: SamplingConfig | None = None,
        cancelled: Sequence[Callable[[], bool]] | None = None,
    ) -> list[SampleSet]:
        """Draw ``n`` samples for each prompt.

        Args:
            prompts: B fully formatted prompts (chat template already applied).
            n: samples per prompt.
            config: decoding settings.
            cancelled: optional, one callable per prompt, asked between decoding steps (e.g. a
                ``threading.Event.is_set`` that a server sets when the prompt's client leaves).
                Once it returns True, that prompt's rows leave the batch: at most the step in
                progress is still computed for them. The other prompts' samples do not change.

        Returns:
            B :class:`SampleSet`, in the order of ``prompts``. A cancelled prompt's set holds the
            tokens drawn before it stopped, with finish reason "cancelled"; it is not cached.
        """
        config = config or SamplingConfig()
        if cancelled is not None and len(cancelled) != len(prompts):
            raise ValueError(f"cancelled has {len(cancelled)} callables for {len(prompts)} prompts")
        rows_per_chunk = min(n, self.max_rows)
        settings = {"n": n, "rows_per_chunk": rows_per_chunk, "sampler": SAMPLER_VERSION, **asdict(config)}
        return self._cached_map(
            "sample",
            prompts,
            settings,
            config.seed,
            prompts_per_batch=max(1, min(self.batch_size, self.max_rows // n)),
            compute=lambda batch, ids, stops: self._sample_batch(batch, ids, n, config, rows_per_chunk, stops),
            decode=lambda value: SampleSet(**value),
            cancelled=cancelled,
        )

    def sample_token_ids(
        self,
        prompt_ids: list[list[int]],
        n: int,
        config: SamplingConfig | None = None,
        cancelled: list[Callable[[], bool]] | None = None,
    ) -> list[SampleSet]:
        """:meth:`sample` for prompts given as token ids (as lm-eval's OpenAI clients send them).

        The tokens are decoded as given, never re-tokenised. A prompt's samples are seeded by its
        decoded text, so the tokens of a text prompt draw the same samples as the text.

        Args:
            prompt_ids: B non-empty lists of token ids.
            n: samples per prompt.
            config: decoding settings.
            cancelled: as in :meth:`sample`.

        Returns:
            B :class:`SampleSet`, in the order of ``prompt_ids``.
        """
        config = config or SamplingConfig()
        rows_per_chunk = min(n, self.max_rows)
        settings = {"n": n, "rows_per_chunk": rows_per_chunk, "sampler": SAMPLER_VERSION, **asdict(config)}
        return self._cached_map(
            "sample",
            [self.tokenizer.decode(ids) for ids in prompt_ids],
            settings,
            config.seed,
            prompts_per_batch=max(1, min(self.batch_size, self.max_rows // n)),
            compute=lambda batch, ids, stops: self._sample_batch(batch, ids, n, config, rows_per_chunk, stops),
            decode=lambda value: SampleSet(**value),
            cancelled=cancelled,
            token_ids=[list(ids) for ids in prompt_ids],
        )

    def greedy(self, prompts: list[str], max_new_tokens: int = 32, stop: tuple[str, ...] = ()) -> list[str]:
        """The greedy (argmax) answer for each prompt."""
        return greedy_by_sampling(self, prompts, max_new_tokens, stop)

    def score(self, prompts: list[str], candidates: list[str], temperature: float = 1.0) -> GridScore:
        """Exact probability of each candidate answer, for every prompt.

        Args:
            prompts: B formatted prompts.
            candidates: K answer strings (for example "1".."5").
            temperature: score under softmax(logits / temperature), the distribution that
                sampling at that temperature (with no top-k/top-p) draws from; at least
                :data:`~workbench.inference.logits.MIN_TEMPERATURE`.

        Returns:
            A :class:`GridScore` with (B, K) log-probabilities and the mass outside the grid.
        """
        if not candidates:
            raise ValueError("score needs at least one candidate")
        temperature = check_temperature(temperature)
        settings = {"candidates": list(candidates), "temperature": temperature}
        results = self._cached_map(
            "score",
            prompts,
            settings,
            None,
            prompts_per_batch=self.batch_size,
            compute=lambda batch_prompts, ids, stops: self._score_batch(ids, list(candidates), temperature),
            decode=lambda value: value["logprobs"],
        )
        return GridScore(list(candidates), np.array(results, dtype=np.float64).reshape(len(prompts), len(candidates)))

    # ------------------------------------------------------------------ batching and caching
    def _cached_map(
        self, kind, prompts, settings, seed, prompts_per_batch, compute, decode, cancelled=None, token_ids=None
    ):
        # Token-id prompts are cached under their tokens: tokens that decode to a text need not be
        # that text's tokenisation.
        names = prompts if token_ids is None else [f"token ids {ids}" for ids in token_ids]
        keys = [
            self.cache.key(kind, name, settings, seed, device=self.device) if self.cache is not None else None
            for name in names
        ]
        values: list = [self.cache.get(kind, k) if self.cache is not None else None for k in keys]
        todo = [i for i, value in enumerate(values) if value is None]
        if todo:
            if token_ids is None:
                token_ids = self.tokenizer([prompts[i] for i in todo], add_special_tokens=False)["input_ids"]
            else:
                token_ids = [token_ids[i] for i in todo]
            ids_of = dict(zip(todo, token_ids))
            if any(not ids for ids in token_ids):
                raise ValueError("an empty prompt cannot be decoded")
            self._prepare_prefix([ids_of[i] for i in todo])
            # Group by length so that a batch carries little padding.
            order = sorted(todo, key=lambda i: len(ids_of[i]))
            bar = tqdm(total=len(order), desc=kind, disable=not self.progress, leave=False)
            for start in range(0, len(order), prompts_per_batch):
                batch = order[start : start + prompts_per_batch]
                stops = [cancelled[i] for i in batch] if cancelled is not None else None
                computed = compute([prompts[i] for i in batch], [ids_of[i] for i in batch], stops)
                for i, value in zip(batch, computed):
                    values[i] = value
                finished = [i for i in batch if "cancelled" not in values[i].get("finish_reasons", ())]
                if self.cache is not None and finished:  # per batch: an interrupted run loses at most one batch
                    self.cache.put_many(kind, {keys[i]: values[i] for i in finished})
                bar.update(len(batch))
            bar.close()
        return [decode(value) for value in values]

    # ------------------------------------------------------------------ prefill
    @torch.inference_mode()
    def _prepare_prefix(self, token_ids: list[list[int]]) -> None:
        """Find the token prefix all prompts share and prefill it once (kept for later calls)."""
        if not self.share_prefix or len(token_ids) < 2:
            return
        shared = _common_prefix(token_ids)
        shared = shared[: min(len(ids) for ids in token_ids) - 1]  # every prompt keeps >= 1 own token
        if len(shared) < MIN_SHARED_PREFIX:
            return
        if self._prefix is not None and self._prefix[0] == tuple(shared):
            return
        positions = torch.arange(len(shared), device=self.device)[None]
        segment = Segment("shared", positions, torch.ones_like(positions, dtype=torch.bool))
        ids = torch.tensor([shared], device=self.device)
        Pass([segment], ("set", segment), positions, prefill=True).run(
            self.model, input_ids=ids, position_ids=positions, logits_to_keep=1
        )
        self._prefix = (tuple(shared), segment)

    @torch.inference_mode()
    def _prefill(self, token_ids: list[list[int]]) -> PromptBatch:
        batch = len(token_ids)
        prefix_len, segments = 0, []
        if self._prefix is not None:
            prefix = self._prefix[0]
            if all(len(ids) > len(prefix) and tuple(ids[: len(prefix)]) == prefix for ids in token_ids):
                prefix_len, segments = len(prefix), [self._prefix[1]]
        suffixes = [ids[prefix_len:] for ids in token_ids]
        width = max(len(s) for s in suffixes)
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        valid = torch.zeros((batch, width), dtype=torch.bool)
        for row, suffix in enumerate(suffixes):
            input_ids[row, width - len(suffix) :] = torch.tensor(suffix)
            valid[row, width - len(suffix) :] = True
        positions = prefix_len + (valid.long().cumsum(-1) - 1).clamp(min=0)
        input_ids, valid, positions = (t.to(self.device) for t in (input_ids, valid, positions))
        prompt = Segment("prompt", positions, valid)
        out = Pass(segments + [prompt], ("set", prompt), positions, prefill=True).run(
            self.model, input_ids=input_ids, position_ids=positions, logits_to_keep=1
        )
        return PromptBatch(segments + [prompt], positions[:, -1] + 1, out.logits[:, -1, :].float())

    # ------------------------------------------------------------------ sampling
    @torch.inference_mode()
    def _sample_batch(self, prompts, token_ids, n, config, rows_per_chunk, cancelled=None) -> list[dict]:
        prefilled = self._prefill(token_ids)
        # Chunks of one prompt's samples, each with its own seeded generator, so that a prompt's
        # samples do not depend on which other prompts share its batch.
        chunks = [
            (p, start, min(rows_per_chunk, n - start))
            for p in range(len(prompts))
            for start in range(0, n, rows_per_chunk)
        ]
        results = [_empty_result() for _ in prompts]
        group: list[tuple[int, int, int]] = []
        for chunk in chunks + [None]:
            if chunk is not None and sum(c[2] for c in group) + chunk[2] <= self.max_rows:
                group.append(chunk)
                continue
            if group:
                self._decode_group(prefilled, prompts, group, config, results, cancelled)
            group = [chunk] if chunk is not None else []
        return results

    def _decode_group(self, prefilled: PromptBatch, prompts, group, config: SamplingConfig, results, cancelled=None):
        """Decode the rows of ``group`` together; the rows of a prompt whose ``cancelled[p]()`` turns True stop.

        Rows that have generated the same tokens so far share one tree node and one forward pass
        (their next-token distribution depends only on the tokens so far, so this is exact). Once
        the tree no longer halves the work, every row continues on its own (see
        :mod:`workbench.inference.frontier`).
        """
        row_prompt = [p for p, _, count in group for _ in range(count)]
        row_chunk = torch.tensor([c for c, (_, _, count) in enumerate(group) for _ in range(count)])
        generators = [_generator(config.seed, prompts[p], start, self.device) for p, start, _ in group]
        group_prompts = sorted(set(row_prompt))
        frontier: TreeFrontier | RowFrontier = TreeFrontier(self.model, prefilled.select(group_prompts))
        rows, steps = len(row_prompt), config.max_new_tokens
        row_node = torch.tensor([group_prompts.index(p) for p in row_prompt])  # active row -> frontier node
        active = torch.arange(rows)  # the group rows still decoding
        tokens_of = torch.zeros((rows, steps), dtype=torch.long)
        logprobs_of = torch.zeros((rows, steps), dtype=torch.float32)
        length_of = torch.zeros(rows, dtype=torch.long)
        reason_of = ["length"] * rows
        eos = torch.tensor(sorted(self.eos_ids))
        for step in range(steps):
            logits = frontier.logits
            tokens = self._pick(logits, row_node, config, generators, row_chunk[active]).cpu()
            node = row_node.to(logits.device)
            model_logprobs = logits[node, tokens.to(logits.device)] - torch.logsumexp(logits, dim=-1)[node]
            tokens_of[active, step] = tokens
            logprobs_of[active, step] = model_logprobs.cpu()
            length_of[active] = step + 1
            ended = torch.isin(tokens, eos)
            for row in active[ended].tolist():
                reason_of[row] = "eos"
            end_on_stop(self.tokenizer, config.stop, tokens_of, active, ended, step, reason_of)
            if cancelled is not None:  # asked once per prompt and step; its rows leave with the others that ended
                gone = {p for p in {row_prompt[row] for row in active.tolist()} if cancelled[p]()}
                if gone:
                    stopped = torch.tensor([row_prompt[row] in gone for row in active.tolist()])
                    for row in active[stopped & ~ended].tolist():
                        reason_of[row] = "cancelled"
                    ended |= stopped
            if ended.all() or step == steps - 1:
                break
            keep = (~ended).nonzero()[:, 0]
            active, parents, tokens = active[keep], row_node[keep], tokens[keep]
            if isinstance(frontier, TreeFrontier):
                # New nodes: unique (parent node, token) pairs among the rows that go on.
                unique_pairs, inverse = torch.unique(torch.stack([parents, tokens], dim=1), dim=0, return_inverse=True)
                if 2 * len(unique_pairs) <= len(active):  # the tree still (at least) halves the work
                    frontier.extend(unique_pairs[:, 0], unique_pairs[:, 1])
                    row_node = inverse
                    continue
                frontier = frontier.to_rows(parents)
                frontier.extend(torch.arange(len(active)), tokens)
            else:
                frontier.extend(keep, tokens)
            row_node = torch.arange(len(active))
        for row, p in enumerate(row_prompt):
            ids = tokens_of[row, : length_of[row]].tolist()
            text, reason = finish_text(self.tokenizer, self.eos_ids, ids, reason_of[row], config.stop)
            result = results[p]
            result["texts"].append(text)
            result["token_ids"].append(ids)
            result["token_logprobs"].append(logprobs_of[row, : length_of[row]].tolist())
            result["finish_reasons"].append(reason)

    def _pick(self, node_logits, row_node, config: SamplingConfig, generators, row_chunk) -> torch.Tensor:
        """One next token per active row; rows draw from their node's distribution.

        Inverse-CDF sampling: one uniform number per row, looked up in its node's cumulative
        distribution (much cheaper than ``torch.multinomial`` over the vocabulary for every row).
        """
        row_node = row_node.to(node_logits.device)
        if config.temperature == 0:
            return node_logits.argmax(dim=-1)[row_node]
        node_probs = torch.softmax(filter_logits(node_logits, config.temperature, config.top_k, config.top_p), dim=-1)
        cumulative = node_probs.cumsum(dim=-1)
        picked = torch.empty(len(row_node), dtype=torch.long, device=node_logits.device)
        for chunk in row_chunk.unique().tolist():
            rows = (row_chunk == chunk).nonzero()[:, 0].to(node_logits.device)
            row_cdf = cumulative[row_node[rows]]
            uniform = torch.rand((len(rows), 1), generator=generators[chunk], device=node_logits.device)
            # right=True: the first token whose CDF exceeds u; filtered tokens (zero mass) never win.
            found = torch.searchsorted(row_cdf, uniform * row_cdf[:, -1:], right=True)[:, 0]
            picked[rows] = found.clamp(max=node_logits.shape[-1] - 1)
        return picked

    # ------------------------------------------------------------------ scoring
    @torch.inference_mode()
    def _score_batch(self, token_ids, candidates, temperature) -> list[dict]:
        """Score all candidates of a batch of prompts in ONE forward pass over a token tree (with ``grid_scorer``
        instead where there is one, at temperature 1, when the answers tokenise alike after every prompt)."""
        if self.grid_scorer is not None and temperature == 1.0:
            answers = [
                [answer_tokens(self.tokenizer, ids, c) + [self.end_of_turn] for c in candidates] for ids in token_ids
            ]
            if all(a == answers[0] for a in answers):
                return [{"logprobs": row} for row in self.grid_scorer(token_ids, answers[0]).tolist()]
        return [{"logprobs": row} for row in self._grid_logprobs(self._answer_tree(token_ids, candidates), temperature)]

    @torch.inference_mode()
    def _answer_tree(self, token_ids, candidates) -> AnswerTree:
        """Prefill a batch of prompts and push each one's answer trie through the model in one pass.

        The candidates of a prompt form a trie ("3.2" and "3.4" share "3", "."). Each trie node is
        one token appended after the prompt and sees the prompt and its own ancestors only, so the
        prompt's keys are read in place, never copied per candidate.
        """
        prefilled = self._prefill(token_ids)
        batch = len(token_ids)
        tries = [
            AnswerTrie([answer_tokens(self.tokenizer, ids, c) + [self.end_of_turn] for c in candidates])
            for ids in token_ids
        ]
        width = max(1, max(len(trie.nodes) - 1 for trie in tries))  # the root is the prompt's last token
        input_ids = torch.zeros((batch, width), dtype=torch.long)
        positions = torch.zeros((batch, width), dtype=torch.long)
        filled = torch.zeros((batch, width), dtype=torch.bool)
        sees = torch.zeros((batch, width, width), dtype=torch.bool)
        next_position = prefilled.next_position.cpu()
        for row, trie in enumerate(tries):
            for (prefix, node), path in zip(list(trie.nodes.items())[1:], trie.node_paths()):
                input_ids[row, node - 1] = prefix[-1]
                positions[row, node - 1] = next_position[row] + len(prefix) - 1
                filled[row, node - 1] = True
                sees[row, node - 1, [n - 1 for n in path]] = True  # its ancestors and itself
        input_ids, positions, filled, sees = (t.to(self.device) for t in (input_ids, positions, filled, sees))
        tree = Segment("prompt", positions, filled)
        segments = prefilled.segments + [tree]
        out = Pass(segments, ("append", tree), positions, visible={len(segments) - 1: sees}).run(
            self.model, input_ids=input_ids, position_ids=positions
        )
        return AnswerTree(prefilled, tries, tree, out.logits)

    def _grid_logprobs(self, tree: AnswerTree, temperature: float) -> list[list[float]]:
        """(B, K) log-probability of each candidate as a complete answer, under softmax(logits / temperature)."""
        batch, count = len(tree.tries), len(tree.tries[0].paths)
        node_logprobs = tempered_log_softmax(tree.node_logits, temperature)
        first = tempered_log_softmax(tree.prompts.last_logits, temperature)
        # Gather every (prompt, node, next token) term, then add them up per (prompt, candidate).
        rows, nodes, tokens, owners = [], [], [], []
        for row, trie in enumerate(tree.tries):
            for k, answer in enumerate(trie.paths):
                for length in range(1, len(answer)):
                    rows.append(row)
                    nodes.append(trie.nodes[answer[:length]] - 1)
                    tokens.append(answer[length])
                    owners.append(row * count + k)
        totals = first.gather(1, torch.tensor([[a[0] for a in t.paths] for t in tree.tries], device=self.device))
        terms = node_logprobs[torch.tensor(rows), torch.tensor(nodes), torch.tensor(tokens)].double()
        totals = totals.double().flatten().index_add(0, torch.tensor(owners, device=self.device), terms)
        return totals.view(batch, count).cpu().tolist()

    # ------------------------------------------------------------------ grid sampling
    def sample_grid(
        self, prompts: list[str], n: int, candidates: list[str], config: SamplingConfig | None = None
    ) -> GridSamples:
        """``n`` samples per prompt and the exact grid distribution, from one tree pass per prompt.

        Only the samples that land off the grid are decoded, conditioned on leaving it: see
        :mod:`workbench.inference.grid_sampler` (which settings it covers, and the fallback to
        :meth:`sample` for the others).

        Args:
            prompts: B formatted prompts.
            n: samples per prompt.
            candidates: the K grid answers.
            config: decoding settings; the returned score is at ``config.temperature``, unfiltered,
                as :meth:`score` gives it.

        Returns:
            :class:`~workbench.inference.grid_sampler.GridSamples`: B :class:`SampleSet` and the
            (B, K) :class:`GridScore`.
        """
        return sample_grid(self, prompts, n, candidates, config or SamplingConfig(), SAMPLER_VERSION)


def answer_tokens(tokenizer, prompt_ids: list[int], answer: str) -> list[int]:
    """Tokens of ``answer`` as they follow the prompt (tokenised in context where that splits cleanly)."""
    prompt_text = tokenizer.decode(prompt_ids)
    joint = tokenizer(prompt_text + answer, add_special_tokens=False)["input_ids"]
    if joint[: len(prompt_ids)] == prompt_ids and len(joint) > len(prompt_ids):
        return joint[len(prompt_ids) :]
    return tokenizer(answer, add_special_tokens=False)["input_ids"]


def _eos_ids(lm: LoadedModel) -> set[int]:
    ids = {lm.tokenizer.eos_token_id}
    configured = getattr(lm.model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, (list, tuple)) else [configured])
    return {i for i in ids if i is not None}


def _common_prefix(sequences: list[list[int]]) -> list[int]:
    first = sequences[0]
    length = len(first)
    for ids in sequences[1:]:
        length = min(length, len(ids))
        mismatch = next((i for i in range(length) if ids[i] != first[i]), length)
        length = mismatch
    return first[:length]


def _generator(seed: int, prompt: str, chunk_start: int, device: torch.device) -> torch.Generator:
    digest = hashlib.sha256(f"{seed}\0{chunk_start}\0{prompt}".encode()).digest()
    generator = torch.Generator(device=device)
    generator.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return generator


def _empty_result() -> dict:
    return {"texts": [], "token_ids": [], "token_logprobs": [], "finish_reasons": []}
