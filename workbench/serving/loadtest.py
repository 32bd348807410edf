"""A bounded load test of a running server: throughput, latency percentiles, exactly-once answers,
and an abandoned-clients phase (clients that hang up mid-request: is their work dropped?).

Every request carries a unique ``request_id`` that the server echoes, so a request whose answer
never came (lost) or whose id came back twice (duplicated) is counted. Requests are greedy
answers to a small set of questions with different answers; with ``verify`` each question is
first answered once on its own, and every answer under load must equal that reference, which
catches a batch whose results were handed to the wrong requests.

The test is bounded twice: at most ``requests`` requests, and no new request after
``time_limit_s`` (each request also has its own timeout). Run it against loopback only::

    python -m workbench.serving.loadtest --url http://127.0.0.1:8000 --api-key KEY \\
        --requests 200 --concurrency 16
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field

import httpx
import numpy as np

DEFAULT_QUESTIONS = tuple(
    f"What is {a} plus {b}? Reply with the number only."
    for a, b in [(2, 3), (7, 8), (12, 5), (40, 2), (9, 9), (15, 27), (100, 1), (6, 13)]
)
OVERLOAD_STATUSES = {"429", "503"}


@dataclass
class LoadTestResult:
    """Outcome of :func:`run_load_test`.

    Attributes:
        sent: requests sent.
        concurrency: requests kept in flight.
        answered: 200 answers that carried their own request id.
        rejected: requests refused as overload (503/429, with Retry-After).
        lost: requests with no answer (timeout, transport error, other status) or whose 200
            answer carried another id.
        duplicated: request ids that came back in more than one answer.
        mismatched: answers that differ from their question's reference answer.
        status_counts: answers by status code ("timeout"/"transport_error" for no answer).
        wall_s: duration of the load phase.
        latencies_s: latency of each answered request.
        completion_tokens: tokens generated for the answered requests.
        time_limit_hit: the time limit stopped the test before all requests were sent.
    """

    sent: int
    concurrency: int
    answered: int
    rejected: int
    lost: int
    duplicated: int
    mismatched: int
    status_counts: dict[str, int]
    wall_s: float
    latencies_s: list[float] = field(repr=False)
    completion_tokens: int
    time_limit_hit: bool

    @property
    def ok(self) -> bool:
        """Every sent request answered exactly once, with the expected answer."""
        return self.answered == self.sent and self.lost == self.duplicated == self.mismatched == 0

    @property
    def throughput_rps(self) -> float:
        """Answered requests per second."""
        return self.answered / self.wall_s if self.wall_s > 0 else 0.0

    def latency_percentile_s(self, q: float) -> float:
        """The q-th percentile (0..100) of answered requests' latency; NaN when none."""
        return float(np.percentile(self.latencies_s, q)) if self.latencies_s else float("nan")

    def table(self) -> str:
        """A plain-text summary table."""
        rows = [
            ("requests sent", f"{self.sent}"),
            ("concurrency", f"{self.concurrency}"),
            ("answered (own id)", f"{self.answered}"),
            ("rejected (overload)", f"{self.rejected}"),
            ("lost", f"{self.lost}"),
            ("duplicated", f"{self.duplicated}"),
            ("mismatched answers", f"{self.mismatched}"),
            ("status codes", ", ".join(f"{k}: {v}" for k, v in sorted(self.status_counts.items()))),
            ("wall time", f"{self.wall_s:.2f} s"),
            ("throughput", f"{self.throughput_rps:.2f} req/s"),
            ("generated tokens/s", f"{self.completion_tokens / self.wall_s:.1f}" if self.wall_s > 0 else "-"),
            ("latency p50", f"{1000 * self.latency_percentile_s(50):.0f} ms"),
            ("latency p95", f"{1000 * self.latency_percentile_s(95):.0f} ms"),
            ("latency p99", f"{1000 * self.latency_percentile_s(99):.0f} ms"),
            ("time limit hit", "yes" if self.time_limit_hit else "no"),
            ("verdict", "OK" if self.ok else "PROBLEMS"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _body(question: str, request_id: str, max_new_tokens: int) -> dict:
    return {
        "messages": [{"role": "user", "content": question}],
        "temperature": 0.0,
        "max_new_tokens": max_new_tokens,
        "request_id": request_id,
    }


async def load_test(
    base_url: str,
    api_key: str | None = None,
    requests: int = 200,
    concurrency: int = 16,
    max_new_tokens: int = 8,
    time_limit_s: float = 120.0,
    request_timeout_s: float = 60.0,
    questions: tuple[str, ...] = DEFAULT_QUESTIONS,
    verify: bool = True,
) -> LoadTestResult:
    """Async load test (``await`` it in a notebook); see :func:`run_load_test`."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency)
    run = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=request_timeout_s, limits=limits
    ) as client:
        reference: dict[str, str] = {}
        if verify:  # one request at a time: the answer each question gets on its own
            for number, question in enumerate(questions):
                response = await client.post("/generate", json=_body(question, f"{run}-ref-{number}", max_new_tokens))
                response.raise_for_status()
                reference[question] = response.json()["results"][0]["texts"][0]

        next_index = itertools.count()
        outcomes: list[tuple[str, str, dict | None, float]] = []  # (request id, status, answer, latency)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + time_limit_s

        async def send_until_done() -> None:
            while (index := next(next_index)) < requests and loop.time() < deadline:
                request_id = f"{run}-{index}"
                question = questions[index % len(questions)]
                start = time.perf_counter()
                answer = None
                try:
                    response = await client.post("/generate", json=_body(question, request_id, max_new_tokens))
                    status = str(response.status_code)
                    if response.status_code == 200:
                        answer = {**response.json(), "question": question}
                except httpx.TimeoutException:
                    status = "timeout"
                except httpx.TransportError:
                    status = "transport_error"
                outcomes.append((request_id, status, answer, time.perf_counter() - start))

        started = time.perf_counter()
        await asyncio.gather(*(send_until_done() for _ in range(concurrency)))
        wall_s = time.perf_counter() - started

    return _summarise(outcomes, reference, requests, concurrency, wall_s)


def _summarise(outcomes, reference: dict[str, str], requests: int, concurrency: int, wall_s: float) -> LoadTestResult:
    statuses = Counter(status for _, status, _, _ in outcomes)
    echoed = Counter(answer["id"] for _, _, answer, _ in outcomes if answer is not None)
    own = [
        (answer, latency)
        for request_id, _, answer, latency in outcomes
        if answer is not None and answer["id"] == request_id
    ]
    rejected = sum(statuses[s] for s in OVERLOAD_STATUSES)
    mismatched = sum(
        1 for answer, _ in own if reference and answer["results"][0]["texts"][0] != reference[answer["question"]]
    )
    return LoadTestResult(
        sent=len(outcomes),
        concurrency=concurrency,
        answered=len(own),
        rejected=rejected,
        lost=len(outcomes) - len(own) - rejected,
        duplicated=sum(1 for count in echoed.values() if count > 1),
        mismatched=mismatched,
        status_counts=dict(statuses),
        wall_s=wall_s,
        latencies_s=[latency for _, latency in own],
        completion_tokens=sum(answer["usage"]["completion_tokens"] for answer, _ in own),
        time_limit_hit=len(outcomes) < requests,
    )


@dataclass
class AbandonedClientsResult:
    """Outcome of :func:`abandoned_clients_test`.

    Attributes:
        clients: clients that sent a request and hung up before the answer.
        give_up_after_s: how long each waited before hanging up.
        gave_up: those whose request was still unanswered when they hung up.
        dropped_queued: abandoned requests the server dropped before computing anything.
        dropped_running: abandoned requests whose remaining chunks the server skipped.
        computed_for_nobody: abandoned requests the server finished anyway (their last engine
            call was already running).
        prompts_skipped: prompts the server did not compute because their client had left.
        blocker_requests: requests of the patient client's heavy work, sent at once.
        blocker_prompts: prompts in each of them.
        blocker_s: how long the heavy work took (until its last request was answered).
        next_request_s: latency of the request sent right after the clients hung up.
        next_request_alone_s: latency of the same request on an idle server.
        queue_depth_after: requests waiting once the clients had gone (0: the queue forgot them).
        queue_depth_read_s: when that depth was read, in seconds after the last client hung up.
    """

    clients: int
    give_up_after_s: float
    gave_up: int
    dropped_queued: int
    dropped_running: int
    computed_for_nobody: int
    prompts_skipped: int
    blocker_requests: int
    blocker_prompts: int
    blocker_s: float
    next_request_s: float
    next_request_alone_s: float
    queue_depth_after: int
    queue_depth_read_s: float

    @property
    def dropped(self) -> bool:
        """Every client that gave up had its work dropped, none of it computed for nobody."""
        return self.dropped_queued + self.dropped_running == self.gave_up and self.computed_for_nobody == 0

    @property
    def verdict(self) -> str:
        """One line: dropped, computed, or nothing measured (no client left before its answer)."""
        if not self.gave_up:
            return "NOTHING MEASURED: every client had its answer before it hung up"
        return "abandoned work dropped" if self.dropped else "ABANDONED WORK WAS COMPUTED"

    def row(self) -> dict:
        """Every field and the verdict, as one row of ``results/05_abandoned_clients.csv``.

        >>> result = AbandonedClientsResult(3, 0.5, 3, 2, 1, 0, 5, 2, 8, 1.5, 0.4, 0.3, 0, 0.02)
        >>> result.row()["verdict"], result.row()["gave_up"]
        ('abandoned work dropped', 3)
        """
        return {**asdict(self), "verdict": self.verdict}

    def table(self) -> str:
        rows = [
            ("clients that hung up", f"{self.clients}, each after {self.give_up_after_s} s"),
            ("of them before their answer", f"{self.gave_up}"),
            ("dropped before computing", f"{self.dropped_queued}"),
            ("stopped mid-batch", f"{self.dropped_running}"),
            ("computed for nobody", f"{self.computed_for_nobody}"),
            ("prompts not computed", f"{self.prompts_skipped}"),
            ("queue depth after they left", f"{self.queue_depth_after} ({self.queue_depth_read_s:.2f} s after)"),
            (
                "heavy work (patient client)",
                f"{self.blocker_requests} x {self.blocker_prompts} prompts, {self.blocker_s:.2f} s",
            ),
            ("next request, after they left", f"{self.next_request_s:.2f} s"),
            ("same request on an idle server", f"{self.next_request_alone_s:.2f} s"),
            ("verdict", self.verdict),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


async def abandoned_clients_test(
    base_url: str,
    api_key: str | None = None,
    clients: int = 6,
    give_up_after_s: float = 0.5,
    blocker_prompts: int = 8,
    max_new_tokens: int = 24,
    question: str = DEFAULT_QUESTIONS[0],
    settle_s: float = 2.0,
) -> AbandonedClientsResult:
    """Clients that hang up mid-request: is their work dropped, and does the next client wait for it?

    A patient client first sends heavy work (a request of at least ``blocker_prompts`` prompts; more
    prompts, then several such requests at once, on a machine fast enough to finish them before the
    others hang up) that keeps the engine busy;
    meanwhile ``clients`` clients each send a request and hang up after ``give_up_after_s``
    seconds; then one more request is sent. The server's
    ``workbench_abandoned_*`` counters (read from ``/metrics`` before and after) say what happened
    to the abandoned work; the last request's latency is compared with the same request alone.
    The queue depth is read once the clients have left, polled for up to ``settle_s`` seconds until
    it is 0 (the server sees a hang-up shortly after the client makes it).
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    body = {"messages": [{"role": "user", "content": question}], "temperature": 0.0, "max_new_tokens": max_new_tokens}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=600) as client:

        async def timed_post(payload) -> float:
            start = time.perf_counter()
            response = await client.post("/generate", json=payload)
            response.raise_for_status()
            return time.perf_counter() - start

        await timed_post(body)  # warm-up: the first request pays one-off costs that would inflate alone_s
        alone_s = await timed_post(body)
        # The heavy work must outlast the clients that hang up, or their work is computed before
        # they leave and the phase measures nothing. How long it takes depends on the machine, the
        # server's chunking and where the model stops (more new tokens may add nothing), so it is
        # timed: the prompts double up to the server's limit, then the number of such requests sent
        # at once doubles (up to half the queue the clients leave), until they last 3x the time the clients stay.
        health = (await client.get("/health")).json()
        most_prompts, most_requests = health["limits"]["max_prompts"], max(1, (health["queue_capacity"] - clients) // 2)
        must_last_s = 3 * (0.2 + give_up_after_s)

        def heavy_work(prompts: int, requests: int) -> list[dict]:
            stories = [f"Tell me a short story about the number {i}." for i in range(prompts)]
            return [{"prompts": stories, "temperature": 0.0, "max_new_tokens": 2 * max_new_tokens}] * requests

        async def sent_at_once(requests: list[dict]) -> float:
            return max(await asyncio.gather(*(timed_post(request) for request in requests)))

        prompts, requests = min(most_prompts, blocker_prompts), 1
        while await sent_at_once(heavy_work(prompts, requests)) < must_last_s:
            if prompts < most_prompts:
                prompts = min(most_prompts, 2 * prompts)
            elif requests < most_requests:
                requests = min(most_requests, 2 * requests)
            else:
                break
        heavy = heavy_work(prompts, requests)
        before = await _abandoned_counters(client)
        blocker = asyncio.create_task(sent_at_once(heavy))
        await asyncio.sleep(0.2)  # the heavy work reaches the engine first

        async def hang_up(index: int) -> bool:
            quitter = {**body, "max_new_tokens": max_new_tokens + 1 + index}  # not batched with the rest
            try:
                await client.post("/generate", json=quitter, timeout=give_up_after_s)
            except httpx.TimeoutException:
                return True  # hung up before the answer came
            return False

        gave_up = sum(await asyncio.gather(*(hang_up(i) for i in range(clients))))
        # A hang-up reaches the server's event loop a moment after the client gives up (and later
        # still while the engine holds the GIL), so the depth is polled until it is 0 or settle_s pass.
        left_at = time.perf_counter()
        depth = await _queue_depth(client)
        while depth and time.perf_counter() - left_at < settle_s:
            await asyncio.sleep(0.02)
            depth = await _queue_depth(client)
        depth_read_s = time.perf_counter() - left_at
        next_s = await timed_post(body)
        blocker_s = await blocker
        await asyncio.sleep(0.1)
        after = await _abandoned_counters(client)
    delta = {name: after[name] - before[name] for name in after}
    return AbandonedClientsResult(
        clients=clients,
        give_up_after_s=give_up_after_s,
        gave_up=gave_up,
        dropped_queued=int(delta["queued"]),
        dropped_running=int(delta["running"]),
        computed_for_nobody=int(delta["late"]),
        prompts_skipped=int(delta["prompts"]),
        blocker_requests=requests,
        blocker_prompts=prompts,
        blocker_s=blocker_s,
        next_request_s=next_s,
        next_request_alone_s=alone_s,
        queue_depth_after=depth,
        queue_depth_read_s=depth_read_s,
    )


async def _queue_depth(client: httpx.AsyncClient) -> int:
    return (await client.get("/health")).json()["queue_depth"]


async def _abandoned_counters(client: httpx.AsyncClient) -> dict[str, float]:
    """The server's abandoned-work counters from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = (await client.get("/metrics")).text
    counters = {"queued": 0.0, "running": 0.0, "late": 0.0, "prompts": 0.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "workbench_abandoned_requests_total":
                counters[sample.labels["when"]] = sample.value
            elif sample.name == "workbench_abandoned_prompts_total":
                counters["prompts"] = sample.value
    return counters


def declared_body_post(
    base_url: str,
    path: str,
    declared_bytes: int,
    api_key: str | None = None,
    sent: bytes = b"",
    timeout_s: float = 10.0,
    expect_continue: bool = True,
) -> tuple[int, str, float]:
    """POST that declares ``declared_bytes`` of body but sends only ``sent``, then reads the answer.

    A server that refuses an oversized body from its declared length answers at once (413); one
    that reads the body first waits for bytes that never come (a timeout). ``expect_continue`` sends
    ``Expect: 100-continue``, as a client that asks before uploading does; without it the workbench
    server reads and discards an oversized body of up to ``max_discard_bytes`` before its 413 (so
    that clients which upload before they read hear it), and refuses a larger one from its head.

    Returns:
        The status code, the response body as text, and the seconds until the answer came.
    """
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(base_url)
    key = f"Authorization: Bearer {api_key}\r\n" if api_key else ""
    expect = "Expect: 100-continue\r\n" if expect_continue else ""
    head = (
        f"POST {url.path.rstrip('/')}{path} HTTP/1.1\r\nHost: {url.hostname}\r\n{key}Content-Type: application/json\r\n"
        f"Content-Length: {declared_bytes}\r\n{expect}Connection: close\r\n\r\n"
    ).encode()
    start, answer = time.perf_counter(), b""
    with socket.create_connection((url.hostname, url.port or 80), timeout=timeout_s) as sock:
        sock.sendall(head + sent)
        while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < _content_length(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    seconds = time.perf_counter() - start
    status_line, _, rest = answer.decode("latin-1").partition("\r\n")
    return int(status_line.split(" ", 2)[1]), rest.partition("\r\n\r\n")[2], seconds


def _content_length(answer: bytes) -> int:
    """The Content-Length of a response head (0 until the head is complete or when it has none)."""
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    lengths = [line.split(":", 1)[1] for line in head.split("\r\n") if line.startswith("content-length:")]
    return int(lengths[0]) if lengths else 0


def run_load_test(base_url: str, api_key: str | None = None, **options) -> LoadTestResult:
    """Run a bounded load test against a server on loopback and return its figures.

    Args:
        base_url: e.g. "http://127.0.0.1:8000".
        api_key: the server's key.
        **options: ``requests`` (200), ``concurrency`` (16), ``max_new_tokens`` (8),
            ``time_limit_s`` (120), ``request_timeout_s`` (60), ``questions``, ``verify`` (True).

    Returns:
        A :class:`LoadTestResult`; ``print(result.table())`` shows it.
    """
    return asyncio.run(load_test(base_url, api_key, **options))


def main(argv: list[str] | None = None) -> int:
    """Command line: prints the table; exit status 1 when a request was lost, duplicated or wrong."""
    parser = argparse.ArgumentParser(prog="python -m workbench.serving.loadtest", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=os.environ.get("WORKBENCH_API_KEY"))
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=8)
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds after which no new request is sent")
    parser.add_argument("--no-verify", action="store_true", help="skip the reference answers")
    args = parser.parse_args(argv)
    result = run_load_test(
        args.url,
        args.api_key,
        requests=args.requests,
        concurrency=args.concurrency,
        max_new_tokens=args.max_new_tokens,
        time_limit_s=args.time_limit,
        verify=not args.no_verify,
    )
    print(result.table())
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
