"""The frozen trunk: when only the top layers train, the outputs of the frozen lower layers are
computed once per example and reused by every later step, epoch, seed, objective and search trial.

With ``method="full"`` and ``train_layers=8`` of SmolLM2's 30 layers, the embedding and the lower
22 layers never change, so their output at every token is a function of the example alone. A
:class:`FrozenTrunk` stores it (float32; in memory and on disk,
:class:`~workbench.lifecycle.finetune.trunk_store.TensorStore`), and the losses
(:func:`workbench.lifecycle.prefix_batch.forward_rows`) then run only the top layers from it, in
the same shared-prefix layout as a whole-model pass (positions, attention mask, the prefix's keys
and values expanded over the rows).

An entry is the trunk's output for one row: its chain of tokens (prompt and answer for the
cross-entropy; the prompt for the grid objectives) and the tree of answer candidates after it, if
any. The rows of a step that are not stored yet are computed together, in the step's own layout
(shared prefix, padding), exactly as the whole model would compute them: a step that fills the
cache gives the loss and gradients of a whole-model step bit for bit (``tests/test_trunk.py``),
at the same cost. A later step that reads an entry gets the numbers of the batch that first
computed it; another batch layout would sum in another order, so the two differ by rounding
(float32 sums in fp32; bf16 matrix products under bf16 autocast). A run's result is therefore a
function of its config, its data and what the cache held when it started; a resumed run reads
the entries its interrupted part wrote and ends with the same weights.

The cache key: the base model's weights hash (:func:`workbench.inference.models.weights_sha256`),
the number of frozen layers, the autocast precision, the attention implementation, device type,
torch and transformers versions, and the row's token ids and tree. Anything else that changes the
trunk's arithmetic makes the cache invalid; bump :data:`FORMAT` then.

LoRA with adapters on the top layers only (``lora_layers``) uses it too: the layers below the adapters are
the base model's, so their outputs are the entries a full run of the top layers fills (same weights, same
number of frozen layers: the same key); 8 steps of notebook 06's LoRA sibling ran 1.66x faster reading them
(``python benchmarks/trunk_cache.py --steps 8 --repeats 2 --method lora``). It does not apply
(:meth:`FrozenTrunk.for_training` returns None, and the whole model runs) when every layer trains or carries
adapters, when the embedding trains, with attention dropout (a frozen layer would not be a function of its
input), with sliding-window layers, and for architectures other than :data:`ARCHITECTURES`, whose layers
this module calls directly.
"""

from __future__ import annotations

import hashlib
import json
import time

import torch
import transformers

from workbench.inference.models import weights_sha256
from workbench.lifecycle.finetune.config import FinetuneConfig
from workbench.lifecycle.finetune.model import precision_autocast
from workbench.lifecycle.finetune.trunk_store import TensorStore
from workbench.lifecycle.prefix_batch import Rows, attention_mask, layout, prefix_passes, shared_prefix_len

ARCHITECTURES = ("llama", "qwen2")  # decoder stacks run layer by layer here (tests/test_finetune.py covers both)
FORMAT = 1  # what an entry holds; a new value leaves the old files unread


def frozen_layers(model) -> int:
    """Bottom transformer layers that hold no trainable weight, with the embedding frozen too (0: none usable).

    0 also where caching them would be wrong or unsupported: another architecture than
    :data:`ARCHITECTURES`, attention dropout, sliding-window layers.
    """
    inner = getattr(model, "model", None)
    if not runs_layer_by_layer(model) or getattr(model.config, "attention_dropout", 0.0):
        return 0
    if any(p.requires_grad for p in inner.embed_tokens.parameters()):
        return 0
    count = 0
    for layer in inner.layers:
        if any(p.requires_grad for p in layer.parameters()):
            break
        count += 1
    return count


def runs_layer_by_layer(model) -> bool:
    """Whether this module can run the model's decoder stack in slices: an architecture of :data:`ARCHITECTURES`
    whose layers all attend fully (no sliding window)."""
    config, inner = model.config, getattr(model, "model", None)
    if config.model_type not in ARCHITECTURES or inner is None or not hasattr(inner, "rotary_emb"):
        return False
    return all(kind == "full_attention" for kind in getattr(config, "layer_types", None) or ())


def shared_layers(model, base) -> int:
    """Leading decoder layers of ``model`` whose weights are ``base``'s, its embedding being ``base``'s too (0: none).

    A model fine-tuned on its top layers (or LoRA-merged there) keeps the base model's lower layers bit for bit, so
    their outputs on a prompt are the base model's, whichever arm is scored.
    """
    inner, base_inner = getattr(model, "model", None), getattr(base, "model", None)
    if inner is None or base_inner is None or model.config.model_type != base.config.model_type:
        return 0
    if not _same_weights(inner.embed_tokens, base_inner.embed_tokens):
        return 0
    count = 0
    for layer, base_layer in zip(inner.layers, base_inner.layers):
        if not _same_weights(layer, base_layer):
            break
        count += 1
    return count


def _same_weights(module, other) -> bool:
    mine, theirs = module.state_dict(), other.state_dict()
    return mine.keys() == theirs.keys() and all(
        isinstance(v, torch.Tensor) and v.shape == theirs[k].shape and torch.equal(v, theirs[k])
        for k, v in mine.items()
    )


def scoring_trunk(model, base, store: TensorStore.Config | None = None) -> FrozenTrunk | None:
    """The lower layers that an fp32 ``model`` shares with ``base``, as a trunk for exact scoring, or None.

    Entries are keyed by a hash of the shared weights themselves (not by either model), so every stage fine-tuned
    from ``base`` on its top layers reads the lower layers' outputs that the first one scored computed: scoring the
    stage then runs only the layers above them (:class:`~workbench.lifecycle.finetune.selection.TrunkScorer` as the
    engine's ``grid_scorer``). fp32 only: it computes without autocast, as an fp32 stage does; bf16 or int8 stages,
    a model sharing no layer or every layer (the base model itself), and other architectures get None.
    """
    if not runs_layer_by_layer(model) or next(model.parameters()).dtype != torch.float32:
        return None
    layers = shared_layers(model, base)
    if not 0 < layers < len(model.model.layers):
        return None
    shared = torch.nn.ModuleList([model.model.embed_tokens, *model.model.layers[:layers]])
    return FrozenTrunk(model, layers, weights_sha256(shared), "fp32", store)


class FrozenTrunk:
    """The frozen lower layers of a model, their outputs cached; runs the trainable top layers from them."""

    def __init__(
        self,
        model,
        layers: int,
        weights_sha256: str,
        precision: str,
        store: TensorStore.Config | None = None,
    ):
        """
        Args:
            model: a Llama or Qwen2 causal LM whose lower ``layers`` layers and embedding are frozen.
            layers: the number of frozen layers (:func:`frozen_layers`).
            weights_sha256: the hash of the model's weights as loaded (its fingerprint).
            precision: the autocast of the training steps, "bf16" or "fp32".
            store: where its outputs are kept, and how many bytes (default: :class:`TensorStore.Config`'s
                bounds, under ``<cache>/trunk``).
        """
        self.model, self.inner, self.layers, self.precision = model, model.model, layers, precision
        self.device = next(model.parameters()).device
        identity = {
            "weights": weights_sha256,
            "layers": layers,
            "precision": precision,
            "attention": getattr(model.config, "_attn_implementation", None),
            "device": self.device.type,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "format": FORMAT,
        }
        namespace = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
        self.store = TensorStore(store or TensorStore.Config(), namespace, model.config.hidden_size)
        self.fill_seconds = 0.0

    @classmethod
    def for_training(
        cls,
        model,
        weights_sha256: str,
        config: FinetuneConfig,
        store: TensorStore.Config | None = None,
    ) -> FrozenTrunk | None:
        """The trunk of a model made trainable for ``config``, or None where it does not apply (see the module)."""
        # Every objective: on the idle 2-core CPU (benchmarks/trunk_cache.py, 8 steps, 2 interleaved
        # runs) steps that fill the cache cost what whole-model steps cost (soft 11.6/11.5 s vs
        # 14.5/11.9 s; ce 5.3/5.1 vs 5.3 s) and steps that read it are 1.5x faster (soft 7.9/7.8 s,
        # ce 3.4/3.7 s). An earlier "grid objectives fill 2x slower" came from a loaded machine.
        if not config.trunk_cache:
            return None
        # LoRA adapters on the top layers only leave the layers below them as frozen as full training of the top
        # layers does: the wrapped model's own causal LM (adapters injected) runs both the trunk and the top
        model = model.get_base_model() if config.method == "lora" else model
        layers = frozen_layers(model)
        if layers == 0:
            return None
        return cls(model, layers, weights_sha256, config.precision, store)

    def hidden(self, rows: Rows, limit: int, share_prefix: bool, pad_id: int) -> list[torch.Tensor]:
        """Row b's trunk output, (len(chain b) + N, H) float32 on the CPU: its chain, then the tree nodes.

        Rows not stored yet are computed together in the layout :func:`~workbench.lifecycle.prefix_batch.forward_rows`
        gives them (``limit``, ``share_prefix`` and ``pad_id`` as there), then stored.
        """
        keys = [hashlib.sha256(json.dumps([chain, rows.tree]).encode()).hexdigest() for chain in rows.chains]
        out = [self.store.get(key) for key in keys]
        missing = [b for b, entry in enumerate(out) if entry is None]
        if missing:
            tick = time.perf_counter()
            computed = self._compute(Rows([rows.chains[b] for b in missing], rows.tree), limit, share_prefix, pad_id)
            for b, entry in zip(missing, computed):
                self.store.put(keys[b], entry)
                out[b] = entry
            self.fill_seconds += time.perf_counter() - tick
        return out

    def summary(self) -> dict:
        """The trunk's size, the seconds spent computing its outputs, and its cache hits and misses."""
        return {
            "trunk_layers": self.layers,
            "trunk_fill_seconds": self.fill_seconds,
            **{f"trunk_{name}": count for name, count in self.store.stats.items()},
        }

    def top_logits(self, hidden, positions, mask, cache, keep: int | None) -> torch.Tensor:
        """(B, keep, V) logits of the last ``keep`` columns: the layers above the trunk, the final norm, the head.

        Args:
            hidden: (B, Q, H) trunk outputs.
            positions: (B, Q) position ids.
            mask: (B, 1, Q, past + Q) boolean attention mask.
            cache: a DynamicCache holding the shared prefix's keys and values, or one to fill, or None.
            keep: columns at the right end whose logits are computed (None: all).
        """
        hidden = self.inner.norm(self._run(self.inner.layers[self.layers :], hidden, positions, mask, cache))
        # normed over every column, then cut, as the model's own forward does: the norm's gradient then
        # sums over the same columns in the same order
        return self.model.lm_head(hidden if keep is None else hidden[:, -keep:])

    @torch.no_grad()
    def _compute(self, rows: Rows, limit: int, share_prefix: bool, pad_id: int) -> list[torch.Tensor]:
        """The trunk outputs of ``rows``, computed in their shared-prefix layout (as the whole model would)."""
        plan = layout(rows, shared_prefix_len(rows.chains, limit, share_prefix), pad_id)
        prefix = torch.tensor([rows.chains[0][: plan.prefix_len]], dtype=torch.long)

        def run(input_ids, positions, mask, cache, keep):
            embedded = self.inner.embed_tokens(input_ids.to(self.device))
            return self._run(self.inner.layers[: self.layers], embedded, positions, mask, cache).float().cpu()

        with precision_autocast(self.device, self.precision):
            prefix_out, main_out = prefix_passes(run, plan, prefix, plan.input_ids, None)
        entries = []
        for row, chain in enumerate(rows.chains):
            entry = torch.empty((len(chain) + len(rows.tree), main_out.shape[-1]), dtype=torch.float32)
            if plan.prefix_len:
                entry[: plan.prefix_len] = prefix_out[0]
            columns = plan.source[row] >= 0
            entry[plan.source[row, columns]] = main_out[row, columns]
            entries.append(entry)
        return entries

    def _run(self, layers, hidden: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache) -> torch.Tensor:
        """``hidden`` through ``layers`` (a slice of the decoder stack), as the model's own forward calls them."""
        hidden = hidden.to(device=self.device, dtype=self.inner.embed_tokens.weight.dtype)
        positions = positions.to(self.device)
        mask = attention_mask(self.model, mask.to(self.device))
        rotary = self.inner.rotary_emb(hidden, positions)
        for layer in layers:
            out = layer(
                hidden,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=cache is not None,
                position_embeddings=rotary,
            )
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden
