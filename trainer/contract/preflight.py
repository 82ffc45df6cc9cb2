"""Checks on the files a config points at, before anything is written (no torch).

A missing dataset, an empty one or a missing model is reported here with the path and what to
do, so neither the app nor the trainer starts a run (or creates a run folder) that cannot work.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path

from trainer.contract.boft_rank import STANDARD_WIDTHS, boft_rank_message, model_widths
from trainer.contract.config.schema import Config, Problem
from trainer.contract.dataset_scan import IMAGE_EXTENSIONS, DatasetScan, scan_dataset
from trainer.contract.masks import mask_problems
from trainer.contract.lora_weights import check_network_weights
from trainer.contract.model_ref import check_model, local_model_arch
from trainer.contract.prediction import detect_prediction
from trainer.contract.validation_split import split_problems
from trainer.contract.reg_images import check_reg_folder
from trainer.contract.vae_ref import check_vae


@dataclass
class Preflight:
    """The outcome of checking a config's inputs."""

    problems: list[Problem] = field(default_factory=list)
    scan: DatasetScan | None = None
    """The dataset scan, when the folder could be scanned (reused by the caller)."""
    reg_scan: DatasetScan | None = None
    """The regularization folder's scan (``dataset.reg_path``), when one is set and could be scanned."""

    @property
    def ok(self) -> bool:
        return not self.problems


def check_dataset(config: Config) -> tuple[list[Problem], DatasetScan | None]:
    """Problems with the dataset folder (and with masked loss, its masks), and its scan when it could be read."""
    folder = config.dataset.path
    if not folder:
        return mask_problems(config.dataset.masked_loss, config.dataset.mask_path, None, None), None
    path = Path(folder)
    if not path.exists():
        return [Problem("dataset.path", f"{folder} does not exist. Point it at the folder that "
                        "holds your images and their caption files.")], None
    if not path.is_dir():
        return [Problem("dataset.path", f"{folder} is a file; it should be the folder of images.")], None
    try:
        scan = scan_dataset(path, config.dataset.repeats, config.dataset.caption_extension,
                            config.dataset.folder_name_repeats)
    except OSError as exc:
        return [Problem("dataset.path", f"{folder} cannot be read ({exc.strerror}).")], None
    except ValueError:  # an impossible caption extension: the config's validation names it
        return [], None
    if scan.caption_problems:
        # The trainer would stop on these when it reads the captions, after the model has loaded.
        count = len(scan.caption_problems)
        shown = "; ".join(f"{path}: {why}" for path, why in scan.caption_problems[:3])
        more = f"; and {count - 3} more" if count > 3 else ""
        files = "caption file cannot" if count == 1 else f"{count} caption files cannot"
        return [Problem("dataset.path", f"{files} be read ({shown}{more}). Make each a readable text file "
                        "(chmod u+r) or remove it, and its image trains without a caption.")], scan
    if not scan.images:
        kinds = ", ".join(IMAGE_EXTENSIONS)
        detail = f" ({len(scan.skipped)} unusable, such as {scan.skipped[0][0].name}: " \
                 f"{scan.skipped[0][1]})" if scan.skipped else ""
        return [Problem("dataset.path", f"{folder} has no usable images{detail}. loratui reads "
                        f"{kinds} files in the folder and in its N_name sub-folders.")], scan
    # A validation split must leave images on both sides (see trainer.contract.validation_split).
    return (mask_problems(config.dataset.masked_loss, config.dataset.mask_path, scan.images, scan.root)
            + split_problems(len(scan.images), config.training.validation_split)), scan


def check_output(config: Config) -> list[Problem]:
    """Problems with the outputs: the folder must exist or be creatable and be writable, and
    TensorBoard logging needs its package."""
    problems = []
    if config.output.tensorboard and not _installed("tensorboard"):
        problems.append(Problem("output.tensorboard", "needs the tensorboard package: `pip install tensorboard` "
                                "(or `pip install -e \".[tensorboard]\"`), or turn it off."))
    return problems + _output_folder_problems(config)


def _installed(package: str) -> bool:
    # Looked up, not imported: the app runs this check too and must stay light.
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):
        return False


def _output_folder_problems(config: Config) -> list[Problem]:
    target = Path(config.output.dir)
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return [Problem("output.dir", f"{probe} is a file, so {target} cannot be a folder.")]
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        return [Problem("output.dir", f"{probe} is not writable; choose another output.dir.")]
    return []


def check_network(config: Config) -> list[Problem]:
    """Problems between the network and the model's layers: a BOFT rank that cannot split them."""
    if config.network.type != "boft" or not config.model.base:
        return []
    train_te = config.optimizer.text_encoder_lr > 0
    arch = local_model_arch(config.model.base)
    if arch is None:  # a hub id: checked against both architectures, whose widths need the same ranks
        widths = tuple(sorted({w for standard in STANDARD_WIDTHS.values() for part, group in standard.items()
                               if part == "unet" or train_te for w in group}))
    else:
        widths = model_widths(config.model.base, arch, train_te)
    message = boft_rank_message(config.network.dim, widths)
    return [Problem("network.dim", message)] if message else []


def check_prediction(config: Config) -> list[Problem]:
    """Problems with what the model predicts: a noise schedule this trainer cannot train (EDM v-prediction)."""
    if not config.model.base:
        return []
    detected = detect_prediction(config.model.base)
    if detected.unsupported:
        return [Problem("model.base", f"{config.model.base}: {detected.unsupported}. Train on the model's "
                        "discrete v-prediction or epsilon version instead.")]
    return []


def check_model_vae(config: Config) -> list[Problem]:
    """Problems with ``model.vae`` against the model (or a checkpoint that has no VAE and needs one)."""
    arch = config.model.arch if config.model.arch in ("sd15", "sdxl") else local_model_arch(config.model.base)
    return check_vae(config.model.base, config.model.vae, arch, config.model.single_file_config)


def preflight(config: Config) -> Preflight:
    """Check the model, the dataset, the network against the model and the output folder of a validated config."""
    result = Preflight()
    model_problems = check_model(config.model.base)
    result.problems += model_problems
    if not model_problems:
        result.problems += check_network(config) + check_prediction(config) + check_model_vae(config)
    result.problems += check_network_weights(config)  # a LoRA file to continue (its architecture read from the model)
    dataset_problems, result.scan = check_dataset(config)
    result.problems += dataset_problems
    reg_problems, result.reg_scan = check_reg_folder(config.dataset.reg_path, config.dataset.path,
                                                     config.dataset.caption_extension)
    result.problems += reg_problems
    result.problems += check_output(config)
    return result
