"""HTTP serving of one model stage: ``/generate``, ``/score``, ``/health`` and ``/metrics``.

Design choices:

* **Auth.** With an ``api_key``, every path needs it (``Authorization: Bearer <key>`` or
  ``X-API-Key: <key>``; missing: 401, wrong: 403) except ``/health``, ``/docs`` and
  ``/openapi.json``. ``/health`` stays open for load-balancer and container probes and reveals only
  the model fingerprint and queue depth. ``/metrics`` is protected by default, since Prometheus
  can send a bearer token (``authorization`` in a scrape config); ``public_metrics=True`` opens it.
  ``api_key=None`` turns auth off (for a notebook on loopback).
* **Errors.** Schema errors give 422 with ``detail`` (pydantic's list of ``loc``/``msg``) and a
  one-line ``message``; a body that is not JSON gives 400; requests over a configured size limit
  give 413 with ``detail`` in the same list form, naming the field; a full queue gives 503 with
  ``Retry-After``; a request waiting longer than ``request_timeout_s`` gives 504.
* **Queueing and micro-batching.** See :mod:`workbench.serving.batching`: one worker feeds the
  engine, which is not thread-safe, one batch of compatible requests at a time.
"""

from __future__ import annotations

import asyncio
import copy
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, suppress
from dataclasses import astuple, dataclass

import numpy as np
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from workbench.inference.engine import Engine, GridScore
from workbench.serving.batching import BatchQueue, QueueFull, serve_batches
from workbench.serving.schemas import (
    Completion,
    GenerateRequest,
    GenerateResponse,
    PromptInput,
    ScoreRequest,
    ScoreResponse,
    Usage,
)
from workbench.serving.telemetry import ServerMetrics

OPEN_PATHS = frozenset({"/health", "/docs", "/openapi.json"})
# Validation error types for a body that is missing, not a JSON object, or not sent as JSON.
_NOT_AN_OBJECT = frozenset({"missing", "model_attributes_type", "model_type", "dict_type"})


@dataclass
class ServerConfig:
    """Limits and batching settings of a server.

    Attributes:
        max_batch: most requests served by one engine call.
        batch_wait_ms: how long the oldest queued request waits for compatible ones. Clients
            whose answers came back together send their next requests a few ms apart; too
            short a wait serves the first alone and makes the rest wait for it (in a CPU load test
            at concurrency 16, 10 ms served 13 of 200 requests alone, 50 ms none).
        queue_size: most requests waiting; more are refused with 503 and ``Retry-After``.
        max_total_tokens: most prompt tokens + ``max_new_tokens`` per sequence (for ``/score``:
            prompt tokens + the longest candidate's tokens + 1).
        max_n: most samples per prompt.
        max_prompts: most prompts per request.
        max_candidates: most candidates per ``/score`` request.
        request_timeout_s: a request not answered within this time gets 504.
        retry_after_s: the ``Retry-After`` hint sent with 503.
        public_metrics: serve ``/metrics`` without the API key.
    """

    max_batch: int = 8
    batch_wait_ms: float = 50.0
    queue_size: int = 64
    max_total_tokens: int = 2048
    max_n: int = 16
    max_prompts: int = 32
    max_candidates: int = 64
    request_timeout_s: float = 300.0
    retry_after_s: int = 1
    public_metrics: bool = False


def _limit_error(location: Sequence[str | int], message: str) -> HTTPException:
    """413 in the same shape as a validation error, so clients parse one error format."""
    return HTTPException(413, detail=[{"loc": ["body", *location], "msg": message, "type": "limit_exceeded"}])


class _Service:
    """The state behind the routes: engine, limits, queue, worker and metrics."""

    def __init__(self, engine: Engine, config: ServerConfig):
        self.config = config
        # Request-side token counting uses its own copy: a fast tokenizer used from two threads
        # at once (here and in the engine's thread) can fail with "Already borrowed".
        self.tokenizer = copy.deepcopy(engine.tokenizer)
        self.queue: BatchQueue | None = None
        self.metrics = ServerMetrics(queue_depth=lambda: len(self.queue) if self.queue else 0)
        self._executor: ThreadPoolExecutor | None = None
        self._worker: asyncio.Task | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.queue = BatchQueue(self.config.queue_size, self.config.max_batch, self.config.batch_wait_ms / 1000)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._worker = asyncio.create_task(serve_batches(self.queue, self._executor, self._on_batch))

    async def stop(self) -> None:
        self._worker.cancel()
        with suppress(asyncio.CancelledError):
            await self._worker
        self.queue.fail_all(HTTPException(503, detail="the server is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _on_batch(self, batch) -> None:
        self.metrics.observe_batch(len(batch))

    # ------------------------------------------------------------------ request handling
    def prompts_of(self, body: PromptInput) -> list[str]:
        """The request's prompts; a chat is formatted with the model's chat template."""
        if body.prompts is not None:
            return body.prompts
        if not self.tokenizer.chat_template:
            raise HTTPException(422, detail="this model has no chat template: send formatted 'prompts' instead of 'messages'")
        chat = [message.model_dump() for message in body.messages]
        return [self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)]

    def count_prompt_tokens(self, body: PromptInput, prompts: list[str], extra_tokens: int, extra_field: str) -> list[int]:
        """Prompt token counts; 413 naming the field when a sequence would exceed the token limit."""
        limit = self.config.max_total_tokens
        input_field = "prompts" if body.prompts is not None else "messages"
        if len(prompts) > self.config.max_prompts:
            raise _limit_error([input_field], f"{len(prompts)} prompts exceed the limit of {self.config.max_prompts} per request")
        counts = [len(ids) for ids in self.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
        for index, count in enumerate(counts):
            if count + extra_tokens > limit:
                location = [input_field, index] if body.prompts is not None else [input_field]
                raise _limit_error(
                    location,
                    f"{input_field}[{index}] has {count} tokens, and {count} + {extra_field} ({extra_tokens}) "
                    f"exceeds max_total_tokens={limit}",
                )
        return counts

    async def run(self, endpoint: str, key: tuple, prompts: list[str], compute: Callable[[list[str]], Sequence]):
        """Queue the prompts and wait for their results and the batch size they were served in."""
        try:
            future = self.queue.submit(key, prompts, compute)
        except QueueFull as full:
            self.metrics.errors.labels(endpoint, "queue_full").inc()
            raise HTTPException(
                503,
                detail=f"server busy: {full}; retry after {self.config.retry_after_s}s",
                headers={"Retry-After": str(self.config.retry_after_s)},
            ) from full
        try:
            return await asyncio.wait_for(future, self.config.request_timeout_s)
        except TimeoutError as timeout:
            self.metrics.errors.labels(endpoint, "timeout").inc()
            raise HTTPException(504, detail=f"no result within request_timeout_s={self.config.request_timeout_s}") from timeout
        except HTTPException:
            raise
        except Exception as error:
            self.metrics.errors.labels(endpoint, "engine").inc()
            raise HTTPException(500, detail=f"the engine failed: {type(error).__name__}: {error}") from error


def create_app(engine: Engine, api_key: str | None, config: ServerConfig | None = None) -> FastAPI:
    """A FastAPI app serving one model stage.

    Args:
        engine: the local :class:`workbench.inference.engine.Engine` (its ``lm`` gives the fingerprint).
            The app owns it: nothing else may call it while the app runs.
        api_key: the key clients must send; None disables auth.
        config: limits and batching settings.

    Returns:
        The app; run it with uvicorn (``python -m workbench.serving``) or
        :class:`workbench.serving.background.BackgroundServer`.
    """
    config = config or ServerConfig()
    service = _Service(engine, config)
    metrics = service.metrics
    model_id = engine.lm.fingerprint_id
    open_paths = OPEN_PATHS | {"/metrics"} if config.public_metrics else OPEN_PATHS

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="workbench model server", version="1", lifespan=lifespan, redoc_url=None)

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        if api_key is None or request.url.path in open_paths:
            return await call_next(request)
        supplied = request.headers.get("x-api-key")
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if supplied is None and scheme.lower() == "bearer":
            supplied = token.strip()
        if not supplied:
            return JSONResponse(
                {"detail": "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not secrets.compare_digest(supplied.encode(), api_key.encode()):  # constant time
            return JSONResponse({"detail": "invalid API key"}, status_code=403)
        return await call_next(request)

    # Registered last, so it wraps authentication and counts 401/403 answers too.
    @app.middleware("http")
    async def measure(request: Request, call_next):
        endpoint = metrics.endpoint_label(request.url.path)
        start = time.perf_counter()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            return response
        finally:
            metrics.requests.labels(endpoint, str(status)).inc()
            metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        problems = error.errors()
        for problem in problems:
            if problem["type"] == "json_invalid":
                reason = problem.get("ctx", {}).get("error", "invalid JSON")
                return JSONResponse({"detail": f"the request body is not valid JSON: {reason}"}, status_code=400)
            if tuple(problem["loc"]) == ("body",) and problem["type"] in _NOT_AN_OBJECT:
                return JSONResponse(
                    {"detail": "the request body must be a JSON object sent with 'Content-Type: application/json'"},
                    status_code=400,
                )
        # The input values are left out: they can be whole prompts.
        detail = [{"loc": list(p["loc"]), "msg": p["msg"], "type": p["type"]} for p in problems]
        message = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in detail)
        return JSONResponse({"detail": detail, "message": message}, status_code=422)

    @app.post("/generate", response_model=GenerateResponse, response_model_exclude_none=True)
    async def generate(body: GenerateRequest) -> GenerateResponse:
        """Sample ``n`` answers per prompt (``temperature=0``: greedy)."""
        if body.n > config.max_n:
            raise _limit_error(["n"], f"n={body.n} exceeds the limit of {config.max_n} samples per prompt")
        prompts = service.prompts_of(body)
        prompt_tokens = service.count_prompt_tokens(body, prompts, body.max_new_tokens, "max_new_tokens")
        sampling = body.sampling_config()
        sample_sets, batch_size = await service.run(
            "/generate",
            ("generate", body.n, astuple(sampling)),
            prompts,
            lambda batch_prompts: engine.sample(batch_prompts, body.n, sampling),
        )
        results = [
            Completion(
                texts=s.texts,
                finish_reasons=s.finish_reasons,
                completion_tokens=[len(ids) for ids in s.token_ids],
                token_ids=s.token_ids if body.logprobs else None,
                token_logprobs=s.token_logprobs if body.logprobs else None,
            )
            for s in sample_sets
        ]
        generated = sum(sum(r.completion_tokens) for r in results)
        metrics.prompt_tokens.inc(sum(prompt_tokens))
        metrics.generated_tokens.inc(generated)
        return GenerateResponse(
            id=body.request_id or uuid.uuid4().hex,
            model=model_id,
            batch_size=batch_size,
            usage=Usage(prompt_tokens=sum(prompt_tokens), completion_tokens=generated),
            results=results,
        )

    @app.post("/score", response_model=ScoreResponse)
    async def score(body: ScoreRequest) -> ScoreResponse:
        """Exact probability of each candidate as a complete answer, and the mass outside them."""
        if len(body.candidates) > config.max_candidates:
            raise _limit_error(["candidates"], f"{len(body.candidates)} candidates exceed the limit of {config.max_candidates}")
        prompts = service.prompts_of(body)
        longest = max(len(ids) for ids in service.tokenizer(body.candidates, add_special_tokens=False)["input_ids"])
        prompt_tokens = service.count_prompt_tokens(body, prompts, longest + 1, "candidate tokens + 1")
        candidates = list(body.candidates)
        rows, batch_size = await service.run(
            "/score",
            ("score", tuple(candidates), body.temperature),
            prompts,
            lambda batch_prompts: engine.score(batch_prompts, candidates, body.temperature).logprobs,
        )
        metrics.prompt_tokens.inc(sum(prompt_tokens))
        grid = _grid(candidates, rows)
        return ScoreResponse(
            id=body.request_id or uuid.uuid4().hex,
            model=model_id,
            batch_size=batch_size,
            usage=Usage(prompt_tokens=sum(prompt_tokens)),
            candidates=candidates,
            logprobs=grid.logprobs.tolist(),
            probs=grid.probs.tolist(),
            outside_mass=grid.outside_mass.tolist(),
        )

    @app.get("/health")
    async def health() -> dict:
        """Liveness, the model stage's fingerprint, queue depth and the request limits."""
        lm = engine.lm
        return {
            "status": "ok",
            "model": model_id,
            "fingerprint": lm.fingerprint,
            "device": str(lm.device),
            "queue_depth": len(service.queue) if service.queue else 0,
            "queue_capacity": config.queue_size,
            "limits": {
                "max_prompts": config.max_prompts,
                "max_n": config.max_n,
                "max_candidates": config.max_candidates,
                "max_total_tokens": config.max_total_tokens,
            },
        }

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Prometheus text format."""
        return Response(metrics.render(), media_type=metrics.content_type)

    return app


def _grid(candidates: list[str], rows) -> GridScore:
    """A GridScore from the per-prompt log-probability rows of one request."""
    return GridScore(candidates, np.asarray(rows, dtype=np.float64).reshape(len(rows), len(candidates)))
