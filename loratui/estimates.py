"""Estimates shown before a run starts: the LoRA file's size, GPU memory, the GPUs here, the time it takes.

Pure Python: everything comes from ``loratui/data/lora_shapes.json``, which
``python -m trainer.tools.shape_tables`` writes from the real full-size SD1.5 and SDXL architectures
(every adapted layer's shape, the models' parameter counts, and activation memory replayed on
PyTorch's meta device). The file is read on first use, never at import.

How much to trust each figure:

- The file size is exact arithmetic on the real layer shapes plus safetensors' own header layout;
  only the metadata's length is a guess (the tag list depends on the dataset).
- The GPU memory figures are computed (tensor bytes of the weights, the optimizer and one
  replayed training step) plus an allowance for what a GPU adds on top (the CUDA context, the
  allocator's rounding and fragmentation), and were checked against an H200 on 2026-12-04
  (``bench/gpu_acceptance.py``): the allocated peak came within 1 % of the computed one for SDXL
  at 1024 px, batch 4 and 1, with and without checkpointing; the allowances are the measured ones.
- The time per step comes from loratui's own measurements where it has them (an H200) and
  otherwise from figures users have reported for a few GPUs; for any other GPU there is no
  figure and the estimate says so (None).
"""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Mapping

GIB = 2**30

# --- The tables ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    """One layer a network can adapt, as recorded from the real architecture."""

    name: str
    """Its kohya name, such as ``lora_unet_down_blocks_0_attentions_0_proj_in``."""
    kind: str
    """``linear``, ``conv1x1`` or ``conv3x3``."""
    in_channels: int
    out_channels: int
    kernel: int
    group: str
    """``unet_attention`` (every LoRA), ``unet_conv`` (LoCon only) or ``text_encoder`` (when trained)."""


@dataclass(frozen=True)
class ArchitectureTables:
    """What the shape tables know about one architecture."""

    layers: tuple[Layer, ...]
    unet_parameters: int
    text_encoder_parameters: tuple[int, ...]
    vae_parameters: int
    activations: Mapping
    """The raw activation rows (see ``trainer.tools.shape_tables.activation_tables`` for the columns)."""


@lru_cache(maxsize=1)
def load_tables() -> dict[str, ArchitectureTables]:
    """The shape tables of every architecture, read once from the package data."""
    text = resources.files("loratui.data").joinpath("lora_shapes.json").read_text(encoding="utf-8")
    raw = json.loads(text)
    tables = {}
    for arch, data in raw["architectures"].items():
        params = data["parameters"]
        tables[arch] = ArchitectureTables(
            layers=tuple(Layer(*row) for row in data["layers"]), unet_parameters=params["unet"],
            text_encoder_parameters=tuple(params["text_encoders"]), vae_parameters=params["vae"],
            activations=data.get("activations", {}))
    return tables


def _tables(arch: str) -> ArchitectureTables:
    tables = load_tables()
    if arch not in tables:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(tables)}")
    return tables[arch]


def _layers(arch: str, network_type: str, train_text_encoder: bool) -> list[Layer]:
    if network_type not in ("lora", "locon"):
        raise ValueError(f"unknown network type {network_type!r}")
    groups = {"unet_attention"} | ({"unet_conv"} if network_type == "locon" else set()) \
        | ({"text_encoder"} if train_text_encoder else set())
    return [layer for layer in _tables(arch).layers if layer.group in groups]


def _rank(layer: Layer, dim: int, conv_dim: int) -> int:
    # As in the trainer: convolutions wider than 1×1 take the LoCon's own rank.
    return conv_dim if layer.kernel > 1 else dim


def _tensor_shapes(layer: Layer, rank: int) -> list[tuple[str, tuple[int, ...]]]:
    """The tensors a layer's adapter saves, under kohya names (as ``LoRANetwork.kohya_state_dict``)."""
    if layer.kind == "linear":
        down, up = (rank, layer.in_channels), (layer.out_channels, rank)
    else:
        down = (rank, layer.in_channels, layer.kernel, layer.kernel)
        up = (layer.out_channels, rank, 1, 1)
    return [(f"{layer.name}.lora_down.weight", down), (f"{layer.name}.lora_up.weight", up), (f"{layer.name}.alpha", ())]


def _numel(shape: tuple[int, ...]) -> int:
    count = 1
    for size in shape:
        count *= size
    return count


def lora_parameter_tensors(arch: str, network_type: str, dim: int, conv_dim: int,
                           train_text_encoder: bool) -> list[int]:
    """The element count of every trainable tensor of a network (two per adapted layer)."""
    sizes = []
    for layer in _layers(arch, network_type, train_text_encoder):
        for name, shape in _tensor_shapes(layer, _rank(layer, dim, conv_dim)):
            if not name.endswith(".alpha"):  # alpha is a fixed number, not trained
                sizes.append(_numel(shape))
    return sizes


# --- File size ----------------------------------------------------------------------------------

METADATA_BASE_BYTES = 2280
"""The ``ss_*`` and ``modelspec.*`` metadata the trainer writes, less the tag list: about 2.3 KB with
typical paths (the keys of #18's options included)."""
TYPICAL_TAG_LIST_BYTES = 150 * 21
"""The tag list of a typical tagged character set: ~150 distinct tags at ~21 bytes each once escaped."""
DEFAULT_METADATA_BYTES = METADATA_BASE_BYTES + TYPICAL_TAG_LIST_BYTES
"""The metadata's size in the file header when the dataset is not known."""
_SAVE_DTYPES = {"fp16": ("F16", 2), "bf16": ("BF16", 2), "fp32": ("F32", 4)}


def metadata_bytes(tag_frequency: Mapping[str, int] | None = None, dataset_name: str = "dataset") -> int:
    """The metadata's size in the header for a dataset with this tag count (``trainer.contract.captions.tag_frequency``).

    The trainer stores the tag counts as JSON text inside the header's JSON, so every quote is
    escaped; this reproduces that exactly. Without tags it returns the typical size.
    """
    if tag_frequency is None:
        return DEFAULT_METADATA_BYTES
    inner = json.dumps({dataset_name: dict(tag_frequency)}, ensure_ascii=False)
    entry = json.dumps({"ss_tag_frequency": inner}, separators=(",", ":"), ensure_ascii=False)
    return METADATA_BASE_BYTES + len(entry.encode()) - 1  # less the entry's own braces, plus its comma


def lora_file_size(arch: str, network_type: str, dim: int, alpha: float, conv_dim: int, conv_alpha: float,
                   train_text_encoder: bool, save_precision: str,
                   metadata_bytes: int = DEFAULT_METADATA_BYTES) -> int:
    """The size in bytes of the ``.safetensors`` file a run saves.

    Tensors: for each adapted layer a down weight (rank × in × k × k), an up weight (out × rank)
    and the alpha number, all in ``save_precision``. Header: the JSON safetensors writes, rebuilt
    byte for byte (name, dtype, shape and offsets of every tensor, padded to 8 bytes), with
    ``metadata_bytes`` standing for the serialized ``ss_*`` metadata object. The alphas' values
    do not change the size (each is one number); they are taken so a network config can be
    passed as it is.
    """
    if save_precision not in _SAVE_DTYPES:
        raise ValueError(f"unknown save precision {save_precision!r}")
    dtype, width = _SAVE_DTYPES[save_precision]
    tensors = []
    for layer in _layers(arch, network_type, train_text_encoder):
        tensors += _tensor_shapes(layer, _rank(layer, dim, conv_dim))
    # safetensors orders tensors by dtype, then by name; here all share one dtype.
    tensors.sort()
    entries, offset = [], 0
    for name, shape in tensors:
        size = _numel(shape) * width
        shape_text = ",".join(str(s) for s in shape)
        entries.append(f'"{name}":{{"dtype":"{dtype}","shape":[{shape_text}],'
                       f'"data_offsets":[{offset},{offset + size}]}}')
        offset += size
    header = len("{" + ",".join(entries) + "}")
    if metadata_bytes:
        header += len('"__metadata__":,') + metadata_bytes
    header += -header % 8  # padded with spaces to a multiple of 8 bytes
    return 8 + header + offset


# --- GPU memory ---------------------------------------------------------------------------------

CUDA_CONTEXT_BYTES = int(0.75 * GIB)
"""The CUDA context and libraries (cuBLAS, cuDNN) outside PyTorch's allocator: nvidia-smi's peak less
PyTorch's reserved peak was 0.75-0.76 GiB in every run on an H200 (torch 2.11, CUDA 13, 2026-12-04)."""
FRAGMENTATION = 0.03
"""What PyTorch's allocator holds beyond the allocated peak, as a share of it. Measured on an H200:
0.5-0.7 % with the ``expandable_segments`` the trainer turns on, 3 % without it; 3 % covers both."""
_ADAMW8BIT_MIN_SIZE = 4096
"""bitsandbytes keeps fp32 state for tensors smaller than this (its ``min_8bit_size``)."""
_ADAMW8BIT_BLOCK = 256
"""bitsandbytes' block size: one fp32 scale per block, for each of its two states."""


@dataclass(frozen=True)
class VramEstimate:
    """GPU memory for one run, in bytes, by part. Computed from the shape tables; checked on an H200."""

    base_weights: int
    """UNet and text encoders in the compute dtype (the VAE leaves the GPU once images are encoded; the
    text encoders stay on the CPU when their outputs are cached)."""
    lora_weights: int
    """The LoRA's weights, kept in fp32."""
    lora_gradients: int
    optimizer_state: int
    activations: int
    """What one training step keeps alive beyond the weights (replayed on the meta device)."""
    latent_caching: int
    """The fp32 VAE and its working memory while it encodes the images, before training starts."""
    overhead: int
    """CUDA context plus the allocator's fragmentation allowance."""

    @property
    def training_peak(self) -> int:
        """Tensor bytes at the peak of a training step."""
        return self.base_weights + self.lora_weights + self.lora_gradients + self.optimizer_state + self.activations

    @property
    def caching_peak(self) -> int:
        """Tensor bytes while the images are encoded: the trainer keeps the UNet and text encoders
        off the GPU until then, so only the LoRA's weights sit beside the VAE."""
        return self.lora_weights + self.latent_caching

    @property
    def allocated_peak(self) -> int:
        """The peak PyTorch itself allocates: comparable to the trainer's reported ``vram_peak_gib``."""
        return max(self.training_peak, self.caching_peak)

    @property
    def total(self) -> int:
        """What the GPU must have free: the allocated peak plus the overhead."""
        return self.allocated_peak + self.overhead

    @property
    def total_gib(self) -> float:
        return self.total / GIB

    def parts(self) -> list[tuple[str, int]]:
        """(label, bytes) for display, in the order of the fields."""
        return [("base model", self.base_weights), ("LoRA weights", self.lora_weights),
                ("LoRA gradients", self.lora_gradients), ("optimizer state", self.optimizer_state),
                ("activations", self.activations), ("image encoding", self.latent_caching),
                ("CUDA and allocator", self.overhead)]


def _fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares line (intercept, slope) through (x, y) points."""
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else mean_y / mean_x
    return mean_y - slope * mean_x, slope


def unet_activation_bytes(arch: str, resolution: int, batch_size: int, gradient_checkpointing: bool,
                          network_type: str = "lora", dim: int = 8, conv_dim: int = 8,
                          mixed_precision: str = "bf16") -> int:
    """Activation memory of one UNet training step, from the replayed steps in the tables.

    The replays show memory growing in proportion to batch × pixels (within 1 %), so a straight
    line through them is used at any size. A rank other than the measured 8 is scaled by the
    growth seen at rank 64; training in fp32 by the ratio seen at the native size.
    """
    rows = _tables(arch).activations["unet_step"]
    ck = int(gradient_checkpointing)

    def pick(**want):
        keys = ("resolution", "batch", "network", "dim", "precision", "checkpointing")
        return [r for r in rows if all(r[keys.index(k)] == v for k, v in want.items())]

    measured = pick(network=network_type, dim=8, precision="16bit", checkpointing=ck)
    intercept, slope = _fit([(r[0] ** 2 * r[1], r[6]) for r in measured])
    value = intercept + slope * resolution ** 2 * batch_size
    (probe,) = pick(dim=64, precision="16bit", checkpointing=ck)
    (reference,) = pick(resolution=probe[0], batch=probe[1], network="lora", dim=8, precision="16bit",
                        checkpointing=ck)
    per_rank = (probe[6] / reference[6] - 1) / (64 - 8)
    rank = max(dim, conv_dim) if network_type == "locon" else dim
    value *= max(0.9, 1 + per_rank * (rank - 8))
    if mixed_precision == "no":
        (full,) = pick(network="lora", dim=8, precision="fp32", checkpointing=ck)
        value *= full[6] / reference[6]
    return max(0, int(value))


def text_encoder_activation_bytes(arch: str, batch_size: int, gradient_checkpointing: bool) -> int:
    """Activation memory of the text encoders' step when they are trained (a line through batch 1 and 4)."""
    rows = [r for r in _tables(arch).activations["text_encoder_step"] if r[1] == int(gradient_checkpointing)]
    intercept, slope = _fit([(r[0], r[2]) for r in rows])
    return int(intercept + slope * batch_size)


def vae_encoding_bytes(arch: str, resolution: int, images: int = 1) -> int:
    """Working memory of the fp32 VAE encoding ``images`` images at once (two with flipping)."""
    rows = _tables(arch).activations["vae_encode"]
    intercept, slope = _fit([(r[0] ** 2 * r[1], r[2]) for r in rows])
    return int(max(0.0, intercept + slope * resolution ** 2 * images))


def _optimizer_bytes(optimizer: str, tensor_sizes: list[int]) -> int:
    if optimizer == "adamw":
        return sum(8 * n for n in tensor_sizes)  # two fp32 moments per parameter
    if optimizer == "adamw8bit":
        total = 0
        for n in tensor_sizes:
            if n < _ADAMW8BIT_MIN_SIZE:
                total += 8 * n
            else:
                blocks = -(-n // _ADAMW8BIT_BLOCK)
                total += 2 * n + 2 * 4 * blocks  # two uint8 moments and their per-block fp32 scales
        return total
    raise ValueError(f"unknown optimizer {optimizer!r}")


def vram_estimate(arch: str, resolution: int, batch_size: int, gradient_checkpointing: bool, mixed_precision: str,
                  optimizer: str, network_type: str = "lora", dim: int = 8, conv_dim: int = 8,
                  train_text_encoder: bool = False, flip: bool = False,
                  text_outputs_cached: bool = False) -> VramEstimate:
    """GPU memory a run needs, by part (computed; the allowances measured on an H200).

    ``mixed_precision`` is the config's ``bf16``, ``fp16`` (both 2-byte weights) or ``no``
    (fp32 throughout). The base weights are the UNet's and text encoders' parameters in that
    dtype; the LoRA is fp32 with fp32 gradients; AdamW keeps 8 bytes per parameter and AdamW8bit
    about 2 (bitsandbytes keeps fp32 state for tensors under 4096 values, which many LoRA
    tensors are). Activations come from the replayed steps (see ``unet_activation_bytes``); a
    trained text encoder adds its own. With ``text_outputs_cached`` (frozen text encoders, captions
    that never change) the encoders wait on the CPU, as the trainer keeps them, and hold no GPU
    memory. The overhead is the CUDA context and the allocator's share, as measured.
    """
    if mixed_precision not in ("no", "fp16", "bf16"):
        raise ValueError(f"unknown mixed precision {mixed_precision!r}")
    tables = _tables(arch)
    width = 4 if mixed_precision == "no" else 2
    on_gpu_encoders = 0 if text_outputs_cached and not train_text_encoder else sum(tables.text_encoder_parameters)
    base = (tables.unet_parameters + on_gpu_encoders) * width
    sizes = lora_parameter_tensors(arch, network_type, dim, conv_dim, train_text_encoder)
    lora = 4 * sum(sizes)
    activations = unet_activation_bytes(arch, resolution, batch_size, gradient_checkpointing, network_type, dim,
                                        conv_dim, mixed_precision)
    if train_text_encoder:
        text = text_encoder_activation_bytes(arch, batch_size, gradient_checkpointing)
        # Only the 16-bit text-encoder step was replayed; fp32 is taken as twice it (a rough guess
        # for a part that is small next to the UNet's either way).
        activations += int(text * (2 if mixed_precision == "no" else 1))
    caching = tables.vae_parameters * 4 + vae_encoding_bytes(arch, resolution, 2 if flip else 1)
    estimate = VramEstimate(base_weights=base, lora_weights=lora, lora_gradients=lora,
                            optimizer_state=_optimizer_bytes(optimizer, sizes), activations=activations,
                            latent_caching=caching, overhead=0)
    overhead = CUDA_CONTEXT_BYTES + int(FRAGMENTATION * estimate.allocated_peak)
    return replace(estimate, overhead=overhead)


# --- GPUs on this machine -----------------------------------------------------------------------

NVIDIA_SMI_QUERY = ["nvidia-smi", "--query-gpu=name,memory.total,memory.used", "--format=csv,noheader,nounits"]


@dataclass(frozen=True)
class GpuInfo:
    """One GPU as nvidia-smi reports it."""

    name: str
    memory_total_mib: int
    memory_used_mib: int

    @property
    def memory_free_mib(self) -> int:
        return max(0, self.memory_total_mib - self.memory_used_mib)


def parse_nvidia_smi(text: str) -> list[GpuInfo]:
    """The GPUs in ``nvidia-smi --query-gpu=name,memory.total,memory.used --format=csv,noheader,nounits`` output.

    Lines that do not read as a name and two whole numbers (an error message, ``[N/A]`` on some
    partitioned GPUs) are left out.
    """
    gpus = []
    for line in text.splitlines():
        parts = [part.strip() for part in line.rsplit(",", 2)]
        if len(parts) != 3 or not parts[0]:
            continue
        try:
            total, used = int(parts[1]), int(parts[2])
        except ValueError:
            continue
        gpus.append(GpuInfo(parts[0], total, used))
    return gpus


def detect_gpus(timeout: float = 5.0) -> list[GpuInfo]:
    """The NVIDIA GPUs on this machine; an empty list when there are none or nvidia-smi cannot tell."""
    try:
        result = subprocess.run(NVIDIA_SMI_QUERY, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return []
    if result.returncode != 0:
        return []
    return parse_nvidia_smi(result.stdout)


# --- Time per step ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeedFigure:
    """A seconds-per-step range for one GPU and setting: measured by loratui or reported by users."""

    gpus: tuple[str, ...]
    """Model numbers it covers, as ``gpu_model`` returns them (``4090``, ``3090 ti``)."""
    arch: str
    resolution: int
    batch_size: int
    seconds_low: float
    seconds_high: float
    source: str
    gradient_checkpointing: bool | None = None
    """Whether the figure was taken with checkpointing; None when its source does not say (it then
    stands for either setting)."""
    text_encoder_trained: bool | None = None
    """Whether the text encoder was trained too (it then runs forward and backward every step); None
    when the source does not say."""

    @property
    def measured(self) -> bool:
        """Whether loratui measured it (rather than users reporting it)."""
        return self.source.startswith("measured")


H200_SOURCE = ("measured by loratui on an NVIDIA H200 (bench/gpu_acceptance.py, 2026-12-04: bf16, AdamW8bit, "
               "dim 8, median of steps 5-21)")

SPEED_FIGURES = (
    # loratui's own: the trainer as the app runs it. Batch 1 trained the text encoder too (the
    # setting the user reports below describe); batch 4 kept it frozen with its outputs cached.
    SpeedFigure(("h200",), "sdxl", 1024, 4, 0.57, 0.57, H200_SOURCE, gradient_checkpointing=False,
                text_encoder_trained=False),
    SpeedFigure(("h200",), "sdxl", 1024, 4, 1.10, 1.10, H200_SOURCE, gradient_checkpointing=True,
                text_encoder_trained=False),
    SpeedFigure(("h200",), "sdxl", 1024, 1, 0.735, 0.735, H200_SOURCE, gradient_checkpointing=False,
                text_encoder_trained=True),
    SpeedFigure(("4090",), "sdxl", 1024, 1, 1.13, 1.21,
                "reported by users (kohya_ss issue #1288: bf16, cached latents, Adafactor)"),
    SpeedFigure(("3090", "3090 ti"), "sdxl", 1024, 1, 1.23, 1.4, "reported by users (kohya_ss issue #1288)"),
    SpeedFigure(("3060",), "sdxl", 1024, 1, 2.4, 2.8, "reported by users (kohya_ss issue #1288, rank 32)"),
)
"""Every figure known so far, loratui's measurements first. User reports where the GPU ran out of
memory and spilled into system RAM (tens of seconds per step) are left out on purpose."""


@dataclass(frozen=True)
class DurationEstimate:
    """How long a run takes on a GPU, from a reported seconds-per-step range."""

    seconds_per_step_low: float
    seconds_per_step_high: float
    total_seconds_low: float
    total_seconds_high: float
    source: str
    """Where the figure comes from, such as "reported by users (kohya_ss issue #1288)"."""
    scaled_from_batch: int | None
    """The reported batch size when the figure was scaled to another one; None when used as reported."""

    @property
    def measured(self) -> bool:
        """Whether the figure behind it was measured by loratui (rather than reported by users)."""
        return self.source.startswith("measured")


def gpu_model(name: str) -> str | None:
    """The model in an NVIDIA name: "NVIDIA GeForce RTX 4090" → ``4090``, "… RTX 3090 Ti" → ``3090 ti``,
    "NVIDIA H200" → ``h200``, "NVIDIA H100 PCIe" → ``h100 pcie``.

    Laptop parts share the number but not the speed, so they get None, as does anything without a
    number. A data-centre part keeps its PCIe or NVL suffix: those run at a lower power limit than
    the SXM part of the same name, so they must not share its figures.
    """
    lowered = name.lower()
    if "laptop" in lowered or "mobile" in lowered:
        return None
    match = re.search(r"\b(\d{4})(?:\s*(ti|super))?\b", lowered)
    if match:
        return match.group(1) + (f" {match.group(2)}" if match.group(2) else "")
    match = re.search(r"\b([abhl]\d{2,3}s?)\b(?:.*\b(pcie|nvl)\b)?", lowered)
    if match:
        return match.group(1) + (f" {match.group(2)}" if match.group(2) else "")
    return None


def duration_estimate(gpu_name: str, arch: str, resolution: int, batch_size: int, gradient_checkpointing: bool,
                      total_steps: int, train_text_encoder: bool = False,
                      accumulation: int = 1) -> DurationEstimate | None:
    """Time for ``total_steps`` steps from a reported figure, or None when none fits this GPU and setting.

    A step is an update of ``accumulation`` batches, so it takes that many batches' time.

    Only figures for the same architecture and resolution are used, with the same checkpointing and
    text-encoder setting where the figure states them, and of those the one with the largest batch not above
    ``batch_size``. A larger batch is scaled in proportion, which overstates the time on a GPU that
    one image does not keep busy (on an H200 batch 4 took 0.57 s a step, batch 1 0.74 s), so a
    scaled figure is an upper bound; a smaller batch is not answered.
    """
    model = gpu_model(gpu_name)
    if model is None:
        return None
    fitting = [f for f in SPEED_FIGURES if model in f.gpus and f.arch == arch and f.resolution == resolution
               and batch_size >= f.batch_size
               and f.gradient_checkpointing in (None, gradient_checkpointing)
               and f.text_encoder_trained in (None, train_text_encoder)]
    if not fitting:
        return None
    figure = max(fitting, key=lambda f: f.batch_size)
    factor = batch_size / figure.batch_size
    low, high = figure.seconds_low * factor * accumulation, figure.seconds_high * factor * accumulation
    return DurationEstimate(low, high, low * total_steps, high * total_steps, figure.source,
                            figure.batch_size if factor != 1 else None)
