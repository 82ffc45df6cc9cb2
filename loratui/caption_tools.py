"""Caption clean-up shared by ``loratui dataset`` and the dataset screen (pure Python).

The guide's first phase asks for tidy tags, the trigger word in every caption, and consistency
("same character = same tags"). The functions here compute those changes; none of them writes.
Each operation takes the current texts (caption path → text, a missing caption being "") and
returns only the entries it changes, ready for ``trainer.contract.caption_store.apply_edits``, which backs
every file up first and can undo the change.

An entry counts as changed only when its list of tags changes, so a caption is never rewritten
just to tidy its spacing. Changed captions are written back as ``tag, tag, tag``.

Tags are compared exactly (after trimming the spaces around them) unless ``loose`` is set: then
case, underscores and runs of spaces are ignored, so ``Long_Hair`` matches ``long  hair``, which
is how booru-style taggers and hand-written captions usually differ.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from trainer.contract.captions import join_tags, split_tags, tag_frequency, with_trigger
from trainer.contract.dataset_scan import scan_dataset

KINDS = ("character", "style", "concept")
"""The LoRA kinds the tag table knows; only "character" flags rare tags."""
RARE_SHARE = 0.10
"""For a character, a tag on at most this share of the images is flagged as inconsistent…"""
RARE_COUNT = 1
"""…and so is a tag on at most this many images, however small the dataset."""
MIN_IMAGES_TO_FLAG = 5
"""Below this many images every tag is rare by arithmetic, so nothing is flagged."""
SORT_ORDERS = ("name", "frequency")


@dataclass(frozen=True)
class TagRow:
    """One line of the tag frequency table."""

    tag: str
    count: int
    """How many captions carry the tag."""
    share: float
    """``count`` over the number of captions (0–1)."""
    flagged: bool
    """True when the tag looks inconsistent (see ``reason``)."""
    reason: str
    """Why it is flagged, in words; empty when it is not."""


# ── reading ─────────────────────────────────────────────────────────────────────────────────

def read_captions(dataset: Path, caption_extension: str = ".txt", default_repeats: int = 1) -> dict[Path, Path]:
    """Every usable image of a dataset with its caption path, whether that file exists or not.

    The images are the ones the trainer would use (``trainer.contract.dataset_scan.scan_dataset``), so captions
    of skipped files are left alone. ``default_repeats`` only matters to the scan's repeat counts.
    """
    scan = scan_dataset(dataset, default_repeats, caption_extension)
    return {image.path: image.path.with_suffix(caption_extension) for image in scan.images}


def read_texts(caption_paths: Iterable[Path]) -> dict[Path, str]:
    """The current text of each caption path ("" for a missing one).

    A UTF-8 byte-order mark is dropped (it would otherwise stick to the first tag) and bytes that
    are not UTF-8 become U+FFFD, as the trainer reads them; the backup keeps the original bytes.
    """
    texts = {}
    for path in caption_paths:
        path = Path(path)
        texts[path] = path.read_text(encoding="utf-8-sig", errors="replace") if path.is_file() else ""
    return texts


def load_texts(dataset: Path, caption_extension: str = ".txt") -> dict[Path, str]:
    """The caption text of every usable image of a dataset, keyed by caption path."""
    return read_texts(read_captions(dataset, caption_extension).values())


# ── the consistency check ────────────────────────────────────────────────────────────────────

def rare_limit(images: int) -> int:
    """The largest count at which a character's tag is flagged, for a dataset of ``images``."""
    return max(RARE_COUNT, math.floor(images * RARE_SHARE))


def tag_table(captions: list[str], kind: str = "character", trigger: str = "") -> list[TagRow]:
    """How many captions carry each tag, most common first, with inconsistent tags flagged.

    For a character LoRA, a tag on only a few images (at most 10% of them, or on a single one:
    :func:`rare_limit`) is flagged: the guide's "same character = same tags" means a trait is
    described wherever it shows or nowhere, else the model learns it as an accident of a few
    pictures. Nothing is flagged below :data:`MIN_IMAGES_TO_FLAG` images, nor for styles and
    concepts (whose pictures differ on purpose), and the trigger word never is.
    """
    total = len(captions)
    trigger = trigger.strip()
    check = kind == "character" and total >= MIN_IMAGES_TO_FLAG
    limit = rare_limit(total)
    rows = []
    for tag, count in tag_frequency(captions).items():
        flagged = check and tag != trigger and count <= limit
        reason = ""
        if flagged:
            reason = (f"only on {count} of {total} images: describe it everywhere it shows, "
                      "or remove it everywhere")
        rows.append(TagRow(tag, count, count / total if total else 0.0, flagged, reason))
    return rows


# ── operations ──────────────────────────────────────────────────────────────────────────────

def tag_key(tag: str, loose: bool = False) -> str:
    """What two tags are compared by: the tag itself, or with ``loose`` its case-folded form with
    underscores as spaces and runs of spaces as one."""
    tag = tag.strip()
    if not loose:
        return tag
    return " ".join(tag.replace("_", " ").split()).casefold()


def _changed(texts: dict[Path, str], transform: Callable[[list[str]], list[str]]) -> dict[Path, str]:
    """The new text of every caption whose tags ``transform`` changes."""
    edits = {}
    for path, text in texts.items():
        tags = split_tags(text)
        new = transform(tags)
        if new != tags:
            edits[path] = join_tags(new)
    return edits


def check_trigger(word: str) -> str:
    """The trigger word stripped; ValueError when it is empty or would split into two tags."""
    word = word.strip()
    if not word:
        raise ValueError("the trigger word is empty")
    if "," in word or "\n" in word:
        raise ValueError(f"the trigger word {word!r} contains a comma or a line break, "
                         "so it would become two tags; pick a single word or phrase without one")
    return word


def add_trigger(texts: dict[Path, str], word: str) -> dict[Path, str]:
    """Put the trigger word first in every caption, never twice.

    A caption that has the word elsewhere gets it moved to the front (so ``keep_tokens = 1``
    keeps it there while the rest is shuffled), extra copies are dropped, and a missing or empty
    caption becomes just the word. Raises ValueError for an unusable word (:func:`check_trigger`).
    """
    word = check_trigger(word)
    return _changed(texts, lambda tags: split_tags(with_trigger(join_tags(tags), word)))


def remove_tags(texts: dict[Path, str], tags: Iterable[str], loose: bool = False) -> dict[Path, str]:
    """Remove these tags (whole tags only: removing "hair" leaves "red hair") from every caption."""
    unwanted = {tag_key(tag, loose) for tag in tags if tag.strip()}
    return _changed(texts, lambda current: [t for t in current if tag_key(t, loose) not in unwanted])


def replace_tag(texts: dict[Path, str], old: str, new: str, loose: bool = False) -> dict[Path, str]:
    """Replace a whole tag by another in every caption, keeping its position.

    ``new`` may hold several comma-separated tags (each takes the old one's place, in order) or
    be empty, which removes the tag. A replacement already present in a caption is not added a
    second time: the first occurrence stays. Only whole tags match: "hair" never touches
    "red hair".
    """
    wanted = tag_key(old, loose)
    if not wanted:
        raise ValueError("the tag to replace is empty")
    replacements = split_tags(new)

    def transform(tags: list[str]) -> list[str]:
        if not any(tag_key(t, loose) == wanted for t in tags):
            return tags
        out: list[str] = []
        for tag in tags:
            out.extend(replacements if tag_key(tag, loose) == wanted else [tag])
        return _first_only(out, {tag_key(t, loose) for t in replacements}, loose)

    return _changed(texts, transform)


def _first_only(tags: list[str], keys: set[str], loose: bool) -> list[str]:
    """``tags`` with the later copies of the tags whose key is in ``keys`` dropped."""
    seen: set[str] = set()
    out = []
    for tag in tags:
        key = tag_key(tag, loose)
        if key in keys:
            if key in seen:
                continue
            seen.add(key)
        out.append(tag)
    return out


def dedupe_tags(texts: dict[Path, str], loose: bool = False) -> dict[Path, str]:
    """Drop repeated tags from each caption, keeping the first occurrence where it stands."""
    return _changed(texts, lambda tags: _first_only(tags, {tag_key(t, loose) for t in tags}, loose))


def sort_tags(texts: dict[Path, str], keep_first: int = 1, by: str = "name") -> dict[Path, str]:
    """Sort each caption's tags, leaving its first ``keep_first`` tags where they are.

    ``keep_first`` should match the training's ``keep_tokens`` (1 for a caption that starts
    with the trigger word), so the trigger stays in front. ``by="name"`` sorts the rest
    alphabetically (ignoring case); ``by="frequency"`` puts the tags common across the whole
    dataset first (ties alphabetically), which makes captions easy to compare side by side.
    """
    if by not in SORT_ORDERS:
        raise ValueError(f"unknown sort order {by!r}; use one of {', '.join(SORT_ORDERS)}")
    keep_first = max(0, keep_first)
    counts = tag_frequency(list(texts.values())) if by == "frequency" else {}

    def key(tag: str) -> tuple[int, str, str]:
        return (-counts.get(tag, 0), tag.casefold(), tag)

    return _changed(texts, lambda tags: tags[:keep_first] + sorted(tags[keep_first:], key=key))
