"""One forward pass over a batch of rows that share a prefix: the layout both training losses use
(:func:`workbench.lifecycle.finetune.loss.answer_nll` and
:func:`workbench.lifecycle.regression_loss.grid_logprobs`).

A row is a chain of tokens (a prompt, with or without its answer), optionally followed by a tree
of nodes shared by every row (the answer candidates' trie). Layout::

    [ shared prefix (P) ][ left pad ][ rest of each chain ][ tree nodes (N) ]

The prefix, common to every row (the system prompt: about half of each sequence), is pushed
through the model once and its keys and values are expanded over the rows; gradients flow back
through the expansion. Positions count real tokens only. A chain token sees the prefix and the
real chain tokens before it; a tree node sees the prefix, every real chain token of its row, its
ancestors and itself; a padding column sees the prefix and itself (so no query row is fully masked).

With a frozen trunk (:class:`workbench.lifecycle.finetune.trunk.FrozenTrunk`) the same layout is
filled with the cached outputs of the frozen lower layers instead of token ids, and only the
trainable top layers run.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

MIN_SHARED_PREFIX = 16  # below this, a separate prefix pass costs more than it saves


@dataclass
class Rows:
    """The rows of one batch.

    Attributes:
        chains: B token lists (each row's tokens in order).
        tree: N ``(token, parent)`` nodes appended after every chain, shared by the rows; ``parent`` is
            the index of an earlier node, or -1 for a child of the chain's last token. Empty: none.
    """

    chains: list[list[int]]
    tree: list[tuple[int, int]]


@dataclass
class Layout:
    """Where the tokens of :class:`Rows` sit in the main pass (after the shared prefix).

    Attributes:
        prefix_len: P, the tokens pushed through once.
        input_ids: (B, Q) token ids, padding where ``source`` is -1.
        source: (B, Q) index of each column's token in its row's sequence (chain, then tree nodes); -1: padding.
        positions: (B, Q) position ids.
        mask: (B, 1, Q, P + Q) boolean: True where a query may attend.
    """

    prefix_len: int
    input_ids: torch.Tensor
    source: torch.Tensor
    positions: torch.Tensor
    mask: torch.Tensor


def common_prefix_len(rows: list[list[int]]) -> int:
    """Length of the longest prefix every row starts with.

    >>> common_prefix_len([[1, 2, 3], [1, 2, 4], [1, 2]])
    2
    """
    length = min(len(r) for r in rows)
    for r in rows[1:]:
        length = next((i for i in range(length) if r[i] != rows[0][i]), length)
    return length


def shared_prefix_len(chains: list[list[int]], limit: int, share: bool = True) -> int:
    """The prefix to push through once: the rows' common prefix, at most ``limit`` tokens, 0 when
    sharing is off, the batch has one row, or the prefix is shorter than :data:`MIN_SHARED_PREFIX`."""
    if not share or len(chains) < 2:
        return 0
    length = min(common_prefix_len(chains), limit)
    return length if length >= MIN_SHARED_PREFIX else 0


def layout(rows: Rows, prefix_len: int, pad_id: int) -> Layout:
    """The main pass's token ids, sources, positions and attention mask (see the module docstring).

    >>> out = layout(Rows([[5, 6, 7], [5, 8]], [(9, -1)]), prefix_len=1, pad_id=0)
    >>> out.input_ids.tolist(), out.source.tolist(), out.positions.tolist()
    ([[6, 7, 9], [0, 8, 9]], [[1, 2, 3], [-1, 1, 2]], [[1, 2, 3], [1, 1, 2]])
    """
    chains, batch, nodes = rows.chains, len(rows.chains), len(rows.tree)
    width = max(len(c) for c in chains) - prefix_len
    queries = width + nodes
    input_ids = torch.full((batch, queries), pad_id, dtype=torch.long)
    source = torch.full((batch, queries), -1, dtype=torch.long)
    real = torch.zeros((batch, width), dtype=torch.bool)
    for row, chain in enumerate(chains):
        rest = len(chain) - prefix_len
        input_ids[row, width - rest : width] = torch.tensor(chain[prefix_len:], dtype=torch.long)
        source[row, width - rest : width] = torch.arange(prefix_len, len(chain))
        source[row, width:] = torch.arange(len(chain), len(chain) + nodes)
        real[row, width - rest :] = True
    positions = torch.zeros((batch, queries), dtype=torch.long)
    positions[:, :width] = prefix_len + (real.long().cumsum(-1) - 1).clamp(min=0)
    lengths = prefix_len + real.sum(-1)  # (B,) chain lengths: the position of a depth-1 node
    tree = torch.eye(nodes, dtype=torch.bool)
    depth = [0] * nodes
    for node, (token, parent) in enumerate(rows.tree):
        input_ids[:, width + node] = token
        if parent >= 0:
            depth[node] = depth[parent] + 1
            tree[node] |= tree[parent]
        positions[:, width + node] = lengths + depth[node]
    mask = torch.zeros((batch, queries, queries), dtype=torch.bool)
    causal = torch.tril(torch.ones((width, width), dtype=torch.bool))
    mask[:, :width, :width] = (causal[None] & real[:, None, :]) | torch.eye(width, dtype=torch.bool)[None]
    mask[:, width:, :width] = real[:, None, :]
    mask[:, width:, width:] = tree[None]
    mask = torch.cat([torch.ones((batch, queries, prefix_len), dtype=torch.bool), mask], dim=-1)[:, None]
    return Layout(prefix_len, input_ids, source, positions, mask)


def forward_rows(
    model, rows: Rows, keep: int, pad_id: int, limit: int, share_prefix: bool = True, trunk=None
) -> torch.Tensor:
    """(B, keep, V) logits of the last ``keep`` columns of the main pass over ``rows``.

    Args:
        model: a causal LM whose attention takes a 4-D mask (sdpa or eager).
        rows: the batch.
        keep: columns at the right end whose logits are computed (answer positions only: an LM
            head over the whole vocabulary at every position is a large share of a step).
        pad_id: padding token.
        limit: the longest prefix that may be shared (columns whose logits are kept must stay out of it).
        share_prefix: push the rows' common prefix through the model once.
        trunk: a :class:`~workbench.lifecycle.finetune.trunk.FrozenTrunk` whose cached lower-layer
            outputs replace the frozen layers, or None (the whole model runs).
    """
    plan = layout(rows, shared_prefix_len(rows.chains, limit, share_prefix), pad_id)
    if trunk is None:
        device = next(model.parameters()).device

        def run(input_ids, positions, mask, cache, columns):
            return model(
                input_ids=input_ids.to(device),
                attention_mask=attention_mask(model, mask.to(device)),
                position_ids=positions.to(device),
                past_key_values=cache,
                use_cache=cache is not None,
                logits_to_keep=columns,
            ).logits

        prefix = torch.tensor([rows.chains[0][: plan.prefix_len]], dtype=torch.long)
        return prefix_passes(run, plan, prefix, plan.input_ids, keep)[1]
    hidden = trunk.hidden(rows, limit, share_prefix, pad_id)  # B tensors (sequence length, H)
    # each column's trunk output; padding columns get zeros (only they attend to themselves)
    return prefix_passes(trunk.top_logits, plan, hidden[0][None, : plan.prefix_len], gather(hidden, plan.source), keep)[
        1
    ]


def prefix_passes(run, plan: Layout, prefix_inputs: torch.Tensor, main_inputs: torch.Tensor, keep: int | None):
    """The prefix pass (one row; its keys and values then expanded over the rows), then the main pass.

    Args:
        run: ``run(inputs, positions, mask, cache, keep)``, one pass of a stack of layers: inputs
            are (rows, columns) token ids or (rows, columns, H) hidden states; ``cache`` a
            DynamicCache it fills; it returns the outputs of the last ``keep`` columns (None: all).
        plan: the batch's layout.
        prefix_inputs: (1, P) the prefix's inputs.
        main_inputs: (B, Q) or (B, Q, H) the main pass's inputs.
        keep: columns whose outputs the main pass returns (None: all).

    Returns:
        The prefix pass's output (None without a shared prefix; all P columns when ``keep`` is
        None, else the last one) and the main pass's.
    """
    prefix_len, batch = plan.prefix_len, plan.input_ids.shape[0]
    cache, prefix_out = None, None
    if prefix_len:
        causal = torch.tril(torch.ones((prefix_len, prefix_len), dtype=torch.bool))[None, None]
        cache = DynamicCache()
        prefix_out = run(prefix_inputs, torch.arange(prefix_len)[None], causal, cache, None if keep is None else 1)
        cache = DynamicCache(
            ddp_cache_data=[
                (layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1))
                if layer.is_initialized
                else (None, None)  # a layer below a frozen trunk's top: never run here
                for layer in cache.layers
            ]
        )
    return prefix_out, run(main_inputs, plan.positions, plan.mask, cache, keep)


def attention_mask(model, mask: torch.Tensor) -> torch.Tensor:
    """A boolean 4-D mask for SDPA, or an additive one for eager attention."""
    implementation = getattr(model.config, "_attn_implementation", "sdpa")
    if implementation == "sdpa":
        return mask
    if implementation == "eager":
        dtype = next(model.parameters()).dtype
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)
    raise NotImplementedError(
        f"the training losses need a custom attention mask; {implementation!r} attention does not take one"
    )


def gather(hidden: list[torch.Tensor], source: torch.Tensor) -> torch.Tensor:
    """(B, Q, H): row b's ``hidden[b][source[b, q]]``, zeros where ``source`` is -1."""
    batch, queries = source.shape
    out = torch.zeros((batch, queries, hidden[0].shape[-1]), dtype=hidden[0].dtype)
    for row, states in enumerate(hidden):
        columns = source[row] >= 0
        out[row, columns] = states[source[row, columns]]
    return out
