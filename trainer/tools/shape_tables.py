"""Size tables for the app's pre-launch estimates, computed from the real SD1.5 and SDXL architectures.

    python -m trainer.tools.shape_tables --write loratui/data/lora_shapes.json

The app (which never imports torch) estimates a LoRA's file size and a run's GPU memory from
``loratui/data/lora_shapes.json``. This module writes that file from the full-size models,
built on PyTorch's meta device: every layer has its real shape but no storage, so nothing is
downloaded and the whole SDXL pipeline costs no memory.

It records, per architecture:

- every layer a LoRA or LoCon adapts, chosen by the trainer's own rule
  (``trainer.networks.lora.unet_layers`` / ``text_encoder_layers``), with its kohya name, kind,
  channels and kernel;
- the parameter counts of the UNet, text encoders and VAE;
- activation memory: one training step (forward, loss, backward) of the UNet with a LoRA attached,
  replayed on the meta device while counting the bytes of every tensor alive at each moment, with
  and without gradient checkpointing; the same for the text encoders when they are trained, and
  for the VAE encoding an image (latent caching happens on the GPU before training).

Two figures are kept per step: the peak of live tensor bytes (what the app uses) and the bytes
autograd saved for the backward pass during the forward (``saved_tensors_hooks``). Without
checkpointing they agree within a few percent; with it the saved figure leaves out what the
checkpointed blocks keep and recompute, so only the peak tells the whole story.

These are computed, not measured on a GPU. Three things stand in for a GPU's behaviour, because a
meta tensor has no CUDA kernels behind it:

- CUDA autocast is re-enacted by ``_AutocastRules`` (its casting rules for the few op kinds these
  models call): matrix products and convolutions in 16 bits, normalisations and the loss in fp32;
- attention uses the flash-attention kernel's memory (inputs, output and a log-sum-exp per row,
  never the full attention matrix), as PyTorch's ``scaled_dot_product_attention`` does on a
  recent NVIDIA GPU; the efficient-attention kernel's in fp32, which flash does not support;
- the count is of tensor bytes; the CUDA caching allocator's rounding and fragmentation and the
  kernels' scratch space are not in it (the app adds an allowance for them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from trainer.networks.lora import AdaptedLayer, LoRANetwork, NetworkSpec, text_encoder_layers, unet_layers
from trainer.quiet import quiet_libraries

FORMAT_VERSION = 1
ARCHES = ("sd15", "sdxl")

# The full-size configurations; the same ones bench/full_size.py builds with random weights for the GPU acceptance check.
SD15_UNET = dict(sample_size=64, cross_attention_dim=768, attention_head_dim=8)
SDXL_UNET = dict(sample_size=128, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 block_out_channels=(320, 640, 1280), layers_per_block=2, transformer_layers_per_block=(1, 2, 10),
                 attention_head_dim=(5, 10, 20), cross_attention_dim=2048, use_linear_projection=True,
                 addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816)
VAE = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
           down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
CLIP_L = dict(vocab_size=49408, max_position_embeddings=77, hidden_size=768, intermediate_size=3072,
              num_hidden_layers=12, num_attention_heads=12, hidden_act="quick_gelu")
CLIP_BIG_G = dict(vocab_size=49408, max_position_embeddings=77, hidden_size=1280, intermediate_size=5120,
                  num_hidden_layers=32, num_attention_heads=20, projection_dim=1280, hidden_act="gelu")
TOKENS = 77
"""CLIP's context length: every caption is padded to it."""

ACTIVATION_POINTS = {"sd15": [(512, 1), (512, 2), (512, 4), (768, 1), (768, 2), (768, 4)],
                     "sdxl": [(768, 1), (768, 2), (768, 4), (1024, 1), (1024, 2), (1024, 4)]}
"""(resolution, batch size) pairs measured per architecture; the app interpolates between them."""
MEASURED_DIM = 8
"""The LoRA rank attached while measuring (the guide's usual rank)."""
RANK_PROBE_DIM = 64
"""A second rank, measured once per architecture, to see how activations grow with the rank."""
KINDS = {(1, 1): "conv1x1", (3, 3): "conv3x3"}


@dataclass
class MetaModels:
    """One architecture's full-size UNet, text encoders and VAE, shaped but without storage."""

    arch: str
    unet: nn.Module
    text_encoders: list[nn.Module]
    vae: nn.Module


def meta_models(arch: str) -> MetaModels:
    """Build an architecture's models on the meta device (about a second; nothing is downloaded)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with torch.device("meta"):
        if arch == "sd15":
            unet = UNet2DConditionModel(**SD15_UNET)
            encoders = [CLIPTextModel(CLIPTextConfig(**CLIP_L))]
        elif arch == "sdxl":
            unet = UNet2DConditionModel(**SDXL_UNET)
            encoders = [CLIPTextModel(CLIPTextConfig(**CLIP_L)),
                        CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIG_G))]
        else:
            raise ValueError(f"unknown architecture {arch!r}")
        vae = AutoencoderKL(**VAE)
    for module in [unet, *encoders, vae]:
        module.requires_grad_(False)
    return MetaModels(arch, unet, encoders, vae)


def adapted_layers(models: MetaModels) -> list[AdaptedLayer]:
    """Every layer a LoCon with a trained text encoder adapts (a plain LoRA uses a subset)."""
    count = len(models.text_encoders)
    layers = unet_layers(models.unet, models.arch, with_conv_blocks=True)
    for index, encoder in enumerate(models.text_encoders):
        layers += text_encoder_layers(encoder, index, count)
    return layers


def layer_row(layer: AdaptedLayer) -> list:
    """``[kohya name, kind, in channels, out channels, kernel, group]`` for the table."""
    module = layer.module
    if isinstance(module, nn.Linear):
        return [layer.name, "linear", module.in_features, module.out_features, 1, layer.group]
    kernel = tuple(module.kernel_size)
    if kernel not in KINDS:
        raise ValueError(f"{layer.name}: a {kernel} kernel is not in the table's kinds")
    return [layer.name, KINDS[kernel], module.in_channels, module.out_channels, kernel[0], layer.group]


def parameter_counts(models: MetaModels) -> dict:
    """Parameters of each component (the base weights the GPU holds)."""
    def count(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    return {"unet": count(models.unet), "text_encoders": [count(e) for e in models.text_encoders],
            "vae": count(models.vae)}


# --- Replaying a training step on the meta device ---------------------------------------------

_LOW_PRECISION = {F.linear, F.conv2d, torch.matmul, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.bmm,
                  torch.baddbmm, torch.mm, torch.addmm, torch.einsum}
_FULL_PRECISION = {F.group_norm, F.layer_norm, F.mse_loss, F.softmax, torch.softmax, torch.Tensor.softmax,
                   F.interpolate}
_PROMOTE = {torch.cat, torch.stack}


class _AutocastRules(TorchFunctionMode):
    """CUDA autocast's casting rules, re-enacted for the ops these models call.

    Autocast only acts on CUDA (or CPU) tensors, never on meta ones, so without this the step
    would run entirely in the weights' dtype and miss the fp32 copies autocast makes around every
    normalisation. The lists are the relevant part of PyTorch's CUDA autocast op lists. The
    attention call is swapped for the fused kernel a GPU runs (see the module docstring).
    """

    def __init__(self, dtype: torch.dtype | None) -> None:
        super().__init__()
        self.dtype = dtype
        """The 16-bit compute dtype, or None for a full-fp32 run (no casting at all)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            return _fused_attention(*args, **kwargs)
        if self.dtype is not None:
            if func in _LOW_PRECISION:
                args, kwargs = _cast((args, kwargs), self.dtype)
            elif func in _FULL_PRECISION:
                args, kwargs = _cast((args, kwargs), torch.float32)
            elif func in _PROMOTE:
                floats = [t.dtype for t in tree_leaves(args) if isinstance(t, torch.Tensor) and t.is_floating_point()]
                if len(set(floats)) > 1:
                    args, kwargs = _cast((args, kwargs), torch.float32)
        return func(*args, **kwargs)


def _cast(tree, dtype: torch.dtype):
    def cast(value):
        if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != dtype:
            return value.to(dtype)
        return value
    if isinstance(tree, (list, tuple)):
        return type(tree)(_cast(v, dtype) for v in tree)
    if isinstance(tree, dict):
        return {k: _cast(v, dtype) for k, v in tree.items()}
    return cast(tree)


def _fused_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, **_):
    """Attention with the memory of the fused kernels: never the full (tokens × tokens) matrix."""
    if query.dtype in (torch.float16, torch.bfloat16) and attn_mask is None:
        return torch.ops.aten._scaled_dot_product_flash_attention(query, key, value, dropout_p, is_causal,
                                                                  scale=scale)[0]
    if attn_mask is not None:
        attn_mask = attn_mask.to(query.dtype).expand(query.shape[0], query.shape[1], query.shape[2], key.shape[2])
    return torch.ops.aten._scaled_dot_product_efficient_attention(query, key, value, attn_mask, True, dropout_p,
                                                                 is_causal, scale=scale)[0]


class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of every tensor storage alive, and the peak, while it is active.

    Each new storage is counted when an operation returns it and uncounted when it is freed
    (a finalizer on the storage). Views and in-place results share their input's storage and are
    not new, so storages that existed before (the weights) are never counted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0
        self._seen: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if any(r.alias_info is not None for r in func._schema.returns):
            return out
        for tensor in tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                self._count(tensor)
        return out

    def _count(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key in self._seen:
            return
        self._seen.add(key)
        size = storage.nbytes()
        self.live += size
        self.peak = max(self.peak, self.live)
        weakref.finalize(storage, self._freed, key, size)

    def _freed(self, key: int, size: int) -> None:
        self._seen.discard(key)
        self.live -= size


@dataclass(frozen=True)
class StepMemory:
    """The activation memory of one measured step."""

    peak_bytes: int
    """Most bytes alive at once beyond the weights: activations, their gradients, the LoRA's gradients."""
    saved_bytes: int
    """Bytes of the distinct tensors autograd saved for the backward pass during the forward (with
    checkpointing, not what the checkpointed blocks hold: their saves bypass the hooks)."""


def _checkpoint_options(dtype: torch.dtype | None) -> dict:
    """Options for ``torch.utils.checkpoint``: the trainer's non-reentrant kind, replayed faithfully.

    A GPU's recomputation in the backward pass runs under the same autocast as the forward did;
    here the autocast rules must be entered again for it. The meta device has no random state to
    preserve.
    """
    return {"use_reentrant": False, "preserve_rng_state": False,
            "context_fn": lambda: (contextlib.nullcontext(), _AutocastRules(dtype))}


def _unet_checkpointing(dtype: torch.dtype | None):
    """A gradient-checkpointing function for diffusers' ``enable_gradient_checkpointing``."""
    options = _checkpoint_options(dtype)

    def checkpoint(module, *args):
        return torch.utils.checkpoint.checkpoint(module.__call__, *args, **options)
    return checkpoint


def _storages(*modules: nn.Module) -> set[int]:
    return {t.untyped_storage()._cdata for m in modules for t in [*m.parameters(), *m.buffers()]}


@contextlib.contextmanager
def _counting_saved(weights: set[int]):
    """Sum the bytes of the distinct storages autograd saves for backward, leaving out ``weights``.

    A storage is forgotten when it is freed: its address may then be reused by another one, which
    must count again (keying on the address alone made the total depend on the allocator).
    """
    alive: dict[int, int] = {}
    total = [0]

    def pack(tensor):
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key not in weights and key not in alive:
            alive[key] = storage.nbytes()
            total[0] += alive[key]
            weakref.finalize(storage, alive.pop, key, None)
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        yield total


def measure_unet_step(models: MetaModels, resolution: int, batch: int, checkpointing: bool,
                      dtype: torch.dtype | None = torch.bfloat16,
                      spec: NetworkSpec = NetworkSpec(MEASURED_DIM, MEASURED_DIM / 2)) -> StepMemory:
    """Replay one UNet training step with the network ``spec`` attached; return its activation memory.

    ``dtype`` is the mixed-precision compute dtype (None: everything in fp32). The text
    conditioning comes from the text encoders' cache, as when they are not trained.
    """
    unet = models.unet.to(dtype or torch.float32)
    if checkpointing:
        unet.enable_gradient_checkpointing(_unet_checkpointing(dtype))
    else:
        unet.disable_gradient_checkpointing()
    unet.train()
    with torch.device("meta"):
        network = LoRANetwork(unet, [], models.arch, spec, False)
    network.attach()
    compute = dtype or torch.float32
    side = resolution // 8
    hidden = 768 if models.arch == "sd15" else 2048
    try:
        with torch.device("meta"):
            latents = torch.empty(batch, 4, side, side, dtype=compute)
            target = torch.empty(batch, 4, side, side)
            timesteps = torch.zeros(batch, dtype=torch.long)
            text = torch.empty(batch, TOKENS, hidden, dtype=compute)
            extra = {}
            if models.arch == "sdxl":
                extra["added_cond_kwargs"] = {"text_embeds": torch.empty(batch, 1280, dtype=compute),
                                              "time_ids": torch.empty(batch, 6)}
        tracker = _LiveBytes()
        with tracker, _AutocastRules(dtype):
            with _counting_saved(_storages(unet, network)) as saved:
                prediction = unet(latents, timesteps, text, **extra).sample
                loss = F.mse_loss(prediction.float(), target)
            del prediction
            loss.backward()
            del loss
        return StepMemory(tracker.peak, saved[0])
    finally:
        network.detach()
        unet.disable_gradient_checkpointing()
        unet.eval()


def measure_text_encoder_step(models: MetaModels, batch: int, checkpointing: bool,
                              dtype: torch.dtype | None = torch.bfloat16) -> StepMemory:
    """Replay the text encoders' part of a step when they are trained (forward with a LoRA, backward)."""
    encoders = [e.to(dtype or torch.float32) for e in models.text_encoders]
    with torch.device("meta"):
        network = LoRANetwork(models.unet, encoders, models.arch, NetworkSpec(MEASURED_DIM, MEASURED_DIM / 2), True)
    network.attach()
    for encoder in encoders:
        encoder.train()
        if checkpointing:
            encoder.gradient_checkpointing_enable(_checkpoint_options(dtype))
    try:
        with torch.device("meta"):
            tokens = torch.zeros(batch, TOKENS, dtype=torch.long)
        tracker = _LiveBytes()
        with tracker, _AutocastRules(dtype):
            with _counting_saved(_storages(*encoders, network)) as saved:
                outputs = [e(tokens, output_hidden_states=True) for e in encoders]
                # SD1.5 reads the last layer; SDXL the penultimate one of both plus the pooled output.
                if models.arch == "sd15":
                    loss = outputs[0].last_hidden_state.float().sum()
                else:
                    loss = sum(o.hidden_states[-2].float().sum() for o in outputs)
                    loss = loss + outputs[1].text_embeds.float().sum()
            del outputs
            loss.backward()
            del loss
        return StepMemory(tracker.peak, saved[0])
    finally:
        network.detach()
        for encoder in encoders:
            if checkpointing:
                encoder.gradient_checkpointing_disable()
            encoder.eval()


def measure_vae_encode(models: MetaModels, resolution: int, images: int = 1) -> int:
    """Peak bytes beyond the weights while the fp32 VAE encodes ``images`` images (latent caching)."""
    vae = models.vae.to(torch.float32)
    with torch.device("meta"):
        pixels = torch.empty(images, 3, resolution, resolution)
    tracker = _LiveBytes()
    with tracker, _AutocastRules(None), torch.no_grad():
        distribution = vae.encode(pixels).latent_dist
        latents = distribution.mean + distribution.std * torch.empty_like(distribution.mean)
        del distribution, latents
    return tracker.peak


# --- The table ---------------------------------------------------------------------------------

def unet_step_plan(arch: str) -> list[tuple[int, int, str, int, str]]:
    """Every measured UNet step as (resolution, batch, network, dim, precision), each with and without checkpointing.

    LoRA and LoCon at rank 8 in 16 bits at every point; at the native size with batch 1 also a
    rank-64 LoRA (how activations grow with rank) and an fp32 run (training without mixed precision).
    """
    plan = [(r, b, network, MEASURED_DIM, "16bit") for r, b in ACTIVATION_POINTS[arch] for network in ("lora", "locon")]
    native = max(r for r, _ in ACTIVATION_POINTS[arch])
    return plan + [(native, 1, "lora", RANK_PROBE_DIM, "16bit"), (native, 1, "lora", MEASURED_DIM, "fp32")]


def activation_tables(models: MetaModels) -> dict:
    """The measured activation memory of one architecture (a minute or two for both)."""
    unet_rows = []
    for resolution, batch, network, dim, precision in unet_step_plan(models.arch):
        spec = NetworkSpec(dim, dim / 2, dim if network == "locon" else 0, dim / 2)
        dtype = torch.bfloat16 if precision == "16bit" else None
        for checkpointing in (False, True):
            step = measure_unet_step(models, resolution, batch, checkpointing, dtype, spec)
            unet_rows.append([resolution, batch, network, dim, precision, int(checkpointing), step.peak_bytes,
                              step.saved_bytes])
    text_rows = []
    for checkpointing in (False, True):
        for batch in (1, 4):
            step = measure_text_encoder_step(models, batch, checkpointing)
            text_rows.append([batch, int(checkpointing), step.peak_bytes, step.saved_bytes])
    sizes = sorted({r for r, _ in ACTIVATION_POINTS[models.arch]})
    return {"unet_step_columns": ["resolution", "batch", "network", "dim", "precision", "checkpointing",
                                  "peak_bytes", "saved_bytes"],
            "unet_step": unet_rows,
            "text_encoder_step_columns": ["batch", "checkpointing", "peak_bytes", "saved_bytes"],
            "text_encoder_step": text_rows,
            "vae_encode_columns": ["resolution", "images", "peak_bytes"],
            "vae_encode": [[r, 1, measure_vae_encode(models, r)] for r in sizes]}


def architecture_table(arch: str, with_activations: bool = True) -> dict:
    """Everything the app needs about one architecture."""
    models = meta_models(arch)
    table: dict = {"parameters": parameter_counts(models),
                   "layers": [layer_row(layer) for layer in adapted_layers(models)]}
    if with_activations:
        table["activations"] = activation_tables(models)
    return table


def build_table(with_activations: bool = True) -> dict:
    """The whole file's content for both architectures."""
    return {"format": FORMAT_VERSION,
            "about": "Written by `python -m trainer.tools.shape_tables`; computed on PyTorch's meta device from the "
                     "full-size architectures, not measured on a GPU.",
            "layer_columns": ["name", "kind", "in", "out", "kernel", "group"],
            "architectures": {arch: architecture_table(arch, with_activations) for arch in ARCHES}}


def dumps(table: dict) -> str:
    """Deterministic JSON with one table row per line, so a change shows as a small diff."""
    def render(value, indent: str) -> str:
        if isinstance(value, dict):
            inner = indent + " "
            items = [f"{inner}{json.dumps(k)}: {render(v, inner)}" for k, v in value.items()]
            return "{\n" + ",\n".join(items) + "\n" + indent + "}"
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            inner = indent + " "
            return "[\n" + ",\n".join(inner + json.dumps(v, separators=(",", ":")) for v in value) + "\n" + indent + "]"
        return json.dumps(value, separators=(",", ":"))
    return render(table, "") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the app's LoRA size and memory tables.")
    parser.add_argument("--write", type=Path, required=True, help="the JSON file to write")
    parser.add_argument("--layers-only", action="store_true",
                        help="skip the activation measurements (keeps those already in the file)")
    args = parser.parse_args(argv)
    quiet_libraries()
    table = build_table(with_activations=not args.layers_only)
    if args.layers_only and args.write.exists():
        old = json.loads(args.write.read_text())
        for arch, data in table["architectures"].items():
            if "activations" in old.get("architectures", {}).get(arch, {}):
                data["activations"] = old["architectures"][arch]["activations"]
    args.write.write_text(dumps(table))
    print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
