"""Decoding speed of the engine against HF ``generate`` and hand-written strong baselines, side by side.

Three settings, each a JSON line appended to results/benchmarks.jsonl with the machine and its load:

* short answers (default): SST-5 few-shot prompts, N=32 samples of <= 4 tokens, and the exact
  distribution over the 5 ratings. Samplers: HF ``generate(num_return_sequences)``, the prompt
  prefilled once with its KV cache expanded to N rows and sampled token by token (by hand), the
  engine; scorers: a hand-written one-pass scorer of all candidates, the engine. Then a check that
  the engine's samples follow the exact distribution (total variation at N=256).
* ``--long``: GSM8K 2-shot prompts, long free-text answers, over a grid of N and max_new_tokens.
  Samplers: HF ``generate``, HF ``generate`` on a prefilled cache repeated to N rows, the engine.
* llama.cpp (:class:`workbench.inference.llamacpp_engine.LlamaCppEngine` on the embedded model's
  Q4_1 GGUF file, same threads) runs beside the engine in every setting when llama-cpp-python is
  installed; the records keep ``engine/llama.cpp`` ratios.
* CTranslate2 (``generate_batch`` with ``num_hypotheses=N`` on the embedded model converted once,
  int8 and fp32, same threads) samples beside the engine when ctranslate2 is installed
  (``pip install ctranslate2``, or the ``ct2`` extra); the records keep ``engine/ct2_int8`` and
  ``engine/ct2_fp32`` ratios. It has no scorer of an answer grid here, so the scorers leave it out.
* ``--simct``: notebook 06's workload: 24 short chat queries, 6 samples each at T=0.7, batched
  16 queries per call as notebook 06 does.

Every sampler runs "per prompt" (one call per prompt) and "batched" (all prompts in one call).
Methods run in interleaved rounds (``--repeats``); items/s comes from each method's fastest round,
the least disturbed on a shared machine, and CPU seconds are recorded beside wall seconds.
``--compare-commit REV`` adds the engine as it was at git revision REV (e.g. before a change);
``--engine-quantize bf16-linear`` adds the engine on a second copy of the model loaded with that
``quantize`` recipe (``engine_bf16-linear``: bf16 linear layers, fp32 elsewhere), so that fp32, the
recipe and llama.cpp are timed in the same interleaved rounds.

    python benchmarks/decoding_speed.py --items 6                      # short answers
    python benchmarks/decoding_speed.py --long --n 16 --max-new-tokens 128 --items 2
    python benchmarks/decoding_speed.py --simct --max-new-tokens 32 64 --compare-commit 04070a3
    python benchmarks/decoding_speed.py --long --n 16 --max-new-tokens 128 --threads 2 --engine-quantize bf16-linear
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import decoding_baselines  # noqa: E402
from workbench.inference.engine import HFEngine
from workbench.inference.models import QUANTIZATIONS, load_model  # noqa: E402
from workbench.inference.types import SamplingConfig  # noqa: E402
from workbench.runs import BENCHMARK_RECORDS, append_record  # noqa: E402
from workbench.tasks import get_task  # noqa: E402


def engine_at(commit: str):
    """The ``workbench.inference.engine`` module as it was at git revision ``commit`` (its own frontier and logits)."""
    package = f"engine_{commit}"
    folder = Path(tempfile.mkdtemp()) / package
    folder.mkdir()
    root = Path(__file__).parents[1]
    for name in ("engine", "frontier", "logits", "attention", "end_of_turn"):
        shown = subprocess.run(
            ["git", "show", f"{commit}:workbench/inference/{name}.py"], cwd=root, capture_output=True, text=True
        )
        if shown.returncode == 0:
            source = shown.stdout
            for own in ("engine", "frontier", "logits", "attention", "end_of_turn"):
                source = source.replace(f"workbench.inference.{own} ", f"{package}.{own} ")
            (folder / f"{name}.py").write_text(source)
    (folder / "__init__.py").write_text("")
    sys.path.insert(0, str(folder.parent))
    return importlib.import_module(f"{package}.engine")


def timed(function) -> tuple[float, float, object]:
    """(wall seconds, CPU seconds of this process, result)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def measure(runs: dict, repeats: int) -> dict:
    """Run every method ``repeats`` times, interleaved (order rotated each round).

    Returns:
        name -> {"seconds": fastest wall time, "all_seconds", "cpu_seconds", "result", "load"}.
    """
    names, stats = list(runs), {name: {"all_seconds": [], "cpu_seconds": [], "load": []} for name in runs}
    for round_ in range(repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
            wall, cpu, result = timed(runs[name])
            stats[name]["all_seconds"].append(wall)
            stats[name]["cpu_seconds"].append(cpu)
            stats[name]["load"].append(os.getloadavg()[0])
            stats[name]["result"] = result
            print(f"    {name:<28} {wall:9.2f} s wall {cpu:9.2f} s cpu  load {os.getloadavg()[0]:.1f}", flush=True)
    for value in stats.values():
        value["seconds"] = min(value["all_seconds"])
    return stats


def per_mode(function, prompts: list[str], mode: str, per_call: int | None = None):
    """Run ``function`` on every prompt separately ("per_prompt") or batched, ``per_call`` prompts per call
    (None: all at once); sum the results."""
    size = 1 if mode == "per_prompt" else per_call or len(prompts)
    return lambda: sum_results([function(prompts[i : i + size]) for i in range(0, len(prompts), size)])


def sum_results(results):
    if isinstance(results[0], torch.Tensor):
        return torch.cat(results)
    return sum(results)


def engine_tokens(sample_sets) -> int:
    return sum(len(ids) for result in sample_sets for ids in result.token_ids)


def sampler_runs(lm, prompts, n, max_new_tokens, seed, temperature, methods, engines) -> dict:
    """Callables (prompts -> generated tokens) for the requested samplers."""
    config = SamplingConfig(max_new_tokens=max_new_tokens, seed=seed, temperature=temperature)
    runs = {}
    for name in methods:
        if name in engines:
            make = engines[name]
            runs[name] = lambda batch, make=make: engine_tokens(make().sample(batch, n, config))
        else:
            function = getattr(decoding_baselines, name)
            runs[name] = lambda batch, function=function: function(lm, batch, n, max_new_tokens, seed, temperature)
    return runs


def run_samplers(lm, prompts, args, n, max_new_tokens, temperature, methods, engines, per_call=None) -> dict:
    results = {}
    runs = sampler_runs(lm, prompts, n, max_new_tokens, args.seed, temperature, methods, engines)
    for mode in args.modes:
        print(f"  {mode}: N={n}, max_new_tokens={max_new_tokens}, {len(prompts)} prompts", flush=True)
        stats = measure({name: per_mode(run, prompts, mode, per_call) for name, run in runs.items()}, args.repeats)
        results[mode] = {
            name: {
                "seconds": s["seconds"],
                "all_seconds": s["all_seconds"],
                "cpu_seconds": s["cpu_seconds"],
                "load": s["load"],
                "items_per_s": len(prompts) / s["seconds"],
                "tokens_per_s": s["result"] / s["seconds"],
                "generated_tokens": s["result"],
            }
            for name, s in stats.items()
        }
    return results


RECORD = BENCHMARK_RECORDS


def append(benchmark: str, record: dict) -> None:
    append_record(benchmark, record, RECORD)


def print_table(results: dict, ours: list[str]) -> None:
    for mode, by_method in results.items():
        print(f"  {mode}:")
        best = min((v["seconds"], k) for k, v in by_method.items() if k not in ours)
        for name, value in by_method.items():
            note = f"  {best[0] / value['seconds']:.2f}x vs best baseline ({best[1]})" if name in ours else ""
            print(f"    {name:<28} {value['items_per_s']:8.4f} items/s {value['tokens_per_s']:9.1f} tokens/s{note}")


# ---------------------------------------------------------------------------- the three settings
def short_answers(lm, args, engines) -> None:
    task = get_task("sst5")
    shots = task.fewshot(args.shots, seed=args.seed)
    prompts = task.prompts(task.examples("test", limit=args.items + 1, seed=args.seed), lm.tokenizer, shots)
    warmup, prompts = prompts[:1], prompts[1:]
    samplers = ["hf_generate", "prefill_once_sampler", *engines]
    end = HFEngine(lm, cache=None, progress=False).end_of_turn
    for run in sampler_runs(lm, warmup, args.n[0], args.max_new_tokens[0], args.seed, 1.0, samplers, engines).values():
        run(warmup)
    sampling = run_samplers(lm, prompts, args, args.n[0], args.max_new_tokens[0], 1.0, samplers, engines)
    scorers = {"one_pass_scorer": lambda batch: decoding_baselines.one_pass_scorer(lm, batch, task.candidates, end)}
    scorers.update(
        {
            f"{name}_score": (lambda batch, make=make: torch.tensor(make().score(batch, task.candidates).logprobs))
            for name, make in engines.items()
            if not name.startswith("ct2")
        }
    )
    scoring, gaps = {}, {}
    for mode in args.modes:
        print(f"  {mode}: scoring {len(task.candidates)} candidates, {len(prompts)} prompts", flush=True)
        stats = measure({name: per_mode(run, prompts, mode) for name, run in scorers.items()}, args.repeats)
        # Same distributions: the hand-written scorer and the engine compute the same log-probabilities.
        gaps[mode] = float((stats["engine_score"]["result"] - stats["one_pass_scorer"]["result"]).abs().max())
        scoring[mode] = {
            name: {
                "seconds": s["seconds"],
                "all_seconds": s["all_seconds"],
                "cpu_seconds": s["cpu_seconds"],
                "load": s["load"],
                "items_per_s": len(prompts) / s["seconds"],
                "tokens_per_s": 0.0,
            }
            for name, s in stats.items()
        }
    agreement = sample_vs_exact(
        HFEngine(lm, cache=None, progress=False), prompts, task.candidates, args.n_check, args.seed
    )
    lengths = [len(lm.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    print(
        f"model {lm.fingerprint['name']} {lm.dtype} on {lm.device}, "
        f"torch threads {torch.get_num_threads()}, load {os.getloadavg()}"
    )
    print(
        f"{len(prompts)} SST-5 {args.shots}-shot prompts, {int(np.mean(lengths))} tokens on average, "
        f"N={args.n[0]}, max_new_tokens={args.max_new_tokens[0]}"
    )
    print_table(sampling, list(engines))
    print_table(scoring, [f"{e}_score" for e in engines])
    print(f"  largest |log-prob| gap, engine vs hand-written scorer: {max(gaps.values()):.2e}")
    print(
        f"  samples vs exact at N={args.n_check}: mean TV {agreement['mean_tv']:.3f} "
        f"(max {agreement['max_tv']:.3f})   target mean TV < 0.1"
    )
    append(
        "decoding_speed",
        {
            "device": str(lm.device),
            "dtype": lm.dtype,
            "fingerprint": lm.fingerprint,
            "items": len(prompts),
            "mean_prompt_tokens": float(np.mean(lengths)),
            "n": args.n[0],
            "max_new_tokens": args.max_new_tokens[0],
            "repeats": args.repeats,
            "compare_commit": args.compare_commit,
            "sampling": sampling,
            "scoring": scoring,
            "max_logprob_gap_engine_vs_one_pass_scorer": gaps,
            "agreement": {"n": args.n_check, **agreement},
            "ratios": {
                "sampling": {
                    mode: {f"engine/{k}": v["seconds"] / by["engine"]["seconds"] for k, v in by.items()}
                    for mode, by in sampling.items()
                },
                "scoring": {
                    mode: {f"engine_score/{k}": v["seconds"] / by["engine_score"]["seconds"] for k, v in by.items()}
                    for mode, by in scoring.items()
                },
            },
        },
    )


def sample_vs_exact(engine: HFEngine, prompts: list[str], candidates: list[str], n: int, seed: int) -> dict:
    """Mean total variation between sampled and exact rating distributions (renormalised on the grid)."""
    exact = engine.score(prompts, candidates)
    samples = engine.sample(prompts, n, SamplingConfig(max_new_tokens=4, seed=seed))
    tvs = []
    for row, result in enumerate(samples):
        counts = np.array([sum(text == c for text in result.texts) for c in candidates], dtype=float)
        tvs.append(0.5 * np.abs(counts / max(counts.sum(), 1) - exact.probs[row]).sum())
    return {"mean_tv": float(np.mean(tvs)), "max_tv": float(np.max(tvs))}


def long_answers(lm, args, engines) -> None:
    task = get_task("gsm8k")
    prompts = task.prompts(
        task.examples("test", limit=args.items + 1, seed=args.seed),
        lm.tokenizer,
        task.fewshot(args.shots, seed=args.seed),
    )
    warmup, prompts = prompts[:1], prompts[1:]
    methods = [m for m in args.methods if m not in engines] + list(engines)
    for run in sampler_runs(lm, warmup, 2, 4, args.seed, 1.0, methods, engines).values():
        run(warmup)
    lengths = [len(lm.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    for n in args.n:
        for max_new_tokens in args.max_new_tokens:
            print(
                f"GSM8K {args.shots}-shot, {int(np.mean(lengths))} prompt tokens, N={n}, "
                f"max_new_tokens={max_new_tokens}, load {os.getloadavg()}",
                flush=True,
            )
            results = run_samplers(lm, prompts, args, n, max_new_tokens, 1.0, methods, engines)
            print_table(results, list(engines))
            append("decoding_speed_long", record(lm, args, prompts, lengths, n, max_new_tokens, 1.0, results, engines))


def simct(lm, args, engines) -> None:
    sys.path.insert(0, str(Path(__file__).parents[1]))
    from workbench.consistency.generate import Variant, build_queries

    queries = build_queries(args.items // 2, args.items - args.items // 2, seed=args.seed)
    variant = Variant("reference", temperature=0.7)
    prompts = [variant.prompt(q, lm.tokenizer) for q in queries["query"]]
    methods = [m for m in args.methods if m not in engines] + list(engines)
    for run in sampler_runs(lm, prompts[:1], 2, 4, args.seed, 0.7, methods, engines).values():
        run(prompts[:1])
    lengths = [len(lm.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    for max_new_tokens in args.max_new_tokens:
        print(
            f"SimCT-like: {len(prompts)} queries, {int(np.mean(lengths))} prompt tokens, "
            f"N={args.n[0]}, T=0.7, max_new_tokens={max_new_tokens}",
            flush=True,
        )
        # Batched as notebook 06 calls the engine: 16 queries per call (generate_responses' queries_per_call).
        results = run_samplers(lm, prompts, args, args.n[0], max_new_tokens, 0.7, methods, engines, per_call=16)
        print_table(results, list(engines))
        append(
            "decoding_speed_simct", record(lm, args, prompts, lengths, args.n[0], max_new_tokens, 0.7, results, engines)
        )


def record(lm, args, prompts, lengths, n, max_new_tokens, temperature, results, engines) -> dict:
    ratio = {}
    for mode, by in results.items():
        baseline_names = [k for k in by if k not in engines]
        ratio[mode] = {f"{e}/{b}": by[b]["seconds"] / by[e]["seconds"] for e in engines for b in by if b != e}
        if baseline_names:
            best = min(baseline_names, key=lambda k: by[k]["seconds"])
            ratio[mode]["engine/best_baseline"] = by[best]["seconds"] / by["engine"]["seconds"]
            ratio[mode]["best_baseline"] = best
    return {
        "device": str(lm.device),
        "dtype": lm.dtype,
        "fingerprint": lm.fingerprint,
        "items": len(prompts),
        "mean_prompt_tokens": float(np.mean(lengths)),
        "n": n,
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "repeats": args.repeats,
        "compare_commit": args.compare_commit,
        "results": results,
        "ratios": ratio,
    }


def main() -> None:
    global RECORD
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long", action="store_true", help="GSM8K long answers over a grid of N and max_new_tokens")
    parser.add_argument(
        "--simct", action="store_true", help="notebook 06's workload: short chat queries, 6 samples at T=0.7"
    )
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--items", type=int, default=None, help="prompts (default 6 short, 2 long, 24 simct)")
    parser.add_argument("--shots", type=int, default=None, help="few-shot examples (default 5 short, 2 long)")
    parser.add_argument(
        "--n", type=int, nargs="+", default=None, help="samples per prompt (default 32 short, 8 16 32 long, 6 simct)"
    )
    parser.add_argument(
        "--max-new-tokens", type=int, nargs="+", default=None, help="(default 4 short, 64 128 256 long, 32 64 simct)"
    )
    parser.add_argument(
        "--n-check", type=int, default=256, help="samples per prompt for the agreement check (short answers)"
    )
    parser.add_argument("--modes", nargs="+", default=["per_prompt", "batched"], choices=["per_prompt", "batched"])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["hf_generate", "hf_generate_shared_prefill"],
        help="baselines for --long/--simct",
    )
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--compare-commit", default=None, help="also time the engine of this git revision, as engine_before"
    )
    parser.add_argument(
        "--engine-quantize",
        default=None,
        choices=sorted(QUANTIZATIONS),
        help="also time the engine on the model loaded with this quantize recipe, as engine_<recipe>",
    )
    parser.add_argument(
        "--vllm",
        action="store_true",
        help="also time workbench.inference.vllm_engine (GPU with vLLM; skipped with a reason otherwise)",
    )
    parser.add_argument(
        "--no-llama-cpp", action="store_true", help="leave out llama.cpp (timed when llama-cpp-python is installed)"
    )
    parser.add_argument(
        "--no-ct2", action="store_true", help="leave out CTranslate2 (timed when ctranslate2 is installed)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's); 1 is steadiest on a loaded machine"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--record", type=Path, default=RECORD, help="JSON-lines file the records are appended to")
    args = parser.parse_args()
    RECORD = args.record
    if args.threads:
        torch.set_num_threads(args.threads)
    setting = "long" if args.long else "simct" if args.simct else "short"
    defaults = {
        "short": (6, 5, [32], [4]),
        "long": (2, 2, [8, 16, 32], [64, 128, 256]),
        "simct": (24, 0, [6], [32, 64]),
    }[setting]
    args.items = args.items or defaults[0]
    args.shots = defaults[1] if args.shots is None else args.shots
    args.n, args.max_new_tokens = args.n or defaults[2], args.max_new_tokens or defaults[3]

    lm = load_model(args.model, device=args.device, dtype=args.dtype)
    engines = {"engine": lambda: HFEngine(lm, cache=None, progress=False)}  # fresh: no prefix carried between methods
    if args.compare_commit:
        before = engine_at(args.compare_commit)
        engines = {"engine_before": lambda: before.Engine(lm, cache=None, progress=False), **engines}
    if args.engine_quantize:
        other = load_model(args.model, device=args.device, dtype=args.dtype, quantize=args.engine_quantize)
        engines[f"engine_{args.engine_quantize}"] = lambda: HFEngine(other, cache=None, progress=False)
    if args.vllm:
        engines.update(vllm_engine(args))
    if not args.no_llama_cpp:
        engines.update(llama_cpp_engine(args))
    if not args.no_ct2:
        engines.update(ct2_engines(args, lm))
    {"short": short_answers, "long": long_answers, "simct": simct}[setting](lm, args, engines)


def vllm_engine(args) -> dict:
    """{"vllm": factory} when vLLM and a GPU are there; {} with the reason printed otherwise."""
    try:
        from workbench.inference.vllm_engine import VLLMEngine

        engine = VLLMEngine(args.model, dtype=args.dtype, disk_cache=False)
    except Exception as error:  # no vLLM, no GPU, or no vLLM engine in this checkout
        print(f"vLLM engine skipped: {type(error).__name__}: {error}")
        return {}
    return {"vllm": lambda: engine}


def llama_cpp_engine(args) -> dict:
    """{"llama.cpp": factory} on the model's GGUF file, with torch's thread count, when llama-cpp-python
    is installed; {} with the reason printed otherwise. One instance serves every call (its load
    and file hash are not decoding); it keeps no prompt between calls."""
    if args.model != "smollm2-135m-instruct" or args.dtype != "fp32":
        print("llama.cpp skipped: it runs the embedded model's Q4_1 GGUF file, beside the fp32 engine only")
        return {}
    try:
        from workbench.inference.llamacpp_engine import LlamaCppEngine

        engine = LlamaCppEngine(n_threads=torch.get_num_threads())
    except ImportError as error:
        print(f"llama.cpp skipped: {error}")
        return {}
    return {"llama.cpp": lambda: engine}


class CT2Sampler:
    """CTranslate2 ``Generator.generate_batch`` behind the engine's ``sample`` signature: N hypotheses
    per prompt by random sampling, ending on the engine's end-of-sequence tokens; token ids only.
    ``ctranslate2.set_random_seed`` is called with the config's seed, but its samples were seen not to
    repeat from one call to the next (4.8.5): timing only, no seeded comparison."""

    def __init__(self, folder: Path, threads: int, tokenizer, end_ids: list[int]):
        import ctranslate2

        self.ctranslate2 = ctranslate2
        self.generator = ctranslate2.Generator(str(folder), device="cpu", intra_threads=threads)
        self.tokenizer, self.end_ids = tokenizer, end_ids

    def sample(self, prompts: list[str], n: int, config: SamplingConfig) -> list:
        self.ctranslate2.set_random_seed(config.seed)
        tokens = [
            self.tokenizer.convert_ids_to_tokens(self.tokenizer(p, add_special_tokens=False)["input_ids"])
            for p in prompts
        ]
        results = self.generator.generate_batch(
            tokens,
            max_length=config.max_new_tokens,
            sampling_topk=config.top_k,
            sampling_topp=config.top_p,
            sampling_temperature=config.temperature,
            num_hypotheses=n,
            include_prompt_in_result=False,
            end_token=self.end_ids,
        )
        return [SimpleNamespace(token_ids=result.sequences_ids) for result in results]


def ct2_model(quantization: str) -> Path:
    """The embedded model's safetensors folder converted to CTranslate2 at ``quantization``, once."""
    from workbench.inference.models import embedded_model_folder

    source = embedded_model_folder()
    target = source.with_name(f"{source.name}-ct2-{quantization}")
    if not (target / "model.bin").exists():
        from ctranslate2.converters import TransformersConverter

        partial = target.with_name(target.name + ".partial")
        TransformersConverter(str(source)).convert(str(partial), quantization=quantization, force=True)
        partial.rename(target)  # an interrupted conversion never leaves a half folder behind
    return target


def ct2_engines(args, lm) -> dict:
    """{"ct2_int8": factory, "ct2_fp32": factory} on the embedded model converted to CTranslate2, with
    torch's thread count, when ctranslate2 is installed; {} with the reason printed otherwise."""
    if args.model != "smollm2-135m-instruct" or args.dtype != "fp32":
        print("CTranslate2 skipped: it runs the embedded model converted once, beside the fp32 engine only")
        return {}
    try:
        import ctranslate2  # noqa: F401
    except ImportError as error:
        print(f"CTranslate2 skipped: {error}")
        return {}
    end_ids = sorted(HFEngine(lm, cache=None, progress=False).eos_ids)
    engines = {}
    for name, quantization in (("ct2_int8", "int8"), ("ct2_fp32", "float32")):
        try:
            sampler = CT2Sampler(ct2_model(quantization), torch.get_num_threads(), lm.tokenizer, end_ids)
        except Exception as error:  # a converter that does not know this transformers version, ...
            print(f"{name} skipped: {type(error).__name__}: {error}")
            continue
        engines[name] = lambda sampler=sampler: sampler
    return engines


if __name__ == "__main__":
    main()
