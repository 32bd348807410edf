"""Batched, device-agnostic decoding: ``sample``, ``greedy`` and exact grid ``score``.

Why not ``model.generate(num_return_sequences=N)``? It copies each prompt N times *before* the
prefill, so the prompt (often hundreds of few-shot tokens) is pushed through the network N times.
Here every prompt is prefilled once; its KV cache is then copied N times (a memory copy, no
compute) and the N samples decode together. On top of that, a token prefix that all prompts of a
call share (system prompt, few-shot examples) is prefilled once per call and reused by every batch.

Layout of one prefilled batch, left-padded so that every row's next token sits in the last column::

    [ shared prefix (P) ][ pad ... ][ prompt suffix ]  -> KV cache, attention mask, positions

Positions are counted over real tokens only, so padding never shifts the rotary embedding.

``score`` gives the exact probability of each candidate answer *as a complete answer*: the
candidate's tokens followed by the end-of-turn token. Summed over all possible answers these
probabilities are 1, so the mass the grid misses is reported as ``outside_mass``.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import DynamicCache

from workbench.inference.frontier import RowFrontier, TreeFrontier
from workbench.inference.gencache import GenerationCache
from workbench.inference.logits import filter_logits
from workbench.inference.models import LoadedModel, load_model
from workbench.paths import cache_dir

MIN_SHARED_PREFIX = 16  # below this, a separate prefix pass costs more than it saves
# Up to this many new tokens, samples decode as a tree under one prompt row (no KV copies);
# beyond it, each tree node gets its own cache row (see workbench.inference.frontier).
TREE_DECODING_MAX_TOKENS = 16
# Bump when the sampling procedure changes, so cached samples from the old one are not reused.
SAMPLER_VERSION = 2


@dataclass
class SamplingConfig:
    """Decoding settings. ``temperature=0`` means greedy decoding.

    Attributes:
        temperature: softmax temperature; 0 for argmax.
        top_p: nucleus mass, 1 disables.
        top_k: keep the k most likely tokens, 0 disables.
        max_new_tokens: generation budget per sample.
        stop: strings that end a sample; the returned text stops before them.
        seed: random seed; the same seed gives the same samples on the same device and dtype.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 32
    stop: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self):
        self.stop = tuple(self.stop)
        if self.temperature < 0 or not 0 < self.top_p <= 1 or self.top_k < 0 or self.max_new_tokens < 1:
            raise ValueError(f"invalid sampling settings: {self}")


@dataclass
class SampleSet:
    """The N samples drawn for one prompt.

    Attributes:
        texts: N decoded answers (special tokens removed, cut before any stop string).
        token_ids: N lists of generated token ids (the end-of-turn token included when hit).
        token_logprobs: N lists, the model's log-probability (temperature 1, unfiltered) of each
            generated token.
        finish_reasons: N of "eos", "stop" or "length".
    """

    texts: list[str]
    token_ids: list[list[int]]
    token_logprobs: list[list[float]]
    finish_reasons: list[str]


@dataclass
class GridScore:
    """Exact distribution over a grid of candidate answers, for B prompts and K candidates.

    Attributes:
        candidates: the K candidate strings.
        logprobs: (B, K) log P(candidate, then end of answer | prompt).
        probs: (B, K) the same, renormalised over the grid.
        outside_mass: (B,) probability of all answers not on the grid.
    """

    candidates: list[str]
    logprobs: np.ndarray
    probs: np.ndarray = field(init=False)
    outside_mass: np.ndarray = field(init=False)

    def __post_init__(self):
        self.logprobs = np.asarray(self.logprobs, dtype=np.float64)
        top = self.logprobs.max(axis=1, keepdims=True)
        weights = np.exp(self.logprobs - top)
        self.probs = weights / weights.sum(axis=1, keepdims=True)
        self.outside_mass = np.clip(1.0 - np.exp(self.logprobs).sum(axis=1), 0.0, 1.0)


@dataclass
class _Prefilled:
    """A batch of prompts pushed through the model once."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]  # per layer (B, heads, T, dim) keys and values
    last_logits: torch.Tensor  # (B, vocab) float32: distribution of the first new token
    attention_mask: torch.Tensor  # (B, T)
    next_position: torch.Tensor  # (B,) rotary position of the first new token

    def rows(self, index: torch.Tensor) -> tuple[DynamicCache, torch.Tensor, torch.Tensor]:
        """A fresh cache, mask and positions holding the prompt rows ``index`` (repeats allowed)."""
        cache = DynamicCache(ddp_cache_data=[(k[index], v[index]) for k, v in self.layers])
        return cache, self.attention_mask[index], self.next_position[index]


class Engine:
    """Decoding with a shared prefill, a disk cache and length-grouped batches.

    Args:
        lm: a model from :func:`workbench.inference.models.load_model`.
        cache: a :class:`GenerationCache`; None disables caching.
        batch_size: prompts prefilled together.
        max_rows: most sequences decoded together (prompts x samples); bounds memory.
        share_prefix: prefill the token prefix common to all prompts of a call only once.
        progress: show tqdm progress bars.
    """

    def __init__(
        self,
        lm: LoadedModel,
        cache: GenerationCache | None = None,
        batch_size: int = 8,
        max_rows: int = 256,
        share_prefix: bool = True,
        progress: bool = True,
    ):
        self.lm = lm
        self.model = lm.model
        self.tokenizer = lm.tokenizer
        self.device = lm.device
        self.cache = cache
        self.batch_size = batch_size
        self.max_rows = max_rows
        self.share_prefix = share_prefix
        self.progress = progress
        self.eos_ids = _eos_ids(lm)
        self.pad_id = self.tokenizer.pad_token_id
        self._prefix: tuple[tuple[int, ...], list[tuple[torch.Tensor, torch.Tensor]]] | None = None

    @classmethod
    def load(cls, name_or_path: str = "smollm2-135m-instruct", device: str = "auto", dtype: str = "fp32", quantize: str | None = None, disk_cache: bool = True, **options) -> "Engine":
        """Load a model and wrap it in an engine whose generations are cached under the user cache folder."""
        lm = load_model(name_or_path, device=device, dtype=dtype, quantize=quantize)
        cache = GenerationCache(cache_dir() / "generations", lm.fingerprint) if disk_cache else None
        return cls(lm, cache=cache, **options)

    # ------------------------------------------------------------------ public API
    def sample(self, prompts: list[str], n: int, config: SamplingConfig | None = None) -> list[SampleSet]:
        """Draw ``n`` samples for each prompt.

        Args:
            prompts: B fully formatted prompts (chat template already applied).
            n: samples per prompt.
            config: decoding settings.

        Returns:
            B :class:`SampleSet`, in the order of ``prompts``.
        """
        config = config or SamplingConfig()
        rows_per_chunk = min(n, self.max_rows)
        settings = {"n": n, "rows_per_chunk": rows_per_chunk, "sampler": SAMPLER_VERSION, **asdict(config)}
        return self._cached_map(
            "sample",
            prompts,
            settings,
            config.seed,
            prompts_per_batch=max(1, min(self.batch_size, self.max_rows // n)),
            compute=lambda batch_prompts, ids: self._sample_batch(batch_prompts, ids, n, config, rows_per_chunk),
            decode=lambda value: SampleSet(**value),
        )

    def greedy(self, prompts: list[str], max_new_tokens: int = 32, stop: tuple[str, ...] = ()) -> list[str]:
        """The greedy (argmax) answer for each prompt."""
        config = SamplingConfig(temperature=0.0, max_new_tokens=max_new_tokens, stop=stop)
        return [result.texts[0] for result in self.sample(prompts, 1, config)]

    def score(self, prompts: list[str], candidates: list[str], temperature: float = 1.0) -> GridScore:
        """Exact probability of each candidate answer, for every prompt.

        Args:
            prompts: B formatted prompts.
            candidates: K answer strings (for example "1".."5").
            temperature: score under softmax(logits / temperature), the distribution that
                sampling at that temperature (with no top-k/top-p) draws from.

        Returns:
            A :class:`GridScore` with (B, K) log-probabilities and the mass outside the grid.
        """
        if not candidates:
            raise ValueError("score needs at least one candidate")
        settings = {"candidates": list(candidates), "temperature": temperature}
        results = self._cached_map(
            "score",
            prompts,
            settings,
            None,
            prompts_per_batch=self.batch_size,
            compute=lambda batch_prompts, ids: self._score_batch(ids, list(candidates), temperature),
            decode=lambda value: value["logprobs"],
        )
        return GridScore(list(candidates), np.array(results, dtype=np.float64).reshape(len(prompts), len(candidates)))

    # ------------------------------------------------------------------ batching and caching
    def _cached_map(self, kind, prompts, settings, seed, prompts_per_batch, compute, decode):
        keys = [self.cache.key(kind, p, settings, seed, device=self.device) if self.cache is not None else None for p in prompts]
        values: list = [self.cache.get(kind, k) if self.cache is not None else None for k in keys]
        todo = [i for i, value in enumerate(values) if value is None]
        if todo:
            token_ids = self.tokenizer([prompts[i] for i in todo], add_special_tokens=False)["input_ids"]
            ids_of = dict(zip(todo, token_ids))
            self._prepare_prefix([ids_of[i] for i in todo])
            # Group by length so that a batch carries little padding.
            order = sorted(todo, key=lambda i: len(ids_of[i]))
            bar = tqdm(total=len(order), desc=kind, disable=not self.progress, leave=False)
            for start in range(0, len(order), prompts_per_batch):
                batch = order[start : start + prompts_per_batch]
                computed = compute([prompts[i] for i in batch], [ids_of[i] for i in batch])
                for i, value in zip(batch, computed):
                    values[i] = value
                if self.cache is not None:  # written per batch: an interrupted run loses at most one batch
                    self.cache.put_many(kind, {keys[i]: values[i] for i in batch})
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
        cache = DynamicCache()
        ids = torch.tensor([shared], device=self.device)
        self.model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        self._prefix = (tuple(shared), [(layer.keys, layer.values) for layer in cache.layers])

    @torch.inference_mode()
    def _prefill(self, token_ids: list[list[int]]) -> _Prefilled:
        batch = len(token_ids)
        prefix_len = 0
        cache = DynamicCache()
        if self._prefix is not None and all(tuple(ids[: len(self._prefix[0])]) == self._prefix[0] for ids in token_ids):
            prefix_len = len(self._prefix[0])
            if all(len(ids) > prefix_len for ids in token_ids):
                cache = DynamicCache(
                    ddp_cache_data=[(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in self._prefix[1]]
                )
            else:
                prefix_len = 0
        suffixes = [ids[prefix_len:] for ids in token_ids]
        width = max(len(s) for s in suffixes)
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        suffix_mask = torch.zeros((batch, width), dtype=torch.long)
        for row, suffix in enumerate(suffixes):
            input_ids[row, width - len(suffix) :] = torch.tensor(suffix)
            suffix_mask[row, width - len(suffix) :] = 1
        positions = prefix_len + (suffix_mask.cumsum(-1) - 1).clamp(min=0)
        mask = torch.cat([torch.ones((batch, prefix_len), dtype=torch.long), suffix_mask], dim=1)
        input_ids, mask, positions = (t.to(self.device) for t in (input_ids, mask, positions))
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return _Prefilled(
            layers=[(layer.keys, layer.values) for layer in cache.layers],
            last_logits=out.logits[:, -1, :].float(),
            attention_mask=mask,
            next_position=positions[:, -1] + 1,
        )

    # ------------------------------------------------------------------ sampling
    @torch.inference_mode()
    def _sample_batch(self, prompts, token_ids, n, config, rows_per_chunk) -> list[dict]:
        prefilled = self._prefill(token_ids)
        # Chunks of one prompt's samples, each with its own seeded generator, so that a prompt's
        # samples do not depend on which other prompts share its batch.
        chunks = [(p, start, min(rows_per_chunk, n - start)) for p in range(len(prompts)) for start in range(0, n, rows_per_chunk)]
        results = [_empty_result() for _ in prompts]
        group: list[tuple[int, int, int]] = []
        for chunk in chunks + [None]:
            if chunk is not None and sum(c[2] for c in group) + chunk[2] <= self.max_rows:
                group.append(chunk)
                continue
            if group:
                self._decode_group(prefilled, prompts, group, config, results)
            group = [chunk] if chunk is not None else []
        return results

    def _decode_group(self, prefilled: _Prefilled, prompts, group, config: SamplingConfig, results) -> None:
        """Decode the rows of ``group`` together.

        Rows that have generated the same tokens so far share one tree node and one forward pass
        (see :mod:`workbench.inference.frontier`): the next-token distribution depends only on the tokens so
        far, so this is exact, and short answers cost a handful of nodes instead of N rows.
        """
        row_prompt = [p for p, _, count in group for _ in range(count)]
        row_chunk = torch.tensor([c for c, (_, _, count) in enumerate(group) for _ in range(count)])
        generators = [_generator(config.seed, prompts[p], start, self.device) for p, start, _ in group]
        node_prompt = sorted(set(row_prompt))
        cache, mask, position = prefilled.rows(torch.tensor(node_prompt, device=self.device))
        logits = prefilled.last_logits[node_prompt]
        if config.max_new_tokens <= TREE_DECODING_MAX_TOKENS:
            frontier = TreeFrontier(self.model, cache, mask, position, logits, self._attention_bias)
        else:
            frontier = RowFrontier(self.model, cache, mask, position, logits)
        rows = len(row_prompt)
        row_node = torch.tensor([node_prompt.index(p) for p in row_prompt])  # active row -> frontier node
        active = torch.arange(rows)  # the group rows still decoding
        tokens_of: list[list[int]] = [[] for _ in range(rows)]
        logprobs_of: list[list[float]] = [[] for _ in range(rows)]
        reason_of = ["length"] * rows
        stop_tail = max((len(s) for s in config.stop), default=0) + 1
        for step in range(config.max_new_tokens):
            tokens = self._pick(frontier.logits, row_node, config, generators, row_chunk[active])
            node_logprobs = torch.log_softmax(frontier.logits, dim=-1)
            model_logprobs = node_logprobs[row_node.to(self.device), tokens].tolist()
            still = []
            for i, (row, token) in enumerate(zip(active.tolist(), tokens.tolist())):
                tokens_of[row].append(token)
                logprobs_of[row].append(model_logprobs[i])
                if token in self.eos_ids:
                    reason_of[row] = "eos"
                elif config.stop and any(s in self.tokenizer.decode(tokens_of[row][-stop_tail:]) for s in config.stop):
                    reason_of[row] = "stop"
                else:
                    still.append(i)
            if not still or step == config.max_new_tokens - 1:
                break
            # New nodes: unique (parent node, token) pairs among the rows that go on.
            keep = torch.tensor(still)
            pairs = torch.stack([row_node[keep], tokens[keep].cpu()], dim=1)
            unique_pairs, row_node = torch.unique(pairs, dim=0, return_inverse=True)
            active = active[keep]
            frontier.extend(unique_pairs[:, 0].to(self.device), unique_pairs[:, 1].to(self.device))
        row = 0
        for p, _, count in group:
            for _ in range(count):
                text, reason = self._finish_text(tokens_of[row], reason_of[row], config.stop)
                result = results[p]
                result["texts"].append(text)
                result["token_ids"].append(tokens_of[row])
                result["token_logprobs"].append(logprobs_of[row])
                result["finish_reasons"].append(reason)
                row += 1

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

    def _finish_text(self, tokens: list[int], reason: str, stop: tuple[str, ...]) -> tuple[str, str]:
        text = self.tokenizer.decode([t for t in tokens if t not in self.eos_ids], skip_special_tokens=True)
        cuts = [text.find(s) for s in stop if s in text]
        if cuts:
            return text[: min(cuts)], "stop"
        return text, reason

    # ------------------------------------------------------------------ scoring
    @torch.inference_mode()
    def _score_batch(self, token_ids, candidates, temperature) -> list[dict]:
        """Score all candidates of a batch of prompts in ONE forward pass over a token tree.

        The candidates of a prompt form a trie ("3.2" and "3.4" share "3", "."). Each trie node is
        one token appended after the prompt; a 4-D attention mask lets every node see the prompt
        and its own ancestors only. So the prompt's KV cache is used once, not copied per candidate.
        """
        prefilled = self._prefill(token_ids)
        batch = len(token_ids)
        end = self.tokenizer.eos_token_id
        answers = [[self._answer_tokens(ids, c) + [end] for c in candidates] for ids in token_ids]
        tries: list[dict[tuple[int, ...], int]] = []
        for per_prompt in answers:
            trie: dict[tuple[int, ...], int] = {}
            for answer in per_prompt:
                for length in range(1, len(answer)):  # the last token predicts nothing
                    trie.setdefault(tuple(answer[:length]), len(trie))
            tries.append(trie)
        width = max(1, max(len(trie) for trie in tries))
        input_ids = torch.full((batch, width), self.pad_id, dtype=torch.long)
        positions = torch.zeros((batch, width), dtype=torch.long)
        tree = torch.eye(width, dtype=torch.bool).repeat(batch, 1, 1)  # padding slots see only themselves
        next_position = prefilled.next_position.cpu()
        for row, trie in enumerate(tries):
            for prefix, node in trie.items():
                input_ids[row, node] = prefix[-1]
                positions[row, node] = next_position[row] + len(prefix) - 1
                for length in range(1, len(prefix)):
                    tree[row, node, trie[prefix[:length]]] = True
        prompt_mask = prefilled.attention_mask.bool()[:, None, None, :].expand(batch, 1, width, -1)
        mask = torch.cat([prompt_mask, tree[:, None].to(self.device)], dim=-1)
        cache, _, _ = prefilled.rows(torch.arange(batch, device=self.device))
        out = self.model(
            input_ids=input_ids.to(self.device),
            attention_mask=self._attention_bias(mask),
            position_ids=positions.to(self.device),
            past_key_values=cache,
            use_cache=True,
        )
        node_logprobs = torch.log_softmax(out.logits.float() / temperature, dim=-1)
        first = torch.log_softmax(prefilled.last_logits / temperature, dim=-1)
        # Gather every (prompt, node, next token) term, then add them up per (prompt, candidate).
        rows, nodes, tokens, owners = [], [], [], []
        for row, (trie, per_prompt) in enumerate(zip(tries, answers)):
            for k, answer in enumerate(per_prompt):
                for length in range(1, len(answer)):
                    rows.append(row)
                    nodes.append(trie[tuple(answer[:length])])
                    tokens.append(answer[length])
                    owners.append(row * len(candidates) + k)
        totals = first.gather(1, torch.tensor([[a[0] for a in per_prompt] for per_prompt in answers], device=self.device)).double()
        terms = node_logprobs[torch.tensor(rows), torch.tensor(nodes), torch.tensor(tokens)].double()
        totals = totals.flatten().index_add(0, torch.tensor(owners, device=self.device), terms).view(batch, len(candidates))
        return [{"logprobs": row} for row in totals.cpu().tolist()]

    def _attention_bias(self, mask: torch.Tensor) -> torch.Tensor:
        """A boolean 4-D mask for SDPA, or an additive one for eager attention."""
        implementation = getattr(self.model.config, "_attn_implementation", "sdpa")
        if implementation == "sdpa":
            return mask
        if implementation == "eager":
            dtype = next(self.model.parameters()).dtype if self.lm.quantization is None else torch.float32
            return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
        raise NotImplementedError(f"score needs a custom attention mask; {implementation!r} attention does not take one")

    def _answer_tokens(self, prompt_ids: list[int], answer: str) -> list[int]:
        """Tokens of ``answer`` as they follow the prompt (tokenised in context where that splits cleanly)."""
        prompt_text = self.tokenizer.decode(prompt_ids)
        joint = self.tokenizer(prompt_text + answer, add_special_tokens=False)["input_ids"]
        if joint[: len(prompt_ids)] == prompt_ids and len(joint) > len(prompt_ids):
            return joint[len(prompt_ids) :]
        return self.tokenizer(answer, add_special_tokens=False)["input_ids"]


def _eos_ids(lm: LoadedModel) -> set[int]:
    ids = {lm.tokenizer.eos_token_id}
    configured = getattr(lm.model.generation_config, "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
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
