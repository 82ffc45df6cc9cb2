"""A LoRA file to continue training from (``network.weights``), read without torch.

The header of a safetensors file is plain JSON, so the app and the trainer's preflight can tell,
before any model loads, what a start file is: its network type (LoRA, LoCon, LoHa, LoKr, (IA)³,
BOFT, GLoRA, with or without DoRA), the architecture its names belong to (SD1.5 keeps diffusers'
UNet paths, ``down_blocks_…``; SDXL the original layout, ``input_blocks_…``, and two text
encoders, ``lora_te1_``/``lora_te2_``), and each module's rank and alpha (only the few bytes of
each one-number ``alpha`` tensor are read). ``check_network_weights`` turns any disagreement with
the config into a Problem naming ``network.weights``; ``with_file_dims`` applies
``network.dim_from_weights``.
"""

from __future__ import annotations

import dataclasses
import re
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from trainer.contract.config.names import Problem
from trainer.contract.model_ref import local_model_arch, safetensors_header

FIELD = "network.weights"

_FAMILIES = {"lora_down.weight": "lora", "lora_up.weight": "lora", "hada_w1_a": "loha", "hada_w1_b": "loha",
             "lokr_w1": "lokr", "lokr_w1_a": "lokr", "lokr_w2": "lokr", "lokr_w2_a": "lokr", "on_input": "ia3",
             "oft_blocks": "boft", "a1.weight": "glora", "a2.weight": "glora"}
"""A tensor suffix that only one network family writes → that family."""
TYPE_NAMES = {"lora": "LoRA", "locon": "LoCon", "loha": "LoHa", "lokr": "LoKr", "ia3": "(IA)³", "boft": "BOFT",
              "glora": "GLoRA"}
_SPATIAL_NAME = re.compile(r"(resnets_\d+_conv[12]|samplers_\d+_conv|in_layers_2|out_layers_3|_\d+_0_op|"
                           r"output_blocks_\d+_\d+_conv)$")
"""The UNet's 3×3 convolutions by name, in both layouts (LoHa and LoKr flatten the kernel into their shapes)."""
_FLOAT_FORMATS = {"F16": ("<e", 2), "F32": ("<f", 4), "F64": ("<d", 8), "BF16": ("<H", 2)}


@dataclass(frozen=True)
class ModuleShape:
    """One adapted layer as the file holds it."""

    rank: int | None
    """Its rank (lora_down rows, LoHa's inner size, ...); None where the type has none (IA³, BOFT, a full LoKr)."""
    alpha: float | None
    spatial: bool
    """A 3×3 convolution, which takes ``conv_dim``/``conv_alpha`` instead of ``dim``/``alpha``."""


@dataclass(frozen=True)
class StartFile:
    """What a LoRA file holds, as far as continuing it is concerned."""

    family: str
    """``lora`` (LoRA and LoCon), ``loha``, ``lokr``, ``ia3``, ``boft`` or ``glora``."""
    dora: bool
    arch: str | None
    """``sd15`` or ``sdxl`` from the names; None when they do not tell (a file of text-encoder layers only)."""
    modules: dict[str, ModuleShape]

    @property
    def network_type(self) -> str:
        """The ``network.type`` that builds this file's network."""
        if self.family == "lora" and any(m.spatial for m in self.modules.values()):
            return "locon"
        return self.family

    @property
    def has_text_encoder(self) -> bool:
        return any(name.startswith("lora_te") for name in self.modules)

    def ranks(self, spatial: bool) -> Counter:
        """How many modules have each (rank, alpha), among the 3×3 convolutions or among the rest."""
        return Counter((m.rank, m.alpha) for m in self.modules.values()
                       if m.spatial == spatial and m.rank is not None)


def _rank(family: str, suffixes: dict[str, list[int]]) -> int | None:
    def size(name: str, axis: int) -> int | None:
        shape = suffixes.get(name)
        return shape[axis] if shape else None
    if family == "lora":
        return size("lora_down.weight", 0)
    if family == "loha":
        return size("hada_w1_b", 0)
    if family == "lokr":
        return size("lokr_w2_a", 1) or size("lokr_w1_a", 1)  # None: both factors full, no rank to read
    if family == "glora":
        return size("a2.weight", 0)
    return None


def _scalar(handle, dtype: str, offset: int) -> float | None:
    if dtype not in _FLOAT_FORMATS:
        return None
    fmt, width = _FLOAT_FORMATS[dtype]
    handle.seek(offset)
    raw = handle.read(width)
    if len(raw) != width:
        raise ValueError("is cut short (a tensor lies past its end)")
    (value,) = struct.unpack(fmt, raw)
    return struct.unpack("<f", struct.pack("<I", value << 16))[0] if dtype == "BF16" else float(value)


def read_start_file(path: str | Path) -> StartFile:
    """Read a LoRA file's layout; raises ValueError saying what the file is instead (OSError: unreadable)."""
    path = Path(path)
    header = safetensors_header(path)
    with open(path, "rb") as handle:
        data_start = 8 + struct.unpack("<Q", handle.read(8))[0]
        grouped: dict[str, dict[str, dict]] = {}
        for key, info in header.items():
            if key == "__metadata__":
                continue
            name, _, suffix = key.partition(".")
            if not isinstance(info, dict) or not suffix or not name.startswith(("lora_unet_", "lora_te")):
                raise ValueError(f"is not a LoRA in the kohya layout (it holds {key!r})")
            grouped.setdefault(name, {})[suffix] = info
        if not grouped:
            raise ValueError("holds no LoRA weights")
        modules, families, dora = {}, set(), False
        for name, tensors in grouped.items():
            family = next((_FAMILIES[s] for s in tensors if s in _FAMILIES), None)
            if family is None:
                raise ValueError(f"holds a kind of layer loratui cannot train further ({name} has "
                                 f"{', '.join(sorted(tensors))})")
            families.add(family)
            dora = dora or "dora_scale" in tensors
            shapes = {s: list(t.get("shape", [])) for s, t in tensors.items()}
            down = shapes.get("lora_down.weight", [])
            spatial = (len(down) == 4 and down[2] * down[3] > 1) if family == "lora" \
                else name.startswith("lora_unet_") and bool(_SPATIAL_NAME.search(name))
            alpha = None
            if "alpha" in tensors:
                alpha = _scalar(handle, tensors["alpha"].get("dtype", ""),
                                data_start + int(tensors["alpha"].get("data_offsets", [0])[0]))
            modules[name] = ModuleShape(_rank(family, shapes), alpha, spatial)
    if len(families) > 1:
        raise ValueError(f"mixes network types ({', '.join(sorted(families))}); loratui continues one type")
    return StartFile(families.pop(), dora, _arch(modules), modules)


def _arch(modules: dict[str, ModuleShape]) -> str | None:
    names = list(modules)
    if any(n.startswith(("lora_te1_", "lora_te2_")) for n in names) \
            or any(n.startswith(("lora_unet_input_blocks", "lora_unet_middle_block", "lora_unet_output_blocks"))
                   for n in names):
        return "sdxl"
    if any(n.startswith(("lora_te_", "lora_unet_down_blocks", "lora_unet_mid_block", "lora_unet_up_blocks"))
           for n in names):
        return "sd15"
    return None


def _dims_text(dim: int, alpha: float | None) -> str:
    return f"dim {dim}" + (f", alpha {alpha:g}" if alpha is not None else "")


def _prevailing(counts: Counter) -> tuple[int, float | None] | None:
    return counts.most_common(1)[0][0] if counts else None


def with_file_dims(config, start: StartFile):
    """The config with ``network.dim``/``alpha`` (and ``conv_dim``/``conv_alpha``) of the file, the values
    most of its modules have (``network.dim_from_weights``; modules that differ keep their own, see
    ``module_ranks``)."""
    network = config.network
    changes = {}
    for spatial, dim_key, alpha_key in ((False, "dim", "alpha"), (True, "conv_dim", "conv_alpha")):
        found = _prevailing(start.ranks(spatial))
        if found:
            changes[dim_key] = found[0]
            if found[1] is not None:
                changes[alpha_key] = round(found[1], 4)
    return dataclasses.replace(config, network=dataclasses.replace(network, **changes))


def as_trained(config):
    """The config as a run will train it: with ``network.dim_from_weights``, the file's dims (so the app's
    size and memory estimates describe the real network); otherwise, or when the file cannot be read
    (``check_network_weights`` says why), the config itself."""
    if not (config.network.weights and config.network.dim_from_weights):
        return config
    try:
        return with_file_dims(config, read_start_file(config.network.weights))
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error):
        return config


def module_ranks(start: StartFile) -> dict[str, tuple[int, float]]:
    """Each module's own (rank, alpha), for networks built with ``network.dim_from_weights``."""
    return {name: (m.rank, m.alpha) for name, m in start.modules.items()
            if m.rank is not None and m.alpha is not None}


def _type_problem(config, start: StartFile, shown: str) -> str | None:
    network = config.network
    if start.network_type != network.type:
        return (f"{shown} is a {TYPE_NAMES[start.network_type]} file, but network.type is {network.type!r}. "
                f"Set network.type = {start.network_type!r} to continue it, or choose a {TYPE_NAMES.get(network.type, network.type)} file.")
    if start.dora != network.dora:
        has = "has DoRA magnitudes (dora_scale)" if start.dora else "has no DoRA magnitudes"
        return f"{shown} {has}, but network.dora is {'on' if network.dora else 'off'}. " \
               f"Turn network.dora {'on' if start.dora else 'off'} to continue it."
    return None


def _dim_problem(config, start: StartFile, shown: str) -> str | None:
    network = config.network
    for spatial, dim, alpha, names in ((False, network.dim, network.alpha, ("network.dim", "network.alpha")),
                                       (True, network.conv_dim, network.conv_alpha,
                                        ("network.conv_dim", "network.conv_alpha"))):
        counts = start.ranks(spatial)
        if len({rank for rank, _ in counts}) > 1 or len({a for _, a in counts}) > 1:
            ranks = sorted({rank for rank, _ in counts})
            return (f"{shown} has layers of different ranks ({', '.join(map(str, ranks))}), as a resized LoRA has. "
                    "Turn on network.dim_from_weights to continue it with each layer's own rank.")
        found = _prevailing(counts)
        if found is None:
            continue
        rank, file_alpha = found
        alpha_differs = file_alpha is not None and abs(file_alpha - alpha) > 1e-3 * max(1.0, abs(alpha))
        if rank != dim or alpha_differs:
            return (f"{shown} was trained with {_dims_text(rank, file_alpha)} but {names[0]} is {dim} and "
                    f"{names[1]} {alpha:g}. Set them to the file's values, or turn on network.dim_from_weights "
                    "to take them from the file.")
    return None


def check_network_weights(config) -> list[Problem]:
    """Problems with ``network.weights`` against the config and the model (no torch, nothing loaded)."""
    network = config.network
    if not network.weights:
        return []
    shown = network.weights
    path = Path(network.weights)
    try:
        exists = path.exists()
    except (OSError, ValueError):  # a NUL byte or an over-long name: no file can be named so
        exists = False
    if not exists:
        return [Problem(FIELD, f"{shown} does not exist. Point it at the LoRA file (.safetensors) to continue "
                        "training from, or leave it empty for a fresh LoRA.")]
    if path.is_dir():
        return [Problem(FIELD, f"{shown} is a folder; give the LoRA's .safetensors file.")]
    try:
        start = read_start_file(path)
    except OSError as exc:
        return [Problem(FIELD, f"{shown} cannot be read ({exc.strerror or exc}).")]
    except (ValueError, KeyError, TypeError, IndexError, struct.error) as exc:
        why = str(exc) if isinstance(exc, ValueError) else "is not a readable safetensors file"
        return [Problem(FIELD, f"{shown} {why}. Give a LoRA file saved by loratui or sd-scripts.")]
    arch = config.model.arch if config.model.arch in ("sd15", "sdxl") \
        else local_model_arch(config.model.base) if config.model.base else None
    names = {"sd15": "SD1.5", "sdxl": "SDXL"}
    if arch and start.arch and arch != start.arch:
        return [Problem(FIELD, f"{shown} is a LoRA for {names[start.arch]}, but the model is {names[arch]}. "
                        f"Continue it on an {names[start.arch]} model, or choose a LoRA made for {names[arch]}.")]
    problem = _type_problem(config, start, shown)
    if problem is None and start.has_text_encoder and config.optimizer.text_encoder_lr <= 0:
        # Training only the UNet would leave the file's text-encoder layers out of the result.
        problem = (f"{shown} adapts the text encoder too, but optimizer.text_encoder_lr is 0, so the new LoRA "
                   "would lose that part. Set optimizer.text_encoder_lr above 0 to carry it on.")
    if problem is None and not network.dim_from_weights:
        problem = _dim_problem(config, start, shown)
    return [Problem(FIELD, problem)] if problem else []
