"""Notebook 08's E2E fine-tuning settings, compared on test MRs that notebook 08 does not evaluate.

Each setting changes fields of the default profile's E2E training run (``08_e2e_text_metrics.finetune``); each
model is trained (cached like notebook 08's, so the default setting costs nothing after a main run), then decodes
``--items`` held-out test MRs (:func:`workbench.lifecycle.e2e.selection_items`) in bf16 as notebook 08 does:
greedy, and MBR-chrF over the profile's N samples at its temperature. Printed: training seconds and notebook 08's
scores (multi-reference corpus BLEU and chrF, ROUGE-L, MiniLM cosine, slot error) per setting and rule. Published
TGen reaches chrF 61.4 on the whole test set. Each setting after the first is compared with the first on greedy and
MBR-chrF outputs, chrF and BLEU, by a paired bootstrap over the same MRs.

    python benchmarks/e2e_training.py --items 64 --settings default layers8 layers8,epochs2

A setting is ``default`` or comma-separated ``layers<N>`` (train_layers; ``layersall``: every layer),
``epochs<N>`` and ``lr<value>``. It only prints (no record is written).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

from workbench.inference.types import SamplingConfig
from workbench.lifecycle import e2e
from workbench.metric_aware.mbr import mbr_select
from workbench.metric_aware.multiref import paired_difference, resample_weights
from workbench.profiles import load_profile
from workbench.runs import set_threads
from workbench.tasks import get_task

FIELDS = {"layers": "train_layers", "epochs": "epochs", "lr": "lr"}


def changes(setting: str) -> dict:
    """``layers8,epochs2`` -> {"train_layers": 8, "epochs": 2.0}; ``default`` -> {}."""
    if setting == "default":
        return {}
    out = {}
    for part in setting.split(","):
        name = next((n for n in FIELDS if part.startswith(n)), None)
        if name is None:
            raise SystemExit(f"unknown setting {part!r}: use layers<N>, layersall, epochs<N> or lr<value>")
        value = part[len(name) :]
        out[FIELDS[name]] = None if value == "all" else int(value) if name == "layers" else float(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=64, help="held-out test MRs (not among notebook 08's)")
    parser.add_argument("--settings", nargs="+", default=["default", "layers8", "layers8,epochs2"])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the idle cores)")
    args = parser.parse_args()
    set_threads(args.threads)
    config = e2e.config_from(load_profile("default")["08_e2e_text_metrics"])
    task = get_task(e2e.TASK)
    examples, references = e2e.selection_items(task, config, args.items)
    sampling = SamplingConfig(temperature=config.temperature, max_new_tokens=task.max_new_tokens, seed=0)
    outputs = {}
    for setting in args.settings:
        trained = replace(config, finetune={**config.finetune, **changes(setting)})
        started = time.perf_counter()
        engine = e2e.engine_for(e2e.train(trained, "smollm2-135m-instruct", progress=False), "bf16", progress=False)
        seconds = time.perf_counter() - started
        prompts = task.prompts(examples, engine.tokenizer)
        outputs[f"greedy {setting}"] = [
            task.parse(text) for text in engine.greedy(prompts, max_new_tokens=task.max_new_tokens)
        ]
        samples = [[task.parse(text) for text in s.texts] for s in engine.sample(prompts, config.samples, sampling)]
        outputs[f"mbr-chrf {setting}"] = [mbr_select(texts, "chrf").hypothesis for texts in samples]
        print(f"{setting}: trained (or read from the cache) in {seconds:.0f} s", flush=True)
    stats = e2e.statistics(outputs, [e.text for e in examples], references)
    table = e2e.score(stats, config.bootstrap)
    print(f"{len(examples)} held-out test MRs (not among the {config.items} evaluated), N = {config.samples}")
    print(table.pivot(index="system", columns="metric", values="value").round(3).to_string())
    first = args.settings[0]
    weights = resample_weights(len(examples), config.bootstrap, 0)
    for setting in args.settings[1:]:  # each setting against the first, paired on the same MRs
        for rule in ("greedy", "mbr-chrf"):
            for metric in ("chrf", "bleu"):
                test = paired_difference(
                    metric, stats[f"{rule} {setting}"][1][metric], stats[f"{rule} {first}"][1][metric], weights
                )
                print(
                    f"{rule} {metric}: {setting} minus {first} {test['difference']:+.3f} "
                    f"[{test['ci_low']:+.3f}, {test['ci_high']:+.3f}], one-sided p {test['p_better']:.3f}"
                )
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
