"""``OpenAIEngine``: the :class:`~workbench.inference.protocol.Engine` protocol over any server with
the OpenAI completions API (vLLM, TGI, llama.cpp's server, the workbench's own ``/v1``).

* ``sample``: ``POST /completions`` with ``n``, ``temperature``, ``top_p``, ``max_tokens``,
  ``stop``, ``seed`` and ``logprobs=0`` (each generated token's log-probability); ``top_k`` is
  sent only when set (a vLLM extension). Token ids come back when the server honours vLLM's
  ``return_tokens_as_token_ids``; otherwise ``SampleSet.token_ids`` holds empty lists.
* ``score``: *echo scoring*. For each prompt, the prompt alone and the prompt followed by each
  candidate and the end-of-turn text are sent with ``echo=true, logprobs=0``: the server returns
  the log-probability of every token of each text. A candidate's log-probability is the sum over
  the tokens after the prompt's own tokens, the end of turn included: exactly what
  :meth:`workbench.inference.engine.HFEngine.score` computes in process. Two checks keep it exact
  or loud: the joint text's tokens must start with the prompt's tokens (else the candidate merged
  into the prompt's last token), and end with the end-of-turn token (else the server did not read
  the end-of-turn text as its special token). The API reports log-probabilities at temperature 1
  only, so ``score`` refuses other temperatures.
* **Servers that take one prompt per request, or ignore ``n``** (llama-cpp-python's server, many
  hosted APIs). How many prompts a request may hold and whether ``n`` is honoured come from the
  constructor, else from the server's model card (the workbench server lists ``max_prompts`` and
  ``max_n``), else from two one-token probe requests on first use (two prompts in one request;
  ``n=2`` for one prompt). A server that ignores ``n`` gets one request per sample, sample ``k``
  of a prompt seeded by (seed, prompt, k), so the samples repeat under the same seed whatever
  the batch; at temperature 0 one request per prompt serves all ``n``. A one-prompt server gets
  one text per scoring request, with ``max_tokens=1`` (llama-cpp-python reads ``max_tokens=0``
  as "until the context is full"); each prompt's echo is checked against one plain request for
  its next token, which catches echoed values shifted against their tokens (llama-cpp-python's
  server shifts them for texts that do not start with the BOS token), and the echo of a longer
  text is cut by its ``usage.prompt_tokens`` (see ``_score_one_by_one``). A server that answers with fewer
  choices than the request asked for raises :class:`OpenAIEngineError`; results are never
  assigned to the wrong prompt.
* The end of turn comes from the server's model card (the workbench server lists it as
  ``end_of_turn``), else from ``end_of_turn=`` or a ``tokenizer=``
  (:func:`workbench.inference.end_of_turn.end_of_turn`).
* Results go through the same generation cache as the HF engine (opt in with ``disk_cache``):
  keyed by the fingerprint, which names the backend, the model id and, when the server reports
  one (the workbench server does), the weights fingerprint, else the server's URL.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx
import numpy as np

from workbench.inference.cachemap import cached_map, sampling_key
from workbench.inference.end_of_turn import end_of_turn as find_end_of_turn
from workbench.inference.gencache import GenerationCache
from workbench.inference.http_json import EngineHTTPError, request_json
from workbench.inference.protocol import greedy_by_sampling, sampling_seed
from workbench.inference.types import GridScore, SampleSet, SamplingConfig
from workbench.paths import cache_dir

REMOTE = "remote"  # the cache key's device: the server's, which its fingerprint identifies
DEFAULT_PROMPTS_PER_REQUEST = 32  # for servers that take lists and state no limit (vLLM has none)
# Statuses with which a server refuses a probe's request shape (rather than the client or the model).
_REFUSED_SHAPE = (400, 413, 422, 500)


class OpenAIEngineError(EngineHTTPError):
    """The server could not be reached, refused a request, or answered something unusable.

    ``status`` is its HTTP status, or None when no answer came.
    """


@dataclass(frozen=True)
class RequestShape:
    """What one request to a server may hold.

    Attributes:
        prompts: most texts per request (1: the server takes one prompt per request).
        honours_n: whether the server returns ``n`` choices per prompt; if not, each sample is
            its own seeded request.
    """

    prompts: int
    honours_n: bool


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
        max_prompts_per_request: most texts sent in one request; default: the server's
            ``max_prompts`` (the workbench server lists it), else 32 when a probe finds that the
            server takes lists of prompts, else 1.
        honours_n: whether the server returns ``n`` samples per prompt; default: True when the
            server lists ``max_n``, else what a probe finds.
        token_ids: ask for token ids (vLLM's ``return_tokens_as_token_ids``); turn off for a
            server that refuses unknown fields.
        extra_body: more fields for every request (e.g. ``{"add_special_tokens": False}`` for a
            vLLM server whose tokenizer would add a BOS token to formatted prompts, or
            ``{"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}`` for llama-cpp-python's server,
            whose defaults would otherwise filter and penalise the distribution).
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
        max_prompts_per_request: int | None = None,
        honours_n: bool | None = None,
        token_ids: bool = True,
        extra_body: dict | None = None,
        timeout_s: float = 300.0,
        busy_retries: int = 3,
    ):
        if max_prompts_per_request is not None and max_prompts_per_request < 1:
            raise ValueError(f"max_prompts_per_request must be at least 1, got {max_prompts_per_request}")
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0)
        )
        self.timeout_s, self.busy_retries = timeout_s, busy_retries
        self.token_ids = token_ids
        self.extra_body = dict(extra_body or {})
        self.tokenizer = tokenizer
        cards = self._request("GET", "/models").get("data", [])
        if not cards:
            raise OpenAIEngineError(f"{self.base_url}/models lists no model")
        card = next((c for c in cards if c.get("id") == model), None) if model else cards[0]
        if card is None:
            raise OpenAIEngineError(
                f"{self.base_url} does not serve {model!r}; it serves {[c.get('id') for c in cards]}"
            )
        self.model = card["id"]
        self.end_of_turn = (
            end_of_turn
            or card.get("end_of_turn")
            or (find_end_of_turn(tokenizer).text if tokenizer is not None else None)
        )
        identity = (
            {"weights": card["fingerprint"]} if isinstance(card.get("fingerprint"), dict) else {"server": self.base_url}
        )
        self._fingerprint = {"name": self.model, "backend": "openai-compatible", **identity}
        self.cache = GenerationCache(cache_dir() / "generations", self._fingerprint) if disk_cache else None
        listed = card.get("max_prompts") if isinstance(card.get("max_prompts"), int) else None
        self._prompts_per_request = max_prompts_per_request or listed
        self._honours_n = True if honours_n is None and isinstance(card.get("max_n"), int) else honours_n
        self._shape: RequestShape | None = None
        self._end_token: str | None = None  # the end-of-turn token as a one-prompt server echoes it

    @property
    def fingerprint(self) -> dict:
        """Backend, model id, and the server's weights fingerprint (or its URL when it reports none)."""
        return self._fingerprint

    @property
    def shape(self) -> RequestShape:
        """What one request may hold: from the constructor, the model card, or probes (on first use)."""
        if self._shape is None:
            prompts = self._prompts_per_request
            if prompts is None:
                prompts = DEFAULT_PROMPTS_PER_REQUEST if self._probe_prompt_lists() else 1
            honours_n = self._probe_n() if self._honours_n is None else self._honours_n
            self._shape = RequestShape(prompts, honours_n)
        return self._shape

    # ------------------------------------------------------------------ Engine interface
    def sample(self, prompts: list[str], n: int, config: SamplingConfig | None = None) -> list[SampleSet]:
        """``n`` samples per prompt (see :meth:`workbench.inference.engine.HFEngine.sample`)."""
        config = config or SamplingConfig()
        body = {
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
        shape = self.shape
        if shape.honours_n or n == 1:
            compute, per_call = (lambda batch: self._sample_batch(batch, n, {**body, "n": n}, config)), shape.prompts
        else:
            # Other draws than one request with n samples: a cache entry of its own.
            settings = {**settings, "requests": "one per sample"}
            compute, per_call = (lambda batch: [self._sample_repeated(prompt, n, body, config) for prompt in batch]), 1
        values = cached_map(self.cache, "sample", list(prompts), settings, config.seed, compute, REMOTE, per_call)
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
            raise ValueError(
                f"{self.base_url} names no end-of-turn token: pass end_of_turn='<token text>' or tokenizer="
            )
        texts_per_request = self.shape.prompts
        if 1 < texts_per_request < len(candidates) + 1:
            raise ValueError(
                f"max_prompts_per_request={texts_per_request} cannot hold one prompt with {len(candidates)} candidates"
            )
        per_call = max(1, texts_per_request // (len(candidates) + 1))
        settings = {"candidates": list(candidates), "temperature": 1.0, "end_of_turn": self.end_of_turn}
        values = cached_map(
            self.cache,
            "score",
            list(prompts),
            settings,
            None,
            lambda batch: self._score_batch(batch, list(candidates)),
            REMOTE,
            per_call,
        )
        logprobs = np.array([v["logprobs"] for v in values], dtype=np.float64)
        return GridScore(list(candidates), logprobs.reshape(len(prompts), len(candidates)))

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> OpenAIEngine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ probes
    def _probe_prompt_lists(self) -> bool:
        """Whether the server answers two prompts in one request with one choice each."""
        try:
            choices = self._completions({"prompt": ["1", "2"], "max_tokens": 1, "temperature": 0.0}, plain=True)
        except OpenAIEngineError as error:
            if error.status in _REFUSED_SHAPE:
                return False
            raise
        return sorted(choice.get("index") for choice in choices) == [0, 1]

    def _probe_n(self) -> bool:
        """Whether the server answers ``n=2`` with two choices (one: it ignores ``n``)."""
        body = {"prompt": "1", "n": 2, "max_tokens": 1, "temperature": 1.0, "seed": 0}
        try:
            choices = self._completions(body, plain=True)
        except OpenAIEngineError as error:
            if error.status in _REFUSED_SHAPE:
                return False
            raise
        if len(choices) not in (1, 2):
            raise OpenAIEngineError(f"asked {self.base_url} for 2 samples of one prompt, got {len(choices)} choices")
        return len(choices) == 2

    # ------------------------------------------------------------------ requests
    def _create(self, body: dict, plain: bool = False) -> dict:
        """One ``POST /completions``; ``plain`` leaves out the optional token-id field (probes)."""
        body = {"model": self.model, **body, **self.extra_body}
        if self.token_ids and not plain:
            body["return_tokens_as_token_ids"] = True
        return self._request("POST", "/completions", body)

    def _completions(self, body: dict, plain: bool = False) -> list[dict]:
        return sorted(self._create(body, plain)["choices"], key=lambda choice: choice["index"])

    def _sample_batch(self, prompts: list[str], n: int, body: dict, config: SamplingConfig) -> list[dict]:
        choices = self._completions({**body, "prompt": prompts})
        if len(choices) != len(prompts) * n:
            raise OpenAIEngineError(
                f"asked for {n} samples of {len(prompts)} prompts, got {len(choices)} choices "
                "(for a server that ignores n or takes one prompt per request, "
                "pass honours_n=False or max_prompts_per_request=1)"
            )
        return [_sample_set(choices[p * n : (p + 1) * n], config) for p in range(len(prompts))]

    def _sample_repeated(self, prompt: str, n: int, body: dict, config: SamplingConfig) -> dict:
        """``n`` samples of one prompt from a server that ignores ``n``: one seeded request each
        (one request in all at temperature 0, where every sample is the same)."""
        draws = 1 if config.temperature == 0 else n
        choices = []
        for k in range(draws):
            # 31-bit seeds: some servers keep a 32-bit seed and would wrap larger ones silently.
            seed = sampling_seed(config.seed, f"{k}\0{prompt}") % 2**31
            answer = self._completions({**body, "prompt": prompt, "n": 1, "seed": seed})
            if len(answer) != 1:
                raise OpenAIEngineError(f"asked for 1 sample of 1 prompt, got {len(answer)} choices")
            choices += answer
        return _sample_set(choices * (n // draws), config)

    def _score_batch(self, prompts: list[str], candidates: list[str]) -> list[dict]:
        """Prompts alone and prompt + candidate + end of turn, echoed; one result row per prompt."""
        if self.shape.prompts == 1:
            return [self._score_one_by_one(prompt, candidates) for prompt in prompts]
        texts = [self.end_of_turn]
        for prompt in prompts:
            texts += [prompt] + [prompt + candidate + self.end_of_turn for candidate in candidates]
        choices = self._completions({"prompt": texts, "max_tokens": 0, "echo": True, "logprobs": 0})
        if len(choices) != len(texts):
            raise OpenAIEngineError(f"sent {len(texts)} texts to score, got {len(choices)} choices")
        echoes = [_echoed(choice, text) for choice, text in zip(choices, texts)]
        end_token, rows, at = echoes[0][0][-1], [], 1
        for _ in prompts:
            prompt_tokens = echoes[at][0]
            rows.append(
                {
                    "logprobs": [
                        self._candidate_logprob(prompt_tokens, *echoes[at + 1 + k], end_token, candidate)
                        for k, candidate in enumerate(candidates)
                    ]
                }
            )
            at += 1 + len(candidates)
        return rows

    def _score_one_by_one(self, prompt: str, candidates: list[str]) -> dict:
        """One prompt's row on a server that takes one text per request.

        Each text is echoed by a request that generates one token (``max_tokens=0`` is not safe on
        every server: llama-cpp-python reads it as "until the context is full"). The prompt's echo
        must end with that token and the log-probability a plain request reports for it, else the
        echoed values are not aligned with their tokens (llama-cpp-python 0.3 shifts them by one
        for a text that does not start with the BOS token). Each longer text keeps as many echoed
        tokens as its ``usage.prompt_tokens`` exceeds the prompt's, which holds whether or not the
        server lists the generated token.
        """
        echo = {"max_tokens": 1, "echo": True, "logprobs": 0, "temperature": 0.0}
        answer = self._create({"prompt": prompt, **echo})
        tokens, logprobs = _echoed(_one_choice(answer, "1 text to score"), prompt)
        plain = _one_choice(
            self._create({"prompt": prompt, "max_tokens": 1, "logprobs": 0, "temperature": 0.0}), "1 prompt"
        )
        expected = plain.get("logprobs") or {}
        if not (
            expected.get("tokens")
            and tokens[-1] == expected["tokens"][0]
            and logprobs[-1] is not None
            and abs(logprobs[-1] - expected["token_logprobs"][0]) < 1e-3
        ):
            raise OpenAIEngineError(
                f"the server's echoed log-probabilities of {prompt[:60]!r} do not end with its next token and the "
                "log-probability it reports for that token without echo, "
                "so they cannot be read as aligned with their tokens "
                "(llama-cpp-python's server misaligns them for texts that do not start with the BOS token)"
            )
        prompt_tokens, prompt_count = tokens[:-1], _prompt_tokens(answer)

        def echoed(text: str) -> tuple[list[str], list[float | None]]:
            """The echo of prompt + more text, cut to the tokens of that text."""
            answer = self._create({"prompt": text, **echo})
            tokens, logprobs = _echoed(_one_choice(answer, "1 text to score"), text)
            keep = len(prompt_tokens) + _prompt_tokens(answer) - prompt_count
            if not len(prompt_tokens) < keep <= len(tokens):
                raise OpenAIEngineError(
                    f"the server echoed {len(tokens)} tokens of {text[-60:]!r}, which has {keep} of its own"
                )
            return tokens[:keep], logprobs[:keep]

        if self._end_token is None:  # how the server shows the end-of-turn token, learnt once
            tokens, _ = echoed(prompt + self.end_of_turn)
            if len(tokens) != len(prompt_tokens) + 1:
                raise OpenAIEngineError(f"the server does not read {self.end_of_turn!r} as one token after a prompt")
            self._end_token = tokens[-1]
        return {
            "logprobs": [
                self._candidate_logprob(
                    prompt_tokens, *echoed(prompt + candidate + self.end_of_turn), self._end_token, candidate
                )
                for candidate in candidates
            ]
        }

    def _candidate_logprob(
        self, prompt_tokens: list[str], tokens: list[str], logprobs: list, end_token: str, candidate: str
    ) -> float:
        """The sum of the echoed log-probabilities after the prompt's tokens, checked to be exactly
        the candidate's tokens and the end of turn."""
        if tokens[: len(prompt_tokens)] != prompt_tokens:
            raise OpenAIEngineError(
                f"candidate {candidate!r} merges with the prompt's last token on this server's tokenizer, "
                "so its probability cannot be read from echoed log-probabilities exactly"
            )
        if tokens[-1] != end_token or len(tokens) <= len(prompt_tokens):
            raise OpenAIEngineError(
                f"the server did not tokenise {self.end_of_turn!r} as one end-of-turn token after {candidate!r}"
            )
        return float(sum(logprobs[len(prompt_tokens) :]))

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        return request_json(
            self._http,
            method,
            path,
            body,
            retries=self.busy_retries,
            retry_statuses=(429, 503),
            timeout_s=self.timeout_s,
            error=OpenAIEngineError,
        )


def _sample_set(choices: list[dict], config: SamplingConfig) -> dict:
    """One prompt's :class:`SampleSet` fields from its choices."""
    result = {"texts": [], "token_ids": [], "token_logprobs": [], "finish_reasons": []}
    for choice in choices:
        logprobs = choice.get("logprobs") or {}
        result["texts"].append(choice["text"])
        result["token_ids"].append(_token_ids(logprobs.get("tokens") or []))
        result["token_logprobs"].append([float(v) for v in logprobs.get("token_logprobs") or []])
        result["finish_reasons"].append(_finish_reason(choice, config))
    return result


def _prompt_tokens(answer: dict) -> int:
    count = (answer.get("usage") or {}).get("prompt_tokens")
    if not isinstance(count, int):
        raise OpenAIEngineError("the server reports no usage.prompt_tokens, which scoring one text per request needs")
    return count


def _one_choice(answer: dict, sent: str) -> dict:
    if len(answer.get("choices") or []) != 1:
        raise OpenAIEngineError(f"sent {sent}, got {len(answer.get('choices') or [])} choices")
    return answer["choices"][0]


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
