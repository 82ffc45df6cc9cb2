"""What a run is doing, folded from its events (pure Python, shared by the app and the CLI).

The app, the headless progress line and (later) the runs list all read a run the same way:
replay ``events.jsonl`` through ``RunState.apply``. A reader that attaches late replays the
whole file and ends in the same state as one that watched from the start.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

MAX_WARNINGS = 100
"""Warnings kept in the state (the log keeps them all while it is on screen)."""

PHASES = ("starting", "loading", "caching", "training", "sampling", "done", "stopped", "failed")
"""Where a run can be, in order of a normal life."""


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
    """A smoothed step time (exponential moving average)."""
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
    updated: float | None = None
    device: str = ""
    """``cpu`` or the GPU's name, from the start event."""
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
        """Seconds from the first step to the latest event (the trainer's clock)."""
        if self.started is None or self.updated is None:
            return None
        return max(0.0, self.updated - self.started)

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
        self.updated = event.get("time", self.updated)
        handler = getattr(self, f"_on_{kind}", None)
        if handler is not None:
            handler(event)

    def _on_status(self, event: dict[str, Any]) -> None:
        self.phase = event.get("phase", self.phase)
        current, total = event.get("current"), event.get("total")
        self.message = event.get("message", "") + (f" {current}/{total}" if current and total else "")

    def _on_start(self, event: dict[str, Any]) -> None:
        self.phase = "training"
        self.total_steps = event.get("total_steps", 0)
        self.epochs = event.get("epochs", 0)
        self.device = event.get("device", "")
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
        seconds = event.get("seconds_per_step")
        if seconds is not None:
            # The first steps include warm-up; the average forgets them within a few dozen steps.
            previous = self.seconds_per_step
            self.seconds_per_step = seconds if previous is None else previous * 0.9 + seconds * 0.1
        if self.started is None:
            self.started = event.get("time")
        if event.get("vram_peak_gib") is not None:
            self.vram_peak_gib = event["vram_peak_gib"]
            self.vram_total_gib = event.get("vram_total_gib")

    def _on_sample(self, event: dict[str, Any]) -> None:
        # A sampling round writes several images for one step; a new step starts a new round.
        if self.samples and self.samples[-1].get("step") != event.get("step"):
            self.samples = []
        self.samples.append(event)

    def _on_epoch(self, event: dict[str, Any]) -> None:
        self.epoch = event.get("epoch", self.epoch)
        self.epochs = event.get("epochs", self.epochs)

    def _on_checkpoint(self, event: dict[str, Any]) -> None:
        self.last_checkpoint = event.get("path")

    def _on_warning(self, event: dict[str, Any]) -> None:
        self.warnings.append(event.get("message", ""))
        del self.warnings[:-MAX_WARNINGS]

    def _on_error(self, event: dict[str, Any]) -> None:
        self.phase = "failed"
        self.error_code = event.get("code")
        self.error_message = event.get("message", "")
        self.advice = event.get("advice", "")
        self.message = self.error_message

    def _on_stopped(self, event: dict[str, Any]) -> None:
        self.phase = "stopped"
        self.last_checkpoint = event.get("checkpoint", self.last_checkpoint)
        self.message = f"Stopped at step {event.get('step', self.step)} ({event.get('reason', 'on request')})."

    def _on_done(self, event: dict[str, Any]) -> None:
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


def progress_line(state: RunState) -> str:
    """One line of progress: step, epoch, loss, speed and time left."""
    if state.phase in ("starting", "loading", "caching"):
        return state.message or "Starting…"
    parts = [f"step {state.step}/{state.total_steps}"]
    if state.epochs:
        parts.append(f"epoch {max(state.epoch, 1)}/{state.epochs}")
    if state.loss is not None:
        parts.append(f"loss {state.loss:.4f}")
    if state.seconds_per_step:
        rate = 1 / state.seconds_per_step
        parts.append(f"{rate:.1f} it/s" if rate >= 1 else f"{state.seconds_per_step:.2f} s/it")
    if state.elapsed_seconds is not None:
        parts.append(f"elapsed {format_duration(state.elapsed_seconds)}")
    if not state.finished:
        parts.append(f"ETA {format_duration(state.eta_seconds)}")
    if state.vram_peak_gib is not None and state.vram_total_gib:
        parts.append(f"GPU {state.vram_peak_gib:.1f}/{state.vram_total_gib:.0f} GiB")
    return " · ".join(parts)


def describe_event(event: dict[str, Any]) -> str | None:
    """A log line for an event worth logging (step events are summarised by the progress line)."""
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
        return f"{stamp} sample (strength {event.get('strength', 1.0):g}): {event.get('path')}"
    if kind == "done":
        return f"{stamp} done in {format_duration(event.get('seconds'))}: {event.get('output')}"
    return None
