"""One tagging job from start to finish: scan, load the model, caption each image, write.

Captions are collected while the model runs and written once, at the end, through
``trainer.contract.caption_store.apply_edits``: the whole job is then a single change that one undo takes
back, which matters more to someone who just captioned a dataset with the wrong model than the
work a crash could cost. Nothing collected is lost on a stop request or when the model fails
part-way: what was done is written before the job ends. Only a hard kill (SIGKILL, the kernel's
out-of-memory killer) loses it, and then no caption has been touched.

Modes (``job.json`` "mode"):

- ``keep``: images that already have a non-empty caption are left alone (and not even run
  through the model); the others get one.
- ``append``: the new tags go after the existing ones; a tag already present (ignoring case and
  ``_`` versus space) is not added twice.
- ``overwrite``: the new caption replaces the old one.

The trigger word, when the job names one, becomes the first tag of every caption the job writes.
"""

from __future__ import annotations

import signal
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image, ImageOps

from trainer.contract.caption_store import CaptionWriteError, apply_edits
from trainer.contract.captions import join_tags, split_tags, with_trigger
from trainer.contract.events import EventWriter
from trainer.contract.dataset_scan import IMAGE_EXTENSIONS, scan_dataset
from trainer.contract.tagging_jobs import DEFAULT_MODELS, MODEL_NAMES, JobPaths, TagJob, TaggingError, read_job
from trainer.contract.stop import StopRequest


def _tag_key(tag: str) -> str:
    # "long_hair", "Long hair" and "long hair" are one tag to a person reading the caption.
    return " ".join(tag.replace("_", " ").lower().split())


def merge_caption(existing: str, new_tags: list[str], mode: str, trigger: str = "") -> str:
    """The caption a job writes, from the current caption text and what the model produced.

    ``mode`` is ``keep`` (only called for images without a caption, so the new tags are the
    caption), ``append`` or ``overwrite``. The trigger word, if any, goes first.
    """
    if mode == "append":
        tags = split_tags(existing)
        seen = {_tag_key(tag) for tag in tags}
        for tag in new_tags:
            if _tag_key(tag) not in seen:
                tags.append(tag)
                seen.add(_tag_key(tag))
    else:
        tags = list(new_tags)
    caption = join_tags(tags)
    return with_trigger(caption, trigger) if trigger.strip() else caption


def open_image(path: Path) -> Image.Image:
    """An image decoded and turned upright (EXIF); ValueError with a plain reason when it cannot be."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as opened:
                # exif_transpose returns a loaded copy, which outlives the closed file; converting
                # here turns an odd pixel format into a per-image warning rather than a failed job.
                return ImageOps.exif_transpose(opened).convert("RGBA")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError("too many pixels (refused as a possible decompression bomb)") from None
    except Image.UnidentifiedImageError:
        raise ValueError("not an image Pillow can read (broken or another format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"cannot be decoded ({exc})") from None


def load_tagger(job: TagJob) -> tuple[Callable[[Image.Image], list[str]], str]:
    """A function from a picture to its new tags (BLIP: one sentence), and the device it runs on.

    The model libraries are imported here, not at the top: a WD14 job never loads torch, which
    saves seconds and hundreds of megabytes.
    """
    if job.tagger == "wd14":
        from trainer.tagging.wd14 import load_wd14, tag_image

        tagger = load_wd14(job.model, job.thresholds.get("general"), job.thresholds.get("character"))
        return (lambda image: tag_image(tagger, image, underscores_to_spaces=job.underscores_to_spaces)), tagger.device
    from trainer.tagging.blip import load_blip

    captioner = load_blip(job.model)

    def caption(image: Image.Image) -> list[str]:
        text = captioner.caption(image)
        return [text] if text else []

    return caption, captioner.device


@dataclass
class _Tally:
    """What happened to the images so far."""

    tagged: int = 0
    """Images the model produced a caption for (written or, if it equals the old one, kept)."""
    skipped: int = 0
    """Images left alone because they already had a caption (mode keep)."""
    failed: int = 0
    changed: int = 0
    change_id: str | None = None


def _write(job: TagJob, edits: dict[Path, str], tally: _Tally) -> None:
    """Write the collected captions as one undoable change; stop signals are ignored from here on."""
    if not edits:
        return
    # A stop signal in the middle of writing would leave half a change, and one just after it
    # would be reported as "nothing written": signals are ignored from here on. Only the final
    # event is left to write, which takes no time.
    if threading.current_thread() is threading.main_thread():  # only the main thread may set handlers
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    change = apply_edits(Path(job.dataset), edits,
                         f"auto-caption with {MODEL_NAMES[job.tagger]} {job.model} ({job.mode})")
    if change is not None:
        tally.changed = len(change.files)
        tally.change_id = change.id


def run_job(paths: JobPaths, events: EventWriter, stop: StopRequest) -> int:
    """Run the job in ``paths`` and report through ``events``; return the exit status.

    0: done or stopped on request; 1: the model or the writing failed; 2: the job or its
    dataset is unusable. Unexpected exceptions propagate (``__main__`` reports them).
    """
    started = time.monotonic()
    try:
        job = read_job(paths.root)
    except TaggingError as exc:
        events.emit("error", code=exc.code, message=exc.message, advice=exc.advice)
        return 2
    dataset = Path(job.dataset)
    if not dataset.is_dir():
        events.emit("error", code="input", message=f"{dataset} is not a folder",
                    advice="Check the dataset path and create the job again.")
        return 2

    # ── find the images and decide which ones to caption ──────────────────────────────────
    scan = scan_dataset(dataset, 1, job.caption_extension)
    tally = _Tally()
    for path, why in scan.skipped:
        tally.failed += 1
        events.emit("warning", code="image_skipped", message=f"{path.name} is skipped: {why}", file=str(path))
    if not scan.images:
        events.emit("error", code="input", message=f"{dataset} holds no images that can be read",
                    advice=f"Put {', '.join(IMAGE_EXTENSIONS)} files in it (or in N_name sub-folders).")
        return 2
    todo: list[tuple[Path, Path, str]] = []  # (image, caption file, its current text)
    for image in scan.images:
        caption_file = image.path.with_suffix(job.caption_extension)
        try:
            current = caption_file.read_text(encoding="utf-8", errors="replace") if caption_file.is_file() else ""
        except OSError as exc:
            tally.failed += 1
            events.emit("warning", code="image_skipped", file=str(image.path),
                        message=f"{image.path.name} is skipped: its caption cannot be read ({exc.strerror or exc})")
            continue
        if job.mode == "keep" and split_tags(current):
            tally.skipped += 1
        else:
            todo.append((image.path, caption_file, current))

    def start(device: str | None) -> None:
        events.emit("start", images=len(scan.images), to_caption=len(todo), tagger=job.tagger, model=job.model,
                    mode=job.mode, device=device, dataset=str(dataset))

    def finish(final: str, **fields) -> None:
        events.emit(final, changed=tally.changed, kept=tally.skipped + tally.tagged - tally.changed,
                    failed=tally.failed, change_id=tally.change_id, output=str(paths.root),
                    seconds=round(time.monotonic() - started, 2), **fields)

    if not todo:
        start(None)
        finish("done")
        return 0

    # ── load the model ─────────────────────────────────────────────────────────────────────
    default = " (the default)" if job.model == DEFAULT_MODELS[job.tagger] else ""
    events.emit("status", phase="loading", message=f"Loading the {MODEL_NAMES[job.tagger]} {job.model}{default}")
    try:
        tag, device = load_tagger(job)
    except TaggingError as exc:
        events.emit("error", code=exc.code, message=exc.message, advice=exc.advice)
        return 1
    start(device)

    # ── caption each image ─────────────────────────────────────────────────────────────────
    edits: dict[Path, str] = {}
    processed = 0
    try:
        for index, (image_path, caption_file, current) in enumerate(todo):
            if stop.requested:
                break
            try:
                picture = open_image(image_path)
            except ValueError as exc:
                tally.failed += 1
                events.emit("warning", code="image_skipped", file=str(image_path),
                            message=f"{image_path.name} is skipped: {exc}")
            else:
                new_tags = tag(picture)
                if new_tags:
                    tally.tagged += 1
                    edits[caption_file] = merge_caption(current, new_tags, job.mode, job.trigger_word)
                else:
                    tally.failed += 1
                    events.emit("warning", code="no_caption", file=str(image_path),
                                message=f"the model wrote nothing for {image_path.name}; its caption is unchanged")
            processed = index + 1
            events.emit("status", phase="tagging", current=processed, total=len(todo),
                        file=str(image_path.relative_to(dataset)))
    except Exception:
        # The model failed part-way (out of memory, a broken install): keep what was done.
        _write_after_failure(job, edits, tally, events)
        raise

    # ── write, as one change that can be undone ────────────────────────────────────────────
    try:
        _write(job, edits, tally)
    except CaptionWriteError as exc:
        events.emit("error", code="input", message=str(exc),
                    advice="No caption was changed. Fix what the message names (a read-only file or folder, or "
                           "a caption that links out of the dataset) and run the job again.")
        return 1
    if stop.requested:
        finish("stopped", reason=stop.reason, remaining=len(todo) - processed)
    else:
        finish("done")
    return 0


def _write_after_failure(job: TagJob, edits: dict[Path, str], tally: _Tally, events: EventWriter) -> None:
    """Write what was captioned before the model failed, and say so in a warning."""
    try:
        _write(job, edits, tally)
    except CaptionWriteError as exc:
        events.emit("warning", code="captions_unwritten", message=f"the captions made so far were not written: {exc}")
        return
    if tally.changed:
        events.emit("warning", code="partial_write",
                    message=f"{tally.changed} captions made before the failure were written; "
                            "`loratui dataset undo` takes them back")
