"""The loratui Textual app: four screens over one shared workspace, in the guide's order.

- Checklist (F1): the guide's quick-start checklist, ticked from the real state.
- Dataset (F2): scan the images, fix captions and tags, auto-caption.
- Setup (F3): every setting with the guide's advice inline.
- Train (F4): start the run and monitor it.

The app owns the workspace (the config being worked on) and is the one place that changes it:
screens call ``change_setting``, ``apply_fix`` and friends, then everyone hears about the new
state through the ``workspace_changed`` signal. Assessing (which reads the dataset) runs in a
thread worker; an assessment of an outdated config is dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.signal import Signal
from textual.worker import Worker, WorkerState, get_current_worker

from loratui.presets import Preset
from loratui.rules import Fix
from loratui.screens import ChecklistScreen, DatasetScreen, HelpScreen, SetupScreen, TrainScreen
from loratui.themes import LORATUI_THEME, STYLESHEET
from loratui.workspace import Workspace
from trainer.contract.config.toml_io import ConfigFileError

ASSESS_DELAY = 0.25
DATASET_WATCH_SECONDS = 3.0
"""How often the app looks for changes in the dataset folder made outside it (an editor, a tagger in
another terminal), so that counts and advice never describe files as they were."""
"""Seconds of quiet typing before the config is assessed again."""


def _detect_gpus() -> list:
    from loratui.estimates import detect_gpus

    return detect_gpus()


class LoraTuiApp(App):
    """Train a LoRA from the terminal: checklist, settings with live advice, and the run."""

    TITLE = "loratui"
    CSS_PATH = STYLESHEET
    MODES = {"checklist": ChecklistScreen, "dataset": DatasetScreen, "setup": SetupScreen, "train": TrainScreen}
    BINDINGS = [
        Binding("f1", "switch_mode('checklist')", "Checklist", id="mode-checklist", priority=True, show=False),
        Binding("f2", "switch_mode('dataset')", "Dataset", id="mode-dataset", priority=True, show=False),
        Binding("f3", "switch_mode('setup')", "Setup", id="mode-setup", priority=True, show=False),
        Binding("f4", "switch_mode('train')", "Train", id="mode-train", priority=True, show=False),
        Binding("f6", "inspect_lora", "Inspect LoRA", id="inspect-lora", priority=True, show=False,
                tooltip="Open the LoRA inspector on any .safetensors file"),
        # Help works from anywhere: F9 even inside a text field; ? wherever it is not text.
        Binding("f9", "help", "Help", id="help-anywhere", priority=True, show=False,
                tooltip="The keys of this screen and the guide's troubleshooting"),
        Binding("question_mark", "help", "Help", id="help", show=False),
        Binding("escape", "leave_field", "Leave field", id="leave-field", show=False,
                tooltip="Move out of a text field, so that letters are shortcuts again"),
        Binding("ctrl+q", "quit", "Quit", id="quit", priority=True, show=False),
    ]
    """App-wide keys, listed in the header (``mode_bar``) and by help, so that the footer's room at 80
    columns goes to the screen's own keys; each screen adds its own. Letters are never priority keys: in a text field
    they are text, and they act as shortcuts only when no text field has the focus."""

    def __init__(self, config_path: Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                 gpus: list | None = None, mode: str | None = None, attach: Path | None = None,
                 offer_live_runs: bool = True) -> None:
        super().__init__()
        self.config_path = config_path
        """The config opened at start, if any."""
        self.overrides = list(overrides)
        """``--set`` overrides applied to the config file at load."""
        self.gpus = gpus if gpus is not None else _detect_gpus()
        """The GPUs on this machine (empty without one), for the estimates."""
        self.workspace = Workspace()
        """The config being worked on, shared by every screen."""
        self.workspace_changed: Signal[Workspace] = Signal(self, "workspace-changed")
        """Published after every change to the workspace or its assessment."""
        self.start_mode = mode
        self.attach_to = attach
        """A run folder to open on and follow (``loratui attach``)."""
        self.offer_live_runs = offer_live_runs
        """Whether to offer, at start, to follow runs that are still training."""
        self._assessing = None
        self.farewell: str | None = None
        """What to print after the app closes (a training that goes on, and how to follow it)."""

    def on_mount(self) -> None:
        self.register_theme(LORATUI_THEME)
        self.theme = LORATUI_THEME.name
        if self.config_path is not None:
            self.load_config(self.config_path, announce=False)
        if self.attach_to is not None:
            self.follow_run(self.attach_to)
            return
        self.switch_mode(self.start_mode or self._first_mode())
        if self.offer_live_runs:
            self._find_live_runs()
        self.set_interval(DATASET_WATCH_SECONDS, self.watch_dataset)

    def follow_run(self, root: Path) -> None:
        """Show the train screen following the run in ``root``."""
        self.switch_mode("train")
        self.call_after_refresh(lambda: self.screen.attach(root))

    @work(thread=True, exclusive=True, group="live-runs", exit_on_error=False)
    def _find_live_runs(self) -> None:
        """Look for runs still training (an SSH drop left them running) and offer to follow them."""
        from loratui.runs.registry import find_runs

        folders = [Path(self.workspace.resolved().output.dir)] if self.workspace.path else []
        live = [summary for summary in find_runs(folders) if summary.alive]
        if live:
            self.call_from_thread(self._offer_live_runs, live)

    def _offer_live_runs(self, live: list) -> None:
        from loratui.screens.runs import RunsScreen

        def chosen(root: Path | None) -> None:
            if root is not None:
                self.follow_run(root)

        count = "A run is" if len(live) == 1 else f"{len(live)} runs are"
        self.push_screen(RunsScreen(summaries=live, title=f"{count} still training. Enter follows it, Esc not now."),
                         chosen)

    def _first_mode(self) -> str:
        # A workspace that has never trained opens on the checklist; one with runs, on its runs.
        output = self.workspace.resolved().output.dir if self.workspace.path else ""
        has_runs = bool(output) and Path(output).is_dir() and any(Path(output).iterdir())
        return "train" if has_runs else "checklist"

    # Changing the workspace ---------------------------------------------------------------

    def load_config(self, path: Path, announce: bool = True) -> bool:
        """Load a config file into the workspace; False (with a notification) when it cannot be read."""
        try:
            self.workspace.load(path, self.overrides)
        except ConfigFileError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return False
        if announce:
            self.notify(f"Loaded {path}.")
        self._changed(assess_now=True)
        return True

    def change_setting(self, key: str, value: Any) -> None:
        self.workspace.set(key, value)
        self._changed()

    def apply_fix(self, fix: Fix) -> None:
        self.workspace.apply_fix(fix)
        self._changed(assess_now=True)

    @work(thread=True, exclusive=True, group="fix-all", exit_on_error=False)
    def apply_every_fix(self) -> None:
        """Plan every fix together against the config as it is now, then apply the result as one change."""
        workspace = self.workspace
        version = workspace.version
        plan = workspace.plan_every_fix(self.gpus)
        self.call_from_thread(self._install_fixes, version, plan)

    def _install_fixes(self, version: int, plan) -> None:
        if version != self.workspace.version:
            self.notify("The settings changed while the fixes were planned; press ctrl+g again.", severity="warning")
            return
        if not plan.changed:
            left = f" ({len(plan.unsafe)} left: each fix would raise a new danger)" if plan.unsafe else ""
            self.notify(f"Nothing to fix{left}.")
            return
        self.workspace.take_fixes(plan)
        self._changed(assess_now=True)
        labels = "; ".join(f.fix.label for f in plan.applied)
        self.notify(f"Applied {len(plan.applied)} fix{'es' if len(plan.applied) != 1 else ''}: {labels}. "
                    "ctrl+s saves them.")

    def apply_preset(self, preset: Preset) -> None:
        self.workspace.apply_preset(preset)
        self._changed(assess_now=True)
        self.notify(f"Preset: {preset.title}. {preset.description}")

    def save_workspace(self) -> None:
        try:
            backup = self.workspace.save()
        except OSError as exc:
            self.notify(f"Could not save: {exc}", severity="error")
            return
        kept = f" (the previous file is kept as {backup.name})" if backup else ""
        self.notify(f"Saved {self.workspace.path}{kept}.")
        self.workspace_changed.publish(self.workspace)

    def start_training(self) -> None:
        """Go to the train screen and start the workspace's config there."""
        self.switch_mode("train")
        self.call_after_refresh(lambda: self.screen.run_action("start"))

    def _changed(self, assess_now: bool = False) -> None:
        self.workspace_changed.publish(self.workspace)
        if self._assessing is not None:
            self._assessing.stop()
            self._assessing = None
        if assess_now:
            self.reassess()
        else:
            self._assessing = self.set_timer(ASSESS_DELAY, self.reassess)

    @work(thread=True, exclusive=True, group="assess", exit_on_error=False)
    def reassess(self) -> None:
        """Assess the current config in the background and publish the result if still current."""
        workspace = self.workspace
        version = workspace.version
        facts = workspace.assessment.facts if workspace.assessment else None
        assessment = workspace.assess(facts, self.gpus)
        if not get_current_worker().is_cancelled:
            self.call_from_thread(self._install_assessment, version, assessment)

    @work(thread=True, exclusive=True, group="dataset-watch", exit_on_error=False)
    def watch_dataset(self) -> None:
        """Assess again when the dataset folder's files changed since the last assessment read them
        (captions written by the dataset screen, or by anything else). Only listings and stats."""
        from loratui.assess import dataset_fingerprint

        assessment = self.workspace.assessment
        if assessment is None or self.workspace.assessed_version != self.workspace.version:
            return  # an assessment is on its way, and it reads the folder as it is now
        dataset = self.workspace.resolved().dataset
        # The key ends with the regularization folder's fingerprint, then the dataset folder's (assess.dataset_key).
        if (dataset_fingerprint(dataset.reg_path), dataset_fingerprint(dataset.path)) != assessment.facts.key[-2:]:
            self.call_from_thread(self.reassess)

    def _install_assessment(self, version: int, assessment) -> None:
        if version != self.workspace.version:
            return  # the config changed while this ran; a newer assessment is on its way
        self.workspace.assessment = assessment
        self.workspace.assessed_version = version
        self.workspace_changed.publish(self.workspace)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # One place for failures of the app's own background work: say so instead of going quiet.
        if event.state == WorkerState.ERROR and event.worker.group == "assess":
            self.notify(f"Checking the config failed: {event.worker.error!r}", severity="error")
        elif event.state == WorkerState.ERROR and event.worker.group == "live-runs":
            self.notify(f"Looking for running trainings failed: {event.worker.error!r}", severity="warning")

    async def action_quit(self) -> None:
        """Quit; with settings not yet saved, ask first: save, discard or stay."""
        workspace = self.workspace
        farewell = self.training_goes_on()
        if workspace.path is None or not workspace.dirty:
            self._leave(farewell)
            return
        from loratui.screens.unsaved import UnsavedChangesScreen
        from trainer.contract.config.schema import FIELDS, get_value

        saved = workspace.saved
        changed = [key for key in FIELDS if saved is None or get_value(saved, key) != get_value(workspace.config, key)]

        def answered(choice: str | None) -> None:
            if choice == "save":
                self.save_workspace()
                if not workspace.dirty:  # saving failed: the notice says why, and the app stays
                    self._leave(farewell)
            elif choice == "discard":
                self._leave(farewell)

        self.push_screen(UnsavedChangesScreen(str(workspace.path), changed), answered)

    def _leave(self, farewell: str | None) -> None:
        # Printed by the command line once the screen is restored (``farewell``): Textual's own exit
        # message is wrapped to the screen's width, and a path broken in two cannot be copied.
        self.farewell = farewell
        self.exit()

    def training_goes_on(self) -> str | None:
        """What to print on quitting while the followed run is still training: that it goes on, and
        how to come back to it (None when nothing is training)."""
        from textual.css.query import NoMatches

        try:
            screen = self.get_screen_stack("train")[0]
            run, finished = screen.run, screen.run_state.finished
        except (KeyError, IndexError, NoMatches):
            return None
        if run is None or finished:
            return None
        return (f"The run in {run.root} goes on training without the app. To follow it again:\n"
                f"  loratui attach {run.root}")

    def action_help(self) -> None:
        """The keys of the screen in front (a dialog's own, or the mode's) and the troubleshooting."""
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen, self.current_mode))

    def action_leave_field(self) -> None:
        """Leave a text field (Esc): the screen's own choice of where focus goes, else nowhere."""
        from textual.widgets import Input, TextArea

        if isinstance(self.focused, (Input, TextArea)):
            leave = getattr(self.screen, "leave_field", None)
            if leave is not None:
                leave()
            else:
                self.screen.set_focus(None)

    def run_in_mode(self, mode: str, action: str) -> None:
        """Run one screen's action from anywhere (the command palette): show that screen, then act."""
        def act():
            return self.get_screen_stack(mode)[0].run_action(action)

        if self.current_mode == mode:
            self.call_later(act)
        else:
            self.switch_mode(mode)
            self.call_after_refresh(act)

    def set_unparsed(self, key: str, reason: str | None) -> None:
        """The form's text for ``key`` does not parse (or parses again): a problem for every screen."""
        if self.workspace.set_unparsed(key, reason):
            self._changed(assess_now=True)

    def action_inspect_lora(self, path: str = "") -> None:
        """Open the LoRA inspector (on ``path`` when given)."""
        from loratui.screens.inspect import InspectScreen

        if not isinstance(self.screen, InspectScreen):
            self.push_screen(InspectScreen(path or None))

    def get_system_commands(self, screen):
        """The command palette: every action of the app from anywhere, the keys of the screen in
        front, then Textual's own commands (theme, screenshot, quit)."""
        from loratui.commands import app_commands, screen_commands

        yield from app_commands(self)
        yield from screen_commands(self, screen)
        yield from super().get_system_commands(screen)
