"""Tests of workbench.serving against real servers on loopback, running the embedded model.

The model is loaded once for the module. Two servers share it, one at a time: the main one, and
a second one with a tiny queue for the overflow test (which also shows that two apps with their
own metrics registries live side by side in one process).
"""

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from workbench.inference.engine import HFEngine
from workbench.inference.models import load_model
from workbench.inference.types import GridScore, SampleSet, SamplingConfig
from workbench.serving import BackgroundServer, RemoteEngine, RemoteEngineError, ServerConfig, create_app
from workbench.serving.batching import BatchQueue, QueueFull
from workbench.serving.loadtest import declared_body_post, run_load_test

KEY = "test-key"
QUESTIONS = [
    "What is 2 plus 3?",
    "Name a colour of the sky.",
    "What is the capital of France?",
    "Say hello in Spanish.",
    "How many legs does a spider have?",
    "What is 10 times 10?",
    "Name a fruit that is yellow.",
    "What do bees make?",
]
NEW_TOKENS = 6


@pytest.fixture(scope="module")
def lm():
    return load_model(device="cpu")


@pytest.fixture(scope="module")
def local(lm):
    return HFEngine(lm, progress=False)


def chat(lm, question: str) -> str:
    return lm.tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )


@pytest.fixture(scope="module")
def server(lm):
    config = ServerConfig(max_batch=8, batch_wait_ms=150, queue_size=32, max_total_tokens=256, max_n=4, max_prompts=8)
    with BackgroundServer(create_app(HFEngine(lm, progress=False), KEY, config)) as running:
        yield running


@pytest.fixture(scope="module")
def http(server):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as client:
        yield client


def metric_samples(http) -> dict[tuple[str, tuple], float]:
    """``{(sample name, sorted labels): value}`` from the server's /metrics."""
    text = http.get("/metrics").text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def post_all_at_once(url: str, bodies: list[dict], headers: dict) -> list[httpx.Response]:
    """POST every body from its own thread, released together so they arrive together."""
    barrier = threading.Barrier(len(bodies))

    def send(body):
        barrier.wait()
        return httpx.post(url, json=body, headers=headers, timeout=120)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, bodies))


# ---------------------------------------------------------------------------------------- health, auth


def test_health_is_open_and_reports_the_model_stage(server, lm):
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok"
    assert health["model"] == lm.fingerprint_id
    assert health["fingerprint"] == lm.fingerprint
    assert health["queue_depth"] == 0 and health["limits"]["max_n"] == 4


@pytest.mark.parametrize(("method", "path"), [("POST", "/generate"), ("POST", "/score"), ("GET", "/metrics")])
def test_missing_key_is_401_and_wrong_key_is_403(server, method, path):
    body = {"prompts": ["x"], "candidates": ["a"]} if path == "/score" else {"prompts": ["x"]}
    kwargs = {"json": body} if method == "POST" else {}
    missing = httpx.request(method, server.url + path, **kwargs)
    assert missing.status_code == 401 and "API key" in missing.json()["detail"]
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    for headers in ({"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"}):
        assert httpx.request(method, server.url + path, headers=headers, **kwargs).status_code == 403


def test_x_api_key_header_is_accepted(server):
    assert httpx.get(f"{server.url}/metrics", headers={"X-API-Key": KEY}).status_code == 200


# ---------------------------------------------------------------------------------------- validation


def test_bad_json_is_400_with_a_reason(http):
    response = http.post("/generate", content=b'{"prompts": [', headers={"Content-Type": "application/json"})
    assert response.status_code == 400 and "not valid JSON" in response.json()["detail"]
    assert http.post("/generate", content=b"prompts=x").status_code == 400  # not JSON at all


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"prompts": ["x"], "temprature": 0.5}, "temprature", "Extra inputs are not permitted"),
        ({"prompts": ["x"], "top_p": 1.5}, "top_p", "less than or equal to 1"),
        ({"prompts": []}, "prompts", "at least 1 item"),
        ({"prompts": ["x"], "messages": [{"role": "user", "content": "y"}]}, "body", "exactly one of"),
        ({"messages": [{"role": "robot", "content": "y"}]}, "role", "'system', 'user' or 'assistant'"),
    ],
)
def test_schema_errors_are_422_naming_the_field(http, body, field, words):
    response = http.post("/generate", json=body)
    assert response.status_code == 422
    assert field in response.json()["message"] and words in response.json()["message"]


def test_unknown_field_in_score_is_422(http):
    response = http.post("/score", json={"prompts": ["x"], "candidates": ["a"], "top_k": 3})
    assert response.status_code == 422 and "top_k" in response.json()["message"]


@pytest.mark.parametrize(
    ("body", "location", "words"),
    [
        ({"prompts": ["hi"], "max_new_tokens": 300}, ["body", "prompts", 0], "+ max_new_tokens (300) exceeds"),
        ({"prompts": ["ok", "word " * 300]}, ["body", "prompts", 1], "max_total_tokens=256"),
        ({"messages": [{"role": "user", "content": "word " * 300}]}, ["body", "messages"], "messages[0]"),
        ({"prompts": ["hi"], "n": 5}, ["body", "n"], "n=5 exceeds"),
        ({"prompts": ["hi"] * 9}, ["body", "prompts"], "9 prompts"),
    ],
)
def test_requests_over_the_limits_are_413_naming_the_field(http, body, location, words):
    response = http.post("/generate", json=body)
    assert response.status_code == 413
    (problem,) = response.json()["detail"]
    assert problem["loc"] == location and words in problem["msg"]


# ---------------------------------------------------------------------------------------- results


def test_concurrent_requests_each_get_their_own_answer_in_shared_batches(lm, local, server, http):
    """Every request is answered once, with its own id and the local engine's greedy answer."""
    expected = local.greedy([chat(lm, q) for q in QUESTIONS], max_new_tokens=NEW_TOKENS)
    batched_before = metric_samples(http).get(("workbench_batched_requests_total", ()), 0.0)
    bodies = []
    for number, question in enumerate(QUESTIONS):
        # Half the requests send a chat, half the formatted prompt: both must give the same answers.
        source = (
            {"messages": [{"role": "user", "content": question}]} if number % 2 else {"prompts": [chat(lm, question)]}
        )
        bodies.append({**source, "temperature": 0, "max_new_tokens": NEW_TOKENS, "request_id": f"req-{number}"})
    responses = post_all_at_once(f"{server.url}/generate", bodies, dict(http.headers))
    assert [r.status_code for r in responses] == [200] * len(QUESTIONS)
    answers = [r.json() for r in responses]
    assert [a["id"] for a in answers] == [f"req-{n}" for n in range(len(QUESTIONS))]
    assert [a["results"][0]["texts"][0] for a in answers] == expected
    assert len(set(expected)) > len(QUESTIONS) // 2, "too few distinct answers to detect a mix-up"
    assert max(a["batch_size"] for a in answers) > 1
    batched_after = metric_samples(http)[("workbench_batched_requests_total", ())]
    assert batched_after - batched_before == sum(1 for a in answers if a["batch_size"] > 1) > 1


def test_generate_returns_logprobs_and_token_counts_on_request(lm, http):
    body = {"prompts": [chat(lm, QUESTIONS[0])], "n": 2, "temperature": 0.9, "max_new_tokens": 4, "seed": 1}
    plain = http.post("/generate", json=body).json()["results"][0]
    assert "token_logprobs" not in plain and plain["completion_tokens"] == [4, 4]
    detailed = http.post("/generate", json={**body, "logprobs": True}).json()
    result = detailed["results"][0]
    assert result["texts"] == plain["texts"]  # seeded
    assert [len(ids) for ids in result["token_ids"]] == result["completion_tokens"]
    assert all(lp <= 0 for row in result["token_logprobs"] for lp in row)
    assert detailed["usage"]["completion_tokens"] == 8 and detailed["usage"]["prompt_tokens"] > 10


def test_remote_engine_matches_the_local_engine(lm, local, server):
    prompts = [chat(lm, q) for q in QUESTIONS[:3]]
    with RemoteEngine(server.url, KEY) as remote:
        assert remote.greedy(prompts, max_new_tokens=NEW_TOKENS) == local.greedy(prompts, max_new_tokens=NEW_TOKENS)

        config = SamplingConfig(temperature=0.8, top_k=50, max_new_tokens=4, seed=3)
        remote_sets, local_sets = remote.sample(prompts[:2], 2, config), local.sample(prompts[:2], 2, config)
        assert all(isinstance(s, SampleSet) for s in remote_sets)
        for mine, theirs in zip(remote_sets, local_sets, strict=True):
            assert (mine.texts, mine.token_ids, mine.finish_reasons) == (
                theirs.texts,
                theirs.token_ids,
                theirs.finish_reasons,
            )
            np.testing.assert_allclose(
                np.concatenate(mine.token_logprobs), np.concatenate(theirs.token_logprobs), atol=1e-4
            )

        yes_no = [chat(lm, "Is fire hot? Answer yes or no."), chat(lm, "Is ice hot? Answer yes or no.")]
        remote_grid, local_grid = (
            remote.score(yes_no, ["yes", "no", "Yes"], 0.7),
            local.score(yes_no, ["yes", "no", "Yes"], 0.7),
        )
        assert isinstance(remote_grid, GridScore) and remote_grid.candidates == ["yes", "no", "Yes"]
        np.testing.assert_allclose(remote_grid.logprobs, local_grid.logprobs, atol=1e-4)
        np.testing.assert_allclose(remote_grid.probs, local_grid.probs, atol=1e-5)
        np.testing.assert_allclose(remote_grid.outside_mass, local_grid.outside_mass, atol=1e-5)


def test_score_endpoint_returns_a_distribution(http):
    answer = http.post(
        "/score", json={"messages": [{"role": "user", "content": "Pick a or b."}], "candidates": ["a", "b"]}
    ).json()
    assert answer["candidates"] == ["a", "b"] and len(answer["probs"]) == 1
    assert sum(answer["probs"][0]) == pytest.approx(1.0)
    assert sum(np.exp(answer["logprobs"][0])) + answer["outside_mass"][0] == pytest.approx(1.0, abs=1e-6)


def test_remote_engine_errors_are_clear(server):
    with (
        RemoteEngine(server.url, "wrong") as remote,
        pytest.raises(RemoteEngineError, match="403: invalid API key") as caught,
    ):
        remote.greedy(["x"])
    assert caught.value.status == 403
    with (
        RemoteEngine("http://127.0.0.1:9", KEY, timeout_s=2) as unreachable,
        pytest.raises(RemoteEngineError, match="cannot reach"),
    ):
        unreachable.health()


# ---------------------------------------------------------------------------------------- queueing, metrics


def test_full_queue_answers_503_with_retry_after(lm):
    config = ServerConfig(max_batch=1, batch_wait_ms=0, queue_size=2, retry_after_s=2)
    with BackgroundServer(create_app(HFEngine(lm, progress=False), KEY, config)) as small:
        bodies = [{"prompts": [chat(lm, q)], "temperature": 0, "max_new_tokens": 8} for q in QUESTIONS]
        responses = post_all_at_once(f"{small.url}/generate", bodies, {"X-API-Key": KEY})
        statuses = [r.status_code for r in responses]
        rejected = [r for r in responses if r.status_code == 503]
        assert set(statuses) == {200, 503} and statuses.count(200) >= 2  # at least a full queue is served
        assert all(r.headers["Retry-After"] == "2" and "busy" in r.json()["detail"] for r in rejected)
        with httpx.Client(base_url=small.url, headers={"X-API-Key": KEY}) as client:
            samples = metric_samples(client)
    assert samples[("workbench_errors_total", (("endpoint", "/generate"), ("reason", "queue_full")))] == len(rejected)
    assert samples[("workbench_requests_total", (("endpoint", "/generate"), ("status", "503")))] == len(rejected)


def test_metrics_expose_requests_latency_tokens_errors_and_queue(http):
    http.post("/generate", json={"prompts": ["Hi"], "max_new_tokens": 2})
    httpx.post(f"{http.base_url}/generate", json={"prompts": ["Hi"]})  # no key: 401
    http.post("/generate", json={"prompts": ["Hi"], "n": 99})  # over max_n: 413 (not left to another test)
    text = http.get("/metrics").text
    for family, kind in [
        ("workbench_requests_total", "counter"),
        ("workbench_request_latency_seconds", "histogram"),
        ("workbench_prompt_tokens_total", "counter"),
        ("workbench_generated_tokens_total", "counter"),
        ("workbench_errors_total", "counter"),
        ("workbench_queue_depth", "gauge"),
        ("workbench_batch_requests", "histogram"),
        ("workbench_batched_requests_total", "counter"),
    ]:
        assert f"# TYPE {family} {kind}" in text, family
    samples = metric_samples(http)
    assert samples[("workbench_requests_total", (("endpoint", "/generate"), ("status", "200")))] >= 1
    assert samples[("workbench_requests_total", (("endpoint", "/generate"), ("status", "401")))] >= 1
    assert samples[("workbench_requests_total", (("endpoint", "/generate"), ("status", "413")))] >= 1
    assert samples[("workbench_request_latency_seconds_count", (("endpoint", "/generate"),))] >= 3
    assert samples[("workbench_generated_tokens_total", ())] >= 2
    assert samples[("workbench_prompt_tokens_total", ())] >= 1
    assert samples[("workbench_queue_depth", ())] == 0


def test_load_test_reports_every_request_answered_once(server):
    result = run_load_test(
        server.url, KEY, requests=12, concurrency=4, max_new_tokens=3, questions=tuple(QUESTIONS[:3]), time_limit_s=60
    )
    assert result.ok, result.table()
    assert result.sent == result.answered == 12 and result.throughput_rps > 0
    assert result.latency_percentile_s(50) <= result.latency_percentile_s(99)
    assert "latency p95" in result.table()


# ---------------------------------------------------------------------------------------- queue unit


def test_batch_queue_groups_compatible_jobs_in_order_and_is_bounded():
    async def scenario():
        queue = BatchQueue(capacity=3, max_batch=8, wait_s=0.0)
        for key, prompt in [("a", "1"), ("b", "2"), ("a", "3")]:
            queue.submit(key, [prompt], list)
        with pytest.raises(QueueFull):
            queue.submit("a", ["4"], list)
        first, second = await queue.next_batch(), await queue.next_batch()
        return first, second, len(queue)

    first, second, left = asyncio.run(scenario())
    assert [job.prompts for job in first] == [["1"], ["3"]]  # the head and its compatible job
    assert [job.prompts for job in second] == [["2"]]  # kept its place, served next
    assert left == 0


# ---------------------------------------------------------------------------------------- hardening (issue 10)
# Each test reproduces one failure an audit found, against a real server on loopback.


def test_oversized_body_is_refused_with_413_before_it_is_read(server):
    """Audit: a 20 MB body was read in full and tokenised; the 413 came after 31 s. A body beyond
    max_discard_bytes (64 MiB) is refused from its declared length, before it is sent."""
    start_of_body = b'{"prompts": ["' + b"x" * 65536
    status, text, seconds = declared_body_post(
        server.url, "/generate", 200_000_000, KEY, sent=start_of_body, expect_continue=False
    )
    assert status == 413 and seconds < 5  # the other 199.9 MB were never sent
    (problem,) = json.loads(text)["detail"]
    assert problem["loc"] == ["body"] and "max_body_bytes=4194304" in problem["msg"]
    assert declared_body_post(server.url, "/generate", 20_000_000, "wrong")[0] == 403  # auth is checked first
    # A client that asks before uploading (Expect: 100-continue) hears the 413 without sending a byte.
    status, text, seconds = declared_body_post(server.url, "/generate", 20_000_000, KEY)
    assert status == 413 and seconds < 5 and "max_body_bytes=4194304" in text

    def chunked():  # no Content-Length: the body is cut as soon as it passes the limit
        # Just past the limit: little is left unsent when the server refuses and closes, so the
        # client is not reset before it reads the refusal (see declared_body_post).
        yield b'{"prompts": ["'
        for _ in range(64):
            yield b"x" * 65536
        yield b'"]}'

    cut = httpx.post(
        f"{server.url}/generate", content=chunked(), headers={"Authorization": f"Bearer {KEY}"}, timeout=60
    )
    assert cut.status_code == 413 and "more than 4194304 bytes" in cut.json()["detail"][0]["msg"]


TWENTY_MB = b'{"prompts": ["' + b"x" * 20_000_000 + b'"]}'


def twenty_mb_in_chunks():
    for start in range(0, len(TWENTY_MB), 1 << 20):
        yield TWENTY_MB[start : start + (1 << 20)]


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_plain_clients_that_upload_before_reading_get_the_413(server, chunked):
    """Issue 22: a 20 MB body from urllib (which uploads all before it reads) got a connection
    reset, not the 413. The server now reads and discards it (up to max_discard_bytes) first."""
    import urllib.error
    import urllib.request

    data = twenty_mb_in_chunks() if chunked else TWENTY_MB  # an iterable without a length: urllib sends it chunked
    request = urllib.request.Request(
        f"{server.url}/generate",
        data=data,
        method="POST",
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413
    assert "exceeds max_body_bytes=4194304" in json.loads(refused.value.read())["detail"][0]["msg"]
    content = twenty_mb_in_chunks() if chunked else TWENTY_MB
    headers = {"Authorization": f"Bearer {KEY}"}
    response = httpx.post(f"{server.url}/generate", content=content, headers=headers, timeout=60)
    assert response.status_code == 413 and "exceeds max_body_bytes=4194304" in response.json()["detail"][0]["msg"]
    assert response.headers.get("connection") != "close"  # read whole: the connection stays usable


def test_health_answers_within_a_second_while_a_huge_prompt_is_tokenised(lm):
    """Audit: one 20 MB prompt froze /health for over 10 s (tokenisation ran on the event loop).

    Here the prompt fits the body limit and the character pre-check, so it really is tokenised
    (seconds on this CPU), then refused for its token count.
    """
    import time

    config = ServerConfig(max_total_tokens=200_000)
    prompt = "word " * 400_000  # 2 MB, about 400k tokens
    with BackgroundServer(create_app(HFEngine(lm, progress=False), KEY, config)) as big:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(
                httpx.post,
                f"{big.url}/generate",
                json={"prompts": [prompt]},
                headers={"Authorization": f"Bearer {KEY}"},
                timeout=120,
            )
            health_times = []
            while not pending.done():
                start = time.perf_counter()
                assert httpx.get(f"{big.url}/health", timeout=5).status_code == 200
                health_times.append(time.perf_counter() - start)
                time.sleep(0.05)
            response = pending.result()
    assert response.status_code == 413 and "exceeds max_total_tokens=200000" in response.json()["detail"][0]["msg"]
    assert len(health_times) >= 5, "the request was answered too fast to show anything"
    assert max(health_times) < 1.0, health_times


def test_prompt_too_long_for_any_tokenisation_is_refused_without_tokenising(http):
    response = http.post("/generate", json={"prompts": ["x" * 3_000_000]})
    assert response.status_code == 413
    assert "characters cannot fit in max_total_tokens=256" in response.json()["detail"][0]["msg"]


class GatedEngine:
    """The real engine behind a gate: ``sample`` waits until the test opens it, and records its prompts."""

    def __init__(self, engine):
        self.engine, self.lm, self.tokenizer, self.model = engine, engine.lm, engine.tokenizer, engine.model
        self.open = threading.Event()
        self.entered = threading.Event()
        self.computed: list[str] = []

    def sample(self, prompts, n, config=None, cancelled=None):
        self.entered.set()
        self.open.wait(60)
        self.computed += prompts
        return self.engine.sample(prompts, n, config, cancelled)


def wait_until(condition, timeout_s: float = 20.0) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def test_work_of_clients_that_hung_up_is_dropped_before_it_is_computed(lm):
    """Audit: after 6 clients hung up, their queued requests were computed in full (the next
    request waited 43-89 s). Here they leave while the engine is busy; none of them is computed."""
    gated = GatedEngine(HFEngine(lm, progress=False))
    config = ServerConfig(max_batch=1, batch_wait_ms=0, queue_size=16)
    headers = {"Authorization": f"Bearer {KEY}"}
    body = lambda q: {"prompts": [chat(lm, q)], "temperature": 0, "max_new_tokens": 4}  # noqa: E731
    with (
        BackgroundServer(create_app(gated, KEY, config)) as small,
        ThreadPoolExecutor(8) as pool,
        httpx.Client(base_url=small.url, headers=headers, timeout=30) as client,
    ):
        first = pool.submit(client.post, "/generate", json=body(QUESTIONS[0]))
        assert gated.entered.wait(30)  # the engine is busy with the first request
        quitters = [
            pool.submit(httpx.post, f"{small.url}/generate", json=body(q), headers=headers, timeout=1.5)
            for q in QUESTIONS[1:7]
        ]
        for quitter in quitters:
            with pytest.raises(httpx.TimeoutException):
                quitter.result()
        wait_until(lambda: client.get("/health").json()["queue_depth"] == 0)  # the queue forgot them
        gated.open.set()
        assert first.result().status_code == 200
        last = client.post("/generate", json=body(QUESTIONS[7]))
        assert last.status_code == 200
        samples = metric_samples(client)
    assert gated.computed == [chat(lm, QUESTIONS[0]), chat(lm, QUESTIONS[7])]
    assert samples[("workbench_abandoned_requests_total", (("when", "queued"),))] == 6
    assert samples[("workbench_abandoned_prompts_total", ())] == 6
    assert samples[("workbench_errors_total", (("endpoint", "/generate"), ("reason", "client_gone")))] == 6


def test_a_running_batch_stops_early_when_its_client_leaves(lm):
    gated = GatedEngine(HFEngine(lm, progress=False))
    gated.open.set()
    config = ServerConfig(chunk_prompts=1, max_prompts=8)
    prompts = [chat(lm, q) for q in QUESTIONS]
    original = gated.sample

    def slow_sample(batch, n, config=None, cancelled=None):  # each chunk takes a while, so the client leaves mid-batch
        import time

        time.sleep(0.4)
        return original(batch, n, config, cancelled)

    gated.sample = slow_sample
    with BackgroundServer(create_app(gated, KEY, config)) as small:
        with pytest.raises(httpx.TimeoutException):
            httpx.post(
                f"{small.url}/generate",
                json={"prompts": prompts, "max_new_tokens": 2},
                headers={"X-API-Key": KEY},
                timeout=1.0,
            )
        with httpx.Client(base_url=small.url, headers={"X-API-Key": KEY}) as client:
            wait_until(
                lambda: metric_samples(client)[("workbench_abandoned_requests_total", (("when", "running"),))] == 1
            )
            samples = metric_samples(client)
    assert 1 <= len(gated.computed) < len(prompts)
    assert samples[("workbench_abandoned_prompts_total", ())] == len(prompts) - len(gated.computed)


@pytest.mark.parametrize(
    ("path", "raw", "words"),
    [
        ("/generate", '{"prompts": ["x"], "temperature": 1e-45}', "at least 0.0001"),
        ("/generate", '{"prompts": ["x"], "temperature": Infinity}', "finite number"),
        ("/generate", '{"prompts": ["x"], "temperature": NaN}', "finite number"),
        ("/generate", '{"prompts": ["x"], "top_p": NaN}', "top_p"),
        ("/score", '{"prompts": ["x"], "candidates": ["a"], "temperature": 1e-300}', "greater than or equal to 0.0001"),
        ("/score", '{"prompts": ["x"], "candidates": ["a"], "temperature": -Infinity}', "temperature"),
        ("/v1/completions", '{"model": "m", "prompt": "x", "temperature": 1e-45}', "at least 0.0001"),
    ],
)
def test_tiny_and_non_finite_temperatures_are_422(http, path, raw, words):
    """Audit: temperature 1e-45 repeated token 49151 with status 200, 1e-300 gave null
    probabilities, and Infinity was accepted."""
    response = http.post(path, content=raw.encode(), headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert words in response.text


def test_temperature_at_the_floor_is_served_with_finite_numbers(lm, local, http):
    prompt = chat(lm, QUESTIONS[2])
    sampled = http.post(
        "/generate", json={"prompts": [prompt], "temperature": 1e-4, "max_new_tokens": NEW_TOKENS, "logprobs": True}
    ).json()
    assert sampled["results"][0]["texts"][0] == local.greedy([prompt], max_new_tokens=NEW_TOKENS)[0]
    assert np.isfinite(np.concatenate(sampled["results"][0]["token_logprobs"])).all()
    scored = http.post(
        "/score", json={"prompts": [prompt], "candidates": ["Paris", "London"], "temperature": 1e-4}
    ).json()
    assert np.isfinite(scored["probs"][0]).all() and sum(scored["probs"][0]) == pytest.approx(1.0)
    assert scored["probs"][0][0] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("n", "2"),
        ("n", True),
        ("n", 2.0),
        ("max_new_tokens", "4"),
        ("seed", "7"),
        ("temperature", "0.5"),
        ("temperature", False),
        ("logprobs", 1),
    ],
)
def test_no_silent_type_coercion(http, field, value):
    response = http.post("/generate", json={"prompts": ["x"], field: value})
    assert response.status_code == 422 and field in response.json()["message"]


def test_health_reveals_no_filesystem_path(lm):
    """A stage loaded from a local folder is named by the folder's name in /health, not its path."""
    import dataclasses

    from workbench.inference.models import embedded_model_folder

    folder = str(embedded_model_folder())
    from_folder = dataclasses.replace(lm, name=folder, fingerprint={**lm.fingerprint, "name": folder})
    with BackgroundServer(create_app(HFEngine(from_folder, progress=False), KEY)) as served:
        text = httpx.get(f"{served.url}/health").text
        models = httpx.get(f"{served.url}/v1/models", headers={"X-API-Key": KEY}).text
    assert folder not in text and folder not in models and "/root" not in text
    assert '"name":"smollm2-135m-instruct"' in text.replace(" ", "")


def test_abandoned_clients_phase_reports_the_dropped_work(lm):
    from workbench.serving.loadtest import abandoned_clients_test

    with BackgroundServer(
        create_app(HFEngine(lm, progress=False), KEY, ServerConfig(max_batch=8, chunk_prompts=2))
    ) as small:
        result = asyncio.run(
            abandoned_clients_test(small.url, KEY, clients=3, give_up_after_s=0.3, blocker_prompts=8, max_new_tokens=12)
        )
    assert result.gave_up == 3 and result.dropped, result.table()
    assert result.queue_depth_after == 0 and "abandoned work dropped" in result.table()
    assert result.row()["verdict"] == "abandoned work dropped" and result.row()["gave_up"] == 3


def test_work_past_its_deadline_is_dropped_with_504(lm):
    gated = GatedEngine(HFEngine(lm, progress=False))
    config = ServerConfig(max_batch=1, batch_wait_ms=0, request_timeout_s=1.0)
    headers = {"X-API-Key": KEY}
    body = lambda q: {"prompts": [chat(lm, q)], "temperature": 0, "max_new_tokens": 2}  # noqa: E731
    with BackgroundServer(create_app(gated, KEY, config)) as small, ThreadPoolExecutor(2) as pool:
        first = pool.submit(httpx.post, f"{small.url}/generate", json=body(QUESTIONS[0]), headers=headers, timeout=30)
        assert gated.entered.wait(30)
        late = httpx.post(f"{small.url}/generate", json=body(QUESTIONS[1]), headers=headers, timeout=30)
        gated.open.set()
        first.result()
        with httpx.Client(base_url=small.url, headers=headers) as client:
            samples = metric_samples(client)
    assert late.status_code == 504 and "request_timeout_s=1.0" in late.json()["detail"]
    assert chat(lm, QUESTIONS[1]) not in gated.computed
    assert samples[("workbench_abandoned_requests_total", (("when", "queued"),))] == 1
