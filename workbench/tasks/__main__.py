"""Check a task from the command line: ``python -m workbench.tasks NAME_OR_SPEC [--shots K]``.

Loads the task exactly as a notebook or the fine-tuning code would (a registered name, a shipped
spec's name, or the path of a YAML/JSON spec), so a bad file or spec fails here with the same error,
and prints its identity, split sizes, gold labels per grid value, values off the grid and one prompt.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter

from workbench.tasks import get_task
from workbench.tasks.loaders import SPLITS


class _PlainText:
    chat_template = None  # Task.prompt then writes the prompt as plain text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workbench.tasks", description=__doc__.splitlines()[0])
    parser.add_argument("task", help="registered task, shipped spec name, or path of a .yaml/.json spec")
    parser.add_argument("--shots", type=int, default=2, help="few-shot demonstrations in the example prompt")
    args = parser.parse_args(argv)
    task = get_task(args.task)
    grid = f"{len(task.grid)} values, {task.candidates[0]}..{task.candidates[-1]}" if task.grid else "none"
    print(f"task {task.name}  identity {task.identity}  answer grid: {grid}")
    loaded = {}
    for split in SPLITS:
        try:
            loaded[split] = task.examples(split)
        except ValueError as error:
            print(f"{split:>5}: -- ({error})")
            continue
        # Gold values per grid value, or per whole number when the grid is fine.
        bins = task.grid if task.grid and len(task.grid) <= 11 else None
        counts = Counter(
            min(bins, key=lambda g: abs(g - float(ex.target))) if bins else round(float(ex.target))
            for ex in loaded[split]
        )
        labels = "  ".join(f"{g:g}:{n}" for g, n in sorted(counts.items())) if len(counts) <= 11 else ""
        print(f"{split:>5}: {len(loaded[split])} rows, {len(task.off_grid(split))} off the grid  {labels}")
    evaluated = next((loaded[s] for s in ("test", "dev") if s in loaded), None)
    if evaluated:
        shots = task.fewshot(args.shots) if args.shots and "train" in loaded else []
        print("\n" + task.prompt(evaluated[0], _PlainText(), shots) + f" [gold {task.answer(evaluated[0])}]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
