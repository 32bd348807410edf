"""The OpenAI-compatible API of the workbench server and the OpenAIEngine client, against each
other on loopback, with the in-process HF engine as the reference (embedded model, CPU)."""

import httpx
import numpy as np
import pytest

from workbench.inference.engine import HFEngine
from workbench.inference.openai_compat import OpenAIEngine, OpenAIEngineError
from workbench.inference.protocol import Engine as EngineProtocol
from workbench.inference.types import SamplingConfig
from workbench.serving import BackgroundServer, RemoteEngine, ServerConfig, create_app

KEY = "openai-key"
QUESTIONS = [
    "Rate this film from 1 to 5: a warm, funny and clever story.",
    "What is 2 plus 3?",
    "Name a colour of the sky.",
]


def chat(lm, question: str) -> str:
    return lm.tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True
    )


@pytest.fixture(scope="module")
def local(lm):
    return HFEngine(lm, progress=False)


@pytest.fixture(scope="module")
def server(lm):
    with BackgroundServer(
        create_app(HFEngine(lm, progress=False), KEY, ServerConfig(max_prompts=32, max_total_tokens=512))
    ) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with OpenAIEngine(f"{server.url}/v1", api_key=KEY) as engine:
        yield engine


def test_every_backend_satisfies_the_engine_protocol(local, client, server):
    with RemoteEngine(server.url, KEY) as remote:
        for engine in (local, client, remote):
            assert isinstance(engine, EngineProtocol)
            assert isinstance(engine.fingerprint, dict) and engine.fingerprint


def test_models_lists_the_stage_with_its_fingerprint_and_end_of_turn(lm, server, client):
    cards = httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {KEY}"}).json()["data"]
    assert [card["id"] for card in cards] == ["smollm2-135m-instruct"]
    assert cards[0]["fingerprint"]["weights_sha256"] == lm.fingerprint["weights_sha256"]
    assert cards[0]["end_of_turn"] == "<|im_end|>"
    assert client.model == "smollm2-135m-instruct" and client.end_of_turn == "<|im_end|>"
    assert client.fingerprint["weights"]["weights_sha256"] == lm.fingerprint["weights_sha256"]


def test_samples_and_greedy_answers_equal_the_in_process_engine(lm, local, client):
    prompts = [chat(lm, q) for q in QUESTIONS]
    assert client.greedy(prompts, max_new_tokens=6) == local.greedy(prompts, max_new_tokens=6)
    config = SamplingConfig(temperature=0.9, top_p=0.95, top_k=40, max_new_tokens=5, seed=11)
    for theirs, mine in zip(client.sample(prompts, 3, config), local.sample(prompts, 3, config), strict=True):
        assert (theirs.texts, theirs.token_ids, theirs.finish_reasons) == (
            mine.texts,
            mine.token_ids,
            mine.finish_reasons,
        )
        np.testing.assert_allclose(
            np.concatenate(theirs.token_logprobs), np.concatenate(mine.token_logprobs), atol=1e-4
        )


def test_stop_strings_and_end_of_turn_keep_their_finish_reasons(lm, local, client):
    prompts = [chat(lm, "Count from 1 to 9 separated by commas.")]
    free = local.greedy(prompts, max_new_tokens=24)[0]
    config = SamplingConfig(temperature=0.0, max_new_tokens=24, stop=(free.strip()[4:6],))  # cuts the answer midway
    theirs, mine = client.sample(prompts, 1, config)[0], local.sample(prompts, 1, config)[0]
    assert (theirs.texts, theirs.finish_reasons) == (mine.texts, mine.finish_reasons)
    assert mine.finish_reasons == ["stop"]
    short = SamplingConfig(temperature=0.0, max_new_tokens=40)
    ended = local.sample([chat(lm, "What is the capital of France?")], 1, short)[0]
    assert ended.finish_reasons == ["eos"] and client.sample([chat(lm, "What is the capital of France?")], 1, short)[
        0
    ].finish_reasons == ["eos"]


def test_echo_scoring_equals_the_exact_grid_score(lm, local, client):
    prompts = [chat(lm, q) for q in QUESTIONS[:2]]
    candidates = ["1", "2", "3", "4", "5", "five", ""]
    theirs, mine = client.score(prompts, candidates), local.score(prompts, candidates)
    np.testing.assert_allclose(theirs.logprobs, mine.logprobs, atol=1e-4)
    np.testing.assert_allclose(theirs.outside_mass, mine.outside_mass, atol=1e-5)
    with pytest.raises(ValueError, match="temperature 1 only"):
        client.score(prompts, candidates, temperature=0.5)


def test_scoring_requests_are_split_to_fit_the_server_limit(lm, local, server):
    with OpenAIEngine(f"{server.url}/v1", api_key=KEY, max_prompts_per_request=8) as small:
        prompts = [chat(lm, q) for q in QUESTIONS]
        np.testing.assert_allclose(
            small.score(prompts, ["1", "2", "3"]).logprobs, local.score(prompts, ["1", "2", "3"]).logprobs, atol=1e-4
        )
        with pytest.raises(ValueError, match="cannot hold one prompt"):
            small.score(prompts, [str(i) for i in range(10)])


def test_raw_completions_follow_the_openai_format(lm, server):
    headers = {"Authorization": f"Bearer {KEY}"}
    prompt = chat(lm, QUESTIONS[1])
    answer = httpx.post(
        f"{server.url}/v1/completions",
        headers=headers,
        timeout=60,
        json={
            "model": "smollm2-135m-instruct",
            "prompt": [prompt, prompt],
            "n": 2,
            "max_tokens": 3,
            "seed": 1,
            "logprobs": 0,
        },
    ).json()
    assert answer["object"] == "text_completion" and [c["index"] for c in answer["choices"]] == [0, 1, 2, 3]
    assert answer["usage"]["completion_tokens"] == 12 and answer["usage"]["total_tokens"] > 12
    first = answer["choices"][0]
    assert (
        first["finish_reason"] == "length"
        and len(first["logprobs"]["tokens"]) == 3
        and first["logprobs"]["top_logprobs"] is None
    )
    assert "".join(first["logprobs"]["tokens"]) == first["text"]
    echoed = httpx.post(
        f"{server.url}/v1/completions",
        headers=headers,
        timeout=60,
        json={
            "model": "smollm2-135m-instruct",
            "prompt": "The sky is blue",
            "max_tokens": 0,
            "echo": True,
            "logprobs": 2,
        },
    ).json()
    choice = echoed["choices"][0]
    assert choice["text"] == "The sky is blue" and choice["logprobs"]["token_logprobs"][0] is None
    assert all(len(top) == 2 for top in choice["logprobs"]["top_logprobs"][1:])
    assert "".join(choice["logprobs"]["tokens"]) == "The sky is blue"
    assert choice["logprobs"]["text_offset"][-1] == len("The sky is blue") - len(choice["logprobs"]["tokens"][-1])


def test_token_id_prompts_equal_their_text(lm, server):
    headers = {"Authorization": f"Bearer {KEY}"}
    texts = [chat(lm, q) for q in QUESTIONS[:2]]
    ids = lm.tokenizer(texts, add_special_tokens=False)["input_ids"]
    common = {
        "model": "smollm2-135m-instruct",
        "n": 2,
        "max_tokens": 4,
        "seed": 3,
        "temperature": 0.8,
        "logprobs": 0,
        "echo": True,
    }

    def complete(prompt):
        return httpx.post(
            f"{server.url}/v1/completions", headers=headers, timeout=60, json={**common, "prompt": prompt}
        ).json()

    by_text, by_ids, one = complete(texts), complete(ids), complete(ids[1])
    assert [c["text"] for c in by_ids["choices"]] == [c["text"] for c in by_text["choices"]]
    assert [c["text"] for c in one["choices"]] == [c["text"] for c in by_text["choices"][2:]]
    assert by_ids["usage"] == by_text["usage"]
    for theirs, mine in zip(by_ids["choices"], by_text["choices"]):
        assert theirs["logprobs"]["tokens"] == mine["logprobs"]["tokens"]
        assert theirs["logprobs"]["text_offset"] == mine["logprobs"]["text_offset"]
        np.testing.assert_allclose(
            theirs["logprobs"]["token_logprobs"][1:], mine["logprobs"]["token_logprobs"][1:], atol=1e-5
        )


def test_generated_tokens_carry_their_top_alternatives(lm, local, server):
    """lm-eval's log-likelihood request: echo, max_tokens=1, logprobs=1, temperature 0, token ids."""
    headers = {"Authorization": f"Bearer {KEY}"}
    prompt = chat(lm, QUESTIONS[0])
    ids = lm.tokenizer(prompt + "5<|im_end|>", add_special_tokens=False)["input_ids"]
    body = {
        "model": "smollm2-135m-instruct",
        "prompt": [ids],
        "max_tokens": 1,
        "logprobs": 1,
        "echo": True,
        "temperature": 0,
    }
    choice = httpx.post(f"{server.url}/v1/completions", headers=headers, timeout=60, json=body).json()["choices"][0]
    values, tops = choice["logprobs"]["token_logprobs"], choice["logprobs"]["top_logprobs"]
    assert len(values) == len(ids) + 1 and values[0] is None and tops[0] is None
    assert all(len(top) == 1 for top in tops[1:])
    generated = choice["logprobs"]["tokens"][-1]
    assert tops[-1] == {generated: values[-1]}  # the greedy token is its own top alternative
    assert choice["text"] == lm.tokenizer.decode(ids) + local.greedy([lm.tokenizer.decode(ids)], max_new_tokens=1)[0]
    prompt_tokens = len(lm.tokenizer(prompt, add_special_tokens=False)["input_ids"])
    answer = sum(values[prompt_tokens : len(ids)])
    np.testing.assert_allclose(answer, local.score([prompt], ["5"]).logprobs[0, 0], atol=1e-4)
    sampled = httpx.post(
        f"{server.url}/v1/completions",
        headers=headers,
        timeout=60,
        json={
            "model": "smollm2-135m-instruct",
            "prompt": prompt,
            "max_tokens": 3,
            "logprobs": 3,
            "temperature": 1.0,
            "seed": 2,
        },
    ).json()
    logprobs = sampled["choices"][0]["logprobs"]
    assert len(logprobs["tokens"]) == 3 and all(len(top) == 3 for top in logprobs["top_logprobs"])
    for token, value, top in zip(logprobs["tokens"], logprobs["token_logprobs"], logprobs["top_logprobs"]):
        assert value <= max(top.values()) + 1e-9 and (token not in top or top[token] == value)


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"model": "gpt-4", "prompt": "x"}, 404, "does not exist"),
        ({"model": "smollm2-135m-instruct", "prompt": "x", "stream": True}, 422, "streaming is not served"),
        ({"model": "smollm2-135m-instruct", "prompt": "x", "presence_penalty": 0.5}, 422, "penalties"),
        ({"model": "smollm2-135m-instruct", "prompt": "x", "max_tokens": 0}, 422, "only with echo"),
        ({"model": "smollm2-135m-instruct", "prompt": "x", "logprobs": 6}, 422, "less than or equal to 5"),
        ({"model": "smollm2-135m-instruct", "prompt": "x", "n": "2"}, 422, "valid integer"),
        ({"model": "smollm2-135m-instruct", "prompt": [[1, 2], "x"]}, 422, "prompt"),
        ({"model": "smollm2-135m-instruct", "prompt": []}, 422, "prompt"),
        (
            {"model": "smollm2-135m-instruct", "prompt": [[5, 10**6]]},
            422,
            "prompt.0: token id 1000000 at position 1 is outside",
        ),
        ({"model": "smollm2-135m-instruct", "prompt": [1] * 510, "max_tokens": 3}, 413, "prompt has 510 tokens"),
        ({"model": "smollm2-135m-instruct", "prompt": "x", "n": 99}, 413, "n=99 exceeds"),
        ({"model": "smollm2-135m-instruct", "prompt": "x", "max_tokens": 100000}, 413, "max_total_tokens=512"),
    ],
)
def test_refusals_use_the_openai_error_format(server, body, status, words):
    response = httpx.post(
        f"{server.url}/v1/completions", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
    )
    assert response.status_code == status
    error = response.json()["error"]
    assert words in error["message"] and error["code"] == status and error["type"]


def test_client_errors_are_clear(server):
    with pytest.raises(OpenAIEngineError, match="401") as caught:
        OpenAIEngine(f"{server.url}/v1")
    assert caught.value.status == 401
    with pytest.raises(OpenAIEngineError, match="does not serve 'other'"):
        OpenAIEngine(f"{server.url}/v1", model="other", api_key=KEY)
    with pytest.raises(OpenAIEngineError, match="cannot reach"):
        OpenAIEngine("http://127.0.0.1:9/v1", timeout_s=2)


def test_generations_are_cached_under_the_served_fingerprint(lm, server, tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_CACHE_DIR", str(tmp_path))
    prompts = [chat(lm, QUESTIONS[0])]
    config = SamplingConfig(max_new_tokens=3, seed=5)
    with OpenAIEngine(f"{server.url}/v1", api_key=KEY, disk_cache=True) as first:
        drawn = first.sample(prompts, 2, config)
        scored = first.score(prompts, ["1", "2"])
    with OpenAIEngine(f"{server.url}/v1", api_key=KEY, disk_cache=True) as second:
        second._completions = None  # a cache miss would now fail
        assert second.sample(prompts, 2, config) == drawn
        np.testing.assert_array_equal(second.score(prompts, ["1", "2"]).logprobs, scored.logprobs)
