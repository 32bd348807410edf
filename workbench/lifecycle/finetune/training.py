"""The training loop: :func:`finetune` trains, selects the best dev evaluation's weights,
checkpoints and resumes, and returns a :class:`FinetuneResult`.

Checkpoints are written every ``save_every`` steps (:mod:`~workbench.lifecycle.finetune.checkpoints`)
and :func:`finetune` resumes from the latest readable one (an unreadable newest checkpoint is
reported with a warning naming the file, and the previous is used). The batch order is a function
of the seed and the step (:func:`~workbench.lifecycle.finetune.batching.batch_schedule`), so an
interrupted and resumed run ends with the same weights as an uninterrupted one. The final model,
LoRA merged, is an ordinary Hugging Face folder that :func:`workbench.inference.models.load_model`
opens.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoTokenizer, get_linear_schedule_with_warmup

from workbench import tracking
from workbench.inference.models import LoadedModel, load_model
from workbench.lifecycle.finetune.batching import batch_schedule, steps_per_epoch
from workbench.lifecycle.finetune.checkpoints import (
    json_round_trip,
    load_best_weights,
    load_latest_checkpoint,
    save_best_weights,
    save_checkpoint,
    save_final_model,
)
from workbench.lifecycle.finetune.config import FinetuneConfig
from workbench.lifecycle.finetune.encoding import data_sha256, training_set
from workbench.lifecycle.finetune.loss import ObjectiveLoss
from workbench.lifecycle.finetune.model import as_loaded_model, make_trainable, precision_autocast
from workbench.lifecycle.finetune.selection import (
    dev_metrics,
    dev_sets,
    dev_summary,
    evaluate_dev,
    evaluations_since_best,
)
from workbench.lifecycle.finetune.trunk import FrozenTrunk
from workbench.lifecycle.finetune.trunk_store import TensorStore
from workbench.progress import tqdm
from workbench.tasks import Example


@dataclass
class FinetuneResult:
    """What a run produced.

    Attributes:
        config: the settings.
        losses: training loss of every step (answer NLL per token for "ce", the batch's grid loss
            otherwise), resumed steps included.
        steps: optimisation steps done (fewer than planned when early stopping fired).
        resumed_from: the step the run resumed from (0: fresh start; ``steps``: a finished run reused).
        examples: number of training examples.
        seconds: wall time of this call.
        model_dir: the saved model folder (None for in-memory runs).
        model: the trained model in eval mode (LoRA merged); None when a finished run was reused.
        tokenizer: its tokenizer.
        dev_history: one record per dev evaluation: step, per-task scores and the selection loss.
        best_step: the step whose weights were kept (the best dev evaluation; the last step without dev data).
        throughput: training examples/s, tokens/s, wall seconds and process CPU seconds (user + system, all
            threads: what the steps would take on an idle machine) of this call's steps (dev evaluations excluded);
            with a frozen trunk also its layers, the seconds spent computing its outputs (part of the steps'
            time) and its cache hits and misses.
    """

    config: FinetuneConfig
    losses: list[float]
    steps: int
    resumed_from: int
    examples: int
    seconds: float
    model_dir: Path | None = None
    model: torch.nn.Module | None = field(default=None, repr=False)
    tokenizer: object = field(default=None, repr=False)
    dev_history: list[dict] = field(default_factory=list)
    best_step: int | None = None
    throughput: dict = field(default_factory=dict)

    @property
    def best_objective(self) -> float:
        """The lowest dev selection loss seen (NaN without dev evaluations)."""
        return min((record["objective"] for record in self.dev_history), default=float("nan"))

    def loaded(self) -> LoadedModel:
        """The in-memory model as a :class:`LoadedModel` (for :class:`workbench.inference.engine.HFEngine`)."""
        if self.model is None:
            return load_model(str(self.model_dir), device=self.config.device)
        return as_loaded_model(self.model, self.tokenizer, f"finetune:{self.config.run_id()}")


def finetune(
    config: FinetuneConfig,
    examples: dict[str, list[Example]] | None = None,
    callback: Callable[[int, float], None] | None = None,
    progress: bool = True,
    dev: dict[str, list[Example]] | None = None,
    trunk_store: TensorStore.Config | None = None,
) -> FinetuneResult:
    """Train, checkpointing and resuming under ``config.output_dir``, and save the final model there.

    Args:
        config: the run settings.
        examples: optional ``{task: training examples}``; by default each task's train split.
        callback: called as ``callback(step, loss)`` after every step; raising stops the run
            (an optuna pruner, or a test simulating an interruption).
        progress: show a tqdm bar with the running loss.
        dev: optional ``{task: dev examples}`` for model selection; by default, when
            ``config.eval_every`` is set, a seeded subset of ``config.dev_examples`` of each dev split.
        trunk_store: where the frozen trunk's outputs are kept (``config.trunk_cache``; default
            :class:`TensorStore.Config`, whose bounds are written there alone).

    Returns:
        A :class:`FinetuneResult`. When ``output_dir`` already holds the finished run, it is
        reused without training (``model`` is then None; open ``model_dir`` with ``load_model``).
    """
    started = time.time()
    out = Path(config.output_dir) if config.output_dir else None
    if out is not None and (out / "model" / "config.json").exists():
        return _finished_run(config, out, examples)

    torch.manual_seed(config.seed)
    lm = load_model(config.base, device=config.device)
    tokenizer, model = lm.tokenizer, make_trainable(lm.model, config)
    encoded = training_set(config, tokenizer, examples)
    total = config.max_steps or math.ceil(config.epochs * steps_per_epoch(encoded, config.batch_size))
    schedule = batch_schedule(encoded, config.batch_size, total, config.seed)
    trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(trainable.values(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(config.warmup_fraction * total), total)
    key = {"config": json_round_trip(config.training_key()), "data": data_sha256(encoded)}
    evaluations = dev_sets(config, dev) if (config.eval_every or dev is not None) else {}
    # The frozen lower layers' outputs, computed once per example (None: the whole model runs every step).
    trunk = FrozenTrunk.for_training(model, lm.fingerprint["weights_sha256"], config, trunk_store)
    objective_loss = ObjectiveLoss(model, tokenizer, config, trunk)

    start, losses, history, best = 0, [], [], None  # best: (objective, step)
    checkpoint, state = load_latest_checkpoint(out) if out is not None else (None, None)
    if state is not None:
        if state["key"] != key:
            raise ValueError(f"checkpoint {checkpoint} belongs to a different run (config or data changed)")
        with torch.no_grad():
            for name, value in state["trainable"].items():
                trainable[name].copy_(value)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        start, losses, history = state["step"], list(state["losses"]), list(state.get("dev_history", []))
        best = tuple(state["best"]) if state.get("best") else None
    best_weights = load_best_weights(out) if best is not None else None

    device = lm.device
    model.train()
    bar = tqdm(total=total, initial=start, desc=f"finetune {config.method}", disable=not progress)
    train_seconds = train_cpu = 0.0
    train_examples = train_tokens = 0
    done, stale = start, evaluations_since_best(history, best)
    # One MLflow run per training call (nested under the notebook's run, if any): the loss curve,
    # the dev metrics of every evaluation, and the throughput. A resumed run re-logs the steps it
    # restored, so its curve is whole.
    params = {
        **config.training_key(),
        "examples": len(encoded),
        "steps": total,
        "resumed_at_step": start,
        "output_dir": str(out),
    }
    with tracking.run(f"finetune {config.method} {config.objective}", experiment="finetune", params=params) as tracker:
        for step, value in enumerate(losses, start=1):
            tracker.log_metrics({"train_loss": value}, step=step)
        for record in history:
            tracker.log_metrics(
                {"dev_selection_loss": record["objective"], **dev_metrics(record["scores"])}, step=record["step"]
            )
        for step in range(start, total):
            batch = [encoded[i] for i in schedule[step]]
            tick, tick_cpu = time.time(), time.process_time()
            with precision_autocast(device, config.precision):
                loss, _ = objective_loss.loss(batch)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable.values(), config.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            train_seconds, train_cpu = train_seconds + time.time() - tick, train_cpu + time.process_time() - tick_cpu
            train_examples, train_tokens = (
                train_examples + len(batch),
                train_tokens + sum(len(e.input_ids) for e in batch),
            )
            step_loss = float(loss.detach())
            losses.append(step_loss)
            tracker.log_metrics({"train_loss": step_loss}, step=step + 1)
            bar.update(1)
            bar.set_postfix(
                loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}", ex_s=f"{train_examples / train_seconds:.2f}"
            )
            done = step + 1
            if evaluations and ((config.eval_every and done % config.eval_every == 0) or done == total):
                scores, objective = evaluate_dev(model, tokenizer, evaluations, config.precision, trunk=trunk)
                history.append({"step": done, "scores": scores, "objective": objective})
                tracker.log_metrics({"dev_selection_loss": objective, **dev_metrics(scores)}, step=done)
                bar.write(f"step {done}: {dev_summary(objective, scores)}")
                if best is None or objective < best[0]:
                    best, stale = (objective, done), 0
                    best_weights = {n: p.detach().cpu().clone() for n, p in trainable.items()}
                    if out is not None:
                        save_best_weights(out, best_weights)
                else:
                    stale += 1
            stopping = config.patience is not None and stale >= config.patience
            if out is not None and config.save_every and (done % config.save_every == 0 or stopping) and done < total:
                state = {
                    "step": done,
                    "key": key,
                    "losses": losses,
                    "rng": torch.get_rng_state(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "trainable": {n: p.detach().cpu() for n, p in trainable.items()},
                    "dev_history": history,
                    "best": list(best) if best else None,
                }
                save_checkpoint(out, state, config.keep_checkpoints)
            if callback is not None:
                callback(done, step_loss)
            if stopping:
                bar.write(
                    f"early stop at step {done}: no dev improvement in {stale} evaluations; keeping step {best[1]}"
                )
                break
        bar.close()

        if best_weights is not None:  # model selection: the best dev evaluation's weights
            with torch.no_grad():
                for name, value in best_weights.items():
                    trainable[name].copy_(value)
        if config.method == "lora":
            model = model.merge_and_unload()
        model.eval()
        throughput = (
            {
                "examples_per_s": train_examples / train_seconds,
                "tokens_per_s": train_tokens / train_seconds,
                "train_seconds": train_seconds,
                "train_cpu_seconds": train_cpu,
                **(trunk.summary() if trunk is not None else {}),
            }
            if train_seconds
            else {}
        )
        tracker.log_metrics({f"throughput_{k}": v for k, v in throughput.items()})
        tracker.set_tags({"best_step": best[1] if best else done})
    result = FinetuneResult(
        config,
        losses,
        done,
        start,
        len(encoded),
        time.time() - started,
        model=model,
        tokenizer=tokenizer,
        dev_history=history,
        best_step=best[1] if best else done,
        throughput=throughput,
    )
    if out is not None:
        log = {
            "key": key["config"],
            "data": key["data"],
            "losses": losses,
            "steps": done,
            "examples": len(encoded),
            "dev_history": history,
            "best_step": result.best_step,
            "throughput": throughput,
        }
        result.model_dir = save_final_model(out, model, tokenizer, log)
    return result


def _finished_run(config: FinetuneConfig, out: Path, examples: dict[str, list[Example]] | None) -> FinetuneResult:
    """The finished run saved in ``out``, reused without training, after checking it is this config's and data's."""
    log = json.loads((out / "training.json").read_text())
    encoded = training_set(config, AutoTokenizer.from_pretrained(out / "model"), examples)
    if log["key"] != json_round_trip(config.training_key()) or log["data"] != data_sha256(encoded):
        raise ValueError(
            f"{out} holds a different finished run (config or data); use run_dir(config, examples) or a new output_dir"
        )
    return FinetuneResult(
        config,
        log["losses"],
        log["steps"],
        log["steps"],
        log["examples"],
        0.0,
        out / "model",
        dev_history=log.get("dev_history", []),
        best_step=log.get("best_step"),
        throughput=log.get("throughput", {}),
    )
