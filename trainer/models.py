"""Loading the base model (tokenizers, text encoders, VAE, UNet, noise schedule) and encoding text.

SD1.5 conditions the UNet on the text encoder's last hidden state. SDXL concatenates the
penultimate hidden states of its two encoders and adds the second encoder's pooled embedding
plus six "time ids" (original size, crop corner, target size) — the same recipe as diffusers'
SDXL pipeline, so a LoRA trained here behaves the same when sampled there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainer.errors import TrainerError
from trainer.preflight import arch_from_model_index, local_model_arch


@dataclass
class BaseModel:
    """The frozen parts of Stable Diffusion a LoRA is trained against."""

    arch: str
    tokenizers: list[Any]
    text_encoders: list[torch.nn.Module]
    vae: torch.nn.Module
    unet: torch.nn.Module
    noise_scheduler: Any
    clip_skip: int = 1
    """SD1.5: which text-encoder layer from the end conditions the UNet (1 = the last)."""

    @property
    def prediction_type(self) -> str:
        return self.noise_scheduler.config.prediction_type


def detect_arch(base: str) -> str:
    """``sdxl`` when the model has SDXL's second text encoder, else ``sd15``.

    A local folder is read directly; a hub id needs its model_index.json downloaded.
    """
    local = local_model_arch(base)
    if local is not None:
        return local
    try:
        from huggingface_hub import hf_hub_download

        index = json.loads(Path(hf_hub_download(base, "model_index.json")).read_text())
    except Exception as exc:  # network errors, missing repos, unreadable files
        raise TrainerError("model", f"cannot read the model description of {base}: {exc}",
                           "Check model.base; a hub id needs network access on this box.") from exc
    return arch_from_model_index(index)


def load_base_model(base: str, arch: str, dtype: torch.dtype, device: torch.device) -> BaseModel:
    """Load every component of a diffusers model (a folder or a hub id), frozen, on ``device``.

    The VAE stays in fp32: it only encodes the images once, and SDXL's VAE overflows in fp16.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    try:
        tokenizers = [CLIPTokenizer.from_pretrained(base, subfolder="tokenizer")]
        encoders: list[torch.nn.Module] = [CLIPTextModel.from_pretrained(base, subfolder="text_encoder",
                                                                         torch_dtype=dtype)]
        if arch == "sdxl":
            tokenizers.append(CLIPTokenizer.from_pretrained(base, subfolder="tokenizer_2"))
            encoders.append(CLIPTextModelWithProjection.from_pretrained(base, subfolder="text_encoder_2",
                                                                        torch_dtype=dtype))
        vae = AutoencoderKL.from_pretrained(base, subfolder="vae", torch_dtype=torch.float32)
        unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", torch_dtype=dtype)
        scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler")
    except (OSError, ValueError, EnvironmentError) as exc:
        raise TrainerError("model", f"cannot load the model {base}: {exc}",
                           "Check model.base and model.arch (SDXL models need arch sdxl or auto).") from exc
    for module in [*encoders, vae, unet]:
        module.requires_grad_(False)
        module.eval()
        module.to(device)
    return BaseModel(arch, tokenizers, encoders, vae, unet, scheduler)


def tokenize(model: BaseModel, captions: list[str]) -> list[torch.Tensor]:
    """Token ids for each tokenizer, padded and truncated to its 77-token window."""
    ids = []
    for tokenizer in model.tokenizers:
        ids.append(tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids)
    return ids


def encode_text(model: BaseModel, token_ids: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The UNet's text conditioning: (hidden states, pooled embedding or None for SD1.5)."""
    device = model.unet.device
    if model.arch == "sd15":
        encoder = model.text_encoders[0]
        if model.clip_skip == 1:
            return encoder(token_ids[0].to(device)).last_hidden_state, None
        # Clip skip takes an earlier layer and, as A1111 and sd-scripts do, applies the final norm.
        output = encoder(token_ids[0].to(device), output_hidden_states=True)
        norm = getattr(encoder, "final_layer_norm", None) or encoder.text_model.final_layer_norm
        return norm(output.hidden_states[-model.clip_skip]), None
    first = model.text_encoders[0](token_ids[0].to(device), output_hidden_states=True)
    second = model.text_encoders[1](token_ids[1].to(device), output_hidden_states=True)
    hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
    return hidden, second.text_embeds


def sdxl_time_ids(original_size: tuple[int, int], crop_top_left: tuple[int, int],
                  target_size: tuple[int, int]) -> torch.Tensor:
    """SDXL's size conditioning for one image: (orig h, orig w, crop top, crop left, target h, w)."""
    return torch.tensor([*original_size, *crop_top_left, *target_size], dtype=torch.float32)
