"""Run an app with uvicorn in a background thread: for tests, notebooks and load tests.

The listening socket is bound before the thread starts, so ``port=0`` picks a free port with no
race between choosing and binding it, and :attr:`BackgroundServer.url` is known at once.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn


class BackgroundServer:
    """A uvicorn server for ``app`` in a daemon thread; use as a context manager.

    Args:
        app: an ASGI app, e.g. from :func:`workbench.serving.server.create_app`.
        host: interface to bind; loopback by default so nothing outside this machine can connect.
        port: 0 for any free port.
        log_level: uvicorn's log level.

    Example::

        with BackgroundServer(create_app(engine, api_key="k")) as server:
            RemoteEngine(server.url, "k").greedy(["..."])
    """

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        self._server = uvicorn.Server(uvicorn.Config(app, log_level=log_level, lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:43117``."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        """Start serving; returns once the app has started (lifespan done) and accepts requests."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError("the server thread stopped during start-up (see the log above)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not start within {timeout_s}s")
            time.sleep(0.02)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask uvicorn to exit (runs the app's shutdown) and wait for the thread."""
        self._server.should_exit = True
        self._thread.join(timeout_s)
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
