"""Run records: folders, manifests, provenance of result files, MLflow tracking, the notebook runner's checks."""

import json
import subprocess

import nbformat
import pandas as pd
import pytest

import run_notebooks  # noqa: E402
from workbench import runs, tracking
from workbench.inference.models import DEFAULT_MODEL


@pytest.fixture(scope="module")
def local_tracking(tmp_path_factory):
    """One SQLite store for the module: creating one takes seconds."""
    folder = tmp_path_factory.mktemp("mlflow")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{folder / 'mlflow.db'}")
        patch.setenv("WORKBENCH_TRACKING", "1")
        yield folder


def test_only_the_default_profile_on_the_default_model_writes_the_readme_results():
    assert runs.is_reference("default", DEFAULT_MODEL)
    assert not runs.is_reference("smoke", DEFAULT_MODEL)
    assert not runs.is_reference("default", "Qwen/Qwen2.5-0.5B-Instruct")


def test_a_run_records_its_model_files_and_manifest(tmp_path, local_tracking):
    import mlflow

    fingerprint = {"name": "tiny", "dtype": "fp32", "quantization": None, "weights_sha256": "ab" * 32}
    run = runs.Run.start("99_test", {"PROFILE": "smoke", "MODEL": "tiny", "K": 4}, tmp_path / "run")
    assert run.results == tmp_path / "run" / "results"
    run.add_model(fingerprint)
    path = run.save_table(pd.DataFrame({"strategy": ["mean"], "rmse": [1.0]}), "99_table.csv")
    (run.results / "99_written_by_a_library.json").write_text("{}")
    manifest = run.finish()

    assert pd.read_csv(path).rmse.tolist() == [1.0]
    provenance = json.loads((run.results / "provenance.json").read_text())
    assert provenance["99_table.csv"]["models"] == [runs.provenance.model_entry(fingerprint)]
    assert provenance["99_table.csv"]["writer"] == "99_test"  # no notebook file of that name: the name
    assert manifest["status"] == "finished" and manifest["parameters"]["K"] == 4
    assert manifest["models"] == [fingerprint] and manifest["files"] == ["99_table.csv", "99_written_by_a_library.json"]
    assert provenance["99_written_by_a_library.json"]["models"] == provenance["99_table.csv"]["models"]
    assert {"torch", "transformers", "workbench"} <= set(manifest["packages"])
    assert manifest["machine"]["cpus"] >= 1 and manifest["wall_s"] >= 0
    assert "commit" in manifest["git"]

    recorded = mlflow.get_run(manifest["mlflow_run_id"])
    assert recorded.data.params["K"] == "4" and recorded.info.status == "FINISHED"
    artifacts = [a.path for a in mlflow.MlflowClient().list_artifacts(recorded.info.run_id, "results")]
    assert artifacts == ["results/99_table.csv", "results/99_written_by_a_library.json"]


def test_tracked_runs_nest_and_fail_loudly(local_tracking):
    import mlflow

    outer = tracking.start("outer", experiment="nesting")
    with pytest.raises(RuntimeError):
        with tracking.run("inner", experiment="ignored: nests under outer", params={"lr": 0.1}) as inner:
            inner.log_metrics({"loss": 1.0, "nan": float("nan")}, step=0)
            raise RuntimeError("boom")
    tracking.end(outer)
    child = mlflow.get_run(inner.run_id)
    assert child.info.status == "FAILED" and child.data.tags["mlflow.parentRunId"] == outer.run_id
    assert child.data.metrics == {"loss": 1.0}


def test_tracking_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("WORKBENCH_TRACKING", "0")
    tracker = tracking.start("off", experiment="off")
    tracker.log_metrics({"x": 1.0})
    assert tracker.run_id is None


def test_auto_threads_leaves_busy_cores_alone(monkeypatch):
    monkeypatch.setattr(runs.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(runs.os, "getloadavg", lambda: (2.6, 0, 0))
    assert runs.auto_threads() == 1
    monkeypatch.setattr(runs.os, "getloadavg", lambda: (0.1, 0, 0))
    assert runs.auto_threads() == 4
    monkeypatch.setattr(runs.os, "getloadavg", lambda: (9.0, 0, 0))
    assert runs.auto_threads() == 1


def _executed(*outputs):
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("plot()")
    cell.outputs = [nbformat.from_dict(o) for o in outputs]
    notebook.cells.append(cell)
    return notebook


def test_the_runner_counts_drawn_figures_and_figures_printed_as_text():
    drawn = {
        "output_type": "display_data",
        "data": {"image/png": "iVBOR", "text/plain": "<Figure size 640x480 with 1 Axes>"},
        "metadata": {},
    }
    printed = {
        "output_type": "execute_result",
        "data": {"text/plain": "<Figure size 600x350 with 1 Axes>"},
        "metadata": {},
        "execution_count": 1,
    }
    assert run_notebooks.count_images(_executed(drawn, drawn)) == (2, 0)
    assert run_notebooks.count_images(_executed(drawn, printed)) == (1, 1)


def test_the_runner_parses_parameter_values_as_literals():
    assert run_notebooks.parse_value("8") == 8
    assert run_notebooks.parse_value("[1, 2]") == [1, 2]
    assert run_notebooks.parse_value("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"


def test_every_search_trial_is_a_tracked_run(local_tracking):
    import mlflow

    from workbench.lifecycle.finetune import FinetuneConfig
    from workbench.lifecycle.hpo import SearchSpace, search

    table = search("random", lambda config: config.lr * 1000, FinetuneConfig(), SearchSpace(), n_trials=3, seed=1)
    trials = mlflow.search_runs(experiment_names=["hpo"], filter_string="params.method = 'random'")
    assert len(trials) >= 3
    recorded = sorted(trials["metrics.objective"].tolist()[:3])
    assert recorded == pytest.approx(sorted(table.objective.tolist()))


def test_append_record_writes_one_schema_and_names_its_writer(tmp_path):
    path = tmp_path / "records" / "benchmarks.jsonl"
    writer = runs.PROJECT_ROOT / "benchmarks" / "mbr_speed.py"
    first = runs.append_record("mbr_speed", {"n": 64, "seconds": {"loop": 2.0}}, path, writer=writer)
    runs.append_record("throughput_roofline", {"threads": 1}, path, writer=writer)

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == first and [line["benchmark"] for line in lines] == ["mbr_speed", "throughput_roofline"]
    assert list(first)[:6] == list(runs.RECORD_FIELDS) and first["n"] == 64
    assert first["writer"] == "benchmarks/mbr_speed.py"
    assert set(first["machine"]) == set(runs.machine()) and first["machine"]["cpus"] >= 1
    git = runs.provenance.git_state()
    assert first["commit"] == git["commit"] and first["clean"] is (not git["dirty"])
    assert first["timestamp"].endswith("Z") and first["timestamp"][:2] == "20"


def test_append_record_refuses_fields_it_writes_itself(tmp_path):
    with pytest.raises(ValueError, match=r"sets \['machine', 'timestamp'\]"):
        runs.append_record("x", {"timestamp": "now", "machine": "mine"}, tmp_path / "r.jsonl", writer="x.py")
    assert not (tmp_path / "r.jsonl").exists()


def test_record_readers_accept_old_and_new_record_shapes(tmp_path):
    from workbench.cost.records import read_records, record_machine

    path = tmp_path / "benchmarks.jsonl"
    old = {"benchmark": "finetune_throughput", "date": "2026-12-03T08:16:46+00:00", "machine": "x86_64", "threads": 1}
    path.write_text(json.dumps(old) + "\n")
    new = runs.append_record("finetune_throughput", {"threads": 2}, path, writer="benchmarks/finetune_throughput.py")
    records = read_records("finetune_throughput", path)
    assert [r["threads"] for r in records] == [1, 2]  # old "date" and new "timestamp" order alike
    assert record_machine(records[0]) == {"cpu": "x86_64", "cpus": None, "torch_threads": 1, "device": None}
    assert record_machine(records[1])["cpus"] == new["machine"]["cpus"]
    assert record_machine(records[1])["cpu"] == runs.cpu_name()


def test_git_state_counts_code_changes_but_not_what_runs_write_to_results(tmp_path):
    def git(*args):
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
        )

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "benchmarks.jsonl").write_text("{}\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "start")
    assert runs.provenance.git_state(tmp_path)["dirty"] is False
    (tmp_path / "results" / "benchmarks.jsonl").write_text("{}\n{}\n")  # a job's own record
    assert runs.provenance.git_state(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert runs.provenance.git_state(tmp_path)["dirty"] is True
