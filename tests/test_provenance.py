"""Provenance of results files, the main job's record and where a run on a dirty tree writes.

Every file in results/ needs an entry naming its writer, commit, clean flag, profile, model stages
(names relative to the cache, never absolute) and sampler version; benchmark records name their
script; a default run on a tree with uncommitted changes leaves results/ alone unless allowed.
"""

import json
import os

import pandas as pd
import pytest

from workbench import cli, main_job, provenance, report, runs
from workbench.inference.engine import SAMPLER_VERSION
from workbench.inference.gencache import GenerationCache
from workbench.inference.grid_sampler import GRID_SAMPLER_VERSION
from workbench.inference.models import DEFAULT_MODEL
from workbench.paths import PROJECT_ROOT, RESULTS_DIR, model_name

SCRIPT = PROJECT_ROOT / "benchmarks" / "mbr_speed.py"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(folder))
    monkeypatch.setenv("WORKBENCH_TRACKING", "0")
    return folder


def finetuned(cache) -> dict:
    """The fingerprint of a fine-tuned stage saved under the cache, as load_model makes it (absolute name)."""
    return {
        "name": str(cache / "finetuned" / "8228c88e5db0" / "model"),
        "dtype": "fp32",
        "quantization": None,
        "weights_sha256": "ab" * 32,
    }


def test_an_entry_names_the_stage_relative_to_the_cache_with_hashes_and_the_sampler_version(cache):
    fingerprint = finetuned(cache)
    written = provenance.entry(PROJECT_ROOT / "notebooks" / "02_metric_aware_inference.ipynb", "default", [fingerprint])
    assert written["writer"] == "notebooks/02_metric_aware_inference.ipynb" and written["profile"] == "default"
    (model,) = written["models"]
    assert model["name"] == "finetuned/8228c88e5db0/model" and model["weights_sha256"] == "ab" * 32
    assert model["stage"] == GenerationCache(cache / "generations", fingerprint).folder.name  # the cache's folder
    assert written["samplers"] == {"engine": SAMPLER_VERSION, "grid": GRID_SAMPLER_VERSION}
    git = provenance.git_state()
    assert written["commit"] == git["commit"] and written["clean"] is (not git["dirty"])
    assert provenance._absolute_paths(written) == []


def test_problems_name_a_missing_entry_an_absolute_path_a_missing_field_and_an_unnamed_record(tmp_path, cache):
    entry = provenance.entry(SCRIPT, "default", [{"name": DEFAULT_MODEL, "weights_sha256": "0"}])
    good = {**entry, "clean": True}  # as on a clean tree, whatever the state of this checkout
    (tmp_path / "a.csv").write_text("x\n1\n")
    folder = tmp_path.name
    assert provenance.problems(tmp_path) == [f"{folder}/a.csv: no entry in {folder}/provenance.json"]
    provenance.update(tmp_path, {"a.csv": good})
    assert provenance.problems(tmp_path) == []

    (tmp_path / "b.csv").write_text("x\n")
    (tmp_path / "c.csv").write_text("x\n")
    absolute = {**good, "models": [{"name": str(cache / "m"), "weights_sha256": "0"}]}
    provenance.update(tmp_path, {"b.csv": absolute, "c.csv": {k: v for k, v in good.items() if k != "commit"}})
    (tmp_path / "d.csv").write_text("x\n")
    (tmp_path / "old.jsonl").write_text(json.dumps({"benchmark": "mbr_speed", "date": "2026-12-01"}) + "\n")
    provenance.update(tmp_path, {"old.jsonl": provenance.records_entry(tmp_path / "old.jsonl"), "gone.csv": good})
    assert provenance.problems(tmp_path) == [
        f"{folder}/b.csv: absolute path {str(cache / 'm')!r} in its entry",
        f"{folder}/c.csv: its entry has no ['commit']",
        f"{folder}/d.csv: no entry in {folder}/provenance.json",
        f"{folder}/old.jsonl: 1 record(s) name no writer",
        f"{folder}/provenance.json: an entry for gone.csv, which does not exist",
    ]

    for name in ("b.csv", "c.csv", "d.csv", "old.jsonl"):
        (tmp_path / name).unlink()
    provenance.update(tmp_path, {"gone.csv": {**good, "commit": "1234567" + "0" * 33, "clean": False}})
    (tmp_path / "gone.csv").write_text("x\n")
    (tmp_path / "records.jsonl").write_text("")
    runs.append_record("mbr_speed", {"n": 1}, tmp_path / "records.jsonl", writer=SCRIPT)  # records: other commits ok
    assert provenance.problems(tmp_path)[:1] == [f"{folder}/gone.csv: written from a tree with uncommitted changes"]
    mixed = provenance.problems(tmp_path)[1]  # the commits in sorted order: where 1234567 falls depends on HEAD
    assert mixed.startswith(f"{folder}: its files come from 2 commits (") and "1234567" in mixed


def test_problems_name_a_results_file_that_holds_an_absolute_path(tmp_path, cache):
    entry = {**provenance.entry(SCRIPT, "default", []), "clean": True}
    model = cache / "finetuned" / "2ff4c5e17b38" / "model"
    pd.DataFrame({"model": ["finetuned"], "model_name": [str(model)]}).to_csv(tmp_path / "a.csv", index=False)
    provenance.update(tmp_path, {"a.csv": entry})
    assert provenance.problems(tmp_path) == [f"{tmp_path.name}/a.csv: absolute path {str(model)!r} in its contents"]
    pd.DataFrame({"model": ["finetuned"], "model_name": [model_name(str(model))]}).to_csv(
        tmp_path / "a.csv", index=False
    )
    assert provenance.problems(tmp_path) == []


def test_benchmark_records_name_their_script_per_record_and_in_provenance(tmp_path, cache):
    path = tmp_path / "benchmarks.jsonl"
    runs.append_record("mbr_speed", {"n": 1}, path, writer=SCRIPT)
    runs.append_record(
        "throughput_roofline", {"threads": 1}, path, writer=PROJECT_ROOT / "benchmarks" / "throughput.py"
    )
    entry = provenance.read(tmp_path)["benchmarks.jsonl"]
    assert entry["kind"] == "records" and entry["writer"] == ["benchmarks/mbr_speed.py", "benchmarks/throughput.py"]
    assert entry["records"]["benchmarks/mbr_speed.py"]["count"] == 1
    assert entry["commit"] == provenance.git_state()["commit"]
    assert provenance.problems(tmp_path) == []


def test_a_notebook_run_does_not_claim_a_record_a_benchmark_appended_meanwhile(tmp_path, cache):
    run = runs.Run.start("02_metric_aware_inference", {"PROFILE": "smoke", "MODEL": DEFAULT_MODEL}, tmp_path / "run")
    run.add_model(finetuned(cache))
    run.save_table(pd.DataFrame({"x": [1]}), "02_table.csv")
    runs.append_record("mbr_speed", {"n": 1}, run.results / "benchmarks.jsonl", writer=SCRIPT)
    run.finish()
    entries = provenance.read(run.results)
    assert entries["benchmarks.jsonl"]["writer"] == ["benchmarks/mbr_speed.py"]
    assert entries["02_table.csv"]["writer"] == "notebooks/02_metric_aware_inference.ipynb"
    assert entries["02_table.csv"]["models"][0]["name"] == "finetuned/8228c88e5db0/model"
    assert entries["02_table.csv"]["run"] == str((tmp_path / "run").resolve())  # outside the project: as is


def test_a_default_run_on_a_dirty_tree_writes_its_own_folder_unless_allowed(tmp_path, cache, monkeypatch, capsys):
    monkeypatch.setattr(runs, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(runs, "git_state", lambda: {"commit": "c" * 40, "dirty": True})
    monkeypatch.delenv(runs.ALLOW_DIRTY, raising=False)
    params = {"PROFILE": "default", "MODEL": DEFAULT_MODEL}
    dirty = runs.Run.start("99_test", params, tmp_path / "dirty")
    assert dirty.results == tmp_path / "dirty" / "results" and "uncommitted changes" in dirty.redirected
    assert "tables go to" in capsys.readouterr().out
    assert json.loads((tmp_path / "dirty" / "manifest.json").read_text())["results_redirected"] == dirty.redirected
    monkeypatch.setenv(runs.ALLOW_DIRTY, "1")
    assert runs.Run.start("99_test", params, tmp_path / "allowed").results == tmp_path / "results"
    monkeypatch.setattr(runs, "git_state", lambda: {"commit": "c" * 40, "dirty": False})
    monkeypatch.delenv(runs.ALLOW_DIRTY)
    assert runs.Run.start("99_test", params, tmp_path / "clean").results == tmp_path / "results"
    smoke = runs.Run.start("99_test", {**params, "PROFILE": "smoke"}, tmp_path / "smoke")
    assert smoke.results == tmp_path / "smoke" / "results" and smoke.redirected is None  # smoke never writes results/


def test_the_job_record_goes_to_results_only_for_a_complete_clean_default_run(tmp_path, monkeypatch):
    monkeypatch.setattr(main_job, "RESULTS_DIR", tmp_path / "results")
    monkeypatch.setattr(main_job, "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr(main_job.provenance, "git_state", lambda: {"commit": "c" * 40, "dirty": False})
    monkeypatch.setenv(main_job.STARTED, str(__import__("time").time() - 30))  # main.sh started 30 s ago
    monkeypatch.delenv(runs.ALLOW_DIRTY, raising=False)
    job = main_job.JobRecord("default", DEFAULT_MODEL, complete=True)
    job.add("01_models_data_decoding", 12.34, finished=True)
    path = job.finish()
    assert path == tmp_path / "results" / "main_run.json"
    record = json.loads(path.read_text())
    assert record["commit"] == "c" * 40 and record["clean"] is True and record["status"] == "finished"
    assert record["notebooks"] == {"01_models_data_decoding": 12.3}
    assert 30 <= record["total_seconds"] < 300 and record["setup_seconds"] >= 29
    assert len(record["load_average"]["start"]) == 3 and len(record["load_average"]["end"]) == 3
    assert record["machine"]["cpus"] == os.cpu_count() and record["machine"]["torch_threads"] >= 1
    assert {"cpu", "memory_gib", "os"} <= set(record["machine"])
    assert set(record["cache_at_start"]) == {"files", "gib"}
    assert provenance.read(path.parent)["main_run.json"]["writer"] == "scripts/run_notebooks.py"

    partial = main_job.JobRecord("default", DEFAULT_MODEL, complete=False)
    assert partial.finish().parent.parent == tmp_path / "runs" / "default" / "smollm2-135m-instruct"
    failed = main_job.JobRecord("default", DEFAULT_MODEL, complete=True)
    failed.add("01_models_data_decoding", 1.0, finished=False)
    assert failed.finish().parent.name.endswith("-main")
    monkeypatch.setattr(main_job.provenance, "git_state", lambda: {"commit": "c" * 40, "dirty": True})
    dirty = main_job.JobRecord("default", DEFAULT_MODEL, complete=True)
    assert dirty.record()["clean"] is False and dirty.finish().parent.name.endswith("-main")
    monkeypatch.setenv(runs.ALLOW_DIRTY, "1")
    assert main_job.JobRecord("default", DEFAULT_MODEL, complete=True).finish() == path


def test_the_readme_quotes_the_job_record_or_says_it_is_not_yet_measured(tmp_path):
    assert "not yet measured" in report.render_job(tmp_path)
    record = {
        "commit": "f4f51a8" + "0" * 33,
        "clean": True,
        "total_seconds": 3605.2,
        "machine": {"cpu": "Some CPU", "cpus": 2, "memory_gib": 7.8, "torch_threads": 2},
        "load_average": {"start": [0.4, 0.3, 0.2], "end": [1.9, 1.8, 1.7], "samples": []},
    }
    (tmp_path / "main_run.json").write_text(json.dumps(record))
    block = report.render_job(tmp_path)
    assert block.startswith(report.JOB_BEGIN) and block.endswith(report.JOB_END)
    assert "3605 s (60 min) wall" in block and "`f4f51a8` (clean tree)" in block and "Some CPU (2 cores" in block
    assert "cache state not recorded" in block
    record["cache_at_start"] = {"files": 0, "gib": 0.0}
    (tmp_path / "main_run.json").write_text(json.dumps(record))
    assert "set-up included, from an empty cache, on" in report.render_job(tmp_path)
    record["cache_at_start"] = {"files": 1200, "gib": 19.5}
    (tmp_path / "main_run.json").write_text(json.dumps(record))
    assert "with 19.5 GiB (1200 files) of earlier runs already in the cache, so not a cold start" in report.render_job(
        tmp_path
    )


def test_report_check_fails_on_a_results_file_without_provenance(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("workbench.paths.RESULTS_DIR", tmp_path)
    monkeypatch.setattr(report, "render", lambda check=False: [])  # the documents themselves: tests/test_report.py
    (tmp_path / "05_load_test.csv").write_text("x\n1\n")
    assert cli.main(["report", "--check"]) == 1
    assert f"provenance: {tmp_path.name}/05_load_test.csv: no entry" in capsys.readouterr().out
    provenance.update(tmp_path, {"05_load_test.csv": {**provenance.entry(SCRIPT, "default", []), "clean": True}})
    assert cli.main(["report", "--check"]) == 0


@pytest.mark.xfail(
    not (RESULTS_DIR / main_job.FILE).exists(),
    reason="results/ was assembled before provenance entries existed; the main run (issue 17, section 5) rewrites it",
    strict=True,
)
def test_every_file_in_results_has_a_complete_provenance_entry():
    assert provenance.problems(RESULTS_DIR) == []


def test_the_documents_name_the_writer_commit_and_state_of_a_new_entry(tmp_path):
    written = {**provenance.entry(SCRIPT, "default", []), "commit": "9d841c5988fe", "clean": False}
    provenance.update(tmp_path, {"05_load_test.csv": written})
    line = report.provenance_line(tmp_path, "05_load_test.csv")
    assert line.startswith("Source: `results/05_load_test.csv`, written by `benchmarks/mbr_speed.py` (profile default)")
    assert "commit `9d841c5` (uncommitted changes)" in line
    runs.append_record("mbr_speed", {"n": 1}, tmp_path / "benchmarks.jsonl", writer=SCRIPT)
    line = report.provenance_line(tmp_path, "benchmarks.jsonl")
    assert line.startswith("Source: `results/benchmarks.jsonl`, written by `benchmarks/mbr_speed.py`, commit `")
