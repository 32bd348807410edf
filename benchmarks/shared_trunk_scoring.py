"""Exact scoring of an fp32 stage fine-tuned on its top layers, by its own engine and from the base model's shared
lower layers (:func:`workbench.lifecycle.finetune.trunk.scoring_trunk`), side by side.

Notebook 07 scores ten fp32 arms of the default recipe (top 8 of 30 layers trained) and the fine-tuned stage on the
same items; their lower 22 layers are the base model's bit for bit. A short run of the recipe (``--steps`` steps of
the cross-entropy arm; the weights do not change the cost) gives such a model. Three ways, round-robin,
``--repeats`` times, on ``--items`` test items of SST-5 and of STS-B (zero-shot prompts, as the fine-tuned stages
are asked):

* ``whole``: the stage's :class:`~workbench.inference.engine.HFEngine` (fp32, no cache);
* ``cold``: the same engine with the shared trunk as its ``grid_scorer``, its store empty (the first stage scored);
* ``warm``: a new trunk over the store ``cold`` filled (every later stage).

Printed: seconds per way, the ratios ``whole / cold`` and ``whole / warm``, and the largest difference of a
log-probability between the ways.

    python benchmarks/shared_trunk_scoring.py --items 120 --repeats 2

Appends one record (``shared_trunk_scoring``) to results/benchmarks.jsonl (``--record`` for another file).
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace

import numpy as np
import torch

from workbench.inference.engine import HFEngine
from workbench.inference.models import DEFAULT_MODEL, load_model
from workbench.lifecycle import recipe
from workbench.lifecycle.finetune import finetune
from workbench.lifecycle.finetune.selection import TrunkScorer
from workbench.lifecycle.finetune.trunk import scoring_trunk
from workbench.lifecycle.finetune.trunk_store import TensorStore
from workbench.runs import append_record
from workbench.sidebyside import SideBySide
from workbench.tasks import get_task

WAYS = ("whole", "cold", "warm")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=120, help="test items per task")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4, help="steps of the short recipe run that makes the stage")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--record", default=None, help="JSON-lines file (default results/benchmarks.jsonl)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    splits, _ = recipe.prepared_splits()
    config = recipe.base_config("default", DEFAULT_MODEL, device="cpu")
    with tempfile.TemporaryDirectory(prefix="shared-trunk-bench-") as folder:
        config = replace(config, max_steps=args.steps, eval_every=0, patience=None, output_dir=f"{folder}/run")
        result = finetune(config, examples={name: parts["train"] for name, parts in splits.items()}, progress=False)
        stage, base = load_model(str(result.model_dir), device="cpu"), load_model(DEFAULT_MODEL, device="cpu")
        sets = [
            (get_task(name), get_task(name).examples("test", limit=args.items, seed=0)) for name in ("sst5", "stsb")
        ]
        requests = [(task.prompts(examples, stage.tokenizer), task.candidates) for task, examples in sets]
        timings = SideBySide(WAYS)
        logprobs: dict[str, list[np.ndarray]] = {}
        for repeat in range(args.repeats):
            store = TensorStore.Config(folder=f"{folder}/trunk-{repeat}")
            for way in timings.order(repeat):
                engine = HFEngine(stage, cache=None, progress=False)
                if way != "whole":  # a new trunk object each time: "warm" reads what "cold" wrote, from disk
                    trunk = scoring_trunk(stage.model, base.model, store)
                    engine.grid_scorer = TrunkScorer(stage.model, stage.tokenizer, trunk).logprobs
                with timings.timed(way, f"repeat {repeat} "):
                    scored = [engine.score(prompts, candidates).logprobs for prompts, candidates in requests]
                logprobs.setdefault(way, scored)
        layers = scoring_trunk(stage.model, base.model).layers
    gap = max(
        float(np.max(np.abs(a - b))) for way in ("cold", "warm") for a, b in zip(logprobs["whole"], logprobs[way])
    )
    print(f"\n{2 * args.items} items, shared lower layers {layers}, threads {args.threads}")
    print(timings.summary())
    print(f"largest log-probability gap to the whole engine: {gap:.1e}")
    append_record(
        "shared_trunk_scoring",
        {
            "items": 2 * args.items,
            "shared_layers": layers,
            "threads": args.threads,
            "largest_logprob_gap": gap,
            **timings.record(),
        },
        path=args.record,
    )


if __name__ == "__main__":
    main()
