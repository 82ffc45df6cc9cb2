"""The model families whose samples need their own prompt conventions, and those conventions, in one place.

Pony Diffusion XL, Illustrious XL and NoobAI-XL were trained with quality tags in every caption, so
a sample drawn without their quality tags and usual negative prompt looks worse than the LoRA is.
The app knows a model only by its name (they are all SDXL to the trainer), so the family is read
from the name of ``model.base``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """A model family's sampling conventions."""

    name: str
    quality_tags: tuple[str, ...]
    """Tags its prompts lead with; any one of them in a prompt counts as using them."""
    negative: str
    """A negative prompt in the family's usual style (the fix sets it)."""


PONY = Family("Pony", ("score_9", "score_8_up", "score_7_up"),
              "score_4, score_5, score_6, worst quality, low quality, blurry, watermark, signature")
ILLUSTRIOUS = Family("Illustrious", ("masterpiece", "best quality", "very aesthetic", "absurdres"),
                     "worst quality, low quality, lowres, bad anatomy, bad hands, blurry, watermark, signature")
NOOBAI = Family("NoobAI", ("masterpiece", "best quality", "newest", "very awa"),
                "worst quality, low quality, old, early, lowres, bad anatomy, bad hands, watermark, signature")

_NAMES = ((re.compile(r"noob"), NOOBAI), (re.compile(r"pony|pdxl"), PONY),
          (re.compile(r"illustrious|(?<![a-z])ilxl|(?<![a-z])il[-_ ]?xl"), ILLUSTRIOUS))
"""Name patterns, most specific first (NoobAI is built on Illustrious, and often says so in its name)."""


def family_of(model: str) -> Family | None:
    """The family a model's file, folder or repository name says, or None (only the last part of the path
    counts: a folder of many models called ``pony`` says nothing about the one in it)."""
    name = model.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1].lower()
    for pattern, family in _NAMES:
        if pattern.search(name):
            return family
    return None
