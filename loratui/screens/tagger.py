"""Choose how to auto-caption a dataset: WD14 tags or BLIP sentences, the model, what to do with existing captions.

Every field has a label beside it and, where it needs one, a help line under it: a placeholder
vanishes as soon as something is typed, so it never carries the help. The dialog fits 80×24.
"""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from trainer.contract.tagging_jobs import DEFAULT_MODELS, MODEL_CONTENTS, MODES

TAGGER_CHOICES = [("WD14 tags (anime and art)", "wd14"), ("BLIP sentences (photos)", "blip")]
MODE_CHOICES = [("keep captions that exist, caption the rest", "keep"),
                ("append the new tags to existing captions", "append"),
                ("overwrite every caption", "overwrite")]


def model_help(tagger: str) -> str:
    """The help line under the Model field, for one tagger."""
    return f"A folder on this machine with {MODEL_CONTENTS[tagger]}, or a Hugging Face id (needs network)."


class TaggerScreen(ModalScreen[dict | None]):
    """Dismissed with the job's options (tagger, model, mode, general_threshold), or None."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="cancel-tagger",
                        tooltip="Close the dialog without captioning anything")]

    def __init__(self, tagger: str = "wd14") -> None:
        super().__init__()
        self.tagger = tagger

    def compose(self) -> ComposeResult:
        assert set(MODES) == {value for _, value in MODE_CHOICES}
        with Vertical(id="tagger-dialog") as dialog:
            dialog.border_title = "Auto-caption the dataset"
            with Horizontal(classes="tagger-row"):
                yield Label("Captioner", classes="tagger-label")
                yield Select(TAGGER_CHOICES, value=self.tagger, allow_blank=False, id="tagger-kind")
            with Horizontal(classes="tagger-row"):
                yield Label("Model", classes="tagger-label")
                yield Input(DEFAULT_MODELS[self.tagger], id="tagger-model")
            yield Static(model_help(self.tagger), id="tagger-model-help", classes="tagger-help", markup=False)
            with Horizontal(classes="tagger-row"):
                yield Label("Captions", classes="tagger-label")
                yield Select(MODE_CHOICES, value="keep", allow_blank=False, id="tagger-mode")
            with Horizontal(classes="tagger-row", id="tagger-threshold-row"):
                yield Label("Threshold", classes="tagger-label")
                yield Input("", id="tagger-threshold")
            yield Static("WD14 keeps the tags scored above this, 0 to 1. Empty: the model's usual one (0.35 for most).",
                         id="tagger-threshold-help", classes="tagger-help", markup=False)
            with Horizontal(id="tagger-buttons"):
                yield Static("Captions are backed up first: u on the dataset screen undoes the whole job.",
                             id="tagger-note", markup=False)
                yield Button("Start", variant="primary", id="tagger-start")
                yield Button("Cancel", id="tagger-cancel")

    @on(Select.Changed, "#tagger-kind")
    def _kind_changed(self, event: Select.Changed) -> None:
        tagger = str(event.value)
        model = self.query_one("#tagger-model", Input)
        if model.value in DEFAULT_MODELS.values():
            model.value = DEFAULT_MODELS[tagger]
        self.query_one("#tagger-model-help", Static).update(model_help(tagger))
        # BLIP writes sentences: it has no tag threshold.
        self.query_one("#tagger-threshold-row").display = tagger == "wd14"
        self.query_one("#tagger-threshold-help").display = tagger == "wd14"

    @on(Button.Pressed, "#tagger-start")
    @on(Input.Submitted)
    def _start(self) -> None:
        threshold_text = self.query_one("#tagger-threshold", Input).value.strip()
        threshold = None
        if threshold_text:
            try:
                threshold = float(threshold_text)
            except ValueError:
                threshold = -1.0
            if not 0 <= threshold <= 1:
                self.notify(f"The threshold {threshold_text!r} is not a number from 0 to 1.", severity="error")
                return
        self.dismiss({"tagger": str(self.query_one("#tagger-kind", Select).value),
                      "model": self.query_one("#tagger-model", Input).value.strip() or None,
                      "mode": str(self.query_one("#tagger-mode", Select).value),
                      "general_threshold": threshold})

    @on(Button.Pressed, "#tagger-cancel")
    def action_cancel(self) -> None:
        """Close the dialog without starting anything."""
        self.dismiss(None)
