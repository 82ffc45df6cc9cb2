"""Where each training image's loss mask comes from, and what is wrong with the masks (no torch).

With ``dataset.masked_loss`` on, every image trains only where its mask is white. The mask is a
same-name image in ``dataset.mask_path`` (any image format, in the same sub-folder as the image
sits in the dataset: ``dataset/10_zk/a.png`` → ``mask_path/10_zk/a.png``), or, with ``mask_path``
empty, the image's own alpha channel. An image without either trains as a whole. This is
sd-scripts' ``conditioning_data_dir`` (one per subset) and ``alpha_mask``.

Only image headers are read here, so the checks run before anything heavy loads, in the app and
in the trainer alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from trainer.contract.config.names import Problem
from trainer.contract.dataset_scan import IMAGE_EXTENSIONS, DatasetImage, read_image_size

SHOWN = 3
"""How many files a problem names before it says "and N more"."""


def has_alpha(path: Path) -> bool:
    """Whether the image has transparency the trainer reads as its mask (read from the header only).

    The same test as ``trainer.data.load_rgb`` uses to composite an image onto white.
    """
    try:
        with Image.open(path) as image:
            return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


class MaskFolder:
    """The mask files of ``mask_root``, looked up by the image they belong to."""

    def __init__(self, dataset_root: Path, mask_root: Path) -> None:
        self.dataset_root = Path(dataset_root)
        self.mask_root = Path(mask_root)
        self._listed: dict[Path, dict[str, Path]] = {}

    def _files(self, folder: Path) -> dict[str, Path]:
        # Each folder is listed once; a stem with several image files prefers .png, then name order.
        if folder not in self._listed:
            found: dict[str, Path] = {}
            try:
                entries = sorted(folder.iterdir(), key=lambda p: (p.suffix.lower() != ".png", p.name))
            except OSError:
                entries = []
            for entry in entries:
                if entry.suffix.lower() in IMAGE_EXTENSIONS and entry.is_file():
                    found.setdefault(entry.stem, entry)
            self._listed[folder] = found
        return self._listed[folder]

    def find(self, image: Path) -> Path | None:
        """The mask of ``image``: the same stem in the mask folder's mirror of the image's sub-folder."""
        try:
            relative = Path(image).parent.relative_to(self.dataset_root)
        except ValueError:
            return None
        return self._files(self.mask_root / relative).get(Path(image).stem)


def mask_sources(images: list[DatasetImage], dataset_root: Path, mask_path: str) -> list[Path | None]:
    """For each image, the file its mask is read from: a mask file, the image itself (its alpha
    channel, when ``mask_path`` is empty) or None (no mask: the whole image trains)."""
    if mask_path:
        folder = MaskFolder(dataset_root, Path(mask_path))
        return [folder.find(image.path) for image in images]
    return [image.path if has_alpha(image.path) else None for image in images]


@dataclass
class MaskReport:
    """How a dataset's masks stand."""

    without_mask: list[Path] = field(default_factory=list)
    """Images with no mask: they train as a whole."""
    wrong_size: list[tuple[Path, Path, tuple[int, int], tuple[int, int]]] = field(default_factory=list)
    """(image, mask, image size, mask size) of masks of another size than their image."""
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    """Mask files that cannot be read, with why."""


def mask_report(images: list[DatasetImage], dataset_root: Path, mask_path: str) -> MaskReport:
    """Which images lack a mask and which masks cannot be used (headers only).

    ``images`` may be anything with ``path``, ``width`` and ``height`` (upright), such as the app's
    scanned images.
    """
    report = MaskReport()
    for image, source in zip(images, mask_sources(images, dataset_root, mask_path)):
        if source is None:
            report.without_mask.append(image.path)
        elif source != image.path:
            try:
                size = read_image_size(source)
            except ValueError as exc:
                report.unreadable.append((source, str(exc)))
                continue
            if size != (image.width, image.height):
                report.wrong_size.append((image.path, source, (image.width, image.height), size))
    return report


def _listing(items: list[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return "; ".join(items[:SHOWN]) + more


def mask_problems(masked_loss: bool, mask_path: str, images: list[DatasetImage] | None,
                  dataset_root: Path | None) -> list[Problem]:
    """The mask settings and files that cannot train as configured (``images`` None: the dataset
    could not be scanned, so only the folder itself is checked)."""
    if not masked_loss:
        return []
    if mask_path:
        folder = Path(mask_path)
        if not folder.exists():
            return [Problem("dataset.mask_path", f"{mask_path} does not exist. Point it at the folder of masks "
                            "(named as the images, in the same sub-folders), or empty it to use each image's "
                            "alpha channel.")]
        if not folder.is_dir():
            return [Problem("dataset.mask_path", f"{mask_path} is a file; it should be the folder of masks.")]
    if not images or dataset_root is None:
        return []
    report = mask_report(images, dataset_root, mask_path)
    problems = []
    if len(report.without_mask) == len(images):
        if mask_path:
            problems.append(Problem("dataset.mask_path", f"{mask_path} holds no mask named like any training "
                                    f"image (such as {_mirror(images[0], dataset_root, folder)}). Name each mask as "
                                    "its image, in the same sub-folder, or turn dataset.masked_loss off."))
        else:
            problems.append(Problem("dataset.masked_loss", "none of the images has an alpha channel and "
                                    "dataset.mask_path is empty, so nothing would be masked. Set dataset.mask_path "
                                    "to a folder of masks, save the images with transparency, or turn "
                                    "dataset.masked_loss off."))
    if report.unreadable:
        problems.append(Problem("dataset.mask_path", f"{_masks(len(report.unreadable))} cannot be read ("
                                + _listing([f"{p}: {why}" for p, why in report.unreadable])
                                + "). Replace or remove them."))
    if report.wrong_size:
        problems.append(Problem("dataset.mask_path", f"{_masks(len(report.wrong_size))} "
                                f"{'is' if len(report.wrong_size) == 1 else 'are'} not the size of its image (" + _listing([f"{m} is {ms[0]}x{ms[1]}, its image {i.name} {s[0]}x{s[1]}"
                                                          for i, m, s, ms in report.wrong_size])
                                + "). Save each mask at its image's size."))
    return problems


def _masks(n: int) -> str:
    return "1 mask" if n == 1 else f"{n} masks"


def _mirror(image: DatasetImage, dataset_root: Path, mask_root: Path) -> Path:
    """Where the mask of ``image`` is looked for (shown in messages)."""
    try:
        return mask_root / image.path.relative_to(dataset_root).with_suffix(".png")
    except ValueError:
        return mask_root / image.path.with_suffix(".png").name
