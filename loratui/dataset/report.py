"""What a dataset scan found: issues with stable codes, the usable images and a summary (no torch).

``DatasetReport.to_json()`` is the form ``loratui dataset scan --format json`` prints; its keys
are stable, so scripts and the app can rely on them.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trainer.contract.dataset_scan import DatasetImage, DatasetScan

CODES: dict[str, str] = {
    "zero_bytes": "error",
    "not_an_image": "error",
    "broken_image": "error",
    "decompression_bomb": "error",
    "unsupported": "error",
    "unreadable": "error",
    "no_images": "error",
    "too_small": "warning",
    "missing_caption": "warning",
    "empty_caption": "warning",
    "caption_too_long": "warning",
    "duplicate": "warning",
    "near_duplicate": "warning",
    "nested_ignored": "warning",
    "symlink_loop": "warning",
    "orphan_caption": "info",
    "no_trigger": "info",
    "unusual_mode": "info",
    "unreadable_mask": "error",
    "mask_wrong_size": "error",
    "missing_mask": "warning",
}
"""Every issue code and its usual severity. "error": a file meant for training cannot be trained
(or the run cannot start); "warning": it trains, but probably not the way you want; "info": worth
knowing. Problems in places the trainer never reads (nested folders) are one step milder."""

SEVERITIES = ("error", "warning", "info")
"""From worst to mildest."""

@dataclass(frozen=True)
class Issue:
    """One problem with one file or folder."""

    path: Path
    code: str
    """A stable identifier from ``CODES`` (scripts and the app key on it)."""
    message: str
    """What is wrong and what to do, in plain words; it does not repeat the path."""
    severity: str
    """"error", "warning" or "info" (see ``CODES``)."""


@dataclass
class ScannedImage:
    """One image the trainer will train on, as the scan saw it."""

    path: Path
    folder: Path
    """The folder that sets its repeats (the dataset folder or a folder directly inside it)."""
    repeats: int
    width: int
    """Upright width (EXIF rotation applied), as the trainer sees it."""
    height: int
    format: str
    """Pillow's name for the format ("JPEG", "PNG" …), read from the content, not the name."""
    mode: str
    """Pillow's colour mode ("RGB", "L", "CMYK", "I;16" …)."""
    file_size: int
    bucket: tuple[int, int]
    """The (width, height) it trains at (``trainer.contract.plan.assign_bucket``)."""
    caption_path: Path | None
    caption: str = "ok"
    """"ok", "missing", "empty" or "no_trigger"."""
    phash: int | None = None
    """The 64-bit difference hash, when near-duplicates were looked for."""
    mtime_ns: int = 0
    """The file's modification time when scanned (with its size, the key of the hash cache)."""


@dataclass(frozen=True)
class FolderSummary:
    """The images of one folder the trainer reads, and what they weigh in an epoch."""

    path: Path
    repeats: int
    images: int
    effective_images: int
    """Images × repeats: how many times per epoch this folder's pictures are shown."""


@dataclass
class DatasetReport:
    """Everything ``scan_folder`` found."""

    root: Path
    settings: dict[str, Any]
    """The arguments the scan ran with (resolution, trigger word, kind …)."""
    images: list[ScannedImage] = field(default_factory=list)
    """Usable images, in the trainer's order. Broken, refused and nested files are issues instead."""
    issues: list[Issue] = field(default_factory=list)
    folders: list[FolderSummary] = field(default_factory=list)
    duplicates: list[list[Path]] = field(default_factory=list)
    """Groups of images with the same bytes (each group in the trainer's order)."""
    near_duplicates: list[list[Path]] | None = None
    """Groups of images that look nearly the same; None when that check was skipped."""
    size_verdict: str = ""
    """The guide's judgement of the image count for the kind of LoRA, one sentence."""
    size_severity: str = "ok"
    """The rules' severity of that verdict: "ok", "tip", "warn" or "danger"."""
    seconds: float = 0.0

    def add(self, path: Path, code: str, message: str, severity: str | None = None) -> None:
        """Record an issue; its severity is the code's usual one unless given."""
        self.issues.append(Issue(path, code, printable(message), severity or CODES[code]))

    @property
    def effective_images(self) -> int:
        """Images × repeats over the whole dataset: samples per epoch."""
        return sum(image.repeats for image in self.images)

    @property
    def has_errors(self) -> bool:
        """Whether anything has error severity (``loratui dataset scan`` then exits 1)."""
        return any(issue.severity == "error" for issue in self.issues)

    def count(self, severity: str) -> int:
        """How many issues have this severity."""
        return sum(1 for issue in self.issues if issue.severity == severity)

    def by_code(self) -> dict[str, list[Issue]]:
        """Issues grouped by code, worst severity first."""
        groups: dict[str, list[Issue]] = {}
        for issue in self.issues:
            groups.setdefault(issue.code, []).append(issue)
        return groups

    def captions(self) -> dict[str, int]:
        """How many usable images lack a caption, have an empty one, or lack the trigger word."""
        counts = Counter(image.caption for image in self.images)
        return {"missing": counts["missing"], "empty": counts["empty"], "no_trigger": counts["no_trigger"]}

    def resolutions(self) -> list[tuple[tuple[int, int], int]]:
        """(width, height) → images, most common first."""
        return Counter((i.width, i.height) for i in self.images).most_common()

    def buckets(self) -> list[tuple[tuple[int, int], int]]:
        """Training bucket (width, height) → images, most common first."""
        return Counter(i.bucket for i in self.images).most_common()

    def relative(self, path: Path) -> str:
        """A path as shown to people: relative to the dataset folder, always printable."""
        try:
            text = path.relative_to(self.root).as_posix() or "."
        except ValueError:
            text = str(path)
        return printable(text)

    def to_dataset_scan(self) -> DatasetScan:
        """The usable images as ``trainer.contract.dataset_scan`` describes them, for the step plan and the rules."""
        return DatasetScan(self.root, [DatasetImage(i.path, i.caption_path, i.width, i.height, i.repeats)
                                       for i in self.images])

    def to_json(self) -> dict[str, Any]:
        """A plain dict with stable keys (``loratui dataset scan --format json``); paths are relative."""
        rel = self.relative
        return {
            "root": printable(str(self.root)),
            "settings": dict(self.settings),
            "summary": {
                "images": len(self.images),
                "effective_images": self.effective_images,
                "folders": [{"path": rel(f.path), "repeats": f.repeats, "images": f.images,
                             "effective_images": f.effective_images} for f in self.folders],
                "resolutions": [{"width": w, "height": h, "images": n} for (w, h), n in self.resolutions()],
                "buckets": [{"width": w, "height": h, "images": n} for (w, h), n in self.buckets()],
                "captions": self.captions(),
                "size": {"severity": self.size_severity, "message": self.size_verdict},
                "issues": {severity: self.count(severity) for severity in SEVERITIES},
            },
            "images": [{"path": rel(i.path), "folder": rel(i.folder), "repeats": i.repeats, "width": i.width,
                        "height": i.height, "format": i.format, "mode": i.mode, "bytes": i.file_size,
                        "bucket": list(i.bucket), "caption": i.caption,
                        "phash": f"{i.phash:016x}" if i.phash is not None else None} for i in self.images],
            "duplicates": [[rel(p) for p in group] for group in self.duplicates],
            "near_duplicates": (None if self.near_duplicates is None
                                else [[rel(p) for p in group] for group in self.near_duplicates]),
            "issues": [{"path": rel(i.path), "code": i.code, "severity": i.severity, "message": i.message}
                       for i in self.issues],
            "seconds": round(self.seconds, 3),
        }


def printable(text: str) -> str:
    """Text safe to print or put in JSON: bytes of a name that are not UTF-8 (which the OS hands
    back as surrogates, and which would make printing fail) become �."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def milder(severity: str) -> str:
    """One step milder ("error" → "warning" → "info"), for problems where the trainer never looks."""
    return SEVERITIES[min(SEVERITIES.index(severity) + 1, len(SEVERITIES) - 1)]
