"""Command line for researchers who script: the notebooks' main steps without Jupyter.

    python -m workbench evaluate --task sst5 --model M --k 64 --rules mean,median,mode --limit 200
    python -m workbench evaluate --task path/to/spec.yaml --model M      # any table task, from its spec
    python -m workbench evaluate --task sst5 --model M --base-url http://host:8000/v1 --api-key KEY  # a server
    python -m workbench evaluate --task sst5 --profile smoke             # the sizes notebook 02 uses in that profile
    python -m workbench finetune --tasks sst5,stsb --lr 3e-4 --max-steps 200
    python -m workbench serve --model M --api-key KEY
    python -m workbench report [--check]      # docs/results.md and the README's blocks from results/; provenance
    python -m workbench seeds --seeds 3       # fine-tuning seeds 1, 2 of the ladder's arms, beside the main job

``evaluate`` prints the comparison table (every strategy of the chosen rules, with bootstrap
intervals) and writes it as CSV beside a manifest under ``runs/cli/<model id>/<time>-evaluate/``
(``--out`` to choose). It decodes with the model in process, or, with ``--base-url``, through any
OpenAI-compatible completions server (the workbench's own ``/v1``, vLLM, llama.cpp's server) while
the tokenizer of ``--model`` formats the prompts with its chat template. ``finetune`` trains (or
reuses the cached result of the same configuration) and records the run the same way. ``serve``
starts the HTTP server. ``report`` renders the results documents (:mod:`workbench.report`). ``seeds`` trains
and scores the ladder's fine-tuned arms at more seeds (:mod:`workbench.lifecycle.seeds`).
``--help`` on each lists its options.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing

from workbench.inference.models import DEFAULT_MODEL
from workbench.inference.protocol import Engine
from workbench.profiles import available_profiles

PROFILE = "cli"  # run folders of the command line: runs/cli/<model id>/...


def _add_model_options(parser: argparse.ArgumentParser, dtype: bool = True) -> None:
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help="embedded name, local folder or hub id (default: %(default)s)"
    )
    if dtype:
        parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: the idle cores)")
    parser.add_argument("--out", default=None, help="run folder (default: runs/cli/<model id>/<time>-<command>)")


def _evaluate(args: argparse.Namespace) -> int:
    from workbench.metric_aware.experiments import RunConfig, comparison_table, run_task
    from workbench.runs import Run, set_threads
    from workbench.tasks import get_task

    set_threads(args.threads)
    task = get_task(args.task)
    rules = [rule.strip() for rule in args.rules.split(",") if rule.strip()]
    metrics = tuple(m.strip() for m in args.metrics.split(",") if m.strip())
    config = RunConfig(
        split=args.split,
        limit=args.limit,
        shots=args.shots,
        k=args.k,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        seed=args.seed,
    )
    # The API key is a secret: the manifest records only whether one was given.
    parameters = {
        "PROFILE": PROFILE,
        "MODEL": args.model,
        **vars(args),
        "func": None,
        "api_key": args.api_key is not None,
    }
    run = Run.start("evaluate", parameters, args.out)
    engine = _engine(args)
    try:
        run.add_model(engine.fingerprint)
        task_run = run_task(engine, task, config)
    finally:
        if hasattr(engine, "close"):  # a server client holds a connection pool
            engine.close()
    model = engine.fingerprint["name"]
    table = comparison_table(task_run, metrics, n_resamples=args.bootstrap)
    table = table[[_keep(name, rules) for name in table.index]]
    table.insert(0, "model", model)
    table.insert(1, "task", task.name)
    path = run.save_table(table, f"evaluate_{task.name}.csv", index=True)
    run.finish()
    print(table.drop(columns=["model", "task"]).to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"\n{task.name}, {len(task_run.ids)} items, K={config.k}, model {model}: {path}")
    return 0


def _engine(args: argparse.Namespace) -> Engine:
    """The model in process, or with ``--base-url`` an OpenAI-compatible server (``--model`` gives the tokenizer)."""
    if args.base_url is None:
        from workbench.inference.engine import HFEngine

        return HFEngine.load(args.model, device=args.device, dtype=args.dtype)
    from workbench.inference.models import load_tokenizer
    from workbench.inference.openai_compat import OpenAIEngine

    tokenizer = load_tokenizer(args.model)
    return OpenAIEngine(args.base_url, model=args.served_model, api_key=args.api_key, tokenizer=tokenizer)


def _keep(strategy: str, rules: list[str]) -> bool:
    """Reference points (greedy, one sample) always stay; other strategies when their rule was asked for.

    >>> [_keep(s, ["mean"]) for s in ("greedy", "exact mean", "mode (self-consistency)", "prior mean")]
    [True, True, False, True]
    """
    words = strategy.replace("(", " ").replace(")", " ").split()
    return strategy in ("greedy", "one sample") or any(rule in words for rule in rules)


def _profile_defaults(argv: list[str]) -> dict:
    """The run settings that ``evaluate --profile P --task T`` starts from: the base stage's plan of ``T`` in the
    profile (``workbench/profiles/P.yaml``, section ``metric_aware``, as notebooks 02 and 03 decode);
    {} without --profile."""
    from workbench.metric_aware.inference_study import stage_plans

    known, _ = _PROFILE_PARSER.parse_known_args(argv)
    if known.profile is None:
        return {}
    plans = stage_plans(known.profile)["base"]
    if known.task not in plans:
        raise SystemExit(
            f"profile {known.profile!r} plans no run of task {known.task!r} (it plans {sorted(plans)}): "
            "leave out --profile and give the sizes"
        )
    config = plans[known.task]
    return {
        "limit": config.limit,
        "shots": config.shots,
        "k": config.k,
        "temperature": config.temperature,
        "max_new_tokens": config.max_new_tokens,
    }


_PROFILE_PARSER = argparse.ArgumentParser(add_help=False)
_PROFILE_PARSER.add_argument("--profile")
_PROFILE_PARSER.add_argument("--task")


def _finetune_options(parser: argparse.ArgumentParser) -> None:
    """One option per field of FinetuneConfig, so the command line never falls behind it."""
    from workbench.lifecycle.finetune import FinetuneConfig

    hints = typing.get_type_hints(FinetuneConfig)
    for field in dataclasses.fields(FinetuneConfig):
        if field.name in ("base", "device", "output_dir"):
            continue  # --model, --device and --out
        hint = hints[field.name]
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        flag = f"--{field.name.replace('_', '-')}"
        if isinstance(default, tuple):
            parser.add_argument(
                flag, default=",".join(map(str, default)), help="comma-separated (default: %(default)s)"
            )
        elif hint is bool or isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        else:
            kind = next((t for t in typing.get_args(hint) or (hint,) if t in (int, float, str)), str)
            parser.add_argument(flag, type=kind, default=default, help="(default: %(default)s)")


def _finetune(args: argparse.Namespace) -> int:
    from workbench.inference.models import model_id
    from workbench.lifecycle.finetune import FinetuneConfig, finetune
    from workbench.runs import Run, set_threads

    set_threads(args.threads)
    values = {}
    for field in dataclasses.fields(FinetuneConfig):
        if field.name in ("base", "device", "output_dir"):
            continue
        value = getattr(args, field.name)
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        values[field.name] = (
            tuple(v.strip() for v in value.split(",") if v.strip()) if isinstance(default, tuple) else value
        )
    run = Run.start("finetune", {"PROFILE": PROFILE, "MODEL": args.model, **values}, args.out)
    config = FinetuneConfig(base=args.model, device=args.device, output_dir=str(run.folder / "model"), **values)
    result = finetune(config)
    run.save_json(
        {"model_dir": str(result.model_dir), "steps": result.steps, "seconds": result.seconds, "losses": result.losses},
        "finetune.json",
    )
    run.finish()
    print(
        f"{result.steps} steps in {result.seconds:.0f} s; model in {result.model_dir} "
        f"(load it with --model {result.model_dir}; id {model_id(str(result.model_dir))})"
    )
    return 0


def _serve(argv: list[str]) -> int:
    from workbench.serving.__main__ import main as serve

    serve(argv)
    return 0


def _report(args: argparse.Namespace) -> int:
    from workbench import provenance, report
    from workbench.paths import RESULTS_DIR

    stale = report.render(check=args.check)
    for path in stale:
        print(f"{path}: {'differs from a fresh render of results/' if args.check else 'rewritten'}")
    problems = provenance.problems(RESULTS_DIR) if args.check else []
    for problem in problems:
        print(f"provenance: {problem}")
    return 1 if args.check and (stale or problems) else 0


def _seeds(args: argparse.Namespace) -> int:
    from pathlib import Path

    from workbench.lifecycle.seeds import run_seeds
    from workbench.paths import RESULTS_DIR
    from workbench.runs import is_reference, results_folder

    if args.out:
        out = Path(args.out)
    else:  # results/ for the default profile and model on a clean tree, as for the notebooks' runs
        out, why = results_folder(args.profile, args.model, Path("runs") / "seeds" / args.profile)
        if why:
            print(f"writing to {out}: {why}")
    summary = run_seeds(
        args.profile,
        args.model,
        args.seeds,
        out,
        args.device,
        n_resamples=args.bootstrap,
        main_results=RESULTS_DIR if is_reference(args.profile, args.model) else out,
    )
    print(summary.to_string(index=False))
    print(f"wrote {out}/seeds.csv, seeds_summary.csv and seeds_run.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m workbench", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{evaluate,finetune,serve,report,seeds}")

    evaluate = commands.add_parser(
        "evaluate",
        help="one task through the metric-aware strategies",
        description="Decode greedy answers, K samples and the exact grid distribution for one task; "
        "print every strategy's metrics with bootstrap intervals.",
    )
    evaluate.add_argument("--task", required=True, help="sst5, stsb, gsm8k, or a path to a table-task spec (YAML/JSON)")
    _add_model_options(evaluate)
    evaluate.add_argument(
        "--base-url",
        default=None,
        metavar="URL",
        help="decode on an OpenAI-compatible completions server at this API root (e.g. "
        "http://127.0.0.1:8000/v1) instead of in process; --model then names the tokenizer "
        "whose chat template formats the prompts, and --dtype/--device/--threads do not apply",
    )
    evaluate.add_argument("--api-key", default=None, help="bearer token for --base-url (not recorded in the manifest)")
    evaluate.add_argument(
        "--served-model",
        default=None,
        metavar="ID",
        help="model id on the --base-url server (default: the first one its /v1/models lists)",
    )
    evaluate.add_argument("--k", type=int, default=32, help="samples per item (default: %(default)s)")
    evaluate.add_argument(
        "--rules", default="mean,median,mode", help="decision rules to compare (default: %(default)s)"
    )
    evaluate.add_argument("--metrics", default="rmse,mae,exact_match,spearman", help="metrics (default: %(default)s)")
    evaluate.add_argument("--limit", type=int, default=200, help="items, a seeded subset (default: %(default)s)")
    evaluate.add_argument("--split", default="test")
    evaluate.add_argument("--shots", type=int, default=5)
    evaluate.add_argument("--temperature", type=float, default=1.0)
    evaluate.add_argument("--max-new-tokens", type=int, default=None)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default: %(default)s)")
    evaluate.add_argument(
        "--profile",
        choices=available_profiles(),
        default=None,
        help="start from the task's sizes in this profile (limit, shots, k, temperature, max new tokens); "
        "options given explicitly win",
    )
    evaluate.set_defaults(func=_evaluate, **(_profile_defaults(argv[1:]) if argv[:1] == ["evaluate"] else {}))

    finetune = commands.add_parser(
        "finetune",
        help="fine-tune a model on tasks (cached by configuration)",
        description="Fine-tune with checkpoints and resume; a finished run of the same configuration is reused.",
    )
    _add_model_options(finetune, dtype=False)  # training runs in fp32
    _finetune_options(finetune)
    finetune.set_defaults(func=_finetune)

    # serve keeps its own options (python -m workbench.serving): they are passed through untouched.
    commands.add_parser(
        "serve", help="serve a model over HTTP (options: python -m workbench serve --help)", add_help=False
    )

    rendered = commands.add_parser(
        "report",
        help="render docs/results.md and the README's results block from results/",
        description="Render the results documents from results/ and results/provenance.json.",
    )
    rendered.add_argument(
        "--check",
        action="store_true",
        help="only compare; exit 1 when a document differs from a fresh render or a results file's provenance is "
        "missing or incomplete",
    )
    rendered.set_defaults(func=_report)

    seeds = commands.add_parser(
        "seeds",
        help="the ladder's fine-tuned arms at seeds 0..N-1, their mean and spread (beside the main job)",
        description="Train (or reuse) and score the fine-tuned arms of the ladder at more seeds; seed 0 is read "
        "from ladder.csv when the main job wrote it.",
    )
    seeds.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default: %(default)s)")
    seeds.add_argument("--profile", choices=available_profiles(), default="default")
    seeds.add_argument("--model", default=DEFAULT_MODEL)
    seeds.add_argument("--device", default="auto")
    seeds.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default: %(default)s)")
    seeds.add_argument("--out", default=None, help="folder (default: results/ for the default profile and model)")
    seeds.set_defaults(func=_seeds)

    if argv[:1] == ["serve"]:
        return _serve(argv[1:])
    args = parser.parse_args(argv)
    return args.func(args)
