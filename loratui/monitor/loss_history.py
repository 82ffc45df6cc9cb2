"""A run's per-step loss and learning rate, kept in bounded memory (pure Python).

A monitor that keeps every step of a long run grows without end: a million steps of floats is
tens of megabytes, and plotting them all is slow. ``LossHistory`` keeps at most ``capacity``
buckets instead. Each bucket sums a run of consecutive steps; when there are too many, each
neighbouring pair is merged into one, so the buckets double in width and the memory stays the
same whatever the run's length, while the plot still shows the whole run from its first step.

Alongside the buckets it keeps what the red-flag detector reads (``loratui.monitor.red_flags``): the
last few hundred finite losses as they came, the first few dozen, and a smoothed loss. With a
validation split it also keeps the validation losses (``add_validation``), each with the smoothed
training loss of its step: there are few of them (one per validation), so they are kept as points.

One thread may call ``add`` while others read: a lock guards the state, and readers get copies.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from math import isfinite

SMOOTHING = 0.98
"""Weight the smoothed loss gives its past (an exponential moving average).

Per-step diffusion loss jumps between about 0.02 and 0.4 with the random timestep, so light
smoothing (TensorBoard's default 0.6) still looks like noise. 0.98 averages over roughly the
last 50 steps (1 / (1 - 0.98)), which shrinks that noise about tenfold; the curve trails the
truth by a few dozen steps, which is small against the guide's 250–2000-step runs. The average
is bias-corrected (divided by 1 - 0.98^n after n losses) so that its start is not dragged
towards zero, and a constant loss gives exactly that constant from the first step."""

VALIDATION_CAPACITY = 1024
"""Validation points kept; beyond it every other old one is dropped (the newest always stays)."""

DEFAULT_CAPACITY = 2048
"""Buckets kept: enough points for any terminal width, and a copy of them takes well under a ms."""
RECENT_SIZE = 200
"""Finite losses kept as they came, newest last: the red-flag detector's recent window."""
EARLY_SIZE = 100
"""The first finite losses of the run, kept as the reference the detector compares against
(a hundred, because the mean of fewer swings by more than a gentle fall at batch size 1)."""

# A bucket is a plain list (faster to update than an object with attributes):
# [first step, last step, steps, finite losses, loss sum, smoothed sum, step sum, rates, rate sum].
# The step sum counts only steps with a finite loss, so a point sits at the mean of its plotted steps.
_FIRST, _LAST, _N, _LOSS_N, _LOSS_SUM, _SMOOTH_SUM, _STEP_SUM, _LR_N, _LR_SUM = range(9)


@dataclass
class Series:
    """Plot-ready points: four lists of the same length, oldest first, and the validation points."""

    steps: list[float] = field(default_factory=list)
    """The mean step of each point (steps whose loss was not finite are not counted)."""
    loss: list[float] = field(default_factory=list)
    """The mean raw loss of each point."""
    smoothed: list[float] = field(default_factory=list)
    """The mean smoothed loss of each point (see ``SMOOTHING``)."""
    lr: list[float] = field(default_factory=list)
    """The mean learning rate of each point (the previous point's when none was reported)."""
    validation_steps: list[float] = field(default_factory=list)
    """The step of each validation (its own length: validations are few)."""
    validation_loss: list[float] = field(default_factory=list)
    """The validation loss at each of ``validation_steps``."""

    def __len__(self) -> int:
        """The number of points."""
        return len(self.steps)


@dataclass(frozen=True)
class ValidationPoint:
    """One validation: its step, its loss and the smoothed training loss at that step."""

    step: int
    loss: float
    training_loss: float | None
    """The smoothed training loss when the validation came (None before any finite training loss)."""


class LossHistory:
    """The whole run's loss and learning rate in at most ``capacity`` buckets, plus recent raw losses."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY, *, recent_size: int = RECENT_SIZE,
                 early_size: int = EARLY_SIZE) -> None:
        if capacity < 2:
            raise ValueError(f"capacity must be at least 2 (got {capacity}): pairs of buckets are merged")
        self.capacity = capacity
        self._recent_size = recent_size
        self._early_size = early_size
        self._lock = threading.Lock()
        self.reset()

    @classmethod
    def from_losses(cls, losses: Iterable[float | None], *, first_step: int = 1, lr: float | None = None,
                    **kwargs: int) -> LossHistory:
        """A history of consecutive steps from ``first_step`` on, one per loss (None: not finite)."""
        history = cls(**kwargs)
        for step, loss in enumerate(losses, start=first_step):
            history.add(step, loss, lr)
        return history

    def reset(self) -> None:
        """Forget everything, as for a new run."""
        with self._lock:
            self._buckets: list[list] = []
            self._width = 1
            self._steps_seen = 0
            self._finite = 0
            self._last_step = 0
            self._ema = 0.0
            self._decay = 1.0  # SMOOTHING ** (finite losses seen), for the bias correction
            self._smoothed: float | None = None
            self._nonfinite = 0
            self._first_nonfinite_step: int | None = None
            self._recent: deque[float] = deque(maxlen=self._recent_size)
            self._recent_steps: deque[int] = deque(maxlen=self._recent_size)
            self._early: list[float] = []
            self._early_steps: list[int] = []
            self._validation: list[ValidationPoint] = []

    def add(self, step: int, loss: float | None, lr: float | None) -> None:
        """Record one step; ``loss`` None (or not finite) is counted but not plotted.

        Called for every step event, so it does as little as it can: a few additions into the
        newest bucket, and a merge of all buckets only each time their count reaches capacity.
        """
        with self._lock:
            if step <= self._last_step:
                # A run resumed after a hard kill repeats the steps since its last checkpoint;
                # like every reader of the events, keep the later ones.
                self._rewind(step)
            self._last_step = step
            self._steps_seen += 1
            buckets = self._buckets
            if not buckets or buckets[-1][_N] >= self._width:
                self._open_bucket(step)
            bucket = self._buckets[-1]
            bucket[_LAST] = step
            bucket[_N] += 1
            if lr is not None:
                bucket[_LR_N] += 1
                bucket[_LR_SUM] += lr
            if loss is None or not isfinite(loss):
                self._nonfinite += 1
                if self._first_nonfinite_step is None:
                    self._first_nonfinite_step = step
                return
            self._ema = self._ema * SMOOTHING + loss * (1.0 - SMOOTHING)
            self._decay *= SMOOTHING
            self._finite += 1
            smoothed = self._smoothed = self._ema / (1.0 - self._decay)
            bucket[_LOSS_N] += 1
            bucket[_LOSS_SUM] += loss
            bucket[_SMOOTH_SUM] += smoothed
            bucket[_STEP_SUM] += step
            self._recent.append(loss)
            self._recent_steps.append(step)
            if len(self._early) < self._early_size:
                self._early.append(loss)
                self._early_steps.append(step)

    def add_validation(self, step: int, loss: float | None) -> None:
        """Record a validation loss measured after ``step`` (None or not finite: ignored).

        The smoothed training loss of that moment is kept with it, for the red flag that compares
        the two trends. A validation at a step already recorded (a resumed run repeating steps)
        replaces it and everything after it.
        """
        if loss is None or not isfinite(loss):
            return
        with self._lock:
            points = [p for p in self._validation if p.step < step]
            points.append(ValidationPoint(step, loss, self._smoothed))
            if len(points) > VALIDATION_CAPACITY:
                points = points[:-1][::2] + points[-1:]
            self._validation = points

    def _open_bucket(self, step: int) -> None:
        """Start a bucket at ``step``, first halving the resolution if the buckets are at capacity."""
        buckets = self._buckets
        if len(buckets) >= self.capacity:
            merged = [_merge(buckets[i], buckets[i + 1]) for i in range(0, len(buckets) - 1, 2)]
            if len(buckets) % 2:
                # The odd one out keeps its steps and, at the doubled width, takes the next ones too.
                merged.append(buckets[-1])
            self._buckets = buckets = merged
            self._width *= 2
            if buckets[-1][_N] < self._width:
                return
        buckets.append([step, step, 0, 0, 0.0, 0.0, 0, 0, 0.0])

    def _rewind(self, step: int) -> None:
        """Drop everything recorded at or after ``step`` (a bucket that holds it goes whole)."""
        buckets = self._buckets
        while buckets and buckets[-1][_LAST] >= step:
            dropped = buckets.pop()
            self._steps_seen -= dropped[_N]
            self._finite -= dropped[_LOSS_N]
        kept = [(s, v) for s, v in zip(self._recent_steps, self._recent) if s < step]
        self._recent = deque((v for _, v in kept), maxlen=self._recent_size)
        self._recent_steps = deque((s for s, _ in kept), maxlen=self._recent_size)
        kept = [(s, v) for s, v in zip(self._early_steps, self._early) if s < step]
        self._early = [v for _, v in kept]
        self._early_steps = [s for s, _ in kept]
        self._validation = [p for p in self._validation if p.step < step]
        # The smoothed loss cannot be rewound without the dropped values; it simply carries on,
        # which after a few dozen steps makes no visible difference.

    def series(self, width: int | None = None) -> Series:
        """The whole run as at most ``width`` points (all buckets when None), each an average of neighbours.

        Points are weighted by how many finite losses they hold, so averaging keeps the run's
        mean. Buckets with no finite loss are left out.
        """
        with self._lock:
            rows = [bucket[:] for bucket in self._buckets if bucket[_LOSS_N]]
            validation = list(self._validation)
        if width is not None and width < 1:
            raise ValueError(f"width must be at least 1 (got {width})")
        if width is not None and len(rows) > width:
            count = len(rows)
            # Cut at k * count / width so that every point averages one or two more buckets than
            # its neighbours, never a whole extra group.
            rows = [_merge_all(rows[k * count // width:(k + 1) * count // width]) for k in range(width)]
        out = Series()
        lr = 0.0
        for row in rows:
            n = row[_LOSS_N]
            out.steps.append(row[_STEP_SUM] / n)
            out.loss.append(row[_LOSS_SUM] / n)
            out.smoothed.append(row[_SMOOTH_SUM] / n)
            if row[_LR_N]:
                lr = row[_LR_SUM] / row[_LR_N]
            out.lr.append(lr)
        out.validation_steps = [float(p.step) for p in validation]
        out.validation_loss = [p.loss for p in validation]
        return out

    def __len__(self) -> int:
        """Steps recorded (the same as ``steps_seen``)."""
        return self._steps_seen

    @property
    def steps_seen(self) -> int:
        """Steps recorded, whether or not their loss was finite."""
        return self._steps_seen

    @property
    def last_step(self) -> int:
        """The latest step recorded (0 before any)."""
        return self._last_step

    @property
    def bucket_count(self) -> int:
        """Buckets held now; never more than ``capacity``."""
        return len(self._buckets)

    @property
    def bucket_width(self) -> int:
        """Steps per bucket for new steps: 1 until the first merge, then doubling with each."""
        return self._width

    @property
    def smoothed(self) -> float | None:
        """The latest smoothed loss, or None before the first finite loss."""
        return self._smoothed

    @property
    def recent(self) -> tuple[float, ...]:
        """The last ``recent_size`` finite losses, oldest first."""
        with self._lock:
            return tuple(self._recent)

    @property
    def early(self) -> tuple[float, ...]:
        """The run's first ``early_size`` finite losses (fewer until that many have arrived)."""
        with self._lock:
            return tuple(self._early)

    @property
    def early_size(self) -> int:
        """How many of the first finite losses ``early`` keeps."""
        return self._early_size

    @property
    def validation(self) -> tuple[ValidationPoint, ...]:
        """The validation losses recorded, oldest first."""
        with self._lock:
            return tuple(self._validation)

    @property
    def finite_count(self) -> int:
        """Steps recorded whose loss was finite."""
        return self._finite

    @property
    def nonfinite_count(self) -> int:
        """Steps whose loss was not a number or infinite (not undone by a resume's repeated steps)."""
        return self._nonfinite

    @property
    def first_nonfinite_step(self) -> int | None:
        """The first step whose loss was not finite, or None."""
        return self._first_nonfinite_step


def _merge(a: list, b: list) -> list:
    """One bucket holding the steps of two neighbours (``a`` before ``b``)."""
    return [a[_FIRST], b[_LAST], a[_N] + b[_N], a[_LOSS_N] + b[_LOSS_N], a[_LOSS_SUM] + b[_LOSS_SUM],
            a[_SMOOTH_SUM] + b[_SMOOTH_SUM], a[_STEP_SUM] + b[_STEP_SUM], a[_LR_N] + b[_LR_N],
            a[_LR_SUM] + b[_LR_SUM]]


def _merge_all(rows: list[list]) -> list:
    """One bucket holding the steps of consecutive ``rows`` (at least one)."""
    total = rows[0][:]
    for row in rows[1:]:
        total = _merge(total, row)
    return total
