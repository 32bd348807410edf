"""Bounded request queue with micro-batching, and the worker that feeds the engine.

Requests wait in a bounded FIFO. The worker takes the oldest request together with every queued
request that has the same *batch key* (same endpoint and sampling settings), waiting at most
``wait_s`` after the oldest one arrived for more to come, and serves them with engine calls.
Under load no extra wait happens: requests that queued while the engine was busy are past their
wait already and are taken at once. Requests with other settings keep their place in the queue.

Abandoned work is dropped. A request whose client disconnected or whose deadline passed has its
future cancelled (by the server); the queue forgets it at once (so the queue depth shows it), and
the worker computes a batch in chunks of ``chunk_prompts`` prompts, leaving out before each chunk
the prompts of requests abandoned meanwhile: a batch whose clients all left stops early. Within
an engine call, each prompt comes with its request's ``stop`` event (set when the request is
abandoned): an *interruptible* call (sampling) stops that prompt's rows within one decoding step
and goes on with the others. Each request is answered as soon as its last prompt is computed.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field


class QueueFull(Exception):
    """The queue holds ``capacity`` waiting requests already."""


@dataclass(eq=False)
class Job:
    """One request waiting for the engine.

    Attributes:
        key: requests with equal keys can share an engine call.
        prompts: the request's prompts.
        run: ``run(prompts, cancelled)`` computes one result per prompt; ``cancelled[i]()`` turns
            True once prompt i's request is abandoned (any compatible job's ``run`` serves the
            whole batch).
        future: resolves to ``(results for this job's prompts, number of jobs in the batch)``;
            cancelled when the client gives up.
        enqueued_at: event-loop time of arrival.
        interruptible: ``run`` stops a prompt once it is cancelled (else the call completes).
        results: results computed so far, by prompt index.
        stop: set (from the event loop) when the future is cancelled; read by the engine's thread.
    """

    key: Hashable
    prompts: list[str]
    run: Callable[[list[str], list[Callable[[], bool]]], Sequence]
    future: asyncio.Future
    enqueued_at: float
    interruptible: bool = False
    results: dict[int, object] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def abandoned(self) -> bool:
        """The client gave up (disconnect, timeout) or the job was answered already."""
        return self.future.done()

    def resolve(self, value) -> None:
        if not self.future.done():
            self.future.set_result(value)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


@dataclass
class Abandoned:
    """Counts of abandoned requests, by when they were dropped.

    Attributes:
        queued: dropped while waiting: none of their work was computed.
        running: dropped during their batch: their remaining chunks were skipped and, for an
            interruptible call (sampling), their rows in the call in progress stopped within one
            decoding step.
        late: left while their last chunk was being computed by a call that cannot be
            interrupted (scoring: one forward pass): computed for nobody.
        prompts_skipped: prompts not computed because their request was abandoned.
    """

    queued: int = 0
    running: int = 0
    late: int = 0
    prompts_skipped: int = 0


class BatchQueue:
    """A bounded FIFO of :class:`Job` that hands out batches of compatible jobs.

    Create it inside the event loop that will use it.

    Args:
        capacity: most jobs waiting (the one being computed does not count).
        max_batch: most jobs per batch.
        wait_s: how long after the oldest job arrived to wait for compatible ones.
    """

    def __init__(self, capacity: int, max_batch: int, wait_s: float):
        self.capacity = capacity
        self.max_batch = max_batch
        self.wait_s = wait_s
        self.abandoned = Abandoned()
        self._jobs: deque[Job] = deque()
        self._arrived = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def __len__(self) -> int:
        return len(self._jobs)

    def submit(self, key: Hashable, prompts: list[str], run: Callable, interruptible: bool = False) -> asyncio.Future:
        """Queue a request; raises :class:`QueueFull` when ``capacity`` jobs are waiting.

        Cancelling the returned future (the client left) removes the job from the queue at once,
        or stops its prompts in the engine call in progress (see :class:`Job`).
        """
        if len(self._jobs) >= self.capacity:
            raise QueueFull(f"{len(self._jobs)} requests are waiting already")
        job = Job(key, prompts, run, self._loop.create_future(), self._loop.time(), interruptible)
        job.future.add_done_callback(lambda _, job=job: self._forget(job))
        self._jobs.append(job)
        self._arrived.set()
        return job.future

    async def next_batch(self) -> list[Job]:
        """The oldest job and up to ``max_batch - 1`` compatible ones, removed from the queue."""
        while True:
            if not self._jobs:
                await self._wait_for_arrival(None)
                continue
            head = self._jobs[0]
            while len(self._compatible(head)) < self.max_batch and not head.abandoned:
                remaining = head.enqueued_at + self.wait_s - self._loop.time()
                if remaining <= 0 or not await self._wait_for_arrival(remaining):
                    break
            if not self._jobs:
                continue
            batch = self._compatible(self._jobs[0])[: self.max_batch]
            for job in batch:
                self._jobs.remove(job)
            return batch

    def fail_all(self, error: BaseException) -> None:
        """Fail every waiting job (at shutdown)."""
        while self._jobs:
            self._jobs.popleft().fail(error)

    def _compatible(self, head: Job) -> list[Job]:
        return [job for job in self._jobs if job.key == head.key]

    def _forget(self, job: Job) -> None:
        """Done-callback: a cancelled job's engine work stops; one still queued leaves the queue."""
        if job.future.cancelled():
            job.stop.set()
        if job in self._jobs:
            self._jobs.remove(job)
            if job.future.cancelled():
                self.abandoned.queued += 1
                self.abandoned.prompts_skipped += len(job.prompts)
            self._arrived.set()  # wake next_batch: its head may be gone

    async def _wait_for_arrival(self, timeout: float | None) -> bool:
        """Wait until a job is submitted or leaves; False on timeout."""
        self._arrived.clear()
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout)
        except TimeoutError:
            return False
        return True


async def serve_batches(
    queue: BatchQueue,
    executor: Executor,
    on_batch: Callable[[list[Job]], None] = lambda batch: None,
    chunk_prompts: int = 8,
) -> None:
    """Forever: take a batch and compute it in ``executor``, ``chunk_prompts`` prompts per call.

    The engine runs in the executor so the event loop keeps accepting (and refusing) requests
    meanwhile; a single-thread executor keeps engine calls strictly one at a time. Between chunks
    the prompts of abandoned jobs are dropped, and each job is answered once all its prompts are in.
    """
    loop = asyncio.get_running_loop()
    while True:
        batch = await queue.next_batch()
        on_batch(batch)
        pending = [(job, index) for job in batch for index in range(len(job.prompts))]
        started: set[int] = set()  # ids of jobs with at least one computed chunk
        while pending:
            live = [(job, index) for job, index in pending if not job.abandoned]
            _count_abandoned(queue.abandoned, pending, live, started)
            if not live:
                break
            chunk, pending = live[:chunk_prompts], live[chunk_prompts:]
            prompts = [job.prompts[index] for job, index in chunk]
            cancelled = [job.stop.is_set for job, _ in chunk]
            try:
                results = await loop.run_in_executor(executor, chunk[0][0].run, prompts, cancelled)
                if len(results) != len(prompts):
                    raise RuntimeError(f"the engine returned {len(results)} results for {len(prompts)} prompts")
            except Exception as error:  # every request of the batch hears why; the worker goes on
                for job in batch:
                    job.fail(error)
                break
            for (job, index), result in zip(chunk, results):
                job.results[index] = result
                started.add(id(job))
                if len(job.results) == len(job.prompts):
                    if job.abandoned and job.interruptible:  # its rows stopped in the call
                        queue.abandoned.running += 1
                    elif job.abandoned:
                        queue.abandoned.late += 1
                    job.resolve(([job.results[i] for i in range(len(job.prompts))], len(batch)))


def _count_abandoned(counts: Abandoned, pending, live, started: set[int]) -> None:
    """Count the jobs that left since the last chunk, and their prompts now skipped."""
    gone = {id(job) for job, _ in pending} - {id(job) for job, _ in live}
    counts.prompts_skipped += len(pending) - len(live)
    for job_id in gone:
        if job_id in started:
            counts.running += 1
        else:
            counts.queued += 1
