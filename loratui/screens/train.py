"""The training screen: load a config, see what it will do, start it and watch it run.

Work that touches the disk (checking a config, scanning images, tailing a run) happens in
thread workers that post messages; only message handlers touch widgets.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Log, Static
from textual.worker import Worker, WorkerState, get_current_worker

from loratui.launch import resumable_run, start_detached_async
from loratui.messages import RunUpdate
from loratui.run_state import RunState, describe_event
from loratui.widgets import RunStatus
from loratui.summary import summary_line
from loratui.workspace import Workspace
from trainer.events import LineTail, parse_event
from trainer.rundir import RunPaths, create_run_dir, pid_alive

POLL_SECONDS = 0.25
LOG_LINES = 5000
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def clean_output_line(line: str) -> str:
    """A raw trainer output line made fit for the Log: colours removed, progress-bar redraws collapsed."""
    segments = [s for s in line.split("\r") if s.strip()]
    return _ANSI.sub("", segments[-1] if segments else "")


class TrainScreen(Screen):
    """Start the workspace's config and follow the run."""

    BINDINGS = [
        Binding("s", "start", "Start training", id="start-training"),
        Binding("r", "resume", "Resume run", id="resume-run"),
        Binding("ctrl+r", "reload", "Re-read config", id="reload-config"),
        Binding("escape", "leave_input", "Leave field", show=False, id="leave-input"),
    ]
    """Keys of this screen (shown in the footer and the command palette)."""

    def __init__(self) -> None:
        super().__init__()
        self.run_state = RunState()
        """What the followed run is doing."""
        self.run: RunPaths | None = None
        """The run being followed, once started."""

    @property
    def workspace(self) -> Workspace:
        return self.app.workspace

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="config-bar"):
            yield Label("Config ")
            yield Input(str(self.workspace.path or ""), placeholder="path/to/config.toml, then Enter",
                        id="config-path")
        yield Static("", id="summary", markup=False)
        yield Static("", id="problems", markup=False)
        yield RunStatus(id="run-status")
        yield Log(max_lines=LOG_LINES, id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(Log).focus()
        self.app.workspace_changed.subscribe(self, self.show_workspace)
        self.show_workspace(self.workspace)

    # Config ---------------------------------------------------------------------------------

    def show_workspace(self, workspace: Workspace) -> None:
        """Show what the workspace's config will do, or what keeps it from starting."""
        summary = self.query_one("#summary", Static)
        problems = self.query_one("#problems", Static)
        path_box = self.query_one("#config-path", Input)
        if workspace.path is not None and not path_box.has_focus:
            path_box.value = str(workspace.path)
        if workspace.path is None:
            summary.update("Type the path of a config and press Enter (`loratui demo` makes one to try).")
            return
        assessment = workspace.assessment
        if assessment is None or workspace.assessed_version != workspace.version:
            summary.update(f"Checking {workspace.path} …")
            return
        if not assessment.startable:
            summary.update(f"{workspace.path}: fix these before training can start.")
            problems.update("\n".join(f"• {p}" for p in assessment.problems))
            return
        problems.update("")
        config, plan = workspace.config, assessment.plan
        lines = [f"{config.kind} LoRA · {assessment.arch or config.model.arch} · {config.network.type} "
                 f"{config.network.dim}/{config.network.alpha:g} · {config.optimizer.name} "
                 f"{config.optimizer.unet_lr:g}/{config.optimizer.text_encoder_lr:g} · {config.scheduler.name}"]
        if plan is not None:
            lines.append(f"{plan.images} images · {plan.batches_per_epoch} steps × {plan.epochs} epochs = "
                         f"{plan.total_steps} steps (guide's formula: {plan.formula_steps:g}) · batch {plan.batch_size}")
        lines.append(summary_line(assessment))
        summary.update("\n".join(lines))

    @on(Input.Submitted, "#config-path")
    def _path_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.app.load_config(Path(event.value.strip()).expanduser())
        self.query_one(Log).focus()

    def action_leave_input(self) -> None:
        self.query_one(Log).focus()

    def action_reload(self) -> None:
        if self.workspace.path is not None:
            self.app.load_config(self.workspace.path)

    # Training -------------------------------------------------------------------------------

    async def action_start(self) -> None:
        """Start training the workspace's config in a detached process and follow it."""
        workspace = self.workspace
        if self.run is not None and not self.run_state.finished:
            self.notify("A run is already in progress.", severity="warning")
            return
        if workspace.path is None and workspace.saved is None:
            self.notify("Load a config first (type its path above and press Enter).", severity="warning")
            return
        if workspace.assessment is None or workspace.assessed_version != workspace.version:
            self.notify("Still checking the config; try again in a moment.", severity="warning")
            return
        if not workspace.assessment.startable:
            self.notify("The config has problems; they are listed above.", severity="error")
            return
        if workspace.file_changed_on_disk():
            # Never train a config other than the one on screen: the file was edited elsewhere.
            if workspace.dirty:
                self.notify("The file changed on disk and this app holds unsaved changes: save (ctrl+s on the "
                            "settings screen) or re-read it (ctrl+r) first.", severity="error")
            else:
                self.notify("The config changed on disk; reading it again. Press s once it is checked.")
                self.app.load_config(workspace.path, announce=False)
            return
        try:
            self.run = create_run_dir(workspace.resolved())
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
                and self.run.resume_state.is_file()
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

