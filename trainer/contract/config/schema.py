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

CONFIG_VERSION = 1
"""The schema version written into every saved config."""

SUPPORTED_NETWORKS = ("lora", "locon", "loha", "lokr", "ia3", "boft", "glora")
DORA_NETWORKS = ("lora", "locon", "loha", "lokr")
"""Network types that ``network.dora`` can add weight decomposition to."""
SUPPORTED_OPTIMIZERS = ("adamw", "adamw8bit", "came", "adafactor", "prodigy", "prodigy_plus")
SUPPORTED_SCHEDULERS = ("constant", "linear", "cosine", "cosine_with_restarts", "rex")
LR_FREE_OPTIMIZERS = ("prodigy", "prodigy_plus")
"""Optimizers that find their own step size: the configured rate only scales it, so it is near 1.0."""
SCHEDULE_FREE_OPTIMIZERS = ("prodigy_plus",)
"""Optimizers that average their own weights instead of following a schedule."""
FUSED_OPTIMIZERS = ("adamw", "adamw8bit", "came", "adafactor", "prodigy_plus")
"""Optimizers that can update one weight at a time inside the backward pass."""
LR_FREE_MIN = 0.1
"""Below this, a rate given to a learning-rate-free optimizer is a leftover AdamW value, not a scale."""
CONV_NETWORKS = ("locon", "loha", "lokr")
"""Network types that adapt the 3×3 convolutions, and so use ``conv_dim`` and ``conv_alpha``."""
MAX_NAME_BYTES = 200
"""Longest ``output.name`` in UTF-8 bytes. File systems cap a file name at 255 bytes, and the longest
name loratui derives from it (``<name>-step0001234.safetensors``, ``<name>-20250101-120000-2``) adds
up to about 30; 200 leaves room to spare, so a run never dies at its first save."""


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


@dataclass
class OutputConfig:
    """Where results go and how often they are saved."""

    name: str = setting("lora", "File name of the LoRA (without `.safetensors`); also names the "
                        "run folder.")
    dir: str = setting("runs", "Folder that holds the run folders; relative paths are read from the "
                       "config file's folder.")
    save_every_n_epochs: int = setting(1, "Save a checkpoint LoRA every N epochs; 0 saves only the "
                                       "final one.", minimum=0, maximum=10000)
    keep_last_n_checkpoints: int = setting(3, "Keep only the newest N checkpoints; 0 keeps them all.",
                                           minimum=0, maximum=10000)
    save_precision: str = setting("fp16", "Precision of the saved weights: `fp16` (the usual, half "
                                  "the size), `bf16` or `fp32`.", choices=("fp16", "bf16", "fp32"))
    sample_every_n_epochs: int = setting(0, "Draw sample images every N epochs and once more when training "
                                         "ends, each prompt at LoRA strength 0.7 and 1.0 (the guide's test that "
                                         "the LoRA works across that range). 0: only when asked while the run goes on.",
                                         minimum=0, maximum=10000)
    sample_prompts: list = setting([], "Prompts for sample images. Empty: the trigger word followed by the "
                                   "tags most captions share, and the trigger word on its own.")
    sample_steps: int = setting(20, "Denoising steps per sample image (Euler sampler); fewer is faster and "
                                "rougher.", minimum=1, maximum=150)
    sample_seed: int = setting(42, "Seed of the first prompt's image (the next prompt uses the next number), "
                               "kept for every sample of the run so they can be compared.",
                               minimum=0, maximum=2**32 - 1)
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
class Problem:
    """One thing wrong with a config: the dotted field name and what to do about it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


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
        problems.extend(_cross_field_problems(config))
    return problems


def _cross_field_problems(config: Config) -> list[Problem]:
    problems = []
    if config.config_version > CONFIG_VERSION:
        problems.append(Problem("config_version", f"this file is version {number_text(config.config_version)}, "
                                f"newer than this loratui understands ({CONFIG_VERSION}); upgrade loratui."))
    resolution = config.dataset.resolution
    if resolution % 64:
        problems.append(Problem("dataset.resolution", f"{number_text(resolution)} is not a multiple of 64; "
                                "use 512, 768, 1024 or 0 for the architecture's own size."))
    if config.dataset.max_token_length % 75:
        problems.append(Problem("dataset.max_token_length", f"{number_text(config.dataset.max_token_length)} is not "
                                "a whole number of 75-token chunks; use 75, 150 or 225."))
    extension = config.dataset.caption_extension
    if not (extension.startswith(".") and len(extension) > 1 and not any(c in extension for c in "/\\\0")):
        # Caption paths are built as image.with_suffix(extension), which refuses anything else.
        dotted = extension and not any(c in extension for c in "./\\\0")
        hint = f" Did you mean '.{extension}'?" if dotted else " Write it with its dot, such as '.txt'."
        problems.append(Problem("dataset.caption_extension", f"{quoted(extension)} is not a file extension.{hint}"))
    if config.network.alpha <= 0:
        problems.append(Problem("network.alpha", "must be above 0 (alpha/dim scales the LoRA)."))
    if config.network.type in CONV_NETWORKS and config.network.conv_alpha <= 0:
        # As with alpha, a scale of 0 makes the convolution adapters output nothing and learn nothing.
        problems.append(Problem("network.conv_alpha", f"must be above 0 with network.type = {config.network.type!r} "
                                "(conv_alpha/conv_dim scales the convolution layers)."))
    if config.network.dora and config.network.type in SUPPORTED_NETWORKS \
            and config.network.type not in DORA_NETWORKS:
        problems.append(Problem("network.dora", f"cannot be combined with network.type = "
                                f"{config.network.type!r}; DoRA works with {', '.join(DORA_NETWORKS)}."))
    if config.optimizer.unet_lr <= 0:
        problems.append(Problem("optimizer.unet_lr", "must be above 0, or nothing is trained."))
    problems.extend(_optimizer_problems(config))
    problems.extend(_output_problems(config.output))
    problems.extend(_output_name_control_problems(config.output.name))
    return problems


def _output_problems(output: OutputConfig) -> list[Problem]:
    """Output names and folders that no file system can hold."""
    problems = []
    name = output.name
    if not name or any(c in name for c in "/\\\0") or name in (".", ".."):
        problems.append(Problem("output.name", f"{quoted(name)} is not a usable file name "
                                "(no slashes, not empty)."))
    elif len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        problems.append(Problem("output.name", f"is {len(name.encode('utf-8', 'surrogatepass'))} bytes long; "
                                f"use at most {MAX_NAME_BYTES}, so the file names made from it fit the file "
                                "system's limit of 255."))
    if not output.dir:
        problems.append(Problem("output.dir", "is empty; name the folder that holds the run folders, such as runs."))
    return problems


def _output_name_control_problems(name: str) -> list[Problem]:
    """``output.name`` with a control character: a newline, tab, escape or DEL.

    The name becomes file and folder names that logs, scripts and terminals show: a newline splits
    a path across lines and an escape sequence can rewrite the screen it is printed on. NUL is
    reported for every text field already (``_text_problem``), so it is left out here.
    """
    bad = sorted({c for c in name if c != "\0" and (ord(c) < 32 or 127 <= ord(c) < 160)})
    if not bad:
        return []
    shown = ", ".join(repr(c) for c in bad)
    return [Problem("output.name", f"contains a control character ({shown}), which has no place in a file name; "
                    "use letters, digits, - and _.")]


def _optimizer_problems(config: Config) -> list[Problem]:
    """Optimizer, schedule and fused-pass combinations that cannot train as configured."""
    problems = []
    opt = config.optimizer
    if opt.name in LR_FREE_OPTIMIZERS:
        # Their rate multiplies the step size they find; an AdamW-sized rate would all but stop training.
        for key, value in (("unet_lr", opt.unet_lr), ("text_encoder_lr", opt.text_encoder_lr)):
            if 0 < value < LR_FREE_MIN:
                problems.append(Problem(f"optimizer.{key}", f"{opt.name} finds its own step size and expects "
                                        f"{key} = 1.0 (at least {LR_FREE_MIN:g}); {value:g} would barely train."))
    if opt.name in SCHEDULE_FREE_OPTIMIZERS and config.scheduler.name != "constant":
        problems.append(Problem("scheduler.name", f"{opt.name} averages its weights in place of a schedule; "
                                f"use constant (warmup is allowed), not {config.scheduler.name}."))
    if config.training.fused_backward_pass:
        if config.training.num_processes > 1:
            # Each weight is updated inside the backward pass, before the processes could average its gradient.
            problems.append(Problem("training.fused_backward_pass", "cannot be used with training.num_processes "
                                    f"> 1 (it is {config.training.num_processes})."))
        if config.training.batch_size != 1:
            problems.append(Problem("training.fused_backward_pass", "updates weights during the backward pass, "
                                    f"which needs training.batch_size = 1 (it is {config.training.batch_size})."))
        if opt.name not in FUSED_OPTIMIZERS:
            # Prodigy estimates one step size from all gradients together; one weight at a time it would not.
            problems.append(Problem("training.fused_backward_pass", f"cannot be used with {opt.name}, which needs "
                                    f"every gradient at once to find its step size; use one of "
                                    f"{', '.join(FUSED_OPTIMIZERS)}."))
    return problems


def native_resolution(arch: str) -> int:
    """The guide's training size for an architecture: 1024 for SDXL, 768 for SD1.5."""
    return 1024 if arch == "sdxl" else 768


def effective_resolution(config: Config, arch: str) -> int:
    """The resolution a run uses: the configured one, or the architecture's own when it is 0."""
    return config.dataset.resolution or native_resolution(arch)
