"""The validation-loss settings to and from sd-scripts (``loratui export`` / ``loratui import``).

sd-scripts reads ``validation_split`` and ``validation_seed`` from the dataset config (or the
command line) and ``validate_every_n_steps``, ``validate_every_n_epochs`` and
``max_validation_steps`` from the training config. The meaning is the same with two differences,
reported as approximations: sd-scripts holds out a share of each sub-folder and shuffles with its
own generator, so the same seed holds out other images there; and ``max_validation_steps`` caps
the validation batches, where loratui always measures every held-out image.
"""

from __future__ import annotations

from typing import Any

from loratui.interop.report import MappingReport
from loratui.interop.sdscripts_source import as_float, as_int
from trainer.contract.config.schema import FIELDS, Config, get_value

FOLLOWERS = ("training.validation_seed", "training.validate_every_n_steps", "training.validate_every_n_epochs")
"""The settings that only matter with a validation split."""

_OTHER_IMAGES = ("sd-scripts holds out that share of each image folder, shuffled by its own generator, so the "
                 "held-out images can differ")


def export_validation(config: Config, report: MappingReport) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """``(dataset [general] pairs, training-config pairs)`` for the validation settings."""
    training = config.training
    if not training.validation_split:
        report.map("training.validation_split", "validation_split")
        for key in FOLLOWERS:
            if get_value(config, key) != FIELDS[key].default:
                report.drop(key, get_value(config, key), "only used with a validation split, and it is 0")
        return [], []
    general = [("validation_split", training.validation_split), ("validation_seed", training.validation_seed)]
    report.map("training.validation_split", "validation_split")
    report.approx("training.validation_seed", "validation_seed", training.validation_seed, _OTHER_IMAGES)
    pairs: list[tuple[str, Any]] = [("validate_every_n_epochs", training.validate_every_n_epochs)]
    report.map("training.validate_every_n_epochs", "validate_every_n_epochs")
    if training.validate_every_n_steps:
        pairs.append(("validate_every_n_steps", training.validate_every_n_steps))
    report.map("training.validate_every_n_steps", "validate_every_n_steps")
    return general, pairs


def import_validation(importer) -> None:
    """Map sd-scripts' validation settings onto ``importer`` (an ``sdscripts_import.Importer``)."""
    src, report = importer.src, importer.report
    datasets = [d for d in src.datasets if isinstance(d, dict)]
    levels = ([datasets[0]] if datasets else []) + [src.general]
    split, found = src.lookup("validation_split", levels)
    if found:
        importer.mapped("validation_split", split, "training.validation_split", as_float(split))
    seed, found = src.lookup("validation_seed", levels)
    if found:
        importer.set("training.validation_seed", as_int(seed))
        report.approx("validation_seed", "training.validation_seed", seed, _OTHER_IMAGES)
    elif split:
        report.default("training.validation_seed", FIELDS["training.validation_seed"].default,
                       "sd-scripts picks the held-out images without a fixed seed; loratui's default seed")
    importer.take("validate_every_n_steps", "training.validate_every_n_steps", as_int)
    importer.take("validate_every_n_epochs", "training.validate_every_n_epochs", as_int)
    if src.has("max_validation_steps"):
        report.approx("max_validation_steps", "(every held-out image)", src.get("max_validation_steps"),
                      "loratui measures every held-out image at each validation; it has no cap on validation batches")
