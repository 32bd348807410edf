"""What a fine-tuning run writes to its folder, atomically, so an interruption never leaves a
half-written file where a reader would take it for whole.

Layout of ``output_dir``: ``checkpoints/step-NNNNNN.pt`` (trainable weights, optimizer, scheduler,
step, RNG, losses, dev history; the latest ``keep`` kept), ``best.pt`` (the weights of the best dev
evaluation so far), and at the end ``model/`` (an ordinary Hugging Face folder, LoRA merged) with
``training.json`` (the run's key, losses, dev history, throughput); the checkpoints and
``best.pt`` are removed then.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import warnings
from pathlib import Path

import torch


def save_checkpoint(output_dir: Path, state: dict, keep: int = 2) -> Path:
    """Write ``checkpoints/step-NNNNNN.pt`` atomically and prune all but the ``keep`` latest.

    Raises:
        OSError: the write failed (a full disk, say), naming the checkpoint; the partial file is
            removed and the previous checkpoints stay as they were.
    """
    folder = Path(output_dir) / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{state['step']:06d}.pt"
    tmp = path.with_suffix(".tmp")
    try:
        torch.save(state, tmp)  # a full disk raises OSError, or torch's RuntimeError "file write failed"
    except (OSError, RuntimeError) as error:
        tmp.unlink(missing_ok=True)
        raise OSError(
            getattr(error, "errno", None) or errno.EIO,
            f"could not write checkpoint {path} ({error}); the previous checkpoints in {folder} are intact",
        ) from error
    os.replace(tmp, path)  # an interruption mid-write leaves the previous checkpoint intact
    for old in sorted(folder.glob("step-*.pt"))[:-keep]:
        old.unlink()
    return path


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The checkpoint with the highest step, or None."""
    found = sorted((Path(output_dir) / "checkpoints").glob("step-*.pt"))
    return found[-1] if found else None


def load_latest_checkpoint(output_dir: Path) -> tuple[Path | None, dict | None]:
    """The newest checkpoint that loads, newest first: an unreadable one is skipped with a warning naming it.

    Returns:
        ``(path, state)``, or ``(None, None)`` when there is no readable checkpoint.
    """
    for path in sorted((Path(output_dir) / "checkpoints").glob("step-*.pt"), reverse=True):
        try:
            return path, torch.load(path, weights_only=True)
        except Exception as error:  # truncated file, bad zip, unpickling error: fall back to an older one
            warnings.warn(
                f"checkpoint {path} is unreadable ({type(error).__name__}: {error}); "
                "falling back to the previous checkpoint",
                stacklevel=2,
            )
    return None, None


def save_best_weights(output_dir: Path, weights: dict) -> None:
    """Write ``best.pt``, the trainable weights of the best dev evaluation so far."""
    tmp = Path(output_dir) / "best.pt.tmp"
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    torch.save(weights, tmp)
    os.replace(tmp, Path(output_dir) / "best.pt")


def load_best_weights(output_dir: Path | None) -> dict | None:
    """The weights :func:`save_best_weights` wrote, or None (no folder, or no file in it)."""
    path = None if output_dir is None else Path(output_dir) / "best.pt"
    return torch.load(path, weights_only=True) if path is not None and path.exists() else None


def save_final_model(out: Path, model, tokenizer, log: dict) -> Path:
    """Save the model and tokenizer to ``out/model`` and ``log`` to ``out/training.json``, then drop the checkpoints.

    Returns:
        The model folder.
    """
    target, tmp = out / "model", out / "model.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    log_tmp = out / "training.json.tmp"
    log_tmp.write_text(json.dumps(log))
    os.replace(log_tmp, out / "training.json")
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)  # the model folder appears complete or not at all
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    (out / "best.pt").unlink(missing_ok=True)
    return target


def json_round_trip(value):
    """``value`` as it reads back from JSON: tuples become lists, so stored and live keys compare equal.

    >>> json_round_trip({"tasks": ("sst5", "stsb")})
    {'tasks': ['sst5', 'stsb']}
    """
    return json.loads(json.dumps(value))
