"""Run records: where a notebook run writes, and what it records about itself.

A notebook starts a :class:`Run` from its parameters::

    run = Run.start("02_metric_aware_inference", {"PROFILE": PROFILE, "MODEL": MODEL, ...}, RUN_DIR)
    run.add_model(engine.fingerprint)
    run.save_table(table, "02_metric_aware.csv")
    run.finish()

* Its folder is ``runs/<profile>/<model id>/<UTC time>-<notebook>/``: the executed notebook (saved
  there by ``scripts/run_notebooks.py``, which passes ``RUN_DIR``), ``manifest.json`` (git commit
  and dirty flag, parameters, model fingerprints, package versions, machine, wall time, files
  written) and, for most runs, the result tables. Earlier runs are never overwritten.
* Result tables go to the project's ``results/`` only for the runs that back the README: the
  default profile on the default model, on a tree without uncommitted changes (or with
  ``WORKBENCH_ALLOW_DIRTY=1``; the entries then say ``clean: false``). Every other run keeps them
  in its own folder, ``<run folder>/results/``, and says why. Either way ``provenance.json`` beside
  the tables records, per file, the writer, the run, the commit and clean flag, the model stages and
  the sampler version (:mod:`workbench.provenance`).
* Each run is also an MLflow run (see :mod:`workbench.tracking`), with the tables as artifacts.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from workbench import provenance, tracking
from workbench.inference.models import DEFAULT_MODEL, model_id
from workbench.paths import PROJECT_ROOT, RESULTS_DIR
from workbench.provenance import git_state, shown_path

PACKAGES = (
    "workbench",
    "torch",
    "transformers",
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "lightgbm",
    "datasets",
    "peft",
    "optuna",
    "mlflow",
    "sentence-transformers",
)
REFERENCE_PROFILE = "default"
ALLOW_DIRTY = "WORKBENCH_ALLOW_DIRTY"  # "1": a run on a tree with uncommitted changes may write results/


def package_versions(names=PACKAGES) -> dict[str, str]:
    """Installed versions of the packages a result depends on (missing ones are left out)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` knows."""
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine() -> dict:
    """What the run ran on: platform, CPU model and count, load, torch threads and accelerator.

    The one machine schema of run manifests and benchmark records (:func:`append_record`).
    """
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


BENCHMARK_RECORDS = RESULTS_DIR / "benchmarks.jsonl"
RECORD_FIELDS = ("benchmark", "timestamp", "writer", "commit", "clean", "machine")


def append_record(
    benchmark: str, record: dict, path: str | Path | None = None, writer: str | Path | None = None
) -> dict:
    """Append one benchmark record as a JSON line, with what every record says about itself.

    The line holds, before the benchmark's own fields: ``benchmark``; ``timestamp`` (UTC, ISO 8601);
    ``writer`` (the script, relative to the project); ``commit`` and ``clean`` (no uncommitted
    changes to tracked files; both None outside a git checkout); ``machine`` (:func:`machine`).
    Records written before this function have other shapes (``date`` for ``timestamp``, five
    layouts of ``machine``); :mod:`workbench.cost.records` reads both.

    Args:
        benchmark: the record's kind, e.g. "decoding_speed"; readers select records by it.
        record: the benchmark's own fields (JSON-serialisable; non-JSON values become strings).
        path: the JSON-lines file (default ``results/benchmarks.jsonl``); its folder is created.
        writer: the script that measured (default: the running ``__main__`` script).

    Returns:
        The line written, as a dict.

    Raises:
        ValueError: ``record`` sets one of the fields this function writes.
    """
    clashing = sorted(set(record) & set(RECORD_FIELDS))
    if clashing:
        raise ValueError(f"benchmark record {benchmark!r} sets {clashing}, which append_record writes itself")
    if writer is None:
        writer = getattr(sys.modules.get("__main__"), "__file__", None) or "interactive session"
    writer_path = Path(writer).resolve()
    git = git_state()
    line = {
        "benchmark": benchmark,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "writer": shown_path(writer_path) if writer_path.exists() else str(writer),
        "commit": git.get("commit"),
        "clean": (not git["dirty"]) if git else None,
        "machine": machine(),
        **record,
    }
    path = Path(path) if path is not None else BENCHMARK_RECORDS
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line, default=str) + "\n")
    provenance.update(path.parent, {path.name: provenance.records_entry(path)})
    return line


def auto_threads() -> int:
    """Torch CPU threads for this machine: the cores not already busy (at least 1).

    On a small machine shared with other jobs, threads beyond the idle cores slow every matmul
    down (one greedy cell took 90 s with 2 threads against 11 s with 1 on a loaded 2-core box).
    """
    cores = os.cpu_count() or 1
    return max(1, min(cores, round(cores - os.getloadavg()[0])))


def set_threads(threads: int = 0) -> int:
    """Set torch's CPU thread count (0: :func:`auto_threads`) and return it."""
    import torch

    torch.set_num_threads(threads or auto_threads())
    return torch.get_num_threads()


def is_reference(profile: str, model: str) -> bool:
    """Whether a run backs the README's tables: the default profile on the default model."""
    return profile == REFERENCE_PROFILE and model == DEFAULT_MODEL


def results_folder(profile: str, model: str, folder: Path) -> tuple[Path, str | None]:
    """Where a run's result tables go, and, when a reference run's do not go to ``results/``, why.

    A reference run (:func:`is_reference`) on a tree with uncommitted changes would credit results to a
    commit that does not hold the code that made them, so it writes into its own folder unless the
    environment variable :data:`ALLOW_DIRTY` is "1".
    """
    if not is_reference(profile, model):
        return folder / "results", None
    if git_state().get("dirty") and os.environ.get(ALLOW_DIRTY) != "1":
        return folder / "results", (
            f"the tree has uncommitted changes, so results/ is left alone ({ALLOW_DIRTY}=1 writes there anyway)"
        )
    return RESULTS_DIR, None


@dataclass
class Run:
    """One execution of a notebook (or script) and its records.

    Attributes:
        notebook: the notebook's name, e.g. "02_metric_aware_inference".
        params: its parameters; must hold PROFILE, and MODEL unless the notebook has no model.
        folder: the run folder (manifest, executed notebook, tables of non-reference runs).
        results: where result tables go (:func:`results_folder`).
        models: fingerprints of the models used, in order of :meth:`add_model`.
        redirected: why a reference run's tables do not go to ``results/`` (None when they do, or
            the run is no reference run).
    """

    notebook: str
    params: dict
    folder: Path
    results: Path
    models: list[dict] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    tracker: tracking.Tracker = field(default_factory=tracking.Tracker)
    redirected: str | None = None

    @classmethod
    def start(cls, notebook: str, params: dict, run_dir: str | Path | None = None) -> Run:
        """Create the run folder (``run_dir`` if given), write a first manifest and start tracking."""
        profile, model = params["PROFILE"], params.get("MODEL", DEFAULT_MODEL)
        if run_dir is None:
            stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
            label = notebook[:2] if notebook[:2].isdigit() else notebook  # "02" for notebooks, else the command
            run_dir = PROJECT_ROOT / "runs" / profile / model_id(model) / f"{stamp}-{label}"
        folder = Path(run_dir)
        results, redirected = results_folder(profile, model, folder)
        if redirected:
            print(f"{notebook}: {redirected}; tables go to {results}")
        folder.mkdir(parents=True, exist_ok=True)
        results.mkdir(parents=True, exist_ok=True)
        tracker = tracking.start(
            f"{profile}/{model_id(model)}/{folder.name}",
            experiment=notebook,
            params=params,
            tags={"profile": profile, "model": model, **git_state()},
        )
        run = cls(notebook, dict(params), folder, results, tracker=tracker, redirected=redirected)
        run.write_manifest("running")
        return run

    def add_model(self, fingerprint: dict) -> None:
        """Record a model (an engine's ``fingerprint``) that produced this run's results."""
        if fingerprint not in self.models:
            self.models.append(dict(fingerprint))
            self.write_manifest("running")

    def save_table(self, table: pd.DataFrame, name: str, index: bool = False) -> Path:
        """Write ``table`` as CSV under :attr:`results`, record its provenance and track it as an artifact."""
        path = self.results / name
        table.to_csv(path, index=index)
        self._record(path)
        return path

    def save_json(self, value, name: str) -> Path:
        """Write ``value`` as JSON under :attr:`results`, like :meth:`save_table`."""
        path = self.results / name
        path.write_text(json.dumps(value, indent=1, default=str))
        self._record(path)
        return path

    @property
    def writer(self) -> str:
        """The notebook file of this run (relative to the project), or its name when there is none (a command)."""
        notebook = PROJECT_ROOT / "notebooks" / f"{self.notebook}.ipynb"
        return shown_path(notebook) if notebook.exists() else self.notebook

    def _record(self, path: Path) -> None:
        written = provenance.entry(self.writer, self.params["PROFILE"], self.models, run=self.folder)
        provenance.update(self.results, {path.name: written})
        if path.name not in self.files:
            self.files.append(path.name)
        self.tracker.log_artifact(path, "results")
        self.write_manifest("running")

    def manifest(self, status: str) -> dict:
        return {
            "notebook": self.notebook,
            "status": status,
            "parameters": self.params,
            "models": self.models,
            "samplers": provenance.samplers(),
            "git": git_state(),
            "packages": package_versions(),
            "machine": machine(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "wall_s": round(time.time() - self.started, 1),
            "results": shown_path(self.results),
            "results_redirected": self.redirected,
            "files": self.files,
            "mlflow_run_id": self.tracker.run_id,
        }

    def write_manifest(self, status: str) -> Path:
        path = self.folder / "manifest.json"
        tmp = path.with_name("manifest.json.tmp")
        tmp.write_text(json.dumps(self.manifest(status), indent=1, default=str))
        os.replace(tmp, path)
        return path

    def finish(self) -> dict:
        """Record files written into :attr:`results` without :meth:`save_table` (by a library call,
        say), write the final manifest, track it and end the tracked run; returns the manifest.

        Records files that scripts append to (``benchmarks.jsonl``: entries of kind ``records``) are
        theirs, even when a benchmark appended to one while this run was going.
        """
        entries = provenance.read(self.results)
        for written in sorted(self.results.iterdir()):
            if (
                written.is_file()
                and written.name != provenance.FILE
                and written.name not in self.files
                and entries.get(written.name, {}).get("kind") != provenance.RECORDS_KIND
                and written.stat().st_mtime >= self.started
            ):
                self._record(written)
        path = self.write_manifest("finished")
        self.tracker.log_metrics({"wall_s": time.time() - self.started})
        self.tracker.log_artifact(path)
        tracking.end(self.tracker)
        return json.loads(path.read_text())
