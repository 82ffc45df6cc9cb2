"""Write a diffusers model as an original-layout single-file checkpoint (test and benchmark fixtures).

Civitai models come as one ``.safetensors`` in the layout of the original Stability code
(``model.diffusion_model.…``, ``first_stage_model.…``, ``cond_stage_model.…`` or SDXL's
``conditioner.embedders.…``), and VAEs as a file of their own in the same layout without the
``first_stage_model.`` prefix. diffusers reads that layout but ships no writer, so the tests (tiny
models) and ``bench/bench_single_file_ram.py`` (full-size random ones) build them here, offline.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from trainer.networks.naming import diffusers_to_sgm


def _unet(unet) -> dict[str, torch.Tensor]:
    with_attention = [t.startswith("CrossAttn") for t in unet.config.up_block_types]
    out = {}
    for name, tensor in unet.state_dict().items():
        module, _, param = name.rpartition(".")
        path = diffusers_to_sgm(module, unet.config.layers_per_block, with_attention)
        out[f"model.diffusion_model.{path}.{param}"] = tensor
    return out


_VAE_RESNET = {"conv_shortcut": "nin_shortcut"}
_VAE_ATTENTION = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def _vae(vae) -> dict[str, torch.Tensor]:
    ups = len(vae.config.up_block_types)
    out = {}
    for name, tensor in vae.state_dict().items():
        parts = name.split(".")
        side = parts[0]
        if side in ("quant_conv", "post_quant_conv"):
            key = name
        elif parts[1] == "conv_norm_out":
            key = f"{side}.norm_out.{parts[-1]}"
        elif parts[1] in ("conv_in", "conv_out"):
            key = name
        elif parts[1] == "mid_block" and parts[2] == "resnets":
            key = f"{side}.mid.block_{int(parts[3]) + 1}." + ".".join(_VAE_RESNET.get(p, p) for p in parts[4:])
        elif parts[1] == "mid_block" and parts[2] == "attentions":
            inner = ".".join(parts[4:-1])
            key = f"{side}.mid.attn_1.{_VAE_ATTENTION[inner]}.{parts[-1]}"
            if tensor.ndim == 2:
                tensor = tensor[:, :, None, None]  # the original attention uses 1×1 convolutions
        else:
            block = int(parts[2]) if side == "encoder" else ups - 1 - int(parts[2])
            level = "down" if side == "encoder" else "up"
            if parts[3] == "resnets":
                key = f"{side}.{level}.{block}.block.{parts[4]}." + ".".join(_VAE_RESNET.get(p, p) for p in parts[5:])
            else:  # downsamplers / upsamplers
                key = f"{side}.{level}.{block}.{'downsample' if side == 'encoder' else 'upsample'}.conv.{parts[-1]}"
        out[f"first_stage_model.{key}"] = tensor
    return out


def _clip(encoder, prefix: str) -> dict[str, torch.Tensor]:
    out = {}
    for name, tensor in encoder.state_dict().items():
        name = name if name.startswith(("text_model.", "text_projection")) else f"text_model.{name}"
        out[prefix + name] = tensor
    return out


def _open_clip(encoder, prefix: str) -> dict[str, torch.Tensor]:
    state = {k.removeprefix("text_model."): v for k, v in encoder.state_dict().items()}
    out = {prefix + "token_embedding.weight": state["embeddings.token_embedding.weight"],
           prefix + "positional_embedding": state["embeddings.position_embedding.weight"],
           prefix + "ln_final.weight": state["final_layer_norm.weight"],
           prefix + "ln_final.bias": state["final_layer_norm.bias"],
           prefix + "text_projection": state["text_projection.weight"].T.contiguous()}
    for layer in range(encoder.config.num_hidden_layers):
        src, dst = f"encoder.layers.{layer}.", f"{prefix}transformer.resblocks.{layer}."
        for kind in ("weight", "bias"):
            out[dst + f"attn.in_proj_{kind}"] = torch.cat([state[src + f"self_attn.{p}_proj.{kind}"] for p in "qkv"])
            out[dst + f"attn.out_proj.{kind}"] = state[src + f"self_attn.out_proj.{kind}"]
            out[dst + f"ln_1.{kind}"] = state[src + f"layer_norm1.{kind}"]
            out[dst + f"ln_2.{kind}"] = state[src + f"layer_norm2.{kind}"]
            out[dst + f"mlp.c_fc.{kind}"] = state[src + f"mlp.fc1.{kind}"]
            out[dst + f"mlp.c_proj.{kind}"] = state[src + f"mlp.fc2.{kind}"]
    return out


def vae_tensors(vae, prefix: str = "") -> dict[str, torch.Tensor]:
    """A diffusers VAE's weights in the original layout, each name after ``prefix``."""
    return {prefix + key.removeprefix("first_stage_model."): tensor.contiguous() for key, tensor in _vae(vae).items()}


def export_vae(vae, target: Path) -> Path:
    """Write a diffusers VAE as a stand-alone original-layout VAE file (as vae-ft-mse-840000 is shipped)."""
    save_file(vae_tensors(vae), str(target))
    return target


def export_single_file(model_dir: Path, target: Path, markers: tuple[str, ...] = (), with_vae: bool = True) -> Path:
    """Write the diffusers model in ``model_dir`` as one original-layout checkpoint at ``target``.

    ``markers`` adds bare, empty tensors such as ``v_pred`` and ``ztsnr``, the way NoobAI-style
    v-prediction checkpoints say what they are. ``with_vae=False`` leaves the VAE out, as some SD1.5
    checkpoints are shared.
    """
    from diffusers import DiffusionPipeline

    return write_single_file(DiffusionPipeline.from_pretrained(model_dir), target, markers, with_vae)


def write_single_file(pipe, target: Path, markers: tuple[str, ...] = (), with_vae: bool = True) -> Path:
    """Write a loaded diffusers pipeline as one original-layout checkpoint at ``target`` (see ``export_single_file``)."""
    tensors = _unet(pipe.unet) | (_vae(pipe.vae) if with_vae else {})
    if hasattr(pipe, "text_encoder_2"):
        tensors |= _clip(pipe.text_encoder, "conditioner.embedders.0.transformer.")
        tensors |= _open_clip(pipe.text_encoder_2, "conditioner.embedders.1.model.")
    else:
        tensors |= _clip(pipe.text_encoder, "cond_stage_model.transformer.")
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    tensors |= {marker: torch.zeros(0) for marker in markers}
    if target.suffix == ".ckpt":
        torch.save({"state_dict": tensors}, target)
    else:
        save_file(tensors, str(target))
    return target
