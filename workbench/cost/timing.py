"""Fresh timings on this machine: forward passes (to validate the roofline) and the decoding
methods of an engine (greedy, N samples, exact grid scoring). Measured, never predicted."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

from workbench.cost.roofline import Measurement, ModelShape, Roofline
from workbench.inference.protocol import Engine
from workbench.inference.types import SamplingConfig


def time_passes(
    model, shape: ModelShape, passes: Sequence[tuple[str, int, int]], repeats: int = 3, seed: int = 0
) -> pd.DataFrame:
    """Time prefill passes and single decode steps of ``model``, as ``benchmarks/throughput.py`` does.

    A decode step runs on a transformers ``DynamicCache`` of random keys and values (its time does
    not depend on their values). Repeats go round-robin over the passes, so that a burst of load
    from other processes spreads over all of them rather than spoiling one.

    Args:
        model: a transformers causal LM on CPU.
        shape: its :class:`ModelShape`.
        passes: ("prefill" | "decode", batch, tokens) triples; tokens is the prompt length of a
            prefill and the cached length of a decode step.
        repeats: timings per pass, after one untimed warm-up.
        seed: seeds the random token ids and cache contents.

    Returns:
        One row per pass: phase, batch, tokens, seconds (median) and best (minimum).
    """
    # torch is imported here only: the rest of the cost package works without it.
    import torch
    from transformers import DynamicCache

    generator = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    runs = []
    for phase, batch, tokens in passes:
        if phase == "prefill":
            ids = torch.randint(0, model.config.vocab_size, (batch, tokens), generator=generator)
            runs.append((lambda: None, lambda _, ids=ids: model(ids, use_cache=True, logits_to_keep=1)))
        else:
            kv_shape = (batch, shape.n_kv_heads, tokens, shape.head_dim)
            layers = [
                (
                    torch.randn(kv_shape, generator=generator, dtype=dtype),
                    torch.randn(kv_shape, generator=generator, dtype=dtype),
                )
                for _ in range(shape.n_layers)
            ]
            ids = torch.randint(0, model.config.vocab_size, (batch, 1), generator=generator)
            # Building the cache copies the tensors, so it happens outside the timed call.
            runs.append(
                (
                    lambda layers=layers: DynamicCache(ddp_cache_data=layers),
                    lambda cache, ids=ids: model(ids, past_key_values=cache, use_cache=True, logits_to_keep=1),
                )
            )
    seconds = np.zeros((len(runs), repeats))
    with torch.inference_mode():
        for setup, run in runs:
            run(setup())
        for repeat in range(repeats):
            for index, (setup, run) in enumerate(runs):
                state = setup()
                start = time.perf_counter()
                run(state)
                seconds[index, repeat] = time.perf_counter() - start
    return pd.DataFrame([{"phase": p, "batch": b, "tokens": t} for p, b, t in passes]).assign(
        seconds=np.median(seconds, axis=1), best=seconds.min(axis=1)
    )


def validation_table(roofline: Roofline, timed: pd.DataFrame, column: str = "seconds") -> pd.DataFrame:
    """``timed`` (phase, batch, tokens and a seconds column) with the roofline's prediction and
    the relative error (predicted - measured) / measured."""
    points = [
        (Measurement.prefill if row.phase == "prefill" else Measurement.decode)(
            int(row.batch), int(row.tokens), float(row[column])
        )
        for _, row in timed.iterrows()
    ]
    predicted = roofline.predict(points)
    measured = timed[column].to_numpy(dtype=float)
    return timed.assign(measured_s=measured, predicted_s=predicted, rel_error=(predicted - measured) / measured)


def time_methods(
    engine: Engine,
    prompts: list[str],
    candidates: list[str],
    ns: Sequence[int],
    max_new_tokens: int,
    repeats: int = 3,
    warmup: list[str] | None = None,
) -> pd.DataFrame:
    """Machine seconds per prompt of greedy decoding, N samples and exact grid scoring.

    Use an engine without a disk cache (``HFEngine(lm, cache=None)``), or every repeat after the
    first would read the cache instead of decoding. The shared few-shot prefix is prefilled
    during the warm-up, so the timings are those of a server that keeps it cached.

    Args:
        engine: the engine to time (any backend of the :class:`~workbench.inference.protocol.Engine` protocol).
        prompts: formatted prompts, timed as one call per method.
        candidates: the answer grid for :meth:`Engine.score`.
        ns: sample counts.
        max_new_tokens: generation budget of greedy and sampled answers.
        repeats: timings per method; the minimum is kept, as the least disturbed by other load.
        warmup: prompts for an untimed warm-up call of each method (default: ``prompts``).

    Returns:
        One row per method: method ("greedy", "sample" or "exact"), n (samples, or candidates
        for "exact"), seconds_per_item.
    """
    config = SamplingConfig(max_new_tokens=max_new_tokens)
    methods = [("greedy", 1, lambda p: engine.greedy(p, max_new_tokens=max_new_tokens))]
    methods += [("sample", n, lambda p, n=n: engine.sample(p, n, config)) for n in ns]
    methods.append(("exact", len(candidates), lambda p: engine.score(p, candidates)))
    for _, _, run in methods:
        run(warmup or prompts)
    best = np.full(len(methods), np.inf)
    for _ in range(repeats):
        for index, (_, _, run) in enumerate(methods):
            start = time.perf_counter()
            run(prompts)
            best[index] = min(best[index], (time.perf_counter() - start) / len(prompts))
    return pd.DataFrame(
        {"method": [m for m, _, _ in methods], "n": [n for _, n, _ in methods], "seconds_per_item": best}
    )


def validate_threads(
    model,
    shape: ModelShape,
    passes: Sequence[tuple[str, int, int]],
    threads: Sequence[int] = (1, 2),
    repeats: int = 3,
    kv_passes: float = 3.0,
    seed: int = 0,
) -> pd.DataFrame:
    """The roofline checked against this CPU at several thread counts, timed side by side.

    For every repeat, all passes are timed at each thread count in turn, so that load from other
    processes falls on every thread count alike; each pass keeps its fastest repeat (the least
    disturbed). Per thread count, a roofline (this CPU's measured peaks at that count, compute and
    memory time added, the weights' passes of batched steps fitted: :class:`~workbench.cost.roofline.Roofline`) is
    calibrated on every other pass and predicts the rest, which it never saw.

    Args:
        model: a transformers causal LM on CPU.
        shape: its :class:`ModelShape`.
        passes: ("prefill" | "decode", batch, tokens) triples, as for :func:`time_passes`; at least
            eight, covering both phases and one- and several-row decode steps, so that four parameters are fitted
            on four or more.
        threads: torch thread counts to compare.
        repeats: timed repeats per pass and thread count.
        kv_passes: times the KV cache crosses memory per decode step (3 for transformers' DynamicCache).
        seed: seeds the random inputs.

    Returns:
        One row per (threads, pass): measured_s, predicted_s, rel_error, role ("fit" or "held out").
        The thread count in force before the call is restored.
    """
    import torch

    from workbench.cost.hardware import measure_cpu
    from workbench.cost.roofline import calibrate

    before = torch.get_num_threads()
    best: dict[int, np.ndarray] = {}
    try:
        for _ in range(repeats):
            for count in threads:
                torch.set_num_threads(count)
                seconds = time_passes(model, shape, passes, repeats=1, seed=seed).best.to_numpy()
                best[count] = np.minimum(best.get(count, np.inf), seconds)
        frames = []
        role = np.where(np.arange(len(passes)) % 2 == 0, "fit", "held out")
        for count in threads:
            torch.set_num_threads(count)
            timed = pd.DataFrame([{"phase": p, "batch": b, "tokens": t} for p, b, t in passes]).assign(
                seconds=best[count], role=role
            )
            points = [
                (Measurement.prefill if r.phase == "prefill" else Measurement.decode)(
                    int(r.batch), int(r.tokens), float(r.seconds)
                )
                for r in timed[timed.role == "fit"].itertuples()
            ]
            roofline = calibrate(
                Roofline(shape, measure_cpu(), kv_passes=kv_passes, overlap=False), points, fit_weight_passes=True
            )
            frames.append(validation_table(roofline, timed).assign(threads=count))
    finally:
        torch.set_num_threads(before)
    return pd.concat(frames, ignore_index=True)
