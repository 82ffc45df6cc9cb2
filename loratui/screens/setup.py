"""The setup screen: every setting, grouped as the guide groups them, with its advice inline.

Typing in a field changes the workspace's config; the app re-assesses it in the background and
publishes the result, and each field shows the findings about it under itself. ctrl+f applies
the fix of the focused field's advice. Invalid text (a batch of "abc") is marked where it is
and keeps the run from starting.
"""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Label, Select, Static

from loratui.commands import mode_bar
from loratui.form_layout import BASIC, GROUPS
from loratui.presets import BY_ID, PRESETS
from loratui.screens.open_config import OpenConfigScreen
from loratui.summary import summary_line
from loratui.widgets.setting_field import MARKS, SettingField
from loratui.workspace import Workspace
from trainer.contract.config.schema import FIELDS, get_value


class SetupScreen(Screen):
    """The settings form."""

    BINDINGS = [
        Binding("ctrl+f", "apply_fix", "Apply fix", id="apply-fix", priority=True),
        Binding("ctrl+g", "apply_every_fix", "Fix all", id="apply-every-fix", priority=True),
        Binding("ctrl+s", "save", "Save", id="save-config", priority=True),
        Binding("ctrl+o", "open", "Open", id="open-config", priority=True),
        Binding("ctrl+t", "train", "Train", id="train-from-setup", priority=True),
        Binding("f5", "toggle_advanced", "Advanced", id="toggle-advanced",
                tooltip="Show every setting, or only the guide's proven ones"),
        Binding("f7", "choose_preset", "Preset", id="choose-preset", show=False, priority=True,
                tooltip="Open the list of the guide's proven presets"),
    ]
    """Keys of the form (shown in the footer and the command palette)."""

    def __init__(self) -> None:
        super().__init__()
        self.invalid: dict[str, str] = {}
        """Fields whose text does not parse, with why."""

    @property
    def workspace(self) -> Workspace:
        return self.app.workspace

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="setup-summary", markup=False)
        with Horizontal(id="preset-bar"):
            yield Label("Preset ")
            yield Select([(p.title, p.id) for p in PRESETS], allow_blank=True, prompt="choose a starting point",
                         id="preset")
            yield Static("", id="preset-diff", markup=False)
        with VerticalScroll(id="form"):
            for title, keys in GROUPS:
                yield Static(title, classes="group-title")
                for key in keys:
                    field = SettingField(FIELDS[key], get_value(self.workspace.config, key), advanced=key not in BASIC)
                    field.set_class(key not in BASIC, "-advanced-only")
                    yield field
            yield Static("", id="hidden-advice", markup=False)
        yield Static("", id="field-help", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = mode_bar("setup")
        self.app.workspace_changed.subscribe(self, self.show_workspace)
        self.show_workspace(self.workspace)
        self.fields()[0].focus_editor()

    def on_descendant_focus(self, event) -> None:
        """Say what the focused setting does, in full, on the line above the footer."""
        field = self.focused_field()
        text = f"{field.key}: {field.info.doc}" if field is not None else "Preset: start from one of the guide's " \
            "proven settings (Enter opens the list)"
        self.query_one("#field-help", Static).update(text)

    def fields(self) -> list[SettingField]:
        return list(self.query(SettingField))

    def show_workspace(self, workspace: Workspace) -> None:
        """Bring every field, the preset bar and the summary in line with the workspace."""
        self.set_class(workspace.advanced, "-advanced")
        assessment = workspace.assessment
        preset = workspace.preset
        differences = preset.differences(workspace.config) if preset else {}
        problems = assessment.problems if assessment else []
        findings = assessment.findings if assessment else []
        hidden = []
        shown = set()
        for field in self.fields():
            shown.add(field.key)
            field.set_value(get_value(workspace.config, field.key))
            field.show_preset(differences.get(field.key))
            field.show_note(_note(field.key, assessment))
            mine = [f for f in findings if f.field == field.key]
            # Text that does not parse is shown by the field itself, where it is typed.
            my_problems = [p for p in problems if p.field == field.key and field.key not in workspace.unparsed]
            field.show_advice(my_problems, mine)
            # A problem blocks the start, so an advanced field that has one shows in basic mode too.
            field.set_class(bool(my_problems), "-has-problem")
            if field.advanced and not workspace.advanced and not my_problems:
                hidden += mine
        hidden += [f for f in findings if f.field not in shown]  # advice about a field the form does not show
        others = [p for p in problems if p.field not in shown]
        lines = [f"{MARKS['error']} {p}" for p in others]
        lines += [f"{MARKS[f.severity]} {f.field}: {f.message}" for f in hidden]
        self.query_one("#hidden-advice", Static).update(
            ("Advice about advanced settings (F5 shows them) and other problems:\n" + "\n".join(lines)) if lines else "")
        with self.query_one("#preset", Select).prevent(Select.Changed):
            self.query_one("#preset", Select).value = preset.id if preset else Select.NULL
        count = len(differences)
        diff_text = (f"{count} value differs from it" if count == 1 else f"{count} values differ from it") if preset else ""
        self.query_one("#preset-diff", Static).update(diff_text)
        name = workspace.path.name if workspace.path else "new config"
        state = " (unsaved)" if workspace.dirty else ""
        mode = "every setting" if workspace.advanced else "proven settings (F5: all)"
        self.query_one("#setup-summary", Static).update(f"{name}{state} · {mode} · {summary_line(assessment)}")

    @on(SettingField.Changed)
    def _changed(self, event: SettingField.Changed) -> None:
        if event.field is not None:
            event.field.applied()  # first: the config shown again next is the one with this change
        self.app.change_setting(event.key, event.value)

    @on(SettingField.Invalid)
    def _invalid(self, event: SettingField.Invalid) -> None:
        if event.reason is None:
            self.invalid.pop(event.key, None)
        else:
            self.invalid[event.key] = event.reason
        self.app.set_unparsed(event.key, event.reason)

    @on(Select.Changed, "#preset")
    def _preset(self, event: Select.Changed) -> None:
        if event.value in BY_ID:
            self.app.apply_preset(BY_ID[event.value])

    def focused_field(self) -> SettingField | None:
        node = self.focused
        while node is not None and not isinstance(node, SettingField):
            node = node.parent
        return node

    def action_apply_fix(self) -> None:
        """Apply the first fix offered under the focused field."""
        field = self.focused_field()
        fixes = [f.fix for f in (field.findings if field else []) if f.fix]
        if not fixes:
            self.notify("No fix to apply here: move to a field with advice (ctrl+f works on the focused one).")
            return
        self.app.apply_fix(fixes[0])
        self.notify(f"Applied: {fixes[0].label}.")

    def action_apply_every_fix(self) -> None:
        """Apply every danger's and warning's fix, planned together (``loratui.rules.fix_all``)."""
        self.app.apply_every_fix()

    def action_toggle_advanced(self) -> None:
        self.workspace.advanced = not self.workspace.advanced
        self.show_workspace(self.workspace)
        self.notify("Every setting is shown (F5: proven ones only)." if self.workspace.advanced
                    else "Only the guide's proven settings are shown (F5: every setting).")

    def action_choose_preset(self) -> None:
        """Open the preset list (F7, or the palette)."""
        preset = self.query_one("#preset", Select)
        preset.focus()
        preset.expanded = True

    def _blocked(self) -> bool:
        if self.invalid:
            key, reason = next(iter(self.invalid.items()))
            self.notify(f"{key}: {reason}. Fix it first.", severity="error")
            self.query_one(f"#field-{key.replace('.', '-')}", SettingField).focus_editor()
            return True
        return False

    def action_save(self) -> None:
        if not self._blocked():
            self.app.save_workspace()

    def action_open(self) -> None:
        """Ask for another config file and load it (unsaved changes are dropped, so say so)."""
        def opened(path: str | None) -> None:
            if path:
                self.app.load_config(Path(path).expanduser())

        if self.workspace.dirty and self.workspace.path is not None:
            self.notify("Opening another config drops the unsaved changes here (ctrl+s saves them first).",
                        severity="warning")
        self.app.push_screen(OpenConfigScreen(str(self.workspace.path or "")), opened)

    def action_train(self) -> None:
        if not self._blocked():
            self.app.start_training()

    def focus_setting(self, key: str) -> None:
        """Show and focus one field (the checklist sends people here)."""
        if key not in BASIC and not self.workspace.advanced:
            self.workspace.advanced = True
            self.show_workspace(self.workspace)
        field = self.query_one(f"#field-{key.replace('.', '-')}", SettingField)
        field.focus_editor(scroll_visible=False)
        # Scroll once the layout has settled: advice being mounted above the field moves it.
        self.call_after_refresh(self.query_one("#form", VerticalScroll).scroll_to_widget, field, top=True,
                                animate=False)


def _note(key: str, assessment) -> str:
    """What a field's value means for this model, where the form should say it (what ``auto`` found)."""
    if key == "model.prediction" and assessment is not None and assessment.prediction is not None:
        return f"predicts {assessment.prediction.explanation}"
    return ""
