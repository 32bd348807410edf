"""What int8 costs in quality, depending on which layers stay in fp32.

Loads the embedded model four ways (fp32 and the three recipes of
``workbench.inference.models.QUANTIZATIONS``: ``"int8"`` keeps the output layer and the MLP
down-projections in fp32, ``"int8-head"`` only the output layer, ``"int8-all"`` none) and
measures, on the same held-out items for each:

* perplexity of the SST-5 test sentences (cleaned text, sliding window; as notebook 04 does);
* the exact answer distribution on zero-shot SST-5 prompts (``HFEngine.score``): RMSE of its mean,
  mass outside the grid, and the total variation distance to fp32's distribution.

It appends one JSON line to results/benchmarks.jsonl and prints the table.

    python benchmarks/int8_output_layer.py              # 120 test items
    python benchmarks/int8_output_layer.py --items 20   # quick look
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from workbench.inference.engine import HFEngine
from workbench.inference.models import load_model
from workbench.lifecycle.evaluation import perplexity, predict
from workbench.metric_aware.metrics import rmse
from workbench.runs import append_record
from workbench.tasks import get_task
from workbench.text import clean_text

VARIANTS = {
    "fp32": None,
    "int8 (output layer and down-projections fp32, per-channel)": "int8",
    "int8 (output layer fp32)": "int8-head",
    "int8 (every linear layer)": "int8-all",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=120)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sst5 = get_task("sst5")
    examples = sst5.examples("test", limit=args.items, seed=args.seed)
    texts = [clean_text(e.text, ptb=True) for e in examples]
    rows, reference = [], None
    started = time.time()
    for label, quantize in VARIANTS.items():
        lm = load_model(device="cpu", quantize=quantize)
        scored = predict(HFEngine(lm, cache=None, progress=False), sst5, examples)
        probs = np.asarray(scored.probs)
        reference = probs if reference is None else reference
        mean = probs @ np.asarray(sst5.grid, dtype=float)
        rows.append(
            {
                "variant": label,
                "quantization": lm.quantization,
                "perplexity": perplexity(lm, texts)["perplexity"],
                "rmse_exact_mean": float(rmse(mean, scored.targets)),
                "outside_mass": float(np.mean(scored.outside_mass)),
                "tv_to_fp32": float(0.5 * np.abs(probs - reference).sum(axis=1).mean()),
                "weights_sha256": lm.fingerprint["weights_sha256"][:16],
            }
        )
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    append_record(
        "int8_output_layer",
        {"items": len(examples), "seed": args.seed, "wall_s": round(time.time() - started, 1), "rows": rows},
    )


if __name__ == "__main__":
    main()
