"""The main job's record: how long ``bash scripts/main.sh`` took, on what, from which commit.

``scripts/run_notebooks.py`` keeps a :class:`JobRecord` while it runs the notebooks and writes it as
``main_run.json``::

    {"commit": "f4f51a8...", "clean": true, "status": "finished", "profile": "default",
     "total_seconds": 3605.2, "setup_seconds": 41.0, "notebooks": {"01_models_data_decoding": 130.4, ...},
     "load_average": {"start": [0.4, 0.3, 0.2], "end": [1.9, 1.8, 1.7], "samples": [[60.0, 1.2, 0.6, 0.3], ...]},
     "machine": {"cpu": "...", "cpus": 2, "memory_gib": 7.8, "torch_threads": 2, "os": "Linux-..."},
     "cache_at_start": {"files": 0, "gib": 0.0}}

* ``clean``: no uncommitted changes to tracked files at the start and at the end of the job.
* ``total_seconds``: wall time of the whole job, from ``WORKBENCH_JOB_STARTED`` (the epoch second
  ``scripts/main.sh`` starts at, before it sets up the environment) when set, else from the runner's
  start; ``setup_seconds`` is the part before the runner started.
* ``load_average.samples``: (seconds since the start, 1-, 5-, 15-minute load) once a minute.
* ``cache_at_start``: files and GiB in the cache folder (converted models, generations, trained
  models, frozen-trunk outputs) when the runner started. A run from a fresh clone and an empty cache
  has 0; a run that found an earlier run's cache reads what it holds and says so in the README, since
  its wall time is not a cold start's.

It goes to ``results/main_run.json`` only for a complete, successful default-profile run of every
notebook on the default model, on a clean tree (or with ``WORKBENCH_ALLOW_DIRTY=1``); any other
run writes it into its own folder ``runs/<profile>/<model id>/<UTC time>-main/``. :func:`describe`
turns the file into the sentence the README's quick start shows (``python -m workbench report``).
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from workbench import provenance
from workbench.inference.models import model_id
from workbench.paths import PROJECT_ROOT, RESULTS_DIR, cache_contents
from workbench.runs import ALLOW_DIRTY, cpu_name, is_reference

FILE = "main_run.json"
STARTED = "WORKBENCH_JOB_STARTED"  # epoch seconds when scripts/main.sh started (set-up included)
WRITER = PROJECT_ROOT / "scripts" / "run_notebooks.py"
SAMPLE_EVERY_S = 60.0


def memory_gib() -> float | None:
    """Total memory of the machine in GiB (``/proc/meminfo``; None where that is missing)."""
    try:
        with open("/proc/meminfo") as handle:
            kib = next(int(line.split()[1]) for line in handle if line.startswith("MemTotal:"))
    except (OSError, StopIteration, ValueError):
        return None
    return round(kib / 2**20, 1)


def job_machine() -> dict:
    """CPU model, cores, memory, torch threads (the runner's default; each notebook records its own) and OS."""
    import torch

    return {
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "memory_gib": memory_gib(),
        "torch_threads": torch.get_num_threads(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def _load() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]


@dataclass
class JobRecord:
    """A run of the notebooks, recorded while it goes.

    Args:
        profile: the profile every notebook runs under.
        model: the MODEL parameter (the default model unless given).
        complete: every numbered notebook is run (no subset chosen).
    """

    profile: str
    model: str
    complete: bool
    started: float = field(default_factory=lambda: float(os.environ.get(STARTED) or time.time()))
    runner_started: float = field(default_factory=time.time)
    notebooks: dict[str, float] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)
    samples: list[list[float]] = field(default_factory=list)

    def __post_init__(self):
        self.git_start = provenance.git_state()
        self.load_start = _load()
        self.cache_start = cache_contents()
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_EVERY_S):
            self.samples.append([round(time.time() - self.started, 1), *_load()])

    def add(self, notebook: str, seconds: float, finished: bool) -> None:
        """Record one notebook's wall time (and whether it finished)."""
        self.notebooks[notebook] = round(seconds, 1)
        if not finished:
            self.failed.append(notebook)

    def record(self) -> dict:
        """The record as it stands now (the end is now)."""
        git_end = provenance.git_state()
        clean = bool(self.git_start) and not self.git_start["dirty"] and not git_end.get("dirty", True)
        return {
            "commit": self.git_start.get("commit"),
            "commit_at_end": git_end.get("commit"),
            "clean": clean and git_end.get("commit") == self.git_start.get("commit"),
            "status": "failed" if self.failed else "finished",
            "profile": self.profile,
            "model": self.model,
            "complete": self.complete,
            "total_seconds": round(time.time() - self.started, 1),
            "setup_seconds": round(self.runner_started - self.started, 1),
            "notebooks": self.notebooks,
            "load_average": {"start": self.load_start, "end": _load(), "samples": self.samples},
            "machine": job_machine(),
            "cache_at_start": self.cache_start,
        }

    def destination(self, record: dict) -> Path:
        """``results/main_run.json`` for a complete, successful reference run on a clean tree (or one
        allowed to be dirty), else ``runs/<profile>/<model id>/<UTC time>-main/main_run.json``."""
        allowed = record["clean"] or os.environ.get(ALLOW_DIRTY) == "1"
        if is_reference(self.profile, self.model) and self.complete and record["status"] == "finished" and allowed:
            return RESULTS_DIR / FILE
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self.runner_started))
        return PROJECT_ROOT / "runs" / self.profile / model_id(self.model) / f"{stamp}-main" / FILE

    def finish(self) -> Path:
        """Stop sampling the load, write the record (with its provenance entry) and return its path."""
        self._stop.set()
        record = self.record()
        path = self.destination(record)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1) + "\n")
        provenance.update(path.parent, {path.name: provenance.entry(WRITER, self.profile, [])})
        return path


def describe(results: Path = RESULTS_DIR) -> str:
    """The quick start's sentence on the main job's wall time, from ``results/main_run.json``.

    >>> describe(Path("/nonexistent")).startswith("Wall time of `bash scripts/main.sh`: not yet measured")
    True
    """
    path = Path(results) / FILE
    if not path.exists():
        return (
            "Wall time of `bash scripts/main.sh`: not yet measured (`results/main_run.json` is written by the "
            "first complete default run on a clean commit)."
        )
    record = json.loads(path.read_text())
    machine, load = record["machine"], record["load_average"]
    state = "clean tree" if record["clean"] else "uncommitted changes"
    cache = record.get("cache_at_start") or {}
    start = (
        f"with {cache['gib']} GiB ({cache['files']} files) of earlier runs already in the cache, so not a cold start"
        if cache.get("files")
        else "from an empty cache"
        if cache
        else "cache state not recorded"
    )
    return (
        f"Measured: the last complete `bash scripts/main.sh` took {record['total_seconds']:.0f} s "
        f"({record['total_seconds'] / 60:.0f} min) wall, end to end, set-up included, {start}, on {machine['cpu']} "
        f"({machine['cpus']} cores, {machine['memory_gib']} GiB, {machine['torch_threads']} torch threads), "
        f"load average {load['start'][0]} at the start and {load['end'][0]} at the end; commit "
        f"`{str(record['commit'])[:7]}` ({state}). Per notebook: `results/main_run.json`."
    )
