"""``table`` tasks as data: a YAML or JSON spec names the files, columns, labels, scale and prompt.

A spec is loaded by path from a notebook, the fine-tuning code or the command line, exactly like a
registered task::

    task = get_task("path/to/reviews.yaml")      # or load_task_spec(path).task()
    python -m workbench.tasks path/to/reviews.yaml  # check it: split sizes, labels, a prompt

A spec file (every field but the columns and the files is optional)::

    name: reviews
    path: "{data_dir}/reviews/all.tsv"   # one file, split into disjoint train/dev/test ...
    fractions: {train: 0.8, dev: 0.1, test: 0.1}
    # train: ..., dev: ..., test: ...    # ... or one file per split
    text_column: review
    label_column: stars
    label_map: {Very Negative: 1, Negative: 2, Neutral: 3, Positive: 4, Very Positive: 5}
    low: 1
    high: 5
    step: 1

A generation task (``answer_type: text``, e.g. ``specs/e2e.yaml``) reads its label column as the
reference text: no grid, no scale, and the gold answer is the reference as written. Its rows
may repeat an input with another reference; :func:`references_by_input` groups them.

File paths starting with ``{data_dir}`` are read from the data folder
(:func:`workbench.paths.data_dir`, ``WORKBENCH_DATA_DIR``); other relative paths from the spec
file's folder. Specs shipped in ``workbench/tasks/specs/`` load by name (``get_task("sick")``).
"""

from __future__ import annotations

import codecs
import difflib
import json
import math
import string
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from workbench.paths import data_dir
from workbench.tasks.base import Task, register_task
from workbench.tasks.loaders import SPLITS, Example
from workbench.tasks.parsers import parse_rating
from workbench.tasks.table import file_sha256, fold_label_map, parse_delimiter, read_table, split_rows

SPEC_DIR = Path(__file__).with_name("specs")
SPEC_SUFFIXES = (".yaml", ".yml", ".json")
DATA_DIR_MARK = "{data_dir}"
DEFAULT_METRICS = ("squared_error", "absolute_error", "exact_match")
DEFAULT_FRACTIONS = {"train": 0.8, "dev": 0.1, "test": 0.1}
ANSWER_TYPES = ("number", "text")


class SpecError(ValueError):
    """A task spec that cannot describe a task; the message names the spec and the field."""


@dataclass
class TaskSpec:
    """Everything that defines a ``table`` task.

    Attributes:
        name: the task's name.
        text_column, label_column: columns of the main text and of the label.
        text_b_column: the second text of pair tasks, or None.
        path: one file holding every row, split by ``fractions`` (give this or the split files).
        train, dev, test: one file per split (any of them; few-shot demonstrations need train).
        fractions: train/dev/test shares of ``path``, as {"train": .., "dev": .., "test": ..}
            (default 0.8, 0.1, 0.1).
        split_seed: seed of the split of ``path``.
        delimiter: field separator (a character or "tab", "comma", ...); None sniffs it.
        encoding: text encoding of the files.
        quoting: "csv" (quoted fields) or "none" (quote characters are plain text).
        multiline: allow quoted fields with line breaks.
        label_map: string label -> number, for files whose labels are words.
        low, high: the scale; labels outside it are refused, answers outside it are invalid.
        step: spacing of the answer grid from low to high.
        grid: the answer grid itself (overrides step), e.g. [1, 2, 3, 4, 5].
        instruction: the system prompt; a default is written from the scale and the label map.
        template: the user message, with ``{text}`` (and ``{text_b}``).
        max_new_tokens: generation budget for one answer.
        metrics: default metric names.
        answer_type: "number" (a rating on the grid) or "text" (a generation task: the label column
            holds reference texts; scale, grid and label map do not apply).
        description: free text for people (where the data comes from, its licence).
        origin: the spec file, where relative paths resolve; not part of the task's identity.
    """

    name: str
    text_column: str
    label_column: str
    text_b_column: str | None = None
    path: str | None = None
    train: str | None = None
    dev: str | None = None
    test: str | None = None
    fractions: dict[str, float] | None = None
    split_seed: int = 0
    delimiter: str | None = None
    encoding: str = "utf-8"
    quoting: str = "csv"
    multiline: bool = False
    label_map: dict[str, float] | None = None
    low: float = 1
    high: float = 5
    step: float = 1
    grid: list[float] | None = None
    instruction: str | None = None
    template: str | None = None
    max_new_tokens: int = 8
    metrics: list[str] = field(default_factory=lambda: list(DEFAULT_METRICS))
    answer_type: str = "number"
    description: str = ""
    origin: Path | None = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        for name in ("path", "train", "dev", "test"):
            if isinstance(getattr(self, name), Path):
                setattr(self, name, str(getattr(self, name)))
        if isinstance(self.label_map, dict):  # YAML reads `0: 1` with an integer key
            self.label_map = {
                str(k) if isinstance(k, int) and not isinstance(k, bool) else k: v for k, v in self.label_map.items()
            }
        if isinstance(self.fractions, (list, tuple)) and len(self.fractions) == 3:
            self.fractions = dict(zip(SPLITS, self.fractions))
        if self.fractions is None and self.path:  # written out, so the identity records the split
            self.fractions = dict(DEFAULT_FRACTIONS)
        self._check_types()
        self._check_values()

    # ------------------------------------------------------------------ validation
    def _fail(self, message: str):
        where = f"task spec {self.origin}" if self.origin else f"task {self.name!r}"
        raise SpecError(f"{where}: {message}")

    def _check_types(self) -> None:
        number, text, optional_text = (int, float), (str,), (str, type(None))
        expected = {
            "name": text,
            "text_column": text,
            "label_column": text,
            "text_b_column": optional_text,
            "path": optional_text,
            "train": optional_text,
            "dev": optional_text,
            "test": optional_text,
            "fractions": (dict, type(None)),
            "split_seed": (int,),
            "delimiter": optional_text,
            "encoding": text,
            "quoting": text,
            "multiline": (bool,),
            "label_map": (dict, type(None)),
            "low": number,
            "high": number,
            "step": number,
            "grid": (list, tuple, type(None)),
            "instruction": optional_text,
            "template": optional_text,
            "max_new_tokens": (int,),
            "metrics": (list, tuple),
            "answer_type": text,
            "description": text,
        }
        for name, types in expected.items():
            value = getattr(self, name)
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                self._fail(f"field {name!r} must be {' or '.join(t.__name__ for t in types)}, got {value!r}")
        for name in ("low", "high", "step"):
            if not math.isfinite(getattr(self, name)):
                self._fail(f"field {name!r} must be finite")
        if not all(isinstance(m, str) for m in self.metrics):
            self._fail(f"metrics must be names, got {self.metrics!r}")

    def _check_values(self) -> None:
        files = {s: getattr(self, s) for s in SPLITS if getattr(self, s)}
        if bool(self.path) == bool(files):
            self._fail(
                "give either 'path' (one file, split by 'fractions') or one file per split ('train', 'dev', 'test')"
            )
        if self.fractions is not None:
            if files:
                self._fail("'fractions' splits 'path'; it does not apply to one file per split")
            if set(self.fractions) != set(SPLITS) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.fractions.values()
            ):
                self._fail(f"fractions must give a number for each of {list(SPLITS)}, got {self.fractions!r}")
            if min(self.fractions.values()) < 0 or not math.isclose(sum(self.fractions.values()), 1.0, abs_tol=1e-6):
                self._fail(f"fractions must be non-negative and sum to 1, got {self.fractions!r}")
        if self.answer_type not in ANSWER_TYPES:
            self._fail(f"answer_type must be one of {list(ANSWER_TYPES)}, got {self.answer_type!r}")
        if self.answer_type == "text" and (self.label_map is not None or self.grid is not None):
            self._fail("a text answer_type has no label_map or grid: its labels are reference texts")
        if not self.low < self.high:
            self._fail(f"low ({self.low}) must be below high ({self.high})")
        if self.quoting not in ("csv", "none"):
            self._fail(f"quoting must be 'csv' or 'none', got {self.quoting!r}")
        try:
            parse_delimiter(self.delimiter)
            codecs.lookup(self.encoding)
        except (ValueError, LookupError) as error:
            self._fail(str(error))
        if self.label_map is not None:
            try:
                folded = fold_label_map(self.label_map)
            except ValueError as error:
                self._fail(f"{error} (quote YAML keys such as yes, no, on, off)")
            outside = {
                label: value
                for label, value in self.label_map.items()
                if not self.low <= folded[label.strip().casefold()] <= self.high
            }
            if outside:
                self._fail(f"label_map values {outside} lie outside the scale [{self.low:g}, {self.high:g}]")
        if self.max_new_tokens < 1:
            self._fail("max_new_tokens must be at least 1")
        if (
            self.text_b_column
            and self.text_b_column in (self.text_column, self.label_column)
            or self.text_column == self.label_column
        ):
            self._fail("text_column, text_b_column and label_column must be different columns")
        self.grid_values()
        if self.template is not None:
            names = {name for _, name, _, _ in string.Formatter().parse(self.template) if name is not None}
            allowed = {"text", "text_b"} if self.text_b_column else {"text"}
            if not names <= allowed or "text" not in names:
                self._fail(
                    f"template must use {{text}}{' and {text_b}' if self.text_b_column else ''} only, "
                    f"got fields {sorted(names)}"
                )

    def grid_values(self) -> list[float]:
        """The answer grid: ``grid`` when given, else low..high in steps of ``step``."""
        if self.grid is not None:
            values = [float(v) for v in self.grid if isinstance(v, (int, float)) and not isinstance(v, bool)]
            if (
                len(values) != len(self.grid)
                or not values
                or not all(map(math.isfinite, values))
                or values != sorted(set(values))
                or values[0] < self.low
                or values[-1] > self.high
            ):
                self._fail(f"grid must be increasing numbers within [{self.low:g}, {self.high:g}], got {self.grid!r}")
            return values
        steps = (self.high - self.low) / self.step if self.step > 0 else -1
        if steps < 1 or abs(steps - round(steps)) > 1e-6:
            self._fail(f"step {self.step:g} must divide high - low = {self.high - self.low:g} into whole steps")
        return [round(self.low + i * self.step, 6) for i in range(round(steps) + 1)]

    # ------------------------------------------------------------------ files
    def files(self) -> dict[str, Path]:
        """The data files, resolved: {"path": file} or {split: file}."""
        given = {"path": self.path} if self.path else {s: getattr(self, s) for s in SPLITS if getattr(self, s)}
        return {key: self._resolve(value) for key, value in given.items()}

    def _resolve(self, value: str) -> Path:
        if value.startswith(DATA_DIR_MARK):
            root = data_dir()
            if root is None:
                self._fail(f"{value!r} reads from the data folder, but none is configured: set WORKBENCH_DATA_DIR")
            path = root / value[len(DATA_DIR_MARK) :].lstrip("/\\")
        else:
            path = Path(value).expanduser()
            if not path.is_absolute() and self.origin is not None:
                path = Path(self.origin).parent / path
        if not path.is_file():
            self._fail(f"data file {value!r} not found (looked for {path})")
        return path

    def as_dict(self) -> dict:
        """The spec as written (paths unresolved), without ``origin``: what the task's identity hashes."""
        record = asdict(self)
        record.pop("origin")
        return record

    # ------------------------------------------------------------------ the task
    def task(self) -> Task:
        """Read the files (refusing bad rows), split them and build the :class:`Task`."""
        text = self.answer_type == "text"
        grid = self.grid_values()
        decimals = max(_decimals(v) for v in grid)
        files = self.files()
        read = {
            "text_column": self.text_column,
            "label_column": self.label_column,
            "text_b_column": self.text_b_column,
            "delimiter": self.delimiter,
            "encoding": self.encoding,
            "quoting": self.quoting,
            "multiline": self.multiline,
            "label_map": self.label_map,
            "low": self.low,
            "high": self.high,
            "text_labels": text,
        }
        if text:
            read.update(label_map=None, low=None, high=None)
        if "path" in files:
            fractions = self.fractions
            rows = read_table(files["path"], **read)
            splits = split_rows(rows, tuple(fractions[s] for s in SPLITS), self.split_seed)
            where = f"{files['path']} split {fractions}"
        else:
            splits = {s: read_table(p, **read, id_prefix=f"{p.stem}/{s}") for s, p in files.items()}
            where = f"the files {sorted(files)}"

        def load(split: str):
            if split not in SPLITS:
                raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
            if not splits.get(split):
                hint = (
                    " Few-shot demonstrations come from 'train': give a train file or use 0 shots."
                    if split == "train"
                    else ""
                )
                raise ValueError(f"task {self.name!r} has no {split!r} rows (it reads {where}).{hint}")
            return splits[split]

        template = self.template or ("Text 1: {text}\nText 2: {text_b}" if self.text_b_column else "Text: {text}")
        source = {"spec": self.as_dict(), "data_sha256": {key: file_sha256(p) for key, p in files.items()}}
        render = lambda ex: template.format(text=ex.text, text_b=ex.text_b)  # noqa: E731
        if text:
            return Task(
                name=self.name,
                load=load,
                instruction=self.instruction or "Write the text the input describes.",
                render=render,
                answer=lambda ex: ex.target,
                parse=str.strip,
                grid=None,
                metrics=tuple(self.metrics),
                max_new_tokens=self.max_new_tokens,
                source=source,
            )
        task = Task(
            name=self.name,
            load=load,
            instruction=self.instruction or self._default_instruction(decimals),
            render=render,
            answer=lambda ex: f"{min(grid, key=lambda g: abs(g - ex.target)):.{decimals}f}",
            parse=lambda text: parse_rating(text, low=self.low, high=self.high),
            grid=grid,
            grid_format=f"{{:.{decimals}f}}",
            metrics=tuple(self.metrics),
            max_new_tokens=self.max_new_tokens,
            source=source,
        )
        off = {split: task.off_grid(split) for split, examples in splits.items() if examples}
        if any(off.values()):
            counts = ", ".join(f"{split} {len(items)} of {len(splits[split])}" for split, items in off.items() if items)
            split, items = next((split, items) for split, items in off.items() if items)
            source = files.get(split, files.get("path"))
            warnings.warn(
                f"task {self.name!r}: gold values off the answer grid "
                f"({len(grid)} values from {grid[0]:g} to {grid[-1]:g}): "
                f"{counts}; e.g. {items[0].target:g} at {source}:{items[0].meta['line']}. Exact match counts them as "
                f"misses; few-shot answers round them to the grid",
                stacklevel=2,
            )
        return task

    def _default_instruction(self, decimals: int) -> str:
        scale = f"on a scale from {self.low:g} to {self.high:g}"
        if self.label_map:
            names = ", ".join(
                f"{value:g} {label.lower()}" for label, value in sorted(self.label_map.items(), key=lambda kv: kv[1])
            )
            scale += f" ({names})"
        what = "how the two texts relate" if self.text_b_column else "the text"
        precision = f", with {decimals} decimal{'s' if decimals > 1 else ''}" if decimals else ""
        return f"Rate {what} {scale}{precision}. Answer with the number only."


def references_by_input(examples: list[Example]) -> tuple[list[Example], list[list[str]]]:
    """Rows of a generation task grouped by input: one example per distinct input (its first row), in
    order of first appearance, and the references of each.

    >>> rows = [Example("a/0", "x", "one"), Example("a/1", "y", "two"), Example("a/2", "x", "three")]
    >>> firsts, references = references_by_input(rows)
    >>> [e.id for e in firsts], references
    (['a/0', 'a/1'], [['one', 'three'], ['two']])
    """
    groups: dict[tuple, tuple[Example, list[str]]] = {}
    for example in examples:
        groups.setdefault((example.text, example.text_b), (example, []))[1].append(str(example.target))
    return [first for first, _ in groups.values()], [references for _, references in groups.values()]


def _decimals(value: float) -> int:
    """Decimals needed to write ``value`` (up to 6)."""
    written = f"{value:.6f}".rstrip("0")
    return len(written.split(".")[1])


def load_task_spec(path: str | Path, **overrides) -> TaskSpec:
    """Read a YAML or JSON task spec; ``overrides`` replace its fields (another instruction, another split seed).

    Raises:
        SpecError: for a file that does not parse, an unknown field (with the nearest known
            one), or a field of the wrong type or value.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError(f"{path}:{error.lineno}: invalid JSON ({error.msg})") from None
    else:
        import yaml  # imported here: only specs need it

        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            raise SpecError(
                f"{path}:{mark.line + 1 if mark else 1}: invalid YAML ({getattr(error, 'problem', None) or error})"
            ) from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping of fields, got {type(raw).__name__}")
    raw = {**raw, **overrides}
    known = {f.name for f in fields(TaskSpec)} - {"origin"}
    unknown = sorted(set(raw) - known, key=str)
    if unknown:
        hints = {u: difflib.get_close_matches(str(u), known, n=1) for u in unknown}
        listed = ", ".join(f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for u, h in hints.items())
        raise SpecError(f"{path}: unknown field(s) {listed}; known fields: {sorted(known)}")
    raw.setdefault("name", path.stem)
    missing = [name for name in ("text_column", "label_column") if name not in raw]
    if missing:
        raise SpecError(f"{path}: missing field(s) {missing}")
    return TaskSpec(**raw, origin=path.resolve())


def find_spec(name_or_path) -> Path | None:
    """The spec file a task name or path refers to, or None when it names no spec.

    A path (with a .yaml/.yml/.json suffix, or an existing file) must exist; a bare name is looked
    up among the specs shipped in ``workbench/tasks/specs``.
    """
    path = Path(name_or_path)
    if path.suffix.lower() in SPEC_SUFFIXES or path.is_file():
        if not path.is_file():
            raise FileNotFoundError(f"task spec {path} not found")
        return path
    for suffix in SPEC_SUFFIXES:
        shipped = SPEC_DIR / f"{name_or_path}{suffix}"
        if shipped.is_file():
            return shipped
    return None


def shipped_specs() -> list[str]:
    """Names of the specs shipped with the package."""
    return sorted(p.stem for p in SPEC_DIR.glob("*") if p.suffix in SPEC_SUFFIXES)


@register_task("table")
def table(**options) -> Task:
    """A task over any table file(s), from :class:`TaskSpec` fields given as keyword arguments."""
    if options.get("name") is None:
        options["name"] = f"table:{options.get('path') or options.get('test') or options.get('train')}"
    return TaskSpec(**options).task()
