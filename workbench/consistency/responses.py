"""Response tables: what SimCT needs from each lifecycle stage, and the pairs built from them.

SimCT works from responses alone. A *response table* is a :class:`pandas.DataFrame` with one row
per response and at least the columns of :data:`RESPONSE_FIELDS`:

* ``query_id``: the query's identifier (stored as a string),
* ``query``: the query text,
* ``query_type``: ``"closed"`` (one right answer, e.g. a maths problem) or ``"open"`` (free text),
* ``stage``: the lifecycle stage that produced the response (``"fp32"``, ``"bf16"``, ``"sft"``...),
* ``seed``: the sampling seed or sample index (an int or a string),
* ``response``: the generated text.

On disk it is a JSON-lines file with one record per line; extra fields (model name, decoding
settings) are kept. Loading checks every line and names the file and line of the first bad one.

Pairs are built per query: across two stages, ``(A_i, B_j)`` for all seeds ``i, j``; within one
stage, ``(A_i, A_j)`` for seeds ``i < j``. The ``same_stage`` column (1 within, 0 across) is the
label the response-wise classifier is trained on.

>>> import tempfile, pathlib
>>> table = synthetic_responses(n_queries=2, stage_shifts={"A": 0.0, "B": 0.5}, n_seeds=3)
>>> len(table), sorted(table.stage.unique())
(12, ['A', 'B'])
>>> path = pathlib.Path(tempfile.mkdtemp()) / "responses.jsonl"
>>> save_responses(table, path)
>>> load_responses(path).equals(table)
True
>>> pairs = make_pairs(table, "A", "B")   # 2 queries x 3 x 3 seeds
>>> len(pairs), pairs.same_stage.unique().tolist()
(18, [0])
>>> len(make_pairs(table, "A", "A"))      # 2 queries x (3 choose 2)
6
"""

from __future__ import annotations

import itertools
import json
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

RESPONSE_FIELDS = ("query_id", "query", "query_type", "stage", "seed", "response")
QUERY_TYPES = ("closed", "open")
PAIR_COLUMNS = (
    "query_id",
    "query",
    "query_type",
    "stage1",
    "seed1",
    "response1",
    "stage2",
    "seed2",
    "response2",
    "same_stage",
)


class ResponseFormatError(ValueError):
    """A response file or table does not follow the response-table format."""


def _check_record(record: object, where: str) -> dict:
    """Validates one record and returns it with ``query_id`` as a string."""
    if not isinstance(record, dict):
        raise ResponseFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [name for name in RESPONSE_FIELDS if name not in record]
    if missing:
        raise ResponseFormatError(f"{where}: missing field(s) {', '.join(map(repr, missing))}")
    for name in ("query", "stage", "response"):
        if not isinstance(record[name], str):
            raise ResponseFormatError(f"{where}: field {name!r} must be a string, got {record[name]!r}")
    if record["query_type"] not in QUERY_TYPES:
        raise ResponseFormatError(f"{where}: query_type must be one of {QUERY_TYPES}, got {record['query_type']!r}")
    for name in ("query_id", "seed"):
        value = record[name]
        # bool is an int subclass; True as a seed is almost certainly a bug upstream.
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ResponseFormatError(f"{where}: field {name!r} must be an int or a string, got {value!r}")
    return {**record, "query_id": str(record["query_id"])}


def _check_table_consistency(table: pd.DataFrame, locations: list[str]) -> None:
    """Checks uniqueness of (query_id, stage, seed) and one text/type per query id."""
    keys = list(zip(table.query_id, table.stage, table.seed.map(repr)))
    first_seen: dict[tuple, int] = {}
    for row, key in enumerate(keys):
        if key in first_seen:
            raise ResponseFormatError(
                f"{locations[row]}: duplicate response for query_id={key[0]!r}, stage={key[1]!r}, "
                f"seed={table.seed.iloc[row]!r} (first at {locations[first_seen[key]]})"
            )
        first_seen[key] = row
    reference: dict[str, int] = {}
    for row, query_id in enumerate(table.query_id):
        first = reference.setdefault(query_id, row)
        for name in ("query", "query_type"):
            if table[name].iloc[row] != table[name].iloc[first]:
                raise ResponseFormatError(
                    f"{locations[row]}: query_id={query_id!r} has {name}={table[name].iloc[row]!r} "
                    f"but {table[name].iloc[first]!r} at {locations[first]}"
                )


def validate_responses(table: pd.DataFrame) -> pd.DataFrame:
    """Checks an in-memory response table and returns it with string query ids.

    Args:
        table: a DataFrame with (at least) the columns of :data:`RESPONSE_FIELDS`.

    Returns:
        A copy of ``table`` with ``query_id`` converted to strings.

    Raises:
        ResponseFormatError: naming the first bad row (by position).
    """
    records = [_check_record(record, f"row {row}") for row, record in enumerate(table.to_dict(orient="records"))]
    checked = pd.DataFrame.from_records(records, columns=list(table.columns))
    _check_table_consistency(checked, [f"row {row}" for row in range(len(checked))])
    return checked


def load_responses(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Loads one or more JSON-lines response files into a single response table.

    Blank lines are skipped. Every other line must be a JSON object with all of
    :data:`RESPONSE_FIELDS`; extra fields become extra columns.

    Args:
        paths: a file or a list of files (e.g. one per stage).

    Returns:
        The response table, rows in file order, ``query_id`` as strings.

    Raises:
        ResponseFormatError: naming the file and 1-based line of the first malformed record,
            a duplicated (query_id, stage, seed), or a query id whose text or type differs.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    records, locations = [], []
    for path in map(Path, paths):
        with path.open(encoding="utf-8") as handle:
            for line_number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                where = f"{path}, line {line_number}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as error:
                    raise ResponseFormatError(f"{where}: invalid JSON ({error.msg})") from None
                records.append(_check_record(record, where))
                locations.append(where)
    if not records:
        raise ResponseFormatError(f"no responses in {', '.join(map(str, paths))}")
    columns = list(RESPONSE_FIELDS) + sorted({key for r in records for key in r} - set(RESPONSE_FIELDS))
    table = pd.DataFrame.from_records(records, columns=columns)
    _check_table_consistency(table, locations)
    return table


def save_responses(table: pd.DataFrame, path: str | Path) -> None:
    """Writes a response table as JSON lines (one record per response, extra columns kept).

    Args:
        table: a response table; it is validated first, so nothing malformed is written.
        path: the output file (overwritten).
    """
    table = validate_responses(table)
    with Path(path).open("w", encoding="utf-8") as handle:
        for record in table.to_dict(orient="records"):
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def make_pairs(
    table: pd.DataFrame, stage1: str, stage2: str, max_pairs_per_query: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """Builds response pairs per query, within one stage or across two.

    Args:
        table: a response table.
        stage1: the first stage; its response is ``response1``.
        stage2: the second stage. When equal to ``stage1``, the pairs are ``(A_i, A_j)`` with
            ``i < j`` (different seeds); otherwise all ``(A_i, B_j)``.
        max_pairs_per_query: keep at most this many pairs per query, drawn at random without
            replacement (None keeps all).
        seed: seeds the draw above.

    Returns:
        A DataFrame with the columns :data:`PAIR_COLUMNS`, one row per pair; ``same_stage`` is 1
        for within-stage pairs and 0 for cross-stage pairs. Queries missing from either stage
        give no pairs.
    """
    for stage in {stage1, stage2}:
        if stage not in set(table.stage):
            raise ValueError(f"stage {stage!r} is not in the table (stages: {sorted(set(table.stage))})")
    rng = np.random.default_rng(seed)
    by_stage = {stage: rows for stage, rows in table[table.stage.isin([stage1, stage2])].groupby("stage")}
    first = by_stage[stage1].groupby("query_id", sort=False)
    second = dict(list(by_stage[stage2].groupby("query_id", sort=False)))
    rows = []
    for query_id, rows1 in first:
        if query_id not in second:
            continue
        rows2 = second[query_id]
        if stage1 == stage2:
            index_pairs = list(itertools.combinations(range(len(rows1)), 2))
        else:
            index_pairs = list(itertools.product(range(len(rows1)), range(len(rows2))))
        if max_pairs_per_query is not None and len(index_pairs) > max_pairs_per_query:
            keep = rng.choice(len(index_pairs), size=max_pairs_per_query, replace=False)
            index_pairs = [index_pairs[k] for k in sorted(keep)]
        query, query_type = rows1["query"].iloc[0], rows1["query_type"].iloc[0]
        seeds1, texts1 = rows1.seed.tolist(), rows1.response.tolist()
        seeds2, texts2 = rows2.seed.tolist(), rows2.response.tolist()
        rows.extend(
            (
                query_id,
                query,
                query_type,
                stage1,
                seeds1[i],
                texts1[i],
                stage2,
                seeds2[j],
                texts2[j],
                int(stage1 == stage2),
            )
            for i, j in index_pairs
        )
    return pd.DataFrame(rows, columns=list(PAIR_COLUMNS))


def labelled_pairs(
    table: pd.DataFrame, stage_pairs: Iterable[tuple[str, str]], max_pairs_per_query: int | None = None, seed: int = 0
) -> pd.DataFrame:
    """All pairs needed to train or evaluate the response-wise test on some stage pairs.

    For every ``(a, b)`` in ``stage_pairs`` this gives the within-stage pairs of ``a`` and of
    ``b`` (``same_stage=1``) and the cross-stage pairs ``(a, b)`` (``same_stage=0``); each
    stage's within pairs appear once even when the stage is in several stage pairs.

    Args:
        table: a response table.
        stage_pairs: pairs of different stage names.
        max_pairs_per_query: passed on to :func:`make_pairs` (per query and per stage pair).
        seed: seeds the subsampling.

    Returns:
        The concatenated pairs (columns :data:`PAIR_COLUMNS`).
    """
    stage_pairs = [tuple(pair) for pair in stage_pairs]
    for a, b in stage_pairs:
        if a == b:
            raise ValueError(f"stage pair ({a!r}, {b!r}) is not two different stages")
    stages = list(dict.fromkeys(stage for pair in stage_pairs for stage in pair))
    parts = [make_pairs(table, s, s, max_pairs_per_query, seed) for s in stages]
    parts += [make_pairs(table, a, b, max_pairs_per_query, seed) for a, b in stage_pairs]
    return pd.concat(parts, ignore_index=True)


def _pseudo_words(rng: np.random.Generator, count: int) -> list[str]:
    """Pronounceable random words, so the lexical metrics see plausible tokens."""
    consonants, vowels = list("bdfgklmnprstvz"), list("aeiou")
    words: set[str] = set()
    while len(words) < count:
        syllables = rng.integers(1, 4)
        words.add("".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(syllables)))
    return sorted(words)


def synthetic_responses(
    n_queries: int = 20,
    stage_shifts: Mapping[str, float] | None = None,
    n_seeds: int = 5,
    seed: int = 0,
    closed_fraction: float = 0.5,
    vocabulary_size: int = 40,
) -> pd.DataFrame:
    """A toy response table with a known truth, for tests and demonstrations.

    Each query has its own pseudo-word vocabulary and two Zipf distributions over it. A stage
    with shift ``s`` draws words from ``(1 - s) * base + s * alternative`` and makes responses
    ``1 + s/2`` times longer on average, so stages with equal shifts are identically distributed
    (A and A' differ by seed only) and larger shifts are larger changes. Closed queries get
    short, peaked answers; open queries long, diverse ones.

    Args:
        n_queries: number of queries.
        stage_shifts: stage name -> shift in [0, 1]. Default ``{"A": 0.0, "B": 0.3}``.
        n_seeds: responses per query and stage (seeds 0..n_seeds-1).
        seed: master seed; every response has its own generator derived from it.
        closed_fraction: fraction of closed queries.
        vocabulary_size: words per query vocabulary.

    Returns:
        A response table with ``n_queries * len(stage_shifts) * n_seeds`` rows.
    """
    stage_shifts = {"A": 0.0, "B": 0.3} if stage_shifts is None else dict(stage_shifts)
    n_closed = int(round(closed_fraction * n_queries))
    rows = []
    for q in range(n_queries):
        query_rng = np.random.default_rng([seed, q])
        closed = q < n_closed
        words = np.array(_pseudo_words(query_rng, vocabulary_size))
        exponent = 2.0 if closed else 1.0
        zipf = 1.0 / np.arange(1, vocabulary_size + 1) ** exponent
        base = zipf[query_rng.permutation(vocabulary_size)]
        alternative = zipf[query_rng.permutation(vocabulary_size)]
        base, alternative = base / base.sum(), alternative / alternative.sum()
        mean_extra_length = 1.0 if closed else 8.0
        query = f"query {q}: " + " ".join(query_rng.choice(words, size=5))
        for stage, shift in stage_shifts.items():
            probabilities = (1 - shift) * base + shift * alternative
            for s in range(n_seeds):
                # crc32 (not hash()) so the draws do not change between Python processes.
                rng = np.random.default_rng([seed, q, zlib.crc32(stage.encode()), s])
                length = 1 + rng.poisson(mean_extra_length * (1 + shift / 2))
                response = " ".join(rng.choice(words, size=length, p=probabilities))
                rows.append((str(q), query, "closed" if closed else "open", stage, s, response))
    return pd.DataFrame(rows, columns=list(RESPONSE_FIELDS))
