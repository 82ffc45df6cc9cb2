"""The dataset scan's mask findings (no torch): with ``dataset.masked_loss`` on, the images that
have no mask and train as a whole, and the masks the trainer refuses (unreadable, another size)."""

from __future__ import annotations

from loratui.dataset.report import DatasetReport
from trainer.contract.masks import mask_report


def check_masks(report: DatasetReport, mask_path: str) -> None:
    """Add the mask issues of the report's images (masks from ``mask_path``, or alpha channels when empty)."""
    found = mask_report(report.images, report.root, mask_path)
    where = "a same-name image in the mask folder (dataset.mask_path)" if mask_path else "an alpha channel"
    for path in found.without_mask:
        report.add(path, "missing_mask", f"has no mask ({where}), so with masked loss it trains as a whole, "
                   "background included.")
    for mask, why in found.unreadable:
        report.add(mask, "unreadable_mask", f"is a mask that {why}; the trainer refuses to start until it is "
                   "replaced or removed.")
    for image, mask, size, mask_size in found.wrong_size:
        report.add(mask, "mask_wrong_size", f"is {mask_size[0]}x{mask_size[1]}, but its image {image.name} is "
                   f"{size[0]}x{size[1]}; the trainer refuses to start until the mask is saved at the image's size.")
