"""JSON over HTTP for the engines that call a server: one request with retries, one error type.

:class:`~workbench.serving.client.RemoteEngine` (the workbench's own API) and
:class:`~workbench.inference.openai_compat.OpenAIEngine` (any OpenAI-compatible server) send their
requests through :func:`request_json`; each raises its own subclass of :class:`EngineHTTPError`.
"""

from __future__ import annotations

import time

import httpx


class EngineHTTPError(RuntimeError):
    """The server could not be reached, refused a request, or answered something unusable.

    Attributes:
        status: the HTTP status code, or None when no answer came.
    """

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


def request_json(
    http: httpx.Client,
    method: str,
    path: str,
    body: dict | None = None,
    *,
    retries: int,
    retry_statuses: tuple[int, ...],
    timeout_s: float,
    error: type[EngineHTTPError] = EngineHTTPError,
) -> dict:
    """Send one request and return its JSON answer.

    A status in ``retry_statuses`` (the server is busy) is retried up to ``retries`` times, after
    the answer's ``Retry-After`` seconds (1 when it gives none).

    Raises:
        error: when no answer came within ``timeout_s``, the server cannot be reached, or it
            answered with an error status (``status`` set, the server's explanation in the message).
    """
    where = f"{method} {str(http.base_url).rstrip('/')}{path}"
    for attempt in range(retries + 1):
        try:
            response = http.request(method, path, json=body)
        except httpx.TimeoutException as cause:
            raise error(f"{where}: no answer within {timeout_s}s") from cause
        except httpx.TransportError as cause:
            raise error(f"{where}: cannot reach the server ({cause})") from cause
        if response.status_code not in retry_statuses or attempt == retries:
            break
        time.sleep(float(response.headers.get("Retry-After", "1")))
    if response.is_error:
        raise error(f"{method} {path} answered {response.status_code}: {error_message(response)}", response.status_code)
    return response.json()


def error_message(response: httpx.Response) -> str:
    """The server's explanation: an OpenAI-style ``error.message``, else ``message``, else ``detail``,
    else the raw text."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500]
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("message"))
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)
    return str(body)
