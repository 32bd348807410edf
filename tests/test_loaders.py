import json

import pytest

from workbench.tasks import DataFormatError, read_gsm8k, read_sst5, read_stsb, read_table


@pytest.fixture
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_DATA_DIR", str(tmp_path))
    for folder in ("sst5", "stsb", "gsm8k"):
        (tmp_path / folder).mkdir()
    return tmp_path


def test_shared_data_sizes():
    assert len(read_sst5("test")) == 2210
    stsb = read_stsb("train")
    assert len(stsb) == 5749 and all(0 <= ex.target <= 5 for ex in stsb)
    assert stsb[0].text == "A plane is taking off." and stsb[0].text_b == "An air plane is taking off."
    gsm = read_gsm8k("test")
    assert len(gsm) == 1319 and all(isinstance(ex.target, float) for ex in gsm)


def test_stsb_rows_with_extra_columns_keep_the_first_seven():
    rows = read_stsb("test")
    assert any(ex.meta["genre"] == "main-news" for ex in rows)
    assert len(rows) == 1379


def test_sst5_bad_label_names_file_and_line(data_dir):
    (data_dir / "sst5" / "sst_dev.txt").write_text("__label__3\tfine\n__label__9\tbroken\n")
    with pytest.raises(DataFormatError, match=r"sst_dev\.txt:2"):
        read_sst5("dev")


def test_stsb_bad_score_names_line(data_dir):
    (data_dir / "stsb" / "sts-dev.csv").write_text("g\tf\t2012\t1\t4.0\ta\tb\ng\tf\t2012\t2\tseven\ta\tb\n")
    with pytest.raises(DataFormatError, match=r"sts-dev\.csv:2"):
        read_stsb("dev")


def test_gsm8k_bad_json_and_bad_answer(data_dir):
    good = json.dumps({"question": "1+1?", "answer": "1+1=2\n#### 2"})
    (data_dir / "gsm8k" / "test.jsonl").write_text(good + "\n{not json\n")
    with pytest.raises(DataFormatError, match=r"test\.jsonl:2: invalid JSON"):
        read_gsm8k("test")
    (data_dir / "gsm8k" / "test.jsonl").write_text(good + "\n" + json.dumps({"question": "q", "answer": "no final"}) + "\n")
    with pytest.raises(DataFormatError, match=r"test\.jsonl:2"):
        read_gsm8k("test")


def test_missing_file_in_configured_folder(data_dir):
    with pytest.raises(FileNotFoundError, match="sst_train.txt"):
        read_sst5("train")


def test_unknown_split():
    with pytest.raises(ValueError, match="split"):
        read_sst5("validation")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_generic_table_reads_all_formats(tmp_path, suffix):
    rows = [{"review": "good, really", "stars": "4"}, {"review": "bad", "stars": "1.5"}]
    path = tmp_path / f"reviews{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        sep = "\t" if suffix == ".tsv" else ","
        quote = (lambda s: f'"{s}"') if sep == "," else (lambda s: s)
        path.write_text(f"review{sep}stars\n" + "".join(f"{quote(r['review'])}{sep}{r['stars']}\n" for r in rows))
    examples = read_table(path, "review", "stars")
    assert [ex.text for ex in examples] == ["good, really", "bad"]
    assert [ex.target for ex in examples] == [4.0, 1.5]


def test_generic_table_errors_name_the_row(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("a,b,score\nx,y,1\nx,,2\n")
    with pytest.raises(DataFormatError, match=r"pairs\.csv:3: missing or empty field\(s\) \['b'\]"):
        read_table(path, "a", "score", text_b_column="b")
    path.write_text("a,score\nx,high\n")
    with pytest.raises(DataFormatError, match=r"pairs\.csv:2: field 'score'='high' is not a number"):
        read_table(path, "a", "score")
    path.write_text("a,score\nx,1,extra\n")
    with pytest.raises(DataFormatError, match=r"pairs\.csv:2: 3 fields, header has 2"):
        read_table(path, "a", "score")
    with pytest.raises(DataFormatError, match="unknown format"):
        read_table(tmp_path / "x.parquet", "a", "b")
