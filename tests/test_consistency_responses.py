"""Response-table format and pair building (workbench.consistency.responses)."""

import json

import pandas as pd
import pytest

from workbench.consistency.responses import (
    PAIR_COLUMNS,
    ResponseFormatError,
    labelled_pairs,
    load_responses,
    make_pairs,
    save_responses,
    synthetic_responses,
    validate_responses,
)


def _record(**overrides):
    record = {"query_id": "q1", "query": "2+2?", "query_type": "closed", "stage": "fp32", "seed": 0, "response": "4"}
    return {**record, **overrides}


def _write_lines(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_round_trip_keeps_extra_fields_and_stringifies_query_ids(tmp_path):
    records = [_record(query_id=7, seed=s, response=f"r{s}", temperature=0.7) for s in range(3)]
    path = _write_lines(tmp_path / "a.jsonl", [json.dumps(r) for r in records] + [""])
    table = load_responses(path)
    assert table.query_id.tolist() == ["7", "7", "7"]
    assert table.temperature.tolist() == [0.7] * 3
    save_responses(table, tmp_path / "b.jsonl")
    assert load_responses(tmp_path / "b.jsonl").equals(table)


def test_several_files_concatenate(tmp_path):
    first = _write_lines(tmp_path / "fp32.jsonl", [json.dumps(_record())])
    second = _write_lines(tmp_path / "bf16.jsonl", [json.dumps(_record(stage="bf16"))])
    assert load_responses([first, second]).stage.tolist() == ["fp32", "bf16"]


@pytest.mark.parametrize(
    "bad_line, message",
    [
        ('{"query_id": "q2", "query": "x"', "invalid JSON"),
        (json.dumps({k: v for k, v in _record(seed=1).items() if k != "seed"}), "missing field(s) 'seed'"),
        (json.dumps(_record(seed=1, query_type="essay")), "query_type must be one of"),
        (json.dumps(_record(seed=1, response=None)), "'response' must be a string"),
        (json.dumps(_record(seed=True)), "'seed' must be an int or a string"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_malformed_line_is_named(tmp_path, bad_line, message):
    path = _write_lines(tmp_path / "stage.jsonl", [json.dumps(_record()), "", bad_line])
    with pytest.raises(ResponseFormatError) as error:
        load_responses(path)
    assert f"{path}, line 3" in str(error.value)
    assert message in str(error.value)


def test_duplicate_response_names_both_lines(tmp_path):
    path = _write_lines(tmp_path / "dup.jsonl", [json.dumps(_record()), json.dumps(_record(response="5"))])
    with pytest.raises(ResponseFormatError, match=r"line 2: duplicate .* \(first at .*line 1\)"):
        load_responses(path)


def test_query_text_must_agree_across_lines(tmp_path):
    path = _write_lines(tmp_path / "q.jsonl", [json.dumps(_record()), json.dumps(_record(seed=1, query="3+3?"))])
    with pytest.raises(ResponseFormatError, match="line 2: query_id='q1' has query='3\\+3\\?'"):
        load_responses(path)


def test_validate_names_rows_and_save_refuses_bad_tables(tmp_path):
    table = pd.DataFrame([_record(), _record(seed=1, query_type="other")])
    with pytest.raises(ResponseFormatError, match="row 1"):
        validate_responses(table)
    with pytest.raises(ResponseFormatError):
        save_responses(table, tmp_path / "never.jsonl")
    assert not (tmp_path / "never.jsonl").exists()


@pytest.fixture(scope="module")
def table():
    return synthetic_responses(n_queries=3, stage_shifts={"A": 0.0, "B": 0.5}, n_seeds=4, seed=1)


def test_within_stage_pairs_are_distinct_seed_combinations(table):
    pairs = make_pairs(table, "A", "A")
    assert list(pairs.columns) == list(PAIR_COLUMNS)
    assert len(pairs) == 3 * 6 and (pairs.same_stage == 1).all()
    assert (pairs.seed1 < pairs.seed2).all()
    assert not pairs.duplicated(["query_id", "seed1", "seed2"]).any()


def test_cross_stage_pairs_cover_all_seed_combinations(table):
    pairs = make_pairs(table, "A", "B")
    assert len(pairs) == 3 * 16 and (pairs.same_stage == 0).all()
    assert set(pairs.stage1) == {"A"} and set(pairs.stage2) == {"B"}
    lookup = table.set_index(["query_id", "stage", "seed"]).response
    row = pairs.iloc[5]
    assert row.response1 == lookup[(row.query_id, "A", row.seed1)]
    assert row.response2 == lookup[(row.query_id, "B", row.seed2)]


def test_subsampling_and_unknown_stage(table):
    assert make_pairs(table, "A", "B", max_pairs_per_query=5).groupby("query_id").size().tolist() == [5, 5, 5]
    with pytest.raises(ValueError, match="stage 'C' is not in the table"):
        make_pairs(table, "A", "C")


def test_labelled_pairs_has_each_within_stage_once():
    table = synthetic_responses(n_queries=2, stage_shifts={"A": 0, "B": 0.5, "C": 0.9}, n_seeds=3)
    pairs = labelled_pairs(table, [("A", "B"), ("A", "C")])
    counts = pairs.groupby(["stage1", "stage2"]).size().to_dict()
    assert counts == {("A", "A"): 6, ("B", "B"): 6, ("C", "C"): 6, ("A", "B"): 18, ("A", "C"): 18}
    with pytest.raises(ValueError, match="not two different stages"):
        labelled_pairs(table, [("A", "A")])


def test_synthetic_stages_with_equal_shift_differ_only_by_seed():
    table = synthetic_responses(n_queries=4, stage_shifts={"A": 0.0, "A2": 0.0}, n_seeds=3, seed=5)
    again = synthetic_responses(n_queries=4, stage_shifts={"A": 0.0, "A2": 0.0}, n_seeds=3, seed=5)
    assert table.equals(again)
    a, a2 = table[table.stage == "A"].response.tolist(), table[table.stage == "A2"].response.tolist()
    assert a != a2  # independent draws ...
    vocabulary = lambda texts: set(" ".join(texts).split())  # noqa: E731
    assert vocabulary(a) & vocabulary(a2)  # ... from the same per-query vocabularies
