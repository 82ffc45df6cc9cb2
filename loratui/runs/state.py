"""What a run is doing, folded from its events (pure Python, shared by the app and the CLI).

The app, the headless progress line and (later) the runs list all read a run the same way:
replay ``events.jsonl`` through ``RunState.apply``. A reader that attaches late replays the
whole file and ends in the same state as one that watched from the start.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

MAX_WARNINGS = 100
"""Warnings kept in the state (the log keeps them all while it is on screen)."""

PHASES = ("starting", "loading", "caching", "training", "sampling", "done", "stopped", "failed")
"""Where a run can be, in order of a normal life."""

PACE_MEMORY_STEPS = 50
"""About how many recent steps the smoothed step time remembers: long enough that one slow step
(a larger bucket, a busy machine) barely moves the ETA, short enough to follow a real change."""
FAST_SECONDS = 0.5
"""At or under this smoothed step time the speed shows as it/s (2 it/s or more) ..."""
SLOW_SECONDS = 1.0
"""... and only over this one does it go back to s/it: between the two the unit stays as it was,
so a pace wobbling around one step a second never flips the display back and forth."""


@dataclass
class RunState:
    """The latest known state of one run."""

    phase: str = "starting"
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    epochs: int = 0
    loss: float | None = None
    lr: float | None = None
    seconds_per_step: float | None = None
    """The smoothed time of one training step, as the trainer measured it (so time spent sampling, saving or
    stopped never counts): the mean of the first steps, then an exponential moving average."""
    speed_unit: str = "s/it"
    """How the speed is shown, ``s/it`` or ``it/s``; it changes only across a wide band (see ``SLOW_SECONDS``)."""
    message: str = ""
    """The latest human-readable status line."""
    plan_message: str = ""
    """What the start event said about the plan (shown again once sampling is over)."""
    output: str | None = None
    """The finished LoRA, once written."""
    last_checkpoint: str | None = None
    error_code: str | None = None
    error_message: str = ""
    advice: str = ""
    warnings: list[str] = field(default_factory=list)
    started: float | None = None
    """When the first step event arrived (wall clock of the trainer)."""
    session_started: float | None = None
    """When the first step of the running process arrived; None between a process's end and a resume."""
    earlier_seconds: float = 0.0
    """Training time of the processes that ended before this one (a stopped run that was resumed)."""
    sessions: int = 0
    """How many processes have trained this run (more than one once it was resumed)."""
    paced_steps: int = 0
    """Steps whose time is in ``seconds_per_step`` (the first step of each process is left out: warm-up)."""
    pace_provisional: bool = False
    """True while ``seconds_per_step`` is the run's first step alone (warm-up included)."""
    sample_done: int = 0
    """Pictures drawn so far in the sampling round under way."""
    sample_total: int = 0
    """Pictures the sampling round under way will have (0 when unknown)."""
    updated: float | None = None
    device: str = ""
    """``cpu`` or the GPU's name, from the start event."""
    precision: str = ""
    """What the run computes in (``fp32``, ``bf16``, ``fp16``), from the start event."""
    validation_loss: float | None = None
    """The latest validation loss (with ``training.validation_split``), None before the first."""
    validation_step: int | None = None
    """The step it was measured after."""
    vram_peak_gib: float | None = None
    vram_total_gib: float | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    """The newest sample events (the images of the latest sampling round)."""

    @property
    def finished(self) -> bool:
        """True once the run has ended, for whatever reason."""
        return self.phase in ("done", "stopped", "failed")

    @property
    def elapsed_seconds(self) -> float | None:
        """Training time up to the latest event: from each process's first step to its last event.

        Time between a stop and a resume is not training time, so it is left out.
        """
        return self.elapsed_at(None)

    def elapsed_at(self, now: float | None) -> float | None:
        """Training time at ``now`` (Unix seconds): while the run goes on, the clock runs between events too.

        None until the first step. ``now`` counts only while the run is not finished: a finished run's
        time is fixed by its last event.
        """
        if self.started is None:
            return None
        seconds = self.earlier_seconds
        if self.session_started is not None:
            end = self.updated if self.updated is not None else self.session_started
            if now is not None and not self.finished:
                end = max(end, now)
            seconds += max(0.0, end - self.session_started)
        return seconds

    @property
    def sample_progress(self) -> tuple[int, int] | None:
        """(picture being drawn, pictures in the round) while sampling, when the round's size is known."""
        if self.phase != "sampling" or not self.sample_total:
            return None
        return min(self.sample_done + 1, self.sample_total), self.sample_total

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the current pace, or None before the pace is known."""
        if self.seconds_per_step is None or not self.total_steps or self.finished:
            return None
        return max(0, self.total_steps - self.step) * self.seconds_per_step

    def snapshot(self) -> RunState:
        """A copy that later ``apply`` calls do not change (for handing to another thread)."""
        return replace(self, warnings=list(self.warnings), samples=list(self.samples))

    def apply(self, event: dict[str, Any]) -> None:
        """Fold one event into the state (unknown event types are ignored)."""
        kind = event.get("type")
        if self.session_started is not None and (kind == "start" or (kind == "status"
                                                                     and event.get("phase") == "loading")):
            # A new process began while the last one's time was still open (it died without a final
            # event): that time ended with its last event, before this one.
            self._end_session()
        self.updated = event.get("time", self.updated)
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(event)

    def _end_session(self) -> None:
        """Add the running process's training time to ``earlier_seconds`` (at its last event)."""
        if self.session_started is not None and self.updated is not None:
            self.earlier_seconds += max(0.0, self.updated - self.session_started)
        self.session_started = None

    def _on_status(self, event: dict[str, Any]) -> None:
        self.phase = event.get("phase", self.phase)
        current, total = event.get("current"), event.get("total")
        if self.phase == "sampling":
            # The round's size; each sample event then counts a picture (sample_progress).
            self.sample_done, self.sample_total = int(current or 0), int(total or 0)
            self.message = event.get("message", "")
            return
        self.message = event.get("message", "") + (f" {current}/{total}" if current and total else "")

    def _on_start(self, event: dict[str, Any]) -> None:
        self.phase = "training"
        self.total_steps = event.get("total_steps", 0)
        self.epochs = event.get("epochs", 0)
        self.device = event.get("device", "")
        self.precision = event.get("precision", "")
        self.message = self.plan_message = (f"{event.get('images')} images · {event.get('total_steps')} steps on "
                                            f"{event.get('device')} ({event.get('precision')})")

    def _on_step(self, event: dict[str, Any]) -> None:
        if self.phase != "training":
            # Back from sampling (or a resumed start): the plan is the line worth showing again.
            self.message = self.plan_message or self.message
        self.phase = "training"
        self.step = event.get("step", self.step)
        self.total_steps = event.get("total_steps", self.total_steps)
        self.epoch = event.get("epoch", self.epoch)
        self.loss = event.get("loss")
        self.lr = event.get("lr")
        self._pace(event.get("seconds_per_step"))
        if self.started is None:
            self.started = event.get("time")
        if self.session_started is None:
            self.session_started = event.get("time")
            self.sessions += 1
        if event.get("vram_peak_gib") is not None:
            self.vram_peak_gib = event["vram_peak_gib"]
            self.vram_total_gib = event.get("vram_total_gib")

    def _pace(self, seconds: float | None) -> None:
        """Fold one step's time into ``seconds_per_step`` and pick the unit the speed shows in.

        Called before the step opens its process's session, so ``session_started`` tells a process's
        first step, which carries its warm-up (compiling, caches filling) and is left out of the average.
        """
        if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
            return
        if self.session_started is None:
            if self.seconds_per_step is None:
                # The run's very first step stands in until a second one gives a real figure.
                self.seconds_per_step, self.pace_provisional = float(seconds), True
                self._choose_unit()
            return
        if self.pace_provisional:
            self.seconds_per_step, self.pace_provisional = None, False
        self.paced_steps += 1
        # The mean of the first steps, then an exponential average with a memory of PACE_MEMORY_STEPS.
        weight = max(1 / self.paced_steps, 1 / PACE_MEMORY_STEPS)
        previous = self.seconds_per_step
        self.seconds_per_step = float(seconds) if previous is None else previous + (seconds - previous) * weight
        self._choose_unit()

    def _choose_unit(self) -> None:
        # Between FAST_SECONDS and SLOW_SECONDS the unit stays as it is (hysteresis).
        if self.seconds_per_step is None:
            return
        if self.seconds_per_step <= FAST_SECONDS:
            self.speed_unit = "it/s"
        elif self.seconds_per_step > SLOW_SECONDS:
            self.speed_unit = "s/it"

    def _on_sample(self, event: dict[str, Any]) -> None:
        # A sampling round writes several images for one step; a new step starts a new round.
        if self.samples and self.samples[-1].get("step") != event.get("step"):
            self.samples = []
        self.samples.append(event)
        # The trainer numbers each picture of a round; older runs did not, so count them then.
        self.sample_done = int(event.get("index") or self.sample_done + 1)
        self.sample_total = int(event.get("total") or self.sample_total)

    def _on_validation(self, event: dict[str, Any]) -> None:
        if event.get("loss") is not None:
            self.validation_loss, self.validation_step = event["loss"], event.get("step")

    def _on_epoch(self, event: dict[str, Any]) -> None:
        self.epoch = event.get("epoch", self.epoch)
        self.epochs = event.get("epochs", self.epochs)

    def _on_checkpoint(self, event: dict[str, Any]) -> None:
        self.last_checkpoint = event.get("path")

    def _on_warning(self, event: dict[str, Any]) -> None:
        self.warnings.append(event.get("message", ""))
        del self.warnings[:-MAX_WARNINGS]

    def _on_error(self, event: dict[str, Any]) -> None:
        self._end_session()
        self.phase = "failed"
        self.error_code = event.get("code")
        self.error_message = event.get("message", "")
        self.advice = event.get("advice", "")
        self.message = self.error_message

    def _on_stopped(self, event: dict[str, Any]) -> None:
        self._end_session()
        self.phase = "stopped"
        self.last_checkpoint = event.get("checkpoint", self.last_checkpoint)
        self.message = f"Stopped at step {event.get('step', self.step)} ({event.get('reason', 'on request')})."

    def _on_done(self, event: dict[str, Any]) -> None:
        self._end_session()
        self.phase = "done"
        self.step = event.get("step", self.step)
        self.output = event.get("output")
        self.message = f"Finished: {self.output}"


def format_duration(seconds: float | None) -> str:
    """``1:02:03`` / ``2:03`` style, or ``--:--`` when unknown."""
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


SEPARATOR = " · "
"""Between two figures of a progress line."""


def speed_text(state: RunState) -> str | None:
    """The smoothed speed in the run's unit (``1.23 s/it`` or ``4.5 it/s``), or None before it is known."""
    if not state.seconds_per_step:
        return None
    if state.speed_unit == "it/s":
        return f"{1 / state.seconds_per_step:.1f} it/s"
    return f"{state.seconds_per_step:.2f} s/it"


def step_figures(state: RunState) -> list[tuple[int, str]]:
    """(importance, text) of the step, epoch, loss, speed and GPU memory, in the order shown (0: most important)."""
    figures = [(0, f"step {state.step}/{state.total_steps}")]
    if state.epochs:
        figures.append((3, f"epoch {max(state.epoch, 1)}/{state.epochs}"))
    if state.loss is not None:
        figures.append((1, f"loss {state.loss:.4f}"))
    if state.validation_loss is not None:
        figures.append((3, f"val {state.validation_loss:.4f}"))
    speed = speed_text(state)
    if speed:
        figures.append((2, speed))
    if state.vram_peak_gib is not None and state.vram_total_gib:
        figures.append((4, f"GPU {state.vram_peak_gib:.1f}/{state.vram_total_gib:.0f} GiB"))
    return figures


def clock_figures(state: RunState, now: float | None = None) -> list[tuple[int, str]]:
    """(importance, text) of the training time so far and the time left (``now`` keeps a live run's clock going)."""
    figures = []
    elapsed = state.elapsed_at(now)
    if elapsed is not None:
        figures.append((1, f"elapsed {format_duration(elapsed)}"))
    if not state.finished and state.total_steps:
        figures.append((0, f"ETA {format_duration(state.eta_seconds)}"))
    return figures


def fit_figures(figures: list[tuple[int, str]], width: int | None = None) -> str:
    """The figures joined with `` · ``, leaving out the least important ones until the line fits ``width``.

    A figure is dropped whole, never cut: "ETA 23:0" would read as a different time.
    """
    kept = list(figures)
    while width is not None and len(kept) > 1 and len(SEPARATOR.join(text for _, text in kept)) > width:
        kept.remove(max(kept, key=lambda figure: figure[0]))
    return SEPARATOR.join(text for _, text in kept)


def fit_text(text: str, width: int | None) -> str:
    """``text`` cut to ``width`` cells with an ellipsis (for messages, which have no parts to drop)."""
    if width is None or len(text) <= width:
        return text
    return text[: max(width - 1, 0)] + "…"


def progress_line(state: RunState, width: int | None = None, now: float | None = None) -> str:
    """One line of progress: step, epoch, loss, speed, training time and time left.

    With ``width``, the least important figures are left out until the line fits; ``now`` (Unix
    seconds) keeps the training-time clock of a live run going between events.
    """
    if state.phase in ("starting", "loading", "caching"):
        return fit_text(state.message or "Starting…", width)
    step = step_figures(state)
    gpu = [figure for figure in step if figure[1].startswith("GPU ")]
    clock = [(importance + 1, text) for importance, text in clock_figures(state, now)]
    # Shown in the order people read a progress line: where it is, how fast, how long, then memory.
    return fit_figures([figure for figure in step if figure not in gpu] + clock + gpu, width)


def describe_event(event: dict[str, Any], state: RunState | None = None) -> str | None:
    """A log line for an event worth logging (step events are summarised by the progress line).

    ``state``, already folded with ``event``, lets the last line give the whole run's training time:
    the trainer's own figure counts only its process, which after a resume is the last part.
    """
    kind = event.get("type")
    stamp = time.strftime("%H:%M:%S", time.localtime(event.get("time", time.time())))
    if kind == "status":
        if event.get("phase") == "caching" and event.get("current") not in (None, event.get("total")):
            return None  # one line when caching ends is enough
        return f"{stamp} {event.get('message', '')}"
    if kind == "start":
        return (f"{stamp} start: {event.get('images')} images, {event.get('batches_per_epoch')} steps × "
                f"{event.get('epochs')} epochs = {event.get('total_steps')} steps "
                f"(guide's formula: {event.get('formula_steps', 0):g}) on {event.get('device')}, "
                f"{event.get('precision')}, {event.get('resolution')} px")
    if kind == "epoch":
        loss = event.get("mean_loss")
        return f"{stamp} epoch {event.get('epoch')}/{event.get('epochs')} done, mean loss " + \
            (f"{loss:.4f}" if loss is not None else "n/a")
    if kind == "validation":
        loss = event.get("loss")
        return (f"{stamp} validation loss at step {event.get('step')}: "
                f"{f'{loss:.4f}' if loss is not None else 'not a number'} ({event.get('images')} held-out images)")
    if kind == "checkpoint":
        return f"{stamp} saved {event.get('path')}"
    if kind == "warning":
        return f"{stamp} warning: {event.get('message')}"
    if kind == "error":
        advice = f" — {event['advice']}" if event.get("advice") else ""
        return f"{stamp} error ({event.get('code')}): {event.get('message')}{advice}"
    if kind == "stopped":
        return f"{stamp} stopped at step {event.get('step')}: {event.get('reason', '')}"
    if kind == "sample":
        count = f" {event['index']}/{event['total']}" if event.get("index") and event.get("total") else ""
        return f"{stamp} sample{count} (strength {event.get('strength', 1.0):g}): {event.get('path')}"
    if kind == "done":
        seconds = event.get("seconds")
        if state is not None and state.sessions > 1 and state.elapsed_seconds is not None:
            seconds = state.elapsed_seconds  # resumed: the processes' training time together
        return f"{stamp} done in {format_duration(seconds)}: {event.get('output')}"
    return None
