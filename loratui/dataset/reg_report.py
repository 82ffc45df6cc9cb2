"""What a regularization folder (``dataset.reg_path``) holds, reported apart from the training images.

``loratui dataset scan`` and the dataset screen show the reg images on their own lines: how many, in
which ``N_class`` folders with which repeats, and how many of them an epoch trains once sd-scripts'
balancing has matched them to the training samples. They never enter the training images' counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loratui.dataset.describe import plural
from loratui.dataset.report import printable
from trainer.contract.dataset_scan import parse_repeat_folder
from trainer.contract.reg_images import balance_reg_images, check_reg_folder


@dataclass(frozen=True)
class RegFolder:
    """One ``N_class`` folder of regularization images."""

    name: str
    class_word: str
    repeats: int
    images: int


@dataclass(frozen=True)
class RegReport:
    """The regularization folder as the trainer will use it."""

    root: Path
    folders: tuple[RegFolder, ...] = ()
    images: int = 0
    samples: int = 0
    """Images × their folders' repeats (sd-scripts' ``ss_num_reg_images``)."""
    used_images: int = 0
    """Reg images an epoch trains, balanced against the training samples."""
    used_samples: int = 0
    """Reg samples per epoch: about the training samples, as sd-scripts balances them."""
    train_samples: int = 0
    skipped: tuple[tuple[Path, str], ...] = field(default_factory=tuple)
    problem: str | None = None
    """Why the folder cannot be used (a missing or empty folder, one that overlaps the dataset)."""

    def lines(self) -> list[str]:
        """The report's text lines (the scan command's section; the first is the dataset screen's line)."""
        root = printable(str(self.root))
        if self.problem is not None:
            return [f"regularization (dataset.reg_path): {self.problem}"]
        head = (f"regularization images ({root}), apart from the above: {plural(self.images, 'image')} in "
                f"{plural(len(self.folders), 'folder')}, {self.samples} with repeats; each epoch trains "
                f"{self.used_samples} reg samples from {plural(self.used_images, 'image')}, matched to your "
                f"{self.train_samples}")
        lines = [head]
        for folder in self.folders:
            lines.append(f"  {folder.name + '/':<24} {plural(folder.images, 'image'):>12} × "
                         f"{plural(folder.repeats, 'repeat'):<11} (uncaptioned ones read \"{folder.class_word}\")")
        for path, why in self.skipped:
            lines.append(f"  left out: {printable(path.name)}: {why}")
        return lines

    def short_line(self) -> str:
        """One line for the dataset screen's summary."""
        if self.problem is not None:
            return f"regularization: {self.problem}"
        folders = ", ".join(f"{f.name} ({f.images}×{f.repeats})" for f in self.folders[:3]) + \
            (f" and {len(self.folders) - 3} more" if len(self.folders) > 3 else "")
        return (f"regularization, apart: {plural(self.images, 'image')} in {folders}; {self.used_samples} "
                f"reg samples per epoch, matched to your {self.train_samples}")

    def to_json(self) -> dict:
        """A plain dict for ``--format json``."""
        return {"root": printable(str(self.root)), "problem": self.problem, "images": self.images,
                "samples": self.samples, "used_images": self.used_images, "used_samples_per_epoch": self.used_samples,
                "folders": [{"path": f.name, "class": f.class_word, "repeats": f.repeats, "images": f.images}
                            for f in self.folders],
                "skipped": [{"path": printable(str(p)), "why": why} for p, why in self.skipped]}


def reg_report(reg_path: str, dataset_path: str, train_samples: int,
               caption_extension: str = ".txt") -> RegReport | None:
    """The report of ``dataset.reg_path`` (None when it is empty), with a problem when it cannot be used."""
    if not reg_path:
        return None
    problems, scan = check_reg_folder(reg_path, dataset_path, caption_extension)
    if scan is None:
        return RegReport(Path(reg_path), problem=problems[0].message if problems else "cannot be read")
    folders: dict[str, list[int]] = {}
    for image in scan.images:
        folders.setdefault(image.path.parent.name, [image.repeats, 0])[1] += 1
    used = balance_reg_images(train_samples, scan.images)
    return RegReport(
        scan.root, tuple(RegFolder(name, parse_repeat_folder(name)[1], repeats, count)
                         for name, (repeats, count) in sorted(folders.items())),
        len(scan.images), sum(i.repeats for i in scan.images), len(used), sum(i.repeats for i in used),
        train_samples, tuple(scan.skipped), problems[0].message if problems else None)
