"""The settings ``loratui dataset scan`` scans with, and where each came from (no torch).

A scan's findings depend on the training's settings: an image is "too small" only for a given
resolution. Guessing them silently misleads (an SD1.5 user told about 1024 px), so each comes from
the first of: the command line, the training config (``--config``, or ``./loratui.toml`` when it
exists), the built-in default; and the report says which, and how to change it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from loratui.cli.common import DEFAULT_CONFIG

DEFAULTS = {"trigger_word": "", "kind": "character", "default_repeats": 1, "caption_extension": ".txt",
            "use_buckets": True, "bucket_upscale": False, "folder_name_repeats": True, "masked_loss": False,
            "mask_path": ""}
"""What a scan assumes when neither the command line nor a config says otherwise (resolution aside)."""
ASSUMED_RESOLUTION = 1024
"""Without a config or --resolution: SDXL's size, the commoner base today."""


class SettingsError(Exception):
    """The config named with ``--config`` cannot be used; the message says why."""


def scan_settings(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """The keyword arguments for ``scan_folder`` and the lines that say where they came from.

    Besides them it holds ``reg_path``, the regularization folder (``--reg``, else the config's
    ``dataset.reg_path``), which the caller takes out and reports apart.

    ``args`` holds ``config``, ``resolution``, ``trigger``, ``kind``, ``repeats`` and
    ``caption_extension`` as parsed (None when not given). Raises SettingsError when ``--config``
    names a file that cannot be read; a broken ``./loratui.toml`` is only mentioned, since it
    was not asked for.
    """
    from trainer.contract.config.toml_io import ConfigFileError, load_config

    path = args.config if args.config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None)
    config, notes = None, []
    if path is not None:
        try:
            config, _ = load_config(path)  # its own problems are `loratui check`'s business, not the scan's
        except ConfigFileError as exc:
            if args.config is not None:
                raise SettingsError(f"{exc}. Give the training config (TOML) whose settings the scan should use.")
            notes.append(f"{exc}, so its settings are not used.")
            path = None

    given = {"trigger_word": args.trigger, "kind": args.kind, "default_repeats": args.repeats,
             "caption_extension": _extension(args.caption_extension)}
    settings = dict(DEFAULTS)
    if config is not None:
        dataset = config.dataset
        settings.update(trigger_word=dataset.trigger_word, default_repeats=dataset.repeats,
                        caption_extension=dataset.caption_extension, use_buckets=dataset.buckets,
                        bucket_upscale=dataset.bucket_upscale, folder_name_repeats=dataset.folder_name_repeats,
                        masked_loss=dataset.masked_loss, mask_path=dataset.mask_path)
        if config.kind in ("character", "style", "concept"):
            settings["kind"] = config.kind
    settings.update({key: value for key, value in given.items() if value is not None})

    # The regularization folder is reported apart from the dataset (``loratui.dataset.reg_report``).
    given_reg = getattr(args, "reg", None)
    settings["reg_path"] = str(given_reg) if given_reg is not None else config.dataset.reg_path if config else ""
    resolution, said = _resolution(args.resolution, config, path)
    settings["resolution"] = resolution
    notes.insert(0, said)
    if config is not None:
        taken = [text for key, text in (
            ("trigger_word", f'trigger word "{settings["trigger_word"]}"' if settings["trigger_word"] else
             "no trigger word"),
            ("kind", f"{settings['kind']} LoRA"), ("default_repeats", f"{settings['default_repeats']} repeats"),
            ("caption_extension", f"{settings['caption_extension']} captions")) if given[key] is None]
        if taken:
            notes.append(f"also from {path}: {', '.join(taken)} (--trigger, --kind, --repeats and "
                         "--caption-extension change them).")
    return settings, notes


def _resolution(given: int | None, config, path: Path | None) -> tuple[int, str]:
    """The training resolution and a sentence saying where it came from."""
    from trainer.contract.config.schema import native_resolution
    from trainer.contract.model_ref import local_model_arch

    if given is not None:
        return given, f"resolution: {given} px (--resolution)."
    if config is None:
        return ASSUMED_RESOLUTION, (
            f"resolution: {ASSUMED_RESOLUTION} px assumed (SDXL's size), as no --resolution was given and there is "
            f"no {DEFAULT_CONFIG} here. For SD1.5 pass --resolution 768 (or 512), or --config with your training "
            "config.")
    if config.dataset.resolution:
        return config.dataset.resolution, (f"resolution: {config.dataset.resolution} px, from dataset.resolution in "
                                           f"{path} (--resolution changes it).")
    arch = config.model.arch if config.model.arch != "auto" else local_model_arch(config.model.base)
    if arch is None:
        return ASSUMED_RESOLUTION, (
            f"resolution: {ASSUMED_RESOLUTION} px assumed (SDXL's size): dataset.resolution in {path} is 0 (the "
            "model's own size) and the model's kind cannot be told here. For SD1.5 pass --resolution 768.")
    name = "SDXL" if arch == "sdxl" else "SD1.5"
    return native_resolution(arch), (
        f"resolution: {native_resolution(arch)} px, {name}'s own size: dataset.resolution in {path} is 0 (the "
        "model's own size) (--resolution changes it).")


def _extension(text: str | None) -> str | None:
    if text is None:
        return None
    return text if text.startswith(".") else "." + text
