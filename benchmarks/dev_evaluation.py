"""The training loop's dev evaluation of the default recipe, over the whole model and from the frozen trunk's
cached outputs, side by side.

The default recipe (``recipe.base_config("default", ...)``: the embedded model, the top 8 of 30 layers trainable,
bf16 autocast) evaluates its dev subsets (the profile's ``finetune.dev`` items per task) every ``eval_every`` steps,
five times per arm and three arms per seed, on the same items. Three ways, round-robin, ``--repeats`` times:

* ``whole``: an :class:`~workbench.inference.engine.HFEngine` over the whole model (every evaluation before);
* ``cold``: :class:`~workbench.lifecycle.finetune.selection.TrunkScorer` with an empty trunk store (the first
  evaluation of a fresh machine: it computes the lower layers' outputs and keeps them);
* ``warm``: the same, reading the store ``cold`` filled (every later evaluation, arm and seed).

Printed: wall seconds per way, the ratios ``whole / cold`` and ``whole / warm``, and the largest difference of any
dev score or of the selection loss between the ways (the same numbers up to rounding).

    python benchmarks/dev_evaluation.py --repeats 2

Appends one record (``dev_evaluation``) to results/benchmarks.jsonl (``--record`` for another file).
"""

from __future__ import annotations

import argparse
import tempfile

import torch

from workbench.inference.models import DEFAULT_MODEL, load_model
from workbench.lifecycle import recipe
from workbench.lifecycle.finetune.model import make_trainable
from workbench.lifecycle.finetune.selection import dev_sets, evaluate_dev
from workbench.lifecycle.finetune.trunk import FrozenTrunk
from workbench.lifecycle.finetune.trunk_store import TensorStore
from workbench.runs import append_record
from workbench.sidebyside import SideBySide

WAYS = ("whole", "cold", "warm")


def largest_difference(a: tuple[dict, float], b: tuple[dict, float]) -> float:
    """The largest absolute difference between two evaluations' scores and selection losses."""
    gaps = [abs(a[1] - b[1])]
    gaps += [abs(value - b[0][task][metric]) for task, scores in a[0].items() for metric, value in scores.items()]
    return max(gaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--record", default=None, help="JSON-lines file (default results/benchmarks.jsonl)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = recipe.base_config("default", DEFAULT_MODEL, device="cpu")
    splits, _ = recipe.prepared_splits()
    sets = dev_sets(config, recipe.dev_subsets(splits, recipe.profile_sizes("default").dev, config.seed))
    lm = load_model(config.base, device="cpu")
    model = make_trainable(lm.model, config)
    items = sum(len(examples) for _, examples in sets.values())
    print(f"dev items {items} ({', '.join(f'{n} {len(e)}' for n, (_, e) in sets.items())}), threads {args.threads}")

    timings = SideBySide(WAYS)
    evaluations: dict[str, tuple[dict, float]] = {}
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="dev-eval-bench-") as folder:
            store = TensorStore.Config(folder=folder)
            trunk = FrozenTrunk.for_training(model, lm.fingerprint["weights_sha256"], config, store)
            for way in timings.order(repeat):
                if way == "warm":  # a new trunk over the same folder: what a later arm or run reads from disk
                    trunk = FrozenTrunk.for_training(model, lm.fingerprint["weights_sha256"], config, store)
                with timings.timed(way, f"repeat {repeat} "):
                    result = evaluate_dev(
                        model, lm.tokenizer, sets, config.precision, trunk=None if way == "whole" else trunk
                    )
                evaluations.setdefault(way, result)
    gap = max(largest_difference(evaluations["whole"], evaluations[way]) for way in ("cold", "warm"))
    print(f"\n{timings.summary()}")
    losses = f"whole {evaluations['whole'][1]:.5f}, trunk {evaluations['cold'][1]:.5f}"
    print(f"selection loss: {losses}; largest gap of any dev score {gap:.1e}")
    append_record(
        "dev_evaluation",
        {
            "dev_items": items,
            "threads": args.threads,
            "selection_loss": {way: evaluations[way][1] for way in WAYS},
            "largest_score_gap": gap,
            **timings.record(),
        },
        path=args.record,
    )


if __name__ == "__main__":
    main()
