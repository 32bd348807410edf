"""Roofline model of transformer inference: the time of a forward pass from its FLOPs and bytes.

A forward pass over ``batch`` rows, each feeding ``new_tokens`` tokens after ``past_tokens``
cached ones, costs

* FLOPs: 2 x (block parameters) per fed token, 2 x (lm-head parameters) per token whose logits
  are computed, and 4 x layers x heads x head_dim per (query, key) pair of attention;
* bytes: every weight once, because the rows of a batch share them (the embedding lookup reads a
  few rows only), plus the KV cache: the past read ``kv_passes`` times and the new keys and values
  written once.

Its time is ``max(FLOPs / (eta_c * peak FLOP/s), bytes / (eta_m * bandwidth)) + overhead``.
(``Roofline(overlap=False)`` adds the two terms instead, for hardware that overlaps little of its
arithmetic with its memory traffic.) Prefilling a long prompt is compute-bound. Decoding (one new token
per row) reads all weights for little arithmetic, so it is memory-bound until the batch is large enough for the FLOPs to
catch up: :meth:`Roofline.crossover_batch`. The efficiencies ``eta`` (achieved fractions of the
peaks) and the fixed overhead per pass (framework and kernel-launch time) are fitted to measured
times by :func:`calibrate`.

>>> from workbench.cost.hardware import get_hardware
>>> shape = ModelShape.from_config(SMOLLM2_135M, dtype="bf16")
>>> shape.params
134515008
>>> roof = Roofline(shape, get_hardware("h100-sxm"))
>>> round(roof.crossover_batch())      # decode batch at which the H100 turns compute-bound
303
>>> roof.crossover_batch(kv_tokens=1024)   # with 1k cached tokens per row it never does
inf
>>> roof.decode_tokens_per_s([1, 64]).round(-3)   # ideal (eta = 1) tokens/s, 1 cached token
array([ 12000., 788000.])
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import least_squares

from workbench.cost.hardware import Hardware

BYTES_PER_ELEMENT = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}

# config.json of SmolLM2-135M-Instruct, the workbench's embedded model (fields the shape needs).
SMOLLM2_135M = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
    "head_dim": 64,
    "vocab_size": 49152,
    "tie_word_embeddings": True,
}


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder-only transformer that its inference cost depends on.

    Attributes:
        n_layers: transformer blocks.
        n_heads: query heads.
        n_kv_heads: key/value heads (fewer than n_heads with grouped-query attention).
        head_dim: width of one head.
        layer_params: parameters of one block (attention and MLP projections, norms).
        embedding_params: input embedding, vocab x hidden.
        lm_head_params: output projection, vocab x hidden (the same tensor when tied).
        other_params: anything else (the final norm).
        tied_embeddings: whether the lm head is the input embedding.
        dtype: precision of activations, KV cache and matmuls: "fp32", "bf16" or "fp16".
        weight_dtype: storage precision of the weights when it differs ("int8", "int4"); None
            means ``dtype``.
    """

    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    layer_params: int
    embedding_params: int
    lm_head_params: int
    other_params: int = 0
    tied_embeddings: bool = False
    dtype: str = "fp32"
    weight_dtype: str | None = None

    def __post_init__(self):
        for dtype in (self.dtype, self.weight_dtype or self.dtype):
            if dtype not in BYTES_PER_ELEMENT:
                raise ValueError(f"unknown dtype {dtype!r}; known: {sorted(BYTES_PER_ELEMENT)}")

    @classmethod
    def from_config(cls, config, dtype: str = "fp32", weight_dtype: str | None = None) -> ModelShape:
        """The shape of a Llama-family model (Llama, Mistral, Qwen2, SmolLM, ...: gated MLP, GQA).

        Args:
            config: a transformers ``PretrainedConfig`` or the dict of its config.json.
            dtype: precision of activations, KV cache and matmuls.
            weight_dtype: storage precision of quantised weights, if any.
        """

        def field(name, default=None):
            value = config.get(name, default) if isinstance(config, dict) else getattr(config, name, default)
            if value is None:
                raise ValueError(f"config lacks {name!r}, which a Llama-family shape needs")
            return value

        hidden, heads = field("hidden_size"), field("num_attention_heads")
        kv_heads = field("num_key_value_heads", heads)
        head_dim = field("head_dim", hidden // heads)
        attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
        if field("attention_bias", False):
            attention += (heads + 2 * kv_heads) * head_dim + hidden
        mlp = 3 * hidden * field("intermediate_size")  # gate, up and down projections
        vocab_matrix = field("vocab_size") * hidden
        return cls(
            n_layers=field("num_hidden_layers"),
            n_heads=heads,
            n_kv_heads=kv_heads,
            head_dim=head_dim,
            layer_params=attention + mlp + 2 * hidden,  # + two RMSNorm weights
            embedding_params=vocab_matrix,
            lm_head_params=vocab_matrix,
            other_params=hidden,  # final norm
            tied_embeddings=bool(field("tie_word_embeddings", False)),
            dtype=dtype,
            weight_dtype=weight_dtype,
        )

    @classmethod
    def from_model(cls, model, dtype: str | None = None) -> ModelShape:
        """:meth:`from_config` on ``model.config``, checked against the model's parameter count.

        Args:
            model: a loaded transformers causal LM.
            dtype: None reads it from the weights.

        Raises:
            ValueError: when the formula misses the real parameter count by more than 1%, i.e.
                the architecture is not one :meth:`from_config` describes.
        """
        names = {"torch.float32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}
        dtype = dtype or names[str(next(model.parameters()).dtype)]
        shape = cls.from_config(model.config, dtype=dtype)
        actual = sum(p.numel() for p in model.parameters())
        if abs(shape.params - actual) > 0.01 * actual:
            raise ValueError(f"config formula gives {shape.params} parameters, the model has {actual}")
        return shape

    @property
    def params(self) -> int:
        """Distinct parameters."""
        head = 0 if self.tied_embeddings else self.lm_head_params
        return self.n_layers * self.layer_params + self.embedding_params + head + self.other_params

    @property
    def weight_bytes(self) -> float:
        """Bytes of weights one forward pass reads: blocks, lm head and norms, not the embedding."""
        per_param = BYTES_PER_ELEMENT[self.weight_dtype or self.dtype]
        return (self.n_layers * self.layer_params + self.lm_head_params + self.other_params) * per_param

    @property
    def kv_bytes_per_token(self) -> float:
        """Bytes of keys and values cached per token of one row."""
        return 2 * self.n_layers * self.n_kv_heads * self.head_dim * BYTES_PER_ELEMENT[self.dtype]

    @property
    def attention_flops_per_pair(self) -> float:
        """FLOPs per (query, key) pair: q.k and the weighted sum of v, 2 x head_dim each, per head and layer."""
        return 4 * self.n_layers * self.n_heads * self.head_dim

    def forward_cost(self, batch, new_tokens, past_tokens=0, logits_tokens=1, kv_passes=1.0, batched_weight_passes=1.0):
        """FLOPs and bytes of one forward pass; broadcasts over array arguments.

        Args:
            batch: rows.
            new_tokens: tokens fed per row (the prompt for a prefill, 1 for a decode step).
            past_tokens: tokens already in each row's KV cache.
            logits_tokens: tokens per row whose logits are computed (1 with ``logits_to_keep=1``).
            kv_passes: times the past KV cache crosses memory (see :class:`Roofline`).
            batched_weight_passes: times the weights cross memory in a pass of more than one row (see
                :class:`Roofline`); a single row reads them once.

        Returns:
            (flops, bytes), floats or arrays of the broadcast shape.
        """
        batch, new, past, logits = (np.asarray(x, dtype=float) for x in (batch, new_tokens, past_tokens, logits_tokens))
        # Causal attention: fed token i (1-based) attends to past + i keys.
        pairs = new * past + new * (new + 1) / 2
        flops = batch * (
            2 * (new * self.n_layers * self.layer_params + logits * self.lm_head_params)
            + self.attention_flops_per_pair * pairs
        )
        weights = self.weight_bytes * np.where(batch > 1, batched_weight_passes, 1.0)
        memory = weights + batch * self.kv_bytes_per_token * (kv_passes * past + new)
        return _plain(flops), _plain(memory)


@dataclass(frozen=True)
class Efficiency:
    """How far real kernels fall short of the peaks; fitted by :func:`calibrate`.

    Attributes:
        compute: achieved fraction of peak FLOP/s.
        memory: achieved fraction of peak bandwidth.
        overhead_s: fixed seconds per forward pass (Python, framework, kernel launches).
    """

    compute: float = 1.0
    memory: float = 1.0
    overhead_s: float = 0.0


@dataclass(frozen=True)
class Measurement:
    """A timed forward pass.

    Attributes:
        batch: rows.
        new_tokens: tokens fed per row.
        past_tokens: tokens already cached per row.
        seconds: measured time.
        logits_tokens: tokens per row whose logits were computed.
    """

    batch: int
    new_tokens: int
    past_tokens: int
    seconds: float
    logits_tokens: int = 1

    @classmethod
    def prefill(cls, batch: int, prompt_tokens: int, seconds: float) -> Measurement:
        """A prefill pass with ``logits_to_keep=1``."""
        return cls(batch, prompt_tokens, 0, seconds)

    @classmethod
    def decode(cls, batch: int, kv_tokens: int, seconds: float) -> Measurement:
        """One decode step on a KV cache of ``kv_tokens``."""
        return cls(batch, 1, kv_tokens, seconds)


@dataclass(frozen=True)
class Roofline:
    """Predicted inference times of one model on one machine.

    Attributes:
        shape: the model.
        hardware: the machine; its peak for ``shape.dtype`` and its bandwidth are used.
        efficiency: achieved fractions of the peaks and overhead per pass.
        kv_passes: times the past KV cache crosses memory in a pass: 1 for a preallocated or
            paged cache that attention reads once (vLLM, a static cache); 3 for a concatenating
            cache such as transformers' ``DynamicCache``, which copies the whole cache (read and
            write) every step before attention reads it.
        overlap: True takes the max of compute and memory time (the roofline: each kernel
            hides one behind the other); False adds them (no overlap at all). The truth lies
            between; on this workbench's CPU the sum fits measured times somewhat better.
        batched_weight_passes: times the weights cross memory in a pass of more than one row. 1 where
            batched kernels stream each weight once (GPUs). On a CPU a single row runs matrix-vector
            kernels that stream the weights once, while several rows run matrix-matrix kernels that
            first copy (pack) the weight blocks, so that small batches read more bytes than one row
            does: at one thread this CPU decoded one row in 0.042 s and two in 0.063 s (the 0c9f090
            run's timings). :func:`calibrate` fits it with ``fit_weight_passes=True``.
    """

    shape: ModelShape
    hardware: Hardware
    efficiency: Efficiency = Efficiency()
    kv_passes: float = 1.0
    overlap: bool = True
    batched_weight_passes: float = 1.0

    def compute_and_memory_time(self, batch, new_tokens, past_tokens=0, logits_tokens=1):
        """(compute seconds, memory seconds) of a pass, without overhead; broadcasts."""
        flops, memory = self.shape.forward_cost(
            batch, new_tokens, past_tokens, logits_tokens, self.kv_passes, self.batched_weight_passes
        )
        compute_s = flops / (self.efficiency.compute * self.hardware.peak_flops(self.shape.dtype))
        return compute_s, memory / (self.efficiency.memory * self.hardware.bandwidth)

    def forward_time(self, batch, new_tokens, past_tokens=0, logits_tokens=1):
        """Seconds for one forward pass; broadcasts over array arguments."""
        compute_s, memory_s = self.compute_and_memory_time(batch, new_tokens, past_tokens, logits_tokens)
        combined = np.maximum(compute_s, memory_s) if self.overlap else compute_s + memory_s
        return _plain(combined + self.efficiency.overhead_s)

    def prefill_time(self, batch, prompt_tokens):
        """Seconds to prefill ``batch`` prompts of ``prompt_tokens`` (logits of the last token only)."""
        return self.forward_time(batch, prompt_tokens)

    def decode_step_time(self, batch, kv_tokens):
        """Seconds for one decode step of ``batch`` rows with ``kv_tokens`` cached per row."""
        return self.forward_time(batch, 1, kv_tokens)

    def decode_tokens_per_s(self, batch, kv_tokens=1):
        """Generated tokens per second at a batch size (array in, array out)."""
        return _plain(np.asarray(batch, float) / self.decode_step_time(batch, kv_tokens))

    def crossover_batch(self, kv_tokens=0) -> float:
        """Decode batch at which compute time reaches memory time; inf if it never does.

        Per row, a step does f FLOPs and moves m bytes of KV cache; all rows share W bytes of
        weights. With C and M the achieved FLOP/s and bytes/s, b f / C = (W + b m) / M gives
        ``b* = W / (f M / C - m)``: the hardware's FLOP/byte ratio over the model's arithmetic
        intensity f / W when m = 0. Long caches (large m) can keep decoding memory-bound at any
        batch (f M / C <= m).
        """
        f, _ = self.shape.forward_cost(1, 1, kv_tokens)
        m = self.shape.kv_bytes_per_token * (self.kv_passes * kv_tokens + 1)
        ridge = (
            self.efficiency.compute
            * self.hardware.peak_flops(self.shape.dtype)
            / (self.efficiency.memory * self.hardware.bandwidth)
        )
        margin = f / ridge - m
        return self.shape.weight_bytes * self.batched_weight_passes / margin if margin > 0 else float("inf")

    def generate_time(
        self, prompt_tokens: int, new_tokens: int, batch: int = 1, prefill_batch: int | None = None
    ) -> float:
        """Seconds to generate ``new_tokens`` for each of ``batch`` rows (static batching).

        The prefill yields the first token; each further token is one decode step whose cache
        holds the prompt and the tokens so far.

        Args:
            prompt_tokens: prompt length.
            new_tokens: tokens generated per row.
            batch: rows decoded together.
            prefill_batch: rows prefilled; defaults to ``batch``. Use 1 when N samples of one
                prompt share a single prefill whose cache is copied into N rows.
        """
        steps = prompt_tokens + np.arange(max(new_tokens - 1, 0))
        decode_s = np.sum(self.decode_step_time(batch, steps)) if len(steps) else 0.0
        return float(self.prefill_time(batch if prefill_batch is None else prefill_batch, prompt_tokens) + decode_s)

    def predict(self, points: list[Measurement]) -> np.ndarray:
        """Predicted seconds for each measured pass, shape (len(points),)."""
        columns = np.array([(p.batch, p.new_tokens, p.past_tokens, p.logits_tokens) for p in points], dtype=float)
        return np.atleast_1d(self.forward_time(*columns.T))


def calibrate(
    roofline: Roofline, points: list[Measurement], fit_overhead: bool = True, fit_weight_passes: bool = False
) -> Roofline:
    """Fit the efficiencies (and the overhead) of ``roofline`` to measured passes.

    Minimises the squared log ratio of predicted to measured times, so that short and long
    passes weigh alike. The max() of the roofline makes the loss kinked, so the fit starts from a
    small grid of efficiencies and keeps the best. An efficiency above 1 means the nominal peak
    is pessimistic (e.g. weights served from a large cache rather than DRAM).

    Args:
        roofline: model, hardware and kv_passes; its efficiency is the starting point and, with
            ``fit_overhead=False``, provides the fixed overhead.
        points: measured passes covering both regimes (prefills and decode steps), or one of
            the efficiencies is left where it started.
        fit_overhead: fit the seconds per pass too.
        fit_weight_passes: fit :attr:`Roofline.batched_weight_passes` too (between 1 and 10; the points
            need single-row and batched decode steps).

    Returns:
        ``roofline`` with the fitted :class:`Efficiency` (and weight passes).
    """
    if not points:
        raise ValueError("calibrate needs measured points")
    measured = np.log([p.seconds for p in points])
    floor = min(p.seconds for p in points)

    def model(x) -> Roofline:
        overhead = x[2] if fit_overhead else roofline.efficiency.overhead_s
        passes = x[-1] if fit_weight_passes else roofline.batched_weight_passes
        efficiency = Efficiency(np.exp(x[0]), np.exp(x[1]), overhead)
        return replace(roofline, efficiency=efficiency, batched_weight_passes=passes)

    def residuals(x) -> np.ndarray:
        return np.log(model(x).predict(points)) - measured

    low, high = [np.log(1e-4), np.log(1e-4)], [np.log(10.0), np.log(10.0)]
    low, high = (
        low + [0.0] * fit_overhead + [1.0] * fit_weight_passes,
        high + [floor] * fit_overhead + [10.0] * fit_weight_passes,
    )
    best = None
    for start_c in (0.03, 0.3):
        for start_m in (0.03, 0.3):
            for start_passes in (1.0, 2.0) if fit_weight_passes else (None,):
                x0 = (
                    [np.log(start_c), np.log(start_m)]
                    + [0.1 * floor] * fit_overhead
                    + [start_passes] * fit_weight_passes
                )
                fit = least_squares(residuals, x0, bounds=(low, high))
                if best is None or fit.cost < best.cost:
                    best = fit
    return model(best.x)


def _plain(value):
    """A 0-d array as a float; arrays unchanged."""
    value = np.asarray(value)
    return float(value) if value.ndim == 0 else value
