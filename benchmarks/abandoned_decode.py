"""The next request's latency after clients abandon long generations, with and without cancellation
inside the decode loop (issue 22).

A server on loopback runs the embedded model on CPU. Clients send long sampling jobs together (one
engine call) and hang up after ``--give-up-after`` seconds; then one short greedy request is
timed. With cancellation, the abandoned rows stop within one decoding step; without it (the engine
ignores the ``cancelled`` signal, as before issue 22), the short request waits for the whole
abandoned call. The short request alone on the idle server is the reference.

    python benchmarks/abandoned_decode.py --clients 4 --n 8 --max-new-tokens 200

The figures are appended to results/benchmarks.jsonl (``--no-save`` to only print them).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from workbench.inference.engine import HFEngine
from workbench.inference.models import load_model
from workbench.runs import BENCHMARK_RECORDS, append_record
from workbench.serving import BackgroundServer, ServerConfig, create_app

KEY = "benchmark-key"


class IgnoresCancellation(HFEngine):
    """The engine as it was before issue 22: a call in progress runs to its end."""

    def sample(self, prompts, n, config=None, cancelled=None):
        return super().sample(prompts, n, config)


def chat(lm, question: str) -> str:
    messages = [{"role": "user", "content": question}]
    return lm.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def measure(engine: HFEngine, lm, clients: int, n: int, max_new_tokens: int, give_up_after_s: float) -> dict:
    """Seconds of the short request alone and after the abandoned jobs, and the tokens the stopped rows had decoded."""
    config = ServerConfig(max_batch=clients, batch_wait_ms=200, max_total_tokens=2048, max_n=n, chunk_prompts=clients)
    headers = {"X-API-Key": KEY}
    short = {"prompts": [chat(lm, "What is 2 plus 3?")], "temperature": 0, "max_new_tokens": 4}
    long_job = {
        "prompts": [chat(lm, "Write a very long story about a dragon and a knight.")],
        "n": n,
        "temperature": 1.0,
        "max_new_tokens": max_new_tokens,
        "seed": 3,
    }
    with (
        BackgroundServer(create_app(engine, KEY, config)) as server,
        httpx.Client(base_url=server.url, headers=headers, timeout=3600) as client,
    ):
        client.post("/generate", json=short).raise_for_status()  # warm-up
        start = time.perf_counter()
        client.post("/generate", json=short).raise_for_status()
        alone_s = time.perf_counter() - start
        barrier = threading.Barrier(clients)

        def hang_up(_: int) -> None:
            barrier.wait()
            try:
                httpx.post(f"{server.url}/generate", json=long_job, headers=headers, timeout=give_up_after_s)
            except httpx.TimeoutException:
                return
            raise RuntimeError("a long job finished before its client hung up: raise --max-new-tokens")

        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(hang_up, range(clients)))
        start = time.perf_counter()
        client.post("/generate", json=short).raise_for_status()
        next_s = time.perf_counter() - start
        metrics = client.get("/metrics").text
    counter = "workbench_abandoned_tokens_total"
    abandoned = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith(counter))
    return {"alone_s": alone_s, "next_s": next_s, "abandoned_tokens": abandoned}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument("--give-up-after", type=float, default=1.0)
    parser.add_argument("--no-save", action="store_true", help="do not append to the results")
    args = parser.parse_args()
    lm = load_model(device="cpu")
    rows = []
    engines = (("cancellation in the decode loop", HFEngine), ("no cancellation (before)", IgnoresCancellation))
    for label, engine_class in engines:
        engine = engine_class(lm, progress=False)
        rows.append((label, measure(engine, lm, args.clients, args.n, args.max_new_tokens, args.give_up_after)))
    print(f"{args.clients} clients x n={args.n} x {args.max_new_tokens} tokens, hung up after {args.give_up_after} s")
    print(f"{'engine':34s} {'alone s':>8s} {'next s':>8s} {'next/alone':>10s} {'stopped rows decoded':>21s}")
    for label, r in rows:
        ratio = r["next_s"] / r["alone_s"]
        print(f"{label:34s} {r['alone_s']:8.2f} {r['next_s']:8.2f} {ratio:10.1f} {r['abandoned_tokens']:21.0f}")
    print(f"next request, before / with cancellation: {rows[1][1]['next_s'] / rows[0][1]['next_s']:.1f}x")
    if not args.no_save:
        settings = {"clients": args.clients, "n": args.n, "max_new_tokens": args.max_new_tokens}
        append_record(
            "abandoned_decode",
            {**settings, "give_up_after_s": args.give_up_after, "load_average": os.getloadavg(), "engines": dict(rows)},
        )
        print(f"appended to {BENCHMARK_RECORDS}")


if __name__ == "__main__":
    main()
