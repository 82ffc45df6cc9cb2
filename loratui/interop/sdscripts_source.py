"""sd-scripts settings as read for an import: sd-scripts' defaults and the lookups (no torch).

A setting a file leaves out takes *sd-scripts'* default (AdamW, a constant schedule, 1600 steps, no
buckets, ``.caption`` files …), because that is what the file meant; the defaults below were read
in kohya-ss/sd-scripts' ``library/train_util.py``, ``train_network.py`` and ``library/config_util.py``.
Dataset values are looked up as ``config_util`` does: subset, then dataset, then ``[general]``,
then the training config (where ``train_batch_size`` stands for ``batch_size``).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any

NO_EFFECT_REASONS = {
    ("xformers", "sdpa", "mem_eff_attn"): "loratui always uses PyTorch's scaled-dot-product attention",
    ("max_data_loader_n_workers", "persistent_data_loader_workers", "vae_batch_size", "lowram", "highvram",
     "skip_cache_check", "cache_info"): "loratui loads data and manages memory its own way",
    ("logging_dir", "log_with", "log_prefix", "log_tracker_name", "log_tracker_config", "wandb_run_name",
     "wandb_api_key", "log_config"): "loratui logs every step to the run folder's events.jsonl",
    ("v2",): "loratui trains SD1.5 and SDXL only",
    ("scale_v_pred_loss_like_noise_pred", "v_pred_like_loss"):
        "loratui weights a v-prediction loss by Min-SNR (training.min_snr_gamma) only",
    ("network_dropout", "scale_weight_norms", "base_weights",
     "base_weights_multiplier", "network_train_text_encoder_only"): "loratui's networks have no such option",
    ("save_state", "save_state_on_train_end", "resume", "save_last_n_epochs_state", "save_last_n_steps_state"):
        "loratui saves resume state with every checkpoint; continue a run with `loratui resume RUN`",
    ("save_n_epoch_ratio",): "loratui saves by epoch count or step count (output.save_every_n_epochs, "
                             "save_every_n_steps)",
    ("sample_at_first",): "loratui draws no set before training starts; ask the run monitor for one at any step",
    ("adaptive_noise_scale", "noise_offset_random_strength", "ip_noise_gamma_random_strength", "huber_scale"):
        "loratui has no such noise or loss option",
    ("full_fp16", "full_bf16"): "loratui keeps the LoRA weights in fp32 under mixed precision",
    ("fp8_base", "fp8_base_unet"): "loratui keeps the base model in the training precision",
    ("vae", "no_half_vae"): "loratui uses the model's own VAE",
    ("cache_text_encoder_outputs", "cache_text_encoder_outputs_to_disk"): "no such setting in loratui",
    ("color_aug", "random_crop", "face_crop_aug_range", "caption_tag_dropout_rate", "caption_dropout_every_n_epochs",
     "token_warmup_min", "token_warmup_step", "keep_tokens_separator", "secondary_separator", "enable_wildcard",
     "caption_suffix", "caption_separator", "custom_attributes", "network_multiplier"):
        "loratui has no such dataset option",
    ("training_comment", "metadata_title", "metadata_author", "metadata_description", "metadata_license",
     "metadata_tags"): "loratui writes its own metadata",
    ("save_toml", "save_toml_location", "tag_occurrence", "tag_file_location", "name"):
        "a LoRA_Easy_Training_Scripts interface setting",
}
"""Why common sd-scripts settings have no loratui counterpart (anything else: "no equivalent in loratui")."""

_REASONS = {key: reason for keys, reason in NO_EFFECT_REASONS.items() for key in keys}


def reason_for(name: str) -> str:
    """Why an sd-scripts setting has no loratui counterpart."""
    return _REASONS.get(name, "no equivalent in loratui")


IGNORED_KEYS = {"config_file", "dataset_config", "output_config"}
"""Keys that only point at other files."""

OPTIMIZER_DEFAULT_DECAY = {"adamw": 0.01, "adamw8bit": 0.01, "came": 0.0, "adafactor": 0.0, "prodigy": 0.0,
                           "prodigy_plus": 0.0}
"""Each optimizer class's own weight decay, which sd-scripts uses when ``optimizer_args`` does not set one."""

SD_SCRIPTS_DEFAULTS = {"network_alpha": 1.0, "network_dim": 4, "learning_rate": 2e-6, "lr_scheduler": "constant",
                       "lr_scheduler_num_cycles": 1, "max_train_steps": 1600, "train_batch_size": 1,
                       "mixed_precision": "no", "max_grad_norm": 1.0, "output_name": "last", "sample_steps": 30}
"""sd-scripts' defaults for settings a file may leave out (``library/train_util.py``, ``train_network.py``)."""

DATASET_DEFAULTS = {"batch_size": 1, "enable_bucket": False, "min_bucket_reso": 256, "max_bucket_reso": 1024,
                    "bucket_reso_steps": 64, "bucket_no_upscale": False, "resolution": None, "num_repeats": 1,
                    "caption_extension": ".caption", "shuffle_caption": False, "keep_tokens": 0, "flip_aug": False,
                    "caption_dropout_rate": 0.0, "class_tokens": None, "caption_prefix": None, "is_reg": False}
"""``library/config_util.py``'s defaults for dataset and subset settings."""

ARGPARSE_NAMES = {"batch_size": ("train_batch_size",), "num_repeats": ("dataset_repeats",),
                  "caption_extension": ("caption_extension", "caption_extention")}
"""Training-config names that stand in for dataset-config names (``ARGPARSE_OPTNAME_TO_CONFIG_OPTNAME``)."""


def as_int(value: Any) -> Any:
    """``value`` as a whole number when it is one (``"8"``, ``8.0``), else unchanged for validation to report."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return int(number) if number.is_integer() else value


def as_float(value: Any) -> Any:
    """``value`` as a number when it is one (``"1e-4"``), else unchanged for validation to report."""
    if isinstance(value, bool):
        return value
    try:
        return float(value)
    except (TypeError, ValueError):
        return value


UNCHANGED_DEFAULTS = {"min_timestep": 0, "max_timestep": 1000, "prior_loss_weight": 1.0, "multires_noise_discount": 0.3,
                      "gradient_accumulation_steps": 1, "loss_type": "l2", "huber_schedule": "snr", "huber_c": 0.1,
                      "token_warmup_min": 1, "token_warmup_step": 0, "caption_dropout_every_n_epochs": 0,
                      "caption_tag_dropout_rate": 0.0, "caption_separator": ",", "max_data_loader_n_workers": 8,
                      "vae_batch_size": 1, "lr_scheduler_power": 1, "network_dropout": 0, "num_repeats": 1}
"""sd-scripts settings at their own defaults (read in its argument parsers): setting them changes nothing."""


def is_noop(value: Any, name: str = "") -> bool:
    """Whether a setting changes nothing in sd-scripts (unset, an empty list, or sd-scripts' own default),
    so that leaving it out loses nothing and it need not be reported."""
    if value is None or value is False or value == "" or value == [] or value == {}:
        return True
    default = UNCHANGED_DEFAULTS.get(name)
    return default is not None and not isinstance(value, bool) and value == default


def parse_args_list(value: Any) -> dict[str, Any]:
    """``network_args``/``optimizer_args``/``lr_scheduler_args`` as a dict, from sd-scripts' ``["k=v", …]``
    list or LoRA_Easy's table; values are read as Python literals where they are ones (as sd-scripts does)."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, (list, tuple)):
        items = [tuple(str(item).split("=", 1)) if "=" in str(item) else (str(item), True) for item in value]
    elif isinstance(value, str) and "=" in value:
        items = [tuple(part.split("=", 1)) for part in value.split()]
    else:
        return {}
    parsed = {}
    for key, raw in items:
        parsed[str(key).strip()] = literal(raw)
    return parsed


def literal(raw: Any) -> Any:
    """A string read as a Python literal when it is one (``"0.1"`` → 0.1, ``"True"`` → True), else unchanged."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


@dataclass
class Hints:
    """Facts from outside the config file: the script that runs it, the process count, the prompt file."""

    arch: str | None = None
    arch_source: str = ""
    num_processes: int | None = None
    prompts: list[str] | None = None
    prompt_options: list[dict[str, str]] = field(default_factory=list)
    prompt_source: str = ""


class Source:
    """The settings being imported, remembering which were used so the rest can be reported."""

    def __init__(self, args: dict[str, Any], general: dict[str, Any], datasets: list[dict[str, Any]]) -> None:
        self.args = args
        self.general = general
        self.datasets = datasets
        self._used: dict[int, set[str]] = {}

    def use(self, table: dict, key: str) -> None:
        """Mark ``key`` of ``table`` as read."""
        self._used.setdefault(id(table), set()).add(key)

    def has(self, key: str) -> bool:
        """Whether the training config sets ``key`` to something other than None."""
        return self.args.get(key) is not None

    def get(self, key: str, default: Any = None) -> Any:
        """A training-config value (None counts as unset), marking it read."""
        if key in self.args:
            self.use(self.args, key)
        value = self.args.get(key)
        return default if value is None else value

    def lookup(self, key: str, levels: list[dict]) -> tuple[Any, bool]:
        """A dataset value by sd-scripts' fallback order; (value, whether any level set it)."""
        found, value = False, None
        for table in levels:
            if key in table and table[key] is not None:
                self.use(table, key)
                if not found:
                    found, value = True, table[key]
        for name in ARGPARSE_NAMES.get(key, (key,)):
            if self.args.get(name) is not None:
                self.use(self.args, name)
                if not found:
                    found, value = True, self.args[name]
        return (value if found else DATASET_DEFAULTS.get(key)), found

    def unused(self) -> list[tuple[str, Any]]:
        """Every setting never read, with the place it sits, in file order."""
        left = [(key, value) for key, value in self.args.items() if key not in self._used.get(id(self.args), set())
                and key not in IGNORED_KEYS]
        tables = [("[general].", self.general)]
        for d_index, dataset in enumerate(self.datasets):
            tables.append((f"datasets[{d_index}].", dataset))
            for s_index, subset in enumerate(dataset.get("subsets", []) or []):
                if isinstance(subset, dict):
                    tables.append((f"datasets[{d_index}].subsets[{s_index}].", subset))
        for prefix, table in tables:
            used = self._used.get(id(table), set())
            left += [(prefix + key, value) for key, value in table.items() if key not in used and key != "subsets"]
        return left


def optimizer_name(raw: str) -> tuple[str | None, str]:
    """Our optimizer for an sd-scripts ``optimizer_type`` (None when we have none), and a note when approximate."""
    lower = raw.lower()
    tail = lower.rsplit(".", 1)[-1]
    exact = {"": "adamw", "adamw": "adamw", "adamw8bit": "adamw8bit", "adafactor": "adafactor",
             "prodigy": "prodigy", "prodigyplusschedulefree": "prodigy_plus"}
    if lower in exact:
        return exact[lower], ""
    if tail == "prodigyplusschedulefree":
        return "prodigy_plus", ""
    if tail == "came":
        note = "" if lower in ("pytorch_optimizer.came", "pytorch_optimizer.optimizer.came.came") else \
            f"loratui's CAME is pytorch-optimizer's ({raw} is another implementation of the same method)"
        return "came", note
    if lower in ("pagedadamw8bit",):
        return "adamw8bit", "AdamW8bit without paging"
    if lower in ("pagedadamw", "pagedadamw32bit") or tail == "adamw":
        return "adamw", "torch's AdamW"
    return None, ""
