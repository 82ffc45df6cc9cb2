"""Masked loss to and from sd-scripts (no torch).

sd-scripts turns it on with ``masked_loss`` and takes each subset's masks either from
``conditioning_data_dir`` (a folder of same-name mask images beside that subset's ``image_dir``)
or, with ``alpha_mask``, from the images' alpha channels. loratui has one mask folder,
``dataset.mask_path``, mirroring the dataset's sub-folders: the folder itself for the images at
the top, ``mask_path/10_zk`` for ``dataset/10_zk``. So each subset's ``conditioning_data_dir`` is
the mask folder joined with the subset's place in the dataset, both ways.
"""

from __future__ import annotations

from pathlib import Path, PurePath
from typing import Any

from loratui.interop.report import MappingReport
from trainer.contract.masks import mask_sources


def mask_training_pairs(config, report: MappingReport, scan=None) -> list[tuple[str, Any]]:
    """The training-config pairs for masked loss (none when it is off); ``scan`` is the dataset's, when read."""
    report.map("dataset.masked_loss", "masked_loss")
    data = config.dataset
    if not data.masked_loss:
        if data.mask_path:
            report.drop("dataset.mask_path", data.mask_path, "masks are only read with dataset.masked_loss on")
        return []
    if data.mask_path:
        report.map("dataset.mask_path", "datasets.subsets conditioning_data_dir", data.mask_path,
                   "one per subset: the mask folder's sub-folder of the same name")
        unmasked = [s for s in mask_sources(scan.images, scan.root, data.mask_path) if s is None] if scan else []
        if unmasked:
            report.approx("dataset.mask_path", "datasets.subsets conditioning_data_dir", data.mask_path,
                          f"{len(unmasked)} images have no mask there: loratui trains them whole, sd-scripts "
                          "refuses to start; give each an all-white mask")
    else:
        report.map("dataset.mask_path", "datasets.subsets alpha_mask", "", "empty: the images' alpha channels")
    return [("masked_loss", True)]


def mask_subset_pairs(config, image_dir: str) -> list[tuple[str, Any]]:
    """The pairs one subset (the folder ``image_dir`` of the dataset) needs for its masks."""
    data = config.dataset
    if not data.masked_loss:
        return []
    if not data.mask_path:
        return [("alpha_mask", True)]
    try:
        relative = Path(image_dir).relative_to(data.path)
    except ValueError:
        relative = PurePath(".")
    return [("conditioning_data_dir", str(Path(data.mask_path) / relative))]


def _mask_root(conditioning: str, image_dir: str, dataset_root: str) -> str | None:
    """The loratui mask folder a subset's ``conditioning_data_dir`` stands for (None: it mirrors nothing)."""
    try:
        relative = Path(image_dir).relative_to(dataset_root)
    except ValueError:
        return None
    if relative == Path("."):
        return str(Path(conditioning))
    folder = Path(conditioning)
    if folder.parts[-len(relative.parts):] != relative.parts:
        return None
    return str(Path(*folder.parts[:-len(relative.parts)]))


def import_masks(importer, subsets: list[dict], levels: list[dict]) -> None:
    """Map ``masked_loss`` and the subsets' ``conditioning_data_dir`` / ``alpha_mask`` (``importer`` is an
    ``sdscripts_import.Importer``; ``subsets`` the training subsets, ``levels`` the tables above them)."""
    masked = bool(importer.take("masked_loss", "dataset.masked_loss", bool))
    folders = []
    alpha = False
    for subset in subsets:
        folder, found = importer.src.lookup("conditioning_data_dir", [subset] + levels)
        if found and folder:
            folders.append((str(folder), str(subset.get("image_dir") or "")))
        use_alpha, _ = importer.src.lookup("alpha_mask", [subset] + levels)
        alpha = alpha or bool(use_alpha)
    if not masked:
        if folders or alpha:
            importer.report.drop("conditioning_data_dir, alpha_mask", [f for f, _ in folders] or alpha,
                                 "masks are only read with masked_loss on, which this config leaves off")
        return
    if not folders:
        importer.set("dataset.mask_path", "")
        if alpha:
            importer.report.map("alpha_mask", "dataset.mask_path", "", "empty: the images' alpha channels")
        else:
            importer.report.approx("masked_loss", "dataset.mask_path", "", "no conditioning_data_dir or alpha_mask "
                                   "given: loratui reads the images' alpha channels")
        return
    root = importer.values.get("dataset", {}).get("path", "")
    roots = [_mask_root(folder, image_dir, root) for folder, image_dir in folders]
    chosen = roots[0] if roots[0] is not None else folders[0][0]
    importer.set("dataset.mask_path", chosen)
    if all(r == chosen for r in roots) and (len(folders) == len(subsets) or not alpha):
        importer.report.map("datasets.subsets conditioning_data_dir", "dataset.mask_path", chosen)
    else:
        importer.report.approx("datasets.subsets conditioning_data_dir", "dataset.mask_path",
                               [f for f, _ in folders], f"loratui reads every mask from one folder ({chosen}) with "
                               "the dataset's sub-folders inside it; move the masks there")
