"""What a ``model.base`` reference points at, read without torch.

Three kinds of reference: a diffusers folder, a Hugging Face hub id (``org/name``) and a
single-file checkpoint (``.safetensors`` or ``.ckpt``, the form Civitai models come in). The
architecture is read from the folder's model_index.json or from the names inside the file: a
safetensors header is plain JSON, so the app can tell SD1.5 from SDXL without loading weights.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from trainer.contract.config.schema import Problem

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
"""File types loaded as single-file checkpoints (``.ckpt`` only as plain tensors, never as code)."""

DEFAULT_SINGLE_FILE_CONFIGS = {"sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
                               "sdxl": "stabilityai/stable-diffusion-xl-base-1.0"}
"""Where the component configs and tokenizers of a single-file checkpoint come from by default."""

_MAX_HEADER = 100 * 1024 * 1024


def looks_like_hub_id(reference: str) -> bool:
    """True for ``org/name`` references, which name a model on the Hugging Face hub."""
    if reference.startswith(("/", ".", "~")) or reference.endswith(SINGLE_FILE_SUFFIXES):
        return False
    parts = reference.split("/")
    return len(parts) == 2 and all(parts) and "\\" not in reference


def safetensors_keys(path: Path) -> list[str]:
    """The tensor names in a safetensors file, read from its JSON header alone."""
    return [key for key in safetensors_header(path) if key != "__metadata__"]


def safetensors_header(path: Path) -> dict:
    """A safetensors file's JSON header: each tensor's dtype, shape and offsets, and ``__metadata__``."""
    with open(path, "rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            raise ValueError("is too short to be a safetensors file")
        (length,) = struct.unpack("<Q", raw)
        if length > _MAX_HEADER:
            raise ValueError("is not a safetensors file (its header size is implausible)")
        try:
            header = json.loads(handle.read(length))
        except (ValueError, UnicodeDecodeError):
            raise ValueError("is not a safetensors file (its header is not JSON)") from None
    if not isinstance(header, dict):
        raise ValueError("is not a safetensors file")
    return header


def arch_from_checkpoint_keys(keys: list[str]) -> str:
    """``sd15`` or ``sdxl`` from the tensor names of an original-layout checkpoint.

    Raises ValueError naming what the file is instead (SD2, a LoRA, something else).
    """
    if any(k.startswith("conditioner.embedders.1.model.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd15"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        raise ValueError("is a Stable Diffusion 2 checkpoint; loratui trains SD1.5 and SDXL LoRAs")
    if any(k.startswith(("lora_unet_", "lora_te")) for k in keys):
        raise ValueError("is a LoRA, not a base model")
    if not any(k.startswith("model.diffusion_model.") for k in keys):
        raise ValueError("is not a Stable Diffusion checkpoint (no model.diffusion_model weights)")
    raise ValueError("has a UNet but no text encoder loratui recognises (not SD1.5 or SDXL)")


def arch_from_model_index(index: dict) -> str:
    """``sdxl`` when a diffusers model_index.json names SDXL's second text encoder, else ``sd15``."""
    return "sdxl" if "text_encoder_2" in index or "XL" in str(index.get("_class_name", "")) else "sd15"


def local_model_arch(base: str) -> str | None:
    """``sdxl`` or ``sd15`` for a local folder or safetensors file; None when it cannot be told here."""
    path = Path(base)
    if path.is_file() and path.suffix.lower() == ".safetensors":
        try:
            return arch_from_checkpoint_keys(safetensors_keys(path))
        except (OSError, ValueError):
            return None
    if not path.is_dir():
        return None
    if (path / "text_encoder_2").is_dir():
        return "sdxl"
    try:
        return arch_from_model_index(json.loads((path / "model_index.json").read_text()))
    except (OSError, ValueError):
        return "sd15" if (path / "unet").is_dir() else None


def check_model(base: str) -> list[Problem]:
    """Problems with the base-model reference (a hub id is not checked: that needs network)."""
    if not base:
        return []  # "is required" comes from config validation
    path = Path(base)
    if not path.exists():
        if looks_like_hub_id(base):
            return []
        return [Problem("model.base", f"{base} does not exist. Point it at a diffusers model folder "
                        "(one with model_index.json), a .safetensors checkpoint or a hub id such as "
                        "stable-diffusion-v1-5/stable-diffusion-v1-5.")]
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".safetensors":
            try:
                arch_from_checkpoint_keys(safetensors_keys(path))
            except ValueError as exc:
                return [Problem("model.base", f"{base} {exc}.")]
            except OSError as exc:
                return [Problem("model.base", f"{base} cannot be read ({exc.strerror}).")]
            return []
        if suffix == ".ckpt":
            return []  # a pickle: only the trainer opens it, and only as plain tensors
        return [Problem("model.base", f"{base} is a file loratui does not recognise as a model "
                        "(expected .safetensors or .ckpt, or a diffusers folder).")]
    if not (path / "model_index.json").is_file() and not (path / "unet").is_dir():
        return [Problem("model.base", f"{base} is a folder but not a diffusers model: it has no "
                        "model_index.json and no unet/ folder.")]
    return []
