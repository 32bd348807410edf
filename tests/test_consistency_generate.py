"""Queries, variants and response generation for SimCT (workbench.consistency.generate).

Generation runs the real embedded model, passed as a loaded model so that the tests never touch
the user's stage registry, on 2 queries x 2 samples with a few new tokens.
"""

import json

import pytest

from workbench.consistency.generate import (
    QUERY_COLUMNS,
    Variant,
    build_queries,
    generate_responses,
    variant_key,
    variant_seed,
)
from workbench.consistency.responses import RESPONSE_FIELDS, load_responses
from workbench.inference.engine import HFEngine

TOKENS = 6


@pytest.fixture(scope="module")
def queries():
    return build_queries(n_closed=1, n_open=1, seed=0)


@pytest.fixture()
def sample_calls(monkeypatch):
    """Records the prompts of every local HFEngine.sample call (the served engine runs in the same process)."""
    calls = []
    original = HFEngine.sample

    def spy(self, prompts, n, config=None):
        calls.append(list(prompts))
        return original(self, prompts, n, config)

    monkeypatch.setattr(HFEngine, "sample", spy)
    return calls


def test_query_set_is_labelled_balanced_and_seeded():
    queries = build_queries(n_closed=5, n_open=4, seed=3)
    assert tuple(queries.columns) == QUERY_COLUMNS
    assert queries.groupby("query_type").size().to_dict() == {"closed": 5, "open": 4}
    assert queries.groupby("source").size().to_dict() == {
        "sst5-rating": 3,
        "gsm8k": 2,
        "stsb-paraphrase": 2,
        "sst5-explain": 2,
    }
    kinds = dict(zip(queries.source, queries.query_type, strict=True))
    assert kinds == {"sst5-rating": "closed", "gsm8k": "closed", "stsb-paraphrase": "open", "sst5-explain": "open"}
    assert queries.query_id.is_unique
    assert queries[queries.source == "stsb-paraphrase"]["query"].str.startswith("Paraphrase this sentence: ").all()
    # SST-5 serves both types, never with the same sentence.
    rated = {q.split(":", 1)[1] for q in queries[queries.source == "sst5-rating"].query_id}
    explained = {q.split(":", 1)[1] for q in queries[queries.source == "sst5-explain"].query_id}
    assert rated and explained and not rated & explained
    assert build_queries(5, 4, seed=3).equals(queries)
    assert not build_queries(5, 4, seed=4).query_id.equals(queries.query_id)


def test_variant_settings_prompt_and_validation(lm):
    variant = Variant(
        "hot", lm, temperature=1.2, top_p=0.9, max_new_tokens=7, system_prompt="Be brief.", template="Q: {query}"
    )
    config = variant.sampling_config(seed=11)
    assert (config.temperature, config.top_p, config.max_new_tokens, config.seed) == (1.2, 0.9, 7, 11)
    prompt = variant.prompt("What is 2+2?", lm.tokenizer)
    assert "Be brief." in prompt and "Q: What is 2+2?" in prompt and "SmolLM" not in prompt
    assert "SmolLM" in Variant("default", lm).prompt("x", lm.tokenizer)  # None keeps the template's own system prompt
    assert variant.describe()["stage"] == f"{lm.name}@{lm.fingerprint_id}"
    with pytest.raises(ValueError, match="backend"):
        Variant("v", backend="grpc")
    with pytest.raises(ValueError, match="{query}"):
        Variant("v", template="no placeholder")
    with pytest.raises(ValueError, match="invalid sampling settings"):
        Variant("v", top_p=0)
    with pytest.raises(ValueError, match="file name"):
        Variant("a/b")
    # Seeds: stable across processes, different per variant name.
    assert variant_seed(0, "reference") == variant_seed(0, "reference") != variant_seed(0, "aa")
    assert variant_key(variant, 2, 0) != variant_key(
        Variant(
            "hot", lm, temperature=1.1, top_p=0.9, max_new_tokens=7, system_prompt="Be brief.", template="Q: {query}"
        ),
        2,
        0,
    )


def test_generate_writes_a_valid_response_table_and_resumes(lm, queries, tmp_path, sample_calls):
    variants = [Variant("ref", lm, max_new_tokens=TOKENS), Variant("hot", lm, temperature=1.5, max_new_tokens=TOKENS)]
    table = generate_responses(
        variants, queries, samples_per_query=2, seed=0, out_dir=tmp_path, disk_cache=False, progress=False
    )
    assert list(table.columns[:6]) == list(RESPONSE_FIELDS)
    assert len(table) == 2 * 2 * 2
    assert set(table.groupby(["stage", "query_id"]).seed.apply(tuple)) == {(0, 1)}
    assert table.query_type.tolist() == ["closed"] * 2 + ["open"] * 2 + ["closed"] * 2 + ["open"] * 2
    assert set(table[table.stage == "hot"].temperature) == {1.5}
    assert set(table.sampling_seed) == {variant_seed(0, "ref"), variant_seed(0, "hot")}
    on_disk = load_responses([tmp_path / "ref.jsonl", tmp_path / "hot.jsonl"])
    assert on_disk[list(RESPONSE_FIELDS)].equals(table[list(RESPONSE_FIELDS)])
    assert len(sample_calls) == 2

    # A rerun finds everything on disk and generates nothing.
    again = generate_responses(variants, queries, 2, seed=0, out_dir=tmp_path, disk_cache=False, progress=False)
    assert again.equals(table) and len(sample_calls) == 2

    # Interrupted run: "hot" lost its last query's second sample, and a torn line follows.
    path = tmp_path / "hot.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:25])
    with pytest.warns(UserWarning, match="unreadable line"):
        resumed = generate_responses(variants, queries, 2, seed=0, out_dir=tmp_path, disk_cache=False, progress=False)
    # Only the incomplete query is generated again.
    assert sample_calls[2:] == [[variants[1].prompt(queries["query"].iloc[1], lm.tokenizer)]]
    assert resumed.equals(table)
    assert len(path.read_text().splitlines()) == 4 and all(json.loads(line) for line in path.read_text().splitlines())

    # A call on a subset of the queries (a pilot) generates nothing and keeps the other queries' records.
    subset = generate_responses(
        variants, queries.iloc[:1], 2, seed=0, out_dir=tmp_path, disk_cache=False, progress=False
    )
    assert len(sample_calls) == 3 and len(subset) == 4 and len(path.read_text().splitlines()) == 4

    # Other settings under the same name make the stored records stale: all regenerated.
    changed = [Variant("hot", lm, temperature=1.5, max_new_tokens=TOKENS - 2)]
    generate_responses(changed, queries, 2, seed=0, out_dir=tmp_path, disk_cache=False, progress=False)
    assert len(sample_calls[3:]) == 1 and len(sample_calls[3]) == 2


def test_served_variant_gives_the_local_greedy_responses(lm, queries):
    variants = [
        Variant("local", lm, temperature=0, max_new_tokens=TOKENS),
        Variant("served", lm, temperature=0, max_new_tokens=TOKENS, backend="served"),
    ]
    table = generate_responses(variants, queries, samples_per_query=2, disk_cache=False, progress=False)
    local, served = (table[table.stage == name].response.tolist() for name in ("local", "served"))
    assert local == served and all(local)
    assert set(table[table.stage == "served"].backend) == {"served"}


def test_refuses_bad_inputs(lm, queries):
    with pytest.raises(ValueError, match="distinct"):
        generate_responses([Variant("a", lm), Variant("a", lm)], queries, 2, progress=False)
    with pytest.raises(ValueError, match="samples_per_query"):
        generate_responses([Variant("a", lm)], queries, 0, progress=False)


def test_batch_size_and_attention_variants(lm, queries, monkeypatch, tmp_path):
    """batch_size reaches the engine (and skips its disk cache); attn_implementation reaches the stage loader."""
    import workbench.lifecycle.stages as stages

    built, loaded = [], []
    original_init = HFEngine.__init__

    def spy_init(self, lm_, cache=None, batch_size=8, **kwargs):
        built.append((batch_size, cache is None))
        original_init(self, lm_, cache=cache, batch_size=batch_size, **kwargs)

    monkeypatch.setattr(HFEngine, "__init__", spy_init)
    monkeypatch.setattr(
        stages,
        "load_stage",
        lambda name, device="auto", base_model=None, attn_implementation=None, **_: (
            loaded.append((name, attn_implementation)) or lm
        ),
    )
    monkeypatch.setattr(
        "workbench.consistency.generate.stage_fingerprint", lambda stage, base_model=None: {"stub": stage}
    )
    variants = [
        Variant("batch-1", "base-fp32", temperature=0, max_new_tokens=TOKENS, batch_size=1),
        Variant("eager", "base-fp32", temperature=0, max_new_tokens=TOKENS, attn_implementation="eager"),
    ]
    table = generate_responses(variants, queries, samples_per_query=1, out_dir=tmp_path, progress=False)
    assert built == [(1, True), (8, False)]
    assert loaded == [("base-fp32", None), ("base-fp32", "eager")]
    assert table.groupby("stage").batch_size.first().fillna(0).to_dict() == {"batch-1": 1, "eager": 0}
    assert set(table[table.stage == "eager"].attn_implementation) == {"eager"}
    # Unset new fields stay out of the key (older response files stay valid); set ones change it.
    plain = Variant("v", "base-fp32")
    assert variant_key(plain, 2, 0) != variant_key(Variant("v", "base-fp32", batch_size=1), 2, 0)
    with pytest.raises(ValueError, match="batch_size"):
        Variant("v", batch_size=0)
