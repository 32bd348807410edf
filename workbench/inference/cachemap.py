"""Map a computation over prompts through a :class:`GenerationCache`: compute only what is missing.

The backends other than the in-process HF engine (OpenAI-compatible, vLLM) share this helper, so
their generations are cached, and interrupted runs resume, exactly like the HF engine's: one
entry per prompt, keyed by the backend's fingerprint, the prompt, the settings, the seed and the
device type, and written after every batch.

>>> import tempfile
>>> from workbench.inference.gencache import GenerationCache
>>> cache = GenerationCache(tempfile.mkdtemp(), {"name": "demo"})
>>> calls = []
>>> def shout(prompts):
...     calls.append(list(prompts))
...     return [{"text": p.upper()} for p in prompts]
>>> cached_map(cache, "demo", ["a", "b"], {"loud": True}, 0, shout, device="cpu", batch_size=1)
[{'text': 'A'}, {'text': 'B'}]
>>> cached_map(cache, "demo", ["b", "c"], {"loud": True}, 0, shout, device="cpu")  # only "c" is computed
[{'text': 'B'}, {'text': 'C'}]
>>> calls
[['a'], ['b'], ['c']]
"""

from __future__ import annotations

from collections.abc import Callable

from workbench.inference.gencache import GenerationCache
from workbench.progress import tqdm


def cached_map(
    cache: GenerationCache | None,
    kind: str,
    prompts: list[str],
    settings: dict,
    seed: int | None,
    compute: Callable[[list[str]], list[dict]],
    device: str,
    batch_size: int = 64,
    progress: bool = False,
) -> list[dict]:
    """One JSON-able value per prompt, from the cache where present, else from ``compute``.

    Args:
        cache: the generation cache; None computes everything.
        kind: the cache file ("sample", "score").
        prompts: B prompts (duplicates are computed once).
        settings: everything besides the prompt and the seed that determines a value.
        seed: the run seed, or None.
        compute: maps a list of prompts to one value (a JSON-able dict) per prompt.
        device: where the values are computed ("cuda", "cpu"; "remote" for a server's own device).
        batch_size: prompts per ``compute`` call (and per cache write).
        progress: show a tqdm bar.

    Returns:
        B values, in the order of ``prompts``.
    """
    keys = [cache.key(kind, prompt, settings, seed, device=device) if cache is not None else None for prompt in prompts]
    values: dict[str, dict] = {}
    todo: list[str] = []
    for prompt, key in zip(prompts, keys):
        if prompt in values or prompt in todo:
            continue
        stored = cache.get(kind, key) if cache is not None else None
        if stored is None:
            todo.append(prompt)
        else:
            values[prompt] = stored
    key_of = dict(zip(prompts, keys))
    with tqdm(total=len(todo), desc=kind, disable=not progress, leave=False) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start : start + batch_size]
            computed = compute(batch)
            if len(computed) != len(batch):
                raise RuntimeError(f"{kind}: {len(computed)} results for {len(batch)} prompts")
            values.update(zip(batch, computed))
            if cache is not None:  # written per batch: an interrupted run loses at most one batch
                cache.put_many(kind, {key_of[p]: value for p, value in zip(batch, computed)})
            bar.update(len(batch))
    return [values[prompt] for prompt in prompts]


def sampling_key(n: int, config) -> dict:
    """The settings a server-side sampler's cache entries are keyed on: ``n`` and what the request sends.

    >>> from workbench.inference.engine import SamplingConfig
    >>> sampling_key(4, SamplingConfig(temperature=0.7, stop=("\\n",)))["stop"]
    ['\\n']
    """
    return {
        "n": n,
        "temperature": config.temperature,
        "top_p": config.top_p,
        "top_k": config.top_k,
        "max_new_tokens": config.max_new_tokens,
        "stop": list(config.stop),
    }
