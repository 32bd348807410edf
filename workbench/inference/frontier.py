"""The decoding frontier: where N samples of each prompt stand, and how one more token is computed.

N samples of a prompt form a tree: they share the prompt, and samples that drew the same tokens so
far share those too. Rows on the same tree node have the same next-token distribution, so one
forward pass per *node* is exact. Two layouts of the samples, over the attention segments of
:mod:`workbench.inference.attention` (the prompt's keys are never copied per sample in either):

* :class:`TreeFrontier`: the new nodes of each step are appended after their prompt, and each
  sees the prompt and its own ancestors only. While samples agree (short answers: ratings, labels,
  the first tokens of a long answer) a step costs one token per *distinct* node, not per sample.
* :class:`RowFrontier`: once samples have diverged, each sample is one row with a buffer of the
  tokens it generated itself; all rows attend to their prompt's shared keys. A step costs one
  token per sample and reads each prompt's keys once, not once per sample.

Both expose ``logits`` (one row per frontier node) and ``extend(parents, tokens)``, which feeds
``tokens[i]`` under frontier node ``parents[i]`` and returns the new frontier's logits.
:meth:`TreeFrontier.to_rows` hands the samples over from the tree to rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.inference.attention import Pass, Segment


@dataclass
class PromptBatch:
    """B prompts pushed through the model once.

    Attributes:
        segments: the shared prefix segment (when there is one) and the per-prompt segment.
        next_position: (B,) position of each prompt's first new token.
        last_logits: (B, vocab) float32 distribution of the first new token.
    """

    segments: list[Segment]
    next_position: torch.Tensor
    last_logits: torch.Tensor

    def select(self, index: list[int]) -> PromptBatch:
        """The prompts ``index`` (the shared prefix is kept as it is; nothing copied when all are kept)."""
        if index == list(range(len(self.next_position))):
            return self
        rows = torch.tensor(index, device=self.next_position.device)
        segments = [s if s.kind == "shared" else _select_rows(s, rows) for s in self.segments]
        return PromptBatch(segments, self.next_position[rows], self.last_logits[rows])


def _select_rows(segment: Segment, rows: torch.Tensor) -> Segment:
    return Segment(
        segment.kind,
        segment.positions[rows],
        segment.valid[rows],
        {m: k[rows] for m, k in segment.keys.items()},
        {m: v[rows] for m, v in segment.values.items()},
    )


class TreeFrontier:
    """Samples as a tree appended after each prompt.

    Args:
        model: the causal LM.
        prompts: the prompts, one tree each; their first-token logits are the initial frontier.
    """

    def __init__(self, model, prompts: PromptBatch):
        self.model, self.prompts = model, prompts
        batch = len(prompts.next_position)
        device = prompts.next_position.device
        self.tree = Segment(
            "prompt",
            torch.zeros((batch, 0), dtype=torch.long, device=device),
            torch.zeros((batch, 0), dtype=torch.bool, device=device),
        )
        self.logits = prompts.last_logits
        # Per frontier node: its prompt, and the tree columns of its ancestors and itself.
        self.node_prompt = list(range(batch))
        self.node_path: list[list[int]] = [[] for _ in range(batch)]

    @property
    def depth(self) -> int:
        return len(self.node_path[0])

    def extend(self, parents: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Append ``tokens[i]`` under frontier node ``parents[i]``; return the new (n, vocab) logits."""
        batch, length = self.tree.positions.shape
        device = self.prompts.next_position.device
        column, used = [], [0] * batch
        for parent in parents.tolist():  # each prompt's new nodes take its next free columns
            column.append(used[self.node_prompt[parent]])
            used[self.node_prompt[parent]] += 1
        width = max(used)
        node_prompt = [self.node_prompt[p] for p in parents.tolist()]
        node_path = [self.node_path[p] + [length + c] for p, c in zip(parents.tolist(), column)]
        prompt_index = torch.tensor(node_prompt, device=device)
        column_index = torch.tensor(column, device=device)
        input_ids = torch.zeros((batch, width), dtype=torch.long, device=device)
        input_ids[prompt_index, column_index] = tokens.to(device)
        positions = (self.prompts.next_position + self.depth)[:, None].expand(batch, width).contiguous()
        filled = torch.zeros((batch, width), dtype=torch.bool, device=device)
        filled[prompt_index, column_index] = True
        self.tree.positions = torch.cat([self.tree.positions, positions], dim=1)
        self.tree.valid = torch.cat([self.tree.valid, filled], dim=1)
        sees = torch.zeros((batch, width, length + width), dtype=torch.bool)
        for prompt, col, path in zip(node_prompt, column, node_path):
            sees[prompt, col, path] = True  # its ancestors and itself
        segments = self.prompts.segments + [self.tree]
        step = Pass(segments, ("append", self.tree), positions, visible={len(segments) - 1: sees.to(device)})
        out = step.run(self.model, input_ids=input_ids, position_ids=positions)
        self.node_prompt, self.node_path = node_prompt, node_path
        self.logits = out.logits[prompt_index, column_index].float()
        return self.logits

    def to_rows(self, row_node: torch.Tensor) -> RowFrontier:
        """One row per sample, sample ``i`` standing on frontier node ``row_node[i]``.

        Rows must come grouped by prompt (prompt-major order), as the engine lays them out.
        """
        device = self.prompts.next_position.device
        nodes = row_node.to(device)
        row_prompt = torch.tensor(self.node_prompt, device=device)[nodes]
        rows = RowFrontier(self.model, self.prompts, row_prompt, self.logits[nodes])
        if self.depth:
            paths = torch.tensor(self.node_path, device=device)[nodes]  # (R, depth) tree columns
            for module in self.tree.keys:
                for source, target in ((self.tree.keys, rows.own.keys), (self.tree.values, rows.own.values)):
                    picked = source[module][row_prompt[:, None], :, paths].transpose(1, 2)  # (R, heads, depth, dim)
                    buffer = _buffer(None, rows.grid_size, self.depth, picked)
                    buffer[rows.slots, :, : self.depth] = picked
                    target[module] = buffer
            rows.length = self.depth
            rows.own.positions = (
                rows.prompts.next_position[:, None] + torch.arange(self.depth, device=device)
            ).repeat_interleave(rows.width, dim=0)
            rows.own.valid = torch.ones_like(rows.own.positions, dtype=torch.bool)
        return rows


class RowFrontier:
    """One row per sample, each with a buffer of its own generated keys after its prompt's shared ones.

    Args:
        model: the causal LM.
        prompts: the prompts the rows belong to.
        row_prompt: (R,) prompt of each row, grouped by prompt.
        logits: (R, vocab) each row's next-token logits.
    """

    def __init__(self, model, prompts: PromptBatch, row_prompt: torch.Tensor, logits: torch.Tensor):
        self.model, self.logits = model, logits
        self.length = 0  # tokens each row has generated into its own buffer
        device = prompts.next_position.device
        self.own = Segment(
            "row",
            torch.zeros((0, 0), dtype=torch.long, device=device),
            torch.zeros((0, 0), dtype=torch.bool, device=device),
        )
        self._lay_out(prompts, row_prompt, None)
        self.own.positions = torch.zeros((self.grid_size, 0), dtype=torch.long, device=device)
        self.own.valid = torch.zeros((self.grid_size, 0), dtype=torch.bool, device=device)

    @property
    def grid_size(self) -> int:
        return len(self.prompts.next_position) * self.width

    def _lay_out(self, prompts: PromptBatch, row_prompt: torch.Tensor, old_slots: torch.Tensor | None) -> None:
        """Place rows on a (prompts x width) grid of slots, dropping prompts without rows."""
        kept, local = torch.unique(row_prompt, return_inverse=True)
        counts = torch.bincount(local)
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(len(local), device=local.device) - starts[local]
        self.prompts = prompts.select(kept.tolist())
        self.width = int(counts.max())
        self.row_prompt = local
        self.slots = local * self.width + rank
        if old_slots is not None:  # move each row's own keys to its new slot
            for store in (self.own.keys, self.own.values):
                for module, buffer in store.items():
                    moved = buffer.new_zeros((self.grid_size, *buffer.shape[1:]))
                    moved[self.slots] = buffer[old_slots]
                    store[module] = moved
            for name in ("positions", "valid"):
                tensor = getattr(self.own, name)
                moved = tensor.new_zeros((self.grid_size, tensor.shape[1]))
                moved[self.slots] = tensor[old_slots]
                setattr(self.own, name, moved)

    def extend(self, parents: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Feed ``tokens[i]`` to row ``parents[i]`` (rows not in ``parents`` are finished)."""
        device = self.prompts.next_position.device
        parents = parents.to(device)
        row_prompt, slots = self.row_prompt[parents], self.slots[parents]
        if 2 * len(parents) <= self.grid_size:  # half the grid finished: pack the rows that go on
            prompts = self.prompts
            self._lay_out(prompts, row_prompt, slots)
        else:
            self.row_prompt, self.slots = row_prompt, slots
        for store in (self.own.keys, self.own.values):
            for module, buffer in store.items():
                store[module] = _buffer(buffer, self.grid_size, self.length + 1, buffer)
        slot_position = (self.prompts.next_position + self.length).repeat_interleave(self.width)
        self.own.positions = torch.cat([self.own.positions.reshape(self.grid_size, -1), slot_position[:, None]], dim=1)
        self.own.valid = torch.cat(
            [self.own.valid.reshape(self.grid_size, -1), torch.ones_like(slot_position[:, None], dtype=torch.bool)],
            dim=1,
        )
        query_positions = slot_position.view(-1, self.width)
        step = Pass(
            self.prompts.segments + [self.own],
            ("column", self.own, self.length),
            query_positions,
            slots=self.slots,
            allocate=self._allocate,
        )
        out = step.run(
            self.model, input_ids=tokens.to(device)[:, None], position_ids=slot_position[self.slots][:, None]
        )
        self.length += 1
        self.logits = out.logits[:, -1].float()
        return self.logits

    def _allocate(self, key: torch.Tensor) -> torch.Tensor:
        return _buffer(None, self.grid_size, self.length + 1, key)


def _buffer(buffer: torch.Tensor | None, rows: int, length: int, like: torch.Tensor) -> torch.Tensor:
    """A (rows, heads, capacity, dim) buffer holding at least ``length`` columns, grown by doubling."""
    capacity = 0 if buffer is None else buffer.shape[2]
    if buffer is not None and capacity >= length:
        return buffer
    grown = like.new_zeros((rows, like.shape[1], max(16, 2 * capacity, length), like.shape[-1]))
    if buffer is not None:
        grown[:, :, :capacity] = buffer
    return grown
