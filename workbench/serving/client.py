"""``RemoteEngine``: the :class:`workbench.inference.protocol.Engine` protocol over the workbench server's own API.

Code written against ``Engine`` (``sample``, ``greedy``, ``score``) runs unchanged against a
server: the same arguments, and the same :class:`SampleSet` / :class:`GridScore` results.
Long prompt lists are split into requests of at most the server's ``max_prompts``; a busy server
(503) is retried after its ``Retry-After`` hint a few times before giving up.
"""

from __future__ import annotations

from dataclasses import asdict

import httpx
import numpy as np

from workbench.inference.http_json import EngineHTTPError, request_json
from workbench.inference.protocol import greedy_by_sampling
from workbench.inference.types import GridScore, SampleSet, SamplingConfig


class RemoteEngineError(EngineHTTPError):
    """The server could not be reached or refused a request (``status``: its HTTP status, None without an answer)."""


class RemoteEngine:
    """A client for ``python -m workbench.serving``, interchangeable with a local ``Engine``.

    Args:
        base_url: e.g. "http://127.0.0.1:8000".
        api_key: the server's key, sent as a bearer token; None for an open server.
        timeout_s: most seconds to wait for one answer (a big request can take a while on CPU).
        busy_retries: how often to retry a request the server refused as busy (503).
    """

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 300.0, busy_retries: int = 3):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.busy_retries = busy_retries
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0)
        )
        self._max_prompts: int | None = None
        self._fingerprint: dict | None = None

    # ------------------------------------------------------------------ Engine interface
    def sample(self, prompts: list[str], n: int, config: SamplingConfig | None = None) -> list[SampleSet]:
        """Draw ``n`` samples for each prompt (see :meth:`Engine.sample`)."""
        config = config or SamplingConfig()
        settings = {**asdict(config), "stop": list(config.stop)}
        sets = []
        for chunk in self._chunks(prompts):
            answer = self._request("POST", "/generate", {"prompts": chunk, "n": n, "logprobs": True, **settings})
            sets += [
                SampleSet(
                    texts=r["texts"],
                    token_ids=r["token_ids"],
                    token_logprobs=r["token_logprobs"],
                    finish_reasons=r["finish_reasons"],
                )
                for r in answer["results"]
            ]
        return sets

    def greedy(self, prompts: list[str], max_new_tokens: int = 32, stop: tuple[str, ...] = ()) -> list[str]:
        """The greedy answer for each prompt (see :meth:`Engine.greedy`)."""
        return greedy_by_sampling(self, prompts, max_new_tokens, stop)

    def score(self, prompts: list[str], candidates: list[str], temperature: float = 1.0) -> GridScore:
        """Exact probability of each candidate answer (see :meth:`Engine.score`)."""
        if not candidates:
            raise ValueError("score needs at least one candidate")
        rows = []
        for chunk in self._chunks(prompts):
            rows += self._request(
                "POST", "/score", {"prompts": chunk, "candidates": list(candidates), "temperature": temperature}
            )["logprobs"]
        return GridScore(list(candidates), np.asarray(rows, dtype=np.float64).reshape(len(prompts), len(candidates)))

    # ------------------------------------------------------------------ server information
    @property
    def fingerprint(self) -> dict:
        """The served stage's fingerprint, as ``/health`` reports it (read once)."""
        if self._fingerprint is None:
            self._fingerprint = self.health()["fingerprint"]
        return self._fingerprint

    def health(self) -> dict:
        """The server's ``/health``: model fingerprint, queue depth, limits."""
        return self._request("GET", "/health")

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> RemoteEngine:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ transport
    def _chunks(self, prompts: list[str]) -> list[list[str]]:
        if not prompts:
            return []
        if self._max_prompts is None:
            self._max_prompts = int(self.health()["limits"]["max_prompts"])
        size = self._max_prompts
        return [list(prompts[start : start + size]) for start in range(0, len(prompts), size)]

    def _request(self, method: str, path: str, body: dict | None = None) -> dict:
        return request_json(
            self._http,
            method,
            path,
            body,
            retries=self.busy_retries,
            retry_statuses=(503,),
            timeout_s=self.timeout_s,
            error=RemoteEngineError,
        )
