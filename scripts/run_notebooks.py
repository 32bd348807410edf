"""Execute the numbered notebooks headless with papermill, in order, under one profile.

    python scripts/run_notebooks.py --profile smoke            # every notebook, CI settings
    python scripts/run_notebooks.py --profile default 02 03    # only notebooks 02 and 03

Executed copies (with outputs) go to runs/<profile>/; the notebooks in notebooks/ stay clean.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import papermill

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="default", choices=["smoke", "default", "full"])
    parser.add_argument("--timeout", type=int, default=3600, help="seconds allowed for any one cell")
    parser.add_argument("only", nargs="*", help="notebook number prefixes to run (default: all)")
    args = parser.parse_args()

    notebooks = sorted(p for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb") if not args.only or p.name[:2] in args.only)
    if not notebooks:
        print("no notebooks matched", file=sys.stderr)
        return 1
    out_dir = ROOT / "runs" / args.profile
    out_dir.mkdir(parents=True, exist_ok=True)
    for notebook in notebooks:
        start = time.time()
        print(f"[{args.profile}] {notebook.name} ...", flush=True)
        papermill.execute_notebook(
            str(notebook),
            str(out_dir / notebook.name),
            parameters={"PROFILE": args.profile},
            cwd=str(notebook.parent),
            execution_timeout=args.timeout,
            kernel_name="python3",
            progress_bar=False,
        )
        print(f"[{args.profile}] {notebook.name} done in {time.time() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
