"""The state behind the server's routes: its limits (:class:`ServerConfig`), the engine, the queue, the
worker threads and the metrics (:class:`Service`), and the 413 error every route raises for a request
over a limit.

Both route modules, :mod:`workbench.serving.server` (``/generate``, ``/score``, ...) and
:mod:`workbench.serving.openai_api` (``/v1/...``), build on this module; see the first for the
design (limits, queueing, abandoned work).
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException, Request

from workbench.inference.engine import HFEngine
from workbench.inference.types import SampleSet, SamplingConfig
from workbench.serving.batching import BatchQueue, QueueFull, serve_batches
from workbench.serving.gate import limit_problem
from workbench.serving.schemas import PromptInput
from workbench.serving.telemetry import ServerMetrics

CLIENT_GONE = 499  # nginx's "client closed request": logged and counted, never seen by the client
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
        max_body_bytes: largest request body; a larger one is refused with 413 before it is parsed.
        max_discard_bytes: an oversized body up to this size is read and discarded before the 413,
            so that clients which upload before they read (urllib) get it; a larger one is refused
            at once and its connection closed.
        max_total_tokens: most prompt tokens + ``max_new_tokens`` per sequence (for ``/score``:
            prompt tokens + the longest candidate's tokens + 1).
        max_n: most samples per prompt.
        max_prompts: most prompts per request.
        max_candidates: most candidates per ``/score`` request.
        chunk_prompts: prompts per engine call within a batch; between calls, prompts of clients
            that left are dropped.
        request_timeout_s: a request not answered within this time gets 504 (and is dropped).
        retry_after_s: the ``Retry-After`` hint sent with 503.
        public_metrics: serve ``/metrics`` without the API key.
        served_model_name: the model id of the OpenAI-compatible API; default: the model's name.
    """

    max_batch: int = 8
    batch_wait_ms: float = 50.0
    queue_size: int = 64
    max_body_bytes: int = 4 * 2**20
    max_discard_bytes: int = 64 * 2**20
    max_total_tokens: int = 2048
    max_n: int = 16
    max_prompts: int = 32
    max_candidates: int = 64
    chunk_prompts: int = 8
    request_timeout_s: float = 300.0
    retry_after_s: int = 1
    public_metrics: bool = False
    served_model_name: str | None = None


def limit_error(location: Sequence[str | int], message: str) -> HTTPException:
    """413 in the same shape as a validation error, so clients parse one error format."""
    return HTTPException(413, detail=[limit_problem(["body", *location], message)])


def public_fingerprint(fingerprint: dict) -> dict:
    """The fingerprint with a local folder shown by its name only (no filesystem path leaves the server).

    >>> public_fingerprint({"name": "/home/me/runs/stage-3", "weights_sha256": "ab"})
    {'name': 'stage-3', 'weights_sha256': 'ab'}
    >>> public_fingerprint({"name": "HuggingFaceTB/SmolLM2-135M-Instruct"})["name"]  # a hub id stays
    'HuggingFaceTB/SmolLM2-135M-Instruct'
    """
    name = str(fingerprint.get("name", ""))
    is_path = name.startswith(("/", ".", "~")) or "\\" in name or (name and Path(name).exists())
    return {**fingerprint, "name": Path(name).name if is_path else name}


class Service:
    """The state behind the routes: engine, limits, queue, worker threads and metrics."""

    def __init__(self, engine: HFEngine, config: ServerConfig):
        self.engine = engine
        self.config = config
        # Request-side tokenisation uses its own copy, on its own thread: a fast tokenizer used
        # from two threads at once (here and in the engine's thread) can fail with "Already borrowed".
        self.tokenizer = copy.deepcopy(engine.tokenizer)
        # No token spans more characters than the longest vocabulary entry, so a text longer than
        # max_total_tokens * that has too many tokens, and is refused without tokenising it.
        self.max_token_chars = max(len(token) for token in self.tokenizer.get_vocab())
        self.fingerprint = public_fingerprint(engine.lm.fingerprint)
        self.model_id = engine.lm.fingerprint_id
        self.queue: BatchQueue | None = None
        self.metrics = ServerMetrics(
            queue_depth=lambda: len(self.queue) if self.queue is not None else 0,
            abandoned=lambda: self.queue.abandoned if self.queue is not None else None,
        )
        self._engine_thread: ThreadPoolExecutor | None = None
        self._cpu_thread: ThreadPoolExecutor | None = None
        self._worker: asyncio.Task | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.queue = BatchQueue(self.config.queue_size, self.config.max_batch, self.config.batch_wait_ms / 1000)
        self._engine_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="engine")
        self._cpu_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")
        self._worker = asyncio.create_task(
            serve_batches(
                self.queue,
                self._engine_thread,
                lambda batch: self.metrics.observe_batch(len(batch)),
                self.config.chunk_prompts,
            )
        )

    async def stop(self) -> None:
        self._worker.cancel()
        with suppress(asyncio.CancelledError):
            await self._worker
        self.queue.fail_all(HTTPException(503, detail="the server is shutting down"))
        self._engine_thread.shutdown(wait=False, cancel_futures=True)
        self._cpu_thread.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ request preparation
    async def off_loop(self, function: Callable, *args):
        """Run CPU work (chat formatting, tokenisation) on the tokenizer thread, not the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self._cpu_thread, function, *args)

    def check_characters(
        self, texts: Sequence[str], location: Callable[[int], list], extra_tokens: int, extra_field: str
    ) -> None:
        """413 for a text too long to fit the token limit whatever its tokenisation (no tokenising)."""
        limit = self.config.max_total_tokens - extra_tokens
        if limit <= 0:
            return  # extra_tokens alone are over the limit: the token count names that
        for index, text in enumerate(texts):
            if len(text) > limit * self.max_token_chars:
                besides = f" with {extra_field} ({extra_tokens})" if extra_tokens else ""
                raise limit_error(
                    location(index),
                    f"{len(text)} characters cannot fit in max_total_tokens={self.config.max_total_tokens}{besides}: "
                    f"a token spans at most {self.max_token_chars} characters",
                )

    async def prompts_of(self, body: PromptInput) -> list[str]:
        """The request's prompts; a chat is formatted with the model's chat template (off the loop)."""
        if body.prompts is not None:
            if len(body.prompts) > self.config.max_prompts:
                raise limit_error(
                    ["prompts"],
                    f"{len(body.prompts)} prompts exceed the limit of {self.config.max_prompts} per request",
                )
            return body.prompts
        if not self.tokenizer.chat_template:
            raise HTTPException(
                422, detail="this model has no chat template: send formatted 'prompts' instead of 'messages'"
            )
        self.check_characters(["".join(m.content for m in body.messages)], lambda i: ["messages"], 0, "")
        chat = [message.model_dump() for message in body.messages]
        return [
            await self.off_loop(
                lambda: self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
            )
        ]

    async def count_prompt_tokens(
        self, prompts: list[str], location: Callable[[int], list], extra_tokens: int, extra_field: str
    ) -> list[int]:
        """Prompt token counts; 413 naming the field when a sequence would exceed the token limit."""
        self.check_characters(prompts, location, extra_tokens, extra_field)
        counts = await self.off_loop(
            lambda: [len(ids) for ids in self.tokenizer(prompts, add_special_tokens=False)["input_ids"]]
        )
        limit = self.config.max_total_tokens
        for index, count in enumerate(counts):
            if count + extra_tokens > limit:
                where = location(index)
                name = f"{where[0]}[{index}]" if len(where) > 1 or where[0] == "messages" else where[0]
                raise limit_error(
                    where,
                    f"{name} has {count} tokens, and {count} + {extra_field} ({extra_tokens}) "
                    f"exceeds max_total_tokens={limit}",
                )
        return counts

    # ------------------------------------------------------------------ running
    def sampler(
        self, n: int, sampling: SamplingConfig, token_ids: bool = False
    ) -> Callable[[list, list], list[SampleSet]]:
        """The engine call of a sampling job: prompts whose client left stop within one decoding step.

        Args:
            n: samples per prompt.
            sampling: decoding settings.
            token_ids: the prompts are lists of token ids (:meth:`HFEngine.sample_token_ids`), not texts.
        """
        draw = self.engine.sample_token_ids if token_ids else self.engine.sample

        def sample(prompts: list, cancelled: list[Callable[[], bool]]) -> list[SampleSet]:
            sets = draw(prompts, n, sampling, cancelled=cancelled)
            stopped = [s for s in sets if "cancelled" in s.finish_reasons]
            self.metrics.abandoned_tokens.inc(sum(len(ids) for s in stopped for ids in s.token_ids))
            return sets

        return sample

    async def run(
        self,
        request: Request,
        endpoint: str,
        key: tuple,
        prompts: list[str],
        compute: Callable,
        interruptible: bool = False,
    ):
        """Queue the prompts and wait for their results and the batch size they were served in.

        Args:
            compute: ``compute(prompts, cancelled)``, one result per prompt (see
                :class:`workbench.serving.batching.Job`).
            interruptible: ``compute`` stops a prompt once its ``cancelled()`` is True.

        The job is dropped (its future cancelled) when the client disconnects or the deadline
        passes; nothing more is computed for it.
        """
        try:
            future = self.queue.submit(key, prompts, compute, interruptible)
        except QueueFull as full:
            self.metrics.errors.labels(endpoint, "queue_full").inc()
            raise HTTPException(
                503,
                detail=f"server busy: {full}; retry after {self.config.retry_after_s}s",
                headers={"Retry-After": str(self.config.retry_after_s)},
            ) from full
        watcher = asyncio.create_task(_cancel_on_disconnect(request, future))
        try:
            return await asyncio.wait_for(future, self.config.request_timeout_s)
        except TimeoutError as timeout:
            self.metrics.errors.labels(endpoint, "timeout").inc()
            raise HTTPException(
                504, detail=f"no result within request_timeout_s={self.config.request_timeout_s}"
            ) from timeout
        except asyncio.CancelledError:
            if not watcher.done() or not watcher.result():
                raise  # the server itself is cancelling this handler
            self.metrics.errors.labels(endpoint, "client_gone").inc()
            raise HTTPException(CLIENT_GONE, detail="the client disconnected; its work was dropped") from None
        except HTTPException:
            raise
        except Exception as error:
            self.metrics.errors.labels(endpoint, "engine").inc()
            raise HTTPException(500, detail=f"the engine failed: {type(error).__name__}: {error}") from error
        finally:
            watcher.cancel()


async def _cancel_on_disconnect(request: Request, future: asyncio.Future) -> bool:
    """Cancel ``future`` when the client disconnects; True when it did.

    Once the body is read, ``receive`` returns only when the client disconnects (or the response
    is sent), so this waits without polling.
    """
    while not future.done():
        message = await request.receive()
        if message["type"] == "http.disconnect":
            if not future.done():
                future.cancel()
                return True
            return False
    return False
