"""The command line end to end on a tiny random model: evaluate and finetune write a table and a manifest."""

import json

import pandas as pd
import pytest

from make_tiny_model import make_tiny_model, make_tiny_rating_model
from workbench.cli import main
from workbench.inference.engine import HFEngine
from workbench.inference.models import load_model
from workbench.profiles import load_profile
from workbench.serving import BackgroundServer, ServerConfig, create_app


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny"), "llama")


def test_evaluate_prints_the_table_and_writes_csv_and_manifest(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    assert (
        main(
            [
                "evaluate",
                "--task",
                "sst5",
                "--model",
                tiny,
                "--device",
                "cpu",
                "--k",
                "3",
                "--limit",
                "4",
                "--shots",
                "1",
                "--rules",
                "mean,mode",
                "--bootstrap",
                "50",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    table = pd.read_csv(out / "results" / "evaluate_sst5.csv", index_col=0)
    assert {"greedy", "one sample", "mean", "mode (self-consistency)", "exact mean", "exact mode"} <= set(table.index)
    assert not {"median", "exact median"} & set(table.index)  # rules not asked for are left out
    assert (table.model == tiny).all() and {"rmse", "rmse CI", "spearman"} <= set(table.columns)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["models"][0]["name"] == tiny
    assert manifest["parameters"]["k"] == 3
    assert "exact mean" in capsys.readouterr().out


def test_evaluate_through_an_openai_compatible_server_gives_the_in_process_table(tmp_path, monkeypatch):
    """--base-url: the same greedy and exact decoding on the workbench's own /v1 API, prompts formatted with
    --model's tokenizer."""
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    rater = make_tiny_rating_model(tmp_path / "rater")  # answers parse, so the sample rules have values to compare
    common = [
        "evaluate",
        "--task",
        "sst5",
        "--model",
        rater,
        "--k",
        "4",
        "--limit",
        "6",
        "--shots",
        "1",
        "--bootstrap",
        "50",
    ]
    assert main([*common, "--device", "cpu", "--out", str(tmp_path / "local")]) == 0
    key = "cli-key"
    engine = HFEngine(load_model(rater, device="cpu"), progress=False)
    with BackgroundServer(create_app(engine, key, ServerConfig(max_total_tokens=1024))) as server:
        remote_options = ["--base-url", f"{server.url}/v1", "--api-key", key, "--out", str(tmp_path / "remote")]
        assert main([*common, *remote_options]) == 0
    local, remote = (
        pd.read_csv(tmp_path / run / "results" / "evaluate_sst5.csv", index_col=0) for run in ("local", "remote")
    )
    assert (remote.model == "rater").all()  # the served model id
    numbers = [c for c in local.columns if c not in ("model",) and not c.endswith(" CI")]
    assert local["fallback"].lt(6).all()  # the rating model's answers parse
    # Greedy and exact-grid rows are the same decoding both ways. The sampled rows are not compared: in
    # process, grid tasks draw from the exact one-pass distribution (grid_sampler), a server's samples are
    # real decodes (the same distribution, other draws; tests/test_grid_sampler.py checks the two agree).
    exact = [row for row in local.index if row == "greedy" or row.startswith("exact ")]
    assert len(exact) == 4
    pd.testing.assert_frame_equal(
        local.loc[exact, numbers], remote.loc[exact, numbers], check_exact=False, rtol=0, atol=1e-5
    )
    manifest = (tmp_path / "remote" / "manifest.json").read_text()
    assert key not in manifest and json.loads(manifest)["parameters"]["api_key"] is True
    assert json.loads(manifest)["models"][0]["backend"] == "openai-compatible"


def test_finetune_trains_and_records(tiny, tmp_path, capsys):
    out = tmp_path / "ft"
    assert (
        main(
            [
                "finetune",
                "--model",
                tiny,
                "--device",
                "cpu",
                "--tasks",
                "sst5",
                "--method",
                "full",
                "--max-steps",
                "2",
                "--batch-size",
                "2",
                "--max-examples",
                "4",
                "--save-every",
                "0",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    record = json.loads((out / "results" / "finetune.json").read_text())
    assert record["steps"] == 2 and len(record["losses"]) == 2
    assert (out / "model" / "config.json").exists() or any((out / "model").rglob("config.json"))
    assert "2 steps" in capsys.readouterr().out


def test_help_of_every_command(capsys):
    for command in (["--help"], ["evaluate", "--help"], ["finetune", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            main(command)
        assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "--lr" in out and "--base-url URL" in out and "--api-key" in out


def test_evaluate_takes_its_sizes_from_a_profile_unless_given(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "profiled"
    assert (
        main(
            [
                "evaluate",
                "--task",
                "stsb",
                "--model",
                tiny,
                "--device",
                "cpu",
                "--profile",
                "smoke",
                "--k",
                "2",
                "--bootstrap",
                "20",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    parameters = json.loads((out / "manifest.json").read_text())["parameters"]
    smoke = load_profile("smoke")["metric_aware"]["base"]["stsb"]
    assert (parameters["limit"], parameters["shots"]) == (smoke["limit"], smoke["shots"]) and parameters["k"] == 2
    assert len(pd.read_csv(out / "results" / "evaluate_stsb.csv", index_col=0).columns) > 0
    with pytest.raises(SystemExit, match="plans no run of task"):
        main(["evaluate", "--task", "nosuchtask", "--model", tiny, "--profile", "smoke"])
