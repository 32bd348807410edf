"""Clients that no one here wrote, against the server's ``/v1`` on loopback: lm-evaluation-harness's
``local-completions`` model with its default settings, and the ``openai`` SDK.

The embedded model serves (a tiny random one would do for the exactness checks, but it answers
every SST-5 prompt with the same rating and an empty text, which would leave the accuracy and
generation checks without content).
"""

import json

import numpy as np
import pytest

from workbench.inference.engine import HFEngine
from workbench.inference.models import embedded_model_folder
from workbench.inference.types import SamplingConfig
from workbench.serving import BackgroundServer, ServerConfig, create_app

KEY = "client-key"
SERVED = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def local(lm):
    return HFEngine(lm, progress=False)


@pytest.fixture(scope="module")
def server(lm):
    with BackgroundServer(create_app(HFEngine(lm, progress=False), KEY, ServerConfig())) as running:
        yield running


@pytest.fixture(scope="module")
def sst5_items(lm, sst5):
    """Six SST-5 test items with their 2-shot prompts (the project's own formatting)."""
    examples = sst5.examples("test", limit=6, seed=1)
    return examples, sst5.prompts(examples, lm.tokenizer, sst5.fewshot(2, seed=0))


def test_lm_eval_local_completions_reads_exact_scores_and_greedy_answers(
    local, server, sst5, sst5_items, tmp_path, monkeypatch
):
    """lm-eval's defaults: token-id prompts, echo with max_tokens=1 and logprobs=1, batch size 1."""
    lm_eval = pytest.importorskip("lm_eval", reason="lm-eval is a dev dependency: pip install -e .[dev]")
    from lm_eval.models.openai_completions import LocalCompletionsAPI

    examples, prompts = sst5_items
    candidates = sst5.candidates
    labels = [candidates.index(sst5.grid_format.format(example.target)) for example in examples]
    docs = tmp_path / "sst5.jsonl"
    docs.write_text(
        "".join(json.dumps({"prompt": p, "label": y, "answer": candidates[y]}) + "\n" for p, y in zip(prompts, labels))
    )
    data = {
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(docs)}},
        "test_split": "test",
        "doc_to_text": "{{prompt}}",
        "target_delimiter": "",
    }
    # Each choice ends with the end of turn, so that its log-likelihood is that of a complete answer.
    choices = [c + "<|im_end|>" for c in candidates]
    multiple_choice = {
        "task": "sst5_choice",
        "output_type": "multiple_choice",
        "doc_to_choice": choices,
        "doc_to_target": "{{label}}",
        "metric_list": [{"metric": "acc"}],
        **data,
    }
    generation = {
        "task": "sst5_generate",
        "output_type": "generate_until",
        "doc_to_target": "{{answer}}",
        "generation_kwargs": {"until": ["\n\n"], "max_gen_toks": 6},
        "metric_list": [{"metric": "exact_match"}],
        **data,
    }
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # what local-completions sends as its bearer token
    model = LocalCompletionsAPI(
        base_url=f"{server.url}/v1/completions", model=SERVED, tokenizer=str(embedded_model_folder())
    )
    out = lm_eval.simple_evaluate(model=model, tasks=[multiple_choice, generation], log_samples=True)

    chosen = sorted(out["samples"]["sst5_choice"], key=lambda sample: sample["doc_id"])
    loglikelihoods = np.array([[value for value, _ in sample["filtered_resps"]] for sample in chosen])
    # lm-eval moves the prompt's trailing "\n" into each continuation (its _encode_pair), so what it
    # reads is log P("\n" + candidate + end of turn | prompt without the "\n"): the engine's exact
    # score of the same thing.
    assert all(p.endswith("\n") for p in prompts)
    exact_with_newline = local.score([p[:-1] for p in prompts], ["\n" + c for c in candidates]).logprobs
    np.testing.assert_allclose(loglikelihoods, exact_with_newline, atol=1e-4)
    # The "\n" term is common to every candidate of a prompt, so the choice is the exact mode.
    exact = local.score(prompts, candidates)
    shift = loglikelihoods - exact.logprobs
    np.testing.assert_allclose(shift, shift[:, :1].repeat(len(candidates), axis=1), atol=1e-4)
    exact_mode_hits = exact.probs.argmax(axis=1) == np.array(labels)
    assert [sample["acc"] for sample in chosen] == exact_mode_hits.astype(float).tolist()
    assert out["results"]["sst5_choice"]["acc,none"] == pytest.approx(exact_mode_hits.mean())

    generated = sorted(out["samples"]["sst5_generate"], key=lambda sample: sample["doc_id"])
    greedy = local.greedy(prompts, max_new_tokens=6, stop=("\n\n", "<|im_end|>"))
    assert [sample["resps"][0][0] for sample in generated] == greedy
    assert out["results"]["sst5_generate"]["exact_match,none"] == pytest.approx(
        np.mean([g == candidates[y] for g, y in zip(greedy, labels)])
    )


def test_openai_sdk_completions(lm, local, server, sst5_items):
    openai = pytest.importorskip("openai", reason="the openai SDK is a dev dependency: pip install -e .[dev]")
    _, prompts = sst5_items
    prompts = prompts[:2]
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0)
    assert [model.id for model in client.models.list()] == [SERVED]

    drawn = client.completions.create(model=SERVED, prompt=prompts, n=3, max_tokens=5, temperature=0.8, seed=7)
    mine = local.sample(prompts, 3, SamplingConfig(temperature=0.8, max_new_tokens=5, seed=7))
    assert [choice.text for choice in drawn.choices] == [text for s in mine for text in s.texts]
    assert [choice.index for choice in drawn.choices] == list(range(6))
    assert drawn.usage.completion_tokens == sum(len(ids) for s in mine for ids in s.token_ids)

    ids = lm.tokenizer(prompts[0], add_special_tokens=False)["input_ids"]
    by_text = client.completions.create(
        model=SERVED, prompt=prompts[0], max_tokens=4, temperature=0, logprobs=2, echo=True
    )
    by_ids = client.completions.create(model=SERVED, prompt=ids, max_tokens=4, temperature=0, logprobs=2, echo=True)
    assert (
        by_ids.choices[0].text == by_text.choices[0].text == prompts[0] + local.greedy(prompts[:1], max_new_tokens=4)[0]
    )
    logprobs = by_ids.choices[0].logprobs
    generated = len(logprobs.tokens) - len(ids)
    assert generated >= 1 and logprobs.token_logprobs[0] is None
    assert logprobs.tokens == by_text.choices[0].logprobs.tokens
    assert all(len(top) == 2 for top in logprobs.top_logprobs[1:])
    for token, value, top in zip(
        logprobs.tokens[len(ids) :], logprobs.token_logprobs[len(ids) :], logprobs.top_logprobs[len(ids) :]
    ):
        assert top[token] == value == max(top.values())  # greedy tokens lead their alternatives

    scored = client.completions.create(
        model=SERVED, prompt=[prompts[0] + "4<|im_end|>"], max_tokens=0, echo=True, logprobs=0
    )
    prompt_tokens = len(ids)
    answer = sum(scored.choices[0].logprobs.token_logprobs[prompt_tokens:])
    np.testing.assert_allclose(answer, local.score(prompts[:1], ["4"]).logprobs[0, 0], atol=1e-4)

    with pytest.raises(openai.UnprocessableEntityError, match="penalties are not served"):
        client.completions.create(model=SERVED, prompt="x", presence_penalty=0.5)
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.completions.create(model="gpt-3.5-turbo-instruct", prompt="x")
