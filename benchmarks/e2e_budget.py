"""Timing probe of notebook 08's default profile: a short training run and 16 MRs decoded at default settings.

Prints wall and process CPU seconds of each phase with the load average, then the scores of the 16 MRs
(a glimpse, not a result: 16 items and a partly trained model). Usage, from the project root:

    python benchmarks/e2e_budget.py [THREADS (0: idle cores)] [TRAINING STEPS (default 60)]
"""

import os
import sys
import time
from dataclasses import replace

from workbench.inference.types import SamplingConfig
from workbench.lifecycle import e2e
from workbench.profiles import load_profile
from workbench.runs import set_threads
from workbench.tasks import get_task


class Clock:
    """Prints wall and process CPU seconds since it was started (or last printed)."""

    def __init__(self):
        self.wall, self.cpu = time.time(), time.process_time()

    def lap(self, label: str) -> None:
        wall, cpu = time.time() - self.wall, time.process_time() - self.cpu
        print(f"{label}: wall {wall:.1f} s, process CPU {cpu:.1f} s, load {os.getloadavg()}", flush=True)
        self.wall, self.cpu = time.time(), time.process_time()


def main(threads: int, steps: int, items: int = 16) -> None:
    set_threads(threads)
    config = e2e.config_from(load_profile("default")["08_e2e_text_metrics"])
    config = replace(config, finetune={**config.finetune, "max_steps": steps})
    clock = Clock()
    result = e2e.train(config, "smollm2-135m-instruct", progress=False)
    clock.lap(f"train {result.steps} steps x {config.finetune['batch_size']} ({result.throughput})")
    task = get_task(e2e.TASK)
    examples, references, positions = e2e.evaluation_items(task, items, seed=0)
    engine = e2e.engine_for(result, progress=False)
    prompts, budget = task.prompts(examples, engine.tokenizer), task.max_new_tokens
    clock.lap("engine")
    engine.greedy(prompts, max_new_tokens=budget)
    clock.lap(f"greedy {items}")
    e2e.beam_search(engine, prompts, config.beams, budget, config.batch_size)
    clock.lap(f"beam {items}")
    engine.sample(prompts, config.samples, SamplingConfig(temperature=config.temperature, max_new_tokens=budget))
    clock.lap(f"sample {items}x{config.samples}")
    run = e2e.decode(engine, task, examples, config)
    clock.lap("decode (cached) + 4 MBR")
    mrs = [e.text for e in examples]
    outputs = {**run["outputs"], **e2e.published_outputs(positions), e2e.TRIVIAL: e2e.trivial_outputs(mrs)}
    stats = e2e.statistics(outputs, mrs, references)
    table = e2e.score(stats, config.bootstrap)
    clock.lap("scoring")
    print(e2e.table_wide(table).round(3).to_string())
    print(e2e.diagonal_tests(stats, config.bootstrap).round(3).to_string())


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 0, int(sys.argv[2]) if len(sys.argv) > 2 else 60)
