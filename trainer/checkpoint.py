"""Saving LoRA files: atomic writes and the ``ss_*`` metadata other tools read.

A1111's and ComfyUI's LoRA browsers, civitai and sd-scripts' own tools read the metadata keys
sd-scripts writes; all values are strings, as there. Files are written to a temporary name,
flushed and renamed, so a crash mid-save never replaces a good file with a torn one.
"""

from __future__ import annotations

import glob
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch
from safetensors.torch import save_file

from trainer.contract.captions import split_tags
from trainer.contract.config.schema import Config
from trainer.contract.fileio import atomic_write
from trainer.networks import uses_lycoris
from trainer.networks.lora import LoRANetwork
from trainer.networks.lycoris_net import ALGORITHMS, CONV_TYPES, LycorisAdapterNetwork
from trainer.optim import optimizer_description

SAVE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
BASE_MODEL_VERSIONS = {"sd15": "sd_v1", "sdxl": "sdxl_base_v1-0"}
"""sd-scripts' ss_base_model_version values."""
MODELSPEC_ARCHITECTURES = {"sd15": "stable-diffusion-v1/lora", "sdxl": "stable-diffusion-xl-v1-base/lora"}
MODELSPEC_IMPLEMENTATIONS = {"sd15": "diffusers", "sdxl": "https://github.com/Stability-AI/generative-models"}
"""The SAI model-spec values sd-scripts (library/sai_model_spec.py) writes for SD1.5 and SDXL LoRAs."""
MIXED_PRECISION_NAMES = {"fp32": "no", "fp16": "fp16", "bf16": "bf16"}
"""``ss_mixed_precision`` for the precision a run really computed in, in sd-scripts' words (``no`` is plain fp32)."""


@dataclass
class DatasetFolder:
    """One folder of training images as sd-scripts' metadata lists it (``ss_dataset_dirs``)."""

    repeats: int
    images: int = 0
    tags: dict[str, int] = field(default_factory=dict)
    """How many captions in the folder carry each tag (``ss_tag_frequency``)."""


def dataset_folders(root: Path, images: list[tuple[Path, int, str]]) -> dict[str, DatasetFolder]:
    """Images (path, repeats, caption) grouped as sd-scripts groups them: one entry per folder.

    sd-scripts names each entry after its image folder (``10_mychar``), with that folder's own
    repeats, so a LoRA browser shows which folder taught which tags; images directly in the
    dataset folder are listed under its name.
    """
    folders: dict[str, DatasetFolder] = {}
    for path, repeats, caption in images:
        name = Path(path).parent.name if Path(path).parent != Path(root) else Path(root).name
        folder = folders.setdefault(name, DatasetFolder(repeats))
        folder.images += 1
        for tag in set(split_tags(caption)):
            folder.tags[tag] = folder.tags.get(tag, 0) + 1
    for folder in folders.values():
        folder.tags = dict(sorted(folder.tags.items(), key=lambda item: (-item[1], item[0])))
    return folders


def training_metadata(config: Config, arch: str, *, resolution: int, images: int, total_steps: int,
                      batches_per_epoch: int, tag_frequency: dict[str, int], started_at: float,
                      session_id: str, folders: dict[str, DatasetFolder] | None = None,
                      prediction: str = "epsilon", zero_terminal_snr: bool = False,
                      precision: str | None = None, validation_images: int = 0,
                      reg_folders: dict[str, DatasetFolder] | None = None) -> dict[str, str]:
    """The metadata that stays the same through a run (per-save keys are added by ``save_lora``).

    Besides sd-scripts' ``ss_*`` keys it carries the SAI model-spec keys sd-scripts writes
    (``modelspec.*``: architecture, implementation, title, resolution, prediction type), which
    UIs and model sites read; ``prediction`` and ``zero_terminal_snr`` are what the run trained with.

    ``precision`` is the precision the run really computes in (``fp32``, ``fp16`` or ``bf16``, from
    ``trainer.step.choose_precision``): a CPU trains in fp32 whatever ``training.mixed_precision`` asks,
    and the file must say so. Without it the config's setting is written as it is.

    ``folders`` (from ``dataset_folders``) lists the images per folder as sd-scripts does; without
    it the whole dataset is one entry with ``images`` images, ``dataset.repeats`` each, and the
    tags of ``tag_frequency``. ``validation_images`` is how many images the validation split held out.
    ``reg_folders`` lists the regularization folders the same way (their own
    repeats and every image in them, as sd-scripts counts ``ss_num_reg_images`` before balancing them).
    """
    network_module, network_args = _network_module_and_args(config)
    if folders is None:
        folders = {Path(config.dataset.path).name: DatasetFolder(config.dataset.repeats, images, tag_frequency)}
    meta = {
        "ss_session_id": session_id,
        "ss_training_started_at": str(started_at),
        "ss_output_name": config.output.name,
        "ss_learning_rate": str(config.optimizer.unet_lr),
        "ss_unet_lr": str(config.optimizer.unet_lr),
        "ss_text_encoder_lr": str(config.optimizer.text_encoder_lr),
        # As sd-scripts counts it: every image once per repeat.
        "ss_num_train_images": str(sum(f.images * f.repeats for f in folders.values())),
        "ss_num_batches_per_epoch": str(batches_per_epoch),
        "ss_num_epochs": str(config.training.epochs),
        "ss_max_train_steps": str(total_steps),
        "ss_batch_size_per_device": str(config.training.batch_size),
        # Images per update, as sd-scripts counts it: batch × processes × accumulation.
        "ss_total_batch_size": str(config.training.batch_size * config.training.num_processes
                                   * config.training.gradient_accumulation_steps),
        "ss_gradient_accumulation_steps": str(config.training.gradient_accumulation_steps),
        "ss_gradient_checkpointing": str(config.training.gradient_checkpointing),
        "ss_lr_warmup_steps": str(config.scheduler.warmup_steps),
        "ss_lr_scheduler": config.scheduler.name,
        "ss_network_module": network_module,
        "ss_network_dim": str(config.network.dim),
        "ss_network_alpha": str(config.network.alpha),
        "ss_network_args": json.dumps(network_args),
        "ss_network_dropout": "None",
        "ss_mixed_precision": MIXED_PRECISION_NAMES.get(precision, precision) if precision
        else config.training.mixed_precision,
        "ss_full_fp16": "False",
        "ss_v2": "False",
        "ss_base_model_version": BASE_MODEL_VERSIONS[arch],
        "ss_sd_model_name": Path(config.model.base).name or config.model.base,
        "ss_clip_skip": "None" if arch == "sdxl" else str(config.model.clip_skip),
        # sd-scripts writes its argument as given: None for one window, else 150 or 225.
        "ss_max_token_length": str(config.dataset.max_token_length) if config.dataset.max_token_length != 75 else "None",
        "ss_cache_latents": "True",
        "ss_seed": str(config.training.seed),
        # sd-scripts writes "None" for a feature that is off, the value when it is on.
        "ss_noise_offset": str(config.training.noise_offset) if config.training.noise_offset else "None",
        "ss_optimizer": optimizer_description(config.optimizer),
        "ss_max_grad_norm": str(config.optimizer.max_grad_norm),
        "ss_resolution": str((resolution, resolution)),
        "ss_enable_bucket": str(config.dataset.buckets),
        "ss_bucket_no_upscale": str(not config.dataset.bucket_upscale),
        "ss_flip_aug": str(config.dataset.flip),
        "ss_color_aug": "False",
        "ss_random_crop": "False",
        "ss_shuffle_caption": str(config.dataset.shuffle_captions),
        "ss_keep_tokens": str(config.dataset.keep_tokens),
        "ss_caption_dropout_rate": str(config.dataset.caption_dropout),
        "ss_prior_loss_weight": str(config.training.prior_loss_weight),
        "ss_min_snr_gamma": str(config.training.min_snr_gamma) if config.training.min_snr_gamma else "None",
        # Validation, as sd-scripts writes it; every held-out image is measured, which its None (no limit) means.
        "ss_validation_split": str(config.training.validation_split),
        "ss_validation_seed": str(config.training.validation_seed),
        "ss_validate_every_n_steps": str(config.training.validate_every_n_steps or None),
        "ss_validate_every_n_epochs": str(config.training.validate_every_n_epochs),
        "ss_num_validation_images": str(validation_images),
        "ss_max_validation_steps": "None",
        **_noise_and_loss_metadata(config.training),
        "ss_training_comment": f"trained with loratui, trigger word: {config.dataset.trigger_word or 'none'}",
        "ss_dataset_dirs": json.dumps({name: {"n_repeats": f.repeats, "img_count": f.images}
                                       for name, f in folders.items()}),
        "ss_tag_frequency": json.dumps({name: f.tags for name, f in folders.items()}, ensure_ascii=False),
        "ss_zero_terminal_snr": str(zero_terminal_snr),
        # Regularization images, as sd-scripts counts them: with their folders' repeats, before balancing.
        "ss_num_reg_images": str(sum(f.images * f.repeats for f in (reg_folders or {}).values())),
        "ss_reg_dataset_dirs": json.dumps({name: {"n_repeats": f.repeats, "img_count": f.images}
                                           for name, f in (reg_folders or {}).items()}),
        "modelspec.sai_model_spec": "1.0.1",
        "modelspec.architecture": MODELSPEC_ARCHITECTURES[arch],
        "modelspec.implementation": MODELSPEC_IMPLEMENTATIONS[arch],
        "modelspec.title": config.output.name,
        "modelspec.resolution": f"{resolution}x{resolution}",
        "modelspec.prediction_type": "v" if prediction == "v_prediction" else "epsilon",
    }
    if config.model.vae:
        meta["ss_vae_name"] = Path(config.model.vae).name  # as sd-scripts, only when a VAE is given
    if config.network.weights:
        # sd-scripts records nothing of its network_weights; the file's name says what this LoRA continued.
        meta["loratui_network_weights"] = Path(config.network.weights).name
    if arch == "sd15" and config.model.clip_skip > 1:
        meta["modelspec.encoder_layer"] = str(config.model.clip_skip)  # as sd-scripts, only when clip skip is set
    return meta


def _noise_and_loss_metadata(training) -> dict[str, str]:
    """The noise and loss options as sd-scripts writes them: "None" for a noise option that is off,
    the loss type and its huber settings always (sd-scripts writes them even for l2)."""
    return {
        "ss_multires_noise_iterations": str(training.multires_noise_iterations)
        if training.multires_noise_iterations else "None",
        "ss_multires_noise_discount": str(training.multires_noise_discount),
        "ss_ip_noise_gamma": str(training.ip_noise_gamma) if training.ip_noise_gamma else "None",
        "ss_debiased_estimation": str(training.debiased_estimation),
        "ss_loss_type": training.loss_type,
        "ss_huber_schedule": training.huber_schedule,
        "ss_huber_c": str(training.huber_c),
    }


def _network_module_and_args(config: Config) -> tuple[str, dict[str, str]]:
    """``ss_network_module`` and ``ss_network_args`` as sd-scripts writes them for this network.

    LyCORIS files carry ``lycoris.kohya`` and the ``--network_args`` that trained them (all
    strings): ``algo``, the conv rank and alpha where convolutions are adapted, ``dora_wd`` and,
    with it, ``wd_on_output`` = ``False`` (the input-axis magnitudes the UIs apply exactly; LyCORIS
    reads the argument under that name). A1111's and ComfyUI's LoRA browsers show these.
    """
    network = config.network
    conv = {"conv_dim": str(network.conv_dim), "conv_alpha": str(network.conv_alpha)}
    if not uses_lycoris(network):
        return "networks.lora", conv if network.type == "locon" else {}
    args = {"algo": ALGORITHMS[network.type]}
    if network.type in CONV_TYPES:
        args.update(conv)
    if network.dora:
        args.update(dora_wd="True", wd_on_output="False")
    return "lycoris.kohya", args


def new_session_id() -> str:
    """A random id shared by every file one run saves (sd-scripts' ss_session_id)."""
    return str(uuid.uuid4().int % (2 ** 31))


def save_lora(path: Path, network: LoRANetwork | LycorisAdapterNetwork, metadata: dict[str, str], *, epoch: int, step: int,
              precision: str) -> Path:
    """Write the network's weights with metadata to ``path`` atomically; return the path."""
    tensors = network.kohya_state_dict(SAVE_DTYPES[precision])
    now = time.time()
    meta = dict(metadata, ss_epoch=str(epoch), ss_steps=str(step), ss_training_finished_at=str(now))
    meta["modelspec.date"] = datetime.fromtimestamp(int(now)).isoformat()  # sd-scripts' form: local time, no zone
    # safetensors picks the format from the file name; the temporary name must stay usable.
    atomic_write(Path(path), lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    return Path(path)


def prune_checkpoints(folder: Path, name: str, keep: int, steps_per_epoch: int = 1) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints of this run (0 keeps all); return the removed.

    Epoch checkpoints (``<name>-e0004``) and step ones (``<name>-step000120``: every N steps, asked for,
    or made by a stop) are one series, ordered by the training step each was saved at, so the newest
    are kept whichever kind they are. The end of epoch E is step E × ``steps_per_epoch``.
    """
    if keep <= 0:
        return []
    # The name is the user's: escaped, so a name such as "v[2]" or "a*" matches only its own files.
    prefix = glob.escape(name)
    files = [(int(p.stem[len(name) + 2:]) * steps_per_epoch, p) for p in folder.glob(f"{prefix}-e*.safetensors")
             if p.stem[len(name) + 2:].isdigit()]
    files += [(int(p.stem[len(name) + 5:]), p) for p in folder.glob(f"{prefix}-step*.safetensors")
              if p.stem[len(name) + 5:].isdigit()]
    # At one step, a step checkpoint is the later save (a stop right after an epoch's end).
    files.sort(key=lambda item: (item[0], "-step" in item[1].name[len(name):]))
    removed = [path for _, path in files[:-keep]]
    for old in removed:
        old.unlink(missing_ok=True)
    return removed
