"""Text-metric decisions on E2E NLG: a fine-tuned model's outputs chosen by rule, scored against published systems.

The text half of the metric-aware claim: choosing an output by a text metric (minimum Bayes risk
over the model's samples, with that metric as utility) should win that metric. Notebook 08 runs:

1. :func:`train` fine-tunes the model on the E2E development file (MR -> text; the ``e2e`` table
   task, :file:`workbench/tasks/specs/e2e.yaml`) with the cached fine-tuning code;
2. :func:`decode` produces, per test MR, the greedy output, beam search (HF ``generate``), one
   sample, and MBR over N samples with each utility of :data:`MBR_UTILITIES`; every decoding is
   cached in the generation cache, so an interrupted run resumes;
3. :func:`published_outputs` reads the published systems' outputs (TGen, SC-LSTM) for the same MRs;
4. :func:`score` scores every output set with the same code (:mod:`workbench.metric_aware.multiref`)
   and :func:`diagonal_tests` tests whether MBR with metric X beats every other rule on X.

Names of systems and metrics are those of ``results/e2e.csv`` (issue 18).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, replace

import numpy as np
import pandas as pd
import torch

from workbench.inference.engine import HFEngine
from workbench.inference.gencache import GenerationCache
from workbench.inference.models import load_model
from workbench.inference.types import SamplingConfig
from workbench.lifecycle.finetune import FinetuneConfig, FinetuneResult, finetune, run_dir
from workbench.metric_aware.mbr import mbr_select
from workbench.metric_aware.multiref import (
    METRICS,
    corpus_value,
    item_statistics,
    paired_difference,
    resample_weights,
    score_systems,
)
from workbench.metric_aware.slots import parse_mr
from workbench.paths import cache_dir, data_dir, model_name
from workbench.progress import tqdm
from workbench.tasks import Example, Task
from workbench.tasks.spec import references_by_input

TASK = "e2e"
MBR_UTILITIES = {"mbr-chrf": "chrf", "mbr-bleu": "bleu", "mbr-rougel": "rouge_l", "mbr-cosine": "minilm_cosine"}
"""MBR system name -> the metric card whose pairwise form is its utility."""
DIAGONAL = {"mbr-chrf": "chrf", "mbr-bleu": "bleu", "mbr-rougel": "rougel", "mbr-cosine": "cosine"}
"""MBR system name -> the evaluation metric it should win."""
RULES = ("greedy", "beam", "sample", *MBR_UTILITIES)
TRIVIAL = "mr-values"
"""The trivial baseline: the MR's values listed ("Blue Spice, coffee shop, riverside."), no model."""
PUBLISHED = {"tgen-std": "tgen-std.run0.txt", "sclstm": "sclstm.run0.txt"}
"""Published system -> its outputs in ``<data>/e2e/system-outputs`` (one line per test MR, in order)."""


@dataclass
class Config:
    """Sizes of the E2E study (the ``08_e2e_text_metrics`` profile section).

    Attributes:
        items: test MRs evaluated, a seeded subset (None: all 1,847).
        samples: samples per MR for MBR (N); the first one is the "sample" rule.
        temperature: sampling temperature.
        beams: beam width of beam search.
        batch_size: prompts per beam-search batch.
        bootstrap: bootstrap resamples for the intervals and paired tests.
        finetune: the fine-tuning run's settings (FinetuneConfig fields).
    """

    items: int | None = 500
    samples: int = 32
    temperature: float = 1.0
    beams: int = 5
    batch_size: int = 8
    bootstrap: int = 1000
    finetune: dict = field(default_factory=dict)


def evaluation_items(task: Task, items: int | None, seed: int = 0) -> tuple[list[Example], list[list[str]], list[int]]:
    """The evaluated test MRs (a seeded subset, in file order), their references and their positions.

    Returns:
        ``(examples, references, positions)``: one example per MR (its first row), the MR's
        references, and its index among all test MRs (the line of the published outputs).
    """
    examples, references = references_by_input(task.examples("test"))
    positions = list(range(len(examples)))
    if items is not None and items < len(examples):
        positions = sorted(random.Random(seed).sample(positions, items))
    return [examples[i] for i in positions], [references[i] for i in positions], positions


def selection_items(task: Task, config: Config, items: int, seed: int = 1) -> tuple[list[Example], list[list[str]]]:
    """Test MRs for choosing settings (sampling, training) that the profile does not evaluate: a seeded ``items``
    of the others, in file order, with their references (the benchmarks that tune notebook 08 score on these).

    Raises:
        ValueError: the profile evaluates every test MR, so none is left.
    """
    examples, references = references_by_input(task.examples("test"))
    _, _, evaluated = evaluation_items(task, config.items, seed=0)
    held_out = sorted(set(range(len(examples))) - set(evaluated))
    if not held_out:
        raise ValueError("the profile evaluates every test MR: none is left to choose settings on")
    picked = sorted(random.Random(seed).sample(held_out, min(items, len(held_out))))
    return [examples[i] for i in picked], [references[i] for i in picked]


def train(config: Config, model: str, device: str = "auto", seed: int = 0, progress: bool = True) -> FinetuneResult:
    """Fine-tune ``model`` on the E2E development file; cached by config and data (reused when finished)."""
    settings = FinetuneConfig(tasks=(TASK,), base=model, device=device, seed=seed, eval_every=0, **config.finetune)
    return finetune(replace(settings, output_dir=str(run_dir(settings))), progress=progress)


def beam_search(
    engine: HFEngine, prompts: list[str], beams: int, max_new_tokens: int, batch_size: int = 8
) -> list[str]:
    """Beam-search outputs with HF ``generate`` (``num_beams=beams``, its defaults otherwise), cached.

    Results go to the engine's generation cache under the kind "beam", per batch, so an interrupted
    run keeps what it finished.
    """
    settings = {"num_beams": beams, "max_new_tokens": max_new_tokens, "generate": "hf"}
    cache = engine.cache  # tested against None: an empty cache has length 0
    keys = [cache.key("beam", p, settings, device=engine.device) if cache is not None else None for p in prompts]
    outputs = [(cache.get("beam", k) or {}).get("text") if cache is not None else None for k in keys]
    todo = [i for i, text in enumerate(outputs) if text is None]
    tokenizer = engine.tokenizer
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        for start in tqdm(range(0, len(todo), batch_size), desc="beam", disable=not todo or not engine.progress):
            batch = todo[start : start + batch_size]
            encoded = tokenizer(
                [prompts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False
            )
            with torch.inference_mode():
                generated = engine.model.generate(
                    **encoded.to(engine.device),
                    num_beams=beams,
                    do_sample=False,
                    max_new_tokens=max_new_tokens,
                    eos_token_id=sorted(engine.eos_ids),
                    pad_token_id=engine.pad_id,
                )
            texts = tokenizer.batch_decode(generated[:, encoded["input_ids"].shape[1] :], skip_special_tokens=True)
            for i, text in zip(batch, texts):
                outputs[i] = text.strip()
            if cache is not None:
                cache.put_many("beam", {keys[i]: {"text": outputs[i]} for i in batch})
    finally:
        tokenizer.padding_side = side
    return outputs


def decode(engine: HFEngine, task: Task, examples: list[Example], config: Config, seed: int = 0) -> dict:
    """Every rule's output per MR, and the samples MBR chose from.

    Returns:
        ``{"outputs": {rule: [text per MR]}, "samples": [[N texts] per MR]}``.
    """
    prompts = task.prompts(examples, engine.tokenizer)
    budget = task.max_new_tokens
    outputs = {"greedy": [task.parse(t) for t in engine.greedy(prompts, max_new_tokens=budget)]}
    outputs["beam"] = beam_search(engine, prompts, config.beams, budget, config.batch_size)
    sampling = SamplingConfig(temperature=config.temperature, max_new_tokens=budget, seed=seed)
    samples = [[task.parse(t) for t in s.texts] for s in engine.sample(prompts, config.samples, sampling)]
    outputs["sample"] = [texts[0] for texts in samples]
    for name, utility in MBR_UTILITIES.items():
        chosen = [mbr_select(texts, utility).hypothesis for texts in tqdm(samples, desc=name, leave=False)]
        outputs[name] = chosen
    return {"outputs": outputs, "samples": samples}


def trivial_outputs(mrs: list[str]) -> list[str]:
    """The MR's values joined by commas: states every value, with no sentence around them.

    >>> trivial_outputs(["name[Aromi], area[riverside]"])
    ['Aromi, riverside.']
    """
    return [", ".join(value for _, value in parse_mr(mr)) + "." for mr in mrs]


def published_outputs(positions: list[int]) -> dict[str, list[str | None]]:
    """The published systems' outputs for the test MRs at ``positions`` (None where a file stops early).

    The SC-LSTM file holds 1,800 lines for the 1,847 test MRs: its outputs cover the first 1,800.

    Raises:
        FileNotFoundError: naming the missing file (the outputs are read from the data folder only).
    """
    root = data_dir()
    if root is None:
        raise FileNotFoundError("the published E2E outputs are read from the data folder: set WORKBENCH_DATA_DIR")
    systems = {}
    for system, name in PUBLISHED.items():
        path = root / "e2e" / "system-outputs" / name
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from the data folder {root}")
        lines = path.read_text(encoding="utf-8").split("\n")
        lines = lines[:-1] if lines and lines[-1] == "" else lines
        systems[system] = [lines[i].strip() if i < len(lines) else None for i in positions]
    return systems


def statistics(outputs: dict[str, list[str | None]], mrs: list[str], references: list[list[str]]) -> dict:
    """:func:`item_statistics` of every system; a system with missing outputs is scored on its items only.

    Returns:
        ``{system: (item positions scored, {metric: (n, k) statistics})}``.
    """
    scored = {}
    for system, texts in tqdm(outputs.items(), desc="scoring", leave=False):
        keep = [i for i, text in enumerate(texts) if text is not None]
        stats = item_statistics([texts[i] for i in keep], [references[i] for i in keep], [mrs[i] for i in keep])
        scored[system] = (keep, stats)
    return scored


def score(stats: dict, n_resamples: int, seed: int = 0, model: str = "") -> pd.DataFrame:
    """``system, model, metric, value, ci_low, ci_high, items``: each system on the items it covers (bootstrap
    CIs); ``model`` names what produced the decision rules' outputs (published systems: "published"; the
    trivial baseline: "none")."""
    tables = [score_systems({system: by_metric}, n_resamples, seed) for system, (_, by_metric) in stats.items()]
    table = pd.concat(tables, ignore_index=True)
    producer = {**{rule: model for rule in RULES}, **{name: "published" for name in PUBLISHED}, TRIVIAL: "none"}
    table.insert(1, "model", table.system.map(producer).fillna(""))
    return table


def diagonal_tests(stats: dict, n_resamples: int, seed: int = 0, against: tuple[str, ...] = ()) -> pd.DataFrame:
    """Does MBR with metric X beat each other system on X? Paired bootstrap on the items both cover.

    Args:
        stats: :func:`statistics` output.
        n_resamples: bootstrap resamples.
        seed: resampling seed.
        against: systems to compare with (default: every other system in ``stats``).

    Returns:
        One row per (MBR system, other system): metric, difference (MBR minus other, in the metric's
        units), its interval, and the one-sided paired bootstrap p-value that MBR is better.
    """
    rows = []
    for mbr, metric in DIAGONAL.items():
        if mbr not in stats:
            continue
        for other in against or [s for s in stats if s != mbr]:
            (keep_a, a), (keep_b, b) = stats[mbr], stats[other]
            common = sorted(set(keep_a) & set(keep_b))
            index_a = {p: i for i, p in enumerate(keep_a)}
            index_b = {p: i for i, p in enumerate(keep_b)}
            rows_a = a[metric][[index_a[p] for p in common]]
            rows_b = b[metric][[index_b[p] for p in common]]
            weights = resample_weights(len(common), n_resamples, seed)
            test = paired_difference(metric, rows_a, rows_b, weights)
            rows.append({"mbr": mbr, "other": other, "metric": metric, "items": len(common), **test})
    return pd.DataFrame(rows)


def examples_table(run: dict, references: list[list[str]], mrs: list[str], index: int, metric: str) -> pd.DataFrame:
    """One MR's output under every rule with its score on ``metric``, for the notebook's widget."""
    outputs = {rule: texts[index] for rule, texts in run["outputs"].items() if texts[index] is not None}
    values = {
        rule: _item_value(metric, item_statistics([text], [references[index]], [mrs[index]], metrics=(metric,)))
        for rule, text in outputs.items()
    }
    return pd.DataFrame({"output": outputs, metric: values}).rename_axis("system")


def _item_value(metric: str, stats: dict) -> float:
    return float(corpus_value(metric, stats[metric].sum(axis=0)))


def table_wide(table: pd.DataFrame) -> pd.DataFrame:
    """``results/e2e.csv`` as a system x metric table of values (metrics in :data:`METRICS` order)."""
    wide = table.pivot(index="system", columns="metric", values="value")
    order = [s for s in (*RULES, *PUBLISHED, TRIVIAL) if s in wide.index]
    return wide.loc[order, [m for m in METRICS if m in wide.columns]]


def engine_for(result: FinetuneResult, dtype: str = "fp32", progress: bool = True) -> HFEngine:
    """An engine over the fine-tuned model in ``dtype`` ("fp32", or "bf16" loaded from the run's saved weights),
    with the generation cache of those weights."""
    if dtype == "fp32":
        lm = result.loaded()
    else:
        lm = load_model(str(result.model_dir), device=result.config.device, dtype=dtype)
    return HFEngine(lm, cache=GenerationCache(cache_dir() / "generations", lm.fingerprint), progress=progress)


def model_label(engine: HFEngine) -> str:
    """What produced an engine's outputs, for the results: the model's name (relative to the cache, as
    provenance records it) and precision.

    >>> from types import SimpleNamespace
    >>> folder = str(cache_dir() / "finetuned" / "ab12" / "model")
    >>> model_label(SimpleNamespace(fingerprint={"name": folder, "dtype": "bf16"}))
    'finetuned/ab12/model (bf16)'
    """
    return f"{model_name(engine.fingerprint['name'])} ({engine.fingerprint['dtype']})"


def config_from(sizes) -> Config:
    """The :class:`Config` of a profile section."""
    values = {name: sizes[name] for name in asdict(Config())}
    values["finetune"] = dict(values["finetune"])
    return Config(**values)


def mean_sample_diversity(samples: list[list[str]]) -> float:
    """Average share of distinct texts among an MR's samples (1: all different; MBR has something to choose)."""
    return float(np.mean([len(set(texts)) / len(texts) for texts in samples]))


def plot_scores(axes, table: pd.DataFrame, metrics: tuple[str, ...] = tuple(METRICS)) -> None:
    """One panel per metric: each system's corpus score with its 95% bootstrap interval.

    Args:
        axes: at least ``len(metrics)`` matplotlib axes.
        table: :func:`score`'s table.
        metrics: the metrics to draw.
    """
    wide = table_wide(table)
    for ax, metric in zip(np.ravel(axes), metrics):
        rows = table[table["metric"] == metric].set_index("system").loc[wide.index]
        colours = ["tab:blue" if s in RULES else "tab:grey" if s == TRIVIAL else "tab:orange" for s in rows.index]
        errors = np.vstack([rows["value"] - rows["ci_low"], rows["ci_high"] - rows["value"]])
        ax.barh(rows.index, rows["value"], xerr=errors, color=colours)
        ax.invert_yaxis()
        ax.set_title(f"{metric} ({'higher' if METRICS[metric] else 'lower'} is better)", fontsize=9)
        ax.tick_params(labelsize=8)
