"""The training run, from a validated config to a saved LoRA.

Read top to bottom; the section comments are the table of contents:
device and precision → base model → network → latents → plan → optimizer → resume → train (with
requests and samples between steps) → save.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from pathlib import Path

import torch

from trainer import distributed
from trainer.accumulate import Accumulator, ends_update, group_size
from trainer.checkpoint import dataset_folders, new_session_id, prune_checkpoints, save_lora, training_metadata
from trainer.contract import faults
from trainer.contract.captions import shuffle_tags, tag_frequency
from trainer.contract.config.schema import Config, effective_resolution
from trainer.contract.control import take_requests
from trainer.contract.dataset_scan import DatasetScan
from trainer.contract.errors import NAN_ADVICE, TrainerError
from trainer.contract.events import EventWriter
from trainer.contract.plan import count_batches, epoch_batches, steps_per_epoch
from trainer.contract.reg_images import balance_reg_images
from trainer.contract.rundir import RunPaths
from trainer.contract.stop import StopRequest
from trainer.contract.validation_split import split_images
from trainer.data import CachedImage, cache_latents, default_cache_dir
from trainer.distributed import Ranks
from trainer.every_n_steps import StepSchedule
from trainer.long_prompts import WINDOWS
from trainer.masks import attach_masks, batch_mask
from trainer.models import (apply_prediction, caption_tokens, detect_arch, load_base_model, on_device,
                            place_for_training, sdxl_time_ids)
from trainer.networks import build_network, uses_lycoris
from trainer.optim import averaged_weights, build_scheduler, start_training
from trainer.packed_optimizer import build_packed_optimizer
from trainer.reg_batches import RegMarks
from trainer.sampling import Sampler, SampleSettings, choose_prompts
from trainer.speed import use_tf32
from trainer.start_weights import load_start_weights, network_shape
from trainer.state import Fingerprint, Progress, load_state, restore, save_state
from trainer.step import StepOptions, TextEmbeddingCache, choose_precision, diffusion_loss, encode_captions
from trainer.validation import Validator, split_cached

NAN_PATIENCE = 3
"""Consecutive non-finite losses tolerated (their updates are skipped) before the run stops."""


class _StoppedBeforeTraining(Exception):
    """A stop was requested while the run was still being prepared."""


def run_training(config: Config, paths: RunPaths, events: EventWriter, stop: StopRequest, scan: DatasetScan,
                 resume: bool = False, ranks: Ranks = Ranks(), reg_scan: DatasetScan | None = None) -> Path | None:
    """Train the LoRA the config describes; return the final file, or None when stopped early.

    With ``resume`` the run continues from the state saved with its last checkpoint. With several
    ``ranks`` (processes started by ``accelerate launch``) each trains on its share of every epoch
    and only rank 0 writes files; the others return None. ``reg_scan`` holds the regularization images
    of ``dataset.reg_path`` (``trainer.contract.reg_images``), when it is set.
    """
    started_at = time.time()
    seed = config.training.seed
    torch.manual_seed(seed)
    rng = random.Random(seed)

    # Device and precision.
    precision = choose_precision(config.training.mixed_precision)
    if ranks.distributed:
        precision = dataclasses.replace(precision, device=distributed.init_process_group(ranks))
    tf32 = use_tf32(precision)  # fp32 runs on a GPU: TF32 tensor cores (LORATUI_TF32=0 compares without)
    print(f"Precision: {precision.name} on {precision.device}; TF32 matmuls {'on' if tf32 else 'off'}.", flush=True)
    arch = config.model.arch if config.model.arch != "auto" else detect_arch(config.model.base)
    resolution = effective_resolution(config, arch)
    if arch == "sdxl" and config.model.clip_skip != 1:
        events.emit("warning", code="clip_skip_ignored", message="model.clip_skip applies to SD1.5 only; SDXL "
                    "always uses its penultimate text-encoder layer, so the setting is ignored.")

    # Base model.
    events.emit("status", phase="loading", message=f"Loading {arch} model from {config.model.base}")
    model = load_base_model(config.model.base, arch, precision.weight_dtype, precision.device,
                            config.model.single_file_config, config.model.vae)
    model.clip_skip = config.model.clip_skip if arch == "sd15" else 1
    model.max_token_length = config.dataset.max_token_length
    prediction = apply_prediction(model, config.model.base, config.model.prediction, config.model.zero_terminal_snr,
                                  config.model.single_file_config)
    events.emit("status", phase="loading", message=f"The model predicts {prediction.explanation}.")
    if config.training.gradient_checkpointing:
        model.unet.enable_gradient_checkpointing()
    # Seeded again: the network's random start must not depend on how many random numbers loading
    # drew (diffusers 0.35 initialises a single-file SDXL randomly before loading its weights; 0.42 does not).
    torch.manual_seed(seed)

    # Network.
    train_te = config.optimizer.text_encoder_lr > 0
    # network.weights: the network continues a LoRA file (with dim_from_weights, shaped as the file says).
    # A resumed run skips the file: the state loaded below holds the weights it had reached.
    config, file_ranks = network_shape(config)
    network = build_network(config.network, model.unet, model.text_encoders, arch, train_te, file_ranks)
    if config.network.weights and not resume:
        load_start_weights(network, config.network.weights, events)
    network = network.to(precision.device)
    network.attach()
    if config.training.compile:
        # Regional compilation: each transformer block is compiled on its own, in place (Module.compile),
        # after the adapters are attached so their forward is compiled into the block's. In place keeps
        # the module tree, and so every state-dict and LoRA name, unchanged for saving and sampling.
        # Compiling happens at a block's first call; dynamic=None lets torch make the sizes symbolic once
        # a second bucket size arrives instead of recompiling for every bucket. The blocks repeat, so
        # one compiled graph serves every block of a shape. LORATUI_COMPILE_BACKEND picks another
        # torch.compile backend (the CPU tests use aot_eager, which skips code generation).
        backend = os.environ.get("LORATUI_COMPILE_BACKEND", "inductor")
        for block in model.unet.modules():
            if type(block).__name__ == "BasicTransformerBlock":
                block.compile(backend=backend, dynamic=None)
    if ranks.distributed:
        distributed.broadcast_parameters(network.parameters())  # the same starting LoRA in every process
    model.unet.train()
    for encoder in model.text_encoders if train_te else []:
        encoder.train()
        if config.training.gradient_checkpointing:
            # Non-reentrant: transformers 4.x defaults to reentrant checkpointing, under which the frozen
            # embeddings feed the first checkpointed layer an input without grad and no text-encoder
            # LoRA weight gets a gradient at all (transformers 5 defaults to non-reentrant).
            encoder.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    # Latents: every image encoded once (or read from the disk cache); undecodable ones are skipped.
    def progress(done: int, total: int) -> None:
        events.emit("status", phase="caching", message="Encoding images", current=done, total=total)
        if stop.requested:  # encoding a large dataset takes minutes; a stop must not wait for it
            raise _StoppedBeforeTraining

    for path, why in scan.skipped:
        events.emit("warning", code="image_skipped", file=str(path), message=f"{path.name}: {why}; skipped.")
    cache_dir = Path(config.dataset.cache_dir or default_cache_dir()) / "latents" \
        if config.dataset.cache_latents_to_disk else None
    if ranks.distributed and not ranks.main:
        distributed.barrier()  # rank 0 encodes first, so the others read its disk cache instead of re-encoding
    # Validation split: the held-out images are encoded with the rest, then kept out of every batch.
    training_sources, held_out_sources = split_images(scan.images, config.training.validation_split,
                                                      config.training.validation_seed)
    # Regularization images join the epoch in the number sd-scripts picks (balanced to the training samples).
    reg_sources = balance_reg_images(sum(i.repeats for i in training_sources), reg_scan.images if reg_scan else [])
    try:
        images, report = cache_latents(training_sources + held_out_sources + reg_sources, model.vae, resolution,
                                       config.dataset.buckets, config.dataset.bucket_upscale, config.dataset.flip,
                                       cache_dir, progress)
    except _StoppedBeforeTraining:
        events.emit("stopped", step=0, epoch=0, reason=stop.reason, checkpoint=None)
        return None
    if ranks.distributed and ranks.main:
        distributed.barrier()
    for source, why in report.skipped:
        events.emit("warning", code="image_skipped", file=str(source.path), message=f"{source.path.name} {why}; skipped.")
    if report.cache_error:
        events.emit("warning", code="cache_unwritable", message=f"The latent cache cannot be written "
                    f"({report.cache_error}); training goes on without it.")
    images, held_out = split_cached(images, held_out_sources)
    marks = RegMarks.of([i.source for i in images], reg_sources, config.training.prior_loss_weight)
    if not marks.train_count:
        raise TrainerError("dataset", f"none of the images in {config.dataset.path} could be decoded.",
                           "Check the warnings above for each file's reason.")
    # Masked loss: each image's mask, cropped like the image and shrunk to its latents (never cached).
    if config.dataset.masked_loss:
        unmasked = attach_masks(images, scan.root, config.dataset.mask_path)
        if unmasked:
            events.emit("warning", code="images_without_mask", files=[str(p) for p in unmasked],
                        message=f"{len(unmasked)} of {len(images)} images have no mask and train as a whole "
                                f"(such as {unmasked[0].name}).")
    events.emit("status", phase="caching", message=f"Images ready: {report.encoded} encoded, "
                f"{report.reused} from the cache", current=len(scan.images) + len(reg_sources),
                total=len(scan.images) + len(reg_sources))

    # Captions: read once; the text encoders' outputs are cached when nothing can change them.
    captions = marks.captions([i.source for i in images], config.dataset.trigger_word)  # reg: own caption, no trigger
    _warn_long_captions(events, model, images, captions, config.dataset.max_token_length)
    text_cache = None
    if not train_te and not config.dataset.shuffle_captions:
        # Encoded on the GPU before the UNet arrives; then the encoders, which no step runs, wait on the
        # CPU (sampling fetches them), so they and the UNet never hold GPU memory together.
        with on_device(model.text_encoders, precision.device):
            text_cache = TextEmbeddingCache(model, captions, precision)
    place_for_training(model, precision.device, text_outputs_cached=text_cache is not None)

    # Plan: the exact step count, from the same buckets the batches are drawn from.
    buckets = [image.bucket for image in images]
    repeats = [image.source.repeats for image in images]
    batch_size = config.training.batch_size
    per_epoch = count_batches(buckets, repeats, batch_size)
    if ranks.distributed:
        # Each process takes every world-th batch; the remainder is dropped so all take the same number of steps.
        per_epoch //= ranks.world
        if per_epoch == 0:
            raise TrainerError("dataset", f"an epoch has fewer batches than the {ranks.world} training processes.",
                               "Lower training.batch_size or training.num_processes, or add images or repeats.")
    # Gradient accumulation: a step is an update of `accumulation` batches (trainer.accumulate).
    accumulation = config.training.gradient_accumulation_steps
    updates_per_epoch = steps_per_epoch(per_epoch, accumulation)
    total_steps = updates_per_epoch * config.training.epochs
    fingerprint = Fingerprint(total_steps, per_epoch, len(images), accumulation)
    tags = tag_frequency(marks.train_only(captions))
    folders = dataset_folders(Path(config.dataset.path), [(i.source.path, i.source.repeats, c) for i, c
                                                          in zip(marks.train_only(images), marks.train_only(captions))])
    # sd-scripts lists every reg folder with its own repeats and image count, used or not.
    reg_folders = dataset_folders(reg_scan.root, [(i.path, i.repeats, "") for i in reg_scan.images]) \
        if reg_scan is not None else {}
    metadata = training_metadata(config, arch, resolution=resolution, images=marks.train_count,
                                 total_steps=total_steps, batches_per_epoch=per_epoch, tag_frequency=tags,
                                 folders=folders,
                                 started_at=started_at, session_id=new_session_id(),
                                 prediction=prediction.prediction, zero_terminal_snr=prediction.zero_terminal_snr,
                                 precision=precision.name, validation_images=len(held_out), reg_folders=reg_folders)

    # Optimizer and schedule.
    fused = config.training.fused_backward_pass
    groups = network.parameter_groups(config.optimizer.unet_lr, config.optimizer.text_encoder_lr)
    trainable = [p for p in network.parameters() if p.requires_grad]
    # bitsandbytes waits for the GPU after every tensor it steps; packed, it steps one per group.
    optimizer, trainable = build_packed_optimizer(config.optimizer, groups, trainable, fused,
                                                  allowed=not uses_lycoris(config.network))
    scheduler = build_scheduler(config.scheduler, optimizer, total_steps)
    scaler = torch.amp.GradScaler("cuda") if precision.weight_dtype == torch.float16 else None
    average = (lambda: distributed.average_gradients(trainable, ranks.world)) if ranks.distributed else None
    update = Accumulator(optimizer, scaler, trainable, config.optimizer.max_grad_norm, fused, average)
    step_options = StepOptions.from_config(config.training)

    # Resume: the saved state replaces weights, optimizer, schedule, generators and position.
    done = Progress()
    if resume:
        state = load_state(paths.resume_state)
        done = restore(state, fingerprint=fingerprint, network=network, optimizer=optimizer, scheduler=scheduler,
                       scaler=scaler, rng=rng)
        metadata = state["metadata"]
    if ranks.distributed:
        # Different noise, timesteps and flips in each process (a resumed state carries rank 0's generators).
        torch.manual_seed(seed + 1_000_003 * ranks.rank + done.step)
        rng.seed(seed * 1_000_003 + ranks.rank * 7919 + done.step)
    start_training(optimizer)  # schedule-free optimizers: train on their training-form weights
    device_name = torch.cuda.get_device_name(precision.device) if precision.device.type == "cuda" else "cpu"
    events.emit("start", run=paths.root.name, arch=arch, device=device_name, precision=precision.name,
                resolution=resolution, **marks.start_fields(repeats),
                batches_per_epoch=per_epoch, epochs=config.training.epochs, batch_size=batch_size,
                total_steps=total_steps,
                gradient_accumulation_steps=accumulation,
                formula_steps=sum(repeats) * config.training.epochs / (batch_size * accumulation * ranks.world),
                trainable_parameters=sum(p.numel() for p in network.parameters()),
                text_encoder_outputs_cached=text_cache is not None, resumed_from_step=done.step if resume else None,
                prediction=prediction.prediction, zero_terminal_snr=prediction.zero_terminal_snr,
                validation_images=len(held_out))

    def checkpoint(path: Path, epoch: int, reason: str) -> Path | None:
        # The LoRA and the state that resumes after it are saved together (schedule-free: averaged weights).
        if not ranks.main:
            return None  # the weights are the same in every process; rank 0 saves them
        with averaged_weights(optimizer):
            saved = save_lora(path, network, metadata, epoch=epoch, step=done.step,
                              precision=config.output.save_precision)
            save_state(paths.resume_state, progress=done, fingerprint=fingerprint, network=network,
                       optimizer=optimizer, scheduler=scheduler, scaler=scaler, rng=rng, metadata=metadata)
        events.emit("checkpoint", epoch=epoch, step=done.step, path=str(saved), reason=reason)
        return saved

    def step_checkpoint_path() -> Path:
        return paths.step_checkpoint(config.output.name, done.step)

    def stop_here(epoch: int) -> None:
        # A requested stop: the LoRA and the state to resume from are saved, then the run says so.
        saved = checkpoint(step_checkpoint_path(), epoch, "stopped")
        events.emit("stopped", step=done.step, total_steps=total_steps, epoch=epoch,
                    reason=stop.reason or "another training process was stopped", checkpoint=str(saved))

    # Samples: the same prompts and seeds all run long, so each set can be compared with the last.
    out = config.output
    sampler = Sampler(model, network, precision, events, paths.samples, SampleSettings(
        prompts=choose_prompts(out.sample_prompts, config.dataset.trigger_word, tags),
        resolution=resolution, steps=out.sample_steps, seed=out.sample_seed, lora_name=out.name,
        negative_prompt=out.sample_negative_prompt, sampler=out.sample_sampler, cfg=out.sample_cfg))
    # Every-N-steps saves and samples (not doubling an epoch end's own at the same step).
    every_n = StepSchedule(out.save_every_n_steps, out.sample_every_n_steps, out.save_every_n_epochs,
                           out.sample_every_n_epochs, updates_per_epoch, config.training.epochs)

    # Validation loss on the held-out images (trainer.validation): every N steps and epochs, and at the end.
    validator = Validator(config, model, network, optimizer, precision, held_out, train_te, events)

    # Train.
    gpu_total = _gpu_total(precision.device)
    while done.epoch <= config.training.epochs:
        batches = epoch_batches(buckets, repeats, batch_size, random.Random(seed * 100003 + done.epoch))
        if ranks.distributed:
            batches = batches[ranks.rank::ranks.world][:per_epoch]  # same shuffle everywhere: disjoint shares
        for position, batch in enumerate(batches[done.batch_in_epoch:], done.batch_in_epoch):
            if position % accumulation == 0:
                tick, group_losses = time.perf_counter(), []  # a new update's first batch
            chosen = [images[i] for i in batch]
            texts = [_caption_for_step(captions[i], config, rng) for i in batch]
            picked = [image.pick(rng) for image in chosen]  # latents (mirrored or not) and their masks
            latents = torch.stack([p[0] for p in picked]).to(precision.device)
            mask = batch_mask([p[1] for p in picked], tuple(latents.shape[-2:]), precision.device)
            conditioning = text_cache.lookup(texts, precision.device) if text_cache is not None \
                else encode_captions(model, texts, precision, train_te)
            faults.at_step()  # nothing unless LORATUI_FAULT arms it (the fault suite's injected OOM)
            # Regularization: a reg image's loss counts prior_loss_weight times (sd-scripts' loss_weights).
            loss = diffusion_loss(model, latents, conditioning, _time_ids(chosen, arch, precision.device), precision,
                                  step_options, mask=mask, sample_weights=marks.weights(batch))
            loss_value = loss.item()
            if ranks.distributed:
                # All processes must agree whether to update (the update averages gradients with the others).
                loss_value = distributed.mean_over_processes(loss_value, precision.device)
            if math.isfinite(loss_value):
                update.add(loss, 1 / group_size(position, len(batches), accumulation))
            group_losses.append(loss_value)
            done.batch_in_epoch += 1
            if not ends_update(position, len(batches), accumulation):
                continue  # accumulating: the next batch's gradients join this update's
            loss_value = sum(group_losses) / len(group_losses)  # not finite if any batch's loss was not
            if math.isfinite(loss_value):
                done.nan_streak = 0
                update.finish()
            else:
                # Skip this update; a run that keeps diverging is stopped with advice.
                done.nan_streak += 1
                update.discard()
                if done.nan_streak >= NAN_PATIENCE:
                    raise TrainerError("nan", f"the loss was not a number for {done.nan_streak} steps in a row "
                                       f"(step {done.step + 1}).", NAN_ADVICE)
            scheduler.step()
            done.step += 1
            done.epoch_losses.append(loss_value)
            events.emit("step", step=done.step, total_steps=total_steps, epoch=done.epoch, loss=loss_value,
                        lr=scheduler.get_last_lr()[0], seconds_per_step=round(time.perf_counter() - tick, 5),
                        **_gpu_memory(precision.device, gpu_total))
            validator.after_step(done.step, done.epoch)
            # Requests from the app ("save now", "sample now") are files in the run folder. A save is
            # left to the stop below when both come at once: it saves the same file.
            actions = take_requests(paths.root) if ranks.main else []
            stopping = stop.requested
            if ranks.distributed:
                # A stop (a signal may reach one process first) and the app's requests are acted on by all
                # processes at the same step, or they would wait for each other forever.
                stopping, save, sample = distributed.any_over_processes(
                    [stop.requested, "save" in actions, "sample" in actions], precision.device)
                actions = [a for a, wanted in (("save", save), ("sample", sample)) if wanted]
            # output.save_every_n_steps / sample_every_n_steps: the same in every process, so no agreement needed.
            scheduled = [a for a, due in (("save", every_n.saves_at(done.step)),
                                          ("sample", every_n.samples_at(done.step))) if due and a not in actions]
            actions += scheduled
            for action in actions:
                if action == "save" and not stopping:
                    checkpoint(step_checkpoint_path(), done.epoch, "step" if action in scheduled else "requested")
                    if ranks.main:
                        prune_checkpoints(paths.checkpoints, out.name, out.keep_last_n_checkpoints, updates_per_epoch)
                elif action == "sample" and ranks.main:
                    with averaged_weights(optimizer):
                        sampler.write(f"s{done.step:06d}", epoch=done.epoch, step=done.step,
                                      cancelled=lambda: stop.requested)
            if "sample" in actions and not ranks.distributed:
                # A stop that came while the samples were drawn cut them short; it stops the run now.
                # (Several processes must agree on the step they stop at, so they wait for the next one.)
                stopping = stopping or stop.requested
            if stopping:
                stop_here(done.epoch)
                return None

        finite = [v for v in done.epoch_losses if math.isfinite(v)]
        events.emit("epoch", epoch=done.epoch, epochs=config.training.epochs, step=done.step,
                    mean_loss=sum(finite) / len(finite) if finite else None)
        validator.after_epoch(done.epoch, done.step)
        finished_epoch = done.epoch
        done.epoch, done.batch_in_epoch, done.epoch_losses = done.epoch + 1, 0, []
        if every_n.epoch_saves(finished_epoch):
            checkpoint(paths.checkpoint(config.output.name, finished_epoch), finished_epoch, "epoch")
            if ranks.main:
                prune_checkpoints(paths.checkpoints, out.name, out.keep_last_n_checkpoints, updates_per_epoch)
        if ranks.main and every_n.epoch_samples(finished_epoch):
            with averaged_weights(optimizer):
                sampler.write(f"e{finished_epoch:04d}", epoch=finished_epoch, step=done.step,
                              cancelled=lambda: stop.requested)
        if stop.requested and not ranks.distributed and finished_epoch < config.training.epochs:
            # Asked to stop while this epoch's checkpoint or samples were made: stop before the next epoch
            # starts. (After the last epoch the run is complete anyway: it saves its LoRA and ends.)
            stop_here(finished_epoch)
            return None

    # Save (a schedule-free optimizer's averaged weights are the result).
    if not ranks.main:
        return None
    with averaged_weights(optimizer):
        final = save_lora(paths.final_lora(config.output.name), network, metadata, epoch=config.training.epochs,
                          step=done.step, precision=config.output.save_precision)
    events.emit("done", step=done.step, total_steps=total_steps, output=str(final),
                seconds=round(time.time() - started_at, 2))
    return final


def _caption_for_step(caption: str, config: Config, rng: random.Random) -> str:
    """This step's version of a caption: dropped now and then, tags shuffled if asked."""
    if config.dataset.caption_dropout and rng.random() < config.dataset.caption_dropout:
        return ""
    if config.dataset.shuffle_captions:
        return shuffle_tags(caption, config.dataset.keep_tokens, rng)
    return caption


def _time_ids(chosen: list[CachedImage], arch: str, device: torch.device) -> torch.Tensor | None:
    """SDXL's size and crop conditioning for a batch (None for SD1.5)."""
    if arch != "sdxl":
        return None
    rows = [sdxl_time_ids(i.original_size, i.crop_top_left, (i.bucket[1], i.bucket[0])) for i in chosen]
    return torch.stack(rows).to(device)


def _gpu_total(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)


def _gpu_memory(device: torch.device, total: float | None) -> dict[str, float]:
    """Peak allocated and reserved, and total GPU memory in GiB (nothing on a CPU), for the monitor and the figures.

    Reserved is what PyTorch's caching allocator holds from the driver (allocated plus its cached,
    fragmented blocks): the figure that decides whether the next allocation fails.
    """
    if total is None:
        return {}
    return {"vram_peak_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 3),
            "vram_reserved_peak_gib": round(torch.cuda.max_memory_reserved(device) / 2**30, 3), "vram_total_gib": total}


def _warn_long_captions(events: EventWriter, model, images: list, captions: list[str], window: int) -> None:
    """One warning naming the captions whose tail the text encoders will never read (counted by the
    model's own tokenizer), with the window that would hold them all."""
    lengths = [caption_tokens(model, caption) for caption in captions]
    long = [(image.source.caption_path, n) for image, n in zip(images, lengths) if n > window]
    if not long:
        return
    longest = max(n for _, n in long)
    fits = next((w for w in WINDOWS if w >= longest), WINDOWS[-1])
    names = ", ".join(Path(path).name for path, _ in long[:3]) + (f" and {len(long) - 3} more" if len(long) > 3 else "")
    advice = f"set dataset.max_token_length = {fits}" if fits > window else "shorten them (225 is the longest window)"
    events.emit("warning", code="captions_cut", files=[str(path) for path, _ in long], longest=longest,
                message=f"{len(long)} caption{'s are' if len(long) != 1 else ' is'} longer than the {window}-token "
                        f"window (up to {longest} tokens: {names}); the tags past it never reach the model. To keep "
                        f"them, {advice}.")
