"""E2E NLG: the generation table task, the multi-reference scorer (it reproduces the published systems'
measured sacrebleu figures), the slot matcher on human references, paired tests, and beam search's cache."""

from __future__ import annotations

import numpy as np
import pytest
import sacrebleu

from workbench.lifecycle import e2e
from workbench.metric_aware.multiref import (
    corpus_value,
    item_statistics,
    paired_difference,
    resample_weights,
    score_systems,
)
from workbench.metric_aware.slots import missing_values, parse_mr, slot_counts
from workbench.paths import data_dir
from workbench.tasks import DataFormatError, SpecError, get_task, read_table
from workbench.tasks.spec import TaskSpec, references_by_input

needs_data = pytest.mark.skipif(
    data_dir() is None or not (data_dir() / "e2e").is_dir(), reason="needs the E2E data in the data folder"
)


@pytest.fixture(scope="module")
def test_set():
    examples, references, positions = e2e.evaluation_items(get_task("e2e"), None)
    return [e.text for e in examples], references, positions


def test_corpus_scores_are_sacrebleus_with_uneven_reference_counts():
    hypotheses = ["the cat sat on a mat", "a dog ran far away", "blue spice is a pub"]
    references = [["the cat sat on the mat", "a cat on a mat"], ["the dog ran away"], ["Blue Spice is a pub", "a pub"]]
    streams = [[r[k] if k < len(r) else None for r in references] for k in range(2)]
    stats = item_statistics(hypotheses, references, metrics=("bleu", "chrf"))
    assert corpus_value("bleu", stats["bleu"].sum(axis=0)) == pytest.approx(
        sacrebleu.corpus_bleu(hypotheses, streams).score, abs=1e-9
    )
    assert corpus_value("chrf", stats["chrf"].sum(axis=0)) == pytest.approx(
        sacrebleu.corpus_chrf(hypotheses, streams).score, abs=1e-9
    )


@needs_data
def test_scorer_reproduces_the_published_systems_measured_figures(test_set):
    # Issue 18: sacrebleu multi-reference on the cleaned test references: TGen BLEU 38.7, chrF 61.4;
    # SC-LSTM BLEU 15.5, chrF 46.6 (its file covers the first 1,800 of the 1,847 MRs).
    mrs, references, positions = test_set
    assert len(mrs) == 1847
    published = e2e.published_outputs(positions)
    expected = {"tgen-std": (38.7, 61.4, 1847), "sclstm": (15.5, 46.6, 1800)}
    for system, (bleu, chrf, covered) in expected.items():
        keep = [i for i, text in enumerate(published[system]) if text is not None]
        assert len(keep) == covered
        stats = item_statistics(
            [published[system][i] for i in keep], [references[i] for i in keep], metrics=("bleu", "chrf")
        )
        assert round(corpus_value("bleu", stats["bleu"].sum(axis=0)), 1) == bleu, system
        assert round(corpus_value("chrf", stats["chrf"].sum(axis=0)), 1) == chrf, system


@needs_data
def test_slot_matcher_finds_the_values_in_human_references_and_tgens_edge_over_sc_lstm(test_set):
    rows = get_task("e2e").examples("test")
    counts = slot_counts([row.text for row in rows], [row.target for row in rows])
    reference_rate = counts[:, 0].sum() / counts[:, 1].sum()
    assert reference_rate < 0.01  # the cleaned references state their MR; 0.46% measured
    mrs, _, positions = test_set
    published = e2e.published_outputs(positions)
    rates = {}
    for system, texts in published.items():
        keep = [i for i, text in enumerate(texts) if text is not None]
        counts = slot_counts([mrs[i] for i in keep], [texts[i] for i in keep])
        rates[system] = counts[:, 0].sum() / counts[:, 1].sum()
    assert rates["tgen-std"] < 0.02 < 0.3 < rates["sclstm"]  # 0.8% and 48% measured


@pytest.mark.parametrize(
    "mr, text, missing",
    [
        ("name[The Mill], eatType[pub], familyFriendly[yes]", "The Mill is a kid friendly pub.", []),
        ("name[The Mill], eatType[pub], familyFriendly[yes]", "The Mill is a pub, not kid friendly.", [2]),
        ("name[The Mill], familyFriendly[no]", "The Mill does not welcome children.", []),
        ("name[Cocum], priceRange[£20-25], area[riverside]", "Cocum, by the river, costs £20-25.", []),
        ("name[Cocum], customer rating[5 out of 5]", "Cocum is highly rated.", []),
        ("name[Cocum], customer rating[5 out of 5]", "Cocum has a low rating.", [1]),
        ("name[Raja Indian Cuisine], food[Indian]", "Raja Indian Cuisine serves Chinese food.", [1]),
        ("name[Café Rouge], near[The Sorrento]", "Cafe Rouge is close to Sorrento.", []),
        ("name[Aromi], eatType[coffee shop], area[city centre]", "Aromi.", [1, 2]),
    ],
)
def test_slot_matcher_cases(mr, text, missing):
    pairs = parse_mr(mr)
    assert missing_values(mr, text) == [pairs[i] for i in missing]


def test_bad_mr_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"not an E2E meaning representation.*name\[x\] area"):
        parse_mr("name[x] area")


def test_paired_bootstrap_finds_a_better_system_and_not_an_equal_one():
    references = [[f"the pub number {i} is by the river"] for i in range(30)]
    good = [refs[0] for refs in references]
    bad = [f"a place {i}" for i in range(30)]
    a = item_statistics(good, references, metrics=("chrf",))["chrf"]
    b = item_statistics(bad, references, metrics=("chrf",))["chrf"]
    weights = resample_weights(30, 200, seed=1)
    better = paired_difference("chrf", a, b, weights)
    assert better["difference"] > 50 and better["p_better"] == 0.0 and better["ci_low"] > 0
    same = paired_difference("chrf", a, a, weights)
    assert same["difference"] == 0 and same["p_better"] == 1.0
    table = score_systems({"good": {"chrf": a}, "bad": {"chrf": b}}, n_resamples=200)
    row = table.set_index("system").loc["good"]
    assert row["ci_low"] <= row["value"] == 100.0 <= row["ci_high"] and row["items"] == 30


def test_the_score_table_names_what_produced_each_system():
    references = [["Aromi is a pub"], ["Blue Spice is a cafe"]]
    mrs = ["name[Aromi], eatType[pub]", "name[Blue Spice], eatType[coffee shop]"]
    outputs = {"greedy": ["Aromi is a pub", "A cafe"], "tgen-std": ["Aromi pub", None], e2e.TRIVIAL: ["x", "y"]}
    table = e2e.score(e2e.statistics(outputs, mrs, references), 20, model="finetuned/ab/model (bf16)")
    producer = table.groupby("system").model.first().to_dict()
    assert producer == {"greedy": "finetuned/ab/model (bf16)", "tgen-std": "published", e2e.TRIVIAL: "none"}
    assert table.set_index("system").loc["tgen-std", "items"].eq(1).all()  # scored on the MRs it covers


def test_slot_error_is_lower_is_better_in_paired_tests():
    references = [["Aromi is a pub"]] * 10
    mrs = ["name[Aromi], eatType[pub]"] * 10
    full = item_statistics(["Aromi is a pub"] * 10, references, mrs, metrics=("slot_error",))["slot_error"]
    empty = item_statistics(["It is nice"] * 10, references, mrs, metrics=("slot_error",))["slot_error"]
    assert corpus_value("slot_error", empty.sum(axis=0)) == 1.0
    assert paired_difference("slot_error", full, empty, resample_weights(10, 50))["p_better"] == 0.0


def test_text_answer_table_task(tmp_path):
    path = tmp_path / "gen.csv"
    path.write_text(
        'mr,ref\n"name[A], area[riverside]",A is by the river.\n"name[A], area[riverside]", A is riverside. \n'
    )
    task = TaskSpec(name="gen", text_column="mr", label_column="ref", test=str(path), answer_type="text").task()
    rows = task.examples("test")
    assert [row.target for row in rows] == ["A is by the river.", "A is riverside."] and task.grid is None
    assert task.answer(rows[1]) == "A is riverside." and task.parse("  text \n") == "text"
    firsts, references = references_by_input(rows)
    assert len(firsts) == 1 and references == [["A is by the river.", "A is riverside."]]
    with pytest.raises(SpecError, match="text answer_type has no label_map or grid"):
        TaskSpec(name="g", text_column="mr", label_column="ref", test=str(path), answer_type="text", grid=[1, 2])
    with pytest.raises(SpecError, match="answer_type must be one of"):
        TaskSpec(name="g", text_column="mr", label_column="ref", test=str(path), answer_type="words")
    jsonl = tmp_path / "gen.jsonl"
    jsonl.write_text('{"mr": "name[A]", "ref": 3}\n')
    with pytest.raises(DataFormatError, match=r"gen.jsonl:1: label 3 in column 'ref' is not text"):
        read_table(jsonl, "mr", "ref", text_labels=True)


@needs_data
def test_e2e_task_reads_the_development_and_test_files():
    task = get_task("e2e")
    assert len(task.examples("train")) == 4299 and len(task.examples("test")) == 4693
    examples, references, positions = e2e.evaluation_items(task, 20, seed=3)
    assert positions == sorted(positions) and len(set(positions)) == 20
    assert all(example.text == task.examples("test")[0].text or refs for example, refs in zip(examples, references))
    assert e2e.evaluation_items(task, 20, seed=3)[2] == positions != e2e.evaluation_items(task, 20, seed=4)[2]


@needs_data
def test_settings_are_chosen_on_test_mrs_the_profile_does_not_evaluate():
    task = get_task("e2e")
    config = e2e.Config(items=500)
    examples, references = e2e.selection_items(task, config, 64)
    evaluated, _, _ = e2e.evaluation_items(task, 500)
    assert len(examples) == len(references) == 64
    assert not {e.text for e in examples} & {e.text for e in evaluated}  # an MR is one input: no overlap
    assert [e.text for e in e2e.selection_items(task, config, 64)[0]] == [e.text for e in examples]  # seeded
    with pytest.raises(ValueError, match="evaluates every test MR"):
        e2e.selection_items(task, e2e.Config(items=None), 64)


def test_beam_search_is_cached_and_matches_hf_generate(lm, tmp_path):
    from workbench.inference.engine import HFEngine
    from workbench.inference.gencache import GenerationCache

    engine = HFEngine(lm, cache=GenerationCache(tmp_path, lm.fingerprint), progress=False)
    prompts = [
        lm.tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in ("Name a colour.", "Describe a pub by the river in one sentence.")
    ]
    first = e2e.beam_search(engine, prompts, beams=3, max_new_tokens=8, batch_size=2)
    ids = lm.tokenizer(prompts[1], return_tensors="pt", add_special_tokens=False)
    alone = lm.model.generate(
        **ids, num_beams=3, do_sample=False, max_new_tokens=8, eos_token_id=sorted(engine.eos_ids)
    )
    assert first[1] == lm.tokenizer.decode(alone[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip()
    calls = []
    engine.model.generate = lambda **kwargs: calls.append(kwargs)  # a cached call must not decode again
    try:
        assert e2e.beam_search(engine, prompts, beams=3, max_new_tokens=8, batch_size=2) == first and not calls
    finally:
        del engine.model.generate


def test_mbr_cosine_picks_the_central_sample():
    samples = ["Aromi is a pub by the river.", "Aromi is a riverside pub.", "Purple elephants sing loudly."]
    from workbench.metric_aware.mbr import mbr_select

    result = mbr_select(samples, "minilm_cosine")
    assert result.index in (0, 1) and result.utility.shape == (3, 3)
    np.testing.assert_allclose(np.diag(result.utility), 1.0, atol=1e-6)
