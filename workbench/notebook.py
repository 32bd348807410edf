"""The set-up every notebook repeats, in one call: threads, run folder, manifest, tracking, profile sizes, model.

A notebook's first code cell after its papermill parameters::

    setup = start_notebook("07_cost_generalization_evaluation", globals())
    run, SIZES = setup.run, setup.sizes
    ...
    setup.finish()

The parameters are the names the notebook's ``parameters`` cell assigns (read from
``notebooks/<name>.ipynb``), with their values in the namespace passed, so a value papermill
injected is the one recorded. ``RUN_DIR`` (set by ``scripts/run_notebooks.py``) chooses the run
folder and is not recorded; ``THREADS`` is recorded as resolved (0 becomes the idle cores).
"""

from __future__ import annotations

import ast
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from workbench.inference.engine import HFEngine
from workbench.paths import PROJECT_ROOT
from workbench.profiles import Section, load_profile
from workbench.runs import Run, set_threads


@dataclass
class NotebookRun:
    """A started notebook run.

    Attributes:
        run: the run record (:class:`workbench.runs.Run`): folder, manifest, result tables.
        sizes: the notebook's section of its profile (``workbench/profiles/<PROFILE>.yaml``).
        threads: torch CPU threads in use.
        engine: the HF engine of ``MODEL`` / ``DTYPE`` / ``DEVICE`` when one was asked for, else None.
        started: when the set-up began (``time.time()``).
    """

    run: Run
    sizes: Section
    threads: int
    engine: HFEngine | None = None
    started: float = field(default_factory=time.time)

    def finish(self) -> dict:
        """Finish the run record (final manifest, tracking) and print the wall time; returns the manifest."""
        manifest = self.run.finish()
        print(
            f"notebook {self.run.notebook[:2]} ({self.run.params['PROFILE']}) "
            f"ran in {time.time() - self.started:.0f} s; "
            f"tables in {self.run.results}"
        )
        return manifest


def parameter_names(notebook: str, folder=PROJECT_ROOT / "notebooks") -> list[str]:
    """The names assigned in the cell tagged ``parameters`` of ``folder/<notebook>.ipynb``, in order.

    Raises:
        ValueError: the notebook has no parameters cell.
    """
    path = folder / f"{notebook}.ipynb"
    for cell in json.loads(path.read_text())["cells"]:
        if cell["cell_type"] == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            tree = ast.parse("".join(cell["source"]))
            return [
                target.id
                for node in tree.body
                if isinstance(node, ast.Assign)
                for target in node.targets
                if isinstance(target, ast.Name)
            ]
    raise ValueError(f"{path}: no code cell tagged 'parameters'")


def start_notebook(
    notebook: str, namespace: Mapping, section: str | None = None, engine: bool | dict = False
) -> NotebookRun:
    """Start a notebook run from its parameters.

    Args:
        notebook: the notebook's name, e.g. ``"07_cost_generalization_evaluation"``.
        namespace: where the parameters' values are (a notebook passes ``globals()``); only the names of
            :func:`parameter_names` are read. PROFILE is required; MODEL / DTYPE / DEVICE / THREADS /
            RUN_DIR are used when present (THREADS 0: the idle cores; RUN_DIR None: a new folder under runs/).
        section: the profile section to read (default: the notebook's name).
        engine: True (or a dict of :meth:`HFEngine.load` options) to load ``MODEL`` in ``DTYPE`` on
            ``DEVICE`` and record its fingerprint in the run.

    Returns:
        The :class:`NotebookRun`; a one-line summary (profile, model, threads, load) is printed.

    Raises:
        workbench.profiles.ProfileError: an unknown PROFILE, or a profile without the section.
    """
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenizers would warn when data loaders fork
    params = {name: namespace[name] for name in parameter_names(notebook)}
    sizes = load_profile(params["PROFILE"])[section or notebook]
    recorded = {name: value for name, value in params.items() if name != "RUN_DIR"}
    threads = set_threads(params.get("THREADS", 0))
    if "THREADS" in params:
        recorded["THREADS"] = threads
    setup = NotebookRun(Run.start(notebook, recorded, params.get("RUN_DIR")), sizes, threads)
    if engine:
        options = engine if isinstance(engine, dict) else {}
        setup.engine = HFEngine.load(
            params["MODEL"], device=params.get("DEVICE", "auto"), dtype=params.get("DTYPE", "fp32"), **options
        )
        setup.run.add_model(setup.engine.fingerprint)
    print(
        f"notebook {notebook[:2]}, profile {params['PROFILE']}, model {params.get('MODEL', '-')}: {threads} torch "
        f"thread(s), load average {os.getloadavg()[0]:.1f}, run folder {setup.run.folder}"
    )
    return setup
