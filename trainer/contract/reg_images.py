"""Regularization (class) images, read and counted the way sd-scripts reads ``reg_data_dir`` (no torch).

A regularization folder holds pictures of the class the LoRA's subject belongs to ("a woman", "a
dog") as the base model draws it. Trained beside the user's images, with the loss weighted by
``training.prior_loss_weight``, they keep the model's idea of the class from drifting towards the
subject. The layout is kohya's: only sub-folders named ``N_class`` are read, each image repeats N
times, and an image without a caption file is captioned with the folder's class word.

sd-scripts does not train every reg image in full: an epoch holds as many reg samples as training
samples (images × repeats). ``balance_reg_images`` reproduces its loop exactly: reg images are taken
in order with their own repeats until they reach the training count (the rest are left out), and when
all of them together fall short, each gets one more repeat in turn until they reach it. The step plan
and the trainer both count through it, so the app's step count is the trainer's.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from trainer.contract.captions import read_caption
from trainer.contract.config.names import Problem
from trainer.contract.dataset_scan import DatasetImage, DatasetScan, parse_repeat_folder, scan_dataset

REG_FIELD = "dataset.reg_path"


def scan_reg_images(root: Path | str, caption_extension: str = ".txt") -> DatasetScan:
    """The usable images in the ``N_class`` folders of a regularization folder, with their repeats.

    Images directly in the folder, or in a sub-folder whose name has no repeat count, are listed in
    ``skipped``: sd-scripts reads only ``N_class`` folders of a ``reg_data_dir`` (the class word is
    their caption when an image has none, so a folder without one cannot caption its images).
    """
    scan = scan_dataset(root, 1, caption_extension, folder_name_repeats=True)
    kept = []
    for image in scan.images:
        if image.path.parent == scan.root or parse_repeat_folder(image.path.parent.name) is None:
            scan.skipped.append((image.path, "is not in an N_class folder (such as 1_woman), the only "
                                 "folders a regularization folder's images are read from"))
        else:
            kept.append(image)
    scan.images = kept
    return scan


def class_word(image: DatasetImage) -> str:
    """The class word of a reg image's ``N_class`` folder: ``1_woman`` → ``woman``."""
    parsed = parse_repeat_folder(image.path.parent.name)
    return parsed[1] if parsed else ""


def reg_caption(image: DatasetImage) -> str:
    """A reg image's caption: its caption file, or its folder's class word when it has none.

    The trigger word is never added: these images show the class, not the subject.
    """
    if image.caption_path is None:
        return class_word(image)
    return read_caption(image.caption_path)


def balance_reg_images(train_samples: int, reg: list[DatasetImage]) -> list[DatasetImage]:
    """The reg images one epoch trains, with their repeats, as sd-scripts' DreamBoothDataset picks them.

    ``train_samples`` is the training images' count with repeats. In order, each reg image joins with
    its folder's repeats until the reg samples reach ``train_samples`` (the images after that are not
    trained, and the last one may take the count a little past it); when every reg image has joined
    and they are still short, each in turn gets one more repeat until the counts meet.
    """
    repeats = balanced_repeats(train_samples, [image.repeats for image in reg])
    return [image if image.repeats == times else dataclasses.replace(image, repeats=times)
            for image, times in zip(reg, repeats)]


def balanced_repeats(train_samples: int, repeats: list[int]) -> list[int]:
    """``balance_reg_images`` on the reg images' repeats alone: the repeats of the first images, in order,
    that one epoch trains (the app's step search calls this for many repeat counts)."""
    if not repeats or train_samples <= 0:
        return []
    chosen: list[int] = []
    total = 0
    for times in repeats:
        chosen.append(times)
        total += times
        if total >= train_samples:
            return chosen
    # Still short: every reg image joined; now each gets one more repeat in turn.
    extra, rest = divmod(train_samples - total, len(chosen))
    return [times + extra + (1 if index < rest else 0) for index, times in enumerate(chosen)]


def reg_samples(train_samples: int, reg: list[DatasetImage]) -> int:
    """How many reg samples one epoch holds (``balance_reg_images``' repeats, summed)."""
    return sum(image.repeats for image in balance_reg_images(train_samples, reg))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_reg_folder(reg_path: str, dataset_path: str,
                     caption_extension: str = ".txt") -> tuple[list[Problem], DatasetScan | None]:
    """Problems with ``dataset.reg_path``, and its scan when it could be read (nothing when it is empty).

    The folder must exist, hold images in ``N_class`` folders and stay apart from the dataset folder:
    a reg folder inside the dataset would train its class images as the subject's (the dataset scan
    reads the dataset's sub-folders), and a dataset inside the reg folder would train the subject as the class.
    """
    if not reg_path:
        return [], None
    path = Path(reg_path)
    if not path.exists():
        return [Problem(REG_FIELD, f"{reg_path} does not exist. Point it at the folder of regularization images "
                        "(with N_class sub-folders such as 1_woman), or leave it empty for none.")], None
    if not path.is_dir():
        return [Problem(REG_FIELD, f"{reg_path} is a file; it should be the folder that holds the N_class "
                        "sub-folders of regularization images.")], None
    if dataset_path and Path(dataset_path).is_dir():
        reg_real, data_real = Path(os.path.realpath(path)), Path(os.path.realpath(dataset_path))
        if _inside(reg_real, data_real):
            where = "is the dataset folder" if reg_real == data_real else "is inside the dataset folder"
            return [Problem(REG_FIELD, f"{reg_path} {where} ({dataset_path}), whose images would then train "
                            "as your subject. Keep the regularization images in a folder of their own, outside "
                            "dataset.path.")], None
        if _inside(data_real, reg_real):
            return [Problem(REG_FIELD, f"the dataset folder ({dataset_path}) is inside {reg_path}, so your "
                            "images would train as the class. Keep the regularization images in a folder of "
                            "their own, apart from dataset.path.")], None
    try:
        scan = scan_reg_images(path, caption_extension)
    except OSError as exc:
        return [Problem(REG_FIELD, f"{reg_path} cannot be read ({exc.strerror}).")], None
    except ValueError:  # an impossible caption extension: the config's validation names it
        return [], None
    if scan.caption_problems:
        count = len(scan.caption_problems)
        shown = "; ".join(f"{file}: {why}" for file, why in scan.caption_problems[:3])
        more = f"; and {count - 3} more" if count > 3 else ""
        return [Problem(REG_FIELD, f"{count} caption file{'s' if count != 1 else ''} of the regularization "
                        f"images cannot be read ({shown}{more}). Make each readable or remove it (the image is "
                        "then captioned with its folder's class word).")], scan
    if not scan.images:
        detail = f" ({len(scan.skipped)} left out, such as {scan.skipped[0][0].name}: {scan.skipped[0][1]})" \
            if scan.skipped else ""
        return [Problem(REG_FIELD, f"{reg_path} has no usable regularization images{detail}. Put them in "
                        "sub-folders named N_class (such as 1_woman: one repeat, captioned 'woman' when an "
                        "image has no caption file), or leave dataset.reg_path empty.")], scan
    return [], scan
