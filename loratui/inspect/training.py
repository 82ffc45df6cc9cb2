"""How a LoRA was trained, from the ``ss_*`` metadata sd-scripts and kohya-compatible trainers write.

Every value is a string there (``"None"`` for unset). Keys written without ``--dataset_config``
(``ss_batch_size_per_device``, ``ss_resolution`` …) and the per-dataset ``ss_datasets`` JSON
written with it are both read. Tag counts come from ``ss_tag_frequency`` — JSON of
``{dataset folder: {tag: images carrying it}}`` — or, failing that, from ``ss_datasets``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone

OFF_WHEN_NONE = frozenset({"ss_noise_offset", "ss_min_snr_gamma", "ss_multires_noise_iterations",
                           "ss_adaptive_noise_scale", "ss_ip_noise_gamma", "ss_network_dropout"})
"""Settings whose ``None`` means the feature was off (shown as "off" rather than left out)."""

SETTINGS = (
    ("output name", ("ss_output_name",)),
    ("learning rate", ("ss_learning_rate",)),
    ("UNet learning rate", ("ss_unet_lr",)),
    ("text encoder learning rate", ("ss_text_encoder_lr",)),
    ("optimizer", ("ss_optimizer",)),
    ("scheduler", ("ss_lr_scheduler",)),
    ("warmup steps", ("ss_lr_warmup_steps",)),
    ("images × repeats", ("ss_num_train_images",)),  # sd-scripts counts each image once per repeat
    ("regularisation images", ("ss_num_reg_images",)),
    ("batch size", ("ss_total_batch_size", "ss_batch_size_per_device")),
    ("gradient accumulation", ("ss_gradient_accumulation_steps",)),
    ("resolution", ("ss_resolution",)),
    ("buckets", ("ss_enable_bucket",)),
    ("mixed precision", ("ss_mixed_precision",)),
    ("noise offset", ("ss_noise_offset",)),
    ("multires noise iterations", ("ss_multires_noise_iterations",)),
    ("min SNR gamma", ("ss_min_snr_gamma",)),
    ("clip skip", ("ss_clip_skip",)),
    ("caption dropout", ("ss_caption_dropout_rate",)),
    ("shuffle captions", ("ss_shuffle_caption",)),
    ("keep tokens", ("ss_keep_tokens",)),
    ("flip augmentation", ("ss_flip_aug",)),
    ("gradient checkpointing", ("ss_gradient_checkpointing",)),
    ("seed", ("ss_seed",)),
    ("network module", ("ss_network_module",)),
    ("network dim / alpha", ("ss_network_dim",)),
    ("network args", ("ss_network_args",)),
    ("session", ("ss_session_id",)),
    ("comment", ("ss_training_comment",)),
)
"""(label, metadata keys tried in order) of every setting shown, in the order shown."""


@dataclass(frozen=True)
class TrainingInfo:
    """What the metadata tells about the run that made the file."""

    settings: tuple[tuple[str, str], ...]
    """(label, value) in ``SETTINGS`` order, then epochs, steps and times; only those recorded."""
    network_args: dict[str, str]
    dataset_dirs: dict[str, dict]
    """Dataset folder → ``{"n_repeats": …, "img_count": …}`` (``ss_dataset_dirs``)."""
    tag_frequency: dict[str, dict[str, int]]
    """Dataset folder → tag → images carrying it."""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def top_tags(self, count: int) -> list[tuple[str, int]]:
        """The ``count`` most frequent tags over every dataset folder."""
        total: Counter = Counter()
        for tags in self.tag_frequency.values():
            total.update(tags)
        return sorted(total.items(), key=lambda item: (-item[1], item[0]))[:count]

    def to_json(self, tags: int) -> dict:
        return {"settings": dict(self.settings), "network_args": self.network_args,
                "dataset_dirs": self.dataset_dirs, "top_tags": [list(t) for t in self.top_tags(tags)],
                "tag_frequency": self.tag_frequency, "notes": list(self.notes)}


def _json(metadata: dict[str, str], key: str, notes: list[str]):
    text = metadata.get(key)
    if text in (None, "", "None"):
        return None
    try:
        return json.loads(text)
    except ValueError:
        notes.append(f"{key} is not valid JSON, so it is left out.")
        return None


def _when(text: str) -> str | None:
    try:
        stamp = float(text)
    except (TypeError, ValueError):
        return None
    try:
        return datetime.fromtimestamp(stamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except (OverflowError, OSError, ValueError):
        return None


def _duration(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min {int(seconds % 60)} s"


def _count(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _clean_tags(raw) -> dict[str, int]:
    """Tag → count with the tags stripped (sd-scripts keeps a caption's leading spaces) and merged."""
    tags: Counter = Counter()
    if isinstance(raw, dict):
        for tag, count in raw.items():
            number = _count(count)
            if number is not None and str(tag).strip():
                tags[str(tag).strip()] += number
    return dict(sorted(tags.items(), key=lambda item: (-item[1], item[0])))


def training_info(metadata: dict[str, str]) -> TrainingInfo:
    """Read the settings, dataset folders and tag counts a file's metadata records."""
    notes: list[str] = []
    datasets = _json(metadata, "ss_datasets", notes)
    datasets = datasets if isinstance(datasets, list) else []
    first = datasets[0] if datasets and isinstance(datasets[0], dict) else {}
    settings = []
    for label, keys in SETTINGS:
        value = next((metadata[k] for k in keys if metadata.get(k) not in (None, "", "None")), None)
        if value is None and any(k in OFF_WHEN_NONE and metadata.get(k) == "None" for k in keys):
            value = "off"
        if value is None and label in ("batch size", "resolution") and first:
            found = first.get("batch_size_per_device" if label == "batch size" else "resolution")
            value = str(tuple(found) if isinstance(found, list) else found) if found is not None else None
        if value is None:
            continue
        if label == "network dim / alpha":
            value = f"{value} / {metadata.get('ss_network_alpha', '?')}"
        settings.append((label, value))
    settings += _progress(metadata)
    args = _json(metadata, "ss_network_args", notes)
    network_args = {str(k): str(v) for k, v in args.items()} if isinstance(args, dict) else {}
    dirs = _json(metadata, "ss_dataset_dirs", notes)
    dataset_dirs = {str(k): v for k, v in dirs.items() if isinstance(v, dict)} if isinstance(dirs, dict) else {}
    frequency = _json(metadata, "ss_tag_frequency", notes)
    if not isinstance(frequency, dict):
        frequency = {}
        for index, dataset in enumerate(datasets):
            if isinstance(dataset, dict) and isinstance(dataset.get("tag_frequency"), dict):
                for folder, tags in dataset["tag_frequency"].items():
                    frequency[folder if len(datasets) == 1 else f"{index}: {folder}"] = tags
    tag_frequency = {str(folder): _clean_tags(tags) for folder, tags in frequency.items()}
    return TrainingInfo(tuple(settings), network_args, dataset_dirs, tag_frequency, tuple(notes))


def _progress(metadata: dict[str, str]) -> list[tuple[str, str]]:
    """Epochs and steps done of those planned, and when the run started and saved this file."""
    rows = []
    for label, done_key, planned_key in (("epoch", "ss_epoch", "ss_num_epochs"),
                                         ("steps", "ss_steps", "ss_max_train_steps")):
        done, planned = _count(metadata.get(done_key)), _count(metadata.get(planned_key))
        if done is not None and planned is not None:
            rows.append((label, f"{done} of {planned}"))
        elif done is not None or planned is not None:
            rows.append((label, str(done if done is not None else planned)))
    started, finished = metadata.get("ss_training_started_at"), metadata.get("ss_training_finished_at")
    if _when(started):
        rows.append(("started", _when(started)))
    if _when(finished):
        took = float(finished) - float(started) if _when(started) else None
        rows.append(("saved", _when(finished) + (f" ({_duration(took)} in)" if took and took >= 0 else "")))
    return rows
