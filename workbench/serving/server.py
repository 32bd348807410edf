"""HTTP serving of one model stage: ``/generate``, ``/score``, ``/health``, ``/metrics``, and the
OpenAI-compatible ``/v1/completions`` and ``/v1/models`` (:mod:`workbench.serving.openai_api`).

Design choices:

* **Auth.** With an ``api_key``, every path needs it (``Authorization: Bearer <key>`` or
  ``X-API-Key: <key>``; missing: 401, wrong: 403) except ``/health``, ``/docs`` and
  ``/openapi.json``. ``/health`` stays open for load-balancer and container probes and reveals only
  the model fingerprint (a local folder shown by its name, never its path) and queue depth.
  ``/metrics`` is protected by default, since Prometheus can send a bearer token
  (``authorization`` in a scrape config); ``public_metrics=True`` opens it. ``api_key=None`` turns
  auth off (for a notebook on loopback).
* **Errors.** Schema errors give 422 with ``detail`` (pydantic's list of ``loc``/``msg``) and a
  one-line ``message``; a body that is not JSON gives 400; requests over a configured size limit
  give 413 with ``detail`` in the same list form, naming the field; a full queue gives 503 with
  ``Retry-After``; a request waiting longer than ``request_timeout_s`` gives 504. Under ``/v1/``
  errors take OpenAI's form, ``{"error": {"message", "type", "param", "code"}}``.
* **Nothing blocks the event loop.** A body over ``max_body_bytes`` is refused from its declared
  length before it is parsed (:mod:`workbench.serving.gate`; it is read and discarded up to
  ``max_discard_bytes`` so that clients that upload before they read hear the 413); a prompt with more characters than
  ``max_total_tokens`` tokens can hold is refused before it is tokenised; chat formatting and
  tokenisation run on a worker thread, the engine on another. So ``/health`` answers at once
  while a large request is refused or served.
* **Queueing, micro-batching, abandoned work.** See :mod:`workbench.serving.batching`: one worker
  feeds the engine, which is not thread-safe, one batch of compatible requests at a time. A
  request whose client disconnects (or whose deadline passes) is dropped before it is computed;
  a running batch skips its remaining chunks for it, and a sampling call in progress stops its
  rows within one decoding step (``workbench_abandoned_tokens`` counts what they had decoded).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import asynccontextmanager
from dataclasses import astuple

import numpy as np
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from workbench.inference.engine import HFEngine
from workbench.inference.types import GridScore
from workbench.serving.gate import Gate, error_body
from workbench.serving.openai_api import add_openai_routes
from workbench.serving.schemas import (
    Completion,
    GenerateRequest,
    GenerateResponse,
    PromptInput,
    ScoreRequest,
    ScoreResponse,
    Usage,
)
from workbench.serving.service import ServerConfig, Service, limit_error

OPEN_PATHS = frozenset({"/health", "/docs", "/openapi.json"})
# Validation error types for a body that is missing, not a JSON object, or not sent as JSON.
_NOT_AN_OBJECT = frozenset({"missing", "model_attributes_type", "model_type", "dict_type"})


def create_app(engine: HFEngine, api_key: str | None, config: ServerConfig | None = None) -> Gate:
    """A FastAPI app serving one model stage.

    Args:
        engine: the local :class:`workbench.inference.engine.HFEngine` (its ``lm`` gives the fingerprint).
            The app owns it: nothing else may call it while the app runs.
        api_key: the key clients must send; None disables auth.
        config: limits and batching settings.

    Returns:
        The app (wrapped in :class:`workbench.serving.gate.Gate`); run it with uvicorn
        (``python -m workbench.serving``) or :class:`workbench.serving.background.BackgroundServer`.
    """
    config = config or ServerConfig()
    service = Service(engine, config)
    metrics = service.metrics
    open_paths = OPEN_PATHS | {"/metrics"} if config.public_metrics else OPEN_PATHS

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="workbench model server", version="1", lifespan=lifespan, redoc_url=None)
    app.state.service = service

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException):
        headers = getattr(error, "headers", None)
        if request.url.path.startswith("/v1/"):
            detail = error.detail
            if isinstance(detail, list):  # a limit problem: name the field
                return JSONResponse(
                    error_body(request.url.path, error.status_code, detail[0]["msg"], detail[0]["loc"]),
                    error.status_code,
                    headers,
                )
            return JSONResponse(
                error_body(request.url.path, error.status_code, str(detail)), error.status_code, headers
            )
        return JSONResponse({"detail": error.detail}, error.status_code, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, error: RequestValidationError):
        problems = error.errors()
        path = request.url.path
        for problem in problems:
            if problem["type"] == "json_invalid":
                reason = problem.get("ctx", {}).get("error", "invalid JSON")
                return JSONResponse(
                    error_body(path, 400, f"the request body is not valid JSON: {reason}"), status_code=400
                )
            if tuple(problem["loc"]) == ("body",) and problem["type"] in _NOT_AN_OBJECT:
                message = "the request body must be a JSON object sent with 'Content-Type: application/json'"
                return JSONResponse(error_body(path, 400, message), status_code=400)
        # The input values are left out: they can be whole prompts.
        detail = [{"loc": list(p["loc"]), "msg": p["msg"], "type": p["type"]} for p in problems]
        message = "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in detail)
        if path.startswith("/v1/"):
            return JSONResponse(error_body(path, 422, message, detail[0]["loc"]), status_code=422)
        return JSONResponse({"detail": detail, "message": message}, status_code=422)

    @app.post("/generate", response_model=GenerateResponse, response_model_exclude_none=True)
    async def generate(body: GenerateRequest, request: Request) -> GenerateResponse:
        """Sample ``n`` answers per prompt (``temperature=0``: greedy)."""
        if body.n > config.max_n:
            raise limit_error(["n"], f"n={body.n} exceeds the limit of {config.max_n} samples per prompt")
        prompts = await service.prompts_of(body)
        prompt_tokens = await service.count_prompt_tokens(
            prompts, _input_location(body), body.max_new_tokens, "max_new_tokens"
        )
        sampling = body.sampling_config()
        sample_sets, batch_size = await service.run(
            request,
            "/generate",
            ("generate", body.n, astuple(sampling)),
            prompts,
            service.sampler(body.n, sampling),
            interruptible=True,
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
            model=service.model_id,
            batch_size=batch_size,
            usage=Usage(prompt_tokens=sum(prompt_tokens), completion_tokens=generated),
            results=results,
        )

    @app.post("/score", response_model=ScoreResponse)
    async def score(body: ScoreRequest, request: Request) -> ScoreResponse:
        """Exact probability of each candidate as a complete answer, and the mass outside them."""
        if len(body.candidates) > config.max_candidates:
            raise limit_error(
                ["candidates"], f"{len(body.candidates)} candidates exceed the limit of {config.max_candidates}"
            )
        prompts = await service.prompts_of(body)
        candidates = list(body.candidates)
        longest = max(
            await service.count_prompt_tokens(candidates, lambda i: ["candidates", i], 1, "1 end-of-turn token")
        )
        prompt_tokens = await service.count_prompt_tokens(
            prompts, _input_location(body), longest + 1, "candidate tokens + 1"
        )
        rows, batch_size = await service.run(
            request,
            "/score",
            ("score", tuple(candidates), body.temperature),
            prompts,
            lambda batch_prompts, cancelled: engine.score(batch_prompts, candidates, body.temperature).logprobs,
        )
        metrics.prompt_tokens.inc(sum(prompt_tokens))
        grid = _grid(candidates, rows)
        if not (np.isfinite(grid.probs).all() and np.isfinite(grid.outside_mass).all()):
            metrics.errors.labels("/score", "engine").inc()
            raise HTTPException(500, detail="the engine returned non-finite probabilities")
        return ScoreResponse(
            id=body.request_id or uuid.uuid4().hex,
            model=service.model_id,
            batch_size=batch_size,
            usage=Usage(prompt_tokens=sum(prompt_tokens)),
            candidates=candidates,
            logprobs=grid.logprobs.tolist(),
            probs=grid.probs.tolist(),
            outside_mass=grid.outside_mass.tolist(),
        )

    @app.get("/health")
    async def health() -> dict:
        """Liveness, the model stage's fingerprint (no filesystem paths), queue depth and the limits."""
        return {
            "status": "ok",
            "model": service.model_id,
            "fingerprint": service.fingerprint,
            "device": engine.lm.device.type,
            "queue_depth": len(service.queue) if service.queue is not None else 0,
            "queue_capacity": config.queue_size,
            "limits": {
                "max_body_bytes": config.max_body_bytes,
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

    add_openai_routes(app, service)
    return Gate(app, api_key, open_paths, config.max_body_bytes, metrics, config.max_discard_bytes)


def _input_location(body: PromptInput) -> Callable[[int], list]:
    """Where prompt ``index`` of a request came from, for error messages."""
    if body.prompts is not None:
        return lambda index: ["prompts", index]
    return lambda index: ["messages"]


def _grid(candidates: list[str], rows) -> GridScore:
    """A GridScore from the per-prompt log-probability rows of one request."""
    return GridScore(candidates, np.asarray(rows, dtype=np.float64).reshape(len(rows), len(candidates)))
