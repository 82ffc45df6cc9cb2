"""Scan a dataset folder, read-only, for everything that will go wrong in training (no torch).

``scan_folder`` walks the folder the way the trainer does (``trainer.contract.dataset_scan``: images directly in
the folder, and in the folders directly inside it, where ``10_name`` means ten repeats) and also
reports what the trainer would pass over without a word: images nested deeper, captions without
an image, formats it does not read, links that loop, folders it cannot open.

What the fast pass can tell, and what it cannot. Each image is opened once and only its header
is parsed (size, colour mode, format, EXIF rotation): no pixels are decoded, so a thousand images
take well under a second. That catches empty files, text or other non-images with an image's
name, damaged headers, formats the trainer skips and decompression bombs (the pixel count in the
header is compared with Pillow's limit before anything is decoded). A file cut short after its
header (an interrupted copy) still has a good header, so the pass also looks at the last bytes:
a JPEG must end with its end-of-image marker, a PNG with its IEND chunk, a WebP or BMP must be as
long as its header says. Only a file that fails that test is decoded, to confirm it and to tell
it apart from a good picture followed by extra data (phones append videos to photos). Damage
in the middle of the compressed data is not visible this way: the near-duplicate pass, which
decodes every image at a small scale, reports those too; ``near_duplicates=False`` skips it.

Nothing here writes into the dataset. The only file written is the cache of perceptual hashes
(see ``loratui.dataset.similar``), under ``$XDG_CACHE_HOME/loratui/phash/``, so a rescan is fast.
"""

from __future__ import annotations

import errno
import os
import re
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePath

from PIL import Image

from loratui.dataset.masks import check_masks
from loratui.dataset.report import CODES, SEVERITIES, DatasetReport, FolderSummary, Issue, ScannedImage, milder
from loratui.dataset.similar import default_cache_dir, find_duplicates, find_near_duplicates, hash_images
from loratui.dataset.token_count import count_tokens, load_tokenizer
from trainer.contract.captions import caption_problem, read_caption, split_tags, with_trigger
from trainer.contract.dataset_scan import IMAGE_EXTENSIONS, DatasetScan, parse_repeat_folder
from trainer.contract.plan import assign_bucket

__all__ = ["CODES", "SEVERITIES", "DatasetReport", "FolderSummary", "Issue", "ScannedImage", "pixel_limit",
           "scan_folder", "size_verdict"]

UNSUPPORTED_EXTENSIONS = {
    ".gif": "GIF", ".tif": "TIFF", ".tiff": "TIFF", ".heic": "HEIC", ".heif": "HEIF", ".avif": "AVIF",
    ".jxl": "JPEG XL", ".jp2": "JPEG 2000", ".psd": "Photoshop", ".svg": "SVG", ".ico": "icon",
    ".tga": "TGA", ".exr": "OpenEXR", ".dng": "raw camera", ".cr2": "raw camera", ".nef": "raw camera",
    ".arw": "raw camera", ".raw": "raw camera",
}
"""Picture formats people put in datasets that the trainer does not read (it reads IMAGE_EXTENSIONS)."""

PIXEL_LIMIT_FALLBACK = 178_956_970
"""Used when Pillow's own limit has been switched off (twice Pillow's default, its hard limit)."""

MAX_DEPTH = 16
"""How deep the scan looks for images the trainer will not read; deeper trees are not datasets."""

_IMAGE_LIKE = set(IMAGE_EXTENSIONS) | set(UNSUPPORTED_EXTENSIONS)
_SIGNATURES = (b"\x89PNG", b"\xff\xd8\xff", b"RIFF", b"BM", b"GIF8", b"II*\x00", b"MM\x00*")
_TAIL_BYTES = 64
_PNG_END = b"IEND\xaeB`\x82"
_BOMB_PIXELS = re.compile(r"\((\d+) pixels\)")


def pixel_limit() -> int:
    """The most pixels an image may have before it is refused as a decompression bomb.

    The trainer refuses images above Pillow's ``MAX_IMAGE_PIXELS`` (it turns Pillow's warning into
    an error), so the scan uses the same figure.
    """
    return int(Image.MAX_IMAGE_PIXELS or PIXEL_LIMIT_FALLBACK)


@dataclass
class _Candidate:
    path: Path
    folder: Path
    repeats: int
    size: int
    mtime_ns: int
    caption_path: Path | None


def scan_folder(root: Path, *, resolution: int = 1024, trigger_word: str = "", default_repeats: int = 1,
                caption_extension: str = ".txt", kind: str = "character", use_buckets: bool = True,
                near_duplicates: bool = True, bucket_upscale: bool = False,
                cache_dir: Path | None = None, tokenizer: Path | None = None, token_window: int = 75,
                folder_name_repeats: bool = True, masked_loss: bool = False, mask_path: str = "") -> DatasetReport:
    """Scan a dataset folder without changing anything in it.

    ``resolution``, ``use_buckets`` and ``bucket_upscale`` decide each image's training bucket;
    ``kind`` picks the guide's size range; ``cache_dir`` overrides ``$XDG_CACHE_HOME/loratui``
    for the perceptual-hash cache. With ``tokenizer`` (the model's tokenizer folder) every caption is
    counted in CLIP tokens, and one longer than ``token_window`` is a ``caption_too_long`` warning.
    ``folder_name_repeats`` off gives every image ``default_repeats`` (``dataset.folder_name_repeats``).
    With ``masked_loss`` each image's mask (in ``mask_path``, or its alpha channel) is checked too.
    Raises ``OSError`` (``NotADirectoryError``,
    ``FileNotFoundError``, ``PermissionError``) when ``root`` is not a folder that can be listed;
    every problem inside it is an ``Issue`` in the report instead.
    """
    started = time.perf_counter()
    root = Path(root)
    if not root.is_dir():
        raise (NotADirectoryError if root.exists() else FileNotFoundError)(
            errno.ENOTDIR if root.exists() else errno.ENOENT, "not a folder", str(root))
    if not caption_extension.startswith("."):
        caption_extension = "." + caption_extension
    settings = {"resolution": resolution, "trigger_word": trigger_word, "default_repeats": default_repeats,
                "caption_extension": caption_extension, "kind": kind, "use_buckets": use_buckets,
                "bucket_upscale": bucket_upscale, "near_duplicates": near_duplicates,
                "tokenizer": str(tokenizer) if tokenizer else None, "token_window": token_window,
                "folder_name_repeats": folder_name_repeats, "masked_loss": masked_loss, "mask_path": mask_path}
    report = DatasetReport(root, settings)
    walk = _Walk(root, default_repeats, caption_extension, report, folder_name_repeats)
    walk.run()

    for candidate in walk.candidates:
        image = _inspect(candidate, report)
        if image is not None:
            image.bucket = assign_bucket(image.width, image.height, resolution, use_buckets, bucket_upscale)
            report.images.append(image)
    if near_duplicates:
        hash_images(report, Path(cache_dir) if cache_dir else default_cache_dir())
    find_duplicates(report)
    if near_duplicates:
        find_near_duplicates(report)
    counter = load_tokenizer(str(tokenizer)) if tokenizer else None
    for image in report.images:
        _check_caption(image, trigger_word.strip(), report)
        if counter is not None and image.caption_path is not None and image.caption != "missing":
            _check_length(image, counter, trigger_word.strip(), token_window, report)
        _check_size(image, resolution, use_buckets, bucket_upscale, report)
    if masked_loss:
        check_masks(report, mask_path)
    _summarise(report, walk.folders, kind)
    order = {severity: index for index, severity in enumerate(SEVERITIES)}
    # Stable for scripts and readable for people: worst first, then by code, then in walk order.
    report.issues.sort(key=lambda issue: (order[issue.severity], issue.code))
    report.seconds = time.perf_counter() - started
    return report


class _Walk:
    """The folder tree as the trainer reads it, plus what it would pass over."""

    def __init__(self, root: Path, default_repeats: int, caption_extension: str, report: DatasetReport,
                 folder_name_repeats: bool = True):
        self.root, self.default_repeats, self.caption_extension = root, default_repeats, caption_extension
        self.folder_name_repeats = folder_name_repeats
        self.report = report
        self.candidates: list[_Candidate] = []
        self.folders: list[tuple[Path, int]] = []
        self._seen: dict[tuple[int, int], Path] = {}

    def run(self) -> None:
        status = os.stat(self.root)
        key = (status.st_dev, status.st_ino)
        self._seen[key] = self.root
        self._visit(self.root, 0, self.default_repeats, (key,))

    def _name(self, path: Path) -> str:
        return "the dataset folder" if path == self.root else self.report.relative(path)

    def _visit(self, folder: Path, depth: int, repeats: int, ancestors: tuple[tuple[int, int], ...]) -> None:
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            if depth == 0:
                raise
            trained = depth == 1
            outcome = ("The trainer stops on a folder it cannot read: fix its permissions (chmod u+rx) or move "
                       "it out of the dataset." if trained else "It is nested too deep to be trained anyway.")
            self.report.add(folder, "unreadable", f"cannot be opened ({exc.strerror or exc}). {outcome}",
                            None if trained else milder(CODES["unreadable"]))
            return
        files, folders = [], []
        for entry in entries:
            if entry.is_dir():
                folders.append(entry)
            elif entry.is_file():
                files.append(entry)
            elif entry.is_symlink():
                self._dead_link(entry, depth)
        if depth <= 1:
            self.folders.append((folder, repeats))
            self._trained_files(folder, files, repeats)
        else:
            self._nested_files(folder, files)
        for entry in folders:
            # Hidden folders hold backups and caches; the trainer never reads them either.
            if entry.name.startswith(".") or depth + 1 > MAX_DEPTH:
                continue
            self._enter(entry, depth + 1, ancestors)

    def _enter(self, entry: os.DirEntry, depth: int, ancestors: tuple[tuple[int, int], ...]) -> None:
        path = Path(entry.path)
        try:
            status = os.stat(path)
        except OSError:
            return
        key = (status.st_dev, status.st_ino)
        first = self._seen.get(key)
        if first is not None:
            # Only a link can lead to a folder twice; following it again could loop forever.
            where = self._name(first)
            if key in ancestors:
                message = f"is a link back to {where}, which contains it: a loop. The scan does not follow it"
            else:
                message = f"is a link to {where}, which is already scanned. The scan does not follow it again"
            if depth == 1:
                message += " and neither does the trainer, so its images are read once. Delete the link."
            else:
                message += "; the trainer does not look this deep, so it does no harm there."
            self.report.add(path, "symlink_loop", message, None if depth == 1 else milder(CODES["symlink_loop"]))
            return
        self._seen[key] = path
        parsed = parse_repeat_folder(entry.name) if depth == 1 and self.folder_name_repeats else None
        repeats = parsed[0] if parsed else self.default_repeats
        self._visit(path, depth, repeats, ancestors + (key,))

    def _dead_link(self, entry: os.DirEntry, depth: int) -> None:
        path = Path(entry.path)
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                self.report.add(path, "symlink_loop", "is a link that leads back to itself; nothing can be "
                                "read through it. Delete it.", "warning" if depth <= 1 else "info")
            elif depth <= 1 and path.suffix.lower() in _IMAGE_LIKE | {self.caption_extension}:
                target = os.readlink(path)
                self.report.add(path, "unreadable", f"is a link to {target}, which does not exist; the trainer "
                                "skips it. Point it at the file or delete it.")

    def _trained_files(self, folder: Path, files: list[os.DirEntry], repeats: int) -> None:
        names = {entry.name for entry in files}
        claimed = set()
        for entry in files:
            path = Path(entry.path)
            suffix = path.suffix.lower()
            if suffix not in _IMAGE_LIKE:
                continue
            caption = path.with_suffix(self.caption_extension)
            claimed.add(caption.name)
            if suffix in UNSUPPORTED_EXTENSIONS:
                readable = ", ".join(IMAGE_EXTENSIONS)
                self.report.add(path, "unsupported", f"is a {UNSUPPORTED_EXTENSIONS[suffix]} file, which the trainer "
                                f"does not read (it reads {readable}). Convert it to PNG to train it, or move it out.")
                continue
            try:
                status = entry.stat()
            except OSError as exc:
                self.report.add(path, "unreadable", f"cannot be read ({exc.strerror or exc}).")
                continue
            # A folder or a pipe with the caption's name is reported as unreadable, as the trainer does.
            present = caption.name in names or caption_problem(caption) is not None
            self.candidates.append(_Candidate(path, folder, repeats, status.st_size, status.st_mtime_ns,
                                              caption if present else None))
        for name in sorted(names - claimed):
            if PurePath(name).suffix == self.caption_extension:
                self.report.add(folder / name, "orphan_caption", "is a caption with no image beside it, so the "
                                "trainer ignores it. Was its image renamed, converted or deleted?")

    def _nested_files(self, folder: Path, files: list[os.DirEntry]) -> None:
        count = sum(1 for entry in files if PurePath(entry.name).suffix.lower() in _IMAGE_LIKE)
        if count:
            top = self.root / folder.relative_to(self.root).parts[0]
            images, them = ("images", "them") if count != 1 else ("image", "it")
            self.report.add(folder, "nested_ignored", f"holds {count} {images} that will not be trained: the trainer "
                            "reads the dataset folder and the folders directly inside it, nothing deeper. Move "
                            f"{them} up into {self._name(top)} to train {them}.")


def _looks_like_text(head: bytes) -> bool:
    if not head or b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the end of the sample is still text.
        return exc.start >= len(head) - 3
    return True


def _cut_short(fmt: str, head: bytes, tail: bytes, size: int) -> bool:
    """Whether the file's last bytes (or its declared length) say it ends before its picture does."""
    ending = tail.rstrip(b"\x00\r\n\t ")
    if fmt in ("JPEG", "MPO"):
        return not ending.endswith(b"\xff\xd9")
    if fmt == "PNG":
        return not ending.endswith(_PNG_END)
    if fmt == "WEBP" and head[:4] == b"RIFF":
        return size < int.from_bytes(head[4:8], "little") + 8
    if fmt == "BMP" and head[:2] == b"BM":
        declared = int.from_bytes(head[2:6], "little")
        return declared > 0 and size < declared
    return False


def _decode_error(path: Path) -> str | None:
    """Decode the whole picture: Pillow's complaint, or None when it decodes."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:
                image.load()
    except Exception as exc:  # Pillow raises many types for damaged data
        return str(exc) or type(exc).__name__
    return None


def _inspect(candidate: _Candidate, report: DatasetReport) -> ScannedImage | None:
    """Read one image's header (and its last bytes); an issue and None when it cannot be trained."""
    path = candidate.path
    if candidate.size == 0:
        report.add(path, "zero_bytes", "is empty (0 bytes), as an interrupted copy or download leaves "
                   "files. Copy it again or delete it.")
        return None
    limit = pixel_limit()
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
            handle.seek(0)
            try:
                with warnings.catch_warnings():
                    # The pixel count is checked below from the header, with a clearer message.
                    warnings.simplefilter("ignore")
                    image = Image.open(handle)
                    width, height, mode, fmt = image.width, image.height, image.mode, image.format or "?"
                    # PNG's getexif() decodes the whole image to look for EXIF after the pixels; the
                    # trainer sees the same rotation unless that rare late chunk rotates the picture.
                    exif = image.getexif() if fmt != "PNG" or "exif" in image.info else {}
                    orientation = exif.get(0x0112, 1)
            except Image.DecompressionBombError as exc:
                found = _BOMB_PIXELS.search(str(exc))
                pixels = int(found.group(1)) if found else 0
                report.add(path, "decompression_bomb", _bomb_message(None, pixels, limit))
                return None
            except Image.UnidentifiedImageError:
                if head.startswith(_SIGNATURES):
                    report.add(path, "broken_image", "starts like a picture but its header is damaged, so it "
                               "cannot be opened. Export it again from the original.")
                elif _looks_like_text(head):
                    report.add(path, "not_an_image", "is not an image: it holds text. Rename it or move it "
                               "out of the dataset.")
                else:
                    report.add(path, "not_an_image", "is not a picture in any format Pillow knows, despite its "
                               "name; the trainer skips it.")
                return None
            except Exception as exc:  # a damaged header makes Pillow's parsers raise many types
                report.add(path, "broken_image", f"has a damaged header ({exc}); the trainer skips it. "
                           "Export it again from the original.")
                return None
            if width * height > limit:
                report.add(path, "decompression_bomb", _bomb_message((width, height), width * height, limit))
                return None
            handle.seek(max(0, candidate.size - _TAIL_BYTES))
            tail = handle.read()
    except OSError as exc:
        report.add(path, "unreadable", f"cannot be read ({exc.strerror or exc}); check its permissions. "
                   "The trainer skips it.")
        return None
    if width < 1 or height < 1:
        report.add(path, "broken_image", "has no pixels (its header says 0 wide or 0 high).")
        return None
    if _cut_short(fmt, head, tail, candidate.size):
        reason = _decode_error(path)
        if reason is not None:
            report.add(path, "broken_image", f"is cut short: the {fmt} data ends early ({reason}). An "
                       "interrupted copy or download does this; copy it again from the original.")
            return None
    if mode == "CMYK":
        report.add(path, "unusual_mode", "is a CMYK (print) image. The trainer converts it to RGB without a "
                   "colour profile, so colours may shift; export it as RGB to be sure.")
    elif mode.startswith("I;16") or mode in ("I", "F"):
        report.add(path, "unusual_mode", f"is a high-bit-depth greyscale image ({mode}). The trainer scales "
                   "it to 8 bits; it trains as a grey picture.")
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    return ScannedImage(path, candidate.folder, candidate.repeats, width, height, fmt, mode, candidate.size,
                        (0, 0), candidate.caption_path, mtime_ns=candidate.mtime_ns)


def _bomb_message(size: tuple[int, int] | None, pixels: int, limit: int) -> str:
    dims = f"{size[0]}×{size[1]} = " if size else ""
    return (f"claims {dims}{pixels / 1e6:,.0f} megapixels, more than the {limit / 1e6:,.0f} megapixels Pillow "
            "opens safely, so it is refused as a possible decompression bomb and not decoded. Shrink it to a "
            "few megapixels if it is a real picture.")


def _check_caption(image: ScannedImage, trigger: str, report: DatasetReport) -> None:
    if image.caption_path is None:
        image.caption = "missing"
        expected = image.path.with_suffix(report.settings["caption_extension"]).name
        report.add(image.path, "missing_caption", f"has no caption ({expected} is missing), so it trains on "
                   "the trigger word alone.")
        return
    try:
        tags = split_tags(read_caption(image.caption_path))
    except OSError as exc:
        image.caption = "missing"
        report.add(image.caption_path, "unreadable", f"cannot be read ({exc.strerror or exc}); the trainer "
                   "refuses to start until it can. Fix its permissions or remove it.")
        return
    if not tags:
        image.caption = "empty"
        report.add(image.path, "empty_caption", f"has an empty caption ({image.caption_path.name}), so it "
                   "trains on the trigger word alone.")
    elif trigger and trigger not in tags:
        image.caption = "no_trigger"
        report.add(image.path, "no_trigger", f"has a caption without the trigger word \"{trigger}\". The "
                   "trainer puts it first anyway; the file stays as it is.")


def _check_length(image: ScannedImage, counter, trigger: str, window: int, report: DatasetReport) -> None:
    try:
        tokens = count_tokens(counter, with_trigger(read_caption(image.caption_path), trigger))
    except OSError:
        return  # reported as unreadable already
    if tokens <= window:
        return
    fits = next((size for size in (150, 225) if size >= tokens), None)
    advice = f"set dataset.max_token_length to {fits} (Setup, advanced) to keep them" if fits else \
        "no window holds it (225 is the longest): shorten it"
    report.add(image.caption_path, "caption_too_long", f"is {tokens} tokens long (with the trigger word), past the "
               f"{window}-token window: the tags after it never reach the model; {advice}.")


def _check_size(image: ScannedImage, resolution: int, use_buckets: bool, upscale: bool,
                report: DatasetReport) -> None:
    # The same threshold as the rules' dataset.small_images: under half the training area.
    if image.width * image.height >= resolution * resolution // 2:
        return
    bucket = f"{image.bucket[0]}×{image.bucket[1]}"
    if use_buckets and not upscale:
        outcome = f"it trains at its own, smaller size ({bucket})"
    else:
        outcome = f"it is scaled up to {bucket}, which blurs it"
    report.add(image.path, "too_small", f"is {image.width}×{image.height}, well below the training size "
               f"{resolution}×{resolution}: {outcome}. A larger source teaches more detail.")


def _summarise(report: DatasetReport, folders: list[tuple[Path, int]], kind: str) -> None:
    counts = Counter(image.folder for image in report.images)
    report.folders = [FolderSummary(path, repeats, counts[path], counts[path] * repeats)
                      for path, repeats in folders if counts[path]]
    if not report.images:
        report.add(report.root, "no_images", f"has no images the trainer can use. It reads "
                   f"{', '.join(IMAGE_EXTENSIONS)} files in this folder and in the folders directly inside it "
                   "(a folder named like 10_name repeats its images 10 times).")
    report.size_severity, report.size_verdict = size_verdict(report.to_dataset_scan(), kind)


def size_verdict(scan: DatasetScan, kind: str) -> tuple[str, str]:
    """The guide's word on this many images for this kind of LoRA: (severity, sentence).

    The rules' own ``dataset.size`` check speaks when it has advice ("tip", "warn", "danger");
    otherwise the count is in the comfortable range and the sentence says so ("ok").
    """
    from loratui.rules import guide
    from loratui.rules.dataset import dataset_size
    from loratui.rules.engine import Context
    from trainer.contract.config.schema import Config, with_value

    kind = kind if kind in guide.DATASET_SIZE else "character"
    found = dataset_size(Context(with_value(Config(), "kind", kind), scan=scan))
    if found is not None:
        return found[0], found[1]
    count = len(scan.images)
    low, high = guide.DATASET_SIZE[kind]
    if kind == "character":
        sweet = guide.CHARACTER_SWEET_SPOT
        return "ok", f"{count} images: in the guide's sweet spot for a character ({sweet[0]}–{sweet[1]})."
    return "ok", f"{count} images: within the guide's {low}–{high} for a {kind} LoRA."
