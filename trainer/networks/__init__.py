"""Networks trained on top of the base model: our own LoRA/LoCon, and LyCORIS types, in the kohya layout."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

if TYPE_CHECKING:
    from torch import nn

    from trainer.contract.config.schema import NetworkConfig


def build_network(network: NetworkConfig, unet: nn.Module, text_encoders: list[nn.Module], arch: str,
                  train_text_encoders: bool, ranks: Mapping[str, tuple[int, float]] | None = None) -> nn.Module:
    """The network ``network.type`` names, detached, with the interface of ``LoRANetwork``.

    Plain LoRA and LoCon use our own modules (diffusers' loader reproduces them exactly); every
    other type, and DoRA on any type, uses LyCORIS's modules. ``ranks`` gives named layers their
    own (rank, alpha) instead of the config's (a file continued with ``network.dim_from_weights``).
    """
    ranks = ranks or {}
    if network.type in ("lora", "locon") and not network.dora:
        from trainer.networks.lora import LoRANetwork, NetworkSpec
        spec = NetworkSpec(network.dim, network.alpha, network.conv_dim if network.type == "locon" else 0,
                           network.conv_alpha)
        return LoRANetwork(unet, text_encoders, arch, spec, train_text_encoders, ranks)
    from trainer.networks.lycoris_net import LycorisAdapterNetwork
    return LycorisAdapterNetwork(unet, text_encoders, arch, network.type, dim=network.dim, alpha=network.alpha,
                                 conv_dim=network.conv_dim, conv_alpha=network.conv_alpha, dora=network.dora,
                                 train_text_encoders=train_text_encoders, ranks=ranks)


def uses_lycoris(network: NetworkConfig) -> bool:
    """Whether the file is a LyCORIS one (``ss_network_module`` = ``lycoris.kohya``)."""
    return network.type not in ("lora", "locon") or network.dora
