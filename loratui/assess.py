"""Everything known about a config before launch: its dataset, exact steps, the guide's findings.

Reading the dataset (image headers, caption files) is the slow part, so it is kept apart in
``DatasetFacts`` and only redone when a setting that changes it does; the rest is recomputed on
every keystroke of the settings form.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from loratui.estimates import (DurationEstimate, GpuInfo, VramEstimate, duration_estimate, lora_file_size,
                               metadata_bytes, vram_estimate)
from loratui.dataset.token_count import caption_token_counts
from loratui.rules import Context, Finding, Fix, evaluate
from loratui.rules.targets import is_tiny, targets_for
from trainer.contract.captions import CaptionReadError, read_caption, with_trigger
from trainer.contract.dataset_scan import CaptionStats, caption_stats
from trainer.contract.config.schema import Config, Problem, effective_resolution, get_value, validate, with_value
from trainer.contract.model_ref import check_model, local_model_arch
from trainer.contract.dataset_scan import DatasetScan
from trainer.contract.plan import StepPlan, plan_steps
from trainer.contract.validation_split import split_images
from trainer.contract.prediction import Resolved, detect_prediction, resolve_prediction
from trainer.contract.lora_weights import as_trained, check_network_weights
from trainer.contract.preflight import check_dataset, check_model_vae, check_output, check_prediction
from trainer.contract.reg_images import check_reg_folder

DATASET_KEYS = ("dataset.path", "dataset.repeats", "dataset.caption_extension", "dataset.trigger_word",
                "model.base", "model.single_file_config", "dataset.masked_loss", "dataset.mask_path",
                "dataset.reg_path")
"""Settings whose change means the dataset must be read again (the model's tokenizer counts the captions)."""


@dataclass
class DatasetFacts:
    """What reading the dataset folder found."""

    key: tuple
    scan: DatasetScan | None = None
    captions: CaptionStats | None = None
    problems: list[Problem] = field(default_factory=list)
    caption_tokens: tuple[tuple[Path, int], ...] | None = None
    """(caption file, CLIP tokens with the trigger word) for every caption; None without the model's tokenizer."""
    reg_scan: DatasetScan | None = None
    """The regularization folder's images (``dataset.reg_path``), apart from the dataset's."""


def dataset_key(config: Config) -> tuple:
    """The values of DATASET_KEYS and the dataset folder's fingerprint: when either changes, the dataset
    facts are stale (a caption written by the dataset screen or by another program on the box, a folder
    renamed, an image added)."""
    # The mask and reg folders' files too (their checks read them). The dataset folder's fingerprint
    # stays last and the reg folder's just before it: the app and the dataset screen compare ``key[-2:]``.
    masks = dataset_fingerprint(config.dataset.mask_path) if config.dataset.masked_loss else None
    return tuple(get_value(config, key) for key in DATASET_KEYS) + (masks, dataset_fingerprint(config.dataset.reg_path),
                                                                     dataset_fingerprint(config.dataset.path))


def dataset_fingerprint(folder: str) -> int | None:
    """A hash of the names, sizes and modification times of the files the trainer reads: those in the
    dataset folder and in the folders directly inside it. Only directory listings and stats, so it is cheap
    enough to take on every assessment and every few seconds; None when the folder cannot be listed."""
    if not folder:
        return None
    entries = []
    try:
        folders = [Path(folder)]
        with os.scandir(folder) as listing:
            for entry in listing:
                entries.append(_stat_entry(entry))
                if entry.is_dir() and not entry.name.startswith("."):
                    folders.append(Path(entry.path))
        for child in folders[1:]:
            try:
                with os.scandir(child) as listing:
                    entries.extend(_stat_entry(entry) for entry in listing)
            except OSError:
                entries.append((str(child), -1, -1))
    except OSError:
        return None
    return hash(tuple(sorted(entries)))


def _stat_entry(entry: os.DirEntry) -> tuple[str, int, int]:
    try:
        status = entry.stat()
    except OSError:
        return entry.path, -1, -1
    return entry.path, status.st_size, status.st_mtime_ns


def read_dataset(config: Config, key: tuple | None = None) -> DatasetFacts:
    """Scan the dataset folder and count its captions (the I/O part of an assessment). ``key`` is
    ``dataset_key(config)`` when the caller has it; either way it is taken before the folder is read, so a
    file changed during the scan makes the facts stale rather than hiding the change."""
    key = dataset_key(config) if key is None else key
    problems, scan = check_dataset(config)
    reg_problems, reg_scan = check_reg_folder(config.dataset.reg_path, config.dataset.path,
                                              config.dataset.caption_extension)
    captions = caption_stats(scan.images, config.dataset.trigger_word) if scan and scan.images else None
    tokens = None
    if scan and scan.images and config.model.base:
        tokens = caption_token_counts(_caption_texts(scan.images, config.dataset.trigger_word), config.model.base,
                                      config.model.single_file_config)
    return DatasetFacts(key, scan, captions, problems + reg_problems, tokens, reg_scan)


def _caption_texts(images, trigger: str) -> list[tuple[Path, str]]:
    """Each readable caption as the trainer reads it (the trigger word put first where it lacks it)."""
    texts = []
    for image in images:
        if image.caption_path is None:
            continue
        try:
            texts.append((image.caption_path, with_trigger(read_caption(image.caption_path), trigger)))
        except CaptionReadError:
            continue  # named by the dataset check
    return texts


@dataclass(frozen=True)
class Estimates:
    """What a run will cost, computed before launch (see loratui.estimates for how)."""

    file_size: int
    """Bytes of the finished LoRA file."""
    vram: VramEstimate
    gpu: GpuInfo | None
    """The GPU the run would use (the first one), or None on a machine without one."""
    duration: DurationEstimate | None
    """None when no speed figure exists for this GPU and setting."""
    savers: Fix | None
    """Changes that make the run fit the GPU's memory, when it does not fit as set."""

    @property
    def fits(self) -> bool | None:
        """Whether the run fits the GPU's memory (None without a GPU)."""
        if self.gpu is None:
            return None
        return self.vram.total <= self.gpu.memory_total_mib * 2**20


SAVERS = (("training.gradient_checkpointing", True, "turn on gradient checkpointing"),
          ("optimizer.name", "adamw8bit", "use AdamW8bit"),
          ("training.batch_size", 1, "use batch 1"))
"""Memory savers in the order the guide reaches for them (resolution is a last resort, left to the user).
The optimizer step is skipped for an optimizer that is already light (AdamW8bit, CAME), and picks CAME
with the REX schedule, which pairs with it."""
LIGHT_OPTIMIZERS = ("adamw8bit", "came")


def _vram(config: Config, arch: str, resolution: int) -> VramEstimate:
    # CAME keeps factored second moments; for a LoRA's few million weights its state is within a few tens of MB
    # of AdamW8bit's, so it is estimated as that (the tables measure AdamW and AdamW8bit only).
    name = "adamw8bit" if config.optimizer.name == "came" else config.optimizer.name
    optimizer = name if name in ("adamw", "adamw8bit") else "adamw"
    return vram_estimate(arch, resolution, config.training.batch_size, config.training.gradient_checkpointing,
                         config.training.mixed_precision, optimizer, _estimated_type(config), config.network.dim,
                         config.network.conv_dim, config.optimizer.text_encoder_lr > 0, config.dataset.flip,
                         text_outputs_cached=not config.dataset.shuffle_captions)


def _estimated_type(config: Config) -> str:
    """The measured network type the estimates use for ``config``'s.

    The size and memory tables cover LoRA and LoCon; a LyCORIS type is estimated as the one that
    adapts the same layers (LoHa and LoKr adapt the convolutions, like LoCon), so its figures are
    approximate: LoHa files are about twice a LoCon's, LoKr and (IA)³ ones much smaller.
    """
    return "locon" if config.network.type in ("locon", "loha", "lokr") else "lora"


def _savers(config: Config, arch: str, resolution: int, gpu: GpuInfo, tiny: bool = False) -> Fix | None:
    """The fewest savers, taken in the guide's order, that bring the run under the GPU's memory.

    Lowering the batch keeps the guide's batch by accumulating gradients (batch 1 with 4 accumulation
    steps trains like batch 4, in batch 1's memory), up to the situation's batch; not with the fused
    backward pass, which updates each weight inside the backward pass and so cannot accumulate.
    """
    budget = gpu.memory_total_mib * 2**20
    changes: dict = {}
    words = []
    for key, value, label in SAVERS:
        if key == "optimizer.name":
            if config.optimizer.name in LIGHT_OPTIMIZERS:
                continue
            if config.scheduler.name == "rex":
                value, label = "came", "use CAME"
        if get_value(config, key) == value:
            continue
        changes[key] = value
        if key == "training.batch_size" and not config.training.fused_backward_pass:
            accumulate = _accumulation_for_batch_one(config, tiny)
            if accumulate != config.training.gradient_accumulation_steps:
                changes["training.gradient_accumulation_steps"] = accumulate
            if accumulate > 1:
                label = f"use batch 1 with {accumulate} accumulation steps"
        words.append(label)
        trial = config
        for changed_key, changed_value in changes.items():
            trial = with_value(trial, changed_key, changed_value)
        if _vram(trial, arch, resolution).total <= budget:
            return Fix(dict(changes), ", ".join(words))
    return None


def _accumulation_for_batch_one(config: Config, tiny: bool) -> int:
    """Accumulation steps that keep the effective batch (batch × accumulation × processes) at batch 1,
    as far as the guide's batch for the situation allows."""
    processes = max(1, config.training.num_processes)
    now = config.training.batch_size * max(1, config.training.gradient_accumulation_steps) * processes
    target = targets_for(config.kind, None, tiny).batch_size
    return max(1, min(now, target) // processes)


def estimate(config: Config, arch: str, plan: StepPlan | None, gpus: list[GpuInfo],
             tag_frequency: dict[str, int] | None = None, image_count: int | None = None) -> Estimates:
    """File size, memory, fit and duration of a run of ``config`` on this machine's first GPU.

    ``image_count`` is the dataset's size as the rules count it (every image, held-out ones included),
    so the memory savers choose the same tiny-dataset batch as the batch rules; by default the plan's.
    """
    resolution = effective_resolution(config, arch)
    network = config.network
    size = lora_file_size(arch, _estimated_type(config), network.dim, network.alpha, network.conv_dim, network.conv_alpha,
                          config.optimizer.text_encoder_lr > 0, config.output.save_precision,
                          metadata_bytes(tag_frequency))
    vram = _vram(config, arch, resolution)
    gpu = gpus[0] if gpus else None
    duration = savers = None
    if gpu is not None:
        if plan is not None:
            duration = duration_estimate(gpu.name, arch, resolution, config.training.batch_size,
                                         config.training.gradient_checkpointing, plan.total_steps,
                                         config.optimizer.text_encoder_lr > 0,
                                         config.training.gradient_accumulation_steps)
        if vram.total > gpu.memory_total_mib * 2**20:
            count = image_count if image_count is not None else plan.images if plan is not None else None
            savers = _savers(config, arch, resolution, gpu, is_tiny(count))
    return Estimates(size, vram, gpu, duration, savers)


@dataclass
class Assessment:
    """A config with its hard problems, its plan and the guide's findings."""

    config: Config
    problems: list[Problem]
    """Hard problems: the run cannot start until they are fixed."""
    findings: list[Finding]
    arch: str | None
    plan: StepPlan | None
    facts: DatasetFacts
    estimates: Estimates | None = None
    """None until the architecture is known."""
    prediction: Resolved | None = None
    """What the run will train with (noise or v-prediction, zero terminal SNR) and why; None without a model."""

    @property
    def startable(self) -> bool:
        return not self.problems


def assess(config: Config, facts: DatasetFacts | None = None, parse_problems: Iterable[Problem] = (),
           gpus: list[GpuInfo] = ()) -> Assessment:
    """Assess an in-memory config; pass the last ``facts`` to skip re-reading an unchanged dataset."""
    key = dataset_key(config)
    if facts is None or facts.key != key:
        facts = read_dataset(config, key)
    model_problems = check_model(config.model.base)
    problems = list(parse_problems) + validate(config) + model_problems + facts.problems + check_output(config)
    problems += check_network_weights(config)
    prediction = None
    if config.model.base and not model_problems:
        problems += check_prediction(config) + check_model_vae(config)
        prediction = resolve_prediction(config.model.prediction, config.model.zero_terminal_snr,
                                        detect_prediction(config.model.base, config.model.single_file_config))
    # An impossible arch or resolution is named by the config's validation; these only read good ones.
    arch = config.model.arch if config.model.arch in ("sd15", "sdxl") else local_model_arch(config.model.base)
    plan = None
    counts_valid = (min(config.training.batch_size, config.training.epochs, config.dataset.repeats) >= 1
                    and config.dataset.resolution >= 0 and config.dataset.resolution % 64 == 0)
    if facts.scan is not None and facts.scan.images and counts_valid:
        resolution = effective_resolution(config, arch or "sd15")
        # Only the images left after the validation split are trained on (and counted), with the
        # regularization images sd-scripts balances against them.
        training, _ = split_images(facts.scan.images, config.training.validation_split,
                                   config.training.validation_seed)
        plan = plan_steps(training, resolution, config.training.batch_size, config.training.epochs,
                          config.dataset.buckets, config.dataset.bucket_upscale,
                          reg_images=facts.reg_scan.images if facts.reg_scan is not None else (),
                          accumulation=config.training.gradient_accumulation_steps,
                          processes=config.training.num_processes)
    estimates = None
    # The tables describe the real SD1.5 and SDXL; the demo's tiny models are a thousand times smaller.
    tiny_model = (Path(config.model.base) / "loratui-tiny.json").is_file()
    if arch is not None and not validate(config) and not tiny_model:
        estimates = estimate(as_trained(config), arch, plan, list(gpus),
                             image_count=len(facts.scan.images) if facts.scan is not None else None)  # dim_from_weights: the file's dims
    context = Context(config, arch, facts.scan, plan, facts.captions, estimates, prediction, facts.caption_tokens,
                      tiny_model, reg_scan=facts.reg_scan)
    return Assessment(config, problems, evaluate(context), arch, plan, facts, estimates, prediction)
