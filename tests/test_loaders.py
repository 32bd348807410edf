import json

import pytest

from workbench.tasks import DataFormatError, Example, read_gsm8k, read_sst5, read_stsb, read_table, split_rows


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
    (data_dir / "gsm8k" / "test.jsonl").write_text(
        good + "\n" + json.dumps({"question": "q", "answer": "no final"}) + "\n"
    )
    with pytest.raises(DataFormatError, match=r"test\.jsonl:2"):
        read_gsm8k("test")


def test_missing_file_in_configured_folder(data_dir):
    with pytest.raises(FileNotFoundError, match="sst_train.txt"):
        read_sst5("train")


def test_unknown_split():
    with pytest.raises(ValueError, match="split"):
        read_sst5("validation")


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".txt", ""])
def test_generic_table_reads_all_formats_whatever_the_extension(tmp_path, suffix):
    rows = [{"review": "good, really", "stars": "4"}, {"review": "bad", "stars": "1.5"}]
    path = tmp_path / f"reviews{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        sep = "," if suffix == ".csv" else "\t"
        quote = (lambda s: f'"{s}"') if sep == "," else (lambda s: s)
        path.write_text(f"review{sep}stars\n" + "".join(f"{quote(r['review'])}{sep}{r['stars']}\n" for r in rows))
    examples = read_table(path, "review", "stars")
    assert [ex.text for ex in examples] == ["good, really", "bad"]
    assert [ex.target for ex in examples] == [4.0, 1.5]
    assert [ex.meta["line"] for ex in examples] == ([1, 2] if suffix == ".jsonl" else [2, 3])


def test_generic_table_errors_name_the_row(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("a,b,score\nx,y,1\nx,,2\n")
    with pytest.raises(DataFormatError, match=r"pairs\.csv:3: missing or empty field\(s\) \['b'\]"):
        read_table(path, "a", "score", text_b_column="b")
    path.write_text("a,score\nx,1,extra\n")
    with pytest.raises(DataFormatError, match=r"pairs\.csv:2: 3 fields, header has 2"):
        read_table(path, "a", "score")
    path.write_text("a,score\nx,1\n")
    with pytest.raises(
        DataFormatError, match=r"pairs\.csv:1: column\(s\) \['text'\] not in the header \['a', 'score'\]"
    ):
        read_table(path, "text", "score", delimiter=",")


# ------------------------------------------------------------------ issue 10: what the loader used to accept


def test_labels_outside_the_scale_nan_and_inf_are_refused_with_file_and_line(tmp_path):
    path = tmp_path / "ratings.csv"
    path.write_text("text,stars\nfine,3\ntoo high,17\nmissing,nan\nendless,inf\nhuge,1e400\nok,5\n")
    with pytest.raises(DataFormatError) as caught:
        read_table(path, "text", "stars", low=1, high=5)
    message = str(caught.value)
    assert "ratings.csv:3: label '17' in column 'stars' is outside the scale [1, 5]" in message
    assert (
        "ratings.csv:4: label 'nan'" in message
        and "ratings.csv:5: label 'inf'" in message
        and "ratings.csv:6: label '1e400'" in message
    )
    assert len(caught.value.problems) == 4  # every bad row, not just the first
    # Without a scale, non-finite labels are still refused (they would crash a metric later).
    path.write_text("text,stars\nfine,3\nmissing,NaN\n")
    with pytest.raises(DataFormatError, match=r"ratings\.csv:3: label 'NaN' in column 'stars' is not a finite number"):
        read_table(path, "text", "stars")


def test_non_utf8_bytes_name_file_and_line_and_encoding_option_reads_them(tmp_path):
    path = tmp_path / "latin.tsv"
    path.write_bytes("text\tstars\nfine\t3\ncaf\u00e9 cr\u00e8me\t4\n".encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"latin\.tsv:3: bytes b'\\xe9' are not valid utf-8 .*encoding="):
        read_table(path, "text", "stars")
    assert read_table(path, "text", "stars", encoding="latin-1")[1].text == "caf\u00e9 cr\u00e8me"


@pytest.mark.parametrize(
    ("bom", "written", "read_as"),
    [(b"\xef\xbb\xbf", "utf-8", "utf-8"), (b"", "utf-16", "utf-16"), (b"\xff\xfe", "utf-16-le", "utf-16-le")],
)
def test_byte_order_mark_does_not_hide_the_first_column(tmp_path, bom, written, read_as):
    path = tmp_path / "bom.csv"
    path.write_bytes(bom + "text,stars\r\ngood,4\r\n".encode(written))
    rows = read_table(path, "text", "stars", encoding=read_as)
    assert [(row.text, row.target) for row in rows] == [("good", 4.0)]


def test_unclosed_quote_is_an_error_naming_its_line_not_merged_rows(tmp_path):
    path = tmp_path / "quotes.csv"
    # The quote opened on line 3 closes on line 5: a plain reader returns ONE row holding lines 3-5.
    path.write_text('text,stars\nfine,3\n"broken,4\nswallowed,2\nalso swallowed",5\nlast,1\n')
    with pytest.raises(DataFormatError, match=r"quotes\.csv:3: a quoted field runs from line 3 to line 5"):
        read_table(path, "text", "stars")
    # A quote never closed runs to the end of the file.
    path.write_text('text,stars\nfine,3\n"broken,4\nswallowed,2\n')
    with pytest.raises(DataFormatError, match=r"quotes\.csv:3: malformed quoting"):
        read_table(path, "text", "stars")
    # Text after a closing quote.
    path.write_text('text,stars\n"Hi," she said,3\n')
    with pytest.raises(DataFormatError, match=r"quotes\.csv:2: malformed quoting.*quoting='none'"):
        read_table(path, "text", "stars")


def test_quoting_none_and_multiline_options(tmp_path):
    path = tmp_path / "plain.tsv"
    path.write_text('text\tstars\n"Hi," she said\t3\nHe said "no"\t2\n')
    assert [r.text for r in read_table(path, "text", "stars", quoting="none")] == ['"Hi," she said', 'He said "no"']
    path = tmp_path / "multi.csv"
    path.write_text('text,stars\n"two\nlines",3\nnext,2\n')
    rows = read_table(path, "text", "stars", multiline=True)
    assert [(r.text, r.meta["line"]) for r in rows] == [("two\nlines", 2), ("next", 4)]


def test_string_labels_through_a_label_map_and_unmapped_values_listed(tmp_path):
    names = {"Very Negative": 1, "Negative": 2, "Neutral": 3, "Positive": 4, "Very Positive": 5}
    path = tmp_path / "reviews.csv"
    path.write_text("text,label\nawful,Very Negative\nmeh, neutral \nsuperb,VERY POSITIVE\n")
    assert [r.target for r in read_table(path, "text", "label", label_map=names)] == [1.0, 3.0, 5.0]
    path.write_text("text,label\nawful,Very Negative\nodd,Mixed\nodd again,Mixed\nhuh,???\n")
    with pytest.raises(DataFormatError) as caught:
        read_table(path, "text", "label", label_map=names)
    assert (
        "reviews.csv:3: label(s) in column 'label' missing from label_map: "
        "'Mixed' (2 row(s), first at line 3), '???' (1 row(s), first at line 5)" in str(caught.value)
    )
    # Without a label map, string labels are listed with the hint to give one.
    with pytest.raises(
        DataFormatError,
        match=r"reviews\.csv:2: label\(s\) in column 'label' are not numbers: 'Very Negative' .*give a label_map",
    ):
        read_table(path, "text", "label")
    with pytest.raises(ValueError, match="differ only in case"):
        read_table(path, "text", "label", label_map={"Mixed": 1, "mixed": 2})


@pytest.mark.parametrize("delimiter", ["\t", ";", "|", ","])
def test_delimiter_is_sniffed_from_the_header(tmp_path, delimiter):
    path = tmp_path / "data.dat"
    path.write_text(
        f"id{delimiter}sentence{delimiter}score\n1{delimiter}a, b; c{delimiter}2\n".replace(
            "a, b; c", "a b" if delimiter in ",;" else "a, b; c"
        )
    )
    assert read_table(path, "sentence", "score")[0].target == 2.0
    assert (
        read_table(
            path, "sentence", "score", delimiter={"\t": "tab", ";": "semicolon", "|": "pipe", ",": "comma"}[delimiter]
        )[0].target
        == 2.0
    )


def test_delimiter_that_fits_no_header_is_reported(tmp_path):
    path = tmp_path / "data.txt"
    path.write_text("sentence score\nhello 2\n")
    with pytest.raises(
        DataFormatError,
        match=r"data\.txt:1: no delimiter .* holding \['sentence', 'score'\]; header is 'sentence score'",
    ):
        read_table(path, "sentence", "score")


def test_jsonl_is_recognised_by_content_and_keeps_numbers(tmp_path):
    path = tmp_path / "rows.data"
    path.write_text(
        json.dumps({"t": "x", "y": 4})
        + "\n\n"
        + json.dumps({"t": "z", "y": "2.5"})
        + "\n"
        + json.dumps({"t": 7, "y": 1})
        + "\n"
    )
    with pytest.raises(DataFormatError, match=r"rows\.data:4: field\(s\) \['t'\] are not text"):
        read_table(path, "t", "y")
    path.write_text(json.dumps({"t": "x", "y": 4}) + "\n" + json.dumps({"t": "z", "y": True}) + "\n")
    with pytest.raises(DataFormatError, match=r"rows\.data:2: label\(s\) .* not numbers: 'True'"):
        read_table(path, "t", "y")


def test_split_rows_is_deterministic_disjoint_and_keeps_duplicates_together():
    rows = [Example(f"r/{i}", f"sentence {i % 300}", float(i % 5 + 1)) for i in range(1000)]  # every text 3-4 times
    parts = split_rows(rows, (0.8, 0.1, 0.1), seed=0)
    assert parts == split_rows(rows, (0.8, 0.1, 0.1), seed=0)
    assert sum(len(p) for p in parts.values()) == 1000
    texts = {split: {r.text for r in part} for split, part in parts.items()}
    assert not (texts["train"] & texts["test"] or texts["train"] & texts["dev"] or texts["dev"] & texts["test"])
    assert abs(len(parts["test"]) - 100) <= 4 and abs(len(parts["train"]) - 800) <= 4
    assert {r.id for r in split_rows(rows, (0.8, 0.1, 0.1), seed=1)["test"]} != {r.id for r in parts["test"]}
    # The split follows the content, not the order of the file.
    shuffled = split_rows(sorted(rows, key=lambda r: (r.target, r.id)), (0.8, 0.1, 0.1), seed=0)
    assert {s: {r.id for r in shuffled[s]} for s in shuffled} == {s: {r.id for r in parts[s]} for s in parts}
    with pytest.raises(ValueError, match="sum"):
        split_rows(rows, (0.8, 0.1, 0.2))
