"""Bounded request queue with micro-batching, and the worker that feeds the engine.

Requests wait in a bounded FIFO. The worker takes the oldest request together with every queued
request that has the same *batch key* (same endpoint and sampling settings), waiting at most
``wait_s`` after the oldest one arrived for more to come, and serves them with one engine call.
Under load no extra wait happens: requests that queued while the engine was busy are past their
wait already and are taken at once. Requests with other settings keep their place in the queue.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass


class QueueFull(Exception):
    """The queue holds ``capacity`` waiting requests already."""


@dataclass(eq=False)
class Job:
    """One request waiting for the engine.

    Attributes:
        key: requests with equal keys can share an engine call.
        prompts: the request's prompts.
        run: computes one result per prompt for a list of prompts (any compatible job's ``run``
            serves the whole batch).
        future: resolves to ``(results for this job's prompts, number of jobs in the batch)``.
        enqueued_at: event-loop time of arrival.
    """

    key: Hashable
    prompts: list[str]
    run: Callable[[list[str]], Sequence]
    future: asyncio.Future
    enqueued_at: float

    def resolve(self, value) -> None:
        if not self.future.done():  # the client may have given up (timeout, disconnect)
            self.future.set_result(value)

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


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
        self._jobs: deque[Job] = deque()
        self._arrived = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    def __len__(self) -> int:
        return len(self._jobs)

    def submit(self, key: Hashable, prompts: list[str], run: Callable[[list[str]], Sequence]) -> asyncio.Future:
        """Queue a request; raises :class:`QueueFull` when ``capacity`` jobs are waiting."""
        self._drop_abandoned()
        if len(self._jobs) >= self.capacity:
            raise QueueFull(f"{len(self._jobs)} requests are waiting already")
        job = Job(key, prompts, run, self._loop.create_future(), self._loop.time())
        self._jobs.append(job)
        self._arrived.set()
        return job.future

    async def next_batch(self) -> list[Job]:
        """The oldest job and up to ``max_batch - 1`` compatible ones, removed from the queue."""
        while True:
            self._drop_abandoned()
            if not self._jobs:
                await self._wait_for_arrival(None)
                continue
            head = self._jobs[0]
            while len(self._compatible(head)) < self.max_batch:
                remaining = head.enqueued_at + self.wait_s - self._loop.time()
                if remaining <= 0 or not await self._wait_for_arrival(remaining):
                    break
            self._drop_abandoned()
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

    def _drop_abandoned(self) -> None:
        if any(job.future.done() for job in self._jobs):
            self._jobs = deque(job for job in self._jobs if not job.future.done())

    async def _wait_for_arrival(self, timeout: float | None) -> bool:
        """Wait until a job is submitted; False on timeout."""
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
) -> None:
    """Forever: take a batch, run it in ``executor`` as one call, give each job its own slice.

    The engine runs in the executor so the event loop keeps accepting (and refusing) requests
    meanwhile; a single-thread executor keeps engine calls strictly one at a time.
    """
    loop = asyncio.get_running_loop()
    while True:
        batch = await queue.next_batch()
        on_batch(batch)
        prompts = [prompt for job in batch for prompt in job.prompts]
        try:
            results = await loop.run_in_executor(executor, batch[0].run, prompts)
            if len(results) != len(prompts):
                raise RuntimeError(f"the engine returned {len(results)} results for {len(prompts)} prompts")
        except Exception as error:  # every request of the batch hears why; the worker goes on
            for job in batch:
                job.fail(error)
            continue
        start = 0
        for job in batch:
            job.resolve((list(results[start : start + len(job.prompts)]), len(batch)))
            start += len(job.prompts)
