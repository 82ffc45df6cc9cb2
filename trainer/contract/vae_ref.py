"""What a ``model.vae`` reference points at, and whether it fits the base model, read without torch.

SD1.5 checkpoints are often shared without their VAE, or with one that washes colours out, so
users train (and sample) with a VAE file of their choice. The VAE decides what the UNet learns
from: a wrong one gives a LoRA trained on the wrong latents, without an error. What can be told
apart before loading:

- SD3 and Flux VAEs make 16 latent channels, SD1.5's and SDXL's make 4;
- a VAE whose layers have other widths was made for another model (the first width is enough);
- SD1.5's and SDXL's VAEs have the same shapes; only a diffusers folder's config tells them apart,
  by its scaling factor (0.18215 and 0.13025). A stand-alone file carries no scaling factor and is
  given the base model's, which is right for a VAE of the model's own family; one of the other
  family cannot be recognised from the file, so the app's rules look at its name instead.

The same reading serves a base checkpoint that has no VAE inside: it is named before loading.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from trainer.contract.config.schema import Problem
from trainer.contract.model_ref import safetensors_header

VAE_SUFFIXES = (".safetensors", ".ckpt", ".pt")
"""VAE files loratui reads (``.ckpt`` and ``.pt`` only as plain tensors, and only in the trainer)."""
SCALING_FACTORS = {"sd15": 0.18215, "sdxl": 0.13025}
"""Each architecture's latent scaling factor: what makes its VAE's latents about unit variance."""
ARCH_NAMES = {"sd15": "SD1.5", "sdxl": "SDXL"}
VAE_PREFIXES = ("first_stage_model.", "vae.", "")
"""Where a VAE's weights sit in a file: inside a whole checkpoint, under ``vae.``, or alone."""


@dataclass(frozen=True)
class VaeShape:
    """What decides whether a VAE fits a model."""

    latent_channels: int
    first_width: int
    """Channels of the encoder's first layer (128 in SD1.5's and SDXL's VAEs)."""
    scaling_factor: float | None = None
    """Only a diffusers folder's config says; a file's VAE takes the base model's."""


def vae_shape_from_tensors(shapes: Mapping[str, Sequence[int]]) -> VaeShape:
    """The VAE's shape from its tensors' shapes (original or diffusers layout, with or without prefix).

    Raises ValueError saying what the tensors are instead (a LoRA, a checkpoint without a VAE, other).
    """
    for prefix in VAE_PREFIXES:
        decoder_in = shapes.get(prefix + "decoder.conv_in.weight")
        encoder_in = shapes.get(prefix + "encoder.conv_in.weight")
        if decoder_in is not None and encoder_in is not None and len(decoder_in) == 4 and len(encoder_in) == 4:
            return VaeShape(int(decoder_in[1]), int(encoder_in[0]))
    if any(key.startswith(("lora_unet_", "lora_te")) for key in shapes):
        raise ValueError("is a LoRA, not a VAE")
    if any(key.startswith("model.diffusion_model.") for key in shapes):
        raise ValueError("is a model checkpoint with no VAE inside")
    raise ValueError("holds no VAE (it has no encoder.conv_in and decoder.conv_in weights)")


def vae_folder(path: Path) -> Path | None:
    """The diffusers VAE folder at ``path`` (its ``config.json`` names AutoencoderKL) or in its ``vae/``."""
    for candidate in (path, path / "vae"):
        try:
            config = json.loads((candidate / "config.json").read_text())
        except (OSError, ValueError):
            continue
        if isinstance(config, dict) and config.get("_class_name") == "AutoencoderKL":
            return candidate
    return None


def _folder_shape(folder: Path) -> VaeShape:
    config = json.loads((folder / "config.json").read_text())
    widths = config.get("block_out_channels") or [128]
    scaling = config.get("scaling_factor")
    return VaeShape(int(config.get("latent_channels", 4)), int(widths[0]),
                    float(scaling) if isinstance(scaling, (int, float)) else None)


def read_vae(reference: str) -> VaeShape | None:
    """The shape of the VAE a reference names; None for a pickle (``.ckpt``/``.pt``), which only the trainer opens.

    Raises ValueError (the text goes after the path) for what is not a VAE, OSError when unreadable.
    """
    path = Path(reference)
    if path.is_dir():
        folder = vae_folder(path)
        if folder is None:
            raise ValueError("is a folder but not a diffusers VAE: neither it nor a vae/ folder in it has a "
                             "config.json for an AutoencoderKL")
        return _folder_shape(folder)
    suffix = path.suffix.lower()
    if suffix not in VAE_SUFFIXES:
        raise ValueError(f"is not a VAE file loratui reads ({', '.join(VAE_SUFFIXES)}, or a diffusers VAE folder)")
    if suffix != ".safetensors":
        return None
    header = safetensors_header(path)
    return vae_shape_from_tensors({key: value.get("shape", []) for key, value in header.items()
                                   if key != "__metadata__" and isinstance(value, dict)})


def expected_vae(base: str, arch: str | None, single_file_config: str = "") -> VaeShape:
    """The VAE the base model is built for: the VAE config of its folder (or of a single file's config
    folder), else the architecture's standard one (no scaling factor when the architecture is unknown)."""
    sources = [base] if Path(base).is_dir() else [single_file_config] if single_file_config else []
    for source in sources:
        folder = vae_folder(Path(source)) if Path(source).is_dir() else None
        if folder is not None:
            try:
                return _folder_shape(folder)
            except (OSError, ValueError):
                break
    return VaeShape(4, 128, SCALING_FACTORS.get(arch or ""))


def vae_mismatch(found: VaeShape, expected: VaeShape) -> str | None:
    """Why a VAE does not fit the model (a sentence to put after its path), or None when it fits."""
    if found.latent_channels != expected.latent_channels:
        family = " (an SD3 or Flux VAE)" if found.latent_channels == 16 else ""
        return (f"makes latents of {found.latent_channels} channels{family}, and this model's UNet reads "
                f"{expected.latent_channels}. Use a VAE made for SD1.5 or SDXL")
    if found.first_width != expected.first_width:
        return (f"has layers {found.first_width} channels wide where this model's VAE has {expected.first_width}: "
                "it was made for another model")
    if (found.scaling_factor is not None and expected.scaling_factor is not None
            and abs(found.scaling_factor - expected.scaling_factor) > 1e-6):
        return (f"is configured as {_family(found.scaling_factor)} VAE (scaling factor {found.scaling_factor}), "
                f"and this model is {_family(expected.scaling_factor)} model (scaling factor "
                f"{expected.scaling_factor}). Use a VAE made for this model's architecture")
    return None


def _family(scaling: float) -> str:
    for arch, factor in SCALING_FACTORS.items():
        if abs(factor - scaling) < 1e-6:
            return "an SD1.5" if arch == "sd15" else "an SDXL"
    return "another"


def checkpoint_lacks_vae(base: str) -> bool:
    """True for a ``.safetensors`` base checkpoint that holds a UNet but no VAE (as some SD1.5 models are shared)."""
    path = Path(base)
    if not (path.is_file() and path.suffix.lower() == ".safetensors"):
        return False
    try:
        keys = [key for key in safetensors_header(path) if key != "__metadata__"]
    except (OSError, ValueError):
        return False
    return (any(key.startswith("model.diffusion_model.") for key in keys)
            and not any(key.startswith("first_stage_model.") for key in keys))


def check_vae(base: str, vae: str, arch: str | None, single_file_config: str = "") -> list[Problem]:
    """Problems with ``model.vae``, or with a base checkpoint that needs one and has none."""
    if not vae:
        if base and checkpoint_lacks_vae(base):
            return [Problem("model.vae", f"{base} has no VAE inside, so nothing could encode the images. Set "
                            "model.vae to a VAE file or folder: for SD1.5 usually vae-ft-mse-840000-ema-pruned"
                            ".safetensors, for SDXL sdxl_vae.safetensors.")]
        return []
    if not Path(vae).exists():
        return [Problem("model.vae", f"{vae} does not exist. Point it at a VAE file (.safetensors) or a diffusers "
                        "VAE folder, or leave it empty to use the model's own VAE.")]
    try:
        found = read_vae(vae)
    except ValueError as exc:
        return [Problem("model.vae", f"{vae} {exc}.")]
    except OSError as exc:
        return [Problem("model.vae", f"{vae} cannot be read ({exc.strerror or exc}).")]
    if found is None:
        return []
    why = vae_mismatch(found, expected_vae(base, arch, single_file_config))
    return [Problem("model.vae", f"{vae} {why}.")] if why else []
