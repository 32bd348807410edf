"""Exact attention over key/value *segments*, so that a prompt's KV cache is never copied per sample.

The engine runs the model's own layers (projections, norms, rotary embeddings, MLPs) and replaces
only the attention kernel: while a :class:`Pass` is active, every attention layer of the model calls
:func:`attention` (registered with transformers' ``AttentionInterface``) instead of SDPA or eager
attention, and the model is called without a transformers cache. The keys and values live in
segments, each shared as widely as it can be:

* ``"shared"``: one row for the whole batch (the few-shot prefix every prompt of a call starts with);
* ``"prompt"``: one row per prompt (its own, left-padded tokens; sample-tree nodes after it);
* ``"row"``: one row per query slot (the tokens each long sample generated on its own).

Queries are laid out as a grid of B prompts x M slots. A query attends over every segment at once:
scores against a shared or per-prompt segment are one matrix product per prompt, never a copy of
its keys per sample. Which keys a query sees is decided by *positions* (real tokens only, so
left padding shifts nothing): ``position - window < key position <= position`` on valid keys, and
for tree segments only the query's own ancestors. The arithmetic is the model's eager attention:
scaled scores, optional logit soft-capping (Gemma-2), a float32 softmax. Sliding windows are thus
exact, whatever the padding or sharing.

An architecture is accepted only when it is in :data:`TESTED_ARCHITECTURES` (each one checked
against a plain forward pass by ``tests/test_architectures.py``), and every pass checks that all
attention layers went through :func:`attention`, so a model that bypasses it fails loudly instead
of decoding silently wrong.
"""

from __future__ import annotations

import contextvars
import importlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial

import torch

# model_type values whose every attention layer is plain softmax attention, checked token by token
# against a plain forward pass in tests/test_architectures.py.
TESTED_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2", "gemma3_text", "gpt2")
# Keyword arguments a model may hand its attention kernel that change nothing here (when not None).
_HARMLESS_KWARGS = {"position_ids", "use_cache", "cache_position", "output_attentions", "is_causal", "layer_idx"}
# Upper bound on one block of attention scores (floats); longer query grids are processed in chunks.
_MAX_SCORES = 1 << 26

_ACTIVE: contextvars.ContextVar[Pass | None] = contextvars.ContextVar("workbench_attention_pass", default=None)


def check_architecture(model) -> None:
    """Refuse models whose attention this module does not reproduce exactly.

    Raises:
        NotImplementedError: naming the model type and the tested ones.
    """
    config = model.config
    model_type = getattr(config, "model_type", None)
    if model_type not in TESTED_ARCHITECTURES:
        raise NotImplementedError(
            f"the workbench engine has not been checked on {model_type!r} models; tested architectures: "
            f"{', '.join(TESTED_ARCHITECTURES)}. "
            f"Add a tiny {model_type} model to tests/test_architectures.py to extend it."
        )
    layer_types = set(getattr(config, "layer_types", None) or ())
    if layer_types - {"full_attention", "sliding_attention"}:
        raise NotImplementedError(f"{model_type} layer types {sorted(layer_types)} are not all softmax attention")


@dataclass
class Segment:
    """Keys and values of one part of the context, for every attention layer.

    Attributes:
        kind: "shared" (1 row), "prompt" (B rows) or "row" (B*M rows, one per query slot).
        positions: (rows, K) position of each key in its sequence.
        valid: (rows, K) False for padding keys.
        keys, values: per attention module, (rows, kv_heads, K, head_dim).
    """

    kind: str
    positions: torch.Tensor
    valid: torch.Tensor
    keys: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)

    @property
    def length(self) -> int:
        return self.positions.shape[1]


class Pass:
    """What one forward call attends over: set active while the model runs (see :meth:`run`).

    Args:
        segments: the segments queries read, the one this call writes included.
        write: how this call's new keys enter ``segments``: ``("set", segment)`` stores them as the
            segment's keys, ``("append", segment)`` appends them, ``("column", segment, column)``
            writes slot rows of a preallocated buffer at ``column``.
        query_positions: (B, M) position of each query slot.
        slots: for row-shaped model input, (R,) the grid slot (b * M + m) of each model row; None
            when the model input is the (B, M) grid itself.
        visible: optional extra (B, M, K) visibility per segment (tree ancestry), by segment index.
        allocate: for "column" writes, makes a layer's buffer from its first key (R, kv_heads, 1, dim).
        prefill: the queries are the tokens this call writes ("set"), many per prompt: attention runs
            in PyTorch's fused SDPA kernel over the materialised keys (not when soft-capping).
    """

    def __init__(
        self,
        segments: list[Segment],
        write: tuple,
        query_positions: torch.Tensor,
        slots: torch.Tensor | None = None,
        visible: dict | None = None,
        allocate=None,
        prefill: bool = False,
    ):
        self.segments, self.write, self.query_positions, self.slots = segments, write, query_positions, slots
        self.visible, self.allocate, self.prefill = visible or {}, allocate, prefill
        # One unpadded sequence and nothing before it: plain causal attention, SDPA's fastest case.
        self.causal = prefill and len(segments) == 1 and bool(segments[0].valid.all())
        self.hidden: dict[int | None, torch.Tensor | None] = {}
        self.layers_seen: set[int] = set()

    def run(self, model, **inputs):
        """Call ``model(**inputs)`` with this pass active and check that every layer used it."""
        with _active(model, self):
            out = model(**inputs, use_cache=False)
        expected = model.config.num_hidden_layers
        if len(self.layers_seen) != expected:
            raise NotImplementedError(
                f"{len(self.layers_seen)} of {expected} attention layers of this {model.config.model_type} model "
                "went through the workbench attention; its results would not be exact"
            )
        return out

    def attend(
        self, module, query, key, value, scaling: float, softcap: float | None, window: int | None
    ) -> torch.Tensor:
        """Store this call's keys, then attend.

        query: (batch, q_heads, q_len, dim); returns (batch, q_len, q_heads, dim).
        """
        self.layers_seen.add(id(module))
        self._store(module, key, value)
        batch, q_heads, q_len, dim = query.shape
        kv_heads = key.shape[1]
        grid_b, grid_m = self.query_positions.shape
        q = (
            (query * scaling).view(batch, kv_heads, q_heads // kv_heads, q_len, dim).transpose(2, 3)
        )  # (batch, kv, q_len, g, dim)
        if self.slots is not None:  # model rows -> grid slots (unused slots stay zero)
            grid = q.new_zeros((grid_b * grid_m, kv_heads, q_heads // kv_heads, dim))
            grid[self.slots] = q[:, :, 0]
            q = grid.view(grid_b, grid_m, kv_heads, -1, dim).transpose(1, 2)
        if self.prefill and softcap is None:
            causal = self.causal and window is None
            hidden = None if causal else self._hidden(window)
            return _fused(
                query, [(s.keys[module], s.values[module]) for s in self.segments if s.length], hidden, scaling, causal
            )
        hidden = self._hidden(window)
        # Row segments are preallocated buffers: only their first ``length`` columns hold keys.
        parts = [
            (s.kind, s.keys[module][:, :, : s.length], s.values[module][:, :, : s.length])
            for s in self.segments
            if s.length
        ]
        keys = sum(s.length for s in self.segments)
        chunk = max(1, _MAX_SCORES // max(1, grid_b * q_heads * keys))
        if chunk >= grid_m:
            out = _attend(q, parts, hidden, softcap)
        else:  # long prefills: bounded score memory
            pieces = [
                _attend(q[:, :, m : m + chunk], parts, None if hidden is None else hidden[:, m : m + chunk], softcap, m)
                for m in range(0, grid_m, chunk)
            ]
            out = torch.cat(pieces, dim=2)
        out = out.transpose(1, 2).reshape(grid_b, grid_m, q_heads, dim)  # (B, M, q_heads, dim)
        if self.slots is not None:
            return out.reshape(grid_b * grid_m, q_heads, dim)[self.slots][:, None]
        return out

    def _store(self, module, key, value) -> None:
        how, segment = self.write[0], self.write[1]
        if how == "set":
            segment.keys[module], segment.values[module] = key, value
        elif how == "append":
            old_k, old_v = segment.keys.get(module), segment.values.get(module)
            segment.keys[module] = key if old_k is None else torch.cat([old_k, key], dim=2)
            segment.values[module] = value if old_v is None else torch.cat([old_v, value], dim=2)
        else:  # "column": one new key per model row, written in place into the slot rows
            column = self.write[2]
            if module not in segment.keys:
                segment.keys[module], segment.values[module] = self.allocate(key), self.allocate(value)
            segment.keys[module][self.slots, :, column] = key[:, :, 0]
            segment.values[module][self.slots, :, column] = value[:, :, 0]

    def _hidden(self, window: int | None) -> torch.Tensor | None:
        """(B, M, K) True where a query must NOT see a key (None: it sees all), once per pass and window."""
        if window not in self.hidden:
            query = self.query_positions[:, :, None]
            grid_b, grid_m = self.query_positions.shape
            pieces = []
            for index, segment in enumerate(self.segments):
                if not segment.length:
                    continue
                positions, valid = segment.positions, segment.valid
                if segment.kind == "row":
                    positions, valid = positions.view(grid_b, grid_m, -1), valid.view(grid_b, grid_m, -1)
                else:
                    positions, valid = positions[:, None], valid[:, None]
                sees = valid & (positions <= query)
                if window is not None:
                    sees = sees & (positions > query - window)
                if index in self.visible:
                    sees = sees & self.visible[index]
                pieces.append(sees.expand(grid_b, grid_m, -1))
            sees = torch.cat(pieces, dim=-1)
            if self.prefill:  # a padding query sees at least itself: no fully masked row (NaN in fused kernels)
                own = torch.arange(grid_m, device=sees.device)
                sees[:, own, sees.shape[-1] - grid_m + own] = True
            self.hidden[window] = None if bool(sees.all()) else ~sees
        return self.hidden[window]


def _attend(
    q: torch.Tensor, parts, hidden: torch.Tensor | None, softcap: float | None, offset: int = 0
) -> torch.Tensor:
    """Softmax attention of a query grid over segments.

    Args:
        q: (B, kv_heads, M, g, dim) scaled queries, g query heads per key/value head.
        parts: (kind, keys, values) per segment; keys/values (rows, kv_heads, K, dim).
        hidden: (B, M, sum K) True for keys a query must not see, or None when it sees all.
        softcap: logit soft-capping (tanh), or None.
        offset: first grid slot of ``q`` (row segments are indexed by slot).

    Returns:
        (B, kv_heads, M, g, dim) attention output.
    """
    grid_b, heads, grid_m, groups, dim = q.shape
    scores = torch.cat([_scores(q, kind, keys, offset) for kind, keys, _ in parts], dim=-1).float()
    if softcap is not None:
        scores = torch.tanh(scores / softcap) * softcap
    if hidden is not None:
        scores.masked_fill_(hidden[:, None, :, None, :], torch.finfo(scores.dtype).min)
    probs = torch.softmax(scores, dim=-1).to(q.dtype)
    out, start = None, 0
    for kind, _, values in parts:
        length = values.shape[2]
        piece = _weighted(probs[..., start : start + length], kind, values, offset, grid_m)
        out = piece if out is None else out + piece
        start += length
    return out


def _fused(
    query: torch.Tensor, parts, hidden: torch.Tensor | None, scaling: float, causal: bool = False
) -> torch.Tensor:
    """Prefill attention in PyTorch's SDPA kernel: keys materialised per prompt, (B, M, q_heads, dim) out."""
    batch, q_heads = query.shape[:2]
    keys = torch.cat([k.expand(batch, -1, -1, -1) for k, _ in parts], dim=2)
    values = torch.cat([v.expand(batch, -1, -1, -1) for _, v in parts], dim=2)
    mask = None if hidden is None else ~hidden[:, None]
    # Grouped-query attention: each key/value head serves q_heads / kv_heads query heads.
    out = torch.nn.functional.scaled_dot_product_attention(
        query, keys, values, attn_mask=mask, scale=scaling, is_causal=causal, enable_gqa=keys.shape[1] != q_heads
    )
    return out.transpose(1, 2)


def _scores(q: torch.Tensor, kind: str, keys: torch.Tensor, offset: int) -> torch.Tensor:
    """(B, kv_heads, M, g, K) query-key products, reading each shared or per-prompt key once."""
    grid_b, heads, grid_m, groups, dim = q.shape
    if kind == "shared":  # every query of every prompt against one row of keys
        flat = q.transpose(0, 1).reshape(heads, grid_b * grid_m * groups, dim)
        return torch.matmul(flat, keys[0].transpose(-1, -2)).view(heads, grid_b, grid_m, groups, -1).transpose(0, 1)
    if kind == "prompt":
        flat = q.reshape(grid_b, heads, grid_m * groups, dim)
        return torch.matmul(flat, keys.transpose(-1, -2)).view(grid_b, heads, grid_m, groups, -1)
    rows = _slot_rows(keys, offset, grid_b, grid_m)  # (B*M, kv_heads, K, dim)
    flat = q.transpose(1, 2).reshape(grid_b * grid_m, heads, groups, dim)
    return torch.matmul(flat, rows.transpose(-1, -2)).view(grid_b, grid_m, heads, groups, -1).transpose(1, 2)


def _weighted(probs: torch.Tensor, kind: str, values: torch.Tensor, offset: int, grid_m: int) -> torch.Tensor:
    """(B, kv_heads, M, g, dim) probability-weighted values of one segment."""
    grid_b, heads, _, groups, length = probs.shape
    if kind == "shared":
        flat = probs.transpose(0, 1).reshape(heads, -1, length)
        return torch.matmul(flat, values[0]).view(heads, grid_b, grid_m, groups, -1).transpose(0, 1)
    if kind == "prompt":
        return torch.matmul(probs.reshape(grid_b, heads, grid_m * groups, length), values).view(
            grid_b, heads, grid_m, groups, -1
        )
    rows = _slot_rows(values, offset, grid_b, grid_m)
    flat = probs.transpose(1, 2).reshape(grid_b * grid_m, heads, groups, length)
    return torch.matmul(flat, rows).view(grid_b, grid_m, heads, groups, -1).transpose(1, 2)


def _slot_rows(tensor: torch.Tensor, offset: int, grid_b: int, grid_m: int) -> torch.Tensor:
    """The rows of a "row" segment for grid slots [offset, offset + grid_m) of every prompt."""
    if offset == 0 and tensor.shape[0] == grid_b * grid_m:
        return tensor
    full_m = tensor.shape[0] // grid_b
    return tensor.view(grid_b, full_m, *tensor.shape[1:])[:, offset : offset + grid_m].reshape(
        grid_b * grid_m, *tensor.shape[1:]
    )


# ---------------------------------------------------------------------------- transformers glue
def attention(
    module,
    query,
    key,
    value,
    attention_mask,
    scaling=None,
    dropout=0.0,
    softcap=None,
    sliding_window=None,
    *,
    fallback: str,
    **kwargs,
):
    """The attention kernel registered with transformers: the active :class:`Pass`, else ``fallback``."""
    current = _ACTIVE.get()
    if current is None:  # a call from outside the engine (another thread): the model's own kernel
        return _fallback(fallback)(
            module,
            query,
            key,
            value,
            attention_mask,
            scaling=scaling,
            dropout=dropout,
            softcap=softcap,
            sliding_window=sliding_window,
            **kwargs,
        )
    unknown = sorted(k for k, v in kwargs.items() if v is not None and k not in _HARMLESS_KWARGS)
    if unknown or dropout or kwargs.get("is_causal") is False:
        raise NotImplementedError(
            f"attention options {unknown or ['dropout/non-causal']} of {type(module).__name__} "
            "are not supported by the workbench engine"
        )
    scaling = query.shape[-1] ** -0.5 if scaling is None else scaling
    return current.attend(module, query, key, value, scaling, softcap, sliding_window), None


def _fallback(name: str):
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    if name == "eager":  # each model file defines its own eager kernel
        return lambda module, *args, **kwargs: importlib.import_module(type(module).__module__).eager_attention_forward(
            module, *args, **kwargs
        )
    return ALL_ATTENTION_FUNCTIONS[name]


_FALLBACK_OF: dict[str, str] = {}  # registered name -> the model's own implementation


@contextmanager
def _active(model, current: Pass):
    """Route the model's attention through :func:`attention` for the duration of one call."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    config = model.config
    original = config._attn_implementation or "eager"
    if original in _FALLBACK_OF:
        name = original
    else:
        # A neutral name: transformers treats implementations whose name contains "flash" specially.
        name = next((n for n, base in _FALLBACK_OF.items() if base == original), f"workbench{len(_FALLBACK_OF)}")
        if name not in _FALLBACK_OF:
            _FALLBACK_OF[name] = original
            ALL_ATTENTION_FUNCTIONS.register(name, partial(attention, fallback=original))
            if original in ALL_MASK_ATTENTION_FUNCTIONS:  # calls from elsewhere still get their usual mask
                ALL_MASK_ATTENTION_FUNCTIONS.register(name, ALL_MASK_ATTENTION_FUNCTIONS[original])
    token = _ACTIVE.set(current)
    config._attn_implementation = name
    try:
        yield
    finally:
        config._attn_implementation = original
        _ACTIVE.reset(token)
