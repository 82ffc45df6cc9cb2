"""The inspect screen: what is inside a LoRA file, as ``loratui inspect`` prints it.

Type a file's path and press Enter; the report (network type, dim and alpha per block, base
model, training settings, tags, size against the guide) fills the rest of the screen. Reading
runs in a thread worker (a header can be up to 100 MB on a hostile file) and reports back with
``call_from_thread``; a file that cannot be inspected shows why, in place of the report.
Keyboard only: Tab moves between the path and the report, arrows and PgUp/PgDn scroll, Esc
goes back.
"""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Static
from textual.worker import Worker, WorkerState

from loratui.inspect import InspectError, format_report, inspect_file

HINT = ("Type the path of a LoRA .safetensors file and press Enter: from loratui or any kohya-compatible "
        "trainer. Only its header is read.")


class InspectScreen(Screen):
    """Inspect a LoRA file; Esc goes back to the screen it was opened from."""

    DEFAULT_CSS = """
    InspectScreen #inspect-bar { height: auto; padding: 0 1; background: $panel; }
    InspectScreen #inspect-bar Label { padding: 1 0; }
    InspectScreen #inspect-path { width: 1fr; }
    InspectScreen #inspect-scroll { height: 1fr; padding: 0 1; }
    """

    BINDINGS = [
        Binding("escape", "back", "Back", id="inspect-back"),
        Binding("ctrl+r", "reread", "Read again", id="inspect-reread", priority=True),
    ]
    """Keys of the screen (the path field keeps every other key for typing)."""

    TAGS = 15
    """How many of the most frequent training tags the report lists."""

    def __init__(self, path: Path | str | None = None) -> None:
        super().__init__()
        self.path = Path(path) if path else None
        """The file on screen (or being read)."""
        self.report = None
        """The latest ``LoraReport``, None until a file has been read (or when it could not be)."""
        self.error: str | None = None
        """Why the latest file could not be inspected."""

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="inspect-bar"):
            yield Label("LoRA file ")
            yield Input(str(self.path or ""), placeholder="path/to/lora.safetensors, then Enter", id="inspect-path")
        with VerticalScroll(id="inspect-scroll"):
            yield Static(HINT, id="inspect-report", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "Inspect a LoRA"
        if self.path is not None:
            self.read(self.path)
        else:
            self.query_one("#inspect-path", Input).focus()

    @on(Input.Submitted, "#inspect-path")
    def _submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        if text:
            self.read(Path(text).expanduser())

    def read(self, path: Path) -> None:
        """Inspect ``path`` in the background and show the result when it is ready."""
        self.path = path
        self.query_one("#inspect-report", Static).update(f"Reading {path} …")
        self._inspect(path)

    @work(thread=True, exclusive=True, group="inspect", exit_on_error=False)
    def _inspect(self, path: Path) -> None:
        try:
            report, error = inspect_file(path), None
        except InspectError as exc:
            report, error = None, str(exc)
        self.app.call_from_thread(self._show, path, report, error)

    def _show(self, path: Path, report, error: str | None) -> None:
        if path != self.path:
            return  # another file was asked for meanwhile
        self.report, self.error = report, error
        text = "\n".join(format_report(report, tags=self.TAGS)) if report is not None else error
        self.query_one("#inspect-report", Static).update(text)
        scroll = self.query_one("#inspect-scroll", VerticalScroll)
        scroll.scroll_home(animate=False)
        if report is not None:
            scroll.focus()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # An unexpected failure (not an InspectError) is said on screen rather than lost.
        if event.worker.group == "inspect" and event.state == WorkerState.ERROR:
            self.report, self.error = None, f"Reading {self.path} failed: {event.worker.error!r}"
            self.query_one("#inspect-report", Static).update(self.error)

    def action_reread(self) -> None:
        if self.path is not None:
            self.read(self.path)

    def action_back(self) -> None:
        self.dismiss()
