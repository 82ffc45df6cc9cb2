"""The training run, from a validated config to a saved LoRA.

Read top to bottom; the section comments are the table of contents:
device and precision → base model → network → latents → plan → optimizer → train → save.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from trainer.captions import read_caption, shuffle_tags, tag_frequency, with_trigger
from trainer.checkpoint import new_session_id, prune_checkpoints, save_lora, training_metadata
from trainer.config import Config, effective_resolution
from trainer.data import CachedImage, cache_latents
from trainer.errors import NAN_ADVICE, TrainerError
from trainer.events import EventWriter
from trainer.models import BaseModel, detect_arch, encode_text, load_base_model, sdxl_time_ids, tokenize
from trainer.networks.lora import LoRANetwork, NetworkSpec
from trainer.optim import build_optimizer, build_scheduler
from trainer.plan import DatasetScan, count_batches, epoch_batches
from trainer.rundir import RunPaths

NAN_PATIENCE = 3
"""Consecutive non-finite losses tolerated (their updates are skipped) before the run stops."""


@dataclass
class StopRequest:
    """Set from a signal handler; the loop checks it after every step."""

    requested: bool = False
    reason: str = ""


@dataclass(frozen=True)
class Precision:
    """How the run computes: the base weights' dtype and whether autocast is on."""

    device: torch.device
    weight_dtype: torch.dtype
    autocast: bool
    name: str


def choose_precision(requested: str) -> Precision:
    """fp32 on a CPU; the requested mixed precision on a GPU (the LoRA weights stay fp32)."""
    if not torch.cuda.is_available():
        return Precision(torch.device("cpu"), torch.float32, False, "fp32")
    device = torch.device("cuda")
    if requested == "bf16" and torch.cuda.is_bf16_supported():
        return Precision(device, torch.bfloat16, True, "bf16")
    if requested in ("fp16", "bf16"):
        return Precision(device, torch.float16, True, "fp16")
    return Precision(device, torch.float32, False, "fp32")


def run_training(config: Config, paths: RunPaths, events: EventWriter, stop: StopRequest,
                 scan: DatasetScan) -> Path | None:
    """Train the LoRA the config describes; return the final file, or None when stopped early."""
    started_at = time.time()
    seed = config.training.seed
    torch.manual_seed(seed)
    rng = random.Random(seed)

    # Device and precision.
    precision = choose_precision(config.training.mixed_precision)
    arch = config.model.arch if config.model.arch != "auto" else detect_arch(config.model.base)
    resolution = effective_resolution(config, arch)

    # Base model.
    events.emit("status", phase="loading", message=f"Loading {arch} model from {config.model.base}")
    model = load_base_model(config.model.base, arch, precision.weight_dtype, precision.device)
    if config.training.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()

    # Network.
    train_te = config.optimizer.text_encoder_lr > 0
    spec = NetworkSpec(config.network.dim, config.network.alpha,
                       config.network.conv_dim if config.network.type == "locon" else 0,
                       config.network.conv_alpha)
    network = LoRANetwork(model.unet, model.text_encoders, arch, spec, train_te).to(precision.device)
    network.attach()
    model.unet.train()
    for encoder in model.text_encoders if train_te else []:
        encoder.train()
        if config.training.gradient_checkpointing:
            encoder.gradient_checkpointing_enable()

    # Latents: every image encoded once; undecodable ones are skipped with a warning.
    def progress(done: int, total: int) -> None:
        events.emit("status", phase="caching", message="Encoding images", current=done, total=total)
        if stop.requested:  # encoding a large dataset takes minutes; a stop must not wait for it
            raise _StoppedBeforeTraining

    def skipped(image, why: str) -> None:
        events.emit("warning", code="image_skipped", file=str(image.path), message=f"{image.path.name} {why}; skipped.")

    for path, why in scan.skipped:
        events.emit("warning", code="image_skipped", file=str(path), message=f"{path.name}: {why}; skipped.")
    try:
        images = cache_latents(scan.images, model.vae, resolution, config.dataset.buckets, config.dataset.flip,
                               seed, progress, skipped)
    except _StoppedBeforeTraining:
        events.emit("stopped", step=0, epoch=0, reason=stop.reason, checkpoint=None)
        return None
    if not images:
        raise TrainerError("dataset", f"none of the images in {config.dataset.path} could be decoded.",
                           "Check the warnings above for each file's reason.")
    model.vae.to("cpu")  # the VAE is not needed again; give its memory back to training

    # Plan: the exact step count, from the same buckets the batches are drawn from.
    buckets = [image.bucket for image in images]
    repeats = [image.source.repeats for image in images]
    batch_size = config.training.batch_size
    per_epoch = count_batches(buckets, repeats, batch_size)
    total_steps = per_epoch * config.training.epochs
    captions = [with_trigger(read_caption(i.source.caption_path), config.dataset.trigger_word) for i in images]
    metadata = training_metadata(config, arch, resolution=resolution, images=len(images), total_steps=total_steps,
                                 batches_per_epoch=per_epoch, tag_frequency=tag_frequency(captions),
                                 started_at=started_at, session_id=new_session_id())
    device_name = torch.cuda.get_device_name(precision.device) if precision.device.type == "cuda" else "cpu"
    events.emit("start", run=paths.root.name, arch=arch, device=device_name, precision=precision.name,
                resolution=resolution, images=len(images), samples_per_epoch=sum(repeats),
                batches_per_epoch=per_epoch, epochs=config.training.epochs, batch_size=batch_size,
                total_steps=total_steps, formula_steps=sum(repeats) * config.training.epochs / batch_size,
                trainable_parameters=sum(p.numel() for p in network.parameters()))

    # Optimizer and schedule.
    optimizer = build_optimizer(config.optimizer,
                                network.parameter_groups(config.optimizer.unet_lr, config.optimizer.text_encoder_lr))
    scheduler = build_scheduler(config.scheduler, optimizer, total_steps)
    scaler = torch.amp.GradScaler("cuda") if precision.weight_dtype == torch.float16 else None
    trainable = [p for p in network.parameters() if p.requires_grad]

    # Train.
    gpu_total = _gpu_total(precision.device)
    step, nan_streak = 0, 0
    for epoch in range(1, config.training.epochs + 1):
        epoch_losses = []
        for batch in epoch_batches(buckets, repeats, batch_size, random.Random(seed * 100003 + epoch)):
            tick = time.perf_counter()
            loss = _training_step(model, images, captions, batch, config, precision, rng, train_te)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                # Skip this update; a run that keeps diverging is stopped with advice.
                nan_streak += 1
                optimizer.zero_grad(set_to_none=True)
                if nan_streak >= NAN_PATIENCE:
                    raise TrainerError("nan", f"the loss was not a number for {nan_streak} steps in a row "
                                       f"(step {step + 1}).", NAN_ADVICE)
            else:
                nan_streak = 0
                _apply_update(loss, optimizer, scaler, trainable, config.optimizer.max_grad_norm)
            scheduler.step()
            step += 1
            epoch_losses.append(loss_value)
            events.emit("step", step=step, total_steps=total_steps, epoch=epoch, loss=loss_value,
                        lr=scheduler.get_last_lr()[0], seconds_per_step=round(time.perf_counter() - tick, 5),
                        **_gpu_memory(precision.device, gpu_total))
            if stop.requested:
                saved = save_lora(paths.checkpoints / f"{config.output.name}-step{step:06d}.safetensors",
                                  network, metadata, epoch=epoch, step=step, precision=config.output.save_precision)
                events.emit("checkpoint", epoch=epoch, step=step, path=str(saved))
                events.emit("stopped", step=step, total_steps=total_steps, epoch=epoch, reason=stop.reason,
                            checkpoint=str(saved))
                return None

        finite = [v for v in epoch_losses if math.isfinite(v)]
        events.emit("epoch", epoch=epoch, epochs=config.training.epochs, step=step,
                    mean_loss=sum(finite) / len(finite) if finite else None)
        every = config.output.save_every_n_epochs
        if every and epoch % every == 0 and epoch < config.training.epochs:
            saved = save_lora(paths.checkpoint(config.output.name, epoch), network, metadata, epoch=epoch, step=step,
                              precision=config.output.save_precision)
            prune_checkpoints(paths.checkpoints, config.output.name, config.output.keep_last_n_checkpoints)
            events.emit("checkpoint", epoch=epoch, step=step, path=str(saved))

    # Save.
    final = save_lora(paths.final_lora(config.output.name), network, metadata, epoch=config.training.epochs,
                      step=step, precision=config.output.save_precision)
    events.emit("done", step=step, total_steps=total_steps, output=str(final),
                seconds=round(time.time() - started_at, 2))
    return final


class _StoppedBeforeTraining(Exception):
    """A stop was requested while the run was still being prepared."""


def _gpu_total(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)


def _gpu_memory(device: torch.device, total: float | None) -> dict[str, float]:
    """Peak and total GPU memory in GiB (nothing on a CPU), for the monitor and the figures."""
    if total is None:
        return {}
    return {"vram_peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 3), "vram_total_gib": total}


def _training_step(model: BaseModel, images: list[CachedImage], captions: list[str], batch: list[int],
                   config: Config, precision: Precision, rng: random.Random, train_te: bool) -> torch.Tensor:
    """One forward pass: noise the latents, predict, and return the loss.

    ``captions`` are read once before training (trigger word in place); only the shuffle
    happens here, so no file is read inside the loop.
    """
    device = precision.device
    chosen = [images[i] for i in batch]
    latents = torch.stack([image.pick_latents(rng) for image in chosen]).to(device)
    texts = [captions[i] for i in batch]
    if config.dataset.shuffle_captions:
        texts = [shuffle_tags(text, config.dataset.keep_tokens, rng) for text in texts]
    autocast = torch.autocast(device.type, dtype=precision.weight_dtype) if precision.autocast \
        else contextlib.nullcontext()
    with autocast:
        with contextlib.nullcontext() if train_te else torch.no_grad():
            hidden, pooled = encode_text(model, tokenize(model, texts))
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, model.noise_scheduler.config.num_train_timesteps, (len(batch),),
                                  device=device)
        noisy = model.noise_scheduler.add_noise(latents, noise, timesteps)
        extra = {}
        if model.arch == "sdxl":
            time_ids = torch.stack([sdxl_time_ids(i.original_size, i.crop_top_left, (i.bucket[1], i.bucket[0]))
                                    for i in chosen]).to(device)
            extra["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids}
        prediction = model.unet(noisy.to(precision.weight_dtype), timesteps, hidden, **extra).sample
    if model.prediction_type == "v_prediction":
        target = model.noise_scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    return F.mse_loss(prediction.float(), target.float())


def _apply_update(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler, params: list,
                  max_grad_norm: float) -> None:
    """Backward pass, gradient clipping and the optimizer step (with fp16 loss scaling if needed)."""
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        if max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
