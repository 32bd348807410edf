"""MBR utility matrices: vectorised (workbench.metric_aware.pairwise) vs a pair-by-pair loop over the library scorer.

For each item, N text samples are scored against each other (N x N utilities) and the sample
with the highest mean utility is selected. The loop calls the library's own sentence scorer
for every pair (``sacrebleu.sentence_chrf``, rouge-score's ``RougeScorer.score``,
``sacrebleu.sentence_bleu``); the vectorised version processes each sample once and scores all
pairs with array operations. Both run on the same samples in one process, one metric at a time;
the script asserts that the utility matrices agree (1e-9) and the selections are identical,
prints the speed ratio per metric and appends one JSON line per metric to
results/benchmarks.jsonl.

Samples are synthetic but realistic: perturbations (word drops, adjacent swaps, substitutions,
insertions, casing and punctuation changes) of a set of reference sentences, seeded.

    python benchmarks/mbr_speed.py               # 10 items, N=64, chrF and ROUGE-L
    python benchmarks/mbr_speed.py --items 2     # quick look
    python benchmarks/mbr_speed.py --metrics chrf,rouge_l,bleu,token_f1
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable

import numpy as np
import sacrebleu
from rouge_score import rouge_scorer

from workbench.metric_aware.mbr import UTILITIES
from workbench.metric_aware.metrics import token_f1
from workbench.runs import BENCHMARK_RECORDS, append_record

BASE_SENTENCES = [
    "The committee approved the new budget on Tuesday after a long and heated debate.",
    "Researchers found that the drug reduced symptoms in most patients within two weeks.",
    "The restaurant on the corner serves the best pasta I have ever eaten in this city.",
    "Heavy rain is expected across the northern region throughout the weekend.",
    "She finally finished writing her novel after spending almost ten years on it.",
    "The company reported a 12% rise in quarterly profits, beating analysts' forecasts.",
    "Please remember to lock the door and switch off the lights before you leave.",
    "The museum will reopen to visitors next month after a two-year renovation.",
    "Our flight was delayed by three hours because of a technical problem with the engine.",
    "The film tells the story of a young girl who travels across the country alone.",
    "Local farmers say the dry summer has badly damaged this year's wheat harvest.",
    "The new software update fixes several bugs and makes the app noticeably faster.",
]

SUBSTITUTES = (
    "a the this that new old big small quickly slowly very really report said found city "
    "country people week month year team plan result problem again also however"
).split()


def perturb(sentence: str, rng: random.Random) -> str:
    """A plausible variant of ``sentence``: a few random word-level edits."""
    words = sentence.split()
    for _ in range(rng.randint(0, 5)):
        edit = rng.random()
        position = rng.randrange(len(words)) if words else 0
        if edit < 0.25 and len(words) > 3:
            del words[position]
        elif edit < 0.45 and len(words) > 1:
            other = min(position + 1, len(words) - 1)
            words[position], words[other] = words[other], words[position]
        elif edit < 0.7 and words:
            words[position] = rng.choice(SUBSTITUTES)
        elif edit < 0.85:
            words.insert(position, rng.choice(SUBSTITUTES))
        elif words:
            words[position] = words[position].lower().strip(".,'")
    text = " ".join(words)
    if rng.random() < 0.2:
        text = text.rstrip(".") + "!"
    return text


def make_items(n_items: int, n_samples: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    items = []
    for index in range(n_items):
        base = BASE_SENTENCES[index % len(BASE_SENTENCES)]
        items.append([perturb(base, rng) for _ in range(n_samples)])
    return items


def pair_scorers() -> dict[str, Callable[[str, str], float]]:
    rouge = rouge_scorer.RougeScorer(["rougeL"])
    return {
        "chrf": lambda hyp, ref: sacrebleu.sentence_chrf(hyp, [ref]).score,
        "rouge_l": lambda hyp, ref: rouge.score(ref, hyp)["rougeL"].fmeasure,
        "bleu": lambda hyp, ref: sacrebleu.sentence_bleu(hyp, [ref]).score,
        "token_f1": lambda hyp, ref: float(token_f1([hyp], [ref])[0]),  # the registry's sentence form
    }


def loop_matrix(score: Callable[[str, str], float], samples: list[str]) -> np.ndarray:
    return np.array([[score(hyp, ref) for ref in samples] for hyp in samples])


def run_metric(metric: str, items: list[list[str]]) -> dict:
    score = pair_scorers()[metric]
    matrix_fn = UTILITIES[metric]
    # Warm up both paths (lazy imports, tokenizer caches) outside the timed region.
    loop_matrix(score, items[0][:2])
    matrix_fn(items[0][:2])

    start = time.perf_counter()
    vectorised = [matrix_fn(samples) for samples in items]
    vectorised_selection = [int(np.argmax(m.mean(axis=1))) for m in vectorised]
    vectorised_seconds = time.perf_counter() - start

    start = time.perf_counter()
    looped = [loop_matrix(score, samples) for samples in items]
    loop_selection = [int(np.argmax(m.mean(axis=1))) for m in looped]
    loop_seconds = time.perf_counter() - start

    max_difference = max(float(np.abs(v - m).max()) for v, m in zip(vectorised, looped, strict=True))
    assert max_difference <= 1e-9, f"{metric}: utility matrices differ by {max_difference}"
    assert vectorised_selection == loop_selection, f"{metric}: selections differ"
    return {
        "metric": metric,
        "seconds": {"vectorised": vectorised_seconds, "loop": loop_seconds},
        "ratio": loop_seconds / vectorised_seconds,
        "max_abs_difference": max_difference,
        "same_selections": True,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", "--limit", type=int, default=10, help="items (sample sets)")
    parser.add_argument("--n", type=int, default=64, help="samples per item")
    parser.add_argument("--metrics", default="chrf,rouge_l", help="comma-separated utilities")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-save", action="store_true", help="do not append to the results")
    args = parser.parse_args()

    items = make_items(args.items, args.n, args.seed)
    mean_words = np.mean([len(s.split()) for samples in items for s in samples])
    print(f"{args.items} items x {args.n} samples ({mean_words:.1f} words on average)")
    print(f"{'metric':<8} {'vectorised s':>13} {'loop s':>9} {'ratio':>8}  same selections")
    records = []
    for metric in args.metrics.split(","):
        result = run_metric(metric, items)
        seconds = result["seconds"]
        print(
            f"{metric:<8} {seconds['vectorised']:>13.3f} {seconds['loop']:>9.3f} "
            f"{result['ratio']:>7.1f}x  {result['same_selections']}"
        )
        records.append(
            {
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "versions": {"numpy": np.__version__, "sacrebleu": sacrebleu.__version__},
                "n": args.n,
                "items": args.items,
                "seed": args.seed,
                **result,
            }
        )
    if not args.no_save:
        for record in records:
            append_record("mbr_speed", record)
        print(f"appended {len(records)} lines to {BENCHMARK_RECORDS}")


if __name__ == "__main__":
    main()
