"""How AUTOMATIC1111 and ComfyUI apply a kohya-layout LoRA file, as weight merges into a model.

Written from reading their loaders (A1111 1.10's built-in Lora extension: ``network.py``
``finalize_updown``/``apply_weight_decompose`` and the ``network_*.py`` modules; ComfyUI's
``comfy/weight_adapter`` and ``comfy/lora.py``; Forge's LoRA code is ComfyUI's), not copied from
them. These are the outside judges of what a user sees: a file that trains one way and merges
another is silently wrong in the UI, whatever our own loader says.

Each UI first rebuilds the update ΔW from the file's factors (scaled by alpha / rank), then:

- DoRA, A1111: M = W + ΔW is normalised per *input* channel (the norm over every axis but 1),
  whatever shape ``dora_scale`` has: W' = W + μ·(M · dora_scale / ‖M‖ − W).
- DoRA, ComfyUI: if ``dora_scale`` runs along the output axis (its first size is the layer's
  output width), it divides by the per-output-row norm of the *original* W; otherwise by M's
  per-input-channel norm, plus the weight dtype's epsilon. At strength 1: W' = M · dora_scale / ‖·‖.
- (IA)³, A1111 only (ComfyUI has no (IA)³ adapter): W' = W + μ·W ⊙ w, w along the output axis
  (or the input axis when ``on_input`` is set).
"""

from __future__ import annotations

import torch

from trainer.networks.lora import text_encoder_layers, unet_layers


def _layers(model, arch: str) -> dict:
    layers = {layer.name: layer.module for layer in unet_layers(model.unet, arch, True)}
    for index, encoder in enumerate(model.text_encoders):
        layers.update({layer.name: layer.module
                       for layer in text_encoder_layers(encoder, index, len(model.text_encoders))})
    return layers


def _by_layer(tensors: dict) -> dict[str, dict]:
    grouped: dict[str, dict] = {}
    for key, value in tensors.items():
        name, rest = key.split(".", 1)
        grouped.setdefault(name, {})[rest] = value.float() if value.is_floating_point() else value
    return grouped


def _product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a @ b`` for factors that may be 1×1 or k×k convolution weights (flattened to matrices)."""
    return a.reshape(a.shape[0], -1) @ b.reshape(b.shape[0], -1)


def _kron(w1: torch.Tensor, w2: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    if len(shape) == 4:  # w1 spans (out, in) blocks; w2 carries the kernel
        w2 = w2.reshape(w2.shape[0], -1, *shape[2:]) if w2.dim() == 2 else w2
        return torch.kron(w1.reshape(*w1.shape, 1, 1), w2)
    return torch.kron(w1, w2)


def delta_weight(parts: dict, shape: torch.Size) -> torch.Tensor:
    """ΔW of one layer from its saved factors, scaled by alpha / rank as every UI does."""
    alpha = float(parts["alpha"]) if "alpha" in parts else None
    if "lora_up.weight" in parts:
        down, up = parts["lora_down.weight"], parts["lora_up.weight"]
        rank, delta = down.shape[0], _product(up, down)
    elif "hada_w1_a" in parts:
        rank = parts["hada_w1_b"].shape[0]
        delta = _product(parts["hada_w1_a"], parts["hada_w1_b"]) * _product(parts["hada_w2_a"], parts["hada_w2_b"])
    elif "lokr_w1" in parts or "lokr_w1_a" in parts:
        rank = None  # only split factors have a rank; with none, alpha is ignored
        if "lokr_w1" in parts:
            w1 = parts["lokr_w1"]
        else:
            w1, rank = _product(parts["lokr_w1_a"], parts["lokr_w1_b"]), parts["lokr_w1_b"].shape[0]
        if "lokr_w2" in parts:
            w2 = parts["lokr_w2"]
        else:
            w2, rank = _product(parts["lokr_w2_a"], parts["lokr_w2_b"]), parts["lokr_w2_b"].shape[0]
        delta = _kron(w1, w2, shape)
    else:
        raise ValueError(f"no merge rule here for a layer with {sorted(parts)}")
    scale = alpha / rank if alpha is not None and rank else 1.0
    return delta.reshape(shape) * scale


def _input_channel_norm(weight: torch.Tensor) -> torch.Tensor:
    """‖·‖ of each input channel (over every axis but 1), shaped (1, in, 1, …)."""
    columns = weight.transpose(0, 1).reshape(weight.shape[1], -1).norm(dim=1)
    return columns.reshape(1, -1, *[1] * (weight.dim() - 2))


def _output_row_norm(weight: torch.Tensor) -> torch.Tensor:
    return weight.reshape(weight.shape[0], -1).norm(dim=1).reshape(-1, *[1] * (weight.dim() - 1))


def a1111_weight(weight: torch.Tensor, parts: dict, strength: float = 1.0) -> torch.Tensor:
    """The weight A1111 1.10 computes for one layer of the file."""
    if "on_input" in parts:
        w = parts["weight"].reshape(-1)
        factor = w.view(1, -1, *[1] * (weight.dim() - 2)) if int(parts["on_input"]) \
            else w.view(-1, *[1] * (weight.dim() - 1))
        return weight + strength * weight * factor
    delta = delta_weight(parts, weight.shape)
    if "dora_scale" not in parts:
        return weight + strength * delta
    merged = weight + delta
    return weight + strength * (merged * (parts["dora_scale"] / _input_channel_norm(merged)) - weight)


def comfyui_weight(weight: torch.Tensor, parts: dict) -> torch.Tensor:
    """The weight ComfyUI (and Forge's copy of its code) computes for one layer, at strength 1."""
    if "on_input" in parts:
        raise ValueError("ComfyUI has no (IA)³ adapter: it loads none of these keys")
    delta = delta_weight(parts, weight.shape)
    if "dora_scale" not in parts:
        return weight + delta
    merged = weight + delta
    scale = parts["dora_scale"]
    on_output = scale.shape[0] == weight.shape[0]
    norm = _output_row_norm(weight) if on_output else _input_channel_norm(merged)
    return merged * (scale / (norm + torch.finfo(weight.dtype).eps))


def merge_file(model, tensors: dict, arch: str, ui: str) -> int:
    """Merge every layer of the file into ``model`` the way ``ui`` (a1111 or comfyui) does; return the count."""
    layers = _layers(model, arch)
    rule = a1111_weight if ui == "a1111" else comfyui_weight
    with torch.no_grad():
        for name, parts in _by_layer(tensors).items():
            module = layers[name]
            module.weight.copy_(rule(module.weight.float(), parts).to(module.weight.dtype))
    return len(_by_layer(tensors))
