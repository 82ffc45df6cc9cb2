"""The quick-start checklist screen: the guide's three lists, ticked from the real state.

Enter on an item opens the setup screen at the setting that fixes it.
"""

from __future__ import annotations

import textwrap

from textual import on
from textual.app import ComposeResult
from textual.markup import escape
from textual.screen import Screen
from textual.widgets import Footer, Header, OptionList, Static
from textual.widgets.option_list import Option

from loratui.commands import mode_bar
from loratui.checklist import SECTIONS, checklist
from loratui.summary import summary_line
from loratui.workspace import Workspace

DATASET_TARGETS = ("dataset.path", "dataset.trigger_word")
"""Checklist items fixed on the dataset screen rather than by a setting."""


class ChecklistScreen(Screen):
    """Before you start · Safe first run · Feeling fancy."""

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="checklist-summary", markup=False)
        yield OptionList(id="checklist")
        yield Static("Enter: go where an item is fixed · ↑↓ move · ctrl+p every command", id="checklist-hint",
                     markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = mode_bar("checklist")
        self.app.workspace_changed.subscribe(self, self.show_workspace)
        self.show_workspace(self.app.workspace)
        self.query_one(OptionList).focus()

    def show_workspace(self, workspace: Workspace) -> None:
        """Tick every item from the workspace's current state."""
        options: list[Option | None] = []
        states = checklist(workspace)
        for section in SECTIONS:
            done = sum(1 for s in states if s.item.section == section and s.done)
            total = sum(1 for s in states if s.item.section == section)
            options.append(Option(f"[b]{section}[/b]  [dim]{done}/{total}[/dim]", disabled=True))
            for index, state in enumerate(states):
                if state.item.section != section:
                    continue
                mark = "[$success]✔[/]" if state.done else ("[$text-muted]·[/]" if not state.item.available else "[$error]✘[/]")
                prompt = f" {mark} {escape(state.label)}"
                if state.why:
                    # Wrapped here so every line of the note keeps its indent under the item.
                    note = textwrap.wrap(state.why, width=max(20, self._text_width() - 6))
                    prompt += "".join(f"\n     [$text-muted]{escape(line)}[/]" for line in note)
                options.append(Option(prompt, id=f"item-{index}", disabled=not state.item.available))
        option_list = self.query_one(OptionList)
        highlighted = option_list.highlighted
        option_list.clear_options()
        option_list.add_options(options)
        if highlighted is not None and highlighted < option_list.option_count:
            option_list.highlighted = highlighted
        else:  # open on the first item, so Enter always has a target
            option_list.highlighted = next((i for i, o in enumerate(options) if o and not o.disabled), None)
        name = workspace.path.name if workspace.path else "no config loaded"
        self.query_one("#checklist-summary", Static).update(f"{name} · {summary_line(workspace.assessment)}")

    def _text_width(self) -> int:
        # From the terminal's width, not the list's: the list has no size until its first layout, and
        # a width that changes between two renders of the same state made the wrapping flicker.
        return self.app.size.width - 3

    def on_resize(self) -> None:
        self.show_workspace(self.app.workspace)

    @on(OptionList.OptionSelected, "#checklist")
    def _go(self, event: OptionList.OptionSelected) -> None:
        index = int(event.option.id.split("-")[1])
        target = checklist(self.app.workspace)[index].target
        if target == "advanced":
            workspace = self.app.workspace
            workspace.advanced = not workspace.advanced
            self.app.workspace_changed.publish(workspace)
            self.notify("Advanced mode is on: the settings screen (F3) shows every setting." if workspace.advanced
                        else "Advanced mode is off: the settings screen (F3) shows the proven settings only.")
            return
        if target in DATASET_TARGETS:
            # Images and captions are fixed on the dataset screen, not by a setting.
            self.app.switch_mode("dataset")
            return
        self.app.switch_mode("setup")
        self.app.call_after_refresh(lambda: self.app.screen.focus_setting(target))
