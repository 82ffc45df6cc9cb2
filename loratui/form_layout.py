"""How the settings form groups the config's fields, as the guide groups its advice.

Basic mode shows the proven-settings fields a first run touches; advanced mode shows the rest.
Every field of the schema appears in exactly one group (a test holds that).
"""

from __future__ import annotations

GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("What you train", ("kind", "model.base", "model.arch", "model.single_file_config", "model.vae",
                        "model.clip_skip", "model.prediction", "model.zero_terminal_snr")),
    ("Dataset", ("dataset.path", "dataset.trigger_word", "dataset.repeats", "dataset.folder_name_repeats",
                 "dataset.resolution", "dataset.flip",
                 "dataset.caption_extension", "dataset.shuffle_captions", "dataset.keep_tokens",
                 "dataset.max_token_length", "dataset.caption_dropout", "dataset.buckets", "dataset.bucket_upscale",
                 "dataset.cache_latents_to_disk", "dataset.cache_dir",
                 "dataset.reg_path", "training.prior_loss_weight", "dataset.masked_loss", "dataset.mask_path")),
    ("Network", ("network.type", "network.dim", "network.alpha", "network.conv_dim", "network.conv_alpha",
                 "network.dora", "network.weights", "network.dim_from_weights")),
    ("Learning rates", ("optimizer.name", "optimizer.unet_lr", "optimizer.text_encoder_lr",
                        "optimizer.weight_decay", "optimizer.max_grad_norm")),
    ("Schedule", ("training.epochs", "training.batch_size", "training.num_processes", "scheduler.name",
                  "scheduler.restarts", "scheduler.warmup_steps", "training.gradient_accumulation_steps", "training.seed")),
    ("Noise and loss", ("training.min_snr_gamma", "training.noise_offset", "training.multires_noise_iterations",
                        "training.multires_noise_discount", "training.ip_noise_gamma", "training.min_timestep",
                        "training.max_timestep", "training.debiased_estimation", "training.loss_type",
                        "training.huber_c", "training.huber_schedule")),
    ("Validation", ("training.validation_split", "training.validation_seed", "training.validate_every_n_steps",
                    "training.validate_every_n_epochs")),
    ("Memory savers", ("training.mixed_precision", "training.gradient_checkpointing",
                       "training.fused_backward_pass", "training.compile")),
    ("Output", ("output.name", "output.dir", "output.save_every_n_epochs", "output.keep_last_n_checkpoints",
                "output.save_every_n_steps", "output.save_precision", "output.sample_every_n_epochs",
                "output.sample_every_n_steps", "output.sample_prompts", "output.sample_negative_prompt",
                "output.sample_sampler", "output.sample_cfg", "output.sample_steps", "output.sample_seed",
                "output.tensorboard")),
)
"""Section titles and their fields, in the order the form shows them."""

BASIC: frozenset[str] = frozenset({
    "kind", "model.base", "dataset.path", "dataset.trigger_word", "dataset.repeats", "dataset.folder_name_repeats",
    "dataset.resolution",
    "dataset.flip", "network.type", "network.dim", "network.alpha", "optimizer.name", "optimizer.unet_lr",
    "optimizer.text_encoder_lr", "training.epochs", "training.batch_size", "scheduler.name", "scheduler.restarts",
    "training.mixed_precision", "training.gradient_checkpointing", "output.name", "output.save_every_n_epochs",
})
"""The fields basic mode shows: what the guide's proven settings and a first run touch."""

HIDDEN: frozenset[str] = frozenset({"config_version"})
"""Fields the form never shows (the file's schema version)."""


def group_of(key: str) -> str | None:
    """The title of the group that holds a field."""
    for title, keys in GROUPS:
        if key in keys:
            return title
    return None


LABELS: dict[str, str] = {
    "optimizer.name": "optimizer",
    "scheduler.name": "scheduler",
    "output.name": "output name",
    "model.base": "base model",
    "dataset.path": "dataset folder",
    "dataset.reg_path": "regularization folder",
    "dataset.mask_path": "mask folder",
    "network.weights": "start from LoRA file",
    "network.dim_from_weights": "dim from that file",
}
"""Labels where the field's own name says too little beside its neighbours (three fields are "name")."""


def field_label(key: str) -> str:
    """The label the form shows for a field: its name in words, unless ``LABELS`` says better."""
    return LABELS.get(key, key.split(".")[-1].replace("_", " "))
