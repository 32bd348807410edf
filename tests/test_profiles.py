"""Profiles as data: the loader's checks, the recipe reading its sizes from the files, and the notebook set-up."""

import json
import shutil

import pytest
import yaml

from workbench.lifecycle import recipe
from workbench.notebook import parameter_names, start_notebook
from workbench.profiles import PROFILE_DIR, ProfileError, available_profiles, load_profile


def test_every_shipped_profile_loads_with_the_reference_sections():
    assert available_profiles() == ["default", "full", "smoke"]
    reference = load_profile("default")
    for name in available_profiles():
        profile = load_profile(name)
        assert {section: set(keys) for section, keys in profile.items()} == {s: set(k) for s, k in reference.items()}


def test_unknown_profile_names_the_missing_file_and_the_known_profiles():
    with pytest.raises(ProfileError, match=r"unknown profile 'fast'.*fast\.yaml.*default, full, smoke"):
        load_profile("fast")


def _copy_profiles(tmp_path, edit):
    for path in PROFILE_DIR.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    data = yaml.safe_load((tmp_path / "smoke.yaml").read_text())
    edit(data)
    (tmp_path / "smoke.yaml").write_text(yaml.safe_dump(data))
    return tmp_path


def test_a_missing_key_names_the_file_section_and_key(tmp_path):
    folder = _copy_profiles(tmp_path, lambda data: data["06_consistency_simct"].pop("pilot"))
    with pytest.raises(
        ProfileError, match=r"smoke\.yaml: section '06_consistency_simct' is missing key\(s\) \['pilot'\]"
    ):
        load_profile("smoke", folder)
    assert load_profile("default", folder)["06_consistency_simct"]["pilot"] == 40  # the reference itself still loads


def test_an_unknown_key_or_a_missing_section_is_refused(tmp_path):
    folder = _copy_profiles(tmp_path, lambda data: data["05_serve_and_monitor"].update(typo=1))
    with pytest.raises(
        ProfileError, match=r"smoke\.yaml: section '05_serve_and_monitor' has unknown key\(s\) \['typo'\]"
    ):
        load_profile("smoke", folder)
    folder = _copy_profiles(tmp_path, lambda data: data.pop("finetune"))
    with pytest.raises(ProfileError, match=r"smoke\.yaml: missing section 'finetune'"):
        load_profile("smoke", folder)


def test_reading_a_key_or_section_a_profile_lacks_names_the_file():
    profile = load_profile("full")
    with pytest.raises(ProfileError, match=r"full\.yaml: profile 'full' has no section '08_nothing'"):
        profile["08_nothing"]
    with pytest.raises(ProfileError, match=r"full\.yaml: section '03_metric_aware_sweeps' has no key 'ks'"):
        profile["03_metric_aware_sweeps"]["ks"]


def test_each_load_is_a_fresh_copy():
    load_profile("smoke")["01_models_data_decoding"]["reviews"] = 999
    assert load_profile("smoke")["01_models_data_decoding"]["reviews"] == 3


def test_the_recipe_reads_its_sizes_from_the_profile_files():
    for name in available_profiles():
        sizes, section = recipe.profile_sizes(name), load_profile(name)["finetune"]
        assert sizes.final.batch_size == section["final"]["batch_size"] and sizes.trials == section["trials"]
        assert sizes.space.lr_grid == tuple(section["space"]["lr_grid"])  # tuples: the run hashes see the same config
        assert all(
            isinstance(lr, float) for lr in sizes.space.lr + sizes.space.lr_grid
        )  # "1e-4" would be a YAML string
    assert recipe.base_config("smoke", "m").dev_examples == load_profile("smoke")["finetune"]["dev"]


def test_start_notebook_records_the_parameters_and_reads_the_section(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_TRACKING", "0")
    names = parameter_names("06_consistency_simct")
    assert names[:3] == ["PROFILE", "MODEL", "DTYPE"] and "RUN_DIR" in names
    namespace = {name: f"value of {name}" for name in names} | dict(
        PROFILE="smoke", THREADS=1, RUN_DIR=str(tmp_path / "run")
    )
    setup = start_notebook("06_consistency_simct", {**namespace, "unrelated": 1})
    assert setup.sizes == load_profile("smoke")["06_consistency_simct"] and setup.threads == 1 and setup.engine is None
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "running"
    assert manifest["parameters"] == {name: value for name, value in namespace.items() if name != "RUN_DIR"}
    assert setup.finish()["status"] == "finished"


def test_start_notebook_refuses_an_unknown_profile(tmp_path):
    with pytest.raises(ProfileError, match="unknown profile 'huge'"):
        start_notebook(
            "06_consistency_simct",
            {name: None for name in parameter_names("06_consistency_simct")} | {"PROFILE": "huge"},
        )
