"""``VLLMEngine``: the :class:`~workbench.inference.protocol.Engine` protocol on vLLM, for GPU machines.

Install with ``pip install -e .[vllm]`` on a machine with a CUDA GPU. vLLM brings continuous
batching, paged attention and *automatic prefix caching*: a few-shot prefix shared by many prompts
is computed once and its KV blocks reused, which is what the HF engine's shared prefill does by
hand.

* ``sample``: one request per prompt with ``SamplingParams(n=N, seed=...)``. The seed is derived
  from the run seed and the prompt (:func:`workbench.inference.protocol.sampling_seed`), so a
  prompt's samples do not depend on the batch it runs in or on the worker (for :mod:`ray_engine`).
  Each generated token's log-probability is vLLM's raw one (temperature 1, unfiltered), as in the
  HF engine. Prompts are tokenised as the HF engine does (no special tokens added) and passed as
  token ids.
* ``score``: exact grid scoring from ``prompt_logprobs``: each candidate is laid out as prompt +
  candidate + end-of-turn token (the candidate tokenised in context exactly as
  :meth:`workbench.inference.engine.HFEngine.score` does) and its log-probability is the sum of the
  prompt log-probabilities of the tokens after the prompt. vLLM reports them at temperature 1, so
  other temperatures are refused. (vLLM skips its prefix cache for requests with prompt
  log-probabilities, so scoring recomputes each prompt: correct, if not as fast as sampling.)
* The end of turn comes from the chat template and generation config
  (:func:`workbench.inference.end_of_turn.end_of_turn`).
* Results go through the same generation cache as the HF engine, keyed by a fingerprint that
  names the backend (vLLM's kernels give other numerics than the HF engine's, so the two do not
  share entries) and the SHA-256 of the weight files.

The samples differ from the HF engine's for the same seed (other random streams); their
distribution is the same, which ``tests/test_vllm.py`` checks on a GPU.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from workbench.inference.cachemap import cached_map, sampling_key
from workbench.inference.end_of_turn import end_of_turn
from workbench.inference.gencache import GenerationCache
from workbench.inference.protocol import greedy_by_sampling, sampling_seed
from workbench.inference.types import GridScore, SampleSet, SamplingConfig
from workbench.paths import cache_dir

VLLM_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "auto": "auto"}


class VLLMEngine:
    """Decoding on vLLM with the ``Engine`` interface.

    Args:
        model: "smollm2-135m-instruct" (the embedded model's converted folder), a local folder or a hub id.
        dtype: "bf16", "fp16", "fp32" or "auto".
        disk_cache: cache generations under the user cache folder.
        batch_size: prompts handed to vLLM per call (and per cache write); vLLM schedules within.
        progress: show vLLM's progress bar.
        **llm_options: more ``vllm.LLM`` arguments (``gpu_memory_utilization``, ``max_model_len``,
            ``tensor_parallel_size``...). ``enable_prefix_caching`` is on unless set here.
    """

    def __init__(
        self,
        model: str = "smollm2-135m-instruct",
        dtype: str = "bf16",
        disk_cache: bool = True,
        batch_size: int = 256,
        progress: bool = False,
        **llm_options,
    ):
        try:
            from vllm import LLM
        except ImportError as error:
            raise ImportError("VLLMEngine needs vLLM on a CUDA machine: pip install -e .[vllm]") from error
        from transformers import AutoTokenizer, GenerationConfig

        from workbench.inference.models import embedded_model_folder

        if dtype not in VLLM_DTYPES:
            raise ValueError(f"dtype must be one of {sorted(VLLM_DTYPES)}, got {dtype!r}")
        self.name = model
        try:
            source = str(embedded_model_folder(model))
        except KeyError:  # not an embedded name: a local folder or a hub id
            source = model
        self.llm = LLM(model=source, dtype=VLLM_DTYPES[dtype], **{"enable_prefix_caching": True, **llm_options})
        self.tokenizer = AutoTokenizer.from_pretrained(source)
        try:
            generation_config = GenerationConfig.from_pretrained(source)
        except OSError:
            generation_config = None
        self.end_of_turn = end_of_turn(self.tokenizer, generation_config)
        self.batch_size, self.progress = batch_size, progress
        self._fingerprint = {
            "name": model,
            "backend": "vllm",
            "dtype": dtype,
            "weights_files_sha256": _weights_files_sha256(source),
        }
        self.cache = GenerationCache(cache_dir() / "generations", self._fingerprint) if disk_cache else None

    @property
    def fingerprint(self) -> dict:
        """Model name, backend, dtype and a hash of the weight files."""
        return self._fingerprint

    # ------------------------------------------------------------------ Engine interface
    def sample(self, prompts: list[str], n: int, config: SamplingConfig | None = None) -> list[SampleSet]:
        """``n`` samples per prompt (see :meth:`workbench.inference.engine.HFEngine.sample`)."""
        config = config or SamplingConfig()
        settings = sampling_key(n, config)
        values = cached_map(
            self.cache,
            "sample",
            list(prompts),
            settings,
            config.seed,
            lambda batch: self._sample_batch(batch, n, config),
            "cuda",
            self.batch_size,
        )
        return [SampleSet(**value) for value in values]

    def greedy(self, prompts: list[str], max_new_tokens: int = 32, stop: tuple[str, ...] = ()) -> list[str]:
        """The greedy answer for each prompt."""
        return greedy_by_sampling(self, prompts, max_new_tokens, stop)

    def score(self, prompts: list[str], candidates: list[str], temperature: float = 1.0) -> GridScore:
        """Exact probability of each candidate as a complete answer, from prompt log-probabilities."""
        if not candidates:
            raise ValueError("score needs at least one candidate")
        if temperature != 1.0:
            raise ValueError(
                "vLLM reports prompt log-probabilities at temperature 1 only; "
                f"score at {temperature} with the HF engine"
            )
        settings = {"candidates": list(candidates), "temperature": 1.0, "end_of_turn": self.end_of_turn.token_id}
        values = cached_map(
            self.cache,
            "score",
            list(prompts),
            settings,
            None,
            lambda batch: self._score_batch(batch, list(candidates)),
            "cuda",
            max(1, self.batch_size // len(candidates)),
        )
        return GridScore(
            list(candidates),
            np.array([v["logprobs"] for v in values], dtype=np.float64).reshape(len(prompts), len(candidates)),
        )

    # ------------------------------------------------------------------ vLLM calls
    def _tokens(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _sample_batch(self, prompts: list[str], n: int, config: SamplingConfig) -> list[dict]:
        from vllm import SamplingParams

        greedy = config.temperature == 0
        requests, params = [], []
        for prompt in prompts:
            requests.append({"prompt_token_ids": self._tokens(prompt)})
            params.append(
                SamplingParams(
                    n=1 if greedy else n,  # vLLM refuses n > 1 when greedy; the copies are identical anyway
                    temperature=config.temperature,
                    top_p=config.top_p,
                    top_k=config.top_k,
                    max_tokens=config.max_new_tokens,
                    stop=list(config.stop) or None,
                    seed=sampling_seed(config.seed, prompt),
                    logprobs=0,
                )
            )
        outputs = self.llm.generate(requests, params, use_tqdm=self.progress)
        results = []
        for output in outputs:
            completions = [c for c in output.outputs for _ in range(n if greedy else 1)]
            results.append(
                {
                    "texts": [c.text for c in completions],
                    "token_ids": [list(c.token_ids) for c in completions],
                    "token_logprobs": [
                        [float(step[t].logprob) for t, step in zip(c.token_ids, c.logprobs)] for c in completions
                    ],
                    "finish_reasons": [_finish_reason(c) for c in completions],
                }
            )
        return results

    def _score_batch(self, prompts: list[str], candidates: list[str]) -> list[dict]:
        from vllm import SamplingParams

        params = SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0.0)
        requests, starts = [], []
        for prompt in prompts:
            prompt_ids = self._tokens(prompt)
            for candidate in candidates:
                answer = _answer_tokens(self.tokenizer, prompt, prompt_ids, candidate) + [self.end_of_turn.token_id]
                requests.append({"prompt_token_ids": prompt_ids + answer})
                starts.append(len(prompt_ids))
        outputs = self.llm.generate(requests, params, use_tqdm=self.progress)
        totals = []
        for output, start, request in zip(outputs, starts, requests):
            ids = request["prompt_token_ids"]
            totals.append(float(sum(output.prompt_logprobs[i][ids[i]].logprob for i in range(start, len(ids)))))
        k = len(candidates)
        return [{"logprobs": totals[row * k : (row + 1) * k]} for row in range(len(prompts))]


def _answer_tokens(tokenizer, prompt: str, prompt_ids: list[int], answer: str) -> list[int]:
    """Tokens of ``answer`` as they follow the prompt: in context where that splits cleanly, else alone.

    The same rule as the HF engine's scoring, so both score the same token sequences.
    """
    joint = tokenizer(tokenizer.decode(prompt_ids) + answer, add_special_tokens=False)["input_ids"]
    if joint[: len(prompt_ids)] == prompt_ids and len(joint) > len(prompt_ids):
        return joint[len(prompt_ids) :]
    return tokenizer(answer, add_special_tokens=False)["input_ids"]


def _finish_reason(completion) -> str:
    """The engine's finish reason: a stop string ends with "stop", the end of turn with "eos"."""
    if completion.finish_reason == "length":
        return "length"
    return "stop" if isinstance(completion.stop_reason, str) else "eos"


def _weights_files_sha256(source: str) -> str | None:
    """SHA-256 over the weight files of a local folder (name and bytes), or None for a hub id."""
    folder = Path(source)
    files = sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")) if folder.is_dir() else []
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 23), b""):
                digest.update(block)
    return digest.hexdigest()
