"""A LoRA/LoCon network in the kohya layout: low-rank adapters hooked onto a model's layers.

Each adapted layer keeps its own weights frozen; its forward becomes
``original(x) + up(down(x)) · multiplier · alpha/dim``. The base model's module tree and state
dict are left untouched (the adapter replaces the layer's ``forward``, as sd-scripts does), so
the diffusers model can still be saved, loaded and sampled as usual.

That sum is computed one of two ways (``FORWARD``, chosen by ``LORATUI_LORA_FORWARD``):

* ``plain``: literally as written. The multiply and the add are two full-size elementwise passes
  over the layer's output (and the multiply a third in the backward pass), on each of the ~1,400
  layers an SDXL LoRA adapts.
* ``fused`` (the default): the same sum with the scale folded into the (rank × out) up weight, and,
  for a Linear layer, the up projection and the add done by one GEMM that accumulates into the
  original's output (``addmm_``). Convolutions fold the scale and add in place. The saved weights
  are the same either way: the scale is applied to a temporary copy, never stored.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from trainer.networks.naming import (UNET_ATTENTION_BLOCKS, UNET_CONV_BLOCKS, is_text_encoder_block,
                                     text_encoder_lora_name, unet_lora_name)

FORWARD_MODES = ("plain", "fused")
FORWARD = os.environ.get("LORATUI_LORA_FORWARD", "fused").strip().lower() or "fused"
"""How every ``LoRAModule`` computes its forward: ``fused`` or ``plain`` (read at each call, so a
benchmark can set ``trainer.networks.lora.FORWARD`` to compare both in one process)."""
if FORWARD not in FORWARD_MODES:
    raise ValueError(f"LORATUI_LORA_FORWARD must be one of {', '.join(FORWARD_MODES)}, not {FORWARD!r}")


class LoRAModule(nn.Module):
    """One low-rank adapter on a Linear or Conv2d layer."""

    def __init__(self, lora_name: str, original: nn.Module, dim: int, alpha: float) -> None:
        super().__init__()
        self.lora_name = lora_name
        if isinstance(original, nn.Conv2d):
            self.lora_down = nn.Conv2d(original.in_channels, dim, original.kernel_size, original.stride,
                                       original.padding, bias=False)
            self.lora_up = nn.Conv2d(dim, original.out_channels, 1, 1, bias=False)
        elif isinstance(original, nn.Linear):
            self.lora_down = nn.Linear(original.in_features, dim, bias=False)
            self.lora_up = nn.Linear(dim, original.out_features, bias=False)
        else:
            raise TypeError(f"cannot adapt {type(original).__name__} ({lora_name})")
        # The usual LoRA start: a random down projection and a zero up projection, so training
        # begins from exactly the base model.
        nn.init.kaiming_uniform_(self.lora_down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_up.weight)
        self.dim = dim
        self.register_buffer("alpha", torch.tensor(float(alpha)), persistent=False)
        self.scale = float(alpha) / dim
        self.multiplier = 1.0
        # A plain list keeps the original layer out of this module's parameters and state dict.
        self._original = [original]
        self._original_forward = None

    def attach(self) -> None:
        """Route the original layer's forward through this adapter."""
        if self._original_forward is None:
            original = self._original[0]
            self._original_forward = original.forward
            original.forward = self.forward

    def detach(self) -> None:
        """Give the original layer its own forward back."""
        if self._original_forward is not None:
            self._original[0].forward = self._original_forward
            self._original_forward = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self._original_forward is not None, "attach() the adapter before using it"
        if FORWARD == "plain":
            return self.plain_forward(x)
        if isinstance(self.lora_up, nn.Linear):
            return self._fused_linear_forward(x)
        return self._fused_conv_forward(x)

    def plain_forward(self, x: torch.Tensor) -> torch.Tensor:
        """``original(x) + up(down(x)) · multiplier · scale``, each step its own kernel (the reference)."""
        return self._original_forward(x) + self.lora_up(self.lora_down(x)) * (self.multiplier * self.scale)

    def _scaled_up_weight(self, dtype: torch.dtype) -> torch.Tensor:
        # The scale goes on the rank × out weight (a few thousand numbers) instead of the output
        # (millions). Its gradient is the output gradient's times the same scale, as in the plain sum.
        return (self.lora_up.weight * (self.multiplier * self.scale)).to(dtype)

    def _fused_linear_forward(self, x: torch.Tensor) -> torch.Tensor:
        # Flatten (batch, tokens, features) to rows once, so the original layer, the down projection
        # and the accumulating GEMM all see the same 2-D input (free for a contiguous x; F.linear
        # would flatten it the same way inside).
        rows = _cast_once(x.reshape(-1, x.shape[-1]) if x.dim() != 2 else x)
        out = self._original_forward(rows)
        down = F.linear(rows, self.lora_down.weight)
        # out += down @ (scaled up)ᵀ as one GEMM with beta = 1: no separate multiply or add pass.
        # In place on the original's fresh output: a Linear's backward keeps its input and weight,
        # never its output, so autograd needs nothing that this overwrites (it would raise if it did).
        # In-place ops are not autocast, so both factors are cast to the output's dtype here, as
        # autocast casts the plain path's up projection.
        out = out.addmm_(down.to(out.dtype), self._scaled_up_weight(out.dtype).t())
        return out.view(*x.shape[:-1], out.shape[-1]) if x.dim() != 2 else out

    def _fused_conv_forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _cast_once(x)
        out = self._original_forward(x)
        down = self.lora_down(x)
        # The 1×1 up convolution with the scale folded into its weight, added in place (a convolution's
        # backward keeps its input and weight, not its output): one elementwise pass instead of two.
        up = F.conv2d(down.to(out.dtype), self._scaled_up_weight(out.dtype))
        return out.add_(up)


def _cast_once(x: torch.Tensor) -> torch.Tensor:
    """``x`` in autocast's compute dtype when autocast would cast it, else ``x`` itself.

    Under autocast an fp32 activation (a norm's output, say) is cast to bf16/fp16 by every matmul
    or convolution that reads it: once by the original layer and again by the down projection.
    Casting it once up front gives both the identical bf16 values for one pass instead of two.
    """
    device = x.device.type
    if x.dtype != torch.float32 or not torch.amp.is_autocast_available(device) \
            or not torch.is_autocast_enabled(device):
        return x  # (the meta device, say, has no autocast to ask about)
    dtype = torch.get_autocast_dtype(device)
    return x.to(dtype) if dtype != torch.float32 else x


@dataclass(frozen=True)
class NetworkSpec:
    """The shape of a network: which layers get adapters and with which rank."""

    dim: int
    alpha: float
    conv_dim: int = 0
    """Rank for 3×3 convolutions; 0 leaves them alone (plain LoRA), above 0 makes a LoCon."""
    conv_alpha: float = 0.0


@dataclass(frozen=True)
class AdaptedLayer:
    """One layer a network adapts: its kohya name, the layer itself and why it was chosen."""

    name: str
    module: nn.Module
    group: str
    """``unet_attention`` (a plain LoRA adapts it), ``unet_conv`` (only a LoCon does) or ``text_encoder``."""

    @property
    def is_spatial_conv(self) -> bool:
        """A convolution wider than 1×1: it takes the LoCon's ``conv_dim`` rank instead of ``dim``."""
        return isinstance(self.module, nn.Conv2d) and self.module.kernel_size != (1, 1)


def unet_layers(unet: nn.Module, arch: str, with_conv_blocks: bool) -> list[AdaptedLayer]:
    """Every UNet layer a LoRA adapts (and, with ``with_conv_blocks``, the ones a LoCon adds), in module order.

    This is the one place the UNet's selection rule lives; the network and the size tables of
    ``trainer.tools.shape_tables`` both read it.
    """
    config = unet.config
    layers = config.layers_per_block
    if not isinstance(layers, int):
        raise ValueError("UNets with a different layer count per block are not supported")
    with_attention = [t.startswith("CrossAttn") for t in config.up_block_types]
    found = []
    for block_path, block in unet.named_modules():
        kind = type(block).__name__
        if kind in UNET_ATTENTION_BLOCKS:
            group = "unet_attention"
        elif with_conv_blocks and kind in UNET_CONV_BLOCKS:
            group = "unet_conv"
        else:
            continue
        for child_path, child in block.named_modules():
            if isinstance(child, (nn.Linear, nn.Conv2d)):
                name = unet_lora_name(f"{block_path}.{child_path}", arch, layers, with_attention)
                found.append(AdaptedLayer(name, child, group))
    return found


def text_encoder_layers(encoder: nn.Module, index: int, count: int) -> list[AdaptedLayer]:
    """Every linear layer of a text encoder's attention and MLP blocks that a LoRA adapts."""
    found = []
    for block_path, block in encoder.named_modules():
        if not is_text_encoder_block(type(block).__name__):
            continue
        for child_path, child in block.named_modules():
            if isinstance(child, nn.Linear):
                name = text_encoder_lora_name(f"{block_path}.{child_path}", index, count)
                found.append(AdaptedLayer(name, child, "text_encoder"))
    return found


Ranks = Mapping[str, tuple[int, float]]
"""Layers (by kohya name) with their own (rank, alpha) instead of the spec's."""


def _unet_adapters(unet: nn.Module, arch: str, spec: NetworkSpec, ranks: Ranks) -> list[LoRAModule]:
    adapters = []
    for layer in unet_layers(unet, arch, with_conv_blocks=bool(spec.conv_dim)):
        if not layer.is_spatial_conv:
            adapters.append(LoRAModule(layer.name, layer.module, *ranks.get(layer.name, (spec.dim, spec.alpha))))
        elif spec.conv_dim:
            adapters.append(LoRAModule(layer.name, layer.module,
                                       *ranks.get(layer.name, (spec.conv_dim, spec.conv_alpha))))
    return adapters


def _text_encoder_adapters(encoder: nn.Module, index: int, count: int, spec: NetworkSpec,
                           ranks: Ranks) -> list[LoRAModule]:
    return [LoRAModule(layer.name, layer.module, *ranks.get(layer.name, (spec.dim, spec.alpha)))
            for layer in text_encoder_layers(encoder, index, count)]


def check_weight_names(expected: set[str], tensors: dict[str, torch.Tensor], kind: str) -> None:
    """Raise ValueError unless ``tensors`` holds exactly the ``expected`` names (a file of another network)."""
    missing, unexpected = expected - set(tensors), set(tensors) - expected
    if missing or unexpected:
        raise ValueError(f"{kind} weights do not match the network: {len(missing)} missing, "
                         f"{len(unexpected)} unexpected")


class LoRANetwork(nn.Module):
    """The adapters of one training run: on the UNet and, optionally, on the text encoders."""

    def __init__(self, unet: nn.Module, text_encoders: list[nn.Module], arch: str, spec: NetworkSpec,
                 train_text_encoders: bool, ranks: Ranks | None = None) -> None:
        super().__init__()
        self.spec = spec
        ranks = ranks or {}
        self.unet_loras = nn.ModuleList(_unet_adapters(unet, arch, spec, ranks))
        te_loras: list[LoRAModule] = []
        if train_text_encoders:
            for index, encoder in enumerate(text_encoders):
                te_loras += _text_encoder_adapters(encoder, index, len(text_encoders), spec, ranks)
        self.text_encoder_loras = nn.ModuleList(te_loras)
        names = [m.lora_name for m in self.all_loras()]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"two layers map to the same LoRA name: {sorted(duplicates)[:3]}")

    def all_loras(self) -> list[LoRAModule]:
        """Every adapter, UNet first."""
        return list(self.unet_loras) + list(self.text_encoder_loras)

    def attach(self) -> None:
        """Hook every adapter into its layer."""
        for lora in self.all_loras():
            lora.attach()

    def detach(self) -> None:
        """Unhook every adapter, leaving the base model as it was."""
        for lora in self.all_loras():
            lora.detach()

    def set_multiplier(self, multiplier: float) -> None:
        """Scale the LoRA's effect (1.0 = as trained, 0 = off)."""
        for lora in self.all_loras():
            lora.multiplier = multiplier

    def parameter_groups(self, unet_lr: float, text_encoder_lr: float) -> list[dict]:
        """Optimizer parameter groups with the UNet and text-encoder learning rates."""
        groups = [{"params": [p for m in self.unet_loras for p in m.parameters()], "lr": unet_lr,
                   "name": "unet"}]
        if len(self.text_encoder_loras):
            groups.append({"params": [p for m in self.text_encoder_loras for p in m.parameters()],
                           "lr": text_encoder_lr, "name": "text_encoder"})
        return groups

    def kohya_state_dict(self, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
        """The weights under kohya names: ``<name>.lora_down.weight``, ``.lora_up.weight``, ``.alpha``."""
        tensors = {}
        for lora in self.all_loras():
            # Copies, always: the weights may be views into one packed buffer (trainer.packed_optimizer),
            # and safetensors refuses tensors that share memory.
            tensors[f"{lora.lora_name}.lora_down.weight"] = lora.lora_down.weight.detach().to("cpu", dtype, copy=True).contiguous()
            tensors[f"{lora.lora_name}.lora_up.weight"] = lora.lora_up.weight.detach().to("cpu", dtype, copy=True).contiguous()
            tensors[f"{lora.lora_name}.alpha"] = lora.alpha.detach().to("cpu", dtype)
        return tensors

    def load_kohya_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load weights saved by ``kohya_state_dict`` (missing or extra names are an error)."""
        check_weight_names(set(self.kohya_state_dict(torch.float32)), tensors, "LoRA")
        with torch.no_grad():
            for lora in self.all_loras():
                lora.lora_down.weight.copy_(tensors[f"{lora.lora_name}.lora_down.weight"])
                lora.lora_up.weight.copy_(tensors[f"{lora.lora_name}.lora_up.weight"])
