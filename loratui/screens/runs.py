"""Pick a run to follow: every known run, or (when the app starts) the ones still training."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from loratui.summary import display_path
from loratui.runs.registry import RunSummary, find_runs


def describe_run(summary: RunSummary) -> str:
    """A run's status, progress, last loss and name, then where it is: a run in another folder is
    told apart from one of the same name here by its path."""
    state = summary.state
    steps = f"{state.step}/{state.total_steps}" if state.total_steps else "-"
    loss = f"{state.loss:.4f}" if state.loss is not None else "-"
    return f"{summary.status:9} {steps:>11}  loss {loss:>7}  {summary.name}\n  in {display_path(summary.paths.root)}"


class RunsScreen(ModalScreen[Path | None]):
    """Dismissed with the chosen run folder, or None."""

    BINDINGS = [Binding("escape", "cancel", "Not now", id="close-runs")]

    def __init__(self, folders: list[Path] | None = None, summaries: list[RunSummary] | None = None,
                 title: str = "Runs (newest first): Enter follows one, Esc closes") -> None:
        super().__init__()
        self.folders = folders or []
        """Folders searched besides the registry of runs."""
        self.summaries = summaries
        """Runs to offer; None reads them (off the UI thread) when the screen opens."""
        self.title_text = title

    def compose(self) -> ComposeResult:
        with Vertical(id="runs-dialog"):
            yield Label(self.title_text, id="runs-title", markup=False)
            yield OptionList(id="runs-list")

    def on_mount(self) -> None:
        if self.summaries is None:
            self.query_one(OptionList).add_option(Option("Reading the run folders…", disabled=True))
            self._load()
        else:
            self._show(self.summaries)
        self.query_one(OptionList).focus()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _load(self) -> None:
        summaries = find_runs(self.folders)
        self.app.call_from_thread(self._show, summaries)

    def _show(self, summaries: list[RunSummary]) -> None:
        self.summaries = summaries
        options = self.query_one(OptionList)
        options.clear_options()
        if not summaries:
            options.add_option(Option("No runs yet: press s on the train screen to start one.", disabled=True))
            return
        options.add_options(Option(describe_run(s), id=str(s.paths.root)) for s in summaries)
        options.highlighted = 0

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.dismiss(Path(event.option.id))

    def action_cancel(self) -> None:
        self.dismiss(None)
