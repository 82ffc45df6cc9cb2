"""The training screen: load a config, see what it will do, start it, and monitor the run.

The monitor (``RunMonitor``) follows a run from its folder alone, so the screen can start a
run, attach to one that outlived an earlier app (an SSH drop), or switch between runs. Stop,
save-now and sample-now reach the trainer through a signal and request files, never by holding
the process: closing the app stops nothing.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Static
from textual.worker import Worker, WorkerState

from loratui.commands import mode_bar
from loratui.runs.launch import resumable_run, start_detached_async
from loratui.runs.registry import find_runs, newest_lora, register_run
from loratui.runs.state import RunState
from loratui.screens.confirm import ConfirmScreen
from loratui.summary import batch_words, display_path, formula_words, held_out_words, summary_notes
from loratui.widgets.run_monitor import RunMonitor
from loratui.workspace import Workspace
from trainer.contract.control import pending, request
from trainer.contract.events import LineTail
from trainer.contract.rundir import RunPaths, create_run_dir, pid_alive, read_pid

TALL_SCREEN = 34
"""Screens shorter than this get the two-line summary, so the monitor keeps room for its plot."""
COMPACT_PROBLEMS = 3
"""Lines of problems an 80×24 screen shows (the last says how many more there are)."""


class TrainScreen(Screen):
    """Start the workspace's config and follow the run."""

    BINDINGS = [
        # The footer of an 80-column terminal has room for about six keys: these, with short words.
        # Every key keeps a clear description and tooltip, for ? help and the command palette.
        Binding("s", "start", "Start", tooltip="Start training the loaded config", id="start-training"),
        Binding("x", "stop", "Stop", tooltip="Stop the run after its current step, saving it to resume later",
                id="stop-run"),
        Binding("r", "resume", "Resume", tooltip="Continue the stopped run from its last saved state",
                id="resume-run"),
        Binding("i", "inspect_output", "Inspect", tooltip="Open the run's newest LoRA file in the inspector",
                id="inspect-output"),
        Binding("z", "zoom", "Zoom", tooltip="Give the plot, the log or the samples the whole screen (again: back)",
                id="zoom-panel"),
        Binding("a", "runs", "Runs", tooltip="Pick a run to follow from every known run", id="show-runs"),
        Binding("c", "save_now", "Save now", show=False,
                tooltip="Ask the trainer to save a checkpoint after its current step", id="save-now"),
        Binding("g", "sample_now", "Sample now", show=False,
                tooltip="Ask the trainer to draw sample pictures after its current step", id="sample-now"),
        Binding("p", "tab('tab-loss')", "Loss plot", show=False, tooltip="Show the loss and learning-rate plot",
                id="tab-loss"),
        Binding("l", "tab('tab-log')", "Log", show=False, tooltip="Show the run's log", id="tab-log"),
        Binding("v", "tab('tab-samples')", "Samples", show=False, tooltip="Show the newest sample pictures",
                id="tab-samples"),
        Binding("ctrl+r", "reload", "Re-read config", show=False, tooltip="Read the config file again from disk",
                id="reload-config"),
        Binding("escape", "leave_input", "Leave field", show=False,
                tooltip="Leave the config path box, so letter keys work again", id="leave-input"),
    ]
    """Keys of this screen (shown in the footer and the command palette)."""

    @property
    def workspace(self) -> Workspace:
        return self.app.workspace

    @property
    def monitor(self) -> RunMonitor:
        """The monitor of the followed run."""
        return self.query_one(RunMonitor)

    @property
    def run(self) -> RunPaths | None:
        """The run being followed, if any."""
        return self.monitor.run

    @property
    def run_state(self) -> RunState:
        """What the followed run is doing."""
        return self.monitor.state

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="config-bar"):
            yield Label("Config ")
            # Compact: one line instead of three, so the monitor below keeps the room.
            yield Input(display_path(self.workspace.path) if self.workspace.path else "", placeholder="path/to/config.toml, then Enter",
                        id="config-path", compact=True)
        yield Static("", id="summary", markup=False)
        yield Static("", id="problems", markup=False)
        yield RunMonitor(id="monitor")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = mode_bar("train")
        self.monitor.log.focus()
        self.app.workspace_changed.subscribe(self, self.show_workspace)
        self.show_workspace(self.workspace)

    # Config ---------------------------------------------------------------------------------

    def show_workspace(self, workspace: Workspace) -> None:
        """Show what the workspace's config will do, or what keeps it from starting."""
        summary = self.query_one("#summary", Static)
        problems = self.query_one("#problems", Static)
        path_box = self.query_one("#config-path", Input)
        if workspace.path is not None and not path_box.has_focus:
            path_box.value = display_path(workspace.path)
        problem_text = ""
        compact = self.size.height < TALL_SCREEN
        if workspace.path is None:
            following = f"Following {self.run.root.name}. " if self.run is not None else ""
            text = (f"{following}Type the path of a config and press Enter to start a run "
                    "(`loratui demo` makes one to try).")
        elif workspace.assessment is None or workspace.assessed_version != workspace.version:
            text = f"Checking {display_path(workspace.path)} …"
        elif not workspace.assessment.startable:
            text = f"{display_path(workspace.path)}: fix these before training can start."
            found = [f"• {p}" for p in workspace.assessment.problems]
            # Each line over 24 rows can be a problem (8 at most, as the box allows); on a short screen
            # the monitor keeps its room and the settings screen, with space for every one, is named.
            room = max(COMPACT_PROBLEMS, min(8, self.size.height - 24))
            if len(found) > room:
                found = found[:room - 1] + [f"… and {len(found) - room + 1} more: F3 (the settings) lists them all."]
            problem_text = "\n".join(found)
        else:
            text = "\n".join(summary_lines(workspace, compact=compact))
        # Compact: each line stays one line (cut with "…"); the full figures show on a taller screen.
        summary.set_class(workspace.path is not None and compact, "-compact")
        summary.update(text)
        problems.update(problem_text)
        problems.set_class(not problem_text, "-empty")  # an empty line would only take the monitor's room

    def on_resize(self) -> None:
        # The summary is shorter on a short screen: redraw it for the new height.
        self.show_workspace(self.workspace)

    @on(Input.Submitted, "#config-path")
    def _path_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.app.load_config(Path(event.value.strip()).expanduser())
        self.monitor.log.focus()

    def action_leave_input(self) -> None:
        self.monitor.log.focus()

    def action_reload(self) -> None:
        if self.workspace.path is not None:
            self.app.load_config(self.workspace.path)

    # Training -------------------------------------------------------------------------------

    async def action_start(self) -> None:
        """Start training the workspace's config in a detached process and follow it."""
        workspace = self.workspace
        if self.run is not None and self._live():
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
        dangers = [f for f in workspace.assessment.findings if f.severity == "danger"]
        others = await asyncio.to_thread(_runs_training_here, [Path(workspace.resolved().output.dir)])
        if not dangers and not others:
            await self._launch()
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_worker(self._launch(), group="start-run", exclusive=True)

        # Asked, never silently refused: the guide's dangers and a busy GPU are the user's call.
        self.app.push_screen(ConfirmScreen(*_start_question(dangers, others), yes_label="Start anyway",
                                           no_label="Not now"), answered)

    async def _launch(self) -> None:
        workspace = self.workspace
        try:
            run = create_run_dir(workspace.resolved())
        except OSError as exc:
            self.notify(f"Could not create the run folder: {exc}", severity="error")
            return
        register_run(run)
        try:
            pid = await start_detached_async(run)
        except (OSError, RuntimeError) as exc:
            self.notify(f"Could not start the trainer: {exc}", severity="error")
            return
        self.monitor.follow(run)
        self.monitor.write(f"started run {run.root} (pid {pid})")
        self.refresh_bindings()

    def attach(self, root: Path) -> None:
        """Follow an existing run (live or not), replaying its whole history.

        With no config in the workspace yet (``loratui attach RUN``), the run's own frozen copy is
        loaded, so the screen shows what the run trains instead of an empty config.
        """
        run = RunPaths(Path(root).resolve())
        self.monitor.follow(run)
        self.monitor.write(f"following {root}")
        if self.workspace.path is None and run.config.is_file():
            if self.app.load_config(run.config, announce=False):
                self.monitor.write(f"config: the copy this run was started with, {run.config}")
        self.refresh_bindings()
        self.show_workspace(self.workspace)

    def _live(self) -> bool:
        """True while the followed run's process is running."""
        pid = read_pid(self.run) if self.run is not None else None
        return pid is not None and pid_alive(pid)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Keys show in the footer only when they can do something for the followed run.
        if action == "resume":
            return self.run is not None and self.run_state.phase in ("stopped", "failed") \
                and self.run.resume_state.is_file() and not self._live()
        if action == "inspect_output":
            return self.run is not None
        if action == "start":
            return self.run is None or self.run_state.finished or not self._live()
        if action in ("stop", "save_now", "sample_now"):
            return self.run is not None and not self.run_state.finished and self._live()
        return True

    def action_stop(self) -> None:
        """Ask, then stop the run gracefully: it finishes its step, saves a checkpoint and exits."""
        run = self.run
        pid = read_pid(run) if run is not None else None
        if run is None or pid is None or not pid_alive(pid):
            self.notify("No running training to stop.", severity="warning")
            return

        def confirmed(yes: bool | None) -> None:
            if not yes:
                return
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                self.notify("The run had already ended.")
                return
            except PermissionError as exc:
                self.notify(f"Cannot stop process {pid}: {exc}", severity="error")
                return
            self.monitor.write("stop requested: the trainer saves after this step (or sample picture), then stops")

        step = f"step {self.run_state.step}/{self.run_state.total_steps}" if self.run_state.total_steps else "startup"
        self.app.push_screen(ConfirmScreen(
            f"Stop {run.root.name} at {step}?",
            "The trainer finishes the current step, saves a checkpoint and the state to resume from, then exits. "
            "r resumes it later.", yes_label="Stop training"), confirmed)

    def _request(self, action: str, what: str) -> None:
        if self.run is None or not self._live():
            self.notify("No running training to ask.", severity="warning")
            return
        if action in pending(self.run.root):
            self.notify(f"{what} is already requested; the trainer takes it after the current step.")
            return
        try:
            request(self.run.root, action)
        except OSError as exc:
            self.notify(f"Could not write the request into {self.run.root}: {exc}", severity="error")
            return
        self.monitor.write(f"{what} requested: the trainer does it after the current step")

    def action_save_now(self) -> None:
        """Ask the trainer to save a checkpoint (and its resume state) after the current step."""
        self._request("save", "A checkpoint")

    def action_sample_now(self) -> None:
        """Ask the trainer to draw sample images after the current step."""
        self._request("sample", "Sampling")

    def action_tab(self, tab: str) -> None:
        """Show one of the monitor's tabs (the plot, the log or the samples)."""
        self.monitor.show_tab(tab)

    @property
    def zoomed(self) -> bool:
        """True while the monitor's tab on show fills the screen."""
        return self.has_class("-zoomed")

    def action_zoom(self) -> None:
        """Give the tab on show (plot, log or samples) the whole screen, or give the rest back."""
        zoom = not self.zoomed
        self.set_class(zoom, "-zoomed")
        if zoom and self.focused is not None and not self.monitor.log.has_focus:
            # The tab strip and the config box are hidden now: nothing hidden may keep the focus.
            self.set_focus(None)
        elif not zoom:
            self.monitor.show_tab(self.monitor.active_tab)

    def action_inspect_output(self) -> None:
        """Open the followed run's newest LoRA (the finished one, else the newest checkpoint) in the inspector."""
        if self.run is None:
            self.notify("No run is followed: press a to pick one.", severity="warning")
            return
        lora = newest_lora(self.run, self.run_state)
        if lora is None:
            note = (f"{self.run.root.name} has no LoRA file yet: one is saved at each checkpoint, on a stop "
                    "and at the end.")
            self.monitor.write(note)
            self.notify(note, severity="warning")
            return
        self.app.action_inspect_lora(str(lora))

    def action_runs(self) -> None:
        """Pick a run to follow from every known run."""
        from loratui.screens.runs import RunsScreen

        folders = [Path(self.workspace.resolved().output.dir)] if self.workspace.path else []

        def chosen(root: Path | None) -> None:
            if root is not None:
                self.attach(root)

        self.app.push_screen(RunsScreen(folders), chosen)

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
        self.monitor.continue_from(*offsets)
        self.monitor.write(f"resuming {run.root.name} (pid {pid})")
        self.refresh_bindings()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # One place for worker failures: report them instead of crashing the app.
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            self.monitor.write(f"internal error in {event.worker.name}: {error!r}")
            self.notify(f"Something went wrong: {error}", severity="error")


def summary_lines(workspace: Workspace, compact: bool = False) -> list[str]:
    """What a startable config will do, each figure said once; ``compact`` gives two lines for a short screen."""
    assessment = workspace.assessment
    config, plan = workspace.config, assessment.plan
    network = (f"{config.kind} LoRA · {assessment.arch or config.model.arch} · {config.network.type} "
               f"{config.network.dim}/{config.network.alpha:g} · {config.optimizer.name} "
               f"{config.optimizer.unet_lr:g}/{config.optimizer.text_encoder_lr:g} · {config.scheduler.name}")
    notes = summary_notes(assessment, problems=False)
    if plan is None:
        return [network, " · ".join(notes)] if notes else [network]
    # Steps per epoch, not batches: with gradient accumulation (or several processes) a step is an update.
    steps = (f"{plan.total_steps} steps = {plan.total_steps // plan.epochs} × {plan.epochs} epochs · "
             f"{plan.images} images{held_out_words(assessment)} · {batch_words(plan)}")
    if compact:
        return [network, " · ".join([steps, *notes])]
    return [network, steps, f"({formula_words(plan)})", " · ".join(notes)] if notes else \
        [network, steps, f"({formula_words(plan)})"]


def _runs_training_here(folders: list[Path]) -> list:
    """Runs of loratui still training on this machine (started here, or in these output folders)."""
    return [summary for summary in find_runs(folders) if summary.alive]


def _start_question(dangers: list, others: list) -> tuple[str, str]:
    """The question before a start that the guide or the machine advises against, and what it is about."""
    lines = [f"✖ {f.field}: {f.message}" for f in dangers]
    if others:
        names = ", ".join(f"{s.name} (pid {s.pid})" if s.pid else s.name for s in others)
        lines.append(f"Already training on this machine: {names}. Two trainings on one GPU share its memory; "
                     "both slow down, and either may run out.")
    count = len(dangers)
    if dangers and others:
        question = f"Start with {count} danger{'s' if count != 1 else ''}, beside another training?"
    elif dangers:
        question = f"Start with {count} danger{'s' if count != 1 else ''} the guide warns about?"
    else:
        question = "Start while another training is running?"
    return question, "\n".join(lines)
