"""Experiment tracking with MLflow: on by default, to a local store under ``runs/mlflow``.

Every notebook run, fine-tuning run and hyper-parameter trial becomes an MLflow run (trials and
fine-tuning runs nest under the notebook run that started them), with its parameters, metric
curves and result tables as artifacts. Where the runs go:

* ``MLFLOW_TRACKING_URI`` set: that tracking server or store, as MLflow itself reads it;
* otherwise ``sqlite:///<project>/runs/mlflow/mlflow.db``, artifacts in ``runs/mlflow/artifacts``.
  MLflow's plain-folder store is in maintenance mode and refuses new runs, hence SQLite.
* ``WORKBENCH_TRACKING=0`` turns tracking off (every call below then does nothing).

Open the local store's UI from the project folder with::

    mlflow ui --backend-store-uri sqlite:///runs/mlflow/mlflow.db

MLflow is imported on first use only: it takes seconds to import.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from pathlib import Path

from workbench.paths import PROJECT_ROOT

LOCAL_STORE = PROJECT_ROOT / "runs" / "mlflow"


def enabled() -> bool:
    """Whether tracking is on (``WORKBENCH_TRACKING`` is not "0", "false" or "off")."""
    return os.environ.get("WORKBENCH_TRACKING", "1").strip().lower() not in ("0", "false", "off", "no")


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI``, or the local SQLite store under ``runs/mlflow``."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{LOCAL_STORE / 'mlflow.db'}"


def _mlflow():
    import mlflow

    if mlflow.get_tracking_uri() != tracking_uri():
        if "MLFLOW_TRACKING_URI" not in os.environ:
            LOCAL_STORE.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(tracking_uri())
    return mlflow


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of a SQLite store live beside its database, not in whatever folder is current
    (MLflow's default, ``./mlruns``); a tracking server decides for itself (None).

    >>> _artifact_location("sqlite:////data/mlflow.db", "02")
    'file:///data/artifacts/02'
    >>> _artifact_location("http://127.0.0.1:5000", "02") is None
    True
    """
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri.removeprefix("sqlite:///")).resolve().parent / "artifacts" / experiment).as_uri()


def _experiment_id(mlflow, name: str) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow.create_experiment(name, artifact_location=_artifact_location(tracking_uri(), name))


def flatten(params: Mapping, prefix: str = "") -> dict[str, str]:
    """Nested mappings as dotted keys, values as short strings (MLflow keeps params as text).

    >>> flatten({"lr": 1e-3, "space": {"batch": (4, 8)}, "name": None})
    {'lr': '0.001', 'space.batch': '(4, 8)', 'name': 'None'}
    """
    flat = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:500]  # MLflow's limit for a param value
    return flat


class Tracker:
    """The handle of one tracked run; a disabled tracker accepts every call and records nothing."""

    def __init__(self, mlflow=None, run_id: str | None = None):
        self._mlflow = mlflow
        self.run_id = run_id

    def log_params(self, params: Mapping) -> None:
        if self._mlflow:
            self._mlflow.log_params(flatten(params), run_id=self.run_id)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self._mlflow:
            finite = {k: float(v) for k, v in metrics.items() if v is not None and float(v) == float(v)}
            self._mlflow.log_metrics(finite, step=step, run_id=self.run_id)

    def log_artifact(self, path: str | Path, folder: str | None = None) -> None:
        if self._mlflow:
            self._mlflow.log_artifact(str(path), artifact_path=folder, run_id=self.run_id)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self._mlflow:
            client = self._mlflow.MlflowClient()
            for key, value in tags.items():
                client.set_tag(self.run_id, key, str(value))


def start(name: str, experiment: str, params: Mapping | None = None, tags: Mapping | None = None) -> Tracker:
    """Start a run (nested under the active one, if any) and return its tracker; end it with :func:`end`."""
    if not enabled():
        return Tracker()
    mlflow = _mlflow()
    active = mlflow.active_run()
    experiment_id = active.info.experiment_id if active else _experiment_id(mlflow, experiment)
    run = mlflow.start_run(run_name=name, experiment_id=experiment_id, nested=active is not None, tags=dict(tags or {}))
    tracker = Tracker(mlflow, run.info.run_id)
    tracker.log_params(params or {})
    return tracker


def end(tracker: Tracker, status: str = "FINISHED") -> None:
    """End the run of ``tracker`` ("FINISHED" or "FAILED")."""
    if tracker._mlflow:
        tracker._mlflow.end_run(status=status)


@contextlib.contextmanager
def run(name: str, experiment: str, params: Mapping | None = None, tags: Mapping | None = None) -> Iterator[Tracker]:
    """A tracked run as a context: FINISHED on exit, FAILED when an exception leaves it."""
    tracker = start(name, experiment, params, tags)
    try:
        yield tracker
    except BaseException:
        end(tracker, "FAILED")
        raise
    end(tracker)
