"""Readers for the built-in data sets (any other table: :mod:`workbench.tasks.table`).

Local copies are read from the data folder (:func:`workbench.paths.data_dir`); when none is
configured, the Hugging Face hub copy is loaded with ``datasets``. A malformed file or row raises
:class:`DataFormatError` naming the file and the line.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

from workbench.paths import data_dir

SPLITS = ("train", "dev", "test")


class DataFormatError(ValueError):
    """A data file or row that cannot be read; the message names the file and line.

    Attributes:
        problems: one "file:line: what" string per problem found (the message lists the first few).
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems else [message]


@dataclass
class Example:
    """One item of a task.

    Attributes:
        id: stable identifier, e.g. "sst5/test/17".
        text: the main input (review, first sentence, question).
        target: the gold answer: a number for ratings and scores.
        text_b: the second input of pair tasks (STS-B), else None.
        meta: anything else (genre, worked solution, ...).
    """

    id: str
    text: str
    target: float | str
    text_b: str | None = None
    meta: dict = field(default_factory=dict)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _local(folder: str, name: str) -> Path | None:
    root = data_dir()
    if root is None:
        return None
    path = root / folder / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the data folder {root}")
    return path


def _hub(name: str, config: str | None, split: str):
    import datasets  # imported lazily: offline users never need it

    return datasets.load_dataset(name, config, split=split)


def read_sst5(split: str) -> list[Example]:
    """SST-5 sentences with ratings 1 (very negative) .. 5 (very positive)."""
    _check_split(split)
    path = _local("sst5", f"sst_{split}.txt")
    if path is None:
        rows = _hub("SetFit/sst5", None, {"dev": "validation"}.get(split, split))
        return [Example(f"sst5/{split}/{i}", r["text"], float(r["label"] + 1)) for i, r in enumerate(rows)]
    examples = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            label, sep, text = line.rstrip("\n").partition("\t")
            if (
                not sep
                or not label.startswith("__label__")
                or label[9:] not in {"1", "2", "3", "4", "5"}
                or not text.strip()
            ):
                raise DataFormatError(
                    f"{path}:{number}: expected '__label__K<TAB>sentence' with K in 1..5, got {line[:60]!r}"
                )
            examples.append(Example(f"sst5/{split}/{len(examples)}", text.strip(), float(label[9:])))
    return examples


def read_stsb(split: str) -> list[Example]:
    """STS-B sentence pairs with similarity 0..5 and their genre."""
    _check_split(split)
    path = _local("stsb", f"sts-{split}.csv")
    if path is None:
        rows = _hub("sentence-transformers/stsb", None, {"dev": "validation"}.get(split, split))
        # The hub copy scales scores to 0..1.
        return [
            Example(f"stsb/{split}/{i}", r["sentence1"], round(5.0 * r["score"], 3), r["sentence2"])
            for i, r in enumerate(rows)
        ]
    examples = []
    with open(path, encoding="utf-8") as handle:
        # No quoting: sentences contain bare quote characters. Some rows carry extra trailing
        # columns (sources); the fields we need are always columns 1-7.
        for number, row in enumerate(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
            try:
                genre, _, year, _, score, first, second = row[:7]
                target = float(score)
            except ValueError as error:
                raise DataFormatError(
                    f"{path}:{number}: expected 7 tab-separated fields with a numeric score ({error})"
                ) from None
            if not 0.0 <= target <= 5.0:
                raise DataFormatError(f"{path}:{number}: score {target} outside 0..5")
            examples.append(
                Example(f"stsb/{split}/{len(examples)}", first, target, second, {"genre": genre, "year": year})
            )
    return examples


def read_gsm8k(split: str) -> list[Example]:
    """GSM8K questions with their numeric final answer and the worked solution in ``meta``."""
    _check_split(split)
    if split == "dev":
        raise ValueError("GSM8K has no dev split; use train or test")
    path = _local("gsm8k", f"{split}.jsonl")
    if path is None:
        records = [dict(r) for r in _hub("openai/gsm8k", "main", split)]
        return [_gsm8k_example(r, split, i, "hub", i + 1) for i, r in enumerate(records)]
    return [
        _gsm8k_example(record, split, i, path, number)
        for i, (number, record) in enumerate(jsonl_records(path, path.read_text(encoding="utf-8")))
    ]


def _gsm8k_example(record: dict, split: str, index: int, path, number: int) -> Example:
    answer = record.get("answer")
    if not isinstance(record.get("question"), str) or not isinstance(answer, str) or "####" not in answer:
        raise DataFormatError(f"{path}:{number}: expected 'question' and an 'answer' ending in '#### N'")
    final = answer.rsplit("####", 1)[1].strip().replace(",", "")
    try:
        target = float(final)
    except ValueError:
        raise DataFormatError(f"{path}:{number}: final answer {final!r} is not a number") from None
    return Example(f"gsm8k/{split}/{index}", record["question"], target, meta={"solution": answer})


def jsonl_records(path: Path, text: str):
    """``(line number, object)`` for each non-blank line of a JSON-lines text read from ``path``.

    Lines end at ``\\n`` only: a JSON string may hold other line separators (U+2028), which
    ``str.splitlines`` would cut.

    >>> list(jsonl_records(Path("x.jsonl"), '{"a": 1}\\n\\n{"b": "\u2028"}\\n'))
    [(1, {'a': 1}), (3, {'b': '\u2028'})]
    """
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise DataFormatError(f"{path}:{number}: invalid JSON ({error.msg})") from None
        if not isinstance(record, dict):
            raise DataFormatError(f"{path}:{number}: expected a JSON object")
        yield number, record
