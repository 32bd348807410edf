"""Task specs: a `table` task described by a YAML or JSON file, and the held-out check on real data."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from workbench.tasks import SpecError, TaskSpec, get_task, load_task_spec, read_sst5
from workbench.tasks.__main__ import main as tasks_cli
from workbench.tasks.spec import SPEC_DIR

SST5_NAMES = ["very negative", "negative", "neutral", "positive", "very positive"]


class Plain:
    chat_template = None


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


REVIEWS = "review\tstars\n" + "".join(f"review {i}\t{i % 5 + 1}\n" for i in range(60))


# ------------------------------------------------------------------ held-out check: real files, only a spec


def test_sick_loads_through_the_shipped_spec_with_no_code():
    with pytest.warns(UserWarning, match=r"task 'sick': gold values off the answer grid .*test 175 of 4927"):
        sick = get_task("sick")
    sizes = {split: len(sick.examples(split)) for split in ("train", "dev", "test")}
    assert sizes == {"train": 4500, "dev": 500, "test": 4927}
    first = sick.examples("test")[0]  # the test file has CRLF line endings: nothing of them may remain
    assert first.text == "There is no boy playing outdoors and there is no man smiling" and first.target == 3.3
    assert not any("\r" in ex.text_b or "\r" in ex.text for ex in sick.examples("test"))
    assert all(1.0 <= ex.target <= 5.0 for split in sizes for ex in sick.examples(split))
    assert sick.candidates[:3] == ["1.0", "1.1", "1.2"] and len(sick.grid) == 41
    assert len(sick.off_grid("train")) == 127
    prompt = sick.prompt(first, Plain(), sick.fewshot(3, seed=0))
    assert prompt.count("Sentence 2:") == 4 and prompt.endswith("Answer:")
    # By path too, and the identity reflects the spec's content and data, not where the spec lies.
    with pytest.warns(UserWarning):
        assert get_task(SPEC_DIR / "sick.yaml").identity == sick.identity


def test_sst5_with_label_names_loads_through_a_spec(tmp_path):
    """A real 5-class review file with string labels: the SST-5 test set written with its label names.

    No PyPI package ships such a file, so it is derived from the shared SST-5 copy at test time.
    """
    gold = read_sst5("test")
    write(
        tmp_path / "data" / "sst5_names.txt",
        "sentence\tlabel\n" + "".join(f"{ex.text}\t{SST5_NAMES[int(ex.target) - 1]}\n" for ex in gold),
    )
    spec = write(
        tmp_path / "specs" / "sst5_names.yaml",
        """
name: sst5-names
path: ../data/sst5_names.txt       # relative to this spec; tab-separated, sniffed
text_column: sentence
label_column: label
label_map: {Very Negative: 1, Negative: 2, Neutral: 3, Positive: 4, Very Positive: 5}
fractions: {train: 0.5, dev: 0.1, test: 0.4}
""",
    )
    task = get_task(str(spec))
    rows = [ex for split in ("train", "dev", "test") for ex in task.examples(split)]
    assert len(rows) == len(gold) == 2210
    assert Counter(ex.target for ex in rows) == Counter(ex.target for ex in gold)
    assert sorted((ex.text, ex.target) for ex in rows) == sorted((ex.text, ex.target) for ex in gold)
    assert abs(len(task.examples("test")) - 884) < 10
    assert "1 very negative, 2 negative, 3 neutral, 4 positive, 5 very positive" in task.instruction
    shots = task.fewshot(5, seed=0)
    assert sorted(s.target for s in shots) == [1, 2, 3, 4, 5] and not {s.id for s in shots} & {
        e.id for e in task.examples("test")
    }


# ------------------------------------------------------------------ the spec format


def test_yaml_and_json_specs_agree_and_identity_follows_content(tmp_path):
    write(tmp_path / "reviews.tsv", REVIEWS)
    fields = {
        "name": "reviews",
        "path": "reviews.tsv",
        "text_column": "review",
        "label_column": "stars",
        "instruction": "Rate it.",
    }
    yaml_spec = write(tmp_path / "a.yaml", "\n".join(f"{k}: {v}" for k, v in fields.items()) + "\n")
    json_spec = write(tmp_path / "b.json", json.dumps(fields))
    a, b = get_task(str(yaml_spec)), get_task(json_spec)
    assert a.identity == b.identity and a.instruction == "Rate it."
    assert [ex.id for ex in a.examples("test")] == [ex.id for ex in b.examples("test")]
    assert get_task(str(yaml_spec), instruction="Rate it!").identity != a.identity  # overrides replace fields
    write(tmp_path / "reviews.tsv", REVIEWS.replace("review 3\t4", "review 3\t5"))
    assert get_task(str(yaml_spec)).identity != a.identity  # same spec, other data


def test_paths_from_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path / "data"))
    write(tmp_path / "data" / "mine" / "all.tsv", REVIEWS)
    spec = write(
        tmp_path / "elsewhere" / "mine.yaml",
        'path: "{data_dir}/mine/all.tsv"\ntext_column: review\nlabel_column: stars\n',
    )
    task = get_task(spec)
    assert task.name == "mine" and sum(len(task.examples(s)) for s in ("train", "dev", "test")) == 60
    monkeypatch.setattr("workbench.tasks.spec.data_dir", lambda: None)
    with pytest.raises(SpecError, match="set WORKBENCH_DATA_DIR"):
        get_task(spec)


@pytest.mark.parametrize(
    ("drop", "text", "message"),
    [
        (
            "label_column",
            "lable_column: stars\n",
            r"unknown field\(s\) 'lable_column' \(did you mean 'label_column'\?\)",
        ),
        ("label_column", "", r"missing field\(s\) \['label_column'\]"),
        ("", "low: '1'\n", r"field 'low' must be int or float, got '1'"),
        ("", "multiline: 1\n", r"field 'multiline' must be bool"),
        ("", "fractions: {train: 0.8, dev: 0.1, test: 0.2}\n", "sum to 1"),
        ("", "step: 0.3\n", "whole steps"),
        ("", "label_map: {good: 9}\n", r"label_map values \{'good': 9\} lie outside the scale \[1, 5\]"),
        ("", "label_map: {yes: 1}\n", "quote YAML keys"),
        ("", "template: 'Review: {review}'\n", r"template must use \{text\}"),
        ("", "grid: [1, 3, 9]\n", "grid must be increasing numbers within"),
        ("", "train: reviews.tsv\n", "give either 'path'"),
        ("path", "path: nowhere.tsv\n", "data file 'nowhere.tsv' not found"),
        ("text_column", "text_column: [oops\n", r"spec\.yaml:\d+: invalid YAML"),
    ],
)
def test_bad_specs_name_the_spec_and_the_field(tmp_path, drop, text, message):
    write(tmp_path / "reviews.tsv", REVIEWS)
    base = {"path": "reviews.tsv", "text_column": "review", "label_column": "stars"}
    spec = write(tmp_path / "spec.yaml", "".join(f"{k}: {v}\n" for k, v in base.items() if k != drop) + text)
    with pytest.raises(SpecError, match=message):
        load_task_spec(spec).task()


def test_grid_rounding_and_off_grid_report(tmp_path):
    write(tmp_path / "scores.csv", "text,score\na,1\nb,2.5\nc,5\nd,4.9\n")
    with pytest.warns(
        UserWarning, match=r"off the answer grid \(3 values from 1 to 5\): test 2 of 4; e\.g\. 2\.5 at .*scores\.csv:3"
    ):
        task = TaskSpec(
            name="coarse",
            path=str(tmp_path / "scores.csv"),
            text_column="text",
            label_column="score",
            grid=[1, 3, 5],
            fractions={"train": 0, "dev": 0, "test": 1},
        ).task()
    assert [ex.text for ex in task.off_grid("test")] == ["b", "d"]
    assert [task.answer(ex) for ex in task.examples("test")] == ["1", "3", "5", "5"]


def test_command_line_checks_a_spec(tmp_path, capsys):
    write(tmp_path / "reviews.tsv", REVIEWS)
    spec = write(tmp_path / "reviews.yaml", "path: reviews.tsv\ntext_column: review\nlabel_column: stars\n")
    assert tasks_cli([str(spec), "--shots", "1"]) == 0
    out = capsys.readouterr().out
    assert "task reviews  identity" in out and "train: 48 rows, 0 off the grid" in out and out.rstrip().endswith("]")


def test_a_spec_task_is_a_training_set(tmp_path, lm):
    from workbench.lifecycle.finetune import FinetuneConfig
    from workbench.lifecycle.finetune.encoding import training_set

    write(tmp_path / "reviews.tsv", REVIEWS)
    spec = write(tmp_path / "reviews.yaml", "path: reviews.tsv\ntext_column: review\nlabel_column: stars\n")
    encoded = training_set(FinetuneConfig(tasks=(str(spec),), max_examples=4), lm.tokenizer)
    assert len(encoded) == 4 and {e.task for e in encoded} == {"reviews"}
