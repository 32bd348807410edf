"""Provenance of results files: for each file, the commit, the writer, the models and the settings behind it.

``provenance.json`` beside a folder of results maps each file name to an entry::

    {"writer": "notebooks/02_metric_aware_inference.ipynb", "run": "runs/default/.../20261206-090000-02",
     "profile": "default", "commit": "f4f51a8...", "clean": true, "written": "2026-12-06T09:00:00Z",
     "models": [{"name": "finetuned/8228c88e5db0/model", "dtype": "fp32", "quantization": null,
                 "weights_sha256": "90d6...", "stage": "3b1f..."}],
     "samplers": {"engine": 3, "grid": 1}}

* ``writer``: the notebook or script that wrote the file, relative to the project.
* ``clean``: the tracked files had no uncommitted changes (``results/`` itself does not count).
* ``models``: the fingerprints of the model stages behind the file, their names relative to the
  cache folder (``WORKBENCH_CACHE_DIR``) or the project, never absolute paths of one machine;
  ``weights_sha256`` hashes the weights, ``stage`` the whole fingerprint (name, dtype,
  quantisation, weights): the generation cache's folder of that stage.
* ``samplers``: the versions of the sampling procedures when the file was written: the engine's decode loop
  (:data:`workbench.inference.engine.SAMPLER_VERSION`) and the exact grid sampler
  (:data:`workbench.inference.grid_sampler.GRID_SAMPLER_VERSION`); both key cached samples too.

A JSON-lines file of records that scripts append to (``benchmarks.jsonl``, ``stsb_experiments.jsonl``)
gets an entry of kind ``records``, derived from the records themselves, each of which names its
writer (:func:`workbench.runs.append_record`): ``writer`` lists the scripts, ``records`` holds, per
script, how many records it wrote, from which commits, and whether all of them ran on clean trees.

:func:`problems` lists what is wrong with a results folder's provenance (a file without an entry,
an entry that misses a field or holds an absolute path, a record without a writer);
``python -m workbench report --check`` and ``tests/test_provenance.py`` fail on any.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from workbench.paths import PROJECT_ROOT, is_absolute, model_name

try:
    import fcntl
except ImportError:  # Windows: no POSIX advisory locks
    fcntl = None

FILE = "provenance.json"
FIELDS = ("writer", "commit", "clean", "written", "profile", "models", "samplers")
NOT_TRACKED = {FILE}  # the index itself needs no entry
RECORDS_KIND = "records"


def git_state(root: Path = PROJECT_ROOT) -> dict:
    """The commit checked out and whether tracked files differ from it ({} outside a git checkout).

    Files under ``results/`` do not count: runs and benchmarks write there, so a second record
    appended by the same job would otherwise call its own tree dirty.
    """
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    return {"commit": commit, "dirty": bool(dirty.strip())}


def shown_path(path: str | Path) -> str:
    """A path as recorded: relative to the project when inside it, so records survive a move."""
    path = Path(path).resolve()
    return str(path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path)


def model_entry(fingerprint: dict) -> dict:
    """A model stage's fingerprint as provenance records it: the name made relative (:func:`model_name`)
    and ``stage``, the hash of the whole fingerprint (the generation cache's folder name of the stage)."""
    stage = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
    return {**fingerprint, "name": model_name(fingerprint.get("name", "")), "stage": stage}


def samplers() -> dict[str, int]:
    """The versions of the sampling procedures a result's draws may come from (they key cached samples, too)."""
    from workbench.inference.engine import SAMPLER_VERSION
    from workbench.inference.grid_sampler import GRID_SAMPLER_VERSION

    return {"engine": SAMPLER_VERSION, "grid": GRID_SAMPLER_VERSION}


def entry(writer: str | Path, profile: str | None, models: list[dict], run: str | Path | None = None) -> dict:
    """The provenance entry of a file written now by ``writer`` (a notebook or script path; another
    name, such as a command's, as given), under ``profile``, from the stages of ``models``
    (fingerprints), in run folder ``run``."""
    git = git_state()
    return {
        "writer": shown_path(writer) if Path(writer).exists() else str(writer),
        "run": shown_path(run) if run is not None else None,
        "profile": profile,
        "commit": git.get("commit"),
        "clean": (not git["dirty"]) if git else None,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "models": [model_entry(fingerprint) for fingerprint in models],
        "samplers": samplers(),
    }


def records_entry(path: Path) -> dict:
    """The provenance entry of a JSON-lines records file, from its records (each names its writer).

    Records written before records named their writer are counted under ``None``.
    """
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    by_writer: dict[str | None, dict] = {}
    for record in records:
        summary = by_writer.setdefault(record.get("writer"), {"count": 0, "commits": [], "clean": True})
        summary["count"] += 1
        if record.get("commit") not in summary["commits"]:
            summary["commits"].append(record.get("commit"))
        summary["clean"] = summary["clean"] and record.get("clean") is True
        summary["last"] = record.get("timestamp") or record.get("date")
    last = records[-1] if records else {}
    return {
        "kind": RECORDS_KIND,
        "writer": sorted(w for w in by_writer if w is not None),
        "run": None,
        "profile": None,
        "commit": last.get("commit"),
        "clean": all(summary["clean"] for summary in by_writer.values()),
        "written": last.get("timestamp") or last.get("date"),
        "models": [],
        "samplers": samplers(),
        "records": {str(w): summary for w, summary in by_writer.items()},
    }


def read(folder: Path) -> dict[str, dict]:
    """The provenance entries of a results folder ({} when it has none)."""
    path = Path(folder) / FILE
    return json.loads(path.read_text()) if path.exists() else {}


def update(folder: Path, entries: dict[str, dict]) -> None:
    """Set the entries of some files in ``folder``'s provenance; safe while other processes do the same."""
    path = Path(folder) / FILE
    with _lock(path):
        provenance = read(folder)
        provenance.update(entries)
        temporary = path.with_name(f".{FILE}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(provenance, indent=1, sort_keys=True))
        os.replace(temporary, path)


def problems(folder: Path) -> list[str]:
    """What is wrong with the provenance of a results folder: one sentence per problem, [] when none.

    Every file needs an entry with every field of :data:`FIELDS` and no absolute path anywhere in it,
    and, for a records file, a writer named by each record; a file that a run writes holds no
    absolute path either. The files that runs write (all but records files, which scripts append to
    over time) come from one commit, on a clean tree.
    """
    folder = Path(folder)
    provenance = read(folder)
    found = []
    files = sorted(p.name for p in folder.iterdir() if p.is_file() and not _hidden(p.name))
    for name in files:
        record = provenance.get(name)
        if record is None:
            found.append(f"{folder.name}/{name}: no entry in {folder.name}/{FILE}")
            continue
        missing = [field for field in FIELDS if field not in record]
        if missing:
            found.append(f"{folder.name}/{name}: its entry has no {missing}")
        found += [
            f"{folder.name}/{name}: absolute path {value!r} in its entry"
            for value in sorted(set(_absolute_paths(record)))
        ]
        if record.get("kind") != RECORDS_KIND:  # records are history: older ones may keep their paths
            found += [
                f"{folder.name}/{name}: absolute path {value!r} in its contents"
                for value in _paths_in_contents(folder / name)
            ]
        unnamed = record.get("records", {}).get("None", {}).get("count", 0)
        if unnamed:
            found.append(f"{folder.name}/{name}: {unnamed} record(s) name no writer")
        if record.get("kind") != RECORDS_KIND and record.get("clean") is False:
            found.append(f"{folder.name}/{name}: written from a tree with uncommitted changes")
    runs = [provenance[name] for name in files if name in provenance and provenance[name].get("kind") != RECORDS_KIND]
    commits = sorted({str(record.get("commit"))[:7] for record in runs if "commit" in record})
    if len(commits) > 1:
        found.append(f"{folder.name}: its files come from {len(commits)} commits ({', '.join(commits)}), not one")
    for name in sorted(set(provenance) - set(files)):
        found.append(f"{folder.name}/{FILE}: an entry for {name}, which does not exist")
    return found


def _paths_in_contents(path: Path) -> list[str]:
    """Absolute file paths held in a results file's cells (CSV) or values (JSON): a model column
    written with the folder of the machine that ran it, say. A path is one string without whitespace
    of at least two folders below the root, so that a response text that starts with a slash is not one."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".csv":
        values = [cell for row in csv.reader(io.StringIO(text)) for cell in row]
    elif path.suffix == ".json":
        values = [json.loads(text)]
    else:
        return []
    found = _absolute_paths(values)
    return sorted({p for p in found if not any(c.isspace() for c in p) and len(PurePosixPath(p).parts) >= 3})


def _hidden(name: str) -> bool:
    """The index itself and dot files (a temporary file mid-write) need no entry."""
    return name in NOT_TRACKED or name.startswith(".")


def _absolute_paths(value) -> list[str]:
    if isinstance(value, str):
        return [value] if is_absolute(value) else []
    if isinstance(value, dict):
        value = list(value.keys()) + list(value.values())
    if isinstance(value, list):
        return [found for item in value for found in _absolute_paths(item)]
    return []


@contextmanager
def _lock(path: Path):
    """An exclusive POSIX advisory lock on the folder of ``path`` (no-op where fcntl is missing).

    The folder, not the file: the file is replaced whole, and a lock on the file replaced would
    not stop a second writer that opened the new one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = os.open(path.parent, os.O_RDONLY)
    try:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # closing releases the lock
