"""LyCORIS networks (LoHa, LoKr, (IA)³, BOFT, GLoRA and DoRA) in the kohya file layout.

The adapters themselves are lycoris-lora's modules; everything around them is ours:

- The layers are chosen by the same rule as our LoRA (``unet_layers``/``text_encoder_layers``),
  and named by the same function, so a LoHa of an SDXL model is saved under the SGM names
  (``lora_unet_input_blocks_4_1_…``) that sd-scripts-trained LyCORIS files use and A1111 and
  ComfyUI read, not under the diffusers paths ``lycoris.kohya`` would give on a diffusers UNet.
- Every module is built with explicit arguments. ``lycoris.kohya.create_network`` configures
  itself through class attributes (presets) that leak into every later network of the process;
  building modules directly never touches them.

The file's tensors are ``<kohya name>.<lycoris parameter>``: ``hada_w1_a`` … (LoHa), ``lokr_w1``
… (LoKr), ``weight``/``on_input`` ((IA)³), ``oft_blocks`` (BOFT), ``a1.weight`` … (GLoRA),
``lora_down.weight`` … plus ``dora_scale`` (DoRA), and ``alpha`` where the algorithm has one —
exactly what ``LycorisNetworkKohya.save_weights`` writes.
"""

from __future__ import annotations

import logging
from typing import Mapping

import torch
from torch import nn

from trainer.networks.lora import AdaptedLayer, check_weight_names, text_encoder_layers, unet_layers

ALGORITHMS = {"lora": "lora", "locon": "locon", "loha": "loha", "lokr": "lokr", "ia3": "ia3",
              "boft": "boft", "glora": "glora"}
"""Our ``network.type`` → LyCORIS's ``algo`` name (what ``ss_network_args`` records)."""
CONV_TYPES = frozenset({"locon", "loha", "lokr"})
"""Types that also adapt the UNet's ResNet convolutions (3×3 ones with ``conv_dim``)."""
DORA_TYPES = frozenset({"lora", "locon", "loha", "lokr"})
"""Types LyCORIS can add DoRA's weight decomposition to."""


def _module_classes() -> dict[str, type]:
    # Imported here: lycoris takes seconds to import and resets its logger's level on import,
    # so the level is lowered right after (it logs INFO lines to stdout otherwise).
    from lycoris.modules import ButterflyOFTModule, GLoRAModule, IA3Module, LoConModule, LohaModule, LokrModule
    logging.getLogger("LyCORIS").setLevel(logging.ERROR)
    return {"lora": LoConModule, "locon": LoConModule, "loha": LohaModule, "lokr": LokrModule,
            "ia3": IA3Module, "boft": ButterflyOFTModule, "glora": GLoRAModule}


class LycorisAdapterNetwork(nn.Module):
    """LyCORIS adapters on a model's layers, with the interface of ``LoRANetwork``.

    ``network_type`` is one of ``ALGORITHMS``; ``dora`` adds weight decomposition (lora, locon,
    loha and lokr only).
    """

    def __init__(self, unet: nn.Module, text_encoders: list[nn.Module], arch: str, network_type: str, *,
                 dim: int, alpha: float, conv_dim: int, conv_alpha: float, dora: bool,
                 train_text_encoders: bool, ranks: Mapping[str, tuple[int, float]] | None = None) -> None:
        super().__init__()
        if network_type not in ALGORITHMS:
            raise ValueError(f"unknown LyCORIS network type {network_type!r}")
        if dora and network_type not in DORA_TYPES:
            raise ValueError(f"DoRA cannot be combined with {network_type}")
        self.network_type, self.dora = network_type, dora
        self.algorithm = ALGORITHMS[network_type]
        module_class = _module_classes()[network_type]
        with_conv = network_type in CONV_TYPES

        def build(layer: AdaptedLayer) -> nn.Module | None:
            rank, scale = (conv_dim, conv_alpha) if layer.is_spatial_conv else (dim, alpha)
            rank, scale = (ranks or {}).get(layer.name, (rank, scale))  # a continued file's own rank
            kwargs = {"weight_decompose": True, "wd_on_out": False} if dora else {}
            try:
                return module_class(layer.name, layer.module, 1.0, rank, scale, **kwargs)
            except ValueError as exc:  # BOFT needs a rank that splits every layer's width into butterfly blocks
                raise ValueError(f"network.dim = {rank} does not suit {network_type} on {layer.name}: {exc}") from exc

        unet_modules = [build(layer) for layer in unet_layers(unet, arch, with_conv_blocks=with_conv)
                        if with_conv or not layer.is_spatial_conv]
        te_modules = []
        if train_text_encoders:
            for index, encoder in enumerate(text_encoders):
                te_modules += [build(layer) for layer in text_encoder_layers(encoder, index, len(text_encoders))]
        self.unet_loras = nn.ModuleList(unet_modules)
        self.text_encoder_loras = nn.ModuleList(te_modules)
        names = [m.lora_name for m in self.all_loras()]
        if len(set(names)) != len(names):
            raise ValueError("two layers map to the same LoRA name")
        # LyCORIS leaves some factors frozen by default (e.g. BOFT's rescale); train everything.
        for parameter in self.parameters():
            parameter.requires_grad_(True)
        self._attached = False

    def all_loras(self) -> list[nn.Module]:
        """Every adapter, UNet first."""
        return list(self.unet_loras) + list(self.text_encoder_loras)

    def attach(self) -> None:
        """Hook every adapter into its layer."""
        if not self._attached:
            for module in self.all_loras():
                module.apply_to()
            self._attached = True

    def detach(self) -> None:
        """Unhook every adapter, leaving the base model as it was."""
        if self._attached:
            # Reversed: lycoris keeps a per-layer stack of wrappers, restored last in, first out.
            for module in reversed(self.all_loras()):
                module.restore()
            self._attached = False

    def set_multiplier(self, multiplier: float) -> None:
        """Scale the network's effect (1.0 = as trained, 0 = off)."""
        for module in self.all_loras():
            module.multiplier = multiplier

    def parameter_groups(self, unet_lr: float, text_encoder_lr: float) -> list[dict]:
        """Optimizer parameter groups with the UNet and text-encoder learning rates."""
        groups = [{"params": list(self.unet_loras.parameters()), "lr": unet_lr, "name": "unet"}]
        if len(self.text_encoder_loras):
            groups.append({"params": list(self.text_encoder_loras.parameters()), "lr": text_encoder_lr,
                           "name": "text_encoder"})
        return groups

    def kohya_state_dict(self, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
        """The weights under kohya names, ``<name>.<lycoris tensor>``, in ``dtype``."""
        tensors = {}
        for module in self.all_loras():
            for key, value in module.state_dict().items():
                value = value.detach().to("cpu")
                if key != "on_input":  # (IA)³'s side flag stays an integer; alpha and weights take dtype
                    value = value.to(dtype)
                tensors[f"{module.lora_name}.{key}"] = value.contiguous()
        return tensors

    def load_kohya_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load weights saved by ``kohya_state_dict`` (missing or extra names are an error)."""
        check_weight_names(set(self.kohya_state_dict(torch.float32)), tensors, "LyCORIS")
        for module in self.all_loras():
            prefix = module.lora_name + "."
            own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            current = module.state_dict()
            module.load_state_dict({k: v.to(current[k].dtype) for k, v in own.items()}, strict=True)
