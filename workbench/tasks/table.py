"""Read any table a researcher brings (CSV, TSV, any delimiter, or JSON lines) and split it.

The reader refuses what would otherwise load silently and mislabel later, each time with an error
naming the file and the line: bytes that are not valid in the encoding, an unclosed quote (which a
plain CSV reader turns into one merged row), rows with the wrong number of fields, labels that are
not numbers (string labels go through a ``label_map``), ``nan``/``inf``, and labels outside the
scale. A byte-order mark is dropped; any file extension works.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "reviews.txt"
>>> _ = path.write_text("review\\tstars\\ngreat\\tVery Positive\\nawful\\tvery negative\\n")
>>> rows = read_table(path, "review", "stars", label_map={"Very Negative": 1, "Very Positive": 5})
>>> [(row.text, row.target, row.meta["line"]) for row in rows]
[('great', 5.0, 2), ('awful', 1.0, 3)]
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import math
from pathlib import Path

from workbench.tasks.loaders import DataFormatError, Example, jsonl_records

DELIMITERS = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}
QUOTING = {"csv": csv.QUOTE_MINIMAL, "none": csv.QUOTE_NONE}
MAX_LISTED = 10  # problems listed in one error message


def read_table(
    path: str | Path,
    text_column: str,
    label_column: str,
    text_b_column: str | None = None,
    *,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    quoting: str = "csv",
    multiline: bool = False,
    label_map: dict[str, float] | None = None,
    low: float | None = None,
    high: float | None = None,
    id_prefix: str | None = None,
    text_labels: bool = False,
) -> list[Example]:
    """Read one or two text columns and a label column from a delimited or JSON-lines file.

    A file whose first character is ``{`` is read as JSON lines (one object per line); anything
    else as delimited text with a header row.

    Args:
        path: the file (any extension).
        text_column: column of the main text.
        label_column: column of the label: a number, or a string listed in ``label_map``.
        text_b_column: optional second text column (pair tasks).
        delimiter: the field separator (a character, or "tab", "comma", "semicolon", "pipe").
            None sniffs it: the one of tab, comma, semicolon and pipe whose split of the header
            holds all the wanted columns.
        encoding: the file's text encoding; a byte-order mark is dropped.
        quoting: "csv" (fields may be quoted, ``""`` escapes a quote) or "none" (quote
            characters are plain text, as in the STS and SICK releases).
        multiline: allow quoted fields that contain line breaks. Off by default, because a
            record spanning lines is almost always an unclosed quote swallowing the rows after it.
        label_map: string label -> number; matched after stripping whitespace, case-insensitively.
        low, high: the scale; labels outside [low, high] are refused.
        id_prefix: prefix of the example ids (default: the file's stem); ids are "<prefix>/<row>".
        text_labels: the label is a text (a reference output of a generation task), kept as written
            but for surrounding whitespace; ``label_map``, ``low`` and ``high`` do not apply.

    Returns:
        The examples in file order; ``meta["line"]`` is the line the row starts on.

    Raises:
        DataFormatError: naming the file and line of every problem found (up to ten are listed).
    """
    path = Path(path)
    text = decode_file(path, encoding)
    wanted = [column for column in (text_column, label_column, text_b_column) if column]
    if text.lstrip()[:1] == "{":
        records = jsonl_records(path, text)
    else:
        records = _delimited_records(path, text, wanted, delimiter, quoting, multiline)
    labels = _LabelReader(path, label_column, label_map, low, high)
    prefix = id_prefix or path.stem
    examples, problems = [], []
    for index, (line, record) in enumerate(records):
        problem = _missing(record, [text_column, text_b_column], label_column)
        if problem:
            problems.append(f"{path}:{line}: {problem}")
            continue
        if text_labels and not isinstance(record[label_column], str):
            problems.append(f"{path}:{line}: label {record[label_column]!r} in column {label_column!r} is not text")
            continue
        target = record[label_column].strip() if text_labels else labels.read(record[label_column], line)
        if target is not None:
            text_b = record[text_b_column] if text_b_column else None
            examples.append(Example(f"{prefix}/{index}", record[text_column], target, text_b, {"line": line}))
    problems += labels.problems()
    if problems:
        raise DataFormatError(_summary(path, problems), problems)
    if not examples:
        raise DataFormatError(f"{path}: no rows")
    return examples


def _missing(record: dict, text_columns: list[str | None], label_column: str) -> str | None:
    """What is wrong with a record's fields, or None: texts must be non-empty strings, the label present."""
    empty = [
        c
        for c in text_columns
        if c and (record.get(c) is None or (isinstance(record[c], str) and not record[c].strip()))
    ]
    label = record.get(label_column)
    if label is None or (isinstance(label, str) and not label.strip()):
        empty.append(label_column)
    if empty:
        return f"missing or empty field(s) {empty}"
    not_text = [c for c in text_columns if c and not isinstance(record[c], str)]
    return f"field(s) {not_text} are not text" if not_text else None


def decode_file(path: Path, encoding: str = "utf-8") -> str:
    """The file's text; a byte-order mark is dropped and an undecodable byte names its line."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise ValueError(f"unknown encoding {encoding!r}") from None
    codec = "utf-8-sig" if name == "utf-8" else encoding
    data = Path(path).read_bytes()
    try:
        text = data.decode(codec)
    except UnicodeDecodeError as error:
        line = data[: error.start].decode(codec, errors="replace").count("\n") + 1
        bad = data[error.start : error.end]
        raise DataFormatError(
            f"{path}:{line}: bytes {bad!r} are not valid {encoding} ({error.reason}); "
            f"give the file's encoding (for example encoding='cp1252' or 'latin-1')"
        ) from None
    return text.removeprefix("\ufeff")  # utf-16/32 with an explicit byte order keep the mark


def file_sha256(path: str | Path) -> str:
    """SHA-256 of a file's bytes (part of a table task's identity)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def split_rows(
    examples: list[Example], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0
) -> dict[str, list[Example]]:
    """Split examples deterministically into disjoint train, dev and test sets.

    Each example is placed by a hash of its text (and second text) and ``seed``, so the split does
    not depend on the order of the file, and rows with the same text always land in the same split:
    a duplicated sentence can never be a few-shot demonstration for itself. Split sizes follow
    ``fractions`` up to the size of the last group of duplicates at each cut.

    Args:
        examples: the rows of one file.
        fractions: shares of train, dev and test; non-negative and summing to 1.
        seed: another seed gives another split.

    Returns:
        {"train": [...], "dev": [...], "test": [...]}, each in file order.

    >>> rows = [Example(str(i), f"text {i}", 1.0) for i in range(50)]
    >>> parts = split_rows(rows, (0.6, 0.2, 0.2))
    >>> [len(parts[s]) for s in ("train", "dev", "test")]
    [30, 10, 10]
    >>> parts == split_rows(rows[::-1], (0.6, 0.2, 0.2)) or "same rows, other order"
    'same rows, other order'
    >>> reversed_parts = split_rows(rows[::-1], (0.6, 0.2, 0.2))
    >>> ids = {s: sorted(e.id for e in part) for s, part in parts.items()}
    >>> ids == {s: sorted(e.id for e in part) for s, part in reversed_parts.items()}
    True
    """
    if len(fractions) != 3 or min(fractions) < 0 or not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ValueError(
            f"fractions must be three non-negative shares (train, dev, test) summing to 1, got {fractions}"
        )
    keys = [hashlib.sha256(f"{seed}\0{e.text}\0{e.text_b or ''}".encode()).hexdigest() for e in examples]
    order = sorted(range(len(examples)), key=lambda i: (keys[i], i))
    n = len(order)
    cuts = []
    for share in (fractions[0], fractions[0] + fractions[1]):
        cut = max(round(n * share), cuts[-1] if cuts else 0)
        while 0 < cut < n and keys[order[cut]] == keys[order[cut - 1]]:  # keep duplicates together
            cut += 1
        cuts.append(cut)
    parts = {"train": order[: cuts[0]], "dev": order[cuts[0] : cuts[1]], "test": order[cuts[1] :]}
    return {split: [examples[i] for i in sorted(indices)] for split, indices in parts.items()}


def _summary(path: Path, problems: list[str]) -> str:
    listed = "\n  ".join(problems[:MAX_LISTED])
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    return f"{path}: {len(problems)} problem(s):\n  {listed}{more}"


def parse_delimiter(value: str | None) -> str | None:
    """A delimiter given as a character, an escape ("\\t") or a name ("tab", "comma", "semicolon", "pipe")."""
    if value is None:
        return None
    names = {name: char for char, name in DELIMITERS.items()}
    char = names.get(value.lower(), {"\\t": "\t"}.get(value, value))
    if len(char) != 1:
        raise ValueError(f"delimiter must be one character or one of {sorted(names)}, got {value!r}")
    return char


def _reader(text: str, delimiter: str, quoting: str):
    if quoting not in QUOTING:
        raise ValueError(f"quoting must be one of {sorted(QUOTING)}, got {quoting!r}")
    return csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=QUOTING[quoting], strict=True)


def _header(text: str, delimiter: str, quoting: str) -> list[str]:
    try:
        return [name.strip() for name in next(_reader(text, delimiter, quoting), [])]
    except csv.Error:
        return []


def _sniff(path: Path, text: str, wanted: list[str], quoting: str) -> str:
    """The delimiter whose split of the header row holds every wanted column."""
    fits = [char for char in DELIMITERS if set(wanted) <= set(_header(text, char, quoting))]
    if len(fits) == 1:
        return fits[0]
    first = text.splitlines()[0] if text else ""
    if not fits:
        raise DataFormatError(
            f"{path}:1: no delimiter among {list(DELIMITERS.values())} splits the header into columns "
            f"holding {wanted}; header is {first[:200]!r}. Check the column names or give delimiter="
        )
    raise DataFormatError(
        f"{path}:1: the header splits into {wanted} with more than one delimiter "
        f"{[DELIMITERS[c] for c in fits]}; give delimiter="
    )


def _delimited_records(path: Path, text: str, wanted: list[str], delimiter: str | None, quoting: str, multiline: bool):
    char = parse_delimiter(delimiter) or _sniff(path, text, wanted, quoting)
    reader = _reader(text, char, quoting)
    header, end = None, 0
    while True:
        start = end + 1
        try:
            row = next(reader, None)
        except csv.Error as error:
            raise DataFormatError(
                f"{path}:{start}: malformed quoting in the record starting on this line ({error}); "
                f"close the quote, or give quoting='none' if quote characters are plain text"
            ) from None
        if row is None:
            break
        end = reader.line_num
        if not row:  # a blank line
            continue
        if end > start and not multiline:
            raise DataFormatError(
                f"{path}:{start}: a quoted field runs from line {start} to line {end}: an unclosed quote merges "
                f"those rows. Close the quote; give quoting='none' if quotes are plain text, or multiline=True "
                f"if fields really contain line breaks"
            )
        if header is None:
            header = [name.strip() for name in row]
            missing = [c for c in wanted if c not in header]
            if missing:
                raise DataFormatError(
                    f"{path}:{start}: column(s) {missing} not in the header {header} "
                    f"(delimiter {DELIMITERS.get(char, char)!r})"
                )
            duplicated = sorted({c for c in header if header.count(c) > 1 and c in wanted})
            if duplicated:
                raise DataFormatError(f"{path}:{start}: column(s) {duplicated} appear more than once in the header")
            continue
        if len(row) != len(header):
            raise DataFormatError(f"{path}:{start}: {len(row)} fields, header has {len(header)}")
        yield start, dict(zip(header, row))
    if header is None:
        raise DataFormatError(f"{path}:1: expected a header row")


class _LabelReader:
    """Turns raw labels into numbers, collecting every problem with its line."""

    def __init__(self, path: Path, column: str, label_map: dict | None, low: float | None, high: float | None):
        self.path, self.column, self.low, self.high = path, column, low, high
        self.label_map = label_map
        self.folded = fold_label_map(label_map) if label_map is not None else None
        self.bad: list[str] = []
        self.unknown: dict[str, list[int]] = {}  # label -> lines, for labels no number can be read from

    def read(self, raw, line: int) -> float | None:
        if self.folded is not None:
            key = str(raw).strip().casefold() if not isinstance(raw, bool) else None
            if key not in self.folded:
                self.unknown.setdefault(str(raw).strip(), []).append(line)
                return None
            value = self.folded[key]
        elif isinstance(raw, (int, float)) and not isinstance(raw, bool):
            value = float(raw)
        else:
            try:
                value = float(str(raw).strip()) if isinstance(raw, str) else None
            except ValueError:
                value = None
            if value is None:
                self.unknown.setdefault(str(raw).strip(), []).append(line)
                return None
        if not math.isfinite(value):
            self.bad.append(f"{self.path}:{line}: label {raw!r} in column {self.column!r} is not a finite number")
            return None
        if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
            self.bad.append(
                f"{self.path}:{line}: label {raw!r} in column {self.column!r} "
                f"is outside the scale [{_number(self.low)}, {_number(self.high)}]"
            )
            return None
        return value

    def problems(self) -> list[str]:
        problems = list(self.bad)
        if self.unknown:
            listed = ", ".join(
                f"{label!r} ({len(lines)} row(s), first at line {lines[0]})"
                for label, lines in list(self.unknown.items())[:MAX_LISTED]
            )
            first = min(lines[0] for lines in self.unknown.values())
            if self.label_map is not None:
                problems.append(
                    f"{self.path}:{first}: label(s) in column {self.column!r} missing from label_map: {listed}; "
                    f"label_map has {sorted(self.label_map)}"
                )
            else:
                problems.append(
                    f"{self.path}:{first}: label(s) in column {self.column!r} are not numbers: {listed}; "
                    "for string labels give a label_map"
                )
        return problems


def _number(value: float | None) -> str:
    return "unbounded" if value is None else f"{value:g}"


def fold_label_map(label_map: dict) -> dict[str, float]:
    """``label_map`` keyed by stripped, case-folded label, values as floats; ambiguous keys refused."""
    folded: dict[str, float] = {}
    for label, value in label_map.items():
        if (
            not isinstance(label, str)
            or isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ValueError(f"label_map must map strings to finite numbers, got {label!r}: {value!r}")
        key = label.strip().casefold()
        if key in folded:
            raise ValueError(f"label_map has two keys that differ only in case or spaces: {label!r}")
        folded[key] = float(value)
    return folded
