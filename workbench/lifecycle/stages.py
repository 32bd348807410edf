"""Lifecycle stages: named, fingerprinted model variants that every notebook loads by name.

A stage is a recipe: a source (the embedded model or a saved Hugging Face folder), a dtype and a
quantisation. bf16 and int8 variants are not stored as extra weights; they are derived from the
source on load, which is deterministic. What the registry keeps is the fingerprint of the weights
that came out at registration, so :func:`load_stage` can refuse a stage whose source has changed
since (re-trained, edited, replaced) instead of quietly producing numbers for other weights::

    register_stage("finetuned-fp32", "/path/to/model", task="sst5+stsb")
    lm = load_stage("finetuned-fp32")          # a LoadedModel, fingerprint checked

Every base model has its own lifecycle and so its own registry: a JSON file
``<cache>/stages/<model id>.json`` (``$WORKBENCH_STAGES`` replaces the folder, the ``registry``
argument the file). The base stages ``base-fp32``, ``base-bf16`` and ``base-int8`` of that model
need no registration: they are registered on first load. Every function takes ``base_model``
(default: the embedded model), so the same notebook runs any model's lifecycle::

    load_stage("base-bf16", base_model="Qwen/Qwen2.5-0.5B-Instruct")
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from workbench.inference.models import DEFAULT_MODEL, LoadedModel, load_model, model_id
from workbench.paths import cache_dir

# suffix -> (dtype, quantize); "int8" keeps the output layer and the MLP down-projections in fp32
# (see workbench.inference.models.QUANTIZATIONS for why).
VARIANTS = {"fp32": ("fp32", None), "bf16": ("bf16", None), "int8": ("fp32", "int8")}
_CHECKED = ("dtype", "quantization", "weights_sha256")  # the source name may be spelled differently


class FingerprintMismatch(RuntimeError):
    """A stage's weights no longer match the fingerprint recorded when it was registered."""


@dataclass
class Stage:
    """One registered stage.

    Attributes:
        name: the name notebooks use.
        source: embedded model name or absolute path of a saved model folder.
        dtype: "fp32", "bf16" or "fp16".
        quantize: None or an int8 recipe of :data:`workbench.inference.models.QUANTIZATIONS` (dynamic, CPU).
        fingerprint: the :attr:`LoadedModel.fingerprint` recorded at registration.
        task: what the stage was trained for, if anything.
        notes: free text (training run, profile, ...).
        registered: when it was registered (UTC, ISO 8601).
    """

    name: str
    source: str
    dtype: str = "fp32"
    quantize: str | None = None
    fingerprint: dict = field(default_factory=dict)
    task: str | None = None
    notes: str = ""
    registered: str = ""


def base_stages(base_model: str = DEFAULT_MODEL) -> dict[str, dict]:
    """The recipes of ``base-fp32``, ``base-bf16`` and ``base-int8``: the base model as shipped."""
    return {
        f"base-{suffix}": {
            "source": base_model,
            "dtype": dtype,
            "quantize": quantize,
            "notes": f"{base_model} as shipped",
        }
        for suffix, (dtype, quantize) in VARIANTS.items()
    }


def finetuned_prefix(profile: str = "default") -> str:
    """The name prefix of notebook 04's fine-tuned stages in ``profile``.

    ``finetuned`` in the default profile, ``finetuned-<profile>`` in the others: a smoke run (CI, a
    quick check) or a full run must not replace the stages that the default profile's notebooks 06
    and 07 compare.

    >>> finetuned_prefix("default"), finetuned_prefix("smoke")
    ('finetuned', 'finetuned-smoke')
    """
    return "finetuned" if profile == "default" else f"finetuned-{profile}"


def registry_path(registry: str | Path | None = None, base_model: str = DEFAULT_MODEL) -> Path:
    """The registry file: ``registry`` if given, else ``<$WORKBENCH_STAGES or <cache>/stages>/<model id>.json``.

    >>> registry_path("/tmp/mine.json").name, registry_path(base_model="Qwen/Qwen2.5-0.5B").name
    ('mine.json', 'Qwen--Qwen2.5-0.5B.json')
    """
    if registry is not None:
        return Path(registry)
    configured = os.environ.get("WORKBENCH_STAGES")
    folder = Path(configured).expanduser() if configured else cache_dir() / "stages"
    return folder / f"{model_id(base_model)}.json"


def _read(path: Path) -> dict[str, dict]:
    return json.loads(path.read_text()) if path.exists() else {}


def _write(path: Path, stages: dict[str, dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(stages, indent=1, sort_keys=True))
    os.replace(tmp, path)  # readers see the old or the new registry, never half of one


def register_stage(
    name: str,
    source: str | Path,
    dtype: str = "fp32",
    quantize: str | None = None,
    task: str | None = None,
    notes: str = "",
    registry: str | Path | None = None,
    base_model: str = DEFAULT_MODEL,
) -> Stage:
    """Load ``source`` as described, record its fingerprint under ``name`` (replacing any old entry).

    Args:
        name: the stage name.
        source: embedded model name or a saved model folder (stored as an absolute path).
        dtype: "fp32", "bf16" or "fp16".
        quantize: None or a key of :data:`workbench.inference.models.QUANTIZATIONS`.
        task: what the stage was trained for.
        notes: free text.
        registry: registry file (see :func:`registry_path`).
        base_model: whose lifecycle the stage belongs to (picks the default registry).

    Returns:
        The registered :class:`Stage`.
    """
    source = str(Path(source).resolve()) if Path(source).is_dir() else str(source)
    # Fingerprints are computed on CPU: the weight bytes are the same on any device, and int8 needs CPU.
    lm = load_model(source, device="cpu", dtype=dtype, quantize=quantize)
    stage = Stage(
        name, source, dtype, quantize, lm.fingerprint, task, notes, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )
    path = registry_path(registry, base_model)
    stages = _read(path)
    stages[name] = asdict(stage)
    _write(path, stages)
    return stage


def register_variants(
    prefix: str,
    source: str | Path,
    task: str | None = None,
    notes: str = "",
    variants=tuple(VARIANTS),
    registry: str | Path | None = None,
    base_model: str = DEFAULT_MODEL,
) -> list[Stage]:
    """Register ``<prefix>-fp32``, ``<prefix>-bf16`` and ``<prefix>-int8`` over one saved model."""
    return [
        register_stage(
            f"{prefix}-{v}", source, *VARIANTS[v], task=task, notes=notes, registry=registry, base_model=base_model
        )
        for v in variants
    ]


def get_stage(name: str, registry: str | Path | None = None, base_model: str = DEFAULT_MODEL) -> Stage:
    """The registered stage ``name``; a base stage is registered on first use."""
    stages = _read(registry_path(registry, base_model))
    if name in stages:
        return Stage(**stages[name])
    base = base_stages(base_model)
    if name in base:
        return register_stage(name, **base[name], registry=registry, base_model=base_model)
    raise KeyError(
        f"no stage {name!r} in {registry_path(registry, base_model)}; known: {sorted(set(stages) | set(base))}"
    )


def list_stages(registry: str | Path | None = None, base_model: str = DEFAULT_MODEL) -> pd.DataFrame:
    """Every stage, one row each; base stages not yet registered show an empty fingerprint."""
    stages = {name: {"name": name, **spec} for name, spec in base_stages(base_model).items()}
    stages.update(_read(registry_path(registry, base_model)))
    rows = []
    for name, stage in sorted(stages.items()):
        sha = stage.get("fingerprint", {}).get("weights_sha256", "")
        rows.append(
            {
                "name": name,
                "source": stage["source"],
                "dtype": stage["dtype"],
                "quantize": stage["quantize"],
                "task": stage.get("task"),
                "weights_sha256": sha[:16],
                "registered": stage.get("registered", ""),
                "notes": stage.get("notes", ""),
            }
        )
    return pd.DataFrame(rows)


def load_stage(
    name: str,
    device: str = "auto",
    registry: str | Path | None = None,
    base_model: str = DEFAULT_MODEL,
    attn_implementation: str | None = None,
) -> LoadedModel:
    """Load a stage and check that its weights are the ones registered.

    Args:
        name: the stage name.
        device: "auto", "cpu", "cuda"...; int8 stages always run on CPU.
        registry: registry file (see :func:`registry_path`).
        base_model: whose lifecycle the stage belongs to.
        attn_implementation: None (the default), "sdpa" or "eager" (same weights, other kernels).

    Raises:
        KeyError: no such stage.
        FingerprintMismatch: the weights changed since registration (re-register the stage, or
            restore its source).
    """
    stage = get_stage(name, registry, base_model)
    lm = load_model(
        stage.source,
        device="cpu" if stage.quantize else device,
        dtype=stage.dtype,
        quantize=stage.quantize,
        attn_implementation=attn_implementation,
    )
    changed = [key for key in _CHECKED if lm.fingerprint.get(key) != stage.fingerprint.get(key)]
    base = base_stages(base_model).get(name)
    if base is not None and "quantization" in changed and set(changed) <= {"quantization", "weights_sha256"}:
        # A base stage is a recipe over the shipped model, not a trained artifact: when the recipe of
        # its quantisation changed (a new int8 recipe), its registration is simply renewed.
        register_stage(name, **base, registry=registry, base_model=base_model)
        return lm
    if changed:
        raise FingerprintMismatch(
            f"stage {name!r} ({stage.source}, {stage.dtype}, quantize={stage.quantize}) "
            f"no longer matches its registered fingerprint: {', '.join(changed)} changed "
            f"(registered sha256 {stage.fingerprint.get('weights_sha256', '')[:16]}, "
            f"now {lm.fingerprint['weights_sha256'][:16]}). "
            "Re-register it with register_stage if the new weights are intended."
        )
    return lm
