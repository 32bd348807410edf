"""The answer grid as a token trie, and exact draws from the sampler's distribution over it.

A grid task's K answers, each followed by the end-of-turn token, are K token paths. They share
prefixes ("3.2" and "3.4" share "3", "."), so they form a trie whose nodes are the proper prefixes
of the paths, the root (the empty prefix, the prompt itself) included. Given the sampler's
next-token distribution at every node, which one tree forward pass computes, the probability that a
sample is exactly path k is the product of its tokens' probabilities, and everything else, the
*off-grid* mass, is known too: nothing but the trie's own nodes is needed.

Off-grid draws are drawn exactly by walking the trie. At a node, a token's off-grid mass is its
probability times the fraction of the mass under it that is off the grid: 1 for a token that
leaves the trie, 0 for the end of turn that completes a grid answer, and for a token that goes on
inside the trie, the off-grid fraction of that child, computed leaves first::

    off(node) = 1 - sum over children c in the trie of p(c | node) * (1 - off(node + c))

The walk draws a token with weight p(token | node) * off(child), so that at every node it follows
the sampler's distribution conditioned on ending off the grid; it stops at the first token that
leaves the trie. The prefix walked so far (the *forced prefix*) is then decoded further by the
real sampler, which is exactly the conditional distribution of the rest of the sample.

>>> trie = AnswerTrie([[1, 9], [2, 3, 9]])        # two answers, 9 is the end of turn
>>> sorted(trie.nodes)                             # root, "1", "2", "2 3"
[(), (1,), (2,), (2, 3)]
>>> probs = np.full((4, 10), 0.1)                  # every node: uniform over 10 tokens
>>> exact = TrieDistribution(trie, probs)
>>> exact.grid_probs().round(4).tolist()           # 0.1 * 0.1 and 0.1 * 0.1 * 0.1
[0.01, 0.001]
>>> round(exact.off_grid_mass, 4)
0.989
>>> exact.exit_weights(()).round(4)[:4].tolist()   # token 1: 0.1 * off("1") = 0.1 * 0.9
[0.1, 0.09, 0.099, 0.1]
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np


class AnswerTrie:
    """K answer token paths (each ending with the end-of-turn token) as a trie.

    Args:
        paths: K distinct token lists; the last token of each ends the answer.

    Attributes:
        paths: the K paths, as tuples.
        nodes: prefix -> row, for the root ``()`` (row 0) and every proper prefix of a path, in the
            order a pass over the paths meets them (prefix length 1 first within a path).
        children: node prefix -> {next token: child prefix}, the complete paths included as leaves.

    Raises:
        ValueError: a path is empty, or two answers have the same tokens.
    """

    def __init__(self, paths: Sequence[Sequence[int]]):
        self.paths = [tuple(int(t) for t in path) for path in paths]
        if any(not path for path in self.paths):
            raise ValueError("an answer path needs at least its end-of-turn token")
        if len(set(self.paths)) != len(self.paths):
            raise ValueError("two grid answers have the same tokens: their probabilities would be counted twice")
        self.nodes: dict[tuple[int, ...], int] = {(): 0}
        self.children: dict[tuple[int, ...], dict[int, tuple[int, ...]]] = {(): {}}
        for path in self.paths:
            for length in range(1, len(path) + 1):
                prefix = path[:length]
                if length < len(path):
                    self.nodes.setdefault(prefix, len(self.nodes))
                    self.children.setdefault(prefix, {})
                self.children[prefix[:-1]][prefix[-1]] = prefix
        if any(path in self.nodes for path in self.paths):
            raise ValueError("an answer path is a prefix of another: the end-of-turn token must end every answer")

    def node_paths(self) -> list[list[int]]:
        """For each non-root node (in row order), the rows of its ancestors and itself, root excluded."""
        return [[self.nodes[prefix[:j]] for j in range(1, len(prefix) + 1)] for prefix in list(self.nodes)[1:]]


class TrieDistribution:
    """The sampler's exact distribution over one prompt's grid answers, and off-grid walks.

    Args:
        trie: the answers' :class:`AnswerTrie`.
        probs: (nodes, vocab) the distribution the sampler draws the next token from at each node
            (after temperature, top-k and top-p), rows as in ``trie.nodes``; float64 recommended.
        model_logprobs: optional (nodes, vocab) log-probabilities the model gives each token
            (temperature 1, unfiltered), reported with every drawn token.
    """

    def __init__(self, trie: AnswerTrie, probs: np.ndarray, model_logprobs: np.ndarray | None = None):
        self.trie, self.probs, self.model_logprobs = trie, np.asarray(probs, dtype=np.float64), model_logprobs
        if self.probs.shape[0] != len(trie.nodes):
            raise ValueError(f"probs has {self.probs.shape[0]} rows for a trie of {len(trie.nodes)} nodes")
        self.off = np.zeros(len(trie.nodes))
        for prefix in sorted(trie.nodes, key=len, reverse=True):  # children before their parents
            row = trie.nodes[prefix]
            on = sum(self.probs[row, t] * (1.0 - self._off_of(child)) for t, child in trie.children[prefix].items())
            self.off[row] = min(1.0, max(0.0, 1.0 - on))  # rounding can step a hair outside [0, 1]
        self._cumulative: dict[int, tuple[np.ndarray, int]] = {}  # per node: cumulative weights, last positive

    def _off_of(self, prefix: tuple[int, ...]) -> float:
        """Off-grid fraction under a child: 0 for a complete answer (a leaf)."""
        row = self.trie.nodes.get(prefix)
        return 0.0 if row is None else float(self.off[row])

    @property
    def off_grid_mass(self) -> float:
        """Probability that a sample is not one of the grid's token paths."""
        return float(self.off[0])

    def expected_prefixes(self, n: int, ends: set[int]) -> float:
        """Expected number of distinct forced prefixes among ``n`` draws that must be decoded further
        (those leaving the trie with a token not in ``ends``): what decoding the off-grid draws costs."""
        reach = np.array(
            [np.prod([self.probs[self.trie.nodes[p[:j]], t] for j, t in enumerate(p)]) for p in self.trie.nodes]
        )
        exits = reach[:, None] * self.probs
        for prefix, row in self.trie.nodes.items():
            exits[row, list(self.trie.children[prefix])] = 0.0
        exits[:, [t for t in ends if t < exits.shape[1]]] = 0.0
        return float(-np.expm1(n * np.log1p(-np.clip(exits, 0.0, 1.0 - 1e-16))).sum())

    def grid_probs(self) -> np.ndarray:
        """(K,) probability of each answer path, in the order of ``trie.paths``."""
        nodes = self.trie.nodes
        return np.array([np.prod([self.probs[nodes[p[:j]], p[j]] for j in range(len(p))]) for p in self.trie.paths])

    def exit_weights(self, prefix: tuple[int, ...]) -> np.ndarray:
        """(vocab,) each next token's off-grid mass at node ``prefix``, relative to the node's own mass."""
        weights = self.probs[self.trie.nodes[prefix]].copy()
        for token, child in self.trie.children[prefix].items():
            weights[token] *= self._off_of(child)
        return weights

    def walk(self, rng: np.random.Generator) -> tuple[int, ...]:
        """One off-grid forced prefix: trie tokens, then the first token that leaves the trie.

        Raises:
            ValueError: the distribution has no off-grid mass to draw from.
        """
        if self.off_grid_mass <= 0.0:
            raise ValueError("no off-grid mass: every sample is a grid answer")
        prefix: tuple[int, ...] = ()
        while True:
            row = self.trie.nodes[prefix]
            if row not in self._cumulative:
                weights = self.exit_weights(prefix)
                self._cumulative[row] = np.cumsum(weights), int(np.flatnonzero(weights > 0)[-1])
            cumulative, last = self._cumulative[row]
            # side="right": the first token whose cumulative weight exceeds u, so zero-weight tokens
            # never win; ``last`` catches u * total rounding up to the total.
            token = min(last, int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right")))
            prefix = prefix + (token,)
            if prefix not in self.trie.nodes:
                return prefix

    def draw(self, n: int, rng: np.random.Generator) -> list[int | tuple[int, ...]]:
        """``n`` iid draws in draw order: a path index for a grid answer, a forced prefix (tuple) off the grid."""
        grid = self.grid_probs()
        weights = np.append(grid, self.off_grid_mass)
        outcomes = rng.choice(len(weights), size=n, p=weights / weights.sum())
        return [int(k) if k < len(grid) else self.walk(rng) for k in outcomes]

    def token_logprobs(self, tokens: Sequence[int]) -> list[float]:
        """The model's log-probability of each token of a trie walk (a path or a forced prefix)."""
        if self.model_logprobs is None:
            raise ValueError("this distribution was built without model_logprobs")
        return [float(self.model_logprobs[self.trie.nodes[tuple(tokens[:j])], t]) for j, t in enumerate(tokens)]


def first_end(
    tokens: Sequence[int], eos_ids: set[int], stop: tuple[str, ...], decode: Callable[[list[int]], str]
) -> tuple[int, str] | None:
    """Where the engine's sampler would end a sample that draws ``tokens``: (index, "eos" | "stop"), or None.

    After each token it checks, as :meth:`workbench.inference.engine.HFEngine.sample` does, an
    end-of-sequence token first, else whether the text of the last ``max(len(stop)) + 1`` tokens
    contains a stop string.

    >>> first_end([5, 6, 0, 7], {0}, (), str)
    (2, 'eos')
    >>> first_end([5, 6, 7], {0}, ("67",), lambda ids: "".join(map(str, ids)))
    (2, 'stop')
    """
    tail = max((len(s) for s in stop), default=0) + 1
    for step, token in enumerate(tokens):
        if token in eos_ids:
            return step, "eos"
        if stop and any(s in decode(list(tokens[max(0, step + 1 - tail) : step + 1])) for s in stop):
            return step, "stop"
    return None


def fast_path_refusal(
    trie: AnswerTrie,
    temperature: float,
    max_new_tokens: int,
    eos_ids: set[int],
    stop: tuple[str, ...],
    decode: Callable[[list[int]], str],
) -> str | None:
    """Why the trie draws would not be the sampler's draws for these settings, or None when they are exact.

    The trie gives the probability of each answer *as a complete answer*; the sampler only produces
    it when nothing ends the sample earlier or cuts it short: no stop string fires and no
    end-of-sequence token comes before the answer's end, and the answer fits ``max_new_tokens``.
    Greedy decoding (temperature 0) has nothing to sample.
    """
    if temperature == 0:
        return "greedy decoding (temperature 0)"
    for path in trie.paths:
        if len(path) > max_new_tokens:
            return f"a grid answer takes {len(path)} tokens, more than max_new_tokens={max_new_tokens}"
        if first_end(path, eos_ids, stop, decode) != (len(path) - 1, "eos"):
            return f"the sampler would end the grid answer {decode(list(path[:-1]))!r} early (stop string or eos)"
    return None


def draw_generator(seed: int, prompt: str) -> np.random.Generator:
    """The random generator of one prompt's grid draws: depends on the seed and the prompt only.

    >>> draw_generator(0, "a").random() == draw_generator(0, "a").random() != draw_generator(1, "a").random()
    True
    """
    digest = hashlib.sha256(f"{seed}\0grid draws\0{prompt}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))
