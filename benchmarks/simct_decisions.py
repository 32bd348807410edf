"""Notebook 06's decisions step alone, on responses it already generated: the log-likelihoods from scratch, then
every comparison with every method.

Copy the profile's response files (``<cache>/responses/<model id>/06_<profile>/*.jsonl``, without their
``logliks`` folder) to a new folder and pass it: the plan and the responses are then read, not generated,
the log-probability test scores every response set anew, and the decisions run with those scores cached.

    python benchmarks/simct_decisions.py --responses /tmp/responses-copy

Prints the seconds of each step (no record is written).
"""

from __future__ import annotations

import argparse
import os
import time

from workbench.consistency.lifecycle import LifecycleStudy
from workbench.lifecycle.siblings import SIBLINGS, sibling_stage
from workbench.lifecycle.stages import finetuned_prefix
from workbench.profiles import load_profile
from workbench.runs import set_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--responses", required=True, help="a copy of notebook 06's response files")
    parser.add_argument("--profile", default="default")
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the idle cores)")
    args = parser.parse_args()
    set_threads(args.threads)
    sizes = load_profile(args.profile)["06_consistency_simct"]
    siblings = {name: sibling_stage(args.profile, name, "fp32") for name in SIBLINGS}
    study = LifecycleStudy(
        args.model,
        "base-fp32",
        f"{finetuned_prefix(args.profile)}-fp32",
        sizes,
        args.profile,
        sibling_stages=siblings,
        device="cpu",
        responses_dir=args.responses,
    )
    steps = {
        "plan and responses (read)": lambda: (study.plan("auto"), study.generate()),
        "featurise": study.featurise,
        "log-likelihoods (from scratch)": study.logliks,
        "decisions (log-likelihoods cached)": study.decide,
    }
    for name, step in steps.items():
        started = time.perf_counter()
        step()
        print(f"{name}: {time.perf_counter() - started:.0f} s, load average {os.getloadavg()}", flush=True)


if __name__ == "__main__":
    main()
