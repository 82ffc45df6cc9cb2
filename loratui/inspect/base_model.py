"""Which base model a LoRA was trained for: from its layer names and widths, and from its metadata.

The weights decide when they can: SDXL LoRAs have two text encoders (``lora_te1_``/``lora_te2_``)
and cross-attention layers that read 2048-wide text embeddings; SD1.5's read 768, SD2's 1024.
The metadata (``ss_base_model_version``, ``ss_v2``, ``modelspec.architecture``) is what the
trainer claimed, and the model file's name (``ss_sd_model_name``) often tells the finetune
(Pony and Illustrious are SDXL).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from loratui.inspect.lora_file import AdaptedModule, module_part

ARCH_LABELS = {"sd15": "SD1.5", "sd2": "SD2.x", "sdxl": "SDXL", "sd3": "SD3", "flux": "Flux"}
CROSS_ATTENTION_WIDTHS = {768: "sd15", 1024: "sd2", 2048: "sdxl"}
"""Width of the text embeddings each architecture's cross-attention reads."""
TEXT_ENCODER_WIDTHS = {("te", 768): "sd15", ("te", 1024): "sd2", ("te1", 768): "sdxl", ("te2", 1280): "sdxl"}
"""(encoder, width of its attention layers) for the CLIP encoders each architecture uses."""
_CROSS_KV = re.compile(r"attn2_to_[kv]$")
_TE_Q = re.compile(r"self_attn_q_proj$")
_SGM = re.compile(r"^(input_blocks|middle_block|output_blocks)")
_DIFFUSERS = re.compile(r"^(down_blocks|mid_block|up_blocks)")


@dataclass(frozen=True)
class BaseModelInfo:
    """The architecture a LoRA is for, the evidence, and the base model the metadata names."""

    arch: str | None
    """``sd15``, ``sd2``, ``sdxl``, ``sd3``, ``flux``, or None when neither weights nor metadata tell."""
    from_weights: str | None
    from_metadata: str | None
    evidence: tuple[str, ...]
    model_name: str = ""
    """``ss_sd_model_name``: the base model's file or folder name."""
    model_hash: str = ""
    """``ss_new_sd_model_hash`` (sha256, as A1111 and civitai show it) or the legacy ``ss_sd_model_hash``."""
    vae: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        return ARCH_LABELS.get(self.arch or "", "unknown")

    def to_json(self) -> dict:
        return {"arch": self.arch, "from_weights": self.from_weights, "from_metadata": self.from_metadata,
                "evidence": list(self.evidence), "model_name": self.model_name, "model_hash": self.model_hash,
                "vae": self.vae, "notes": list(self.notes)}


def arch_from_weights(modules: tuple[AdaptedModule, ...]) -> tuple[str | None, list[str]]:
    """The architecture the layer names and widths show, with the reasons in words."""
    evidence: list[str] = []
    parts = {m.part for m in modules}
    unet_paths = [module_part(m.name)[1] for m in modules if m.part == "unet"]
    # sd-scripts names Flux and SD3 layers lora_unet_… too; their block names give them away.
    for prefixes, arch in ((("double_blocks", "single_blocks"), "flux"), (("joint_blocks",), "sd3")):
        if any(path.startswith(prefixes) for path in unet_paths):
            return arch, [f"{prefixes[0]} layers: a {ARCH_LABELS[arch]} transformer, not an SD1.5/SDXL UNet"]
    if "transformer" in parts:
        return None, ["adapts a transformer (DiT) model such as Flux or SD3, not an SD1.5/SDXL UNet"]
    by_width = None
    widths = Counter(m.in_features for m in modules
                     if m.part == "unet" and m.in_features and _CROSS_KV.search(module_part(m.name)[1]))
    if widths:
        width = widths.most_common(1)[0][0]
        by_width = CROSS_ATTENTION_WIDTHS.get(width)
        if by_width:
            evidence.append(f"cross-attention reads {width}-wide text embeddings ({ARCH_LABELS[by_width]})")
        else:
            evidence.append(f"cross-attention reads {width}-wide text embeddings, which no standard SD model has")
    for part in ("te", "te1", "te2"):
        te_widths = Counter(m.in_features for m in modules
                            if m.part == part and m.in_features and _TE_Q.search(module_part(m.name)[1]))
        if te_widths:
            width = te_widths.most_common(1)[0][0]
            known = TEXT_ENCODER_WIDTHS.get((part, width))
            if known and by_width is None:
                by_width = known
                evidence.append(f"{part} attention is {width} wide ({ARCH_LABELS[known]})")
    by_names = None
    if parts & {"te1", "te2"}:
        by_names = "sdxl"
        evidence.append("two text encoders (te1, te2): the SDXL layout")
    elif any(_SGM.match(path) for path in unet_paths):
        by_names = "sdxl"
        evidence.append("UNet names in the original SGM layout (input_blocks …), as SDXL LoRAs have")
    elif "te" in parts or any(_DIFFUSERS.match(path) for path in unet_paths):
        by_names = "sd15"
        evidence.append("one text encoder and diffusers-layout UNet names: the SD1.x layout")
    return by_width or by_names, evidence


def arch_from_metadata(metadata: dict[str, str]) -> str | None:
    """The architecture the trainer recorded (``ss_base_model_version``, ``ss_v2``, ``modelspec.architecture``)."""
    version = metadata.get("ss_base_model_version", "").lower()
    spec = metadata.get("modelspec.architecture", "").lower()
    for text in (version, spec):
        if not text:
            continue
        if "xl" in text:
            return "sdxl"
        if "flux" in text:
            return "flux"
        if "sd3" in text or "stable-diffusion-3" in text:
            return "sd3"
        if "v2" in text:
            return "sd2"
        if "v1" in text:
            return "sd15"
    if metadata.get("ss_v2", "").lower() == "true":
        return "sd2"
    return None


def base_model_info(modules: tuple[AdaptedModule, ...], metadata: dict[str, str]) -> BaseModelInfo:
    """Weights and metadata together; the weights win when they disagree (the note says so)."""
    from_weights, evidence = arch_from_weights(modules)
    from_metadata = arch_from_metadata(metadata)
    notes = []
    if from_weights and from_metadata and from_weights != from_metadata:
        notes.append(f"The metadata says {ARCH_LABELS[from_metadata]} but the weights are laid out for "
                     f"{ARCH_LABELS[from_weights]}; the weights decide what it loads into.")
    model_hash = metadata.get("ss_new_sd_model_hash") or metadata.get("ss_sd_model_hash") or ""
    return BaseModelInfo(from_weights or from_metadata, from_weights, from_metadata, tuple(evidence),
                         metadata.get("ss_sd_model_name", ""), model_hash, metadata.get("ss_vae_name", ""),
                         tuple(notes))
