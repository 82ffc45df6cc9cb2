"""Loading the base model (tokenizers, text encoders, VAE, UNet, noise schedule) and encoding text.

SD1.5 conditions the UNet on the text encoder's last hidden state. SDXL concatenates the
penultimate hidden states of its two encoders and adds the second encoder's pooled embedding
plus six "time ids" (original size, crop corner, target size) — the same recipe as diffusers'
SDXL pipeline, so a LoRA trained here behaves the same when sampled there.
"""

from __future__ import annotations

import contextlib
import json
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainer.contract.errors import TrainerError
from trainer.contract.model_ref import (DEFAULT_SINGLE_FILE_CONFIGS, arch_from_checkpoint_keys, arch_from_model_index,
                                        local_model_arch, safetensors_keys)
from trainer.contract.prediction import Detected, Resolved, detect_prediction, resolve_prediction
from trainer.contract.vae_ref import VaeShape, expected_vae, vae_folder, vae_mismatch, vae_shape_from_tensors
from trainer.long_prompts import CHUNK, chunk_ids, first_chunk, join_chunks


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
    max_token_length: int = 75
    """Caption tokens the encoders read: 75 (one CLIP window) or 150/225 in 75-token chunks."""

    @property
    def prediction_type(self) -> str:
        return self.noise_scheduler.config.prediction_type

    @property
    def zero_terminal_snr(self) -> bool:
        return bool(self.noise_scheduler.config.get("rescale_betas_zero_snr", False))


def apply_prediction(model: BaseModel, base: str, requested: str, zero_terminal_snr: bool,
                     single_file_config: str = "") -> Resolved:
    """Give the model the noise schedule it was trained with: prediction type and zero terminal SNR.

    A single file's scheduler config comes from the official repository (epsilon), so what the
    file itself says (its ``v_pred``/``ztsnr`` markers) is applied here; a hub model's own
    scheduler config, downloaded with it, answers when nothing could be read beforehand.
    """
    from diffusers import DDPMScheduler

    detected = detect_prediction(base, single_file_config)
    if detected.prediction is None:
        loaded = model.noise_scheduler.config
        detected = Detected("v_prediction" if loaded.prediction_type == "v_prediction" else "epsilon",
                            bool(loaded.get("rescale_betas_zero_snr", False)),
                            "the scheduler config it was loaded with")
    resolved = resolve_prediction(requested, zero_terminal_snr, detected)
    # Zero terminal SNR: the betas rescaled so the last step's signal is exactly zero (Lin et al. 2023,
    # Algorithm 1), which diffusers' DDPMScheduler does from this flag.
    model.noise_scheduler = DDPMScheduler.from_config(model.noise_scheduler.config,
                                                      prediction_type=resolved.prediction,
                                                      rescale_betas_zero_snr=resolved.zero_terminal_snr)
    return resolved


def detect_arch(base: str) -> str:
    """``sdxl`` when the model has SDXL's second text encoder, else ``sd15``.

    A local folder is read directly; a hub id needs its model_index.json downloaded.
    """
    if Path(base).is_file():
        return checkpoint_arch(Path(base))
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


def checkpoint_arch(path: Path) -> str:
    """``sd15`` or ``sdxl`` for a single-file checkpoint; a ``.ckpt`` is read as plain tensors only."""
    try:
        if path.suffix.lower() == ".safetensors":
            keys = safetensors_keys(path)
        else:
            try:
                state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) pickles cannot be memory-mapped
                state = torch.load(path, map_location="cpu", weights_only=True)
            keys = list(state.get("state_dict", state).keys()) if isinstance(state, dict) else []
            del state
    except pickle.UnpicklingError as exc:
        raise TrainerError("model", f"{path} holds more than tensors (a .ckpt is a Python pickle, which can run "
                           "code when opened), so it was not loaded.",
                           "Use a .safetensors version of the model; most model pages offer one.") from exc
    except (OSError, RuntimeError, ValueError, EOFError) as exc:
        raise TrainerError("model", f"{path} cannot be read: {exc}", "Check that the download finished.") from exc
    try:
        return arch_from_checkpoint_keys(keys)
    except ValueError as exc:
        raise TrainerError("model", f"{path} {exc}.", "Point model.base at an SD1.5 or SDXL checkpoint.") from exc


def _load_single_file(path: Path, arch: str, source: str, dtype: torch.dtype,
                      vae: torch.nn.Module | None) -> tuple[list, list, Any, Any, Any]:
    """``source``: the diffusers folder or hub id the file's component configs come from."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline, StableDiffusionXLPipeline

    local = Path(source).is_dir()
    pipeline = StableDiffusionXLPipeline if arch == "sdxl" else StableDiffusionPipeline
    extra = {} if arch == "sdxl" else {"safety_checker": None, "feature_extractor": None,
                                        "requires_safety_checker": False}
    try:
        if vae is None:
            # The VAE in fp32 straight from the file: through 16 bits and back, an fp32 file's VAE would
            # lose precision.
            vae = AutoencoderKL.from_single_file(str(path), config=source, subfolder="vae", local_files_only=local,
                                                 torch_dtype=torch.float32)
        # The rest straight into the training dtype. Loaded in fp32 and cast afterwards, an SDXL file
        # held about 14 GB of host memory at its peak, which kills the trainer on a 16 GB box
        # (bench/bench_single_file_ram.py measures it).
        pipe = pipeline.from_single_file(str(path), config=source, local_files_only=local, torch_dtype=dtype,
                                         vae=vae, **extra)
    except Exception as exc:  # diffusers raises many types for missing configs, offline hubs and bad files
        advice = ("Check that model.single_file_config is a diffusers folder of the same architecture." if local else
                  f"Loading a single file needs the small config files of {source}; if this box has no network, "
                  "set model.single_file_config to a local diffusers folder of the same architecture.")
        raise TrainerError("model", f"cannot load {path}: {exc}".splitlines()[0], advice) from exc
    tokenizers = [pipe.tokenizer] + ([pipe.tokenizer_2] if arch == "sdxl" else [])
    encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if arch == "sdxl" else [])
    return tokenizers, encoders, pipe.vae, pipe.unet, pipe.scheduler.config


def load_vae(reference: str, expected: VaeShape, config_source: str) -> torch.nn.Module:
    """The VAE ``model.vae`` names, in fp32: a diffusers folder, or a file in the original or diffusers layout.

    A file carries no config, so its VAE takes the base model's from ``config_source`` (a diffusers
    folder or hub id), scaling factor included. A ``.ckpt``/``.pt`` is read as plain tensors only.
    """
    from diffusers import AutoencoderKL

    path = Path(reference)
    try:
        if path.is_dir():
            folder = vae_folder(path)
            if folder is None:
                raise ValueError("is not a diffusers VAE folder")
            vae = AutoencoderKL.from_pretrained(folder, torch_dtype=torch.float32)
            if "scaling_factor" not in json.loads((folder / "config.json").read_text()) and expected.scaling_factor:
                vae.register_to_config(scaling_factor=expected.scaling_factor)  # diffusers' default is SD1.5's
            return vae
        state = _plain_tensors(path)
        why = vae_mismatch(vae_shape_from_tensors({key: tuple(t.shape) for key, t in state.items()}), expected)
        if why:
            raise ValueError(why)
        return AutoencoderKL.from_single_file(state, config=config_source, subfolder="vae", torch_dtype=torch.float32,
                                              local_files_only=Path(config_source).is_dir())
    except pickle.UnpicklingError as exc:
        raise TrainerError("model", f"model.vae: {path} holds more than tensors (a pickle can run code when "
                           "opened), so it was not loaded.", "Use a .safetensors version of the VAE.") from exc
    except ValueError as exc:
        raise TrainerError("model", f"model.vae: {path} {exc}.", "Point model.vae at a VAE made for this "
                           "model's architecture, or leave it empty to use the model's own.") from exc
    except Exception as exc:  # diffusers raises many types for incomplete or foreign files
        raise TrainerError("model", f"model.vae: cannot load {path}: {exc}".splitlines()[0],
                           "Check that the file is a complete VAE for this model's architecture.") from exc


def _plain_tensors(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    while isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError("holds no tensors by name")
    return {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}


def load_base_model(base: str, arch: str, dtype: torch.dtype, device: torch.device,
                    single_file_config: str = "", vae: str = "") -> BaseModel:
    """Load every component of the base model, frozen, on ``device``.

    ``base`` is a single-file checkpoint, a diffusers folder or a hub id; ``vae`` (``model.vae``)
    replaces its VAE. The VAE stays in fp32: it only encodes the images once, and SDXL's VAE
    overflows in fp16. The rest is loaded straight in ``dtype``, never as an fp32 copy first.
    """
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    is_file = Path(base).is_file()
    config_source = (single_file_config or DEFAULT_SINGLE_FILE_CONFIGS[arch]) if is_file else base
    chosen_vae = load_vae(vae, expected_vae(base, arch, single_file_config), config_source) if vae else None
    if is_file:
        tokenizers, encoders, loaded_vae, unet, scheduler_config = _load_single_file(
            Path(base), arch, config_source, dtype, chosen_vae)
        # Every SD1.5/SDXL sampler config describes the same training noise schedule.
        scheduler = DDPMScheduler.from_config(scheduler_config)
        for module in [*encoders, unet]:
            module.to(dtype)  # already so; a no-op unless an older diffusers left a part in fp32
        return _frozen(BaseModel(arch, tokenizers, encoders, loaded_vae, unet, scheduler), device)
    try:
        tokenizers = [CLIPTokenizer.from_pretrained(base, subfolder="tokenizer")]
        encoders: list[torch.nn.Module] = [CLIPTextModel.from_pretrained(base, subfolder="text_encoder",
                                                                         torch_dtype=dtype)]
        if arch == "sdxl":
            tokenizers.append(CLIPTokenizer.from_pretrained(base, subfolder="tokenizer_2"))
            encoders.append(CLIPTextModelWithProjection.from_pretrained(base, subfolder="text_encoder_2",
                                                                        torch_dtype=dtype))
        loaded_vae = chosen_vae or AutoencoderKL.from_pretrained(base, subfolder="vae", torch_dtype=torch.float32)
        unet = UNet2DConditionModel.from_pretrained(base, subfolder="unet", torch_dtype=dtype)
        scheduler = DDPMScheduler.from_pretrained(base, subfolder="scheduler")
    except (OSError, ValueError, EnvironmentError) as exc:
        raise TrainerError("model", f"cannot load the model {base}: {exc}",
                           "Check model.base and model.arch (SDXL models need arch sdxl or auto).") from exc
    return _frozen(BaseModel(arch, tokenizers, encoders, loaded_vae, unet, scheduler), device)


def _frozen(model: BaseModel, device: torch.device) -> BaseModel:
    # Only the VAE goes to the GPU now: it encodes the images first, and keeping the UNet and
    # text encoders off the GPU meanwhile keeps that phase from being the run's memory peak.
    for module in [*model.text_encoders, model.vae, model.unet]:
        module.requires_grad_(False)
        module.eval()
    model.vae.to(device)
    return model


def place_for_training(model: BaseModel, device: torch.device, text_outputs_cached: bool = False) -> None:
    """Once the images are encoded: the VAE leaves the GPU, the UNet and text encoders take its place.

    The text encoders stay on the CPU when their outputs are cached (``text_encoder_device``).
    """
    model.vae.to("cpu")
    model.unet.to(device)
    for encoder in model.text_encoders:
        encoder.to(text_encoder_device(device, text_outputs_cached))


def text_encoder_device(device: torch.device, outputs_cached: bool) -> torch.device:
    """Where the text encoders stay during training: on the CPU when their outputs are cached.

    Why: frozen encoders whose every output is in the text-embedding cache never run in a
    training step, yet their weights (about 1.6 GiB for SDXL in bf16, 0.25 GiB for SD1.5) would
    hold GPU memory all run long. The cache is built before the UNet comes to the GPU, so the
    encoders and the UNet are never there together; sampling fetches the encoders and puts them back.
    """
    return torch.device("cpu") if outputs_cached else device


def module_device(module: torch.nn.Module) -> torch.device:
    """The device a module's weights are on (its first parameter's)."""
    return next(module.parameters()).device


@contextlib.contextmanager
def on_device(modules: list[torch.nn.Module], device: torch.device) -> Iterator[None]:
    """The modules on ``device`` inside the block, each back on its own device after it (a failure too)."""
    homes = [(module, module_device(module)) for module in modules]
    try:
        for module in modules:
            module.to(device)
        yield
    finally:
        for module, home in homes:
            module.to(home)


def tokenize(model: BaseModel, captions: list[str]) -> list[torch.Tensor]:
    """Token ids for each tokenizer: (batch, 77), or (batch, chunks, 77) beyond one window
    (``max_token_length`` 150 or 225; see ``trainer.long_prompts``)."""
    length = model.max_token_length + 2
    ids = []
    for tokenizer in model.tokenizers:
        raw = tokenizer(captions, padding="max_length", max_length=length, truncation=True,
                        return_tensors="pt").input_ids
        ids.append(raw if model.max_token_length == CHUNK else
                   chunk_ids(raw, tokenizer.pad_token_id, tokenizer.eos_token_id))
    return ids


def caption_tokens(model: BaseModel, caption: str) -> int:
    """How many text tokens a caption has (without start and end), by the first tokenizer."""
    return len(model.tokenizers[0](caption, truncation=False).input_ids) - 2


def encode_text(model: BaseModel, token_ids: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The UNet's text conditioning: (hidden states, pooled embedding or None for SD1.5).

    Chunked ids (a window beyond 75 tokens) are encoded as one batch of chunks and joined back.
    Each encoder runs where its weights are, and the result is on that device: the encoders are
    not always beside the UNet (they wait on the CPU while their outputs are cached).
    """
    chunks = token_ids[0].shape[1] if token_ids[0].dim() == 3 else 0
    hidden, pooled = _encode(model, [ids.reshape(-1, ids.shape[-1]) for ids in token_ids])
    if chunks:
        hidden = join_chunks(hidden, chunks)
        pooled = first_chunk(pooled, chunks) if pooled is not None else None
    return hidden, pooled


def _encode(model: BaseModel, token_ids: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    if model.arch == "sd15":
        encoder = model.text_encoders[0]
        device = module_device(encoder)
        if model.clip_skip == 1:
            return encoder(token_ids[0].to(device)).last_hidden_state, None
        # Clip skip takes an earlier layer and, as A1111 and sd-scripts do, applies the final norm.
        output = encoder(token_ids[0].to(device), output_hidden_states=True)
        norm = getattr(encoder, "final_layer_norm", None) or encoder.text_model.final_layer_norm
        return norm(output.hidden_states[-model.clip_skip]), None
    encoders = model.text_encoders
    first = encoders[0](token_ids[0].to(module_device(encoders[0])), output_hidden_states=True)
    second = encoders[1](token_ids[1].to(module_device(encoders[1])), output_hidden_states=True)
    hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
    return hidden, second.text_embeds


def sdxl_time_ids(original_size: tuple[int, int], crop_top_left: tuple[int, int],
                  target_size: tuple[int, int]) -> torch.Tensor:
    """SDXL's size conditioning for one image: (orig h, orig w, crop top, crop left, target h, w)."""
    return torch.tensor([*original_size, *crop_top_left, *target_size], dtype=torch.float32)
