"""How the KV cache holds the tree of samples while they decode.

N samples of a prompt form a tree: they share the prompt, and samples that drew the same tokens so
far share those too. Rows that sit on the same tree node have the same next-token distribution, so
one forward pass per *node* is exact. Two layouts of that tree, with one interface:

* :class:`RowFrontier`: every frontier node is one batch row holding its own copy of the prompt's
  KV cache. Cheap per step for long generations, where the tree soon has one node per sample.
* :class:`TreeFrontier`: one batch row per *prompt*; each step appends the new nodes' tokens after
  the prompt and a 4-D attention mask lets every node see the prompt and its own ancestors only.
  Nothing is copied, so short answers (ratings, scores, labels) cost almost nothing beyond the
  prefill. Attention grows with the size of the tree, so it suits short generations.

Both expose ``logits`` (one row per frontier node) and ``extend(parents, tokens)``, which grows the
tree by one token under the given frontier nodes and returns the new frontier's logits.
"""

from __future__ import annotations

import torch
from transformers import DynamicCache


class RowFrontier:
    """Frontier nodes as batch rows, each with a full KV cache."""

    def __init__(self, model, cache: DynamicCache, mask: torch.Tensor, position: torch.Tensor, logits: torch.Tensor):
        self.model, self.cache, self.mask, self.position, self.logits = model, cache, mask, position, logits

    def extend(self, parents: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Append ``tokens[i]`` under frontier node ``parents[i]``; return the new (n, vocab) logits."""
        for layer in self.cache.layers:
            layer.batch_select_indices(parents)
        self.mask = torch.cat([self.mask[parents], self.mask.new_ones((len(parents), 1))], dim=1)
        position = self.position[parents]
        out = self.model(
            input_ids=tokens[:, None],
            attention_mask=self.mask,
            position_ids=position[:, None],
            past_key_values=self.cache,
            use_cache=True,
        )
        self.position = position + 1
        self.logits = out.logits[:, -1, :].float()
        return self.logits


class TreeFrontier:
    """One batch row per prompt; the sample tree is appended after it under a tree attention mask.

    Args:
        model: the causal LM.
        cache: KV cache with one row per prompt (P rows).
        mask: (P, T) prompt attention mask (0 on padding).
        position: (P,) rotary position of each prompt's first new token.
        logits: (P, vocab) first-token logits; the roots of the trees are the frontier.
        attention_bias: turns a boolean 4-D mask into what the model's attention takes.
    """

    def __init__(self, model, cache: DynamicCache, mask: torch.Tensor, position: torch.Tensor, logits: torch.Tensor, attention_bias):
        self.model, self.cache, self.position, self.logits = model, cache, position, logits
        self.attention_bias = attention_bias
        self.visible = mask.bool()  # (P, T): what a new node sees before its own ancestors are added
        # Per frontier node: its prompt, its depth, and the sequence slots of itself and its ancestors.
        self.node_prompt = list(range(len(position)))
        self.node_depth = [0] * len(position)
        self.node_path: list[list[int]] = [[] for _ in position]

    def extend(self, parents: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Append ``tokens[i]`` under frontier node ``parents[i]``; return the new (n, vocab) logits."""
        prompts, length = self.visible.shape
        parents_list, tokens_list = parents.tolist(), tokens.tolist()
        column, used = [], [0] * prompts
        for parent in parents_list:  # each prompt's new nodes take the next free columns
            column.append(used[self.node_prompt[parent]])
            used[self.node_prompt[parent]] += 1
        width = max(used)
        device = self.visible.device
        input_ids = torch.zeros((prompts, width), dtype=torch.long)
        positions = torch.zeros((prompts, width), dtype=torch.long)
        sees = self.visible[:, None, :].expand(prompts, width, length).clone()
        new_prompt, new_depth, new_path = [], [], []
        for parent, token, col in zip(parents_list, tokens_list, column):
            prompt, depth = self.node_prompt[parent], self.node_depth[parent] + 1
            path = self.node_path[parent] + [length + col]
            input_ids[prompt, col] = token
            positions[prompt, col] = self.position[prompt] + depth - 1
            sees[prompt, col, self.node_path[parent]] = True
            new_prompt.append(prompt)
            new_depth.append(depth)
            new_path.append(path)
        # A new node sees itself among the new columns; padding columns see only themselves.
        own = torch.eye(width, dtype=torch.bool, device=device).expand(prompts, width, width)
        mask = torch.cat([sees, own], dim=-1)[:, None]
        out = self.model(
            input_ids=input_ids.to(device),
            attention_mask=self.attention_bias(mask),
            position_ids=positions.to(device),
            past_key_values=self.cache,
            use_cache=True,
        )
        self.visible = torch.cat([self.visible, torch.zeros((prompts, width), dtype=torch.bool, device=device)], dim=1)
        self.node_prompt, self.node_depth, self.node_path = new_prompt, new_depth, new_path
        index_prompt = torch.tensor(new_prompt, device=device)
        index_column = torch.tensor(column, device=device)
        self.logits = out.logits[index_prompt, index_column].float()
        return self.logits
