"""Responses for SimCT from real lifecycle stages: queries, stage variants, and generation.

Three pieces, all data-driven:

* :func:`build_queries`: a seeded, labelled query set. *Closed* queries have one right answer
  (SST-5 sentiment ratings, GSM8K problems answered with a number); *open* ones have many good
  answers (paraphrase an STS-B sentence, explain an SST-5 sentence).
* :class:`Variant`: one stage *variant* to compare, described as data: which model stage (a
  registry name from :mod:`workbench.lifecycle.stages` or a loaded model), the sampling settings, the
  system prompt and query template, and how it is called: in process (``"local"``), through the
  workbench server on loopback (``"served"``), or through an OpenAI-compatible completions API
  (``"openai"``): the workbench server's own ``/v1``, or any other server (vLLM, TGI, llama.cpp)
  given as ``endpoint``, which is how SimCT compares a stage with "the same model behind another
  server".
* :func:`generate_responses`: draws ``samples_per_query`` responses per query from every variant
  and returns them as a response table (:mod:`workbench.consistency.responses`), one stage label
  per variant.

Seeds. Each variant samples with its own seed, derived from the run seed and the variant's name.
Two variants sharing a seed would share their random streams, so their samples would be coupled
(for nearly equal distributions, nearly identical) and SimCT's model-wise test, which assumes
independent draws, would call them "more consistent than the stage with itself". A variant that
repeats the reference's settings under another name is therefore an A/A control: same stage,
new seeds.

Resuming. With ``out_dir`` every variant's responses are appended to ``<out_dir>/<name>.jsonl``
after each batch of queries, tagged with a key of everything that determines them (settings,
stage fingerprint, samples per query, seed). A rerun keeps the records whose key still matches,
generates only the queries that lack some of their samples, and loads no model at all when
nothing is missing. The engines also use the disk generation cache (:mod:`workbench.inference.gencache`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import warnings
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from workbench.consistency.responses import RESPONSE_FIELDS, validate_responses
from workbench.inference.engine import HFEngine
from workbench.inference.gencache import GenerationCache
from workbench.inference.models import DEFAULT_MODEL, LoadedModel, embedded_model_folder
from workbench.inference.protocol import Engine as EngineProtocol
from workbench.inference.types import SamplingConfig
from workbench.paths import cache_dir
from workbench.progress import tqdm
from workbench.tasks import get_task
from workbench.text import clean_text

BACKENDS = ("local", "served", "openai")
QUERY_COLUMNS = ("query_id", "query", "query_type", "source")

# The query kinds of build_queries: (source label, query type, instruction before the text).
RATING_INSTRUCTION = (
    "Rate the sentiment of this movie review on a scale from 1 (very negative) to 5 "
    "(very positive). Answer with the digit only.\nReview: "
)
MATH_INSTRUCTION = "Answer with the final number only.\nQuestion: "
PARAPHRASE_INSTRUCTION = "Paraphrase this sentence: "
EXPLAIN_INSTRUCTION = "Explain what this sentence means: "


def build_queries(n_closed: int, n_open: int, seed: int = 0, split: str = "test") -> pd.DataFrame:
    """A labelled query set: half of each type from each of its two sources.

    Closed: SST-5 rating questions and GSM8K problems (answered with a number). Open: paraphrase
    an STS-B sentence, explain an SST-5 sentence. SST-5 serves both types, with disjoint
    sentences. The data come from :func:`workbench.tasks.get_task` (local copies or the hub).

    Args:
        n_closed: closed queries (the odd one, if any, is an SST-5 rating).
        n_open: open queries (the odd one, if any, is a paraphrase).
        seed: which examples are drawn.
        split: the data split to draw from.

    Returns:
        A DataFrame with the columns :data:`QUERY_COLUMNS`, closed queries first; ``query_id`` is
        ``"<source>:<example id>"``, stable across runs and seeds.
    """
    n_rate, n_math = n_closed - n_closed // 2, n_closed // 2
    n_paraphrase, n_explain = n_open - n_open // 2, n_open // 2
    sst5 = get_task("sst5").examples(split, limit=n_rate + n_explain, seed=seed)
    rows = []

    def add(source, query_type, instruction, examples, ptb):
        for example in examples:
            text = clean_text(example.text, ptb=ptb)
            rows.append((f"{source}:{example.id}", instruction + text, query_type, source))

    add("sst5-rating", "closed", RATING_INSTRUCTION, sst5[:n_rate], ptb=True)
    add("gsm8k", "closed", MATH_INSTRUCTION, get_task("gsm8k").examples(split, limit=n_math, seed=seed), ptb=False)
    add(
        "stsb-paraphrase",
        "open",
        PARAPHRASE_INSTRUCTION,
        get_task("stsb").examples(split, limit=n_paraphrase, seed=seed),
        ptb=False,
    )
    add("sst5-explain", "open", EXPLAIN_INSTRUCTION, sst5[n_rate:], ptb=True)
    return pd.DataFrame(rows, columns=list(QUERY_COLUMNS))


@dataclasses.dataclass(frozen=True)
class Variant:
    """One stage variant: a model stage with its decoding settings and prompt format.

    Attributes:
        name: the stage label in the response table (unique per run; it also sets the seed).
        stage: a registry stage name (``"base-fp32"``, ``"finetuned-fp32"``...; loaded with
            :func:`workbench.lifecycle.stages.load_stage`) or an already loaded model.
        temperature: sampling temperature (0: greedy).
        top_p: nucleus mass (1 disables).
        max_new_tokens: response budget in tokens.
        system_prompt: the system message; None keeps the chat template's default (SmolLM2 then
            inserts its own "You are a helpful AI assistant named SmolLM...").
        template: how a query becomes the user message; must contain ``{query}``.
        backend: ``"local"`` (in-process engine), ``"served"`` (the same stage behind the
            workbench server on loopback, called through :class:`workbench.serving.RemoteEngine`)
            or ``"openai"`` (through the OpenAI completions API with
            :class:`workbench.inference.openai_compat.OpenAIEngine`: the workbench server's
            ``/v1`` on loopback, or ``endpoint``).
        endpoint: for ``"openai"``: the API root of another server (e.g.
            ``"http://10.0.0.5:8000/v1"``, its key in ``$OPENAI_API_KEY``) that serves this
            stage's model; ``stage`` then only supplies the chat template. None serves ``stage``
            on loopback.
        endpoint_model: the model id on ``endpoint`` (default: the first it lists).
        batch_size: prompts the local engine prefills and decodes together (None: the engine's
            default). Padding and batched kernels change the arithmetic, so batch size 1 vs 8
            tests batch invariance. Such a variant bypasses the engine's disk cache, whose keys do
            not include the batch size.
        attn_implementation: ``"sdpa"`` or ``"eager"`` attention kernels for the stage (None:
            the default); the weights stay the same.
    """

    name: str
    stage: str | LoadedModel = "base-fp32"
    temperature: float = 0.7
    top_p: float = 1.0
    max_new_tokens: int = 32
    system_prompt: str | None = None
    template: str = "{query}"
    backend: str = "local"
    endpoint: str | None = None
    endpoint_model: str | None = None
    batch_size: int | None = None
    attn_implementation: str | None = None

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.endpoint is not None and self.backend != "openai":
            raise ValueError(f"an endpoint is called with backend='openai', not {self.backend!r}")
        if "{query}" not in self.template:
            raise ValueError(f"template must contain '{{query}}', got {self.template!r}")
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise ValueError(f"variant name {self.name!r} must be non-empty and usable as a file name")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be None or positive, got {self.batch_size}")
        SamplingConfig(**self._decoding())  # validates the settings now rather than mid-run

    def _decoding(self) -> dict:
        return {"temperature": self.temperature, "top_p": self.top_p, "max_new_tokens": self.max_new_tokens}

    def sampling_config(self, seed: int) -> SamplingConfig:
        """The engine settings of this variant with the given sampling seed."""
        return SamplingConfig(**self._decoding(), seed=seed)

    @property
    def stage_label(self) -> str:
        """The registry name, or the loaded model's name and fingerprint id."""
        if isinstance(self.stage, LoadedModel):
            return f"{self.stage.name}@{self.stage.fingerprint_id}"
        return self.stage

    def messages(self, query: str) -> list[dict]:
        """The chat for one query."""
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt is not None else []
        return system + [{"role": "user", "content": self.template.format(query=query)}]

    def prompt(self, query: str, tokenizer) -> str:
        """The fully formatted prompt (chat template applied) for one query."""
        return tokenizer.apply_chat_template(self.messages(query), tokenize=False, add_generation_prompt=True)

    def describe(self) -> dict:
        """The variant as plain values (the stage as its label), e.g. for a table."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {**fields, "stage": self.stage_label}


def variant_seed(seed: int, name: str) -> int:
    """The sampling seed of variant ``name`` in a run with seed ``seed`` (crc32: same in every process)."""
    return zlib.crc32(f"{seed}\0{name}".encode())


def stage_fingerprint(stage: str | LoadedModel, base_model: str = DEFAULT_MODEL) -> dict:
    """The weights fingerprint of a stage, from ``base_model``'s registry (no model is loaded for registered stages)."""
    if isinstance(stage, LoadedModel):
        return stage.fingerprint
    from workbench.lifecycle.stages import get_stage  # imported late: registering a base stage loads it once

    return get_stage(stage, base_model=base_model).fingerprint


def stage_tokenizer(stage: str | LoadedModel, base_model: str = DEFAULT_MODEL):
    """The tokenizer of a stage, without loading the weights of a registered one (e.g. for the MMD baseline)."""
    if isinstance(stage, LoadedModel):
        return stage.tokenizer
    from transformers import AutoTokenizer

    from workbench.lifecycle.stages import get_stage

    source = get_stage(stage, base_model=base_model).source
    try:
        folder = embedded_model_folder(source)
    except KeyError:  # not an embedded model: a saved folder or a hub id
        folder = source
    return AutoTokenizer.from_pretrained(folder)


# Fields added after response files were first written: left out of the key while unset, so that
# older files of variants that do not use them stay valid.
_OPTIONAL_FIELDS = ("batch_size", "attn_implementation", "endpoint", "endpoint_model")


def variant_key(variant: Variant, samples_per_query: int, seed: int, base_model: str = DEFAULT_MODEL) -> str:
    """A hash of everything that determines a variant's responses (records carry it)."""
    settings = {k: v for k, v in variant.describe().items() if not (k in _OPTIONAL_FIELDS and v is None)}
    blob = {
        **settings,
        "fingerprint": stage_fingerprint(variant.stage, base_model),
        "samples_per_query": samples_per_query,
        "sampling_seed": variant_seed(seed, variant.name),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def _read_records(path: Path) -> list[dict]:
    """The parseable records of a JSONL file; a torn last line (run killed mid-write) is skipped."""
    if not path.exists():
        return []
    records, bad = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            bad += 1
    if bad:
        warnings.warn(
            f"{path}: skipped {bad} unreadable line(s) (an interrupted write); they are regenerated", stacklevel=3
        )
    return records


def _complete_queries(records: list[dict], query_ids: set[str], samples_per_query: int) -> dict[str, list[dict]]:
    """Records grouped by query, keeping only queries of the set that have all their samples."""
    by_query: dict[str, dict[int, dict]] = {}
    for record in records:
        if record["query_id"] in query_ids:
            by_query.setdefault(record["query_id"], {})[record["seed"]] = record
    return {
        query: [samples[i] for i in range(samples_per_query)]
        for query, samples in by_query.items()
        if set(samples) >= set(range(samples_per_query))
    }


def _write_records(path: Path, records: list[dict], mode: str) -> None:
    with path.open(mode, encoding="utf-8") as handle:
        handle.write("".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records))
        handle.flush()


class _Engines:
    """Loads each model stage once per :func:`generate_responses` call and serves it when asked."""

    def __init__(
        self,
        device: str,
        disk_cache: bool,
        queries_per_call: int,
        samples_per_query: int,
        base_model: str = DEFAULT_MODEL,
    ):
        self.device, self.disk_cache, self.base_model = device, disk_cache, base_model
        self.queries_per_call, self.samples_per_query = queries_per_call, samples_per_query
        self._models: dict[tuple[str, str | None], LoadedModel] = {}

    def model(self, stage: str | LoadedModel, attn_implementation: str | None = None) -> LoadedModel:
        if isinstance(stage, LoadedModel):
            if attn_implementation is not None:
                raise ValueError("attn_implementation needs a registered stage name, not a loaded model")
            return stage
        if (stage, attn_implementation) not in self._models:
            from workbench.lifecycle.stages import load_stage

            self._models[(stage, attn_implementation)] = load_stage(
                stage, device=self.device, base_model=self.base_model, attn_implementation=attn_implementation
            )
        return self._models[(stage, attn_implementation)]

    def local(self, lm: LoadedModel, batch_size: int | None = None) -> HFEngine:
        cache = (
            GenerationCache(cache_dir() / "generations", lm.fingerprint)
            if self.disk_cache and batch_size is None
            else None
        )
        return HFEngine(lm, cache=cache, progress=False, **({"batch_size": batch_size} if batch_size else {}))

    @contextmanager
    def open(self, variant: Variant) -> Iterator[tuple[object, EngineProtocol]]:
        """(tokenizer, engine) for a variant; a served variant gets a fresh server, stopped on exit."""
        if variant.endpoint is not None:  # another server: only the chat template is needed here
            from workbench.inference.openai_compat import OpenAIEngine

            with OpenAIEngine(
                variant.endpoint,
                variant.endpoint_model,
                os.environ.get("OPENAI_API_KEY"),
                timeout_s=24 * 3600,
                max_prompts_per_request=self.queries_per_call,
            ) as remote:
                yield stage_tokenizer(variant.stage, self.base_model), remote
            return
        lm = self.model(variant.stage, variant.attn_implementation)
        if variant.backend == "local":
            yield lm.tokenizer, self.local(lm, variant.batch_size)
            return
        from workbench.serving import BackgroundServer, RemoteEngine, ServerConfig, create_app

        config = ServerConfig(
            max_n=max(16, self.samples_per_query),
            max_prompts=self.queries_per_call,
            max_total_tokens=8192,
            request_timeout_s=24 * 3600,
        )
        api_key = secrets.token_urlsafe(16)
        with BackgroundServer(create_app(self.local(lm), api_key, config)) as server:
            if variant.backend == "served":
                with RemoteEngine(server.url, api_key, timeout_s=24 * 3600) as remote:
                    yield lm.tokenizer, remote
            else:
                from workbench.inference.openai_compat import OpenAIEngine

                with OpenAIEngine(
                    f"{server.url}/v1",
                    api_key=api_key,
                    timeout_s=24 * 3600,
                    max_prompts_per_request=self.queries_per_call,
                ) as remote:
                    yield lm.tokenizer, remote


def _records(variant: Variant, rows: pd.DataFrame, sample_sets, key: str, sampling_seed: int) -> list[dict]:
    """Response-table records (with the variant's settings as extra fields) for a batch of queries."""
    settings = variant.describe()
    out = []
    for (_, query), samples in zip(rows.iterrows(), sample_sets):
        for index, (text, reason) in enumerate(zip(samples.texts, samples.finish_reasons)):
            out.append(
                {
                    "query_id": query.query_id,
                    "query": query.query,
                    "query_type": query.query_type,
                    "stage": variant.name,
                    "seed": index,
                    "response": text,
                    "source": query.source,
                    "model_stage": settings["stage"],
                    "backend": variant.backend,
                    "temperature": variant.temperature,
                    "top_p": variant.top_p,
                    "max_new_tokens": variant.max_new_tokens,
                    "system_prompt": variant.system_prompt,
                    "template": variant.template,
                    "sampling_seed": sampling_seed,
                    "finish_reason": reason,
                    "batch_size": variant.batch_size,
                    "attn_implementation": variant.attn_implementation,
                    "variant_key": key,
                }
            )
    return out


def generate_responses(
    variants: Sequence[Variant],
    queries: pd.DataFrame,
    samples_per_query: int,
    seed: int = 0,
    out_dir: str | Path | None = None,
    device: str = "auto",
    queries_per_call: int = 16,
    disk_cache: bool = True,
    progress: bool = True,
    base_model: str = DEFAULT_MODEL,
) -> pd.DataFrame:
    """Draws ``samples_per_query`` responses per query from every variant.

    Args:
        variants: the variants, with distinct names.
        queries: a query set (:func:`build_queries` or any frame with ``query_id``, ``query``,
            ``query_type``; ``source`` is optional).
        samples_per_query: responses per query and variant (seeds 0..k-1 in the table).
        seed: the run seed; each variant samples with :func:`variant_seed` of it.
        out_dir: folder of the per-variant JSONL files that make reruns and interrupted runs
            resume; None keeps everything in memory (the engines' disk cache still applies).
        device: where local models run ("auto", "cpu", "cuda"...; int8 stages run on CPU).
        queries_per_call: queries per engine call (and per incremental write).
        disk_cache: use the generation cache of :mod:`workbench.inference.gencache`.
        progress: show a tqdm progress bar.
        base_model: whose stage registry the variants' stage names refer to.

    Returns:
        The response table: :data:`~workbench.consistency.responses.RESPONSE_FIELDS` plus the
        variant's settings, ``source``, ``finish_reason`` and ``variant_key``; variants in the
        given order, queries in ``queries`` order.
    """
    names = [variant.name for variant in variants]
    if len(set(names)) != len(names):
        raise ValueError(f"variant names must be distinct, got {names}")
    if samples_per_query < 1:
        raise ValueError(f"samples_per_query must be positive, got {samples_per_query}")
    queries = queries.assign(query_id=queries.query_id.astype(str))
    if "source" not in queries:
        queries = queries.assign(source="")
    if queries.query_id.duplicated().any():
        raise ValueError("query ids must be distinct")
    folder = Path(out_dir) if out_dir is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    engines = _Engines(device, disk_cache, queries_per_call, samples_per_query, base_model)
    bar = tqdm(total=len(variants) * len(queries), desc="responses", unit="query", disable=not progress)
    tables = []
    for variant in variants:
        key, sampling_seed = variant_key(variant, samples_per_query, seed, base_model), variant_seed(seed, variant.name)
        path = folder / f"{variant.name}.jsonl" if folder is not None else None
        stored = [r for r in _read_records(path) if r.get("variant_key") == key] if path is not None else []
        done = _complete_queries(stored, set(queries.query_id), samples_per_query)
        if path is not None:  # drop stale, torn and partial records before appending new ones
            # Records of queries outside this call's set are kept: a pilot on a subset must not erase the rest.
            others = [r for r in stored if r["query_id"] not in set(queries.query_id)]
            _write_records(path, others + [r for query in done.values() for r in query], "w")
        todo = queries[~queries.query_id.isin(done)]
        bar.set_description(f"responses: {variant.name}")
        bar.update(len(queries) - len(todo))
        if len(todo):
            with engines.open(variant) as (tokenizer, engine):
                config = variant.sampling_config(sampling_seed)
                for start in range(0, len(todo), queries_per_call):
                    rows = todo.iloc[start : start + queries_per_call]
                    prompts = [variant.prompt(text, tokenizer) for text in rows["query"]]
                    new = _records(variant, rows, engine.sample(prompts, samples_per_query, config), key, sampling_seed)
                    if path is not None:
                        _write_records(path, new, "a")
                    for record in new:
                        done.setdefault(record["query_id"], []).append(record)
                    bar.update(len(rows))
        tables.append(pd.DataFrame([r for query_id in queries.query_id for r in done[query_id]]))
    bar.close()
    table = pd.concat(tables, ignore_index=True)
    return validate_responses(table[list(RESPONSE_FIELDS) + [c for c in table.columns if c not in RESPONSE_FIELDS]])
