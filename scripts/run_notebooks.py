"""Execute the numbered notebooks headless with papermill, in order, under one profile.

    python scripts/run_notebooks.py --profile smoke                       # every notebook, CI settings
    python scripts/run_notebooks.py --profile default 02 03               # only notebooks 02 and 03
    python scripts/run_notebooks.py -p MODEL Qwen/Qwen2.5-0.5B-Instruct 02  # another model

Each execution gets its own folder, ``runs/<profile>/<model id>/<UTC time>-<NN>/``, holding the
executed notebook (with outputs) and the run's ``manifest.json``; earlier runs stay. The
notebooks in notebooks/ stay clean. While a notebook runs, every code cell is announced with
the time elapsed, so a long job is never silent. After each notebook the runner checks that it
drew at least the figures its metadata promises for the profile (``metadata.workbench.min_images``)
and that no figure was printed as text (``<Figure size ...>``) instead of drawn.

The whole job is recorded in ``main_run.json`` (commit, clean flag, wall time in all and per
notebook, load average, machine; :mod:`workbench.main_job`): in ``results/`` for a complete default
run on a clean tree, else in ``runs/<profile>/<model id>/<UTC time>-main/``. A default run on a tree
with uncommitted changes leaves ``results/`` alone unless ``--allow-dirty`` is given
(:func:`workbench.runs.results_folder`).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import sys
import time
from pathlib import Path

import nbformat
import papermill
from nbclient.exceptions import CellTimeoutError, DeadKernelError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from workbench.inference.gencache import DECODE_LABEL_ENV  # noqa: E402
from workbench.inference.models import DEFAULT_MODEL, model_id  # noqa: E402
from workbench.main_job import JobRecord  # noqa: E402
from workbench.profiles import available_profiles  # noqa: E402
from workbench.runs import ALLOW_DIRTY  # noqa: E402


def parse_value(text: str):
    """A parameter value as a Python literal when it is one ("8", "[1, 2]", "None"), else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def count_images(notebook) -> tuple[int, int]:
    """(figures drawn as images, figures printed as text instead) in an executed notebook."""
    images = unrendered = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            images += any(kind.startswith("image/") for kind in data)
            text = data.get("text/plain", "") if not any(k.startswith("image/") for k in data) else ""
            text += output.get("text", "") if output.get("output_type") == "stream" else ""
            unrendered += "<Figure size" in "".join(text)
    return images, unrendered


class CellAnnouncer:
    """Prints each code cell as it starts, with the time since the notebook started."""

    def __init__(self, label: str, notebook: Path):
        self.label = label
        self.started = time.time()
        # papermill adds one code cell, the injected parameters
        self.code_cells = 1 + sum(c.cell_type == "code" for c in nbformat.read(notebook, as_version=4).cells)
        self.seen = 0

    def __call__(self, cell, cell_index, **_):
        if cell.cell_type != "code":
            return
        self.seen += 1
        first = next((line for line in cell.source.splitlines() if line.strip() and not line.startswith("#")), "")
        print(
            f"  {self.label} cell {self.seen}/{self.code_cells} at {time.time() - self.started:6.0f} s: {first[:70]}",
            flush=True,
        )


def run_one(notebook: Path, profile: str, params: dict, timeout: int) -> dict:
    declared = papermill.inspect_notebook(str(notebook))
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise SystemExit(f"{notebook.name} has no parameter(s) {unknown}; it takes {sorted(declared)}")
    model = params.get("MODEL", parse_value(declared["MODEL"]["default"]) if "MODEL" in declared else DEFAULT_MODEL)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run_dir = ROOT / "runs" / profile / model_id(str(model)) / f"{stamp}-{notebook.name[:2]}"
    run_dir.mkdir(parents=True, exist_ok=True)
    output = run_dir / notebook.name
    label = f"[{profile}] {notebook.name[:2]}"
    print(f"{label} {notebook.name} -> {output.relative_to(ROOT)}", flush=True)
    os.environ[DECODE_LABEL_ENV] = notebook.name[:2]  # names this notebook in a generation-cache audit log
    start = time.time()
    status, error = "finished", None
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters={"PROFILE": profile, "RUN_DIR": str(run_dir), **params},
            cwd=str(notebook.parent),
            execution_timeout=timeout,
            kernel_name="python3",
            progress_bar=False,
            on_cell_execute=CellAnnouncer(label, notebook),
        )
    except papermill.PapermillExecutionError as exc:
        status, error = "failed", f"{exc.ename}: {exc.evalue}"
    except CellTimeoutError:  # a failed notebook like any other: the job goes on to write its record
        status, error = "failed", f"a cell ran past the limit of {timeout} s (--timeout)"
    except DeadKernelError as exc:  # killed for memory, say
        status, error = "failed", f"the kernel died: {exc}"
    wall = time.time() - start
    executed = nbformat.read(output, as_version=4)
    images, unrendered = count_images(executed)
    wanted = executed.metadata.get("workbench", {}).get("min_images", {}).get(profile, 0)
    if status == "finished" and (images < wanted or unrendered):
        status, error = "failed", f"{images} figures drawn (at least {wanted} expected), {unrendered} printed as text"
    record = {
        "status": status,
        "error": error,
        "wall_s": round(wall, 1),
        "images": images,
        "executed_notebook": output.name,
    }
    manifest_path = run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {"notebook": notebook.stem}
    manifest["runner"] = record
    manifest_path.write_text(json.dumps(manifest, indent=1, default=str))
    print(f"{label} {status} in {wall:.0f} s, {images} figures" + (f": {error}" if error else ""), flush=True)
    return {"notebook": notebook.name, "run": str(run_dir.relative_to(ROOT)), **record}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--profile",
        default="default",
        choices=available_profiles(),
        help="sizes from workbench/profiles/<profile>.yaml (default: %(default)s)",
    )
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed for any one cell")
    parser.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="a notebook parameter (MODEL, DTYPE, DEVICE, THREADS, ...); values are Python literals or strings",
    )
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="let a default run on a tree with uncommitted changes write results/ (recorded as clean: false)",
    )
    parser.add_argument("only", nargs="*", help="notebook number prefixes to run (default: all)")
    args = parser.parse_args()
    if args.allow_dirty:
        os.environ[ALLOW_DIRTY] = "1"  # read by each notebook's kernel (workbench.runs.results_folder)

    params = {name: parse_value(value) for name, value in args.parameter}
    # Every notebook of a job runs on all cores unless THREADS is given. Left to each notebook, THREADS 0 (the idle
    # cores, from the load average) counted the load of the notebook before it as other work: a default job on an
    # idle 2-core machine ran notebooks 02-08 on 1 thread, where 2 make a forward and backward pass of the default
    # model 1.95x faster. The job records the load average it ran under (results/main_run.json).
    params["THREADS"] = params.get("THREADS", 0) or os.cpu_count() or 1
    print(f"torch threads for every notebook: {params['THREADS']}", flush=True)
    numbered = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    notebooks = [p for p in numbered if not args.only or p.name[:2] in args.only]
    if not notebooks:
        print("no notebooks matched", file=sys.stderr)
        return 1
    # Text progress bars: a saved notebook keeps their final state (widgets would stay at 0%).
    os.environ["WORKBENCH_PROGRESS"] = "text"
    job = JobRecord(args.profile, str(params.get("MODEL", DEFAULT_MODEL)), complete=notebooks == numbered)
    summary = []
    for notebook in notebooks:
        summary.append(run_one(notebook, args.profile, params, args.timeout))
        job.add(notebook.stem, summary[-1]["wall_s"], summary[-1]["status"] == "finished")
        if summary[-1]["status"] != "finished":
            break
    record = job.finish()
    print(
        "\n".join(
            f"{s['notebook']:45s} {s['status']:9s} {s['wall_s']:8.0f} s {s['images']:3d} figures  {s['run']}"
            for s in summary
        )
    )
    print(f"job record: {record.relative_to(ROOT) if record.is_relative_to(ROOT) else record}")
    return 0 if all(s["status"] == "finished" for s in summary) and len(summary) == len(notebooks) else 1


if __name__ == "__main__":
    sys.exit(main())
