"""Sample prompts with sd-scripts' prompt-file options, read without torch (the app shows and checks them).

A prompt in ``output.sample_prompts`` is written as a line of sd-scripts' prompt file:
``a cat, red scarf --n blurry --w 768 --h 512 --l 6 --s 28 --d 1234``. The text before the first
`` --`` is the prompt; each option is a letter (or ``ss``) and its value:

- ``--n`` negative prompt, ``--l`` CFG scale, ``--s`` denoising steps, ``--d`` seed,
- ``--w`` / ``--h`` width and height, rounded down to a multiple of 64 as sd-scripts does,
- ``--ss`` the sampler for this prompt (the names of ``output.sample_sampler``).

sd-scripts silently ignores an option it cannot read; here a bad value (``--s abc``, ``--w 100000``)
or an unknown option is a ``Problem`` naming ``output.sample_prompts``, found before anything loads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trainer.contract.config.messages import quoted
from trainer.contract.config.names import Problem

FIELD = "output.sample_prompts"

SAMPLERS = ("euler", "euler_a", "ddim", "dpmsolver++", "heun", "lms", "pndm")
"""Sampler names, as sd-scripts spells them (``output.sample_sampler`` and ``--ss``)."""

SAMPLER_ALIASES = {"k_euler": "euler", "k_euler_a": "euler_a", "k_lms": "lms"}
"""sd-scripts' other spellings of the same samplers."""

SIZE_STEP = 64
"""sd-scripts rounds a prompt's width and height down to a multiple of this."""
MIN_SIZE, MAX_SIZE = 64, 4096
MAX_STEPS = 150
MAX_CFG = 30.0
MAX_SEED = 2**32 - 1

OPTION_NAMES = {"n": "negative prompt", "l": "CFG scale", "s": "steps", "w": "width", "h": "height", "d": "seed",
                "ss": "sampler"}
"""The options a prompt may carry, with what each sets."""


@dataclass(frozen=True)
class SamplePrompt:
    """One prompt and the options written after it (None: the run's own setting applies)."""

    text: str
    negative: str | None = None
    cfg: float | None = None
    steps: int | None = None
    width: int | None = None
    height: int | None = None
    seed: int | None = None
    sampler: str | None = None

    def options_text(self) -> str:
        """The options as written in a prompt file (``--w 768 --h 512 ...``), in a fixed order; "" without any."""
        parts = []
        for letter, value in (("n", self.negative), ("w", self.width), ("h", self.height), ("l", self.cfg),
                              ("s", self.steps), ("d", self.seed), ("ss", self.sampler)):
            if value is not None:
                parts.append(f"--{letter} {value:g}" if isinstance(value, float) else f"--{letter} {value}")
        return " ".join(parts)

    def line(self) -> str:
        """The prompt-file line that reads back as this prompt."""
        options = self.options_text()
        return f"{self.text} {options}" if options else self.text


def sampler_name(value: object) -> str | None:
    """loratui's name for a sampler as sd-scripts accepts it (any case, ``k_euler`` or ``Euler A``), or None."""
    name = str(value).strip().lower().replace(" ", "_")
    name = SAMPLER_ALIASES.get(name, name)
    return name if name in SAMPLERS else None


class PromptError(ValueError):
    """A prompt option that cannot be used; the message says which and what to write instead."""


def split_options(line: str) -> tuple[str, list[tuple[str, str]]]:
    """The prompt text and its ``(option, value)`` pairs, in order, as sd-scripts splits a line (on `` --``)."""
    parts = line.split(" --")
    pairs = []
    for part in parts[1:]:
        key, _, value = part.strip().partition(" ")
        pairs.append((key.lower(), value.strip()))
    return parts[0].strip(), pairs


def parse_prompt(line: str) -> SamplePrompt:
    """One prompt with its options; PromptError names the first option that cannot be used."""
    text, pairs = split_options(line.strip())
    values: dict[str, object] = {}
    for key, value in pairs:
        if key not in OPTION_NAMES:
            known = ", ".join(f"--{k}" for k in OPTION_NAMES)
            raise PromptError(f"--{key} is not a prompt option (they are {known})" if key else
                              "has a lone -- with no option letter after it")
        values[key] = _option_value(key, value)
    return SamplePrompt(text=text, negative=values.get("n"), cfg=values.get("l"), steps=values.get("s"),
                        width=values.get("w"), height=values.get("h"), seed=values.get("d"),
                        sampler=values.get("ss"))


def _option_value(key: str, value: str) -> object:
    name = OPTION_NAMES[key]
    if key == "n":
        return value
    if key == "ss":
        sampler = sampler_name(value)
        if sampler is None:
            raise PromptError(f"--ss {quoted(value)} is not a sampler; use one of {', '.join(SAMPLERS)}")
        return sampler
    if key == "l":
        try:
            number = float(value)
        except ValueError:
            raise PromptError(f"--l {quoted(value)} is not a number; write a CFG scale such as --l 7") from None
        if not (math.isfinite(number) and 0 <= number <= MAX_CFG):
            raise PromptError(f"--l {quoted(value)} is outside 0 to {MAX_CFG:g} (0: the pipeline's own scale)")
        return number
    try:
        number = int(value)
    except ValueError:
        raise PromptError(f"--{key} {quoted(value)} is not a whole number ({name})") from None
    if key == "s" and not 1 <= number <= MAX_STEPS:
        raise PromptError(f"--s {number} is outside 1 to {MAX_STEPS} steps")
    if key in ("w", "h"):
        if not MIN_SIZE <= number <= MAX_SIZE:
            raise PromptError(f"--{key} {number} is outside {MIN_SIZE} to {MAX_SIZE} pixels ({name})")
        return number - number % SIZE_STEP
    if key == "d" and not 0 <= number <= MAX_SEED:
        raise PromptError(f"--d {number} is outside 0 to {MAX_SEED} (seed)")
    return number


def prompt_problems(prompts: object) -> list[Problem]:
    """One Problem per configured prompt whose options cannot be used, naming the prompt."""
    if not isinstance(prompts, list):
        return []  # the field's own type check reports it
    problems = []
    for prompt in prompts:
        if not isinstance(prompt, str) or not prompt.strip():
            continue
        try:
            parse_prompt(prompt)
        except PromptError as exc:
            problems.append(Problem(FIELD, f"the prompt {quoted(prompt.strip())}: {exc}."))
    return problems
