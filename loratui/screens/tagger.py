"""Choose how to auto-caption a dataset: WD14 tags or BLIP sentences, the model, what to do with existing captions."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select

from trainer.contract.tagging_jobs import DEFAULT_MODELS, MODES

TAGGER_CHOICES = [("WD14 tags (anime and art)", "wd14"), ("BLIP sentences (photos)", "blip")]
MODE_CHOICES = [("keep captions that exist, caption the rest", "keep"),
                ("append the new tags to existing captions", "append"),
                ("overwrite every caption", "overwrite")]


class TaggerScreen(ModalScreen[dict | None]):
    """Dismissed with the job's options (tagger, model, mode, general_threshold), or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel-tagger")]

    def __init__(self, tagger: str = "wd14") -> None:
        super().__init__()
        self.tagger = tagger

    def compose(self) -> ComposeResult:
        with Vertical(id="tagger-dialog"):
            yield Label("Auto-caption the dataset. The captions are backed up first; u on the dataset screen "
                        "undoes the whole job.", markup=False)
            yield Select(TAGGER_CHOICES, value=self.tagger, allow_blank=False, id="tagger-kind")
            yield Input(DEFAULT_MODELS[self.tagger], placeholder="a local folder or a hub id", id="tagger-model")
            assert set(MODES) == {value for _, value in MODE_CHOICES}
            yield Select(MODE_CHOICES, value="keep", allow_blank=False, id="tagger-mode")
            yield Input("", placeholder="WD14 tag threshold (empty: the model's usual one)", id="tagger-threshold")
            with Horizontal(id="tagger-buttons"):
                yield Button("Start", variant="primary", id="tagger-start")
                yield Button("Cancel", id="tagger-cancel")

    @on(Select.Changed, "#tagger-kind")
    def _kind_changed(self, event: Select.Changed) -> None:
        model = self.query_one("#tagger-model", Input)
        if model.value in DEFAULT_MODELS.values():
            model.value = DEFAULT_MODELS[str(event.value)]
        self.query_one("#tagger-threshold").display = event.value == "wd14"

    @on(Button.Pressed, "#tagger-start")
    @on(Input.Submitted)
    def _start(self) -> None:
        threshold_text = self.query_one("#tagger-threshold", Input).value.strip()
        threshold = None
        if threshold_text:
            try:
                threshold = float(threshold_text)
            except ValueError:
                self.notify(f"{threshold_text!r} is not a number between 0 and 1.", severity="error")
                return
        self.dismiss({"tagger": str(self.query_one("#tagger-kind", Select).value),
                      "model": self.query_one("#tagger-model", Input).value.strip() or None,
                      "mode": str(self.query_one("#tagger-mode", Select).value),
                      "general_threshold": threshold})

    @on(Button.Pressed, "#tagger-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
