"""Several fine-tuning runs at once on a CPU, each in its own process with a share of the cores.

On the 2-core CPU, two runs of the default recipe at one torch thread each get through 1.28x the steps
that one run at two threads does (``python benchmarks/parallel_training.py``): at these matrix sizes the
second thread of one run idles part of each step. So where a CPU has spare cores, :func:`train_all`
trains the unfinished runs ``workers`` at a time in child processes, in the order given (notebook 02's
cross-entropy and soft-label arms together, then the RAFT arm, which reads the trunk outputs the soft-label
arm wrote, beside the rest of the soft-label run), and then opens every run from its cache folder
(``config.output_dir``), as :func:`~workbench.lifecycle.finetune.training.finetune` reuses a finished run.

A run's weights depend on its thread count only through the order of float sums: a run trained in a
child at one thread equals one trained in-process at one thread (``tests/test_finetune.py``). An
interrupted call stops its children; every run resumes from its last checkpoint on the next call.

``WORKBENCH_TRAIN_WORKERS`` sets the number of processes (1: every run in this process, as before).
"""

from __future__ import annotations

import multiprocessing
import os
import time
import traceback
from dataclasses import dataclass

import torch

from workbench.lifecycle.finetune.config import FinetuneConfig
from workbench.lifecycle.finetune.training import FinetuneResult, finetune, is_finished
from workbench.progress import tqdm
from workbench.tasks import Example

WORKERS_ENV = "WORKBENCH_TRAIN_WORKERS"


@dataclass
class Job:
    """One run: ``finetune(config, examples=train, dev=dev)``, cached in ``config.output_dir`` (required)."""

    config: FinetuneConfig
    train: dict[str, list[Example]]
    dev: dict[str, list[Example]] | None = None


def default_workers(jobs: int, device: str) -> int:
    """Processes for ``jobs`` unfinished runs: 2 on a CPU with at least two cores, else 1 (a GPU runs one at a time).

    >>> default_workers(3, "cpu") == (2 if (os.cpu_count() or 1) >= 2 else 1), default_workers(3, "cuda")
    (True, 1)
    """
    if os.environ.get(WORKERS_ENV):
        return max(1, min(jobs, int(os.environ[WORKERS_ENV])))
    return 2 if jobs >= 2 and device == "cpu" and (os.cpu_count() or 1) >= 2 else 1


def train_all(
    jobs: dict[str, Job], progress: bool = True, workers: int | None = None, device: str | None = None
) -> dict[str, FinetuneResult]:
    """Train every job not finished yet (``workers`` at a time in child processes when more than one), then
    return ``{name: result}`` of every job, each opened from its cache folder.

    Args:
        jobs: the runs, in the order they start.
        progress: progress bars (each child's own bar goes to the process's standard error).
        workers: processes at once (default :func:`default_workers`).
        device: where the runs train ("cpu", "cuda"); default: the first job's resolved device.
    """
    for name, job in jobs.items():
        if not job.config.output_dir:
            raise ValueError(f"job {name!r} has no output_dir: a run trained in a child is read from its folder")
    todo = [name for name, job in jobs.items() if not is_finished(job.config)]
    device = device or (_device(next(iter(jobs.values())).config.device) if jobs else "cpu")
    workers = workers or default_workers(len(todo), device)
    if workers > 1 and len(todo) > 1:
        _train_in_children({name: jobs[name] for name in todo}, workers, progress)
    return {
        name: finetune(job.config, examples=job.train, dev=job.dev, progress=progress) for name, job in jobs.items()
    }


def _device(requested: str) -> str:
    return "cuda" if requested == "auto" and torch.cuda.is_available() else "cpu" if requested == "auto" else requested


def _train_in_children(jobs: dict[str, Job], workers: int, progress: bool) -> None:
    """Run the jobs in spawned processes, ``workers`` at a time; raise, naming the run, if one fails."""
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch thread pools
    threads = max(1, torch.get_num_threads() // workers)
    queue, running, failures = list(jobs), {}, context.Queue()
    bar = tqdm(total=len(jobs), desc=f"fine-tuning runs, {workers} at a time", disable=not progress)
    try:
        while queue or running:
            while queue and len(running) < workers:
                name = queue.pop(0)
                process = context.Process(
                    target=_child, args=(name, jobs[name], threads, progress, failures), daemon=True
                )
                process.start()
                running[name] = process
            time.sleep(0.5)
            for name, process in list(running.items()):
                if process.is_alive():
                    continue
                process.join()
                del running[name]
                bar.update(1)
                if process.exitcode != 0:
                    detail = failures.get(timeout=5) if not failures.empty() else (name, "no traceback")
                    raise RuntimeError(
                        f"fine-tuning run {name!r} ({jobs[name].config.output_dir}) failed in its process "
                        f"(exit code {process.exitcode}):\n{detail[1]}"
                    )
            bar.set_postfix_str(", ".join(running))
    finally:  # an interrupted notebook or a failed run stops the others; they resume from their checkpoints
        for process in running.values():
            process.terminate()
            process.join()
        bar.close()


def _child(name: str, job: Job, threads: int, progress: bool, failures) -> None:
    """A child process: train one job at ``threads`` torch threads; report a failure's traceback."""
    torch.set_num_threads(threads)
    try:
        finetune(job.config, examples=job.train, dev=job.dev, progress=progress)
    except BaseException:
        failures.put((name, traceback.format_exc()))
        raise SystemExit(1) from None
