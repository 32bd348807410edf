"""Serve a model stage over HTTP, call it like a local engine, and load-test it.

* :func:`create_app` (``server``) / :class:`ServerConfig` (``service``): the FastAPI app, with auth,
  limits, a bounded queue, micro-batching, dropping of abandoned work and Prometheus metrics; it
  also speaks the OpenAI completions API (``openai_api``); ``python -m workbench.serving`` runs it.
* :class:`RemoteEngine` (``client``): ``sample`` / ``greedy`` / ``score`` over HTTP, returning
  the same types as :class:`workbench.inference.engine.HFEngine`.
* :class:`BackgroundServer` (``background``): uvicorn in a thread, for notebooks and tests.
* :func:`workbench.serving.loadtest.run_load_test`: throughput, latency percentiles and
  exactly-once checks (``python -m workbench.serving.loadtest``; not imported here, so that
  running it as a module does not import it twice).
"""

from workbench.serving.background import BackgroundServer
from workbench.serving.client import RemoteEngine, RemoteEngineError
from workbench.serving.server import create_app
from workbench.serving.service import ServerConfig

__all__ = [
    "BackgroundServer",
    "RemoteEngine",
    "RemoteEngineError",
    "ServerConfig",
    "create_app",
]
