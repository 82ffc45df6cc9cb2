"""The validation loss: how well the LoRA denoises images it never trained on.

The held-out images (``training.validation_split``, chosen by
``trainer.contract.validation_split``) are encoded with the others but never batched. Every
validation measures each of them at the same fixed timesteps (several spread over the schedule,
as sd-scripts does), with noise drawn once from a generator seeded by
``training.validation_seed``. So two validations of the same weights give the same loss, and the
curve shows what the LoRA learned, not which timesteps the dice picked: per-step training loss
jumps tenfold with the random timestep.

A validation runs without gradients, in eval mode, with the optimizer's averaged weights where it
keeps them (schedule-free), and leaves the training generators untouched: a run with a split trains
exactly as a run on the training images alone would.
"""

from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch

from trainer.contract.captions import read_caption, with_trigger
from trainer.contract.config.schema import Config
from trainer.contract.events import EventWriter
from trainer.data import CachedImage
from trainer.models import BaseModel, encode_text, on_device, sdxl_time_ids, tokenize
from trainer.optim import averaged_weights
from trainer.losses import loss_elements, timestep_weights
from trainer.step import Precision, StepOptions

VALIDATION_TIMESTEPS = (10, 350, 500, 650, 990)
"""The timesteps every held-out image is measured at (out of 1000; scaled to a shorter schedule):
from nearly clean to nearly pure noise, so no part of the denoising goes unmeasured."""


def split_cached(images: list[CachedImage], held_out_sources: list) -> tuple[list[CachedImage], list[CachedImage]]:
    """The encoded images parted into (training, held out), each in its input order."""
    held = set(held_out_sources)
    return [i for i in images if i.source not in held], [i for i in images if i.source in held]


class Validator:
    """Measures the validation loss when it is due and reports it as a ``validation`` event.

    With no held-out images it does nothing at all.
    """

    def __init__(self, config: Config, model: BaseModel, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 precision: Precision, held_out: list[CachedImage], train_text_encoders: bool,
                 events: EventWriter) -> None:
        self.held_out = held_out
        self._model, self._network, self._optimizer = model, network, optimizer
        self._precision, self._events, self._train_te = precision, events, train_text_encoders
        training = config.training
        self._every_steps, self._every_epochs, self._epochs = (training.validate_every_n_steps,
                                                               training.validate_every_n_epochs, training.epochs)
        self._options = StepOptions.from_config(training)  # the training loss's type and weights
        self._batch = max(1, training.batch_size)
        self._last_step: int | None = None
        if not held_out:
            return
        schedule = model.noise_scheduler.config.num_train_timesteps
        self._timesteps = torch.tensor([min(schedule - 1, round(t * schedule / 1000)) for t in VALIDATION_TIMESTEPS])
        # One generator for all the noise, drawn once on the CPU: the same numbers on any device.
        generator = torch.Generator().manual_seed(training.validation_seed)
        self._noise = [torch.randn((len(self._timesteps), *image.latents.shape), generator=generator)
                       for image in held_out]
        self._captions = [with_trigger(read_caption(i.source.caption_path), config.dataset.trigger_word)
                          for i in held_out]
        self._conditioning = None
        if not train_text_encoders:
            # Frozen text encoders: each caption's conditioning never changes, so it is computed once.
            with on_device(model.text_encoders, precision.device), torch.no_grad(), precision.context():
                self._conditioning = [self._encode(caption, to_cpu=True) for caption in self._captions]

    def after_step(self, step: int, epoch: int) -> None:
        """Validate if ``training.validate_every_n_steps`` asks for it at this step."""
        if self._every_steps and step % self._every_steps == 0:
            self._validate(step, epoch)

    def after_epoch(self, epoch: int, step: int) -> None:
        """Validate at the end of every ``validate_every_n_epochs``-th epoch and of the last one."""
        if epoch % self._every_epochs == 0 or epoch == self._epochs:
            self._validate(step, epoch)

    def measure(self) -> float:
        """The mean loss over every held-out image and fixed timestep, with the network as it is now."""
        total, count = 0.0, 0
        with self._evaluating(), averaged_weights(self._optimizer):
            for index, image in enumerate(self.held_out):
                for start in range(0, len(self._timesteps), self._batch):
                    losses = self._losses(index, image, slice(start, start + self._batch))
                    total += float(losses.sum())
                    count += losses.numel()
        return total / count

    def _validate(self, step: int, epoch: int) -> None:
        if not self.held_out or self._last_step == step:
            return  # nothing held out, or these weights were measured already (end of epoch and every N steps)
        self._last_step = step
        loss = self.measure()
        self._events.emit("validation", step=step, epoch=epoch, loss=loss if math.isfinite(loss) else None,
                          images=len(self.held_out), timesteps=len(self._timesteps))

    def _encode(self, caption: str, to_cpu: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        hidden, pooled = encode_text(self._model, tokenize(self._model, [caption]))
        if to_cpu:
            return hidden.cpu(), pooled.cpu() if pooled is not None else None
        return hidden, pooled

    def _losses(self, index: int, image: CachedImage, part: slice) -> torch.Tensor:
        """Per-sample losses of one held-out image at some of the fixed timesteps."""
        model, precision, device = self._model, self._precision, self._precision.device
        timesteps = self._timesteps[part].to(device)
        count = len(timesteps)
        latents = image.latents.to(device).unsqueeze(0).expand(count, -1, -1, -1)
        noise = self._noise[index][part].to(device)
        noisy = model.noise_scheduler.add_noise(latents, noise, timesteps)
        if self._conditioning is not None:
            hidden, pooled = self._conditioning[index]
        else:
            with precision.context():
                hidden, pooled = self._encode(self._captions[index])
        extra = {}
        if model.arch == "sdxl":
            time_ids = sdxl_time_ids(image.original_size, image.crop_top_left, (image.bucket[1], image.bucket[0]))
            extra["added_cond_kwargs"] = {"text_embeds": pooled.to(device).expand(count, -1),
                                          "time_ids": time_ids.to(device).unsqueeze(0).expand(count, -1)}
        hidden = hidden.to(device).expand(count, -1, -1)
        with precision.context():
            prediction = model.unet(noisy.to(precision.weight_dtype), timesteps, hidden, **extra).sample
        target = model.noise_scheduler.get_velocity(latents, noise, timesteps) \
            if model.prediction_type == "v_prediction" else noise
        # The training loss's type (l2, huber, smooth_l1) and timestep weights (Min-SNR, debiased), so the
        # two curves share a scale. (Its noise options do not apply: the noise here is fixed on purpose.)
        losses = loss_elements(model, prediction, target, timesteps, self._options).mean(dim=(1, 2, 3))
        weights = timestep_weights(model, timesteps, self._options)
        return losses * weights if weights is not None else losses

    @contextlib.contextmanager
    def _evaluating(self) -> Iterator[None]:
        """Eval mode (no dropout), no gradients, the global generators untouched; every module's mode back after."""
        tops = [self._model.unet, *self._model.text_encoders, self._network]
        modes = [(m, m.training) for top in tops for m in top.modules()]
        cuda = [self._precision.device] if self._precision.device.type == "cuda" else []
        try:
            for top in tops:
                top.eval()
            with torch.no_grad(), torch.random.fork_rng(devices=cuda):
                yield
        finally:
            for module, training in modes:
                module.training = training
