"""Which layers a LoRA adapts, and the kohya/A1111 names its weights are saved under (no torch).

The names are what A1111, ComfyUI and diffusers look for in a LoRA file:

- SD1.5 UNet layers keep diffusers' module path: ``lora_unet_down_blocks_0_attentions_0_proj_in``
  (sd-scripts trains SD1.x on a diffusers-layout UNet).
- SDXL UNet layers use the original Stability (SGM) layout: ``lora_unet_input_blocks_4_1_…``
  (sd-scripts trains SDXL on its SGM-layout UNet, and every SDXL LoRA in the wild looks so).
- Text encoders: ``lora_te_text_model_encoder_layers_0_self_attn_q_proj`` for SD1.5 and
  ``lora_te1_…`` / ``lora_te2_…`` for SDXL's two encoders. transformers 5 dropped the
  ``text_model.`` level from CLIPTextModel's module paths; the name puts it back.
"""

from __future__ import annotations

from typing import Sequence

UNET_ATTENTION_BLOCKS = ("Transformer2DModel",)
"""UNet blocks whose linear and 1×1 layers a plain LoRA adapts."""
UNET_CONV_BLOCKS = ("ResnetBlock2D", "Downsample2D", "Upsample2D")
"""UNet blocks a LoCon adds: their 3×3 convolutions get ``conv_dim``, the rest ``dim``."""


def is_text_encoder_block(class_name: str) -> bool:
    """CLIP attention and MLP blocks (CLIPAttention, CLIPSdpaAttention, CLIPMLP …)."""
    return class_name == "CLIPMLP" or (class_name.startswith("CLIP") and class_name.endswith("Attention"))


_RESNET_PARTS = {"conv1": "in_layers.2", "conv2": "out_layers.3", "time_emb_proj": "emb_layers.1",
                 "conv_shortcut": "skip_connection", "norm1": "in_layers.0", "norm2": "out_layers.0"}
_TOP_LEVEL = {"conv_in": "input_blocks.0.0", "conv_out": "out.2", "conv_norm_out": "out.0",
              "time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
              "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}


def _resnet(rest: list[str]) -> str:
    head = _RESNET_PARTS.get(rest[0], rest[0]) if rest else ""
    return ".".join([head] + rest[1:]) if rest else ""


def diffusers_to_sgm(path: str, layers_per_block: int, up_blocks_with_attention: Sequence[bool]) -> str:
    """Translate a diffusers UNet module path into the SGM layout sd-scripts uses for SDXL.

    ``layers_per_block`` is the UNet config's value; ``up_blocks_with_attention[i]`` says whether
    up block ``i`` has attention layers (which moves its upsampler from slot 1 to slot 2).
    """
    for prefix, target in _TOP_LEVEL.items():
        if path == prefix or path.startswith(prefix + "."):
            return target + path[len(prefix):]
    parts = path.split(".")
    per_level = layers_per_block + 1
    if parts[0] == "down_blocks":
        block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
        first = 1 + block * per_level
        if kind == "resnets":
            return f"input_blocks.{first + index}.0." + _resnet(rest)
        if kind == "attentions":
            return f"input_blocks.{first + index}.1." + ".".join(rest)
        if kind == "downsamplers":
            return f"input_blocks.{first + layers_per_block}.0.op"
    elif parts[0] == "mid_block":
        kind, index, rest = parts[1], int(parts[2]), parts[3:]
        if kind == "resnets":
            return f"middle_block.{0 if index == 0 else 2}." + _resnet(rest)
        if kind == "attentions":
            return "middle_block.1." + ".".join(rest)
    elif parts[0] == "up_blocks":
        block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), parts[4:]
        first = block * per_level
        if kind == "resnets":
            return f"output_blocks.{first + index}.0." + _resnet(rest)
        if kind == "attentions":
            return f"output_blocks.{first + index}.1." + ".".join(rest)
        if kind == "upsamplers":
            slot = 2 if up_blocks_with_attention[block] else 1
            return f"output_blocks.{first + layers_per_block}.{slot}." + ".".join(rest)
    raise ValueError(f"no SGM name for UNet module {path!r}")


def unet_lora_name(path: str, arch: str, layers_per_block: int = 2,
                   up_blocks_with_attention: Sequence[bool] = ()) -> str:
    """The kohya name of the LoRA on UNet module ``path`` (a diffusers module path)."""
    if arch == "sdxl":
        path = diffusers_to_sgm(path, layers_per_block, up_blocks_with_attention)
    return "lora_unet_" + path.replace(".", "_")


def text_encoder_lora_name(path: str, encoder_index: int, encoder_count: int) -> str:
    """The kohya name of the LoRA on text-encoder module ``path``.

    ``encoder_index`` counts from 0; with one encoder (SD1.5) the prefix is ``lora_te_``, with
    two (SDXL) ``lora_te1_`` and ``lora_te2_``.
    """
    if path.startswith("text_model."):
        path = path[len("text_model."):]
    prefix = "lora_te_" if encoder_count == 1 else f"lora_te{encoder_index + 1}_"
    return prefix + "text_model_" + path.replace(".", "_")
