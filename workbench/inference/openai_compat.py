"""``OpenAIEngine``: the :class:`~workbench.inference.protocol.Engine` protocol over any server with
the OpenAI completions API (vLLM, TGI, llama.cpp's server, the workbench's own ``/v1``).

* ``sample``: ``POST /completions`` with ``n``, ``temperature``, ``top_p``, ``max_tokens``,
  ``stop``, ``seed`` and ``logprobs=0`` (each generated token's log-probability); ``top_k`` is
  sent only when set (a vLLM extension). Token ids come back when the server honours vLLM's
  ``return_tokens_as_token_ids``; otherwise ``SampleSet.token_ids`` holds empty lists.
* ``score``: *echo scoring*. For each prompt, one request holds the prompt alone and the prompt
  followed by each candidate and the end-of-turn text, with ``echo=true, max_tokens=0,
  logprobs=0``: the server returns the log-probability of every token of each text. A candidate's
  log-probability is the sum over the tokens after the prompt's own tokens, the end of turn
  included: exactly what :meth:`workbench.inference.engine.HFEngine.score` computes in process. Two
  checks keep it exact or loud: the joint text's tokens must start with the prompt's tokens (else
  the candidate merged into the prompt's last token), and end with the end-of-turn token (else the
  server did not read the end-of-turn text as its special token). The API reports log-probabilities
  at temperature 1 only, so ``score`` refuses other temperatures.
* The end of turn comes from the server's model card (the workbench server lists it as
  ``end_of_turn``), else from ``end_of_turn=`` or a ``tokenizer=``
  (:func:`workbench.inference.end_of_turn.end_of_turn`).
* Results go through the same generation cache as the HF engine (opt in with ``disk_cache``):
  keyed by the fingerprint, which names the backend, the model id and, when the server reports
  one (the workbench server does), the weights fingerprint, else the server's URL.
"""

from __future__ import annotations


import httpx
import numpy as np

from workbench.inference.cachemap import cached_map, sampling_key
from workbench.inference.end_of_turn import end_of_turn as find_end_of_turn
from workbench.inference.protocol import greedy_by_sampling
from workbench.inference.types import GridScore, SampleSet, SamplingConfig
from workbench.inference.gencache import GenerationCache
from workbench.inference.http_json import EngineHTTPError, request_json
from workbench.paths import cache_dir

REMOTE = "remote"  # the cache key's device: the server's, which its fingerprint identifies


class OpenAIEngineError(EngineHTTPError):
    """The server could not be reached, refused a request, or answered something unusable (``status``: its HTTP status)."""


class OpenAIEngine:
    """A client for an OpenAI-compatible completions server, with the ``Engine`` interface.

    Args:
        base_url: the API root, e.g. ``"http://127.0.0.1:8000/v1"``.
        model: the model id on the server; default: the first one ``/models`` lists.
        api_key: sent as a bearer token; None for an open server.
        end_of_turn: the text of the model's end-of-turn token, for ``score``; default: the
            server's model card, else derived from ``tokenizer``.
        tokenizer: the model's tokenizer, if at hand: callers format prompts with its chat
            template (``engine.tokenizer``), and it supplies the end of turn.
        disk_cache: cache generations under the user cache folder (see the module docstring).
        max_prompts_per_request: most texts sent in one request (the workbench server's
            ``max_prompts``, 32 by default; vLLM has no limit).
        token_ids: ask for token ids (vLLM's ``return_tokens_as_token_ids``); turn off for a
            server that refuses unknown fields.
        extra_body: more fields for every request (e.g. ``{"add_special_tokens": False}`` for a
            vLLM server whose tokenizer would add a BOS token to formatted prompts).
        timeout_s: most seconds to wait for one answer.
        busy_retries: how often to retry a 503/429 after its ``Retry-After``.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        end_of_turn: str | None = None,
        tokenizer=None,
        disk_cache: bool = False,
        max_prompts_per_request: int = 32,
        token_ids: bool = True,
        extra_body: dict | None = None,
        timeout_s: float = 300.0,
        busy_retries: int = 3,
    ):
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0))
        self.timeout_s, self.busy_retries = timeout_s, busy_retries
        self.max_prompts_per_request = max_prompts_per_request
        self.token_ids = token_ids
        self.extra_body = dict(extra_body or {})
        self.tokenizer = tokenizer
        cards = self._request("GET", "/models").get("data", [])
        if not cards:
            raise OpenAIEngineError(f"{self.base_url}/models lists no model")
        card = next((c for c in cards if c.get("id") == model), None) if model else cards[0]
        if card is None:
            raise OpenAIEngineError(f"{self.base_url} does not serve {model!r}; it serves {[c.get('id') for c in cards]}")
        self.model = card["id"]
        self.end_of_turn = end_of_turn or card.get("end_of_turn") or (find_end_of_turn(tokenizer).text if tokenizer is not None else None)
        identity = {"weights": card["fingerprint"]} if isinstance(card.get("fingerprint"), dict) else {"server": self.base_url}
        self._fingerprint = {"name": self.model, "backend": "openai-compatible", **identity}
        self.cache = GenerationCache(cache_dir() / "generations", self._fingerprint) if disk_cache else None

    @property
    def fingerprint(self) -> dict:
        """Backend, model id, and the server's weights fingerprint (or its URL when it reports none)."""
        return self._fingerprint

    # ------------------------------------------------------------------ Engine interface
    def sample(self, prompts: list[str], n: int, config: SamplingConfig | None = None) -> list[SampleSet]:
        """``n`` samples per prompt (see :meth:`workbench.inference.engine.HFEngine.sample`)."""
        config = config or SamplingConfig()
        body = {
            "n": n,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "max_tokens": config.max_new_tokens,
            "seed": config.seed,
            "logprobs": 0,
        }
        if config.stop:
            body["stop"] = list(config.stop)
        if config.top_k:
            body["top_k"] = config.top_k
        settings = sampling_key(n, config)
        values = cached_map(self.cache, "sample", list(prompts), settings, config.seed,
                            lambda batch: self._sample_batch(batch, n, body, config), REMOTE, self.max_prompts_per_request)
        return [SampleSet(**value) for value in values]

    def greedy(self, prompts: list[str], max_new_tokens: int = 32, stop: tuple[str, ...] = ()) -> list[str]:
        """The greedy answer for each prompt."""
        return greedy_by_sampling(self, prompts, max_new_tokens, stop)

    def score(self, prompts: list[str], candidates: list[str], temperature: float = 1.0) -> GridScore:
        """Exact probability of each candidate as a complete answer, by echo scoring (temperature 1 only)."""
        if not candidates:
            raise ValueError("score needs at least one candidate")
        if temperature != 1.0:
            raise ValueError(
                "the OpenAI completions API reports log-probabilities at temperature 1 only; "
                f"score at temperature {temperature} with the in-process engine"
            )
        if not self.end_of_turn:
            raise ValueError(f"{self.base_url} names no end-of-turn token: pass end_of_turn='<token text>' or tokenizer=")
        per_request = max(1, (self.max_prompts_per_request - 1) // (len(candidates) + 1))
        if self.max_prompts_per_request < len(candidates) + 2:
            raise ValueError(f"max_prompts_per_request={self.max_prompts_per_request} cannot hold one prompt with {len(candidates)} candidates")
        settings = {"candidates": list(candidates), "temperature": 1.0, "end_of_turn": self.end_of_turn}
        values = cached_map(self.cache, "score", list(prompts), settings, None,
                            lambda batch: self._score_batch(batch, list(candidates)), REMOTE, per_request)
        return GridScore(list(candidates), np.array([v["logprobs"] for v in values], dtype=np.float64).reshape(len(prompts), len(candidates)))

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> OpenAIEngine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ requests
    def _completions(self, body: dict) -> list[dict]:
        body = {"model": self.model, **body, **self.extra_body}
        if self.token_ids:
            body["return_tokens_as_token_ids"] = True
        choices = self._request("POST", "/completions", body)["choices"]
        return sorted(choices, key=lambda choice: choice["index"])

    def _sample_batch(self, prompts: list[str], n: int, body: dict, config: SamplingConfig) -> list[dict]:
        choices = self._completions({**body, "prompt": prompts})
        if len(choices) != len(prompts) * n:
            raise OpenAIEngineError(f"asked for {n} samples of {len(prompts)} prompts, got {len(choices)} choices")
        results = []
        for p in range(len(prompts)):
            result = {"texts": [], "token_ids": [], "token_logprobs": [], "finish_reasons": []}
            for choice in choices[p * n : (p + 1) * n]:
                logprobs = choice.get("logprobs") or {}
                result["texts"].append(choice["text"])
                result["token_ids"].append(_token_ids(logprobs.get("tokens") or []))
                result["token_logprobs"].append([float(v) for v in logprobs.get("token_logprobs") or []])
                result["finish_reasons"].append(_finish_reason(choice, config))
            results.append(result)
        return results

    def _score_batch(self, prompts: list[str], candidates: list[str]) -> list[dict]:
        """Prompts alone and prompt + candidate + end of turn, echoed; one result row per prompt."""
        texts = [self.end_of_turn]
        for prompt in prompts:
            texts += [prompt] + [prompt + candidate + self.end_of_turn for candidate in candidates]
        choices = self._completions({"prompt": texts, "max_tokens": 0, "echo": True, "logprobs": 0})
        if len(choices) != len(texts):
            raise OpenAIEngineError(f"sent {len(texts)} texts to score, got {len(choices)} choices")
        end_token = _echoed(choices[0], self.end_of_turn)[0][-1]
        rows, at = [], 1
        for prompt in prompts:
            prompt_tokens, _ = _echoed(choices[at], prompt)
            row = []
            for k, candidate in enumerate(candidates):
                tokens, logprobs = _echoed(choices[at + 1 + k], prompt + candidate)
                if tokens[: len(prompt_tokens)] != prompt_tokens:
                    raise OpenAIEngineError(
                        f"candidate {candidate!r} merges with the prompt's last token on this server's tokenizer, "
                        "so its probability cannot be read from echoed log-probabilities exactly"
                    )
                if tokens[-1] != end_token or len(tokens) <= len(prompt_tokens):
                    raise OpenAIEngineError(f"the server did not tokenise {self.end_of_turn!r} as one end-of-turn token after {candidate!r}")
                row.append(float(sum(logprobs[len(prompt_tokens) :])))
            rows.append({"logprobs": row})
            at += 1 + len(candidates)
        return rows

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        return request_json(self._http, method, path, body, retries=self.busy_retries, retry_statuses=(429, 503),
                            timeout_s=self.timeout_s, error=OpenAIEngineError)


def _echoed(choice: dict, text: str) -> tuple[list[str], list[float | None]]:
    """(tokens, log-probabilities) of an echoed text; the first token has none."""
    logprobs = choice.get("logprobs") or {}
    tokens, values = logprobs.get("tokens"), logprobs.get("token_logprobs")
    if not tokens or values is None or len(tokens) != len(values):
        raise OpenAIEngineError(f"the server returned no echoed log-probabilities for {text[:60]!r}")
    if any(v is None for v in values[1:]):
        raise OpenAIEngineError(f"the server left log-probabilities of {text[:60]!r} empty")
    return list(tokens), values


def _token_ids(tokens: list[str]) -> list[int]:
    """Token ids from vLLM's ``token_id:<id>`` strings; [] when the server sent plain token text."""
    if tokens and all(isinstance(t, str) and t.startswith("token_id:") for t in tokens):
        return [int(t.split(":", 1)[1]) for t in tokens]
    return []


def _finish_reason(choice: dict, config: SamplingConfig) -> str:
    """The engine's finish reason ("eos", "stop", "length") from an OpenAI choice.

    ``stop`` with a ``stop_reason`` string (vLLM, the workbench server) is a stop string; ``null``
    is the end of turn. Servers without ``stop_reason`` leave "stop" ambiguous: then it counts as
    a stop string only when the request had some.
    """
    reason = choice.get("finish_reason")
    if reason == "length":
        return "length"
    if "stop_reason" in choice:
        return "stop" if isinstance(choice["stop_reason"], str) else "eos"
    return "stop" if config.stop else "eos"
