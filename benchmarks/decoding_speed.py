"""Decoding speed: HF ``generate(num_return_sequences=N)`` vs ``Engine.sample`` vs ``Engine.score``.

All three run on the same SST-5 few-shot prompts, model, dtype and device, in one process, one
after the other, each after a warm-up call. Items are prompts: (a) and (b) draw N samples per
prompt, (c) computes the exact distribution over the 5 ratings. The script then checks that the
engine's samples follow the exact distribution (total variation at N=256), so that speed is not
bought with wrong samples, and appends the figures as one JSON line to results/benchmarks.jsonl.

    python benchmarks/decoding_speed.py                 # 8 prompts, N=32
    python benchmarks/decoding_speed.py --items 2 --n-check 64   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import datetime, timezone

import numpy as np
import torch

from workbench.inference.engine import Engine, SamplingConfig
from workbench.inference.models import load_model
from workbench.paths import RESULTS_DIR
from workbench.tasks import get_task


def hf_generate(lm, prompts: list[str], n: int, max_new_tokens: int, seed: int) -> None:
    torch.manual_seed(seed)
    for prompt in prompts:
        inputs = lm.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(lm.device)
        lm.model.generate(
            **inputs,
            do_sample=True,
            num_return_sequences=n,
            max_new_tokens=max_new_tokens,
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            pad_token_id=lm.tokenizer.pad_token_id,
        )


def timed(function) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def sample_vs_exact(engine: Engine, prompts: list[str], candidates: list[str], n: int, seed: int) -> dict:
    """Mean total variation between sampled and exact rating distributions (renormalised on the grid)."""
    exact = engine.score(prompts, candidates)
    samples = engine.sample(prompts, n, SamplingConfig(max_new_tokens=4, seed=seed))
    tvs, outside_gaps = [], []
    for row, result in enumerate(samples):
        counts = np.array([sum(text == c for text in result.texts) for c in candidates], dtype=float)
        on_grid = counts.sum()
        tvs.append(0.5 * np.abs(counts / max(on_grid, 1) - exact.probs[row]).sum())
        outside_gaps.append(abs((n - on_grid) / n - exact.outside_mass[row]))
    return {"mean_tv": float(np.mean(tvs)), "max_tv": float(np.max(tvs)), "mean_outside_mass_gap": float(np.mean(outside_gaps))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--items", type=int, default=8, help="SST-5 test prompts")
    parser.add_argument("--shots", type=int, default=5)
    parser.add_argument("--n", type=int, default=32, help="samples per prompt for (a) and (b)")
    parser.add_argument("--n-check", type=int, default=256, help="samples per prompt for the agreement check")
    parser.add_argument("--max-new-tokens", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    task = get_task("sst5")
    shots = task.fewshot(args.shots, seed=args.seed)
    prompts = task.prompts(task.examples("test", limit=args.items + 1, seed=args.seed), lm.tokenizer, shots)
    warmup, prompts = prompts[:1], prompts[1:]
    lengths = [len(lm.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    config = SamplingConfig(max_new_tokens=args.max_new_tokens, seed=args.seed)

    def fresh_engine() -> Engine:  # no disk cache, no prefix carried over between methods
        return Engine(lm, cache=None, progress=False)

    hf_generate(lm, warmup, args.n, args.max_new_tokens, args.seed)
    fresh_engine().sample(warmup, args.n, config)
    fresh_engine().score(warmup, task.candidates)

    seconds = {
        "hf_generate": timed(lambda: hf_generate(lm, prompts, args.n, args.max_new_tokens, args.seed)),
        "sample": timed(lambda: fresh_engine().sample(prompts, args.n, config)),
        "score": timed(lambda: fresh_engine().score(prompts, task.candidates)),
    }
    items_per_s = {name: len(prompts) / value for name, value in seconds.items()}
    ratios = {"sample/hf_generate": items_per_s["sample"] / items_per_s["hf_generate"], "score/hf_generate": items_per_s["score"] / items_per_s["hf_generate"]}
    agreement = sample_vs_exact(fresh_engine(), prompts, task.candidates, args.n_check, args.seed)

    print(f"model {lm.fingerprint['name']} {lm.dtype} on {lm.device}, torch threads {torch.get_num_threads()}")
    print(f"{len(prompts)} SST-5 {args.shots}-shot prompts, {int(np.mean(lengths))} tokens on average, N={args.n}, max_new_tokens={args.max_new_tokens}")
    for name in seconds:
        print(f"  ({'abc'[list(seconds).index(name)]}) {name:<12} {items_per_s[name]:8.3f} items/s  ({seconds[name]:.2f} s)")
    print(f"  (b)/(a) = {ratios['sample/hf_generate']:.1f}x   target >= 8x")
    print(f"  (c)/(a) = {ratios['score/hf_generate']:.1f}x   target >= 25x")
    print(
        f"  sample vs exact at N={args.n_check}: mean TV {agreement['mean_tv']:.3f} (max {agreement['max_tv']:.3f}), "
        f"outside-mass gap {agreement['mean_outside_mass_gap']:.3f}   target mean TV < 0.1"
    )

    record = {
        "benchmark": "decoding_speed",
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "device": str(lm.device),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        },
        "fingerprint": lm.fingerprint,
        "items": len(prompts),
        "mean_prompt_tokens": float(np.mean(lengths)),
        "n": args.n,
        "max_new_tokens": args.max_new_tokens,
        "seconds": seconds,
        "items_per_s": items_per_s,
        "ratios": ratios,
        "agreement": {"n": args.n_check, **agreement},
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    with open(RESULTS_DIR / "benchmarks.jsonl", "a") as handle:
        handle.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
