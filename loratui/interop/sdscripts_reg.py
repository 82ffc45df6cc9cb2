"""Regularization images across an sd-scripts export and import (no torch).

sd-scripts takes them as ``reg_data_dir`` (a folder of ``N_class`` sub-folders, loratui's own
``dataset.reg_path`` layout) or, in a dataset config, as subsets with ``is_reg = true``; their loss
is weighted by ``prior_loss_weight`` (``training.prior_loss_weight``). The export writes one
``is_reg`` subset per ``N_class`` folder, with that folder's repeats and its class word as
``class_tokens`` (without it sd-scripts would caption uncaptioned reg images with the general
``class_tokens``, the trigger word); the import reads such subsets back into one folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from loratui.interop.report import MappingReport
from trainer.contract.config.schema import Config
from trainer.contract.dataset_scan import DatasetImage, parse_repeat_folder
from trainer.contract.reg_images import scan_reg_images


def reg_images_here(config: Config) -> list[DatasetImage]:
    """The reg images of ``dataset.reg_path`` when the folder can be read on this machine, else none."""
    folder = config.dataset.reg_path
    if not folder or not Path(folder).is_dir():
        return []
    try:
        return scan_reg_images(folder, config.dataset.caption_extension).images
    except (OSError, ValueError):
        return []


def export_reg_subsets(config: Config, report: MappingReport) -> list[list[tuple[str, Any]]]:
    """The ``is_reg`` subsets of ``dataset.reg_path``: one per ``N_class`` folder that holds images."""
    report.map("training.prior_loss_weight", "prior_loss_weight")
    folder = config.dataset.reg_path
    if not folder:
        report.map("dataset.reg_path", "datasets.subsets is_reg")
        return []
    folders = sorted({image.path.parent for image in reg_images_here(config)})
    if not folders:
        report.approx("dataset.reg_path", "datasets.subsets is_reg", folder,
                      "the folder could not be read here, so it is listed as one subset; sd-scripts reads a subset's "
                      "folder alone, so list each N_class sub-folder as its own is_reg subset")
        return [[("image_dir", str(folder)), ("num_repeats", 1), ("is_reg", True)]]
    report.map("dataset.reg_path", "datasets.subsets is_reg", folder)
    subsets = []
    for sub in folders:
        repeats, word = parse_repeat_folder(sub.name)
        subsets.append([("image_dir", str(sub)), ("num_repeats", repeats), ("is_reg", True), ("class_tokens", word)])
    return subsets


def prior_loss_pairs(config: Config) -> list[tuple[str, Any]]:
    """``prior_loss_weight`` for config.toml, when it is not sd-scripts' default of 1.0."""
    weight = config.training.prior_loss_weight
    return [("prior_loss_weight", weight)] if weight != 1.0 else []


class RegImport:
    """The reg-image methods of ``Importer`` (which provides ``src``, ``report``, ``set`` and ``take``)."""

    def _reg_data_dir(self) -> None:
        """``reg_data_dir`` (no dataset config): the same layout as ``dataset.reg_path``."""
        if self.src.has("reg_data_dir"):
            self.take("reg_data_dir", "dataset.reg_path", str)

    def _reg_subsets(self, subsets: list[dict], levels: list[dict], dataset_path: str) -> None:
        """``is_reg`` subsets → ``dataset.reg_path``: their common parent, read as ``N_class`` folders.

        A reg folder that shares the dataset folder's tree (``dataset_path``, already mapped) is left out
        and said so: loratui's dataset folder takes in its sub-folders, so such reg images would train as
        the subject (and the trainer refuses the overlap).
        """
        entries = []
        for subset in subsets:
            self.src.use(subset, "image_dir")
            self.src.use(subset, "is_reg")
            repeats, _ = self.src.lookup("num_repeats", [subset] + levels)
            tokens, _ = self.src.lookup("class_tokens", [subset] + levels)
            entries.append((Path(str(subset.get("image_dir") or "")), repeats, tokens))
        if not entries:
            return
        parents = {path.parent for path, _, _ in entries}
        root = sorted(parents)[0]
        dirs = [str(path) for path, _, _ in entries]
        data = Path(dataset_path) if dataset_path else None
        if data is not None and (root == data or data in root.parents or root in data.parents):
            self.report.drop("datasets.subsets is_reg", dirs[0] if len(dirs) == 1 else dirs,
                             "these reg images sit in the training images' folder tree, which loratui trains whole; "
                             "move them to a folder of their own (N_class sub-folders) and set dataset.reg_path")
            return
        self.set("dataset.reg_path", str(root))
        if len(parents) > 1:
            self.report.approx("datasets.subsets is_reg", "dataset.reg_path", dirs,
                               f"the reg folders do not share one parent; loratui reads one reg folder, so "
                               f"{str(root)!r} is used and the others are left out")
            return
        differ = []
        for path, repeats, tokens in entries:
            parsed = parse_repeat_folder(path.name)
            if parsed is None or parsed[0] != repeats or (tokens and str(tokens) != parsed[1]):
                differ.append(f"{path.name}: {repeats} repeats, class {tokens!r}")
        if differ:
            self.report.approx("datasets.subsets is_reg", "dataset.reg_path", differ,
                               "loratui reads a reg folder's N_class sub-folders by their names (N repeats, class "
                               "word for uncaptioned images); rename these folders to say what the subsets set")
        else:
            self.report.map("datasets.subsets is_reg", "dataset.reg_path", str(root))

    def _prior_loss_weight(self) -> None:
        self.take("prior_loss_weight", "training.prior_loss_weight", _as_weight)


def _as_weight(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return value
