"""SimCT response generation through the OpenAI-compatible API: the workbench's own /v1 on
loopback, and a stage behind "another server" given as an endpoint (here a second workbench
server, standing in for vLLM/TGI/llama.cpp). Greedy responses must equal the in-process ones."""

import pytest

from workbench.consistency.generate import Variant, build_queries, generate_responses, variant_key
from workbench.inference.engine import HFEngine
from workbench.serving import BackgroundServer, ServerConfig, create_app

TOKENS = 6


@pytest.fixture(scope="module")
def queries():
    return build_queries(n_closed=1, n_open=1, seed=0)


def test_openai_backends_give_the_local_greedy_responses(lm, queries, monkeypatch):
    with BackgroundServer(create_app(HFEngine(lm, progress=False), "other-key", ServerConfig())) as other:
        monkeypatch.setenv("OPENAI_API_KEY", "other-key")
        variants = [
            Variant("local", lm, temperature=0, max_new_tokens=TOKENS),
            Variant("openai", lm, temperature=0, max_new_tokens=TOKENS, backend="openai"),
            Variant(
                "elsewhere", lm, temperature=0, max_new_tokens=TOKENS, backend="openai", endpoint=f"{other.url}/v1"
            ),
        ]
        table = generate_responses(variants, queries, samples_per_query=2, disk_cache=False, progress=False)
    local, openai, elsewhere = (
        table[table.stage == name].response.tolist() for name in ("local", "openai", "elsewhere")
    )
    assert local == openai == elsewhere and all(local)
    assert set(table[table.stage == "elsewhere"].backend) == {"openai"}


def test_endpoint_settings_are_validated_and_keyed(lm):
    with pytest.raises(ValueError, match="backend='openai'"):
        Variant("v", lm, endpoint="http://127.0.0.1:1/v1")
    plain = Variant("v", lm, backend="openai")
    remote = Variant("v", lm, backend="openai", endpoint="http://127.0.0.1:1/v1")
    assert variant_key(plain, 2, 0) != variant_key(remote, 2, 0)
