"""Where the workbench reads data and keeps caches.

Both places are configurable through environment variables so that the same notebooks run on a
laptop, on a GPU box and in CI:

* ``WORKBENCH_DATA_DIR``: a folder with local copies of the data sets (``sst5/``, ``stsb/``,
  ``gsm8k/``). When it is unset and ``../shared/data`` exists next to the project, that folder is
  used; otherwise loaders fall back to the Hugging Face hub through ``datasets``.
* ``WORKBENCH_CACHE_DIR``: converted model weights and generation caches. Defaults to
  ``$XDG_CACHE_HOME/workbench`` (``~/.cache/workbench``).
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath, PureWindowsPath

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = PROJECT_ROOT / "results"


def data_dir() -> Path | None:
    """The local data folder, or None when data must come from the hub."""
    configured = os.environ.get("WORKBENCH_DATA_DIR")
    if configured:
        path = Path(configured).expanduser().resolve()
        if not path.is_dir():
            raise FileNotFoundError(f"WORKBENCH_DATA_DIR={configured!r} is not a folder")
        return path
    sibling = PROJECT_ROOT.parent / "shared" / "data"
    return sibling if sibling.is_dir() else None


def cache_dir() -> Path:
    """The user cache folder for converted models and generation caches (created on demand)."""
    configured = os.environ.get("WORKBENCH_CACHE_DIR")
    if configured:
        path = Path(configured).expanduser()
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        path = (Path(xdg) if xdg else Path.home() / ".cache") / "workbench"
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_contents(folder: Path | None = None) -> dict:
    """Files and GiB under the cache folder (default :func:`cache_dir`): what a timed run found there, since a run
    that reads an earlier run's models and generations is not a cold start.

    >>> cache_contents(Path("/nonexistent"))
    {'files': 0, 'gib': 0.0}
    """
    files = [p for p in Path(folder or cache_dir()).rglob("*") if p.is_file()]  # rglob of a missing folder: []
    return {"files": len(files), "gib": round(sum(p.stat().st_size for p in files) / 2**30, 2)}


def is_absolute(text: str) -> bool:
    """Whether a string is an absolute file path (POSIX, or Windows with a drive or UNC prefix).

    >>> is_absolute("/root/.cache/workbench/finetuned/x/model"), is_absolute("finetuned/x/model")
    (True, False)
    >>> is_absolute("C:\\\\models\\\\x"), is_absolute("Qwen/Qwen2.5-0.5B-Instruct")
    (True, False)
    """
    return PurePosixPath(text).is_absolute() or PureWindowsPath(text).is_absolute()


def model_name(name: str) -> str:
    """A model's name as provenance records it: a folder under the cache relative to the cache folder,
    one under the project relative to the project, anything else (a hub id, an embedded name) as given.

    >>> model_name(str(cache_dir() / "finetuned" / "8228c88e5db0" / "model"))
    'finetuned/8228c88e5db0/model'
    >>> model_name("smollm2-135m-instruct")
    'smollm2-135m-instruct'
    """
    if not is_absolute(name):
        return name
    path = Path(name).resolve()
    for root in (cache_dir().resolve(), PROJECT_ROOT):
        if path.is_relative_to(root):
            return str(path.relative_to(root))
    return name
