"""Caption handling: tags, the trigger word and shuffling (no torch).

Captions are comma-separated tags (``zkchar, 1girl, red hair``) or a sentence, which is then a
single "tag". The trigger word goes first so that ``keep_tokens = 1`` holds it in place while
the rest is shuffled each time the caption is used.
"""

from __future__ import annotations

import errno
import os
import random
import stat
from dataclasses import dataclass
from pathlib import Path


class CaptionReadError(OSError):
    """A caption file that is there but cannot be read: no permission, or not a regular file.

    An OSError, so code that already handles unreadable files keeps working; ``strerror`` is the
    reason in words, ``filename`` the caption file, and ``str()`` one sentence with what to do.
    """

    def __str__(self) -> str:
        return (f"the caption file {self.filename} cannot be read ({self.strerror}); make it a readable text "
                "file (chmod u+r) or remove it to train that image without a caption")


_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def _open_regular(path: Path) -> int:
    """A read-only descriptor of a regular file; the caller closes it.

    A named pipe (FIFO) with a caption's name would make a plain open wait forever for a writer,
    and a device could be endless, so the file is opened non-blocking and checked through the
    open descriptor (nothing can be swapped in between) to be a regular file.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise CaptionReadError(exc.errno, exc.strerror or str(exc), str(path)) from None
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError as exc:
        os.close(fd)
        raise CaptionReadError(exc.errno, exc.strerror or str(exc), str(path)) from None
    if not regular:
        os.close(fd)
        raise CaptionReadError(errno.EINVAL, "not a regular file: a folder, a pipe or a device has its name",
                               str(path))
    return fd


def read_regular_file(path: Path) -> bytes:
    """The bytes of a regular file, read without ever blocking.

    Raises FileNotFoundError when nothing is there (a link to nothing included) and
    CaptionReadError for anything else in the way: no permission, a folder, a pipe, a device.
    """
    fd = _open_regular(path)
    try:
        with os.fdopen(fd, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise CaptionReadError(exc.errno, exc.strerror or str(exc), str(path)) from None


def caption_problem(path: Path) -> str | None:
    """Why the caption file at ``path`` cannot be read, or None when it can (or there is none).

    Opens the file without reading it, so a dataset scan can check every caption cheaply. A link
    to nothing counts as no caption, as the app's dataset scan tells the user.
    """
    try:
        os.close(_open_regular(path))
    except FileNotFoundError:
        return None
    except CaptionReadError as exc:
        return str(exc.strerror)
    return None


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
    """The text of a caption file (empty when there is none), whitespace tidied.

    Raises CaptionReadError (naming the file) when it cannot be read; a missing file is an error
    too, since a scan only hands out caption paths of files it found.
    """
    if path is None:
        return ""
    try:
        data = read_regular_file(path)
    except FileNotFoundError as exc:
        raise CaptionReadError(exc.errno, exc.strerror or "it does not exist", str(path)) from None
    return " ".join(data.decode("utf-8", errors="replace").split())


def tag_frequency(captions: list[str]) -> dict[str, int]:
    """How many captions carry each tag, most common first."""
    counts: dict[str, int] = {}
    for caption in captions:
        for tag in set(split_tags(caption)):
            counts[tag] = counts.get(tag, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))
