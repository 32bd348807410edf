"""The ASGI middleware in front of every route: metrics, authentication and the body-size limit.

Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``: it sees each request before any of
its body is read, so an oversized body is refused from its ``Content-Length`` header alone (or,
for a chunked upload, as soon as the bytes received pass the limit), and it leaves the
``receive`` channel to the route, which listens on it for the client's disconnect.

Refusing a body is not enough for the client to *hear* the refusal: a plain client (Python's
urllib, most scripts) uploads its whole body before it reads the answer, and a server that answers
and closes while the upload is still coming in makes the client's TCP stack see a reset, not the
413. So the rest of an oversized body is read and discarded, up to ``max_discard_bytes``, before
the 413 is sent on a connection that stays usable. Beyond that bound the 413 is sent at once and
the connection closed. A client that sends ``Expect: 100-continue`` (curl, for large bodies) gets
the 413 before it uploads anything: the server answers without asking for the body.

Order of checks: authentication (401/403, headers only), then the declared body size (413).
"""

from __future__ import annotations

import json
import secrets
import time

from fastapi import HTTPException

from workbench.serving.telemetry import ServerMetrics


class Gate:
    """ASGI middleware: count and time every request, check the API key and the body size.

    Args:
        app: the ASGI app to protect.
        api_key: the key clients must send (``Authorization: Bearer <key>`` or ``X-API-Key``);
            None disables authentication.
        open_paths: paths served without a key.
        max_body_bytes: largest request body accepted.
        metrics: where requests are counted and timed.
        max_discard_bytes: most bytes of an oversized body read (and discarded) so that the client
            hears the 413; a larger body is refused at once and its connection closed.
    """

    def __init__(
        self,
        app,
        api_key: str | None,
        open_paths: frozenset[str],
        max_body_bytes: int,
        metrics: ServerMetrics,
        max_discard_bytes: int = 64 * 2**20,
    ):
        self.app = app
        self.api_key = api_key
        self.open_paths = open_paths
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics
        self.max_discard_bytes = max_discard_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        endpoint = self.metrics.endpoint_label(scope["path"])
        start = time.perf_counter()
        status = {"code": 500}

        async def send_and_record(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            refusal = self._refusal(scope)
            if refusal is not None:
                code, body, headers = refusal
                if code == 413 and self._hears_after_upload(scope) and await self._discard(receive):
                    headers = {}  # the whole body was read: the connection stays usable
                await _send_json(send_and_record, code, body, headers)
                return
            await self.app(scope, self._limited(receive), send_and_record)
        finally:
            self.metrics.requests.labels(endpoint, str(status["code"])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - start)

    def _refusal(self, scope) -> tuple[int, dict, dict] | None:
        """(status, body, headers) when the request is refused on its headers alone."""
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        if self.api_key is not None and scope["path"] not in self.open_paths:
            supplied = headers.get("x-api-key")
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if supplied is None and scheme.lower() == "bearer":
                supplied = token.strip()
            if not supplied:
                message = "missing API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
                return 401, error_body(scope["path"], 401, message), {"www-authenticate": "Bearer"}
            if not secrets.compare_digest(supplied.encode(), self.api_key.encode()):  # constant time
                return 403, error_body(scope["path"], 403, "invalid API key"), {}
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            return 413, error_body(scope["path"], 413, self._too_large(declared), ["body"]), {"connection": "close"}
        return None

    def _limited(self, receive):
        """``receive`` that refuses a body (e.g. chunked, with no length declared) once it passes the limit."""
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    read_whole = not message.get("more_body", False) or await self._discard(receive, received)
                    problem = limit_problem(["body"], self._too_large(f"more than {self.max_body_bytes}"))
                    raise HTTPException(413, detail=[problem], headers=None if read_whole else {"connection": "close"})
            return message

        return limited_receive

    def _hears_after_upload(self, scope) -> bool:
        """The client uploads its body before reading an answer, and the body is small enough to discard."""
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        if headers.get("expect", "").lower() == "100-continue":
            return False  # it waits for "100 Continue", which is never sent: it hears the 413 at once
        declared = headers.get("content-length", "")
        return declared.isdigit() and int(declared) <= self.max_discard_bytes

    async def _discard(self, receive, received: int = 0) -> bool:
        """Read and drop the rest of the body; False when the client left or it passed ``max_discard_bytes``."""
        while received <= self.max_discard_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return False  # http.disconnect
            received += len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
        return False

    def _too_large(self, size: str) -> str:
        return f"the request body ({size} bytes) exceeds max_body_bytes={self.max_body_bytes}"


def limit_problem(location: list, message: str) -> dict:
    """One problem in the list form of validation errors, for a limit that was exceeded."""
    return {"loc": location, "msg": message, "type": "limit_exceeded"}


def error_body(path: str, status: int, message: str, location: list | None = None) -> dict:
    """The error body for ``path``: OpenAI's ``{"error": {...}}`` under ``/v1/``, else ``{"detail": ...}``.

    >>> error_body("/v1/completions", 413, "too big", ["body"])["error"]["type"]
    'invalid_request_error'
    >>> error_body("/generate", 413, "too big", ["body"])
    {'detail': [{'loc': ['body'], 'msg': 'too big', 'type': 'limit_exceeded'}]}
    """
    if path.startswith("/v1/"):
        kind = {401: "authentication_error", 403: "permission_error", 404: "not_found_error"}.get(
            status, "invalid_request_error"
        )
        kind = "server_error" if status >= 500 else kind
        param = ".".join(str(part) for part in location[1:]) or None if location else None
        return {"error": {"message": message, "type": kind, "param": param, "code": status}}
    if location is not None:
        return {"detail": [limit_problem(location, message)]}
    return {"detail": message}


async def _send_json(send, status: int, body: dict, headers: dict) -> None:
    payload = json.dumps(body).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw_headers += [(name.encode(), value.encode()) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})
