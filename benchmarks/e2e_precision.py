"""Notebook 08's decoding in bf16 against fp32: speed of greedy, beam search and sampling, and the scores.

The E2E model of the default profile (trained with bf16 autocast; :func:`workbench.lifecycle.e2e.train`, cached,
so this trains it first on a fresh cache) is loaded in each precision and decodes the same test MRs without the
generation cache, the precisions and phases interleaved (order rotated per round, ``decoding_speed.measure``).
Printed: the best seconds of each phase and the bf16 speed-up, the share of identical greedy and beam outputs,
and the scores of both precisions' greedy and beam outputs (corpus BLEU and chrF with all references, ROUGE-L,
MiniLM cosine, slot error; bootstrap intervals).

    python benchmarks/e2e_precision.py --items 48 --sample-items 16 --repeats 1

It only prints (no record is written).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from decoding_speed import measure  # noqa: E402
from workbench.inference.types import SamplingConfig  # noqa: E402
from workbench.lifecycle import e2e  # noqa: E402
from workbench.profiles import load_profile  # noqa: E402
from workbench.runs import set_threads  # noqa: E402
from workbench.tasks import get_task  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def decode(engine, phase: str, prompts: list[str], task, config: e2e.Config, sample_items: int) -> list[str]:
    """One phase's texts: greedy and beam search on every prompt, N samples on the first ``sample_items``."""
    if phase == "greedy":
        return engine.greedy(prompts, max_new_tokens=task.max_new_tokens)
    if phase == "beam":
        return e2e.beam_search(engine, prompts, config.beams, task.max_new_tokens, config.batch_size)
    sampling = SamplingConfig(temperature=config.temperature, max_new_tokens=task.max_new_tokens, seed=0)
    return engine.sample(prompts[:sample_items], config.samples, sampling)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=48, help="test MRs decoded greedily and by beam search")
    parser.add_argument("--sample-items", type=int, default=16, help="test MRs sampled N times (the profile's N)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the idle cores)")
    args = parser.parse_args()
    set_threads(args.threads)
    config = e2e.config_from(load_profile("default")["08_e2e_text_metrics"])
    result = e2e.train(config, "smollm2-135m-instruct", progress=False)
    task = get_task(e2e.TASK)
    examples, references, positions = e2e.evaluation_items(task, config.items, seed=0)
    examples, references = examples[: args.items], references[: args.items]
    engines = {dtype: e2e.engine_for(result, dtype, progress=False) for dtype in PRECISIONS}
    prompts = task.prompts(examples, engines["fp32"].tokenizer)  # one tokenizer: the precisions share it
    for engine in engines.values():
        engine.cache = None
    runs = {
        f"{phase} {dtype}": lambda engine=engines[dtype], phase=phase: decode(
            engine, phase, prompts, task, config, args.sample_items
        )
        for dtype in PRECISIONS
        for phase in ("greedy", "beam", "sample")
    }
    stats = measure(runs, args.repeats)
    seconds = {(phase, dtype): stats[f"{phase} {dtype}"]["seconds"] for phase, dtype in map(str.split, runs)}
    outputs = {
        f"{phase}-{dtype}": [task.parse(text) for text in stats[f"{phase} {dtype}"]["result"]]
        for phase, dtype in map(str.split, runs)
        if phase != "sample"
    }
    print(
        f"{args.items} MRs greedy and beam({config.beams}), {args.sample_items} MRs x {config.samples} samples; "
        f"load average {os.getloadavg()}"
    )
    for phase in ("greedy", "beam", "sample"):
        fp32, bf16 = seconds[phase, "fp32"], seconds[phase, "bf16"]
        line = f"{phase}: fp32 {fp32:.1f} s, bf16 {bf16:.1f} s, bf16 {fp32 / bf16:.2f}x faster"
        if phase != "sample":
            same = sum(a == b for a, b in zip(outputs[f"{phase}-fp32"], outputs[f"{phase}-bf16"]))
            line += f"; identical outputs {same} of {args.items}"
        print(line)
    mrs = [example.text for example in examples]
    table = e2e.score(e2e.statistics(outputs, mrs, references), config.bootstrap)
    print(table.pivot(index="system", columns="metric", values="value").round(3).to_string())


if __name__ == "__main__":
    main()
