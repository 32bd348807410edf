"""``OpenAIEngine`` against servers that take one prompt per request and ignore ``n``: a proxy in
front of the workbench server that behaves so (exact answers known from the in-process engine),
and llama-cpp-python's own server when the ``llama`` extra is installed."""

import importlib.util
import os
import subprocess
import sys
import time
from dataclasses import replace
from typing import Annotated

import httpx
import numpy as np
import pytest
from fastapi import Body, FastAPI
from fastapi.responses import JSONResponse

from workbench.inference.engine import HFEngine
from workbench.inference.models import embedded_gguf
from workbench.inference.openai_compat import OpenAIEngine, OpenAIEngineError, RequestShape
from workbench.inference.protocol import sampling_seed
from workbench.inference.types import SamplingConfig
from workbench.serving import BackgroundServer, ServerConfig, create_app

KEY = "one-prompt-key"
MISALIGNED = {"echo": False}  # switched on by one test
QUESTIONS = ["Rate this film from 1 to 5: a warm, funny and clever story.", "What is 2 plus 3?"]


def chat(lm, question: str) -> str:
    return lm.tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )


def one_prompt_proxy(upstream: str, requests: list[dict], misaligned: dict) -> FastAPI:
    """A server like llama-cpp-python's: one prompt per request (a list of two fails with 500),
    ``n`` ignored, no limits or end of turn on its model card, ``max_tokens=0`` refused; with
    ``misaligned["echo"]``, echoed log-probabilities shifted by one token, the generated one left out."""
    app = FastAPI()
    http = httpx.Client(base_url=upstream, headers={"Authorization": f"Bearer {KEY}"}, timeout=300)

    @app.get("/v1/models")
    def models() -> dict:
        card = http.get("/v1/models").json()["data"][0]
        return {"object": "list", "data": [{"id": card["id"], "object": "model", "owned_by": "me"}]}

    @app.post("/v1/completions")
    def completions(body: Annotated[dict, Body()]):
        requests.append(dict(body))
        prompt = body.get("prompt")
        if isinstance(prompt, list):
            if len(prompt) > 1:
                return JSONResponse({"error": {"message": ""}}, status_code=500)
            body["prompt"] = prompt[0]
        if body.get("max_tokens") == 0:
            return JSONResponse(
                {"error": {"message": "max_tokens=0 would generate until the context is full"}}, status_code=400
            )
        body.pop("n", None)
        answer = http.post("/v1/completions", json=body)
        result = answer.json()
        if misaligned["echo"] and body.get("echo") and answer.status_code == 200:
            for choice in result["choices"]:
                logprobs = choice["logprobs"]
                logprobs["tokens"] = logprobs["tokens"][:-1]
                logprobs["token_logprobs"] = [None] + logprobs["token_logprobs"][2:]
        return JSONResponse(result, status_code=answer.status_code)

    return app


@pytest.fixture(scope="module")
def local(lm):
    return HFEngine(lm, progress=False)


@pytest.fixture(scope="module")
def proxied(lm):
    """(proxy URL, the bodies it received)."""
    requests: list[dict] = []
    with BackgroundServer(create_app(HFEngine(lm, progress=False), KEY, ServerConfig())) as upstream:
        with BackgroundServer(one_prompt_proxy(upstream.url, requests, MISALIGNED)) as proxy:
            yield f"{proxy.url}/v1", requests


def test_probes_find_one_prompt_per_request_and_n_ignored(proxied):
    url, requests = proxied
    with OpenAIEngine(url, end_of_turn="<|im_end|>") as engine:
        assert engine.shape == RequestShape(prompts=1, honours_n=False)
        assert [len(r["prompt"]) if isinstance(r["prompt"], list) else 1 for r in requests[-2:]] == [2, 1]
        assert requests[-1]["n"] == 2
    with OpenAIEngine(url, max_prompts_per_request=1, honours_n=False) as told:
        before = len(requests)
        assert told.shape == RequestShape(1, False) and len(requests) == before  # no probe when told


def test_samples_are_seeded_repeated_requests(lm, local, proxied):
    url, requests = proxied
    prompts = [chat(lm, q) for q in QUESTIONS]
    config = SamplingConfig(temperature=0.9, max_new_tokens=4, seed=21)
    with OpenAIEngine(url, max_prompts_per_request=1, honours_n=False) as engine:
        drawn = engine.sample(prompts, 3, config)
        assert engine.sample(prompts, 3, config) == drawn  # the same seed draws the same samples
        for prompt, samples in zip(prompts, drawn):
            for k in range(3):
                seeded = replace(config, seed=sampling_seed(21, f"{k}\0{prompt}") % 2**31)
                expected = local.sample([prompt], 1, seeded)[0]
                assert (samples.texts[k], samples.token_ids[k]) == (expected.texts[0], expected.token_ids[0])
        assert len({tuple(ids) for samples in drawn for ids in samples.token_ids}) > 1
        before = len(requests)
        assert engine.greedy(prompts, max_new_tokens=5) == local.greedy(prompts, max_new_tokens=5)
        greedy_three = engine.sample(prompts[:1], 3, SamplingConfig(temperature=0.0, max_new_tokens=5))[0]
        assert len(requests) - before == 3  # one request per prompt at temperature 0, however many samples
        assert greedy_three.texts == [local.greedy(prompts[:1], max_new_tokens=5)[0]] * 3


def test_scores_are_one_request_per_text_and_exact(lm, local, proxied):
    url, requests = proxied
    prompts = [chat(lm, q) for q in QUESTIONS]
    candidates = ["1", "2", "3", "4", "5", "five"]
    with OpenAIEngine(url, end_of_turn="<|im_end|>") as engine:
        assert engine.shape.prompts == 1
        before = len(requests)
        theirs = engine.score(prompts, candidates)
        # Per prompt: its echo, the plain request that checks it, and each prompt + candidate; then
        # the end-of-turn token after the first prompt (once per engine).
        assert len(requests) - before == len(prompts) * (2 + len(candidates)) + 1
        assert all(isinstance(r["prompt"], str) and r["max_tokens"] == 1 for r in requests[before:])
        engine.score(prompts[:1], candidates[:2])
        assert len(requests) - before == len(prompts) * (2 + len(candidates)) + 1 + 4
    np.testing.assert_allclose(theirs.logprobs, local.score(prompts, candidates).logprobs, atol=1e-4)


def test_echoes_shifted_against_their_tokens_are_an_error(lm, proxied):
    url, _ = proxied
    MISALIGNED["echo"] = True
    try:
        with OpenAIEngine(url, end_of_turn="<|im_end|>", max_prompts_per_request=1, honours_n=False) as engine:
            with pytest.raises(OpenAIEngineError, match="cannot be read as aligned"):
                engine.score([chat(lm, QUESTIONS[0])], ["1", "2"])
    finally:
        MISALIGNED["echo"] = False


def test_a_server_that_returns_too_few_choices_is_an_error(lm, proxied):
    url, _ = proxied
    with OpenAIEngine(url, max_prompts_per_request=1, honours_n=True) as wrong:  # told n works: it does not
        with pytest.raises(OpenAIEngineError, match="asked for 2 samples of 1 prompts, got 1 choices.*honours_n=False"):
            wrong.sample([chat(lm, QUESTIONS[0])], 2, SamplingConfig(max_new_tokens=2))


# ---------------------------------------------------------------------------------------- llama.cpp


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """llama-cpp-python's server on the embedded model's Q4_1 GGUF (one thread)."""
    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed (pip install -e .[llama])")
    if importlib.util.find_spec("sse_starlette") is None:
        pytest.skip("llama-cpp-python's server needs its [server] extra (pip install -e .[llama])")
    port = _free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(embedded_gguf()),
        "--port",
        str(port),
        "--n_threads",
        "1",
        "--n_ctx",
        "2048",
        "--model_alias",
        "smollm2-q4_1",
        "--verbose",
        "false",
    ]
    with open(log, "w") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/v1/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"llama-cpp-python's server did not start: {log.read_text()[-2000:]}")
            time.sleep(0.5)
        yield f"{url}/v1"
    finally:
        process.terminate()
        process.wait(30)


def test_against_llama_cpp_python_server(lm, local, llama_server):
    prompts = [chat(lm, q) for q in QUESTIONS]
    # The server's defaults filter (top_k=40, min_p=0.05) and penalise repeats: turn them off.
    plain = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}
    with OpenAIEngine(llama_server, end_of_turn="<|im_end|>", extra_body=plain) as engine:
        assert engine.shape == RequestShape(prompts=1, honours_n=False)
        config = SamplingConfig(temperature=1.0, max_new_tokens=4, seed=3)
        drawn = engine.sample(prompts, 3, config)
        assert [len(s.texts) for s in drawn] == [3, 3] and engine.sample(prompts, 3, config) == drawn
        assert len({text for s in drawn for text in s.texts}) > 1
        assert all(len(values) >= 1 for s in drawn for values in s.token_logprobs)
        candidates = ["1", "2", "3", "4", "5"]
        theirs = engine.score(prompts, candidates)
        with pytest.raises(OpenAIEngineError, match="cannot be read as aligned"):
            engine.score(["Rate this film from 1 to 5: a warm story.\nRating: "], candidates)  # no BOS first
    mine = local.score(prompts, candidates)
    # Q4_1 arithmetic against the fp32 de-quantised weights: close, not equal. The engine's own
    # llama.cpp backend measures the same gap over 20 SST-5 prompts (test_llamacpp_engine.py).
    total_variation = 0.5 * np.abs(theirs.probs - mine.probs).sum(axis=1)
    assert total_variation.max() < 0.1, total_variation
    np.testing.assert_allclose(theirs.outside_mass, mine.outside_mass, atol=0.1)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
