"""A loratui config as kohya-ss/sd-scripts runs it: the shared name tables and the export (no torch).

The export writes what ``train_network.py`` (SD1.5) or ``sdxl_train_network.py`` (SDXL) reads:

- ``config.toml`` for ``--config_file`` (flat keys; sd-scripts merges all tables into one namespace),
- ``dataset.toml`` for ``--dataset_config`` (``[general]`` → ``[[datasets]]`` → ``[[datasets.subsets]]``),
- ``command.sh``, the ``accelerate launch`` line that runs them,
- ``sample_prompts.txt`` when the config has prompts (sd-scripts' ``--n/--w/--h/--d/--l/--s/--ss`` format).

Facts about sd-scripts used here were read in its sources (kohya-ss/sd-scripts):
``library/train_util.py`` (argument names and defaults, ``get_optimizer``: AdamW8bit/Adafactor/Prodigy
by name, any other optimizer by dotted class path, ``optimizer_args`` parsed with ``ast.literal_eval``,
Adafactor's ``relative_step`` defaulting to True, names ending in ``schedulefree`` importing the
``schedulefree`` package first; ``get_scheduler_fix``: ``constant`` refuses warmup steps, a custom
``lr_scheduler_type`` is built as ``Class(optimizer, **lr_scheduler_args)`` and also refuses warmup,
schedule-free optimizers get no schedule at all; ``save_precision`` choices ``float/fp16/bf16``),
``train_network.py`` (``network_module/dim/alpha/args``, ``unet_lr``, ``text_encoder_lr`` as a number,
``network_train_unet_only``) and ``library/config_util.py`` (the dataset schema, which rejects unknown
keys, and its defaults: ``caption_extension = ".caption"``, ``num_repeats = 1``, no buckets).
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loratui.interop.report import MappingReport
from loratui.interop.sdscripts_masks import mask_subset_pairs, mask_training_pairs
from loratui.interop.sdscripts_validation import export_validation
from loratui.interop.sdscripts_reg import export_reg_subsets, prior_loss_pairs, reg_images_here
# GUIDANCE_SCALE: the trainer's sample CFG scale per architecture, re-exported (a test keeps it equal to the trainer's).
from loratui.interop.sdscripts_samples import GUIDANCE_SCALE, export_samples, export_step_saves, prompt_file  # noqa: F401
from loratui.interop.tomlout import dataset_toml, flat_toml
from trainer.contract.config.schema import FIELDS, Config, effective_resolution
from trainer.contract.dataset_scan import DatasetScan, parse_repeat_folder, scan_dataset
from trainer.contract.plan import BUCKET_STEP, plan_steps
from trainer.contract.prediction import Detected, detect_prediction, resolve_prediction
from trainer.contract.validation_split import split_images

SD15_SCRIPT = "train_network.py"
SDXL_SCRIPT = "sdxl_train_network.py"

OPTIMIZER_TYPES = {
    "adamw": "AdamW",
    "adamw8bit": "AdamW8bit",
    "came": "pytorch_optimizer.CAME",
    "adafactor": "Adafactor",
    "prodigy": "Prodigy",
    "prodigy_plus": "prodigyplus.ProdigyPlusScheduleFree",
}
"""Our optimizer names → sd-scripts' ``optimizer_type`` (built-in names, or dotted class paths it imports)."""

CAME_BETAS = (0.9, 0.999, 0.9999)
"""CAME's decay rates as the trainer uses them (``trainer.optim.CAME_BETAS``; a test keeps the two equal)."""

OPTIMIZER_ARGS = {
    "came": {"betas": CAME_BETAS},
    # sd-scripts runs Adafactor with relative_step=True (its own step size, the rate ignored) unless told;
    # the trainer runs it as a plain optimizer at the configured rate.
    "adafactor": {"relative_step": False, "scale_parameter": False, "warmup_init": False},
}
"""Optimizer arguments besides ``weight_decay`` that make sd-scripts build the optimizer the trainer builds."""

SCHEDULERS = ("constant", "linear", "cosine", "cosine_with_restarts")
"""Our schedules that are diffusers schedules of the same name in sd-scripts (REX is not one of them)."""

REX_SCHEDULER = "pytorch_optimizer.REXScheduler"
"""The closest REX sd-scripts can run: pytorch-optimizer's class, through ``lr_scheduler_type``."""

LYCORIS_ALGOS = {"lora": "lora", "locon": "locon", "loha": "loha", "lokr": "lokr", "ia3": "ia3",
                 "boft": "boft", "glora": "glora"}
"""Our network types → LyCORIS ``algo`` (the names ``trainer.networks.lycoris_net.ALGORITHMS`` writes)."""

CONV_TYPES = ("locon", "loha", "lokr")
"""Types whose ``conv_dim``/``conv_alpha`` are used (they adapt the 3×3 convolutions too)."""

LYCORIS_ATTENTION_PRESET = "attn-mlp"
"""The LyCORIS preset that adapts what loratui's attention-only types adapt (Transformer2DModel, CLIP attention/MLP)."""

LYCORIS_FULL_EXTRAS = "conv_in, conv_out and the time embedding"
"""What LyCORIS's default 'full' preset adapts beyond loratui's conv types (ResNet and resampling blocks)."""


SAVE_PRECISIONS = {"fp16": "fp16", "bf16": "bf16", "fp32": "float"}
"""Our ``output.save_precision`` → sd-scripts' ``save_precision``."""


def bucket_range(resolution: int) -> tuple[int, int]:
    """The smallest and largest bucket side the trainer uses at a resolution (``trainer.contract.plan.bucket_candidates``)."""
    low = max(BUCKET_STEP, min(256, resolution // 2 // BUCKET_STEP * BUCKET_STEP))
    return low, resolution * 2


def uses_lycoris(config: Config) -> bool:
    """Whether sd-scripts needs ``lycoris.kohya`` for this network (every type but plain LoRA/LoCon, and DoRA)."""
    return config.network.type not in ("lora", "locon") or config.network.dora


def network_settings(config: Config) -> tuple[str, list[str]]:
    """``network_module`` and ``network_args`` (``key=value`` strings) for the configured network."""
    network = config.network
    conv = [f"conv_dim={network.conv_dim}", f"conv_alpha={network.conv_alpha}"]
    if not uses_lycoris(config):
        return "networks.lora", conv if network.type == "locon" else []
    args = [f"algo={LYCORIS_ALGOS[network.type]}"]
    if network.type in CONV_TYPES:
        args += conv
    else:
        # LyCORIS's default preset ('full') adapts the ResNet convolutions too, at conv_dim = dim when none is
        # given (and conv_dim=0 falls back to dim); 'attn-mlp' is exactly loratui's attention-only choice.
        args.append(f"preset={LYCORIS_ATTENTION_PRESET}")
    if network.dora:
        # LyCORIS 3.2+ keeps DoRA magnitudes along the output axis unless told otherwise; the UIs apply
        # only the input-axis form exactly, which is what loratui trains.
        args += ["dora_wd=True", "wd_on_output=False"]
    return "lycoris.kohya", args


def optimizer_args(config: Config) -> list[str]:
    """``optimizer_args`` strings (sd-scripts reads each value with ``ast.literal_eval``)."""
    values: dict[str, Any] = {"weight_decay": config.optimizer.weight_decay}
    values.update(OPTIMIZER_ARGS.get(config.optimizer.name, {}))
    return [f"{key}={value!r}" for key, value in values.items()]


@dataclass
class Export:
    """What an export writes (file name → text) and what could not be carried over."""

    arch: str
    script: str
    files: dict[str, str] = field(default_factory=dict)
    executable: set[str] = field(default_factory=set)
    report: MappingReport = field(default_factory=MappingReport)


def _subsets(config: Config, scan: DatasetScan | None, report: MappingReport) -> list[list[tuple[str, Any]]]:
    """One subset for the dataset folder and one per sub-folder that holds images.

    sd-scripts reads each subset's folder alone (not its sub-folders), so loratui's ``N_name``
    folders become subsets with ``num_repeats = N``; other sub-folders and the folder itself repeat
    ``dataset.repeats`` times. The folder itself is always listed, so that ``dataset.repeats``
    survives a round trip; sd-scripts skips it with a warning when it holds no images.
    """
    root = Path(config.dataset.path)
    subsets = [[("image_dir", str(root)), ("num_repeats", config.dataset.repeats)]]
    if scan is None:
        report.approx("dataset.path", "datasets.subsets", config.dataset.path,
                      "the folder could not be read here, so only the folder itself is listed; add a subset per "
                      "N_name sub-folder (sd-scripts does not look into sub-folders)")
        return subsets
    folders = sorted({image.path.parent for image in scan.images if image.path.parent != root})
    for folder in folders:
        parsed = parse_repeat_folder(folder.name) if config.dataset.folder_name_repeats else None
        subsets.append([("image_dir", str(folder)), ("num_repeats", parsed[0] if parsed else config.dataset.repeats)])
    return subsets


def _read_dataset(config: Config) -> DatasetScan | None:
    folder = Path(config.dataset.path)
    if not config.dataset.path or not folder.is_dir():
        return None
    try:
        return scan_dataset(folder, config.dataset.repeats, config.dataset.caption_extension,
                            config.dataset.folder_name_repeats)
    except OSError:
        return None


def _resolve_arch(config: Config, report: MappingReport) -> str:
    if config.model.arch != "auto":
        return config.model.arch
    from trainer.contract.model_ref import local_model_arch

    arch = local_model_arch(config.model.base)
    if arch is None:
        report.approx("model.arch", "script", "auto", f"the architecture could not be read from the model here; "
                      f"wrote {SD15_SCRIPT} (SD1.5): use {SDXL_SCRIPT} for SDXL, Pony and Illustrious models")
        return "sd15"
    report.approx("model.arch", "script", "auto", f"read from the model as {arch}; sd-scripts picks the "
                  "architecture by script, so the export names it (an import gives it back as "
                  f"{arch!r}, not 'auto')")
    return arch


def _prediction_settings(config: Config, report: MappingReport) -> list[tuple[str, Any]]:
    """sd-scripts' v_parameterization and zero_terminal_snr: it trains noise prediction unless told otherwise,
    so what loratui reads from the model under ``auto`` is written out explicitly."""
    detected = detect_prediction(config.model.base, config.model.single_file_config) if config.model.base \
        else Detected(None, False, "")
    resolved = resolve_prediction(config.model.prediction, config.model.zero_terminal_snr, detected)
    pairs: list[tuple[str, Any]] = []
    if resolved.prediction == "v_prediction":
        pairs.append(("v_parameterization", True))
        if config.model.prediction == "auto":
            report.approx("model.prediction", "v_parameterization", "auto", f"written out: the model predicts "
                          f"{resolved.explanation}")
        else:
            report.map("model.prediction", "v_parameterization")
    elif config.model.prediction == "epsilon":
        report.approx("model.prediction", "(sd-scripts' default)", "epsilon", "noise prediction is what sd-scripts "
                      "trains unless told otherwise; imported back, it reads as auto")
    if resolved.zero_terminal_snr:
        pairs.append(("zero_terminal_snr", True))
        report.map("model.zero_terminal_snr", "zero_terminal_snr")
    return pairs


def _model_and_network(config: Config, arch: str, report: MappingReport) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = [("pretrained_model_name_or_path", config.model.base)]
    report.map("model.base", "pretrained_model_name_or_path")
    if config.model.single_file_config:
        report.drop("model.single_file_config", config.model.single_file_config,
                    "sd-scripts reads single-file checkpoints without a separate config")
    if config.model.vae:
        pairs.append(("vae", config.model.vae))
        report.map("model.vae", "vae")
    if arch == "sd15":
        pairs.append(("clip_skip", config.model.clip_skip))
        report.map("model.clip_skip", "clip_skip")
    elif config.model.clip_skip != 1:
        report.drop("model.clip_skip", config.model.clip_skip, "SDXL always uses its penultimate layer (here and in "
                    "sd-scripts, which ignores clip_skip for SDXL)")
    pairs += _prediction_settings(config, report)
    module, args = network_settings(config)
    pairs += [("network_module", module), ("network_dim", config.network.dim),
              ("network_alpha", config.network.alpha)]
    if args:
        pairs.append(("network_args", args))
    if module != "lycoris.kohya":
        report.map("network.type", "network_module/network_args", config.network.type)
    report.map("network.dim", "network_dim")
    report.map("network.alpha", "network_alpha")
    if config.network.type in CONV_TYPES:
        report.map("network.conv_dim", "network_args conv_dim")
        report.map("network.conv_alpha", "network_args conv_alpha")
    else:
        for key in ("conv_dim", "conv_alpha"):
            report.drop(f"network.{key}", getattr(config.network, key),
                        f"not used by network.type = {config.network.type!r}, so not exported")
    if config.network.dora:
        report.map("network.dora", "network_args dora_wd=True wd_on_output=False")
    if config.network.weights:  # continue a LoRA file: sd-scripts' own two options
        pairs.append(("network_weights", config.network.weights))
        report.map("network.weights", "network_weights")
        if config.network.dim_from_weights:
            pairs.append(("dim_from_weights", True))
            report.map("network.dim_from_weights", "dim_from_weights")
    if module == "lycoris.kohya":
        report.note("sd-scripts needs `pip install lycoris-lora` for network_module = lycoris.kohya")
        if config.network.type in CONV_TYPES:
            report.approx("network.type", "network_module", config.network.type,
                          f"lycoris.kohya's default preset ('full') also adapts {LYCORIS_FULL_EXTRAS}, which "
                          "loratui leaves alone")
        else:
            report.map("network.type", f"network_module/network_args (preset={LYCORIS_ATTENTION_PRESET})",
                       config.network.type)
    return pairs


def _optimizer(config: Config, report: MappingReport) -> list[tuple[str, Any]]:
    opt = config.optimizer
    pairs: list[tuple[str, Any]] = [("optimizer_type", OPTIMIZER_TYPES[opt.name]),
                                    ("optimizer_args", optimizer_args(config)),
                                    ("learning_rate", opt.unet_lr), ("unet_lr", opt.unet_lr)]
    report.map("optimizer.name", "optimizer_type", opt.name)
    report.map("optimizer.weight_decay", "optimizer_args weight_decay")
    report.map("optimizer.unet_lr", "unet_lr")
    if opt.text_encoder_lr > 0:
        pairs.append(("text_encoder_lr", opt.text_encoder_lr))
        report.map("optimizer.text_encoder_lr", "text_encoder_lr")
    else:
        pairs.append(("network_train_unet_only", True))
        report.map("optimizer.text_encoder_lr", "network_train_unet_only", 0.0)
    pairs.append(("max_grad_norm", opt.max_grad_norm))
    report.map("optimizer.max_grad_norm", "max_grad_norm")
    if opt.name == "came":
        report.note("sd-scripts needs `pip install pytorch-optimizer` for pytorch_optimizer.CAME")
    if opt.name == "prodigy_plus":
        report.note("sd-scripts needs `pip install prodigy-plus-schedule-free schedulefree` for "
                    "prodigyplus.ProdigyPlusScheduleFree (optimizer names ending in ScheduleFree make it import "
                    "`schedulefree` first)")
    return pairs


def _scheduler(config: Config, scan: DatasetScan | None, arch: str, report: MappingReport) -> list[tuple[str, Any]]:
    sched = config.scheduler
    if sched.name in SCHEDULERS:
        name = "constant_with_warmup" if sched.name == "constant" and sched.warmup_steps else sched.name
        pairs: list[tuple[str, Any]] = [("lr_scheduler", name), ("lr_warmup_steps", sched.warmup_steps)]
        report.map("scheduler.name", "lr_scheduler", sched.name)
        report.map("scheduler.warmup_steps", "lr_warmup_steps")
        if sched.name == "cosine_with_restarts":
            pairs.append(("lr_scheduler_num_cycles", sched.restarts))
            report.map("scheduler.restarts", "lr_scheduler_num_cycles")
        else:
            report.drop("scheduler.restarts", sched.restarts, f"only used by cosine_with_restarts, not {sched.name}")
        if config.optimizer.name == "prodigy_plus" and sched.warmup_steps:
            report.approx("scheduler.warmup_steps", "lr_warmup_steps", sched.warmup_steps,
                          "sd-scripts gives schedule-free optimizers no schedule, so it ignores the warmup")
        return pairs
    # REX: sd-scripts has no REX of its own; pytorch-optimizer's class is the nearest it can load.
    pairs = [("lr_scheduler", "constant"), ("lr_scheduler_type", REX_SCHEDULER)]
    rex_args = [f"max_lr={config.optimizer.unet_lr!r}", "min_lr=0.0"]
    total = _planned_steps(config, scan, arch)
    if total is not None:
        rex_args.insert(0, f"total_steps={total}")
    pairs.append(("lr_scheduler_args", rex_args))
    report.note("sd-scripts needs `pip install pytorch-optimizer` for pytorch_optimizer.REXScheduler")
    report.approx("scheduler.name", "lr_scheduler_type", "rex",
                  f"{REX_SCHEDULER} sets every group to max_lr (the text encoder trains at the UNet's rate) and "
                  "starts at min_lr for one step" + ("" if total is not None else
                                                     "; the dataset could not be read here, so add "
                                                     "total_steps=<the run's steps> to lr_scheduler_args"))
    if sched.warmup_steps:
        report.drop("scheduler.warmup_steps", sched.warmup_steps,
                    "sd-scripts refuses warmup steps with a custom lr_scheduler_type")
    report.drop("scheduler.restarts", sched.restarts, "only used by cosine_with_restarts, not rex")
    return pairs


def batches_per_epoch(config: Config, scan: DatasetScan, arch: str, reg_images: list = ()) -> int:
    """Batches in one epoch of this dataset, bucketed exactly as the trainer buckets (upscaling included),
    of the images left to train on after the validation split, with the regularization images sd-scripts
    balances against them (``trainer.contract.reg_images``)."""
    resolution = effective_resolution(config, arch)
    images, _ = split_images(scan.images, config.training.validation_split, config.training.validation_seed)
    return plan_steps(images, resolution, max(1, config.training.batch_size), 1, config.dataset.buckets,
                      config.dataset.bucket_upscale, reg_images=list(reg_images)).batches_per_epoch


def _planned_steps(config: Config, scan: DatasetScan | None, arch: str) -> int | None:
    if scan is None or not scan.images:
        return None
    processes, accumulation = config.training.num_processes, config.training.gradient_accumulation_steps
    # sd-scripts steps a scheduler once per process per optimizer step (it scales its own schedules likewise),
    # and an epoch has ceil(batches per process / accumulation) optimizer steps.
    per_epoch = math.ceil(batches_per_epoch(config, scan, arch, reg_images_here(config)) / processes / accumulation)
    return per_epoch * config.training.epochs * processes


def _training(config: Config, report: MappingReport) -> list[tuple[str, Any]]:
    train = config.training
    pairs: list[tuple[str, Any]] = [("max_train_epochs", train.epochs), ("train_batch_size", train.batch_size),
                                    ("mixed_precision", train.mixed_precision), ("seed", train.seed),
                                    ("gradient_checkpointing", train.gradient_checkpointing)]
    for key, target in (("batch_size", "train_batch_size"),
                        ("mixed_precision", "mixed_precision"), ("seed", "seed"),
                        ("gradient_checkpointing", "gradient_checkpointing")):
        report.map(f"training.{key}", target)
    if train.min_snr_gamma > 0:
        pairs.append(("min_snr_gamma", train.min_snr_gamma))
    report.map("training.min_snr_gamma", "min_snr_gamma")
    if train.noise_offset > 0:
        pairs.append(("noise_offset", train.noise_offset))
    report.map("training.noise_offset", "noise_offset")
    pairs += _step_options(train, report)
    report.map("training.num_processes", "accelerate launch --num_processes")
    if train.fused_backward_pass:
        report.drop("training.fused_backward_pass", True, "sd-scripts' LoRA scripts have no fused backward pass (its "
                    "--fused_backward_pass is for full fine-tuning with sdxl_train.py and Adafactor only), so this "
                    "run needs more memory there")
    if train.compile:
        report.drop("training.compile", True, "speed only: the exported run is not compiled (sd-scripts' own "
                    "torch_compile option compiles differently; turn it on there if wanted)")
    report.approx("training.epochs", "max_train_epochs", train.epochs,
                  "sd-scripts counts steps with its own bucketing, so the step count (and so any step-based "
                  "schedule) can differ a little from loratui's exact count")
    pairs.append(("sdpa", True))
    return pairs


STEP_OPTION_NAMES = (
    ("gradient_accumulation_steps", "gradient_accumulation_steps"),
    ("multires_noise_iterations", "multires_noise_iterations"), ("multires_noise_discount", "multires_noise_discount"),
    ("ip_noise_gamma", "ip_noise_gamma"), ("min_timestep", "min_timestep"), ("max_timestep", "max_timestep"),
    ("debiased_estimation", "debiased_estimation_loss"), ("loss_type", "loss_type"), ("huber_c", "huber_c"),
    ("huber_schedule", "huber_schedule"),
)
"""Accumulation and the noise, timestep and loss options: (loratui's ``training.`` field, sd-scripts' name).
The meanings are sd-scripts' own, so each crosses as it is."""


def _step_options(train, report: MappingReport) -> list[tuple[str, Any]]:
    """The options of ``STEP_OPTION_NAMES`` that differ from the default (sd-scripts' default is the same)."""
    pairs = []
    for key, name in STEP_OPTION_NAMES:
        value = getattr(train, key)
        if value != FIELDS[f"training.{key}"].default:
            pairs.append((name, value))
        report.map(f"training.{key}", name)
    return pairs


def _output(config: Config, out_dir: Path, report: MappingReport) -> list[tuple[str, Any]]:
    out = config.output
    pairs: list[tuple[str, Any]] = [("output_dir", out.dir), ("output_name", out.name),
                                    ("save_model_as", "safetensors"),
                                    ("save_precision", SAVE_PRECISIONS[out.save_precision])]
    report.map("output.name", "output_name")
    report.map("output.save_precision", "save_precision")
    report.approx("output.dir", "output_dir", out.dir, "sd-scripts writes the LoRA and its checkpoints straight "
                  "into this folder, not into a run folder per run")
    if out.save_every_n_epochs:
        pairs.append(("save_every_n_epochs", out.save_every_n_epochs))
        report.map("output.save_every_n_epochs", "save_every_n_epochs")
        if out.keep_last_n_checkpoints:
            pairs.append(("save_last_n_epochs", out.keep_last_n_checkpoints))
        report.map("output.keep_last_n_checkpoints", "save_last_n_epochs")
    else:
        report.map("output.save_every_n_epochs", "save_every_n_epochs", 0, "not written: only the final LoRA")
        if out.save_every_n_steps:
            report.map("output.keep_last_n_checkpoints", "save_last_n_steps", out.keep_last_n_checkpoints,
                       "as the steps those checkpoints span")
        else:
            report.drop("output.keep_last_n_checkpoints", out.keep_last_n_checkpoints,
                        "nothing to keep: no checkpoints are saved during training")
    pairs += export_step_saves(config, report)
    if out.sample_every_n_epochs:
        pairs.append(("sample_every_n_epochs", out.sample_every_n_epochs))
        report.approx("output.sample_every_n_epochs", "sample_every_n_epochs", out.sample_every_n_epochs,
                      "sd-scripts draws each prompt once at LoRA strength 1.0 (loratui: 0.7 and 1.0) and draws no "
                      "extra set when training ends")
    else:
        report.map("output.sample_every_n_epochs", "sample_every_n_epochs", 0, "not written: no samples")
    pairs += export_samples(config, report)
    prompts = [p for p in out.sample_prompts if p.strip()]
    if prompts:
        pairs.append(("sample_prompts", str(out_dir / "sample_prompts.txt")))
        if len(prompts) == len(out.sample_prompts) and all(p == p.strip() for p in prompts):
            report.map("output.sample_prompts", "sample_prompts.txt")
        else:
            report.approx("output.sample_prompts", "sample_prompts.txt", out.sample_prompts,
                          "written without blank prompts and surrounding spaces (loratui skips and trims them too)")
        report.map("output.sample_steps", "sample_prompts.txt --s")
        report.map("output.sample_seed", "sample_prompts.txt --d")
    else:
        if out.sample_every_n_epochs or out.sample_every_n_steps:
            report.drop("output.sample_prompts", [], "loratui makes prompts from the trigger word and the captions' "
                        "common tags; sd-scripts draws nothing without a prompt file")
        for key in ("sample_steps", "sample_seed"):
            report.drop(f"output.{key}", getattr(out, key), "kept in the prompt file, and there are no prompts")
    return pairs


def _dataset(config: Config, scan: DatasetScan | None, arch: str,
             report: MappingReport) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """The dataset file's ``[general]`` pairs, and the caching pairs that belong in config.toml."""
    data = config.dataset
    resolution = effective_resolution(config, arch)
    general: list[tuple[str, Any]] = [("resolution", resolution), ("batch_size", config.training.batch_size),
                                      ("enable_bucket", data.buckets)]
    if not data.resolution:
        report.approx("dataset.resolution", "resolution", 0, f"written as {resolution}, the {arch} size "
                      f"(an import gives {resolution} back)")
    else:
        report.map("dataset.resolution", "resolution")
    if data.buckets:
        low, high = bucket_range(resolution)
        general += [("min_bucket_reso", low), ("max_bucket_reso", high), ("bucket_reso_steps", BUCKET_STEP),
                    ("bucket_no_upscale", not data.bucket_upscale)]
        report.map("dataset.bucket_upscale", "bucket_no_upscale", data.bucket_upscale, "inverted")
    else:
        report.drop("dataset.bucket_upscale", data.bucket_upscale, "only used with buckets")
    report.map("dataset.buckets", "enable_bucket")
    general += [("caption_extension", data.caption_extension), ("shuffle_caption", data.shuffle_captions),
                ("keep_tokens", data.keep_tokens), ("flip_aug", data.flip),
                ("caption_dropout_rate", data.caption_dropout)]
    for ours, theirs in (("caption_extension", "caption_extension"), ("shuffle_captions", "shuffle_caption"),
                         ("keep_tokens", "keep_tokens"), ("flip", "flip_aug"),
                         ("caption_dropout", "caption_dropout_rate"),
                         ("path", "datasets.subsets image_dir"), ("repeats", "datasets.subsets num_repeats")):
        report.map(f"dataset.{ours}", theirs)
    if data.trigger_word.strip():
        general.append(("class_tokens", data.trigger_word.strip()))
        report.approx("dataset.trigger_word", "class_tokens", data.trigger_word, _trigger_note(data.trigger_word, scan))
    caching: list[tuple[str, Any]] = [("cache_latents", True), ("cache_latents_to_disk", data.cache_latents_to_disk)]
    report.map("dataset.cache_latents_to_disk", "cache_latents_to_disk")
    if data.max_token_length != 75:  # sd-scripts' default (no value) is one 75-token window
        caching.append(("max_token_length", data.max_token_length))
    report.map("dataset.max_token_length", "max_token_length")
    if data.cache_dir:
        report.drop("dataset.cache_dir", data.cache_dir, "sd-scripts keeps its cache as .npz files beside the images")
    return general, caching


def _trigger_note(trigger: str, scan: DatasetScan | None) -> str:
    note = ("sd-scripts uses class_tokens only for images without a caption file; it never adds the trigger word "
            "to a caption that lacks it, as loratui does")
    if scan is not None and scan.images:
        from trainer.contract.dataset_scan import caption_stats

        stats = caption_stats(scan.images, trigger)
        lacking = len(stats.without_trigger) - len(stats.missing)
        if lacking > 0:
            note += f" ({lacking} of {stats.images} captions lack it)"
    dataset = shlex.quote(str(scan.root)) if scan is not None else "DATASET"
    return note + f"; `loratui dataset trigger {dataset} {shlex.quote(trigger.strip())}` writes it into the captions"


def _command(script: str, out_dir: Path, processes: int, source: Path | None) -> str:
    launch = ["accelerate", "launch", "--num_cpu_threads_per_process", "1"]
    if processes > 1:
        launch += ["--multi_gpu", "--num_processes", str(processes)]
    origin = f" of {source}" if source else ""
    return "\n".join([
        "#!/bin/sh",
        f"# The sd-scripts equivalent{origin}, written by `loratui export`.",
        "# Run it from the sd-scripts folder, or set SD_SCRIPTS to that folder. Settings sd-scripts has",
        "# no equivalent for are listed at the top of config.toml.",
        'cd "${SD_SCRIPTS:-.}" || exit 1',
        f"exec {' '.join(launch)} {script} \\",
        f"    --config_file {shlex.quote(str(out_dir / 'config.toml'))} \\",
        f"    --dataset_config {shlex.quote(str(out_dir / 'dataset.toml'))}",
    ]) + "\n"


def export_sdscripts(config: Config, out_dir: Path, source: Path | None = None) -> Export:
    """The sd-scripts files for ``config`` (paths in it already absolute), to be written into ``out_dir``."""
    out_dir = Path(out_dir).resolve()
    report = MappingReport()
    arch = _resolve_arch(config, report)
    report.drop("kind", config.kind, "loratui's advice only; sd-scripts has no such setting")
    scan = _read_dataset(config)
    script = SDXL_SCRIPT if arch == "sdxl" else SD15_SCRIPT
    export = Export(arch, script, report=report)

    general, caching = _dataset(config, scan, arch, report)
    validation_general, validation = export_validation(config, report)
    general += validation_general
    groups = [("model and network", _model_and_network(config, arch, report)),
              ("optimizer", _optimizer(config, report)),
              ("learning-rate schedule", _scheduler(config, scan, arch, report)),
              ("training", _training(config, report) + prior_loss_pairs(config) + caching
               + mask_training_pairs(config, report, scan) + validation),
              ("output and samples", _output(config, out_dir, report)),
              ("dataset", [("dataset_config", str(out_dir / "dataset.toml"))])]
    subsets = ([subset + mask_subset_pairs(config, subset[0][1]) for subset in _subsets(config, scan, report)]
               + export_reg_subsets(config, report))

    header = [f"sd-scripts config ({script} --config_file) written by `loratui export`"
              + (f" from {source}" if source else "") + ".",
              "Settings sd-scripts has no exact equivalent for:"]
    header += [f"  {entry.text()}" for entry in report.approximate + report.not_mapped] or ["  (none)"]
    header += [f"Note: {note}" for note in report.notes]
    export.files["config.toml"] = flat_toml(header, groups)
    export.files["dataset.toml"] = dataset_toml(["sd-scripts dataset config (--dataset_config) written by "
                                                 "`loratui export`."], general, subsets)
    if any(p.strip() for p in config.output.sample_prompts):
        export.files["sample_prompts.txt"] = prompt_file(config, arch)
    export.files["command.sh"] = _command(script, out_dir, config.training.num_processes, source)
    export.executable.add("command.sh")
    return export
