"""The guide's "Red Flags During Training", checked against a running run (pure Python).

``detect(history, facts)`` looks at a run's losses (a ``LossHistory``) and a few facts from its
events and returns every red flag that holds now; ``RedFlagWatch`` remembers what it has raised
so that each flag is shown once per run.

Per-step diffusion loss is noisy by nature: each step draws a random timestep, and the loss of
a healthy run jumps between about 0.02 and 0.4 from one step to the next. So the two loss flags
never look at single steps. They compare means over windows of steps and demand evidence that
is larger than the noise, measured from the run's own losses (a batch of 4 is about half as
noisy as a batch of 1, and the flags get sharper with it). The price is patience: a gentle but
healthy fall cannot be told from a flat line in the first few hundred steps, so ``loss_flat``
waits for the evidence rather than guess. docs/rules.md ("Red flags") gives the exact triggers.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import sqrt
from typing import TYPE_CHECKING

from loratui.monitor.loss_history import LossHistory, ValidationPoint
from loratui.rules.guide import STEPS_AIM

if TYPE_CHECKING:
    from loratui.runs.state import RunState

CODES = ("oom", "nan", "loss_oscillating", "loss_flat", "overfitting", "too_fast")
"""Every flag, in the order ``detect`` reports them: failures first, then the loss, then the pace."""

# --- loss_flat --------------------------------------------------------------------------------
# The guide: "Loss not decreasing after 100 steps: lower learning rate". The start of the run is
# the mean of its first finite losses (LossHistory.early, 100 of them); now is the mean of the
# last RECENT_WINDOW finite losses after those. z = (start - now) / standard error, so z near 0
# means no visible fall and z of 2 or more a fall well clear of the noise.
FLAT_FROM_STEP = 100
"""The guide's "after 100 steps": no verdict before it."""
FLAT_MIN_LATER = 50
"""Finite losses needed after the first 100 before comparing (so the earliest verdict is step 150)."""
RECENT_WINDOW = 200
"""Losses in "now": 200 steps bring the noise of their mean to about 7% at batch size 1."""
FLAT_Z_AT_START = -2.0
"""At step 100 the flag needs the loss to be clearly *above* its start (two standard errors).

Early on, a healthy run's gentle fall is smaller than the noise: asking for less would flag
one healthy run in three (measured on synthetic runs at batch size 1)."""
FLAT_Z_AT_END = 0.0
"""From FLAT_FULL_STEP on, the flag fires as soon as the loss is no lower than at the start."""
FLAT_FULL_STEP = 1000
"""The bar moves in a straight line from FLAT_Z_AT_START to FLAT_Z_AT_END between step 100 and here.

By step 1000 a healthy run has fallen far enough to stay clear of this bar. Measured on 300
synthetic runs per shape at batch size 1 (timestep-like noise): a flat run is flagged in about
nine runs of ten, typically between steps 400 and 1000; a run falling 35% over its first 1000
steps is wrongly flagged in about 3%, one falling only 25% in 10 to 15%."""

# --- loss_oscillating -------------------------------------------------------------------------
# The guide: "Loss oscillating wildly: batch size too high or LR too high". Judged on means of
# OSC_BLOCK consecutive losses, never on single steps, which swing tenfold in a healthy run.
OSC_MIN_LOSSES = 100
"""Finite losses needed before judging (the start's mean and four blocks)."""
OSC_BLOCK = 25
"""Losses per block: the mean of 25 steps has about a fifth of a single step's noise."""
OSC_SWING = 6.0
"""A block mean this many times a lower, earlier block mean in the recent window is a wild swing.

In healthy synthetic runs at batch size 1 the largest such rise ever seen was 4.4 (57,000
checks); a loss swinging between 0.1 and 1.5 gives well over 6."""
OSC_RISE_WINDOW = 50
"""The last losses whose mean is compared with the start's for a runaway loss."""
OSC_RISE = 2.5
"""A loss whose last 50 steps average this many times its start has run away upwards.

Healthy synthetic runs never went above 1.9."""

# --- overfitting ------------------------------------------------------------------------------
# With a validation split: the held-out images' loss rises while the training loss still falls,
# the classic sign that the LoRA starts to memorise its training images. The validation loss is
# measured at fixed timesteps and noise, so it has none of the per-step dice; what noise is left
# comes from the weights moving. One rise can be that noise, so the flag needs a run of them.
VAL_RISES = 3
"""Consecutive validations each higher than the one before (so four points: the low and three rises)."""
VAL_MIN_RISE = 0.02
"""... which together rise at least 2% above the first of them: smaller rises are rounding-sized."""

# --- too_fast ---------------------------------------------------------------------------------
FAST_SECONDS = 30 * 60
"""The guide: "Training super fast (<30 min): probably too few steps"."""
PACE_KNOWN_STEPS = 20
"""Steps before the pace counts: the first steps include warm-up and compilation."""


@dataclass(frozen=True)
class RedFlag:
    """One of the guide's red flags, raised at ``step``."""

    code: str
    """One of ``CODES``."""
    title: str
    """A short headline."""
    advice: str
    """What to do about it, in a sentence or three."""
    step: int
    """The step at which the flag was raised."""


@dataclass(frozen=True)
class RunFacts:
    """What the flags need to know about a run besides its losses."""

    step: int = 0
    total_steps: int = 0
    seconds_per_step: float | None = None
    """The current pace (smoothed), or None before it is known."""
    device: str | None = None
    """``cpu`` or the GPU's name, from the start event; None before it."""
    error_code: str | None = None
    """The error event's code (``oom``, ``nan``, …), if the run failed."""

    @classmethod
    def from_state(cls, state: RunState, device: str | None) -> RunFacts:
        """The facts of a run as folded by ``RunState`` (which does not keep the device)."""
        return cls(step=state.step, total_steps=state.total_steps, seconds_per_step=state.seconds_per_step,
                   device=device, error_code=state.error_code)


def detect(history: LossHistory, facts: RunFacts) -> list[RedFlag]:
    """Every red flag that holds for this run now, in ``CODES`` order (a pure function)."""
    step = max(facts.step, history.last_step)
    flags = []
    if facts.error_code == "oom":
        flags.append(RedFlag(
            "oom", "Out of GPU memory",
            "The run needed more GPU memory than the card has. Try these one at a time, in this order: "
            "batch size 1 (training.batch_size), training.gradient_checkpointing = true, the adamw8bit "
            "optimizer, a lower dataset.resolution, a smaller network.dim.",
            step))
    if facts.error_code == "nan" or history.nonfinite_count:
        first = history.first_nonfinite_step
        flags.append(RedFlag(
            "nan", "The loss is not a number",
            "The loss became NaN or infinite, a sign that training is blowing up. Lower the learning "
            "rates (optimizer.unet_lr, optimizer.text_encoder_lr); if training.mixed_precision is fp16, "
            "try bf16. The trainer skips such steps, and stops the run if they keep coming.",
            first if first is not None else step))
    early = history.early
    recent = history.recent
    oscillating = _oscillating(early, recent)
    if oscillating:
        flags.append(RedFlag(
            "loss_oscillating", "The loss is swinging wildly",
            f"{oscillating} A learning rate or batch size that is too high does this: lower "
            "optimizer.unet_lr (halve it), or use a smaller training.batch_size.",
            step))
    else:
        flat = _flat(early, recent, history.finite_count, history.early_size, step)
        if flat:
            flags.append(RedFlag(
                "loss_flat", "The loss is not going down",
                f"{flat} The guide's advice is a lower learning rate (optimizer.unet_lr). The loss is "
                "noisy, so look at the smoothed line before you stop the run.",
                step))
    overfitting = _overfitting(history.validation)
    if overfitting:
        flags.append(RedFlag(
            "overfitting", "The validation loss is rising",
            f"{overfitting} The LoRA is starting to learn its training images by heart (overtraining). "
            "Keep an earlier checkpoint (output.save_every_n_epochs saves them), or train for fewer "
            "steps (training.epochs) or at a lower learning rate (optimizer.unet_lr).",
            step))
    too_fast = _too_fast(facts, step)
    if too_fast:
        flags.append(RedFlag("too_fast", "This run will be very short", too_fast, step))
    return flags


def flat_threshold(step: int) -> float:
    """The z below which ``loss_flat`` fires at ``step`` (see ``FLAT_Z_AT_START``)."""
    share = min(1.0, max(0.0, (step - FLAT_FROM_STEP) / (FLAT_FULL_STEP - FLAT_FROM_STEP)))
    return FLAT_Z_AT_START + (FLAT_Z_AT_END - FLAT_Z_AT_START) * share


def fall_z(early: tuple[float, ...], later: tuple[float, ...]) -> float | None:
    """How far the mean fell from ``early`` to ``later``, in standard errors (None: too few losses).

    Positive when the loss fell. Welch's standard error: each window brings its own variance.
    """
    if len(early) < 2 or len(later) < 2:
        return None
    mean_early, var_early = _mean_var(early)
    mean_later, var_later = _mean_var(later)
    if abs(mean_early - mean_later) <= 1e-9 * max(abs(mean_early), abs(mean_later)):
        # Equal up to rounding: a constant loss must not read as a rise measured in rounding errors.
        return 0.0
    error = sqrt(var_early / len(early) + var_later / len(later))
    if error == 0.0:
        # A noiseless loss (only in synthetic runs): any fall at all is evidence.
        return float("inf") if mean_later < mean_early else (float("-inf") if mean_later > mean_early else 0.0)
    return (mean_early - mean_later) / error


def _flat(early: tuple[float, ...], recent: tuple[float, ...], finite: int, early_size: int, step: int) -> str:
    """A sentence comparing the loss now with its start when it has not fallen, else ""."""
    if step < FLAT_FROM_STEP or len(early) < early_size:
        return ""
    later_count = min(len(recent), RECENT_WINDOW, finite - len(early))
    if later_count < FLAT_MIN_LATER:
        return ""
    later = recent[-later_count:]
    z = fall_z(early, later)
    if z is None or z >= flat_threshold(step):
        return ""
    start, now = sum(early) / len(early), sum(later) / len(later)
    higher = round((now / start - 1) * 100) if start > 0 else 0
    if higher >= 1:
        return f"The loss of the last {later_count} steps is {higher}% higher than in the first {len(early)}."
    return f"The loss of the last {later_count} steps is no lower than in the first {len(early)}."


def _oscillating(early: tuple[float, ...], recent: tuple[float, ...]) -> str:
    """A sentence saying how the loss swings, or "" when it does not swing wildly."""
    if len(recent) < OSC_MIN_LOSSES or not early:
        return ""
    start = sum(early) / len(early)
    last = recent[-OSC_RISE_WINDOW:]
    now = sum(last) / len(last)
    if start > 0 and now >= OSC_RISE * start:
        return f"The last {len(last)} steps average {now / start:.1f} times the loss at the start."
    count = len(recent) // OSC_BLOCK
    offset = len(recent) - count * OSC_BLOCK  # blocks end at the newest loss
    blocks = [sum(recent[offset + i * OSC_BLOCK:offset + (i + 1) * OSC_BLOCK]) / OSC_BLOCK for i in range(count)]
    low, rise = blocks[0], 0.0
    for block in blocks[1:]:
        if low > 0:
            rise = max(rise, block / low)
        low = min(low, block)
    if rise >= OSC_SWING:
        return (f"Over the last {count * OSC_BLOCK} steps the loss, averaged over {OSC_BLOCK} steps, "
                f"rose {rise:.0f}-fold from a low.")
    return ""


def _overfitting(points: tuple[ValidationPoint, ...]) -> str:
    """A sentence saying how the validation loss rose while the training loss fell, else ""."""
    if len(points) < VAL_RISES + 1:
        return ""
    window = points[-(VAL_RISES + 1):]
    if any(later.loss <= earlier.loss for earlier, later in zip(window, window[1:])):
        return ""
    first, last = window[0], window[-1]
    if last.loss < first.loss * (1 + VAL_MIN_RISE):
        return ""
    if first.training_loss is None or last.training_loss is None or last.training_loss >= first.training_loss:
        return ""  # both rising is a run going wrong as a whole (the loss flags' business), not overtraining
    return (f"It rose at each of the last {VAL_RISES} validations, from {first.loss:.4g} at step {first.step} "
            f"to {last.loss:.4g} at step {last.step}, while the smoothed training loss fell from "
            f"{first.training_loss:.4g} to {last.training_loss:.4g}.")


def _too_fast(facts: RunFacts, step: int) -> str:
    """The advice when a GPU run will end in under 30 minutes, else ""."""
    device = (facts.device or "").strip()
    if not device or device.lower() == "cpu":
        return ""  # a CPU run is slow by nature; its pace says nothing about the step count
    if step < PACE_KNOWN_STEPS or not facts.seconds_per_step or facts.total_steps <= 0:
        return ""
    total = facts.total_steps * facts.seconds_per_step
    if total >= FAST_SECONDS:
        return ""
    low, high = STEPS_AIM
    return (f"All {facts.total_steps} steps will take about {max(1, round(total / 60))} minutes. The guide reads a "
            f"run under 30 minutes as a sign of too few steps; it aims for {low}–{high}. If the count "
            "is already there, a fast GPU is the reason and all is well.")


def _mean_var(values: tuple[float, ...]) -> tuple[float, float]:
    """The mean and the sample variance (n - 1) of at least two values."""
    count = len(values)
    mean = sum(values) / count
    return mean, sum((v - mean) ** 2 for v in values) / (count - 1)


class RedFlagWatch:
    """Raises each red flag once per run: ``update`` returns only flags not raised before."""

    def __init__(self) -> None:
        self._raised: dict[str, RedFlag] = {}

    def update(self, history: LossHistory, facts: RunFacts) -> list[RedFlag]:
        """The flags that hold now and were not raised before; they count as raised from here on."""
        new = [flag for flag in detect(history, facts) if flag.code not in self._raised]
        for flag in new:
            self._raised[flag.code] = flag
        return new

    @property
    def raised(self) -> list[RedFlag]:
        """Every flag raised so far, in the order raised."""
        return list(self._raised.values())

    def reset(self) -> None:
        """Forget the raised flags, as for a new run."""
        self._raised.clear()
