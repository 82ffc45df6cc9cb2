"""One setting in the form: its label, its editor, and the guide's advice about it, inline.

The editor follows the setting's type: a switch for yes/no, a list for choices, a text box for
numbers and text. A text box that does not parse (a learning rate of "abc") is marked invalid
with the reason and does not change the config; the screen refuses to start while any is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static, Switch

from loratui.form_layout import field_label
from loratui.rules import Finding
from trainer.contract.config.schema import FieldInfo, Problem

MARKS = {"danger": "✖", "warn": "▲", "tip": "●", "error": "✖"}


def format_value(info: FieldInfo, value: Any) -> str:
    """A value as the text box shows it."""
    if info.type is list:
        return "; ".join(value)
    if info.type is float:
        return f"{value:g}"
    return str(value)


def parse_value(info: FieldInfo, text: str) -> Any:
    """Text from a box as the setting's type; raises ValueError with a plain reason."""
    text = text.strip()
    if info.type is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a whole number") from None
    if info.type is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number (write 5e-4 or 0.0005)") from None
    if info.type is list:
        return [part.strip() for part in text.split(";") if part.strip()]
    return text


class SettingField(Vertical):
    """The editor for one config field, with its inline findings."""

    @dataclass
    class Changed(Message):
        """The user set a valid new value. The form calls ``field.applied()`` once it has taken it."""

        key: str
        value: Any
        field: SettingField | None = None

        @property
        def control(self) -> SettingField | None:
            return self.field

    @dataclass
    class Invalid(Message):
        """The text in the box does not parse; ``reason`` says why (None once it parses again)."""

        key: str
        reason: str | None

    def __init__(self, info: FieldInfo, value: Any, *, advanced: bool) -> None:
        super().__init__(id="field-" + info.key.replace(".", "-"), classes="setting")
        self.info = info
        """The schema's description of this field."""
        self.value = value
        self.advanced = advanced
        """Shown only in advanced mode."""
        self.tooltip = info.doc
        self._parse_error: str | None = None
        self._advice: tuple = ()
        self._last: tuple[list[Problem], list[Finding]] = ([], [])
        self._unapplied = 0
        """Changes sent that the form has not taken yet: while any is on its way, the box is newer
        than the config (see ``set_value``)."""

    @property
    def key(self) -> str:
        return self.info.key

    def compose(self) -> ComposeResult:
        with Horizontal(classes="setting-row"):
            yield Label(field_label(self.info.key), classes="setting-label")
            yield self._editor()
            yield Static("", classes="setting-preset", markup=False)
        yield Static("", classes="setting-note", markup=False)
        yield Vertical(classes="setting-advice")

    def _editor(self):
        info, editor_id = self.info, "editor-" + self.info.key.replace(".", "-")
        if info.type is bool:
            return Switch(bool(self.value), id=editor_id)
        if info.choices:
            options = [(str(c), c) for c in info.choices]
            if self.value not in info.choices:  # a value only a later version offers, from a file
                options.append((f"{self.value} (unknown)", self.value))
            return Select(options, value=self.value, allow_blank=False, id=editor_id)
        # No placeholder: a cut-off docstring read as a value; the screen shows the whole doc of the
        # focused field instead.
        return Input(format_value(info, self.value), id=editor_id)

    def on_descendant_focus(self) -> None:
        # A class, not :focus-within: the mark must follow the focus on every row, switches included.
        self.add_class("-focused")

    def on_descendant_blur(self) -> None:
        self.remove_class("-focused")

    def editor_widget(self) -> Widget:
        """The input, list or switch that edits this field's value."""
        return self.query_one(f"#editor-{self.key.replace('.', '-')}")

    def focus_editor(self, scroll_visible: bool = True) -> None:
        self.editor_widget().focus(scroll_visible=scroll_visible)

    def applied(self) -> None:
        """The form has taken the oldest change this field sent (it calls this before it shows the
        config again)."""
        self._unapplied = max(0, self._unapplied - 1)

    def set_value(self, value: Any) -> None:
        """Show a value set from elsewhere (a fix, a preset, another file) without sending Changed back.

        The form shows the whole config again after each change, and on a busy machine it does so
        while later keys are still on their way. While any change sent from here has not been taken,
        the config is older than the box and nothing it says is news: writing it would put older
        text in the box and clamp the cursor into it, so the next keys land mid-word. Once every
        change is taken, a value that differs from the box's came from elsewhere and shows, with the
        cursor at its end. (Matching echoes by value failed when typing came back to an earlier
        text: "st", backspace, "t" sends "st" twice.)
        """
        if self._unapplied or value == self.value:
            return
        self.value = value
        editor = self.editor_widget()
        with editor.prevent(Input.Changed, Select.Changed, Switch.Changed):
            if isinstance(editor, Switch):
                editor.value = bool(value)
            elif isinstance(editor, Select):
                editor.value = value
            else:
                editor.value = format_value(self.info, value)
                editor.cursor_position = len(editor.value)
        self._set_parse_error(None)

    def show_preset(self, preset_value: Any | None) -> None:
        """Mark the field when it differs from the chosen preset."""
        text = "" if preset_value is None else f"preset: {format_value(self.info, preset_value)}"
        self.query_one(".setting-preset", Static).update(text)

    def show_note(self, text: str) -> None:
        """A line under the field saying what its value means here (what ``auto`` found), or nothing."""
        note = self.query_one(".setting-note", Static)
        note.update(text)
        note.display = bool(text)

    @property
    def findings(self) -> list[Finding]:
        """The guide's findings shown under this field."""
        return list(self._last[1])

    def show_advice(self, problems: list[Problem], findings: list[Finding]) -> None:
        """Show the hard problems and the guide's findings about this field, most serious first."""
        self._last = (problems, findings)
        lines = [("error", p.message, None) for p in problems]
        lines += [(f.severity, f.message, f.fix.label if f.fix else None) for f in findings]
        if self._parse_error:
            lines.insert(0, ("error", self._parse_error, None))
        advice = tuple(lines)
        if advice == self._advice:
            return
        self._advice = advice
        box = self.query_one(".setting-advice", Vertical)
        box.remove_children()
        for severity, message, fix in advice:
            text = f"{MARKS[severity]} {message}" + (f"  [ctrl+f: {fix}]" if fix else "")
            box.mount(Static(text, classes=f"advice -{severity}", markup=False))
        self.set_class(bool(advice), "-has-advice")

    def _set_parse_error(self, reason: str | None) -> None:
        if reason == self._parse_error:
            return
        self._parse_error = reason
        self.query_one(f"#editor-{self.key.replace('.', '-')}").set_class(reason is not None, "-invalid")
        self.show_advice(*self._last)
        self.post_message(self.Invalid(self.key, reason))

    @on(Input.Changed)
    def _typed(self, event: Input.Changed) -> None:
        event.stop()
        try:
            value = parse_value(self.info, event.value)
        except ValueError as exc:
            self._set_parse_error(str(exc))
            return
        self._set_parse_error(None)
        if value != self.value:
            self._send(value)

    @on(Select.Changed)
    def _chosen(self, event: Select.Changed) -> None:
        event.stop()
        if event.value != self.value and event.value is not Select.NULL:
            self._send(event.value)

    @on(Switch.Changed)
    def _switched(self, event: Switch.Changed) -> None:
        event.stop()
        if event.value != self.value:
            self._send(event.value)

    def _send(self, value: Any) -> None:
        self.value = value
        self._unapplied += 1
        self.post_message(self.Changed(self.key, value, self))
