import pytest

from workbench.tasks import get_task, parse_gsm8k, parse_number, parse_rating


def test_parsers_edge_cases():
    assert parse_number("-3.5 degrees") == -3.5
    assert parse_number("1,234,567 people") == 1234567.0
    assert parse_rating("5/5", 1, 5) == 5.0
    assert parse_rating("0", 1, 5) is None
    assert parse_gsm8k("no numbers here") is None
    assert parse_gsm8k("First 3, then 4, so 12") == 12.0
    assert parse_gsm8k("The answer is: $1,000.") == 1000.0


def test_unknown_task_lists_registered():
    with pytest.raises(KeyError, match="sst5"):
        get_task("nope")


def test_sst5_prompt_uses_chat_template_and_shots(lm, sst5):
    shots = sst5.fewshot(5, seed=0)
    assert sorted(shot.target for shot in shots) == [1, 2, 3, 4, 5]  # one per rating
    example = sst5.examples("test", limit=1, seed=0)[0]
    prompt = sst5.prompt(example, lm.tokenizer, shots)
    assert prompt.count("<|im_start|>user") == 6 and prompt.count("<|im_start|>assistant") == 6
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "-LRB-" not in prompt and " 's" not in prompt.split("Review:")[-1]


def test_plain_prompt_without_chat_template(sst5):
    class Plain:
        chat_template = None

    example = sst5.examples("test", limit=1)[0]
    prompt = sst5.prompt(example, Plain(), sst5.fewshot(2))
    assert prompt.count("Answer:") == 3 and prompt.endswith("Answer:")


def test_examples_limit_is_seeded(sst5):
    a = sst5.examples("dev", limit=5, seed=3)
    assert a == sst5.examples("dev", limit=5, seed=3)
    assert a != sst5.examples("dev", limit=5, seed=4)


def test_grids_and_answers():
    stsb = get_task("stsb")
    assert stsb.candidates[:3] == ["0.0", "0.1", "0.2"] and stsb.candidates[-1] == "5.0"
    example = stsb.examples("dev", limit=1)[0]
    assert stsb.answer(example) in stsb.candidates
    gsm = get_task("gsm8k")
    shot = gsm.fewshot(1)[0]
    assert "<<" not in gsm.answer(shot) and gsm.parse(gsm.answer(shot)) == shot.target
    with pytest.raises(ValueError, match="no answer grid"):
        gsm.candidates


def test_table_task_from_a_file(tmp_path):
    path = tmp_path / "ratings.tsv"
    path.write_text("text\tscore\nlovely\t9\nawful\t2\n")
    task = get_task("table", path=str(path), text_column="text", label_column="score", low=0, high=10)
    assert task.candidates == [str(i) for i in range(11)]
    assert [ex.target for ex in task.examples("test")] == [9.0, 2.0]
    assert task.parse("I give it 7") == 7.0 and task.parse("11") is None
