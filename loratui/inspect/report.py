"""One LoRA file, inspected: its network, blocks, base model, training and size, with notes.

``inspect_file(path)`` reads the header (never the weights, besides each ``alpha`` number) and
returns a ``LoraReport``; it raises ``InspectError`` naming the file when the file is damaged,
hostile or not a LoRA at all (a full checkpoint, a VAE, an embedding).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loratui.inspect.base_model import BaseModelInfo, base_model_info
from loratui.inspect.resize_offer import ResizeOffer, resize_offer
from loratui.inspect.lora_file import (LORA_KINDS, OFT_KINDS, PART_ORDER, TYPE_LABELS, AdaptedModule, BlockRow,
                                       block_rows, kind_from_weights, read_modules, value_counts)
from loratui.inspect.safetensors_header import InspectError, SafetensorsHeader, read_header
from loratui.inspect.size import SizeVerdict, save_precision, size_verdict
from loratui.inspect.training import TrainingInfo, training_info
from trainer.contract.compatibility import ROW_LABELS, support
from trainer.contract.config.schema import DORA_NETWORKS

LYCORIS_ALGOS = {"lora": "lora", "locon": "locon", "loha": "loha", "lokr": "lokr", "ia3": "ia3", "boft": "boft",
                 "diag-oft": "diag-oft", "oft": "diag-oft", "glora": "glora", "full": "full", "dylora": "dylora"}
"""``algo`` in ``ss_network_args`` of a ``lycoris.kohya`` file → our type name."""
KOHYA_MODULES = {"networks.lora": "lora", "networks.dylora": "dylora", "networks.lora_fa": "lora-fa",
                 "networks.oft": "oft", "networks.lora_flux": "lora", "networks.lora_sd3": "lora"}
"""``ss_network_module`` of sd-scripts' own networks → our type name."""
RANKED_KINDS = frozenset({"lora", "locon", "loha", "glora", "dylora", "lora-fa"})
"""Types whose dim and alpha mean what ``ss_network_dim``/``ss_network_alpha`` say."""


@dataclass(frozen=True)
class NetworkInfo:
    """The network type and its ranks, from the weights and from the metadata."""

    kind: str | None
    from_weights: str | None
    from_metadata: str | None
    dora: bool
    dora_axis: str | None
    dims: tuple[tuple[int, int], ...]
    """(dim, modules) over linear and 1×1 layers, most common first."""
    conv_dims: tuple[tuple[int, int], ...]
    """(dim, modules) over 3×3 convolutions."""
    alphas: tuple[tuple[float, int], ...]
    conv_alphas: tuple[tuple[float, int], ...]
    parts: tuple[tuple[str, int], ...]
    """(model part, modules adapted there)."""
    precision: str | None
    diffusers_format: bool

    @property
    def label(self) -> str:
        base = TYPE_LABELS.get(self.kind or "", self.kind or "unknown")
        if not self.dora:
            return base
        return base + (f" + DoRA ({self.dora_axis} axis)" if self.dora_axis else " + DoRA (mixed axes)")

    @property
    def dim(self) -> int | None:
        """The most common rank of the linear layers."""
        return self.dims[0][0] if self.dims else None

    @property
    def conv_dim(self) -> int | None:
        return self.conv_dims[0][0] if self.conv_dims else None

    def to_json(self) -> dict:
        return {"type": self.kind, "label": self.label, "from_weights": self.from_weights,
                "from_metadata": self.from_metadata, "dora": self.dora, "dora_axis": self.dora_axis,
                "dims": [list(d) for d in self.dims], "conv_dims": [list(d) for d in self.conv_dims],
                "alphas": [list(a) for a in self.alphas], "conv_alphas": [list(a) for a in self.conv_alphas],
                "modules": dict(self.parts), "precision": self.precision,
                "layout": "diffusers" if self.diffusers_format else "kohya"}


@dataclass(frozen=True)
class LoraReport:
    """Everything ``loratui inspect`` tells about one file."""

    path: Path
    network: NetworkInfo
    blocks: tuple[BlockRow, ...]
    base_model: BaseModelInfo
    training: TrainingInfo
    size: SizeVerdict
    notes: tuple[str, ...] = field(default_factory=tuple)
    metadata: dict[str, str] = field(default_factory=dict)
    loaders: tuple[tuple[str, str, str], ...] = ()
    """(loader, status, what happens) from the compatibility table; empty for types it does not rate."""
    resize: ResizeOffer | None = None
    """For a LoRA/LoCon above the guide's size range: the ``loratui resize`` that brings it within."""

    def to_json(self, tags: int = 20) -> dict:
        return {"file": str(self.path), "network": self.network.to_json(),
                "blocks": [row.to_json() for row in self.blocks], "base_model": self.base_model.to_json(),
                "training": self.training.to_json(tags), "size": self.size.to_json(), "notes": list(self.notes),
                "loaders": [{"loader": name, "status": status, "why": why} for name, status, why in self.loaders],
                "resize": self.resize.to_json() if self.resize else None,
                "metadata_keys": sorted(self.metadata)}


def kind_from_metadata(metadata: dict[str, str], args: dict[str, str]) -> tuple[str | None, bool]:
    """The type (and DoRA) the trainer recorded in ``ss_network_module`` and ``ss_network_args``."""
    module = metadata.get("ss_network_module", "")
    dora = args.get("dora_wd", "").lower() == "true"
    if module == "lycoris.kohya":
        return LYCORIS_ALGOS.get(args.get("algo", "lora").lower()), dora
    kind = KOHYA_MODULES.get(module)
    if kind == "lora" and "conv_dim" in args:
        kind = "locon"
    return kind, dora


def _not_a_lora(header: SafetensorsHeader) -> InspectError:
    keys = list(header.tensors)
    what = "holds no tensors"
    prefixes = {"model.diffusion_model.": "a full Stable Diffusion checkpoint (UNet weights)",
                "conditioner.embedders.": "a full SDXL checkpoint", "cond_stage_model.": "a full SD checkpoint",
                "first_stage_model.": "a VAE or full checkpoint", "double_blocks.": "a Flux model",
                "down_blocks.": "a diffusers UNet", "text_model.": "a text encoder"}
    if keys:
        kinds = [label for prefix, label in prefixes.items() if any(k.startswith(prefix) for k in keys)]
        if any(k in ("emb_params", "clip_l", "clip_g") or k.startswith("string_to_param") for k in keys):
            kinds.insert(0, "a textual-inversion embedding")
        if any(k.startswith(("encoder.", "decoder.")) for k in keys) and any("quant_conv" in k for k in keys):
            kinds.insert(0, "a VAE")
        what = (f"looks like {kinds[0]}" if kinds else "has no LoRA weights") + \
            f" ({len(keys)} tensors, such as {keys[0][:80]!r})"
    return InspectError(f"{header.path}: this is not a LoRA: it {what}. Give a LoRA .safetensors file "
                        "(one with lora_down/lora_up, hada_*, lokr_* or similar tensors).")


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= 0.01 * max(abs(a), abs(b), 1e-6)  # alphas are often stored in fp16


def _agreement_notes(network: NetworkInfo, metadata: dict[str, str], args: dict[str, str]) -> list[str]:
    """Where the metadata and the weights disagree, and what each reader will do about it."""
    notes = []
    weights, meta = network.from_weights, network.from_metadata
    if weights and meta and weights != meta and not (weights in LORA_KINDS and meta in LORA_KINDS):
        notes.append(f"The metadata says {TYPE_LABELS.get(meta, meta)} but the weights are "
                     f"{TYPE_LABELS.get(weights, weights)}; loaders go by the weights (a converted file?).")
    if network.kind in RANKED_KINDS:
        pairs = [("dim", "ss_network_dim", network.dims, int), ("alpha", "ss_network_alpha", network.alphas, float),
                 ("conv dim", "conv_dim", network.conv_dims, int),
                 ("conv alpha", "conv_alpha", network.conv_alphas, float)]
        for label, key, counts, kind in pairs:
            raw = args.get(key) if key.startswith("conv") else metadata.get(key)
            try:
                claimed = kind(float(raw))
            except (TypeError, ValueError):
                continue
            if len(counts) == 1 and not _close(float(counts[0][0]), float(claimed)):
                notes.append(f"The metadata says {label} {claimed:g} but every layer has {label} {counts[0][0]:g} "
                             "(a resized or merged file?); the weights are what loaders use.")
    if network.kind in OFT_KINDS:
        notes.append("For OFT types the dim is the block size and alpha is the orthogonality constraint (0 = none), "
                     "not a scale.")
        claimed = metadata.get("ss_network_alpha")
        try:
            if claimed and network.alphas and not _close(float(claimed), network.alphas[0][0]):
                notes.append(f"ss_network_alpha is {claimed}, but the file's constraint is {network.alphas[0][0]:g}: "
                             "the trainer's alpha did not reach this network.")
        except ValueError:
            pass
    if network.kind == "lokr" and not network.dims:
        notes.append("Every LoKr factor is a full matrix (the layers are too small to split at this rank), "
                     "so the rank is not limited and alpha has no effect.")
    if network.dora and network.dora_axis is None:
        notes.append("DoRA magnitudes run along the output axis in some layers and the input axis in others; "
                     "no UI applies such a file as it was trained.")
    if network.kind == "ia3":
        notes.append("(IA)³ has no rank or alpha: each layer learns one scale per channel.")
    return notes


def _network(modules: tuple[AdaptedModule, ...], metadata: dict[str, str], args: dict[str, str],
             header: SafetensorsHeader, diffusers: bool) -> NetworkInfo:
    from_weights = kind_from_weights(modules)
    from_metadata, _ = kind_from_metadata(metadata, args)
    kind = from_weights
    if from_weights in LORA_KINDS and from_metadata in ("dylora", "lora-fa"):
        kind = from_metadata  # their files look like a LoRA's; only the metadata tells
    flat = [m for m in modules if not m.spatial]
    conv = [m for m in modules if m.spatial]
    axes = {m.dora_axis for m in modules if m.dora and m.dora_axis}
    parts: dict[str, int] = {}
    for m in modules:
        parts[m.part] = parts.get(m.part, 0) + 1
    return NetworkInfo(
        kind=kind, from_weights=from_weights, from_metadata=from_metadata, dora=any(m.dora for m in modules),
        dora_axis=axes.pop() if len(axes) == 1 else None,
        dims=tuple(value_counts(m.dim for m in flat)), conv_dims=tuple(value_counts(m.dim for m in conv)),
        alphas=tuple(value_counts(m.alpha for m in flat)), conv_alphas=tuple(value_counts(m.alpha for m in conv)),
        parts=tuple(sorted(parts.items(), key=lambda item: PART_ORDER.index(item[0]))),
        precision=save_precision(header), diffusers_format=diffusers)


def loader_support(network: NetworkInfo) -> tuple[tuple[str, str, str], ...]:
    """How each UI and library treats a file with this network (the compatibility table's row)."""
    if network.kind not in ROW_LABELS or (network.dora and (network.kind not in DORA_NETWORKS
                                                            or network.dora_axis is None)):
        return ()
    cells = support(network.kind, network.dora, network.dora_axis or "input")
    return tuple((name, cell.status, cell.why) for name, cell in cells.items())


def inspect_file(path: Path | str) -> LoraReport:
    """Inspect one ``.safetensors`` LoRA; ``InspectError`` (naming the file) when it cannot be."""
    header = read_header(path)
    found = read_modules(header)
    if not found.modules:
        raise _not_a_lora(header)
    metadata = header.metadata
    training = training_info(metadata)
    network = _network(found.modules, metadata, training.network_args, header, found.diffusers_format)
    base = base_model_info(found.modules, metadata)
    size = size_verdict(header, base.arch, network.kind, found.modules, network.dim, network.conv_dim)
    notes = _agreement_notes(network, metadata, training.network_args)
    claimed_dora = training.network_args.get("dora_wd", "").lower() == "true"
    if metadata.get("ss_network_module") == "lycoris.kohya" and network.dora != claimed_dora:
        notes.append("The metadata and the weights disagree about DoRA; the weights decide.")
    if len(network.dims) > 1:
        notes.append("The rank varies between layers (a resized LoRA, or block-wise dims): see the block table.")
    if found.other_keys:
        notes.append(f"{len(found.other_keys)} tensors belong to no adapted layer (such as "
                     f"{found.other_keys[0][:60]!r}); they are ignored here.")
    if not metadata:
        notes.append("The file has no metadata: it was saved without training settings (sd-scripts' "
                     "--no_metadata, or a converter).")
    notes += list(base.notes) + list(training.notes)
    return LoraReport(Path(path), network, tuple(block_rows(found.modules)), base, training, size, tuple(notes),
                      metadata, loader_support(network), resize_offer(header, size.verdict))
