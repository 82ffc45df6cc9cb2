"""Starting a run's network from a LoRA file (``network.weights``, kohya's ``network_weights``).

The network is built as the config says (or, with ``network.dim_from_weights``, with each layer's
rank and alpha from the file) and the file's tensors are copied into it, converted to fp32. The
file must fit the network exactly: a layer the network has and the file lacks, a tensor of
another shape or another alpha stops the run naming ``network.weights``; nothing is loaded
partly. One exception: a file without text-encoder layers (a UNet-only LoRA) continued with
``optimizer.text_encoder_lr`` above 0 starts those layers fresh (zero effect at first, as in any
new LoRA), with a warning, so a UNet-only LoRA can go on to train the text encoder too.

A resumed run never reads the file: its saved state already holds the weights it had reached.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from trainer.contract.config.schema import Config
from trainer.contract.errors import TrainerError
from trainer.contract.events import EventWriter
from trainer.contract.lora_weights import FIELD, module_ranks, read_start_file, with_file_dims

TEXT_ENCODER_PREFIX = "lora_te"


def network_shape(config: Config) -> tuple[Config, dict[str, tuple[int, float]]]:
    """The config the network is built from, and per-layer ranks, under ``network.dim_from_weights``.

    Without it (or without a file) the config is returned as it is. With it, dim, alpha, conv_dim and
    conv_alpha become those most of the file's layers have (so the metadata records them), and every
    layer keeps its own rank and alpha (a resized file's ranks differ per layer).
    """
    if not (config.network.weights and config.network.dim_from_weights):
        return config, {}
    start = read_start_file(config.network.weights)
    return with_file_dims(config, start), module_ranks(start)


def _refuse(message: str, advice: str) -> TrainerError:
    return TrainerError("input", f"{FIELD}: {message}", advice)


def load_start_weights(network: torch.nn.Module, path: str, events: EventWriter) -> None:
    """Copy the LoRA file at ``path`` into ``network``, all of it or nothing (see the module's docstring)."""
    shown = Path(path).name
    try:
        tensors = load_file(path)
    except (OSError, SafetensorError) as exc:
        raise _refuse(f"{path} cannot be read ({exc}).", "Give a LoRA .safetensors file.") from None
    expected = network.kohya_state_dict(torch.float32)
    own_te = [k for k in expected if k.startswith(TEXT_ENCODER_PREFIX)]
    if own_te and not any(k.startswith(TEXT_ENCODER_PREFIX) for k in tensors):
        events.emit("warning", code="weights_text_encoder_fresh", file=str(path),
                    message=f"{shown} has no text-encoder layers; the text encoder's LoRA starts fresh while the "
                            "UNet's continues from the file.")
        tensors.update({k: expected[k] for k in own_te})
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing or extra:
        detail = (f"lacks {len(missing)} of the network's tensors (such as {missing[0]})" if missing else
                  f"has {len(extra)} tensors the network does not (such as {extra[0]})")
        raise _refuse(f"{shown} {detail}, so it is not a file of this network.",
                      "Use the network.type, dora and layers the file was trained with, or another file.")
    for key, wanted in expected.items():
        found = tensors[key]
        if tuple(found.shape) != tuple(wanted.shape):
            raise _refuse(f"{shown} holds {key} as {tuple(found.shape)}, but the network needs "
                          f"{tuple(wanted.shape)}.", "Set network.dim and conv_dim to the file's, or turn on "
                          "network.dim_from_weights.")
        if key.endswith(".alpha") and not torch.allclose(found.float(), wanted.float(), rtol=1e-3, atol=1e-4):
            # The scale alpha/dim is fixed when the network is built; loading another alpha would not change it.
            raise _refuse(f"{shown} has alpha {found.item():g} for {key[:-6]}, but the network was built with "
                          f"{wanted.item():g}.", "Set network.alpha (and conv_alpha) to the file's, or turn on "
                          "network.dim_from_weights.")
    network.load_kohya_state_dict({k: v.float() if v.is_floating_point() else v for k, v in tensors.items()})
