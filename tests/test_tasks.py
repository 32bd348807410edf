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


def test_unknown_task_lists_registered_and_shipped():
    with pytest.raises(KeyError, match=r"sst5.*shipped specs: \[.*'sick'"):
        get_task("nope")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        get_task("missing.yaml")


def test_sst5_prompt_uses_chat_template_and_shots(lm, sst5):
    shots = sst5.fewshot(5, seed=0)
    assert sorted(shot.target for shot in shots) == [1, 2, 3, 4, 5]  # one per rating
    example = sst5.examples("test", limit=1, seed=0)[0]
    prompt = sst5.prompt(example, lm.tokenizer, shots)
    assert prompt.count("<|im_start|>user") == 6 and prompt.count("<|im_start|>assistant") == 6
    assert prompt.endswith("<|im_start|>assistant\n")
    assert "-LRB-" not in prompt and " 's" not in prompt.split("Review:")[-1]


class Plain:
    chat_template = None


def test_plain_prompt_without_chat_template(sst5):
    example = sst5.examples("test", limit=1)[0]
    prompt = sst5.prompt(example, Plain(), sst5.fewshot(2))
    assert prompt.count("Answer:") == 3 and prompt.endswith("Answer:")


def test_an_item_can_never_be_its_own_demonstration(sst5):
    shots = sst5.fewshot(3, seed=0)
    with pytest.raises(ValueError, match="one of its own few-shot demonstrations"):
        sst5.prompts(sst5.examples("test", limit=2) + [shots[1]], Plain(), shots)


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
        _ = gsm.candidates


# ------------------------------------------------------------------ the table task


def test_table_task_from_a_file(tmp_path):
    path = tmp_path / "ratings.tsv"
    path.write_text("text\tscore\nlovely\t9\nawful\t2\n")
    everything_is_test = {"train": 0, "dev": 0, "test": 1}
    task = get_task(
        "table",
        path=str(path),
        text_column="text",
        label_column="score",
        low=0,
        high=10,
        fractions=everything_is_test,
        name="mine",
    )
    assert task.name == "mine"  # get_task's own first parameter no longer swallows name=
    assert task.candidates == [str(i) for i in range(11)]
    assert [ex.target for ex in task.examples("test")] == [9.0, 2.0]
    assert task.parse("I give it 7") == 7.0 and task.parse("11") is None
    # No train rows: few-shot demonstrations are refused rather than drawn from the test rows.
    with pytest.raises(ValueError, match="no 'train' rows.*Few-shot demonstrations come from 'train'"):
        task.fewshot(2)
    assert task.fewshot(0) == []


def write_reviews(path, n):
    lines = ["review\tstars"] + [f"review number {i} {'good' if i % 5 > 2 else 'bad'}\t{i % 5 + 1}" for i in range(n)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fewshot_demos_never_come_from_the_evaluated_split(tmp_path):
    """Issue 10: with limit=100 and 5 shots, 250 of 250 demos over 50 seeds were test items."""
    path = write_reviews(tmp_path / "reviews.tsv", 500)
    task = get_task("table", path=str(path), text_column="review", label_column="stars")
    splits = {split: task.examples(split) for split in ("train", "dev", "test")}
    ids = {split: {ex.id for ex in rows} for split, rows in splits.items()}
    texts = {split: {ex.text for ex in rows} for split, rows in splits.items()}
    assert sum(len(rows) for rows in splits.values()) == 500 and len(ids["test"]) > 40
    assert not (ids["train"] & ids["test"] or ids["train"] & ids["dev"] or ids["dev"] & ids["test"])
    assert not (texts["train"] & texts["test"])
    leaked = demos = 0
    for seed in range(50):
        evaluated = task.examples("test", limit=100, seed=seed)
        shots = task.fewshot(5, seed=seed)
        demos += len(shots)
        leaked += sum(shot.id in ids["test"] or shot.id in {ex.id for ex in evaluated} for shot in shots)
        assert {shot.id for shot in shots} <= ids["train"]
    assert (leaked, demos) == (0, 250)
    # The same file and settings give the same split (and a rebuilt task the same identity).
    again = get_task("table", path=str(path), text_column="review", label_column="stars")
    assert [ex.id for ex in again.examples("test")] == [
        ex.id for ex in splits["test"]
    ] and again.identity == task.identity


def test_one_file_per_split(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    train = write_reviews(tmp_path / "train" / "data.tsv", 30)
    test = write_reviews(tmp_path / "test" / "data.tsv", 10)  # same name, same rows 0..9: ids must still differ
    task = get_task("table", train=str(train), test=str(test), text_column="review", label_column="stars")
    assert len(task.examples("train")) == 30 and len(task.examples("test")) == 10
    assert not {ex.id for ex in task.examples("train")} & {ex.id for ex in task.examples("test")}
    prompts = task.prompts(task.examples("test"), Plain(), task.fewshot(5, seed=0))
    assert len(prompts) == 10 and task.examples("test")[0].text in prompts[0]
    with pytest.raises(ValueError, match="no 'dev' rows"):
        task.examples("dev")
    with pytest.raises(ValueError, match="either 'path'"):
        get_task("table", path=str(train), test=str(test), text_column="review", label_column="stars")
