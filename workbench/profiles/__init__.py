"""Profiles as data: the sizes every notebook and the fine-tuning recipe run at, one YAML file per profile.

A profile trades cost for precision: ``smoke`` runs the same code path on a few items (CI, minutes),
``default`` is sized for a 2-core CPU and backs the README's tables, ``full`` is for a GPU machine.
Each file (``workbench/profiles/<name>.yaml``) holds one section per notebook, keyed by the notebook's
name, plus sections shared by several notebooks (``metric_aware``: the decodes of notebooks 02 and
03; ``finetune``: :mod:`workbench.lifecycle.recipe`).

Every profile must have the sections and keys of the reference profile (``default.yaml``), no more
and no fewer, so a size added to one file and forgotten in another fails at load time, naming the
file and the key. Reading a key a section does not have fails the same way.

>>> sizes = load_profile("smoke")["01_models_data_decoding"]
>>> sizes["reviews"], load_profile("default")["01_models_data_decoding"]["reviews"]
(3, 12)
>>> sizes["review"]
Traceback (most recent call last):
...
workbench.profiles.ProfileError: ...smoke.yaml: section '01_models_data_decoding' has no key 'review' (it has: ...)
"""

from __future__ import annotations

from pathlib import Path

import yaml

PROFILE_DIR = Path(__file__).resolve().parent
REFERENCE_PROFILE = "default"


class ProfileError(KeyError):
    """A profile that does not exist, or a section or key that a profile file lacks or should not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Section(dict):
    """One section of a profile: a plain dict whose missing keys raise :class:`ProfileError` naming the file."""

    def __init__(self, values: dict, path: Path, name: str):
        super().__init__(values)
        self.path, self.name = path, name

    def __missing__(self, key):
        raise ProfileError(f"{self.path}: section {self.name!r} has no key {key!r} (it has: {', '.join(sorted(self))})")


class Profile(dict):
    """A loaded profile: ``{section name: Section}``; a missing section raises :class:`ProfileError`."""

    def __init__(self, sections: dict, path: Path, name: str):
        super().__init__(sections)
        self.path, self.name = path, name

    def __missing__(self, key):
        raise ProfileError(
            f"{self.path}: profile {self.name!r} has no section {key!r} (it has: {', '.join(sorted(self))})"
        )


def available_profiles(folder: Path = PROFILE_DIR) -> list[str]:
    """The profiles in ``folder`` (default: those shipped with the package, ``["default", "full", "smoke"]``)."""
    return sorted(path.stem for path in Path(folder).glob("*.yaml"))


def _read(name: str, folder: Path) -> tuple[Path, dict]:
    path = Path(folder) / f"{name}.yaml"
    if not path.is_file():
        raise ProfileError(
            f"unknown profile {name!r}: there is no {path} (profiles: {', '.join(available_profiles(folder))})"
        )
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict) or not all(isinstance(section, dict) for section in data.values()):
        raise ProfileError(f"{path}: a profile is a mapping of sections, each a mapping of keys to sizes")
    return path, data


def _check_against_reference(path: Path, data: dict, reference_path: Path, reference: dict) -> None:
    for section, keys in reference.items():
        if section not in data:
            raise ProfileError(f"{path}: missing section {section!r} (the reference {reference_path.name} has it)")
        missing = sorted(set(keys) - set(data[section]))
        if missing:
            raise ProfileError(
                f"{path}: section {section!r} is missing key(s) {missing} "
                f"(the reference {reference_path.name} has them)"
            )
    for section, keys in data.items():
        if section not in reference:
            raise ProfileError(f"{path}: unknown section {section!r} (not in the reference {reference_path.name})")
        unknown = sorted(set(keys) - set(reference[section]))
        if unknown:
            raise ProfileError(
                f"{path}: section {section!r} has unknown key(s) {unknown} (not in the reference {reference_path.name})"
            )


def load_profile(name: str, folder: Path = PROFILE_DIR) -> Profile:
    """Read and check one profile.

    Args:
        name: a profile name (see :func:`available_profiles`).
        folder: where the profile files are (default: the package's; its ``default.yaml`` is the reference).

    Returns:
        ``{section: {key: value}}``, fresh on each call (changing it changes no other caller's copy).

    Raises:
        ProfileError: the profile does not exist, or its sections or keys differ from the reference
            profile's; the message names the file and the section or key.
    """
    path, data = _read(name, folder)
    if name != REFERENCE_PROFILE:
        _check_against_reference(path, data, *_read(REFERENCE_PROFILE, folder))
    return Profile({section: Section(values, path, section) for section, values in data.items()}, path, name)
