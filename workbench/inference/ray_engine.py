"""``RayEngine``: ``sample`` and ``score`` with prompts sharded over engine actors on a Ray cluster.

Each actor holds one engine (one per GPU, or one per group of CPU cores), built on the actor from
an :class:`EngineSpec`. A call splits its prompts into chunks (one per actor by default, so that each engine
call batches as many prompts as it can) and keeps every actor busy with one chunk at a time. Results come
back in prompt order.

Identical to a single process at the actors' thread count. The HF engine seeds each prompt's
samples from the run seed, the prompt and the sample index only (``_generator`` in
:mod:`workbench.inference.engine`), so which actor draws a prompt, and with which other prompts,
changes no random number. (Floating-point summation order differs with the batch composition, by
~1e-6 in a log-probability, and with the thread count, which can flip a sampled token: see
docs/reproducibility.md.)

One generation cache. The actors' engines read and write the driver's generation cache, the one a
single-process run uses (same folder, fingerprint and keys), through a small cache actor pinned to
the driver's node: a sharded run reuses what a single-process run computed and vice versa, and an
interrupted run resumes. The cache actor is the only writer of the cache files.

A worker that dies. Its chunk goes to the workers left, which read the batches it had finished
from the cache (each engine writes one batch at a time), so at most one batch is computed twice;
the run fails with a clear error only when no worker is left (what was finished stays cached).

Where it runs: ``RAY_ADDRESS`` (or ``address=``) points at a cluster; without it a local Ray
instance is started with the machine's CPUs. On a cluster, every node needs the workbench
installed (or pass ``runtime_env={"py_modules": [...]}``) and the model reachable by its name.
Install with ``pip install -e .[ray]``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from workbench.inference.gencache import GenerationCache
from workbench.inference.models import DEFAULT_MODEL
from workbench.inference.protocol import greedy_by_sampling
from workbench.inference.types import GridScore, SampleSet, SamplingConfig
from workbench.paths import cache_dir
from workbench.progress import tqdm


@dataclass(frozen=True)
class EngineSpec:
    """How each actor builds its engine; plain values, so it travels to any node.

    Attributes:
        model: embedded name, local folder or hub id (as :func:`workbench.inference.models.load_model` takes).
        backend: "hf" (:class:`workbench.inference.engine.HFEngine`) or "vllm"
            (:class:`workbench.inference.vllm_engine.VLLMEngine`, GPU actors).
        device: "auto" (the actor's GPU when it has one, else CPU), "cpu" or "cuda".
        dtype: "fp32", "bf16" or "fp16".
        quantize: None or "int8" (HF on CPU).
        threads: torch threads per CPU actor; default: the CPUs the actor reserved.
        options: keyword arguments for the engine (e.g. ``batch_size``, ``max_rows``).
    """

    model: str = DEFAULT_MODEL
    backend: str = "hf"
    device: str = "auto"
    dtype: str = "fp32"
    quantize: str | None = None
    threads: int | None = None
    options: dict = field(default_factory=dict)

    def build(self):
        """The engine, without a disk cache of its own (the driver's cache is attached later)."""
        if self.backend == "hf":
            from workbench.inference.engine import HFEngine
            from workbench.inference.models import load_model

            lm = load_model(self.model, device=self.device, dtype=self.dtype, quantize=self.quantize)
            return HFEngine(lm, cache=None, progress=False, **self.options)
        if self.backend == "vllm":
            from workbench.inference.vllm_engine import VLLMEngine

            return VLLMEngine(self.model, dtype=self.dtype, disk_cache=False, **self.options)
        raise ValueError(f"backend must be 'hf' or 'vllm', got {self.backend!r}")


class _CacheClient:
    """The generation-cache interface an engine uses (``key``, ``get``, ``put_many``), served by the cache actor.

    Keys are computed by a real :class:`GenerationCache` with the same fingerprint (in a
    throw-away folder), so they are the keys a single-process run uses.
    """

    def __init__(self, actor, fingerprint: dict):
        import ray

        self._ray, self._actor = ray, actor
        self._keys = GenerationCache(tempfile.mkdtemp(prefix="workbench-keys-"), fingerprint)
        self.fingerprint = self._keys.fingerprint

    def key(self, *args, **kwargs) -> str:
        return self._keys.key(*args, **kwargs)

    def get(self, kind: str, key: str):
        return self._ray.get(self._actor.get.remote(kind, key))

    def put_many(self, kind: str, values: dict) -> None:
        self._ray.get(self._actor.put_many.remote(kind, values))


class _CacheServer:
    """Holds the driver's :class:`GenerationCache`; the only writer of its files."""

    def __init__(self, root: str, fingerprint: dict):
        self.cache = GenerationCache(root, fingerprint)
        self.written = 0  # values written: more than the prompts of a run means work was redone

    def get(self, kind: str, key: str):
        return self.cache.get(kind, key)

    def put_many(self, kind: str, values: dict) -> None:
        self.cache.put_many(kind, values)
        self.written += len(values)

    def writes(self) -> int:
        return self.written


class _EngineActor:
    """One engine on one worker."""

    def __init__(self, spec: EngineSpec, threads: int):
        import torch

        torch.set_num_threads(spec.threads or threads)
        self.engine = spec.build()

    def fingerprint(self) -> dict:
        return self.engine.fingerprint

    def attach_cache(self, cache_actor, fingerprint: dict) -> None:
        self.engine.cache = _CacheClient(cache_actor, fingerprint)

    def sample(self, prompts, n, config):
        return self.engine.sample(prompts, n, config)

    def score(self, prompts, candidates, temperature):
        return self.engine.score(prompts, candidates, temperature).logprobs


class RayEngine:
    """The ``Engine`` protocol over engine actors on Ray.

    Args:
        spec: how each actor builds its engine.
        workers: number of actors; default: one per GPU of the cluster when it has GPUs (and
            ``spec.device`` is not "cpu"), else one per ``cpus_per_worker`` CPUs.
        cpus_per_worker: CPUs each actor reserves (and, by default, its torch threads).
        disk_cache: read and write the driver's generation cache (see the module docstring).
        address: the cluster; default ``$RAY_ADDRESS``, else a local instance is started.
        chunk_size: prompts per actor call; default: one chunk per actor. Smaller chunks balance
            workers of unequal speed (each free actor takes the next chunk).
        runtime_env: passed to ``ray.init`` (e.g. ``{"py_modules": [workbench]}`` for a cluster
            whose nodes lack the workbench).
        progress: show a tqdm bar over chunks.
    """

    def __init__(
        self,
        spec: EngineSpec | None = None,
        workers: int | None = None,
        cpus_per_worker: int = 1,
        disk_cache: bool = True,
        address: str | None = None,
        chunk_size: int | None = None,
        runtime_env: dict | None = None,
        progress: bool = False,
    ):
        import ray

        self._ray = ray
        self.spec = spec or EngineSpec()
        self._started_ray = not ray.is_initialized()
        if self._started_ray:
            address = address or os.environ.get("RAY_ADDRESS")
            options = {"runtime_env": runtime_env} if runtime_env else {}
            if address is None:
                options.update(include_dashboard=False)
            ray.init(address=address, log_to_driver=False, **options)
        resources = ray.cluster_resources()
        use_gpus = self.spec.device != "cpu" and resources.get("GPU", 0) >= 1
        if workers is None:
            workers = int(resources["GPU"]) if use_gpus else max(1, int(resources.get("CPU", 1)) // cpus_per_worker)
        actor_options = {"num_cpus": cpus_per_worker, "num_gpus": 1 if use_gpus else 0}
        actor_class = ray.remote(_EngineActor)
        self.actors = [actor_class.options(**actor_options).remote(self.spec, cpus_per_worker) for _ in range(workers)]
        fingerprints = ray.get([actor.fingerprint.remote() for actor in self.actors])
        if any(fp != fingerprints[0] for fp in fingerprints):
            raise RuntimeError(f"the actors loaded different model stages: {fingerprints}")
        self._fingerprint = fingerprints[0]
        self.chunk_size = chunk_size
        self.progress = progress
        self.lost_workers = 0  # actors that died; their chunks went to the others
        self._cache_actor = None
        if disk_cache:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
            self._cache_actor = (
                ray.remote(_CacheServer)
                .options(num_cpus=0, scheduling_strategy=here)
                .remote(str(cache_dir() / "generations"), self._fingerprint)
            )
            ray.get([actor.attach_cache.remote(self._cache_actor, self._fingerprint) for actor in self.actors])

    @property
    def fingerprint(self) -> dict:
        """The model stage every actor loaded."""
        return self._fingerprint

    @property
    def workers(self) -> int:
        return len(self.actors)

    # ------------------------------------------------------------------ Engine interface
    def sample(self, prompts: list[str], n: int, config: SamplingConfig | None = None) -> list[SampleSet]:
        """``n`` samples per prompt, prompts sharded over the actors."""
        config = config or SamplingConfig()
        return self._map(prompts, lambda actor, chunk: actor.sample.remote(chunk, n, config), list)

    def greedy(self, prompts: list[str], max_new_tokens: int = 32, stop: tuple[str, ...] = ()) -> list[str]:
        """The greedy answer for each prompt."""
        return greedy_by_sampling(self, prompts, max_new_tokens, stop)

    def score(self, prompts: list[str], candidates: list[str], temperature: float = 1.0) -> GridScore:
        """Exact grid scores, prompts sharded over the actors."""
        if not candidates:
            raise ValueError("score needs at least one candidate")
        rows = self._map(
            prompts,
            lambda actor, chunk: actor.score.remote(chunk, list(candidates), temperature),
            lambda a: list(np.asarray(a)),
        )
        return GridScore(list(candidates), np.asarray(rows, dtype=np.float64).reshape(len(prompts), len(candidates)))

    def close(self) -> None:
        """Stop the actors (and the local Ray instance, if this engine started it)."""
        for actor in [*self.actors, self._cache_actor]:
            if actor is not None:
                self._ray.kill(actor)
        self.actors, self._cache_actor = [], None
        if self._started_ray:
            self._ray.shutdown()

    def __enter__(self) -> RayEngine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ dispatch
    def _map(self, prompts: list[str], call: Callable, unpack: Callable) -> list:
        """Chunks of prompts to whichever actor is free; results reassembled in prompt order."""
        prompts = list(prompts)
        # One chunk per actor by default: each call keeps as many prompts as possible for the
        # engine to batch together (on CPU, two calls of 4 prompts cost clearly more than one of 8).
        # Smaller chunks (chunk_size) even out workers of unequal speed.
        size = self.chunk_size or max(1, -(-len(prompts) // len(self.actors)))
        chunks = [(start, prompts[start : start + size]) for start in range(0, len(prompts), size)]
        results: list = [None] * len(prompts)
        running: dict = {}  # object ref -> (actor, chunk start, chunk)
        free = list(self.actors)
        bar = tqdm(total=len(prompts), desc="ray", disable=not self.progress, leave=False)
        while chunks or running:
            while chunks and free:
                actor = free.pop()
                start, chunk = chunks.pop(0)
                running[call(actor, chunk)] = (actor, start, chunk)
            (done,), _ = self._ray.wait(list(running), num_returns=1)
            actor, start, chunk = running.pop(done)
            try:
                value = self._ray.get(done)
            except self._ray.exceptions.RayActorError as died:
                self._lose(actor, died)
                chunks.insert(0, (start, chunk))  # the finished batches of the chunk come from the cache
                continue
            results[start : start + len(chunk)] = unpack(value)
            free.append(actor)
            bar.update(len(chunk))
        bar.close()
        return results

    def _lose(self, actor, died: Exception) -> None:
        """Drop a dead actor; fail clearly when none is left."""
        self.actors = [a for a in self.actors if a is not actor]
        self.lost_workers += 1
        if not self.actors:
            cached = " (what they finished is in the generation cache: a rerun resumes)" if self._cache_actor else ""
            raise RuntimeError(f"all Ray workers died{cached}; the last one: {died}") from died
