"""The training screen: load a config, see what it will do, start it and watch it run.

Work that touches the disk (checking a config, scanning images, tailing a run) happens in
thread workers that post messages; only message handlers touch widgets.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Log, Static
from textual.worker import Worker, WorkerState, get_current_worker

from loratui.launch import CheckedConfig, check_config, new_run, resumable_run, start_detached_async
from loratui.messages import RunUpdate
from loratui.run_state import RunState, describe_event
from loratui.widgets import RunStatus
from trainer.config import effective_resolution
from trainer.events import LineTail, parse_event
from trainer.plan import StepPlan, plan_steps
from trainer.model_ref import local_model_arch
from trainer.rundir import RunPaths, pid_alive

POLL_SECONDS = 0.25
LOG_LINES = 5000
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def clean_output_line(line: str) -> str:
    """A raw trainer output line made fit for the Log: colours removed, progress-bar redraws collapsed."""
    segments = [s for s in line.split("\r") if s.strip()]
    return _ANSI.sub("", segments[-1] if segments else "")


class TrainScreen(Screen):
    """Load a config, check it, start training and follow the run."""

    BINDINGS = [
        Binding("s", "start", "Start training", id="start-training"),
        Binding("r", "resume", "Resume run", id="resume-run"),
        Binding("ctrl+r", "reload", "Re-check config", id="reload-config"),
        Binding("escape", "leave_input", "Leave field", show=False, id="leave-input"),
    ]
    """Keys of this screen (shown in the footer and the command palette)."""

    @dataclass
    class ConfigChecked(Message):
        """A config was read and checked in the background."""

        checked: CheckedConfig
        plan: StepPlan | None
        arch: str | None
        mtime: int | None
        """The file's modification time just before it was read."""

    def __init__(self, config_path: Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> None:
        super().__init__()
        self.config_path = config_path
        """The config file shown (None until the user types one)."""
        self.overrides = list(overrides)
        """``--set`` overrides from the command line, applied on every load."""
        self.checked: CheckedConfig | None = None
        """The last check of the config, or None while it runs."""
        self.checked_mtime: int | None = None
        """The config file's modification time when it was last checked."""
        self.run_state = RunState()
        """What the followed run is doing."""
        self.run: RunPaths | None = None
        """The run being followed, once started."""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="config-bar"):
            yield Label("Config ")
            yield Input(str(self.config_path or ""), placeholder="path/to/config.toml, then Enter",
                        id="config-path")
        yield Static("", id="summary", markup=False)
        yield Static("", id="problems", markup=False)
        yield RunStatus(id="run-status")
        yield Log(max_lines=LOG_LINES, id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Log).focus()
        if self.config_path is not None:
            self.check(self.config_path)
        else:
            self.query_one("#summary", Static).update("Type the path of a config and press Enter "
                                                      "(`loratui demo` makes one to try).")

    # Config ---------------------------------------------------------------------------------

    def check(self, path: Path) -> None:
        """Check a config in the background; ConfigChecked arrives when done."""
        self.config_path = path
        self.checked = None
        self.query_one("#summary", Static).update(f"Checking {path} …")
        self.query_one("#problems", Static).update("")
        self._check_worker(path)

    def _config_mtime(self) -> int | None:
        try:
            return self.config_path.stat().st_mtime_ns if self.config_path else None
        except OSError:
            return None

    @work(thread=True, exclusive=True, group="config", exit_on_error=False)
    def _check_worker(self, path: Path) -> None:
        mtime = self._config_mtime()
        checked = check_config(path, self.overrides)
        plan = arch = None
        if checked.ok and checked.scan is not None and checked.config is not None:
            config = checked.config
            arch = local_model_arch(config.model.base)
            resolution = effective_resolution(config, arch or "sd15")
            plan = plan_steps(checked.scan.images, resolution, config.training.batch_size,
                              config.training.epochs, config.dataset.buckets)
        self.post_message(self.ConfigChecked(checked, plan, arch, mtime))

    def on_train_screen_config_checked(self, message: ConfigChecked) -> None:
        self.checked = message.checked
        self.checked_mtime = message.mtime
        config, plan = message.checked.config, message.plan
        summary = self.query_one("#summary", Static)
        problems = self.query_one("#problems", Static)
        if not message.checked.ok or config is None:
            summary.update(f"{message.checked.path}: fix these before training can start.")
            problems.update("\n".join(f"• {p}" for p in message.checked.problems))
            return
        problems.update("")
        arch = message.arch or config.model.arch
        lines = [f"{config.kind} LoRA · {arch} · {config.network.type} {config.network.dim}/{config.network.alpha:g}"
                 f" · {config.optimizer.name} {config.optimizer.unet_lr:g}/{config.optimizer.text_encoder_lr:g}"
                 f" · {config.scheduler.name}"]
        if plan is not None:
            lines.append(f"{plan.images} images · {plan.batches_per_epoch} steps × {plan.epochs} epochs = "
                         f"{plan.total_steps} steps (guide's formula: {plan.formula_steps:g}) · batch {plan.batch_size}")
        lines.append(f"runs go to {config.output.dir}")
        summary.update("\n".join(lines))

    @on(Input.Submitted, "#config-path")
    def _path_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.check(Path(event.value.strip()).expanduser())
        self.query_one(Log).focus()

    def action_leave_input(self) -> None:
        self.query_one(Log).focus()

    def action_reload(self) -> None:
        if self.config_path is not None:
            self.check(self.config_path)

    # Training -------------------------------------------------------------------------------

    async def action_start(self) -> None:
        """Start training the loaded config in a detached process and follow it."""
        if self.run is not None and not self.run_state.finished:
            self.notify("A run is already in progress.", severity="warning")
            return
        if self.checked is None:
            self.notify("Load a config first (type its path above and press Enter).", severity="warning")
            return
        if not self.checked.ok:
            self.notify("The config has problems; they are listed above.", severity="error")
            return
        if self._config_mtime() != self.checked_mtime:
            # Never train a config other than the one on screen: check the edited file first.
            self.notify("The config changed on disk; checking it again. Press s once it is loaded.")
            self.check(self.checked.path)
            return
        try:
            self.run = new_run(self.checked)
        except OSError as exc:
            self.notify(f"Could not create the run folder: {exc}", severity="error")
            return
        self.run_state = RunState()
        try:
            pid = await start_detached_async(self.run)
        except (OSError, RuntimeError) as exc:
            self.notify(f"Could not start the trainer: {exc}", severity="error")
            self.run = None
            return
        self.query_one(Log).write_line(f"{time.strftime('%H:%M:%S')} started run {self.run.root} (pid {pid})")
        self.query_one(RunStatus).show(self.run_state)
        self.follow(self.run, pid)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Resume shows in the footer only once the followed run has stopped with a saved state.
        if action == "resume":
            return self.run is not None and self.run_state.phase in ("stopped", "failed") \
                and (self.run.state / "last.pt").is_file()
        return True

    async def action_resume(self) -> None:
        """Continue the followed run from its last checkpoint, in a new detached process."""
        if self.run is None:
            return
        run, why = resumable_run(self.run.root)
        if run is None:
            self.notify(f"Cannot resume: {why}.", severity="warning")
            return
        # Only what the resumed process adds is new: the history is already on screen.
        offsets = (LineTail.end_of(run.events), LineTail.end_of(run.log))
        try:
            pid = await start_detached_async(run, resume=True)
        except (OSError, RuntimeError) as exc:
            self.notify(f"Could not resume: {exc}", severity="error")
            return
        self.run_state.phase = "starting"
        self.query_one(Log).write_line(f"{time.strftime('%H:%M:%S')} resuming {run.root.name} (pid {pid})")
        self.query_one(RunStatus).show(self.run_state)
        self.refresh_bindings()
        self.follow(run, pid, *offsets)

    @work(thread=True, exclusive=True, group="follow", exit_on_error=False)
    def follow(self, run: RunPaths, pid: int, events_offset: int = 0, log_offset: int = 0) -> None:
        """Tail the run's events and output, posting one RunUpdate per poll that found something."""
        worker = get_current_worker()
        events_tail, log_tail = LineTail(run.events, offset=events_offset), LineTail(run.log, offset=log_offset)
        while not worker.is_cancelled:
            alive = pid_alive(pid)
            events = [e for e in map(parse_event, events_tail.read_lines()) if e is not None]
            lines = log_tail.read_lines()
            if events or lines or not alive:
                self.post_message(RunUpdate(events, lines, exited=not alive))
            if not alive:
                return
            time.sleep(POLL_SECONDS)

    def on_run_update(self, message: RunUpdate) -> None:
        log = self.query_one(Log)
        for line in message.log_lines:
            text = clean_output_line(line)
            if text:
                log.write_line(f"│ {text}")
        for event in message.events:
            self.run_state.apply(event)
            text = describe_event(event)
            if text:
                log.write_line(text)
        if message.exited and not self.run_state.finished:
            self.run_state.phase = "failed"
            self.run_state.error_message = "The trainer stopped without saying why."
            self.run_state.advice = f"Its last output is in {self.run.log if self.run else 'trainer.log'}."
            log.write_line(f"error: {self.run_state.error_message} {self.run_state.advice}")
        self.query_one(RunStatus).show(self.run_state)
        self.refresh_bindings()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # One place for worker failures: report them instead of crashing the app.
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.query_one(Log).write_line(f"internal error in {event.worker.name}: {error!r}")
            self.notify(f"Something went wrong: {error}", severity="error")

