"""What a LoRA file's tensors say: which layers it adapts, with which network type, rank and alpha.

Works from the names and shapes in the header alone (``safetensors_header``), for files from any
kohya-compatible trainer:

- kohya names: ``<module>.<tensor>``, the module being ``lora_unet_…``, ``lora_te_…`` (SD1.5),
  ``lora_te1_…``/``lora_te2_…`` (SDXL), with SD1.5 UNet layers under diffusers paths
  (``down_blocks_0_…``) and SDXL ones under the original layout (``input_blocks_4_1_…``);
- diffusers/PEFT names: ``unet.down_blocks.0….lora_A.weight``, ``text_encoder(_2).….lora_B.weight``.

The tensor after the module names the network type: ``lora_down``/``lora_up`` (LoRA, LoCon when
3×3 convolutions are adapted), ``hada_w1_a`` … (LoHa), ``lokr_w1`` … (LoKr), ``weight`` with
``on_input`` ((IA)³), ``oft_blocks`` (BOFT when 4-D, kohya's OFT when 3-D), ``oft_diag``
(Diag-OFT), ``a1.weight`` … (GLoRA), ``diff`` (full fine-tune), plus ``dora_scale`` (DoRA) and
``alpha``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from loratui.inspect.safetensors_header import SafetensorsHeader, TensorInfo, read_scalars

FAMILY_OF_SUFFIX = {
    "lora_down.weight": "lora", "lora_up.weight": "lora", "lora_mid.weight": "lora",
    "lora_A.weight": "lora", "lora_B.weight": "lora", "lora.down.weight": "lora", "lora.up.weight": "lora",
    "hada_w1_a": "loha", "hada_w1_b": "loha", "hada_w2_a": "loha", "hada_w2_b": "loha", "hada_t1": "loha",
    "hada_t2": "loha",
    "lokr_w1": "lokr", "lokr_w1_a": "lokr", "lokr_w1_b": "lokr", "lokr_w2": "lokr", "lokr_w2_a": "lokr",
    "lokr_w2_b": "lokr", "lokr_t2": "lokr",
    "oft_blocks": "oft", "oft_diag": "oft",
    "a1.weight": "glora", "a2.weight": "glora", "b1.weight": "glora", "b2.weight": "glora", "bm.weight": "glora",
    "on_input": "ia3",
    "diff": "full", "diff_b": "full",
}
"""Tensor suffix → the family of network that writes it."""
SHARED_SUFFIXES = frozenset({"alpha", "dora_scale", "lora_magnitude_vector", "rescale", "scale", "bias", "weight"})
"""Suffixes several families write (``weight`` alone is (IA)³'s, or a full fine-tune's)."""
_SUFFIXES = sorted(list(FAMILY_OF_SUFFIX) + list(SHARED_SUFFIXES), key=len, reverse=True)

TYPE_LABELS = {"lora": "LoRA", "locon": "LoCon", "loha": "LoHa", "lokr": "LoKr", "ia3": "(IA)³", "boft": "BOFT",
               "oft": "OFT", "diag-oft": "Diag-OFT", "glora": "GLoRA", "full": "full fine-tune (LyCORIS)",
               "dylora": "DyLoRA", "lora-fa": "LoRA-FA"}
"""How each network type is written for people."""
LORA_KINDS = frozenset({"lora", "locon", "dylora", "lora-fa"})
"""Types whose files hold ``lora_down``/``lora_up`` pairs (told apart only by the metadata)."""
OFT_KINDS = frozenset({"boft", "oft", "diag-oft"})
"""Types whose ``alpha`` is a constraint, not a scale, and whose rank is a block size."""

PART_ORDER = ("unet", "transformer", "te", "te1", "te2", "te3", "other")
PART_LABELS = {"unet": "UNet", "transformer": "transformer", "te": "text encoder", "te1": "text encoder 1",
               "te2": "text encoder 2", "te3": "text encoder 3", "other": "other"}
_KOHYA_PARTS = (("lora_unet_", "unet"), ("lora_te1_", "te1"), ("lora_te2_", "te2"), ("lora_te3_", "te3"),
                ("lora_te_", "te"), ("lora_transformer_", "transformer"))
_DIFFUSERS_PARTS = (("unet.", "unet"), ("text_encoder_2.", "te2"), ("text_encoder_3.", "te3"),
                    ("text_encoder.", "te"), ("transformer.", "transformer"))
_STAGES = ((re.compile(r"^(down_blocks|input_blocks)_(\d+)"), 0), (re.compile(r"^(mid_block|middle_block)"), 1),
           (re.compile(r"^(up_blocks|output_blocks)_(\d+)"), 2))
_STAGE_WORDS = {"down_blocks": "down", "input_blocks": "input", "mid_block": "mid", "middle_block": "middle",
                "up_blocks": "up", "output_blocks": "output"}
_SPATIAL_NAME = re.compile(r"(resnets_\d+_conv[12]|samplers_\d+_conv|in_layers_2|out_layers_3|_\d+_op|"
                           r"output_blocks_\d+_\d+_conv|^conv_in|^conv_out|^input_blocks_0_0|^out_2)$")
"""UNet layers that are 3×3 convolutions in SD1.5 and SDXL, by name (for types whose shapes hide the kernel)."""


@dataclass(frozen=True)
class AdaptedModule:
    """One adapted layer of the base model, as the file describes it."""

    name: str
    """The module part of its tensors' names, as in the file."""
    part: str
    """``unet``, ``te`` (SD1.5's one text encoder), ``te1``/``te2`` (SDXL's two), ``transformer`` or ``other``."""
    block: str
    """The row of the per-block table it belongs to, such as ``down 0`` or ``input 4``."""
    family: str
    """``lora``, ``loha``, ``lokr``, ``ia3``, ``boft``, ``oft``, ``diag-oft``, ``glora`` or ``full``."""
    dim: int | None
    """Its rank (the block size for OFT types); None where the type has none or a full-matrix factor."""
    alpha: float | None
    """Its stored ``alpha`` (a constraint for OFT types); None when the file stores none."""
    spatial: bool
    """A 3×3 (or wider) convolution: LoCon-style files give these the conv dim."""
    dora: bool
    """It has a DoRA magnitude (``dora_scale``)."""
    dora_axis: str | None
    """``output`` or ``input``: which axis the DoRA magnitude runs along (None when unknown or no DoRA)."""
    in_features: int | None
    """Input width of the adapted layer, where the tensors show it."""
    nbytes: int


def split_key(key: str) -> tuple[str, str] | None:
    """``(module, suffix)`` of a LoRA tensor name, or None when it is not one."""
    if key.startswith("lora_"):
        module, _, suffix = key.partition(".")
        if suffix in FAMILY_OF_SUFFIX or suffix in SHARED_SUFFIXES:
            return module, suffix
        return None
    for suffix in _SUFFIXES:
        if key.endswith("." + suffix) and suffix not in ("weight", "bias", "scale"):
            return key[:-len(suffix) - 1], suffix
    return None


def module_part(module: str) -> tuple[str, str]:
    """``(part, rest)``: which model part a module adapts, and its path inside it with ``_`` for ``.``."""
    for prefix, part in _KOHYA_PARTS:
        if module.startswith(prefix):
            return part, module[len(prefix):]
    for prefix, part in _DIFFUSERS_PARTS:
        if module.startswith(prefix):
            return part, module[len(prefix):].replace(".", "_")
    flat = module.replace(".", "_")
    if any(pattern.match(flat) for pattern, _ in _STAGES):
        return "unet", flat
    return "other", flat


def block_of(part: str, rest: str) -> tuple[str, tuple]:
    """The per-block table row of a module, and a key that sorts rows in the model's order."""
    part_rank = PART_ORDER.index(part)
    if part != "unet":
        return PART_LABELS[part], (part_rank, 0, 0)
    for pattern, stage in _STAGES:
        match = pattern.match(rest)
        if match:
            word = _STAGE_WORDS[match.group(1)]
            index = int(match.group(2)) if match.lastindex and match.lastindex >= 2 else 0
            label = f"{word} {index}" if stage != 1 else word
            return label, (part_rank, stage, index)
    return "UNet other", (part_rank, 3, 0)


def _family(suffixes: dict[str, TensorInfo]) -> str | None:
    families = {FAMILY_OF_SUFFIX[s] for s in suffixes if s in FAMILY_OF_SUFFIX}
    if "weight" in suffixes and "on_input" in suffixes:
        families = {"ia3"}
    elif not families and "weight" in suffixes and len(suffixes["weight"].shape) <= 4:
        # A lone ``weight`` under a kohya module name is an (IA)³ vector written without its flag.
        families = {"ia3"} if suffixes["weight"].numel == max(suffixes["weight"].shape or (1,)) else set()
    if len(families) != 1:
        return None
    (family,) = families
    if family == "oft":
        blocks = suffixes.get("oft_blocks")
        if blocks is not None:
            return "boft" if len(blocks.shape) == 4 else "oft"
        return "diag-oft"
    return family


def _down(suffixes: dict[str, TensorInfo]) -> TensorInfo | None:
    for name in ("lora_down.weight", "lora_A.weight", "lora.down.weight"):
        if name in suffixes:
            return suffixes[name]
    return None


def _rank(family: str, s: dict[str, TensorInfo]) -> int | None:
    """The module's rank, read from the shape that carries it for its family."""
    def first(*names: str, axis: int) -> int | None:
        need = axis + 1 if axis >= 0 else -axis
        for name in names:
            if name in s and len(s[name].shape) >= need:
                return s[name].shape[axis]
        return None

    if family == "lora":
        down = _down(s)
        return down.shape[0] if down is not None and down.shape else None
    if family == "loha":
        return first("hada_w1_b", axis=0)
    if family == "lokr":
        return first("lokr_w1_a", "lokr_w2_a", axis=1)  # None: both factors full (rank not limited)
    if family == "glora":
        return first("a2.weight", axis=0)
    if family in OFT_KINDS:
        return first("oft_blocks", "oft_diag", axis=-1)
    return None


def _in_features(family: str, s: dict[str, TensorInfo]) -> int | None:
    tensor = {"lora": _down(s), "loha": s.get("hada_w1_b"), "glora": s.get("a2.weight")}.get(family)
    if tensor is None:
        return None
    if len(tensor.shape) == 2 or (len(tensor.shape) == 4 and tensor.shape[2:] == (1, 1)):
        return tensor.shape[1]
    return None  # a wider kernel, or a layout that folds the kernel into this axis


def _spatial(family: str, s: dict[str, TensorInfo], rest: str) -> bool:
    tensor = {"lora": _down(s), "glora": s.get("b2.weight")}.get(family)
    if tensor is not None and len(tensor.shape) == 4:
        return tensor.shape[2] * tensor.shape[3] > 1  # the kernel is in the shape
    return bool(_SPATIAL_NAME.search(rest))


def _dora_axis(s: dict[str, TensorInfo]) -> str | None:
    """Which axis the DoRA magnitude runs along, from its shape.

    ``(out, 1, …)``: the output axis (LyCORIS' default, ``wd_on_out``); ``(1, in, …)``: the input
    axis (the DoRA paper's). Loaders that assume one axis misapply files saved with the other.
    """
    scale = s.get("dora_scale")
    if scale is None or len(scale.shape) < 2:
        return None
    if scale.shape[1] == 1 and scale.shape[0] > 1:
        return "output"
    if scale.shape[0] == 1 and scale.shape[1] > 1:
        return "input"
    return None


@dataclass(frozen=True)
class Modules:
    """Every adapted layer in a file, and the tensors that are not part of one."""

    modules: tuple[AdaptedModule, ...]
    other_keys: tuple[str, ...]
    """Tensors that belong to no adapted layer (bundled embeddings, a full model's weights …)."""
    diffusers_format: bool
    """Names in the diffusers/PEFT layout (``unet.….lora_A.weight``) rather than kohya's."""


def read_modules(header: SafetensorsHeader) -> Modules:
    """Group the file's tensors by adapted layer and read each one's type, rank and alpha."""
    grouped: dict[str, dict[str, TensorInfo]] = {}
    other: list[str] = []
    for key, info in header.tensors.items():
        split = split_key(key)
        if split is None:
            other.append(key)
            continue
        grouped.setdefault(split[0], {})[split[1]] = info
    alphas = read_scalars(header, [f"{module}.alpha" for module, s in grouped.items() if "alpha" in s])
    modules, diffusers = [], False
    two_encoders = any(module_part(m)[0] == "te2" for m in grouped)
    for module, suffixes in grouped.items():
        family = _family(suffixes)
        if family is None:
            other.extend(f"{module}.{suffix}" for suffix in suffixes)
            continue
        part, rest = module_part(module)
        if part == "te" and two_encoders and not module.startswith("lora_"):
            part = "te1"  # diffusers names SDXL's first encoder plainly ``text_encoder``
        diffusers = diffusers or not module.startswith("lora_")
        block, _ = block_of(part, rest)
        modules.append(AdaptedModule(
            name=module, part=part, block=block, family=family, dim=_rank(family, suffixes),
            alpha=alphas.get(f"{module}.alpha"), spatial=_spatial(family, suffixes, rest),
            dora="dora_scale" in suffixes or "lora_magnitude_vector" in suffixes,
            dora_axis=_dora_axis(suffixes), in_features=_in_features(family, suffixes),
            nbytes=sum(t.nbytes for t in suffixes.values())))
    return Modules(tuple(modules), tuple(other), diffusers)


def kind_from_weights(modules: tuple[AdaptedModule, ...]) -> str | None:
    """The network type the tensors show (the most common family; LoRA with 3×3 convolutions is LoCon)."""
    if not modules:
        return None
    family = Counter(m.family for m in modules).most_common(1)[0][0]
    if family == "lora" and any(m.spatial for m in modules if m.family == "lora"):
        return "locon"
    return family


@dataclass(frozen=True)
class BlockRow:
    """One row of the per-block table."""

    block: str
    part: str
    modules: int
    dims: tuple[int, ...]
    """Distinct ranks of its linear and 1×1 layers, ascending."""
    conv_dims: tuple[int, ...]
    """Distinct ranks of its 3×3 convolutions, ascending."""
    alphas: tuple[float, ...]
    conv_alphas: tuple[float, ...]
    nbytes: int

    def to_json(self) -> dict:
        return {"block": self.block, "part": self.part, "modules": self.modules, "dims": list(self.dims),
                "conv_dims": list(self.conv_dims), "alphas": list(self.alphas),
                "conv_alphas": list(self.conv_alphas), "bytes": self.nbytes}


def block_rows(modules: tuple[AdaptedModule, ...]) -> list[BlockRow]:
    """The per-block table: one row per UNet block and per text encoder, in the model's order."""
    groups: dict[str, list[AdaptedModule]] = {}
    order: dict[str, tuple] = {}
    for module in modules:
        groups.setdefault(module.block, []).append(module)
        order[module.block] = block_of(module.part, module_part(module.name)[1])[1]
    rows = []
    for block in sorted(groups, key=lambda b: order[b]):
        members = groups[block]
        flat = [m for m in members if not m.spatial]
        conv = [m for m in members if m.spatial]
        rows.append(BlockRow(
            block, members[0].part, len(members),
            tuple(sorted({m.dim for m in flat if m.dim is not None})),
            tuple(sorted({m.dim for m in conv if m.dim is not None})),
            tuple(sorted({m.alpha for m in flat if m.alpha is not None})),
            tuple(sorted({m.alpha for m in conv if m.alpha is not None})),
            sum(m.nbytes for m in members)))
    return rows


def value_counts(values) -> list[tuple[float, int]]:
    """``(value, how many)`` of the non-None values, most common first."""
    return Counter(v for v in values if v is not None).most_common()
