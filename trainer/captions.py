"""Caption handling: tags, the trigger word and shuffling (no torch).

Captions are comma-separated tags (``zkchar, 1girl, red hair``) or a sentence, which is then a
single "tag". The trigger word goes first so that ``keep_tokens = 1`` holds it in place while
the rest is shuffled each time the caption is used.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from trainer.plan import DatasetImage


def split_tags(caption: str) -> list[str]:
    """The non-empty, stripped tags of a caption."""
    return [tag.strip() for tag in caption.replace("\n", ",").split(",") if tag.strip()]


def join_tags(tags: list[str]) -> str:
    """Tags back into caption text."""
    return ", ".join(tags)


def with_trigger(caption: str, trigger: str) -> str:
    """The caption with the trigger word as its first tag, never twice.

    A caption that already has the trigger as a tag elsewhere has it moved to the front, so
    that shuffling with ``keep_tokens`` keeps it there.
    """
    trigger = trigger.strip()
    tags = split_tags(caption)
    if not trigger:
        return join_tags(tags)
    rest = [tag for tag in tags if tag != trigger]
    return join_tags([trigger] + rest)


def shuffle_tags(caption: str, keep_tokens: int, rng: random.Random) -> str:
    """The caption with every tag after the first ``keep_tokens`` in a random order."""
    tags = split_tags(caption)
    head, tail = tags[:keep_tokens], tags[keep_tokens:]
    rng.shuffle(tail)
    return join_tags(head + tail)


def read_caption(path: Path | None) -> str:
    """The text of a caption file (empty when there is none), whitespace tidied."""
    if path is None:
        return ""
    text = path.read_text(encoding="utf-8", errors="replace")
    return " ".join(text.split())


def tag_frequency(captions: list[str]) -> dict[str, int]:
    """How many captions carry each tag, most common first."""
    counts: dict[str, int] = {}
    for caption in captions:
        for tag in set(split_tags(caption)):
            counts[tag] = counts.get(tag, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


@dataclass(frozen=True)
class CaptionStats:
    """How a dataset's captions stand: the guide's "all images tagged and have the trigger word"."""

    images: int
    missing: tuple[Path, ...]
    """Images with no caption file."""
    empty: tuple[Path, ...]
    """Images whose caption file is empty."""
    without_trigger: tuple[Path, ...]
    """Images whose caption lacks the trigger word as a tag (the trainer adds it; the file lacks it)."""


def caption_stats(images: list[DatasetImage], trigger: str) -> CaptionStats:
    """Read every caption once and count what is missing."""
    missing, empty, without = [], [], []
    trigger = trigger.strip()
    for image in images:
        if image.caption_path is None:
            missing.append(image.path)
            continue
        tags = split_tags(read_caption(image.caption_path))
        if not tags:
            empty.append(image.path)
        if trigger and trigger not in tags:
            without.append(image.path)
    return CaptionStats(len(images), tuple(missing), tuple(empty), tuple(without))
