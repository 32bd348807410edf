"""What a job asked the generation cache for, and what it really computed, from its audit log.

The log is written by :class:`~workbench.inference.gencache.GenerationCache` when
``WORKBENCH_DECODE_LOG`` is set (one line per lookup and per entry computed)::

    WORKBENCH_DECODE_LOG=/tmp/decodes.jsonl python scripts/run_notebooks.py --profile smoke 02 03 04 07
    python -m workbench.inference.decode_log /tmp/decodes.jsonl

:func:`computed_by_label` counts the entries each notebook computed and the lookups it answered from
the cache; :func:`recomputed` lists any (stage, kind, item, settings) computed more than once (the
cache should make that impossible); :func:`near_misses` lists items of one stage and kind computed
under several settings, with the setting fields that differ, which is where two notebooks that
could share a decode do not.

>>> rows = [
...     {"event": "computed", "label": "02", "fp": "a", "kind": "score", "prompt": "p", "settings": {"t": 1}},
...     {"event": "hit", "label": "04", "fp": "a", "kind": "score", "prompt": "p", "settings": {"t": 1}},
...     {"event": "computed", "label": "07", "fp": "a", "kind": "score", "prompt": "p", "settings": {"t": 2}},
... ]
>>> computed_by_label(rows)
{'02': {'computed': 1, 'hit': 0}, '04': {'computed': 0, 'hit': 1}, '07': {'computed': 1, 'hit': 0}}
>>> near_misses(rows)
{('a', 'score', ('t',)): 1}
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path


def read(path: str | Path) -> list[dict]:
    """The log's lines (a line a crashed writer left half written is skipped)."""
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _item(row: dict) -> tuple:
    return row["fp"], row["kind"], row["prompt"]


def _settings(row: dict) -> str:
    return json.dumps([row.get("settings"), row.get("seed"), row.get("device")], sort_keys=True)


def computed_by_label(rows: list[dict]) -> dict[str, dict[str, int]]:
    """Per label (notebook): entries computed and lookups answered by the cache ("hit")."""
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        if row.get("event") in ("computed", "hit"):
            counts.setdefault(str(row.get("label")), {"computed": 0, "hit": 0})[row["event"]] += 1
    return counts


def computed_by_stage(rows: list[dict]) -> Counter:
    """Entries computed per (stage folder, kind, label)."""
    return Counter((row["fp"], row["kind"], str(row.get("label"))) for row in rows if row.get("event") == "computed")


def recomputed(rows: list[dict]) -> dict[tuple, int]:
    """(stage, kind, item, settings) computed more than once -> times computed."""
    counts = Counter(_item(row) + (_settings(row),) for row in rows if row.get("event") == "computed")
    return {key: n for key, n in counts.items() if n > 1}


def near_misses(rows: list[dict]) -> dict[tuple, int]:
    """(stage, kind, setting fields that differ) -> items computed under more than one setting of them."""
    settings_of: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for row in rows:
        if row.get("event") == "computed" and isinstance(row.get("settings"), dict):
            settings_of[_item(row)][_settings(row)] = row["settings"]
    found: Counter = Counter()
    for (fp, kind, _), variants in settings_of.items():
        if len(variants) < 2:
            continue
        values = list(variants.values())
        differ = sorted(
            {name for a in values for b in values for name in a.keys() | b.keys() if a.get(name) != b.get(name)}
        )
        found[fp, kind, tuple(differ)] += 1
    return dict(found)


def main(argv: list[str]) -> int:
    rows = read(argv[0])
    print(f"{len(rows)} log lines")
    for label, counts in sorted(computed_by_label(rows).items()):
        print(f"notebook {label}: computed {counts['computed']}, from the cache {counts['hit']}")
    for (fp, kind, label), n in sorted(computed_by_stage(rows).items()):
        print(f"  stage {fp} {kind:9s} notebook {label}: {n} computed")
    print(f"computed more than once: {sum(n - 1 for n in recomputed(rows).values())}")
    for (fp, kind, fields), n in sorted(near_misses(rows).items()):
        print(f"  stage {fp} {kind}: {n} items computed under settings that differ in {list(fields)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
