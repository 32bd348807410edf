"""Notebook 08's sampling settings for MBR, chosen on test MRs that notebook 08 does not evaluate.

The default profile evaluates a seeded 500 of the E2E test MRs (:func:`workbench.lifecycle.e2e.evaluation_items`).
This draws ``--items`` of the others (seed 1), samples N candidates per MR under each setting with the profile's
E2E model (bf16, as notebook 08 decodes), picks each MR's MBR-chrF output and one sample, and scores them with
notebook 08's scorer (:func:`workbench.lifecycle.e2e.score`: multi-reference corpus BLEU and chrF, ROUGE-L,
MiniLM cosine, slot error) beside greedy decoding. Seconds are each setting's sampling wall time.

    python benchmarks/e2e_temperature.py --items 64 --settings T1.0 T0.7 T0.5 p0.9

Settings: ``T<temperature>`` (top-p 1) or ``p<top-p>`` (temperature 1). It only prints (no record is written).
"""

from __future__ import annotations

import argparse
import os
import time

from workbench.inference.types import SamplingConfig
from workbench.lifecycle import e2e
from workbench.metric_aware.mbr import mbr_select
from workbench.profiles import load_profile
from workbench.runs import set_threads
from workbench.tasks import get_task


def sampling(setting: str, max_new_tokens: int) -> SamplingConfig:
    """``T0.5`` -> temperature 0.5; ``p0.9`` -> top-p 0.9 (seed 0, as notebook 08 samples)."""
    value = float(setting[1:])
    if setting[0] == "T":
        return SamplingConfig(temperature=value, max_new_tokens=max_new_tokens, seed=0)
    if setting[0] == "p":
        return SamplingConfig(top_p=value, max_new_tokens=max_new_tokens, seed=0)
    raise ValueError(f"a setting is T<temperature> or p<top-p>, got {setting!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=64, help="held-out test MRs (not among notebook 08's)")
    parser.add_argument("--settings", nargs="+", default=["T1.0", "T0.7", "T0.5", "p0.9"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the idle cores)")
    args = parser.parse_args()
    set_threads(args.threads)
    config = e2e.config_from(load_profile("default")["08_e2e_text_metrics"])
    engine = e2e.engine_for(e2e.train(config, "smollm2-135m-instruct", progress=False), "bf16", progress=False)
    task = get_task(e2e.TASK)
    examples, references = e2e.selection_items(task, config, args.items)
    prompts = task.prompts(examples, engine.tokenizer)
    outputs = {"greedy": [task.parse(t) for t in engine.greedy(prompts, max_new_tokens=task.max_new_tokens)]}
    seconds = {}
    for setting in args.settings:
        started = time.perf_counter()
        sets = engine.sample(prompts, config.samples, sampling(setting, task.max_new_tokens))
        seconds[setting] = time.perf_counter() - started
        samples = [[task.parse(text) for text in s.texts] for s in sets]
        outputs[f"sample {setting}"] = [texts[0] for texts in samples]
        outputs[f"mbr-chrf {setting}"] = [mbr_select(texts, "chrf").hypothesis for texts in samples]
    table = e2e.score(e2e.statistics(outputs, [e.text for e in examples], references), config.bootstrap)
    print(f"{len(examples)} held-out test MRs (not among the {config.items} evaluated), N = {config.samples}")
    print(table.pivot(index="system", columns="metric", values="value").round(3).to_string())
    print("sampling seconds: " + ", ".join(f"{s} {v:.0f}" for s, v in seconds.items()))
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
