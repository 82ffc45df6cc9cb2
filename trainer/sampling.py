"""Sample images from the LoRA being trained: the guide's "victory check" while the run goes on.

Each prompt is drawn at LoRA strength 0.7 and 1.0 with the same seed, so the two pictures differ
only by how strongly the LoRA acts: a LoRA that already breaks at 0.7 or only works at 1.0 shows
it long before the run ends. The images come from a diffusers pipeline assembled from the
components already in memory (nothing is loaded twice), with the configured sampler built from
the model's own noise schedule, as a user would sample the finished file. Each prompt may carry
sd-scripts' prompt-file options (``--n --l --s --w --h --d --ss``), which replace the run's sample
settings for that prompt (``trainer.contract.sample_prompts``).

Sampling must leave training exactly as it found it: the LoRA multiplier goes back to 1.0, every
module gets its train/eval mode back, the VAE and the text encoders return to where they were
parked, and the random generators training draws from are neither used nor advanced. A sample
that fails (out of memory at a large resolution, say) becomes a ``warning`` event and training
carries on.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainer.contract.events import EventWriter
from trainer.contract.fileio import atomic_write, atomic_write_text
from trainer.contract.sample_prompts import SamplePrompt, parse_prompt
from trainer.models import BaseModel, encode_text, on_device, tokenize
from trainer.networks.lora import LoRANetwork
from trainer.samplers import SAMPLER_LABELS, build_scheduler
from trainer.step import Precision

STRENGTHS = (0.7, 1.0)
"""LoRA strengths each prompt is drawn at: the guide's "works at strength 0.7–1.0"."""

GUIDANCE_SCALE = {"sd15": 7.5, "sdxl": 5.0}
"""Classifier-free guidance per architecture: the diffusers pipelines' own defaults."""

GUIDANCE_RESCALE_ZERO_TERMINAL_SNR = 0.7
"""Rescaled classifier-free guidance for zero-terminal-SNR models (the paper's φ = 0.7): without it
their samples come out over-exposed and washed out, which would make a good LoRA look broken."""

PROMPT_TAGS = 6
"""At most this many of the dataset's common tags follow the trigger word in the default prompt."""


def default_prompts(trigger: str, frequency: dict[str, int], tags: int = PROMPT_TAGS) -> list[str]:
    """The prompts used when none are configured.

    The trigger word with the tags most captions share shows whether the LoRA reproduces its
    training images; the trigger word alone shows whether the word by itself calls up the subject.
    Only tags in at least half as many captions as the most common one count: those describe the
    subject, while rarer ones (poses, backgrounds) would contradict each other in one prompt.
    """
    trigger = trigger.strip()
    most = max(frequency.values(), default=0)
    common = [tag for tag, count in frequency.items() if tag != trigger and 2 * count >= most][:tags]
    with_tags = ", ".join(([trigger] if trigger else []) + common)
    prompts = [with_tags] if with_tags else []
    if trigger and common:
        prompts.append(trigger)
    return prompts or [""]


def choose_prompts(configured: list[str], trigger: str, frequency: dict[str, int]) -> list[str]:
    """The configured prompts (blank ones dropped), or the defaults when there are none."""
    prompts = [p.strip() for p in configured if p.strip()]
    return prompts or default_prompts(trigger, frequency)


@dataclass(frozen=True)
class SampleSettings:
    """What every sample of a run shares; a prompt's own options (``--w``, ``--s``...) replace them for it."""

    prompts: list[str]
    """Prompt lines, each with its sd-scripts prompt-file options, if any."""
    resolution: int
    steps: int
    seed: int
    lora_name: str
    """Written into each PNG's parameters, as A1111 would write ``<lora:name:strength>``."""
    negative_prompt: str = ""
    sampler: str = "euler"
    cfg: float = 0.0
    """Classifier-free guidance scale; 0 is the pipeline's own (``GUIDANCE_SCALE``)."""

    def seed_of(self, index: int) -> int:
        """The seed of prompt ``index``: the same in every set, so sets can be compared image by image."""
        return (self.seed + index) % 2**32

    def drawings(self, arch: str) -> list[Drawing]:
        """Each prompt with every option settled: its own where it gives one, else the run's."""
        drawings = []
        for index, line in enumerate(self.prompts):
            own = parse_prompt(line)
            drawings.append(Drawing(
                own=own, prompt=own.text,
                negative=self.negative_prompt if own.negative is None else own.negative,
                cfg=(own.cfg if own.cfg is not None else self.cfg) or GUIDANCE_SCALE[arch],
                steps=own.steps or self.steps, width=own.width or self.resolution,
                height=own.height or self.resolution, seed=self.seed_of(index) if own.seed is None else own.seed,
                sampler=own.sampler or self.sampler))
        return drawings


@dataclass(frozen=True)
class Drawing:
    """One prompt as it is drawn: the prompt's own options (``own``) and everything settled."""

    own: SamplePrompt
    prompt: str
    negative: str
    cfg: float
    steps: int
    width: int
    height: int
    seed: int
    sampler: str

    def line(self) -> str:
        """A prompt-file line with every option written out: it redraws this picture in sd-scripts too."""
        return SamplePrompt(self.prompt, self.negative or None, self.cfg, self.steps, self.width, self.height,
                            self.seed, self.sampler).line()


class Sampler:
    """Draws, saves and announces the sample images of one run."""

    def __init__(self, model: BaseModel, network: LoRANetwork, precision: Precision, events: EventWriter,
                 folder: Path, settings: SampleSettings) -> None:
        self.model = model
        self.network = network
        self.precision = precision
        self.events = events
        self.folder = Path(folder)
        self.settings = settings

    def write(self, tag: str, *, epoch: int, step: int, cancelled: Callable[[], bool] = lambda: False) -> list[Path]:
        """Draw every prompt at every strength into ``samples/<tag>/``; return the files written.

        ``cancelled`` is asked before each image, so a stop request waits for one picture at most, not
        the whole set; the caller then saves and stops. A failure is reported as a warning and ends this
        set only; training is left intact.
        """
        settings = self.settings
        total = len(settings.prompts) * len(STRENGTHS)
        self.events.emit("status", phase="sampling", message=f"Drawing {total} sample images at step {step}",
                         current=0, total=total)
        folder = self.folder / tag
        written: list[Path] = []
        try:
            drawings = settings.drawings(self.model.arch)
            atomic_write_text(folder / "prompts.txt", self._prompts_text(drawings, epoch, step))
            with _sampling_mode(self.model, self.network, self.precision.device):
                pipe = build_pipeline(self.model, settings.sampler)
                schedulers = {settings.sampler: pipe.scheduler}
                for index, drawing in enumerate(drawings):
                    if drawing.sampler not in schedulers:
                        schedulers[drawing.sampler] = build_scheduler(drawing.sampler, self.model.noise_scheduler)
                    pipe.scheduler = schedulers[drawing.sampler]
                    for strength in STRENGTHS:
                        if cancelled():
                            return written
                        self.network.set_multiplier(strength)
                        image = generate(pipe, self.model, self.precision, drawing.prompt, seed=drawing.seed,
                                         width=drawing.width, height=drawing.height, steps=drawing.steps,
                                         negative=drawing.negative, cfg=drawing.cfg)
                        path = folder / f"p{index:02d}-w{strength:.1f}.png"
                        _save_png(path, image, self._parameters(drawing, strength))
                        written.append(path)
                        # Numbered, so the monitor can say "sample 2/4" while the next one is drawn.
                        self.events.emit("sample", epoch=epoch, step=step, path=str(path), prompt=drawing.prompt,
                                         options=drawing.own.options_text(), strength=strength, seed=drawing.seed,
                                         index=len(written), total=total)
        except Exception as exc:  # noqa: BLE001 - a sample is never worth the run: report it, train on
            traceback.print_exc()  # to trainer.log, for a bug report
            self.events.emit("warning", code="sample_failed", message=_failure_message(exc, step))
        return written

    def _prompts_text(self, drawings: list[Drawing], epoch: int, step: int) -> str:
        # Each line after its tab is a whole sd-scripts prompt line: every option written out.
        lines = [f"# epoch {epoch}, step {step}: LoRA strengths " + ", ".join(f"{w:.1f}" for w in STRENGTHS)]
        for index, drawing in enumerate(drawings):
            lines.append(f"p{index:02d}\t{drawing.line()}")
        return "\n".join(lines) + "\n"

    def _parameters(self, drawing: Drawing, strength: float) -> str:
        # A1111's "parameters" text chunk: image viewers and UIs that read it show how to redraw the image.
        negative = f"\nNegative prompt: {drawing.negative}" if drawing.negative else ""
        return (f"{drawing.prompt} <lora:{self.settings.lora_name}:{strength:.1f}>{negative}\n"
                f"Steps: {drawing.steps}, Sampler: {SAMPLER_LABELS[drawing.sampler]}, CFG scale: {drawing.cfg:g}, "
                f"Seed: {drawing.seed}, Size: {drawing.width}x{drawing.height}")


def guidance_rescale(model: BaseModel) -> float:
    """The CFG rescale the samples use: 0.7 for a zero-terminal-SNR schedule, else none."""
    return GUIDANCE_RESCALE_ZERO_TERMINAL_SNR if model.zero_terminal_snr else 0.0


def build_pipeline(model: BaseModel, sampler: str = "euler") -> Any:
    """A diffusers pipeline over the components in memory, with the named sampler and no safety checker."""
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    # The sampler keeps the model's schedule (betas, prediction type, zero terminal SNR); see trainer.samplers.
    scheduler = build_scheduler(sampler, model.noise_scheduler)
    if model.arch == "sdxl":
        pipe = StableDiffusionXLPipeline(vae=model.vae, text_encoder=model.text_encoders[0],
                                         text_encoder_2=model.text_encoders[1], tokenizer=model.tokenizers[0],
                                         tokenizer_2=model.tokenizers[1], unet=model.unet, scheduler=scheduler,
                                         add_watermarker=False)
    else:
        pipe = StableDiffusionPipeline(vae=model.vae, text_encoder=model.text_encoders[0],
                                       tokenizer=model.tokenizers[0], unet=model.unet, scheduler=scheduler,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe: Any, model: BaseModel, precision: Precision, prompt: str, *, seed: int, steps: int,
             resolution: int | None = None, width: int | None = None, height: int | None = None,
             negative: str = "", cfg: float = 0.0) -> Any:
    """One image (a PIL image) for ``prompt`` at the network's current multiplier.

    The size is ``width`` × ``height``, each ``resolution`` when not given. The prompt and the
    negative prompt are encoded by the same code training uses, so clip skip and SDXL's two encoders
    condition the UNet exactly as they did during training; with no negative prompt the empty one,
    which caption dropout trains as "no caption", is the unconditional side of guidance. ``cfg`` 0
    is the pipeline's own guidance scale.
    """
    width, height = width or resolution, height or resolution
    with precision.context():
        hidden, pooled = encode_text(model, tokenize(model, [prompt, negative]))
    conditioning = {"prompt_embeds": hidden[:1], "negative_prompt_embeds": hidden[1:]}
    if model.arch == "sdxl":
        conditioning.update(pooled_prompt_embeds=pooled[:1], negative_pooled_prompt_embeds=pooled[1:])
    # The noise comes from its own CPU generator: the same seed gives the same start on any machine,
    # and training's generators are not touched.
    generator = torch.Generator("cpu").manual_seed(seed)
    with precision.context():
        latents = pipe(**conditioning, height=height, width=width, num_inference_steps=steps,
                       guidance_scale=cfg or GUIDANCE_SCALE[model.arch], guidance_rescale=guidance_rescale(model),
                       generator=generator, output_type="latent").images
    return _decode(pipe, model.vae, latents)


def _decode(pipe: Any, vae: torch.nn.Module, latents: torch.Tensor) -> Any:
    # Decoded here rather than by the pipeline: outside autocast the VAE runs in its own fp32,
    # while inside it SDXL's VAE would be cast to fp16 and overflow into black images.
    latents = latents.to(vae.device, torch.float32) / vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None)
    if shift:
        latents = latents + shift
    image = vae.decode(latents, return_dict=False)[0]
    return pipe.image_processor.postprocess(image, output_type="pil")[0]


@contextlib.contextmanager
def _sampling_mode(model: BaseModel, network: LoRANetwork, device: torch.device) -> Iterator[None]:
    """Eval mode, no gradients, VAE and text encoders on the device, training's generators aside; undone after."""
    modules = [model.unet, *model.text_encoders, model.vae]
    # Every submodule's own flag is kept, not just the top one: the loop leaves frozen text
    # encoders in eval mode and a trained UNet in train mode, and both must come back so.
    modes = [(m, m.training) for top in modules for m in top.modules()]
    cuda = [device] if device.type == "cuda" else []
    try:
        for top in modules:
            top.eval()
        # The loop parks the VAE (and, when their outputs are cached, the text encoders) off the GPU;
        # the prompts and the pipeline compute on their modules' device.
        # fork_rng puts the global generators back afterwards, so even a library that draws from
        # them cannot shift the noise of the training steps that follow.
        with on_device([model.vae, *model.text_encoders], device), torch.no_grad(), \
                torch.random.fork_rng(devices=cuda):
            yield
    finally:
        network.set_multiplier(1.0)
        for module, training in modes:
            module.training = training
        if cuda:
            torch.cuda.empty_cache()  # give the sampler's memory back before training needs it


def _save_png(path: Path, image: Any, parameters: str) -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", parameters)
    # The format is named because the temporary file's suffix is not .png.
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=info))


def _failure_message(exc: Exception, step: int) -> str:
    detail = f"{type(exc).__name__}: {exc}".splitlines()[0]
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower():
        return (f"The sample images at step {step} were skipped: the GPU ran out of memory while drawing them. "
                "Training goes on; to avoid this, draw smaller pictures (a prompt's --w and --h) or set "
                "output.sample_every_n_epochs and output.sample_every_n_steps to 0 and try the saved checkpoints in "
                "your usual UI instead.")
    return f"The sample images at step {step} were skipped ({detail}); training goes on. Details are in trainer.log."
