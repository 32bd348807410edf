"""``LlamaCppEngine``: the :class:`~workbench.inference.protocol.Engine` protocol on llama.cpp
(``pip install -e .[llama]``), the runtime a CPU user picks for a GGUF model such as the embedded
SmolLM2 Q4_1 file.

It drives llama.cpp's low-level API (llama-cpp-python's ``llama_cpp`` bindings) directly:

* ``sample``: each prompt is decoded once into one sequence of the KV cache and shared with its
  other N - 1 sequences by ``llama_memory_seq_cp``; then every step decodes one batch holding the
  next token of every running sequence (of several prompts when ``max_sequences`` allows).
  Tokens are drawn from the logits exactly as :class:`~workbench.inference.engine.HFEngine`
  draws them: the same temperature / top-k / top-p filter
  (:func:`~workbench.inference.logits.filter_logits`), inverse-CDF lookup with one seeded
  generator per (seed, prompt, chunk of samples), so seeded samples repeat, and differ from the
  HF engine's only where the quantised logits move a draw across a token boundary.
* ``greedy``: one temperature-0 sample per prompt.
* ``score``: exact, like the HF engine: log P(candidate tokens, then the end-of-turn token |
  prompt), the prompt decoded once and copied to one sequence per candidate, all candidates'
  tokens in one batch.
* Prompts and answers are tokenised and detokenised with the model's Hugging Face tokenizer
  (``tokenizer``), as the HF engine does, so both see the same tokens.
* The fingerprint names the backend, the GGUF file's SHA-256 and the llama-cpp-python version;
  results go through the generation cache like every other engine's.

A sequence's logits depend on how many tokens share its batch: llama.cpp multiplies small batches
with 8-bit-quantised activations and large ones otherwise (a prompt scored alone moved by up to
0.2 nats against the same prompt among 19 others on the embedded model). Results repeat for the
same call; seeded samples repeat for the same prompts and ``n``.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

from workbench.inference.cachemap import cached_map, sampling_key
from workbench.inference.end_of_turn import end_of_turn
from workbench.inference.engine import answer_tokens
from workbench.inference.gencache import GenerationCache
from workbench.inference.logits import check_temperature, filter_logits, tempered_log_softmax
from workbench.inference.models import DEFAULT_MODEL, embedded_gguf, embedded_model_folder
from workbench.inference.protocol import greedy_by_sampling, sampling_seed
from workbench.inference.stops import end_on_stop, finish_text
from workbench.inference.types import GridScore, SampleSet, SamplingConfig
from workbench.paths import cache_dir

DEVICE = "cpu"  # the cache key's device: llama.cpp runs here on the CPU
SAMPLER_VERSION = 1  # bump when the sampling procedure changes, so that cached samples are not reused


def _llama_cpp():
    try:
        import llama_cpp
    except ImportError as missing:
        raise ImportError("the llama.cpp backend needs llama-cpp-python: pip install -e .[llama]") from missing
    return llama_cpp


class LlamaCppEngine:
    """Decoding with llama.cpp, prompts decoded once and shared by their samples.

    Args:
        model_path: a GGUF file; default: the embedded model's Q4_1 file.
        tokenizer: the model's Hugging Face tokenizer; default: the embedded model's, or for
            another file, the tokenizer transformers reads from the GGUF file.
        n_threads: CPU threads for llama.cpp; default: torch's thread count.
        max_sequences: most sequences decoded together (prompts x samples, or candidates); at
            most 64, llama.cpp's limit in older versions.
        context_per_sequence: most KV-cache cells per sequence (a prompt's tokens plus its answer's);
            each call's context is sized to what it needs, up to this.
        disk_cache: cache generations under the user cache folder.
    """

    def __init__(
        self,
        model_path: str | os.PathLike | None = None,
        tokenizer=None,
        n_threads: int | None = None,
        max_sequences: int = 64,
        context_per_sequence: int = 2048,
        disk_cache: bool = False,
    ):
        llama_cpp = _llama_cpp()
        # llama.cpp logs every context and KV copy to stderr through this logger; errors only.
        logging.getLogger("llama-cpp-python").setLevel(logging.ERROR)
        if not 1 <= max_sequences <= 64:
            raise ValueError(f"max_sequences must be between 1 and 64, got {max_sequences}")
        self.model_path = Path(model_path) if model_path is not None else embedded_gguf()
        if not self.model_path.is_file():
            raise FileNotFoundError(f"no GGUF file at {self.model_path}")
        if tokenizer is None:
            from transformers import AutoTokenizer

            embedded = model_path is None
            source = embedded_model_folder() if embedded else self.model_path.parent
            tokenizer = AutoTokenizer.from_pretrained(
                source, **({} if embedded else {"gguf_file": self.model_path.name})
            )
        self.tokenizer = tokenizer
        self.n_threads = n_threads or torch.get_num_threads()
        self.max_sequences, self.context_per_sequence = max_sequences, context_per_sequence
        self._lib = llama_cpp
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        self._model = llama_cpp.llama_model_load_from_file(str(self.model_path).encode(), params)
        if not self._model:
            raise ValueError(f"llama.cpp could not load {self.model_path}")
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        self._context, self._context_shape = None, (0, 0)
        self.end_of_turn = end_of_turn(tokenizer).token_id
        native_ends = {llama_cpp.llama_vocab_eos(self._vocab), llama_cpp.llama_vocab_eot(self._vocab)}
        self.eos_ids = {i for i in native_ends | {tokenizer.eos_token_id, self.end_of_turn} if i is not None and i >= 0}
        name = DEFAULT_MODEL if model_path is None else self.model_path.name
        self._fingerprint = {
            "name": name,
            "backend": "llama.cpp",
            "gguf_sha256": _sha256(self.model_path),
            "llama_cpp_python": llama_cpp.__version__,
        }
        self.cache = GenerationCache(cache_dir() / "generations", self._fingerprint) if disk_cache else None

    @property
    def fingerprint(self) -> dict:
        """Backend, GGUF file hash and llama-cpp-python version."""
        return self._fingerprint

    # ------------------------------------------------------------------ Engine interface
    def sample(self, prompts: list[str], n: int, config: SamplingConfig | None = None) -> list[SampleSet]:
        """``n`` samples per prompt (see :meth:`workbench.inference.engine.HFEngine.sample`)."""
        config = config or SamplingConfig()
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        rows_per_chunk = min(n, self.max_sequences)
        settings = {**sampling_key(n, config), "rows_per_chunk": rows_per_chunk, "sampler": SAMPLER_VERSION}
        per_call = max(1, self.max_sequences // n)
        values = cached_map(
            self.cache,
            "sample",
            list(prompts),
            settings,
            config.seed,
            lambda batch: self._sample_batch(batch, n, config, rows_per_chunk),
            DEVICE,
            per_call,
        )
        return [SampleSet(**value) for value in values]

    def greedy(self, prompts: list[str], max_new_tokens: int = 32, stop: tuple[str, ...] = ()) -> list[str]:
        """The greedy answer for each prompt."""
        return greedy_by_sampling(self, prompts, max_new_tokens, stop)

    def score(self, prompts: list[str], candidates: list[str], temperature: float = 1.0) -> GridScore:
        """Exact probability of each candidate as a complete answer (candidate, then end of turn)."""
        if not candidates:
            raise ValueError("score needs at least one candidate")
        if len(candidates) > self.max_sequences:
            raise ValueError(f"{len(candidates)} candidates exceed max_sequences={self.max_sequences}")
        temperature = check_temperature(temperature)
        settings = {"candidates": list(candidates), "temperature": temperature}
        per_call = max(1, self.max_sequences // len(candidates))
        values = cached_map(
            self.cache,
            "score",
            list(prompts),
            settings,
            None,
            lambda batch: self._score_batch(batch, list(candidates), temperature),
            DEVICE,
            per_call,
        )
        logprobs = np.array([value["logprobs"] for value in values], dtype=np.float64)
        return GridScore(list(candidates), logprobs.reshape(len(prompts), len(candidates)))

    def close(self) -> None:
        """Free the llama.cpp context and model."""
        if self._context is not None:
            self._lib.llama_free(self._context)
            self._context = None
        if self._model is not None:
            self._lib.llama_model_free(self._model)
            self._model = None

    def __enter__(self) -> LlamaCppEngine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ llama.cpp context
    def _fresh_context(self, sequences: int, tokens_per_sequence: int):
        """A context with room for ``sequences`` sequences of ``tokens_per_sequence`` tokens, its cache empty."""
        if tokens_per_sequence > self.context_per_sequence:
            raise ValueError(
                f"a sequence of {tokens_per_sequence} tokens exceeds context_per_sequence={self.context_per_sequence}"
            )
        # Sized to the call (KV cells are allocated up front: 64 sequences of 2048 cells would take
        # 3 GB on the embedded model), grown when a later call needs more.
        cells = -(-tokens_per_sequence // 256) * 256
        if self._context is None or sequences > self._context_shape[0] or cells > self._context_shape[1]:
            if self._context is not None:
                self._lib.llama_free(self._context)
            params = self._lib.llama_context_default_params()
            sequences, cells = max(sequences, self._context_shape[0]), max(cells, self._context_shape[1])
            params.n_seq_max = sequences
            params.n_ctx = sequences * cells
            params.n_batch = params.n_ubatch = 512
            params.n_threads = params.n_threads_batch = self.n_threads
            # One cache stream per sequence: a sample attends to its own prompt copy and tokens
            # only, not to the (masked) cells of every other sample.
            params.kv_unified = False
            params.no_perf = True
            self._context = self._lib.llama_init_from_model(self._model, params)
            if not self._context:
                raise RuntimeError(f"llama.cpp could not create a context for {sequences} sequences")
            self._context_shape = (sequences, cells)
        self._lib.llama_memory_clear(self._lib.llama_get_memory(self._context), True)
        return self._context

    def _decode(self, context, entries: list[tuple[int, int, int, bool]]) -> np.ndarray:
        """Decode (token, position, sequence, wants logits) entries; returns (outputs, vocab) logits.

        Entries are sent in batches of at most ``n_batch`` tokens; the logits come back in entry order.
        """
        lib, size = self._lib, 512
        outputs = []
        for start in range(0, len(entries), size):
            chunk = entries[start : start + size]
            batch = lib.llama_batch_init(len(chunk), 0, 1)
            try:
                batch.n_tokens = len(chunk)
                for i, (token, position, sequence, wants) in enumerate(chunk):
                    batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, position, 1
                    batch.seq_id[i][0], batch.logits[i] = sequence, wants
                status = lib.llama_decode(context, batch)
                if status != 0:
                    raise RuntimeError(f"llama_decode returned {status} (is the KV cache too small?)")
                count = sum(1 for entry in chunk if entry[3])
                if count:
                    pointer = lib.llama_get_logits(context)
                    outputs.append(np.ctypeslib.as_array(pointer, shape=(count, self.n_vocab)).copy())
            finally:
                lib.llama_batch_free(batch)
        return np.concatenate(outputs) if outputs else np.zeros((0, self.n_vocab), dtype=np.float32)

    def _prefill(self, context, token_ids: list[list[int]], first_sequences: list[int]) -> torch.Tensor:
        """Decode each prompt into its first sequence; (prompts, vocab) logits of its next token."""
        entries = []
        for ids, sequence in zip(token_ids, first_sequences):
            entries += [(token, position, sequence, position == len(ids) - 1) for position, token in enumerate(ids)]
        return torch.from_numpy(self._decode(context, entries))

    def _share(self, context, source: int, targets: range) -> None:
        memory = self._lib.llama_get_memory(context)
        for target in targets:
            self._lib.llama_memory_seq_cp(memory, source, target, -1, -1)

    def _tokenize(self, prompts: list[str]) -> list[list[int]]:
        token_ids = self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
        if any(not ids for ids in token_ids):
            raise ValueError("an empty prompt cannot be decoded")
        return token_ids

    # ------------------------------------------------------------------ sampling
    def _sample_batch(self, prompts: list[str], n: int, config: SamplingConfig, rows_per_chunk: int) -> list[dict]:
        token_ids = self._tokenize(prompts)
        context = self._fresh_context(len(prompts) * n, max(len(ids) for ids in token_ids) + config.max_new_tokens)
        first = [p * n for p in range(len(prompts))]
        prompt_logits = self._prefill(context, token_ids, first)
        for p in range(len(prompts)):
            self._share(context, first[p], range(first[p] + 1, first[p] + n))
        # Row r is sample r % n of prompt r // n, in sequence r; chunks of rows share a generator.
        rows = len(prompts) * n
        row_prompt = torch.arange(rows) // n
        row_chunk = torch.tensor([(r // n) * n + (r % n) // rows_per_chunk * rows_per_chunk for r in range(rows)])
        generators = {
            int(c): torch.Generator().manual_seed(sampling_seed(config.seed, f"{int(c) % n}\0{prompts[int(c) // n]}"))
            for c in row_chunk.unique()
        }
        position = torch.tensor([len(token_ids[p]) for p in row_prompt.tolist()])
        tokens_of = torch.zeros((rows, config.max_new_tokens), dtype=torch.long)
        logprobs_of = torch.zeros((rows, config.max_new_tokens), dtype=torch.float32)
        length_of = torch.zeros(rows, dtype=torch.long)
        reason_of = ["length"] * rows
        eos = torch.tensor(sorted(self.eos_ids))
        active, logits = torch.arange(rows), prompt_logits[row_prompt]
        for step in range(config.max_new_tokens):
            tokens = self._pick(logits, config, generators, row_chunk[active])
            tokens_of[active, step] = tokens
            logprobs_of[active, step] = logits.gather(1, tokens[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)
            length_of[active] = step + 1
            ended = torch.isin(tokens, eos)
            for row in active[ended].tolist():
                reason_of[row] = "eos"
            end_on_stop(self.tokenizer, config.stop, tokens_of, active, ended, step, reason_of)
            if ended.all() or step == config.max_new_tokens - 1:
                break
            active, tokens = active[~ended], tokens[~ended]
            entries = [
                (int(t), int(position[r]) + step, int(r), True) for r, t in zip(active.tolist(), tokens.tolist())
            ]
            logits = torch.from_numpy(self._decode(context, entries))
        results = [{"texts": [], "token_ids": [], "token_logprobs": [], "finish_reasons": []} for _ in prompts]
        for row in range(rows):
            ids = tokens_of[row, : length_of[row]].tolist()
            text, reason = finish_text(self.tokenizer, self.eos_ids, ids, reason_of[row], config.stop)
            result = results[row // n]
            result["texts"].append(text)
            result["token_ids"].append(ids)
            result["token_logprobs"].append(logprobs_of[row, : length_of[row]].tolist())
            result["finish_reasons"].append(reason)
        return results

    @staticmethod
    def _pick(logits: torch.Tensor, config: SamplingConfig, generators: dict, row_chunk: torch.Tensor) -> torch.Tensor:
        """One token per row: argmax at temperature 0, else inverse-CDF draws as the HF engine makes them."""
        if config.temperature == 0:
            return logits.argmax(dim=-1)
        cumulative = torch.softmax(
            filter_logits(logits, config.temperature, config.top_k, config.top_p), dim=-1
        ).cumsum(dim=-1)
        picked = torch.empty(len(logits), dtype=torch.long)
        for chunk in row_chunk.unique().tolist():
            rows = (row_chunk == chunk).nonzero()[:, 0]
            uniform = torch.rand((len(rows), 1), generator=generators[chunk])
            found = torch.searchsorted(cumulative[rows], uniform * cumulative[rows, -1:], right=True)[:, 0]
            picked[rows] = found.clamp(max=logits.shape[-1] - 1)
        return picked

    # ------------------------------------------------------------------ scoring
    def _score_batch(self, prompts: list[str], candidates: list[str], temperature: float) -> list[dict]:
        """Each prompt decoded once, copied to one sequence per candidate, all candidates in one batch."""
        token_ids = self._tokenize(prompts)
        k = len(candidates)
        answers = [
            [answer_tokens(self.tokenizer, ids, c) + [self.end_of_turn] for c in candidates] for ids in token_ids
        ]
        longest = max(len(ids) + len(a) for ids, per_prompt in zip(token_ids, answers) for a in per_prompt)
        context = self._fresh_context(len(prompts) * k, longest)
        first = [p * k for p in range(len(prompts))]
        first_logprobs = tempered_log_softmax(self._prefill(context, token_ids, first), temperature)
        entries, reads = [], []  # reads: (prompt, candidate, token whose probability the output gives)
        for p, (ids, per_prompt) in enumerate(zip(token_ids, answers)):
            self._share(context, first[p], range(first[p] + 1, first[p] + k))
            for c, answer in enumerate(per_prompt):
                for j, token in enumerate(answer[:-1]):  # the last token predicts nothing
                    entries.append((token, len(ids) + j, first[p] + c, True))
                    reads.append((p, c, answer[j + 1]))
        totals = np.array(
            [[float(first_logprobs[p, a[0]]) for a in per_prompt] for p, per_prompt in enumerate(answers)]
        )
        if entries:
            logprobs = tempered_log_softmax(torch.from_numpy(self._decode(context, entries)), temperature)
            for (p, c, token), row in zip(reads, logprobs):
                totals[p, c] += float(row[token])
        return [{"logprobs": row.tolist()} for row in totals]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
