"""The training configuration: one typed schema, its defaults and its hard validation.

This module is part of the app↔trainer contract and imports nothing heavy. Every field carries
its documentation in its metadata, so the README's reference, the TOML comments and the
settings form all read the same words.

Defaults are the guide's proven character settings: 8 dim / 4 alpha, UNet 5e-4, text encoder
1e-4, cosine with 3 restarts, AdamW8bit, batch 4, 768 px for SD1.5 and 1024 px for SDXL.

Validation here is about *impossible* values (a batch of 0, an unknown optimizer). Advice
(a learning rate that is merely risky) belongs to the app's rules, not to this module.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterator

from trainer.contract.config.messages import finite_float, limit_text, number_text, quoted, suggest
from trainer.contract.config.cross_checks import cross_field_problems
from trainer.contract.config.names import (CONFIG_VERSION, SUPPORTED_NETWORKS, DORA_NETWORKS, SUPPORTED_OPTIMIZERS, SUPPORTED_SCHEDULERS, LR_FREE_OPTIMIZERS, SCHEDULE_FREE_OPTIMIZERS, FUSED_OPTIMIZERS, LR_FREE_MIN, CONV_NETWORKS, MAX_NAME_BYTES, Problem)  # noqa: F401 (re-exported)

def setting(default: Any, doc: str, *, choices: tuple | None = None, minimum: float | None = None,
            maximum: float | None = None, required: bool = False) -> Any:
    """Declare one config field with its documentation and its hard limits."""
    meta = {"doc": doc, "choices": choices, "minimum": minimum, "maximum": maximum, "required": required}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class ModelConfig:
    """The base model the LoRA is trained against."""

    base: str = setting("", "The base model: a single-file checkpoint (`.safetensors`, or `.ckpt` read as "
                        "plain tensors only), a diffusers folder, or a Hugging Face hub id such as "
                        "`stable-diffusion-v1-5/stable-diffusion-v1-5` (downloaded when the box has network). "
                        "Relative paths are read from the config file's folder.", required=True)
    arch: str = setting("auto", "`sd15` or `sdxl`; `auto` reads it from the model "
                        "(Pony and Illustrious are SDXL).", choices=("auto", "sd15", "sdxl"))
    single_file_config: str = setting("", "For a single-file checkpoint only: a diffusers folder or hub id that "
                                      "supplies the component configs and tokenizers (the weights come from the "
                                      "file). Empty: the official SD1.5 or SDXL base repository, whose small "
                                      "config files are fetched from the hub once.")
    vae: str = setting("", "A VAE to train and sample with instead of the model's own: a `.safetensors` file "
                       "(`.ckpt`/`.pt` read as plain tensors) or a diffusers VAE folder, made for the model's "
                       "architecture. Needed for checkpoints shared without a VAE. Empty: the model's own.")
    clip_skip: int = setting(1, "SD1.5 only: condition on the text encoder's N-th layer from the end; 2 suits "
                             "anime models descended from NovelAI. SDXL always uses its penultimate layer.",
                             minimum=1, maximum=4)
    prediction: str = setting("auto", "What the model predicts: `epsilon` (the noise; most models) or "
                              "`v_prediction` (NoobAI-XL v-pred and other v-pred models). `auto` reads it from a "
                              "folder's scheduler config or a single file's `v_pred` marker; a v-pred model trained "
                              "as epsilon gives a LoRA that draws noise.", choices=("auto", "epsilon", "v_prediction"))
    zero_terminal_snr: bool = setting(False, "Rescale the noise schedule so its last step is pure noise, as zero-"
                                      "terminal-SNR v-pred models were trained (`auto` turns it on for a model with "
                                      "the `ztsnr` marker). Only for v-prediction.")


@dataclass
class DatasetConfig:
    """The training images and how their captions are used."""

    path: str = setting("", "Folder of images with same-name caption files. Sub-folders named "
                        "`N_name` (kohya style) are repeated N times each.", required=True)
    trigger_word: str = setting("", "Put first in every caption that lacks it, so the LoRA "
                                "learns to answer to it. Empty: captions are used as they are.")
    repeats: int = setting(10, "How many times each image is seen per epoch, for images not in an "
                           "`N_name` folder (which sets its own).", minimum=1, maximum=1000)
    folder_name_repeats: bool = setting(True, "Images in a sub-folder named `N_name` repeat N times (kohya's "
                                        "convention). Off: every image repeats `repeats` times, whatever its "
                                        "folder is called, and the folders stay as they are.")
    resolution: int = setting(0, "Training size in pixels (the side of a square of the same area). "
                              "0 picks the guide's size: 768 for SD1.5, 1024 for SDXL. "
                              "A multiple of 64.", minimum=0, maximum=4096)
    caption_extension: str = setting(".txt", "Extension of the caption files beside the images.")
    shuffle_captions: bool = setting(True, "Shuffle the comma-separated tags of each caption "
                                     "every time it is used (the first `keep_tokens` stay put).")
    keep_tokens: int = setting(1, "How many leading tags never move when shuffling; 1 keeps the "
                               "trigger word first.", minimum=0, maximum=75)
    max_token_length: int = setting(75, "Caption tokens the text encoders read: 75 is one CLIP window; 150 and "
                                    "225 read longer tag lists in 75-token chunks, as sd-scripts does (tags past the "
                                    "window are dropped, and the trainer warns). 75, 150 or 225.", minimum=75,
                                    maximum=225)
    flip: bool = setting(False, "Also train on mirrored images. Leave off for subjects whose "
                         "left and right differ (a side parting, a logo, text).")
    buckets: bool = setting(True, "Group images by aspect ratio instead of cropping all to a "
                            "square (sides are multiples of 64).")
    bucket_upscale: bool = setting(False, "Scale images smaller than the training size up to it; off keeps "
                                   "them at their own size in a smaller bucket.")
    caption_dropout: float = setting(0.0, "Share of uses where an image is trained with an empty caption, "
                                     "which keeps the LoRA from leaning on the caption alone (kohya's "
                                     "caption_dropout_rate).", minimum=0.0, maximum=1.0)
    cache_latents_to_disk: bool = setting(True, "Keep each encoded image in a cache folder, so the next run on "
                                          "the same images, sizes and VAE skips encoding them.")
    cache_dir: str = setting("", "Folder for that cache; empty uses ~/.cache/loratui (or $XDG_CACHE_HOME).")
    reg_path: str = setting("", "Folder of regularization (class) images, laid out as kohya's reg_data_dir: "
                            "sub-folders named `N_class` repeat N times. They are trained beside your images with "
                            "their own captions (or the folder's class word when an image has none), weighted by "
                            "`training.prior_loss_weight`, to keep the base model's idea of the class intact. "
                            "Empty: no regularization.")
    masked_loss: bool = setting(False, "Train only where a mask is white: the loss of masked-out pixels (black) "
                                "counts for nothing, so a background the LoRA should not learn is left alone. The "
                                "mask is the image's alpha channel, or a same-name image in `mask_path`.")
    mask_path: str = setting("", "For `masked_loss`: a folder of mask images named as the training images (any "
                             "image format, white = train, black = ignore), in the same sub-folders. Empty: each "
                             "image's own alpha channel is its mask.")


@dataclass
class NetworkConfig:
    """The LoRA network injected into the model."""

    type: str = setting("lora", "`lora` adapts the attention layers: the proven choice for characters. "
                        "`locon` also adapts the convolutions, and with `ia3` is the usual pick for styles. "
                        "The LyCORIS types: `loha` (Hadamard product, more expressive at the same rank, for "
                        "styles and several concepts in one file) and `lokr` (Kronecker product, very small "
                        "files) adapt the convolutions too; `ia3` ((IA)³) only rescales the attention "
                        "layers' outputs: tiny files, good for styles, and it wants a much higher learning "
                        "rate; `boft` (orthogonal fine-tuning) keeps the base model's structure and is hard "
                        "to overtrain (its dim is a block size: at least 10 on SD1.5 and SDXL); `glora` is "
                        "a generalised LoRA. Every type but `lora` and `locon` saves a LyCORIS file, which "
                        "A1111 and ComfyUI apply and diffusers refuses; `ia3` files apply only in A1111 "
                        "(ComfyUI and Forge ignore them) and Forge skips `boft` files. The full table is in "
                        "docs/contract.md.", choices=SUPPORTED_NETWORKS)
    dim: int = setting(8, "LoRA rank: capacity and file size grow with it.", minimum=1, maximum=1024)
    alpha: float = setting(4.0, "Scales the LoRA's effect by alpha/dim; half of dim is the "
                           "guide's choice.", minimum=0.0, maximum=1024)
    conv_dim: int = setting(8, "Rank for the 3×3 convolution layers (`locon`, `loha` and `lokr`).",
                            minimum=1, maximum=1024)
    conv_alpha: float = setting(4.0, "Alpha for the 3×3 convolution layers (`locon`, `loha` and `lokr`).",
                                minimum=0.0, maximum=1024)
    dora: bool = setting(False, "DoRA: split each adapted weight into a direction and a magnitude and "
                         "train both; often better quality than the plain type at the same rank, somewhat "
                         "slower. Works with `lora`, `locon`, `loha` and `lokr`, and saves a LyCORIS file "
                         "with the magnitudes along each layer's input axis, the form A1111, ComfyUI and "
                         "Forge apply exactly as trained (diffusers drops them; LyCORIS' own file loader "
                         "expects the output axis and refuses the file).")
    weights: str = setting("", "Continue training from this LoRA file instead of a random start (kohya's "
                           "network_weights): it must be a file loratui can train further, of the same network type "
                           "and base architecture; its dim and alpha must match these settings unless "
                           "`dim_from_weights` is on. Not the same as resuming a stopped run (that is `loratui "
                           "resume`, which also restores the optimizer and position). Empty: a fresh LoRA.")
    dim_from_weights: bool = setting(False, "Take dim and alpha (and conv_dim and conv_alpha) from the `weights` "
                                     "file instead of these settings (kohya's dim_from_weights).")


@dataclass
class OptimizerConfig:
    """The optimizer and its learning rates."""

    name: str = setting("adamw8bit", "`adamw8bit` (bitsandbytes: the proven choice, moments in 8 bits); `adamw` "
                        "(full-precision moments, the reference); `came` (factored moments: less memory than AdamW, "
                        "reliable results; pairs with `rex`; a rate of about 2e-4); `adafactor` (factored moments, "
                        "the least memory, at the given rate); `prodigy` (finds its own step size: set the rates to "
                        "1.0); `prodigy_plus` (Prodigy with schedule-free weight averaging: rates 1.0 and a "
                        "`constant` schedule).", choices=SUPPORTED_OPTIMIZERS)
    unet_lr: float = setting(5e-4, "Learning rate of the UNet's LoRA layers. For `prodigy` and `prodigy_plus` a "
                             "multiplier on the step size they find: 1.0, or down to 0.1 to train more gently.",
                             minimum=0.0, maximum=1.0)
    text_encoder_lr: float = setting(1e-4, "Learning rate of the text encoder's LoRA layers; 0 "
                                     "leaves the text encoder untouched (and faster).",
                                     minimum=0.0, maximum=1.0)
    weight_decay: float = setting(0.01, "AdamW weight decay.", minimum=0.0, maximum=1.0)
    max_grad_norm: float = setting(1.0, "Gradients are clipped to this norm; 0 turns clipping off. With the fused "
                                   "backward pass each weight tensor is clipped on its own, as sd-scripts does.",
                                   minimum=0.0, maximum=1000.0)


@dataclass
class SchedulerConfig:
    """How the learning rate moves during training."""

    name: str = setting("cosine_with_restarts", "`constant` (the only choice for `prodigy_plus`, which averages "
                        "instead); `linear`; `cosine`; `cosine_with_restarts` (the proven choice); `rex` (falls fast "
                        "at first and slowly near the end, the rational REX curve; pairs with `came`). Warmup "
                        "applies to all of them.", choices=SUPPORTED_SCHEDULERS)
    restarts: int = setting(3, "Number of cosine cycles for `cosine_with_restarts` (kohya's "
                            "lr_scheduler_num_cycles; the guide's \"3 restarts\").", minimum=1, maximum=100)
    warmup_steps: int = setting(0, "Steps over which the learning rate rises from 0 at the start.",
                                minimum=0, maximum=100000)


@dataclass
class TrainingConfig:
    """The length of training and how each step is computed."""

    epochs: int = setting(10, "Passes over the dataset (each image seen `repeats` times per pass).",
                          minimum=1, maximum=10000)
    batch_size: int = setting(4, "Images per step.", minimum=1, maximum=256)
    mixed_precision: str = setting("bf16", "`bf16`, `fp16` or `no` on a GPU; the LoRA weights stay "
                                   "fp32. On a CPU training always runs in fp32.",
                                   choices=("no", "fp16", "bf16"))
    gradient_checkpointing: bool = setting(False, "Recompute activations in the backward pass: much less "
                                           "memory (SDXL 1024 px batch 4: 36 → 8 GiB), slower steps (a third "
                                           "or more; 1.9× on an H200, where launching kernels is the limit).")
    fused_backward_pass: bool = setting(False, "Update each weight as soon as its gradient is computed and free "
                                        "that gradient at once, so the gradients never all exist together. For a "
                                        "LoRA that saves only the LoRA's own gradients, 4 bytes per trained weight "
                                        "(about 85 MB for SDXL at dim 8), and costs one optimizer call per weight "
                                        "tensor, each clipped on its own. Needs batch size 1 and any optimizer but "
                                        "`prodigy`.")
    compile: bool = setting(False, "Compile the UNet's transformer blocks with torch.compile (each block on its "
                            "own, LoRA included), for faster steps on a GPU. Costs compile time when training "
                            "starts (tens of seconds to minutes), and again the first few times a new bucket size "
                            "or sampling reaches the blocks, until they are compiled for any size. Needs what "
                            "torch.compile needs: Triton on a GPU, a C++ compiler on a CPU (where compiling takes "
                            "minutes).")
    num_processes: int = setting(1, "Training processes, one per GPU, started with `accelerate launch` "
                                 "(data parallel: each trains on its share of the batches and they average "
                                 "their gradients). `training.batch_size` is per process, so each step "
                                 "trains on batch_size × num_processes images and an epoch has "
                                 "num_processes times fewer steps. 1 trains in one ordinary process.",
                                 minimum=1, maximum=64)
    seed: int = setting(42, "Seed for noise, shuffling and initial weights; the same seed and "
                        "data give the same run.", minimum=0, maximum=2**32 - 1)
    min_snr_gamma: float = setting(0.0, "Min-SNR loss weighting: caps the weight of easy, low-noise steps "
                                   "(5 is the usual value; 0 turns it off). Often steadies training.",
                                   minimum=0.0, maximum=100.0)
    noise_offset: float = setting(0.0, "Adds a per-channel shift to the noise so the LoRA can learn very dark "
                                  "and very bright images (0.0357 is a common value; 0 turns it off).",
                                  minimum=0.0, maximum=1.0)
    gradient_accumulation_steps: int = setting(1, "Add up the gradients of N batches before each update, so a "
                                               "batch that fits in memory acts like one N times larger: batch 2 "
                                               "with 2 steps trains like batch 4. Every step count (the plan, "
                                               "the monitor, the schedule) counts updates.", minimum=1, maximum=256)
    prior_loss_weight: float = setting(1.0, "Weight of the regularization images' loss against your images' "
                                       "(with `dataset.reg_path`); 1.0 weighs them the same.",
                                       minimum=0.0, maximum=10.0)
    validation_split: float = setting(0.0, "Share of the images held out of training to measure a validation "
                                      "loss on, which shows overtraining as it starts (that loss rises while "
                                      "the training loss still falls). 0 holds out nothing.",
                                      minimum=0.0, maximum=0.5)
    validation_seed: int = setting(42, "Seed that picks the held-out images and their noise, so every "
                                   "validation measures the same thing.", minimum=0, maximum=2**32 - 1)
    validate_every_n_steps: int = setting(0, "With a validation split: also measure every N steps (0: only at "
                                          "the end of each validated epoch).", minimum=0, maximum=100000)
    validate_every_n_epochs: int = setting(1, "With a validation split: measure at the end of every N epochs "
                                           "and at the end of training.", minimum=1, maximum=10000)
    multires_noise_iterations: int = setting(0, "Multi-resolution (pyramid) noise: add this many layers of "
                                             "coarser noise, which helps the LoRA learn overall brightness and "
                                             "colour (6 to 10 is usual; 0 turns it off).", minimum=0, maximum=20)
    multires_noise_discount: float = setting(0.3, "How much each coarser layer of multires noise is weakened "
                                             "(0.3 is kohya-colab's SDXL choice; 0.8 is strong).",
                                             minimum=0.0, maximum=1.0)
    ip_noise_gamma: float = setting(0.0, "Input perturbation: noise the image with slightly different noise than "
                                    "the model is asked to predict, which reduces exposure bias (0.1 is the usual "
                                    "value; 0 turns it off).", minimum=0.0, maximum=1.0)
    min_timestep: int = setting(0, "Lowest noise timestep trained (0 to 999).", minimum=0, maximum=999)
    max_timestep: int = setting(1000, "Train timesteps below this one (1 to 1000); with `min_timestep` it "
                                "narrows training to part of the noise range.", minimum=1, maximum=1000)
    debiased_estimation: bool = setting(False, "Debiased estimation loss: weight each step by 1/√SNR "
                                        "(1/(SNR + 1) for v-prediction): nearly clean, low-noise steps count less "
                                        "and noisy ones more (kohya's debiased_estimation_loss).")
    loss_type: str = setting("l2", "`l2` (mean squared error, the usual); `huber` or `smooth_l1`, which limit "
                             "the pull of outliers (bad images, odd captions) by `huber_c`.",
                             choices=("l2", "huber", "smooth_l1"))
    huber_c: float = setting(0.1, "For `huber` and `smooth_l1`: where the loss turns from squared to linear.",
                             minimum=0.0001, maximum=10.0)
    huber_schedule: str = setting("snr", "For `huber` and `smooth_l1`: how `huber_c` changes with the timestep: "
                                  "`constant`, `exponential` or `snr` (kohya's default).",
                                  choices=("constant", "exponential", "snr"))


@dataclass
class OutputConfig:
    """Where results go and how often they are saved."""

    name: str = setting("lora", "File name of the LoRA (without `.safetensors`); also names the "
                        "run folder.")
    dir: str = setting("runs", "Folder that holds the run folders; relative paths are read from the "
                       "config file's folder.")
    save_every_n_epochs: int = setting(1, "Save a checkpoint LoRA every N epochs; 0 saves only the "
                                       "final one.", minimum=0, maximum=10000)
    save_every_n_steps: int = setting(0, "Also save a checkpoint LoRA every N steps (0: off).",
                                      minimum=0, maximum=100000)
    keep_last_n_checkpoints: int = setting(3, "Keep only the newest N checkpoints; 0 keeps them all.",
                                           minimum=0, maximum=10000)
    save_precision: str = setting("fp16", "Precision of the saved weights: `fp16` (the usual, half "
                                  "the size), `bf16` or `fp32`.", choices=("fp16", "bf16", "fp32"))
    sample_every_n_epochs: int = setting(0, "Draw sample images every N epochs and once more when training "
                                         "ends, each prompt at LoRA strength 0.7 and 1.0 (the guide's test that "
                                         "the LoRA works across that range). 0: only when asked while the run goes on.",
                                         minimum=0, maximum=10000)
    sample_prompts: list = setting([], "Prompts for sample images, each with sd-scripts' prompt-file options "
                                   "if wanted: `--n` negative prompt, `--l` CFG scale, `--s` steps, `--w`/`--h` size (rounded down "
                                   "to a multiple of 64), `--d` seed, `--ss` sampler. Empty: the trigger word followed by the tags most captions share, "
                                   "and the trigger word on its own.")
    sample_steps: int = setting(20, "Denoising steps per sample image (a prompt's own `--s` replaces it); "
                                "fewer is faster and rougher.", minimum=1, maximum=150)
    sample_seed: int = setting(42, "Seed of the first prompt's image (the next prompt uses the next number), "
                               "kept for every sample of the run so they can be compared.",
                               minimum=0, maximum=2**32 - 1)
    sample_negative_prompt: str = setting("", "Negative prompt for every sample (a prompt's own `--n` replaces "
                                          "it). Pony and Illustrious samples need their usual negatives and "
                                          "quality tags to show the LoRA fairly.")
    sample_sampler: str = setting("euler", "Sampler for the sample images, in sd-scripts' names: `euler`, "
                                  "`euler_a`, `ddim`, `dpmsolver++` (DPM++ 2M), `heun`, `lms` or `pndm`.",
                                  choices=("euler", "euler_a", "ddim", "dpmsolver++", "heun", "lms", "pndm"))
    sample_cfg: float = setting(0.0, "Classifier-free guidance scale of the samples (a prompt's own `--l` "
                                "replaces it). 0: the pipeline's own, 7.5 for SD1.5 and 5 for SDXL.",
                                minimum=0.0, maximum=30.0)
    sample_every_n_steps: int = setting(0, "Also draw samples every N steps (0: off).", minimum=0, maximum=100000)
    tensorboard: bool = setting(False, "Also log the loss, learning rate, speed and sample images for "
                                "TensorBoard, in the run folder's `tensorboard/` (`tensorboard --logdir runs`). "
                                "Needs the tensorboard package (`pip install tensorboard`).")


@dataclass
class Config:
    """A whole training configuration, as stored in a TOML file."""

    config_version: int = setting(CONFIG_VERSION, "Schema version of this file.", minimum=1)
    kind: str = setting("character", "What is trained: `character`, `style` or `concept`; the app's "
                        "advice depends on it.", choices=("character", "style", "concept"))
    model: ModelConfig = field(default_factory=ModelConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


SECTIONS: tuple[str, ...] = ("model", "dataset", "network", "optimizer", "scheduler", "training", "output")
"""The config's sections, in the order files and documents show them."""


@dataclass(frozen=True)
class FieldInfo:
    """What the schema knows about one field, for documents and forms."""

    key: str
    """Dotted name, such as ``optimizer.unet_lr`` (top-level fields have no dot)."""
    type: type
    default: Any
    doc: str
    choices: tuple | None
    minimum: float | None
    maximum: float | None
    required: bool


def _field_type(f: dataclasses.Field) -> type:
    # Annotations are strings under `from __future__ import annotations`; resolve the few we use.
    names = {"str": str, "int": int, "float": float, "bool": bool, "list": list}
    return names[f.type] if isinstance(f.type, str) else f.type


def section_type(section: str) -> type:
    """The dataclass of a config section, such as ``OptimizerConfig`` for ``optimizer``."""
    (f,) = [f for f in dataclasses.fields(Config) if f.name == section and f.name in SECTIONS]
    return f.default_factory


def iter_fields() -> Iterator[FieldInfo]:
    """Every scalar field of the schema, top-level fields first, then section by section."""
    for f in dataclasses.fields(Config):
        if f.name not in SECTIONS:
            yield _info(f.name, f)
    for section in SECTIONS:
        for f in dataclasses.fields(section_type(section)):
            yield _info(f"{section}.{f.name}", f)


def _info(key: str, f: dataclasses.Field) -> FieldInfo:
    meta = f.metadata
    default = f.default_factory() if f.default is dataclasses.MISSING else f.default
    return FieldInfo(key, _field_type(f), default, meta["doc"], meta["choices"],
                     meta["minimum"], meta["maximum"], meta["required"])


FIELDS: dict[str, FieldInfo] = {info.key: info for info in iter_fields()}
"""Every field by dotted name."""


def get_value(config: Config, key: str) -> Any:
    """Read a field by its dotted name."""
    obj: Any = config
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def with_value(config: Config, key: str, value: Any) -> Config:
    """Return a copy of ``config`` with one field changed (the original is left alone)."""
    if "." not in key:
        return dataclasses.replace(config, **{key: value})
    section, name = key.split(".", 1)
    changed = dataclasses.replace(getattr(config, section), **{name: value})
    return dataclasses.replace(config, **{section: changed})


def to_dict(config: Config) -> dict[str, Any]:
    """The config as plain TOML-ready data."""
    return dataclasses.asdict(config)


def _allowed(info: FieldInfo) -> str:
    """A number field's range in words (" from 1 to 256"), or an empty string when it has none."""
    if info.minimum is not None and info.maximum is not None:
        return f" from {limit_text(info.minimum)} to {limit_text(info.maximum)}"
    if info.minimum is not None:
        return f" of at least {limit_text(info.minimum)}"
    if info.maximum is not None:
        return f" of at most {limit_text(info.maximum)}"
    return ""


def _coerce(info: FieldInfo, value: Any) -> tuple[Any, str | None]:
    """Check one raw value against its field's type; return (value, problem message).

    ``true`` is not a number here even though Python's bool is an int, and nan or ±inf is not a
    number either: every comparison with nan is false, so it would slip past any limit.
    """
    expected = info.type
    if expected is bool:
        if isinstance(value, bool):
            return value, None
        return None, f"expected true or false, got {quoted(value)}"
    if expected is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value, None
        if isinstance(value, float) and value.is_integer():
            return int(value), None
        return None, f"expected a whole number{_allowed(info)}, got {quoted(value)}"
    if expected is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = finite_float(value)
            if number is not None:
                return number, None
        return None, f"expected a number{_allowed(info)}, got {quoted(value)}"
    if expected is str:
        if isinstance(value, str):
            return value, None
        return None, f"expected text, got {quoted(value)}"
    if expected is list:
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value), None
        return None, f"expected a list of texts, got {quoted(value)}"
    raise TypeError(f"unsupported field type {expected}")  # a schema bug, not a user error


def _type_message(info: FieldInfo, value: Any) -> str | None:
    """Why a value held in a Config does not fit its field's type (None when it does).

    Stricter than reading a file: a whole float such as 4.0 left in an int field by code would
    reach ``range()`` in the trainer, so only a true int passes here.
    """
    if info.type is int and isinstance(value, float):
        return f"expected a whole number{_allowed(info)}, got {quoted(value)}"
    return _coerce(info, value)[1]


def _unknown(dotted: str, name: str, nearby: list[str]) -> Problem:
    """The problem for a key the schema lacks, with the closest real key or the section it belongs in."""
    hint = suggest(name, nearby)
    if not hint:
        # A real setting in the wrong place: keys written above the first [section], or under another one.
        homes = [key for key in FIELDS if "." in key and key.split(".", 1)[1] == name and key != dotted]
        if len(homes) == 1:
            hint = f" Did you mean '{homes[0]}'? It belongs in the [{homes[0].split('.')[0]}] table."
        elif homes:
            hint = f" '{name}' is a setting of " + ", ".join(f"[{k.split('.')[0]}]" for k in homes) + "."
    return Problem(dotted, "unknown setting." + hint)


def from_dict(data: dict[str, Any]) -> tuple[Config, list[Problem]]:
    """Build a config from parsed TOML, collecting every problem instead of stopping at the first.

    Fields with a wrong type keep their default, so the caller always gets a whole config back
    alongside the list of what was wrong.
    """
    problems: list[Problem] = []
    config = Config()
    top_level = [k for k in FIELDS if "." not in k]
    for key, value in data.items():
        key = str(key)
        if key in SECTIONS:
            if not isinstance(value, dict):
                problems.append(Problem(key, f"expected a [{key}] table, got {quoted(value)}"))
                continue
            names = [k.split(".", 1)[1] for k in FIELDS if k.startswith(key + ".")]
            for name, raw in value.items():
                dotted = f"{key}.{name}"
                if dotted not in FIELDS:
                    problems.append(_unknown(dotted, str(name), names))
                    continue
                config = _set_checked(config, dotted, raw, problems)
        elif key in top_level:
            config = _set_checked(config, key, value, problems)
        else:
            problems.append(_unknown(key, key, list(SECTIONS) + top_level))
    return config, problems


def _set_checked(config: Config, key: str, raw: Any, problems: list[Problem]) -> Config:
    value, message = _coerce(FIELDS[key], raw)
    if message:
        problems.append(Problem(key, message))
        return config
    return with_value(config, key, value)


def _text_problem(text: str) -> str | None:
    """Why a text value can be neither a path, a caption nor a line of a UTF-8 TOML file."""
    if "\0" in text:
        return "contains a NUL character (\\0), which no file name or caption can hold; remove it."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Reachable through --set with bytes the terminal could not decode; the frozen config could not be written.
        return f"{quoted(text)} is not valid UTF-8 text; retype it."
    return None


def _field_problems(key: str, info: FieldInfo, value: Any) -> list[Problem]:
    """The problems of one well-typed field on its own: required, choices, limits, unusable text."""
    problems = []
    if info.required and not (isinstance(value, str) and value.strip()):
        problems.append(Problem(key, "is required."))
    if info.choices is not None and value not in info.choices:
        options = ", ".join(str(c) for c in info.choices)
        problems.append(Problem(key, f"{quoted(value)} is not one of: {options}."
                                + suggest(str(value), [str(c) for c in info.choices])))
    if info.minimum is not None and isinstance(value, (int, float)) and value < info.minimum:
        problems.append(Problem(key, f"{number_text(value)} is below the minimum of {limit_text(info.minimum)}."))
    if info.maximum is not None and isinstance(value, (int, float)) and value > info.maximum:
        problems.append(Problem(key, f"{number_text(value)} is above the maximum of {limit_text(info.maximum)}."))
    for text in value if isinstance(value, list) else [value] if isinstance(value, str) else []:
        message = _text_problem(text)
        if message:
            problems.append(Problem(key, message))
            break
    return problems


def validate(config: Config) -> list[Problem]:
    """Every hard problem with a config, in field order. Never changes the config, never raises."""
    problems: list[Problem] = []
    for key, info in FIELDS.items():
        value = get_value(config, key)
        message = _type_message(info, value)
        if message:
            problems.append(Problem(key, message))
        else:
            problems += _field_problems(key, info, value)
    # A config read from a file always has the right types (from_dict keeps the default instead);
    # one built in code may not, and the checks below compare and divide, so they wait until it does.
    if not any(_type_message(info, get_value(config, key)) for key, info in FIELDS.items()):
        problems.extend(cross_field_problems(config))
    return problems


def native_resolution(arch: str) -> int:
    """The guide's training size for an architecture: 1024 for SDXL, 768 for SD1.5."""
    return 1024 if arch == "sdxl" else 768


def effective_resolution(config: Config, arch: str) -> int:
    """The resolution a run uses: the configured one, or the architecture's own when it is 0."""
    return config.dataset.resolution or native_resolution(arch)
