"""Command line: serve one model stage over HTTP.

    python -m workbench.serving --model smollm2-135m-instruct --dtype fp32 --port 8000 --api-key KEY

The server binds 127.0.0.1 unless ``--host`` says otherwise (a container needs ``--host 0.0.0.0``).
The key may also come from the ``WORKBENCH_API_KEY`` environment variable, which keeps it out
of the process list.
"""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import fields

import uvicorn

from workbench.inference.engine import HFEngine
from workbench.inference.models import DEFAULT_MODEL, load_model
from workbench.serving.server import create_app
from workbench.serving.service import ServerConfig

_DEFAULTS = {f.name: f.default for f in fields(ServerConfig)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m workbench.serving", description="Serve one model stage over HTTP.")
    model = parser.add_argument_group("model")
    model.add_argument("--model", default=DEFAULT_MODEL, help="embedded name, local folder or hub id")
    model.add_argument("--device", default="auto")
    model.add_argument("--dtype", default="fp32", choices=["fp32", "bf16", "fp16"])
    model.add_argument("--quantize", default=None, choices=["int8", "bf16-linear"])
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=8000)
    server.add_argument("--api-key", default=os.environ.get("WORKBENCH_API_KEY"), help="default: $WORKBENCH_API_KEY")
    server.add_argument("--no-auth", action="store_true", help="serve without an API key")
    server.add_argument("--public-metrics", action="store_true", help="serve /metrics without the API key")
    server.add_argument("--log-level", default="info")
    server.add_argument(
        "--served-model-name", default=None, help="model id of the OpenAI-compatible API (default: the model's name)"
    )
    limits = parser.add_argument_group("batching and limits")
    for name in (
        "max_batch",
        "queue_size",
        "max_body_bytes",
        "max_total_tokens",
        "max_n",
        "max_prompts",
        "max_candidates",
        "chunk_prompts",
    ):
        limits.add_argument(f"--{name.replace('_', '-')}", type=int, default=_DEFAULTS[name])
    for name in ("batch_wait_ms", "request_timeout_s"):
        limits.add_argument(f"--{name.replace('_', '-')}", type=float, default=_DEFAULTS[name])
    args = parser.parse_args(argv)
    if not args.api_key and not args.no_auth:
        parser.error("give --api-key (or set WORKBENCH_API_KEY), or --no-auth for an open server")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    lm = load_model(args.model, device=args.device, dtype=args.dtype, quantize=args.quantize)
    # One micro-batch of single-prompt requests then fits one prefill batch.
    engine = HFEngine(lm, batch_size=args.max_batch, progress=False)
    config = ServerConfig(
        max_batch=args.max_batch,
        batch_wait_ms=args.batch_wait_ms,
        queue_size=args.queue_size,
        max_body_bytes=args.max_body_bytes,
        max_total_tokens=args.max_total_tokens,
        max_n=args.max_n,
        max_prompts=args.max_prompts,
        max_candidates=args.max_candidates,
        chunk_prompts=args.chunk_prompts,
        request_timeout_s=args.request_timeout_s,
        public_metrics=args.public_metrics,
        served_model_name=args.served_model_name,
    )
    app = create_app(engine, None if args.no_auth else args.api_key, config)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
