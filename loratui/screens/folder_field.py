"""The dataset screen's folder path box, kept out of the Tab cycle.

Letters typed into a text field are text, so a path box that Tab reaches by surprise turns the
screen's one-letter keys into typing (``d`` for "remove tag" became ``…/datad``). This box takes
the focus only when asked: its key (ctrl+l on the dataset screen), a click, or ``focus()`` from
code. Once it loses the focus it is out of the cycle again.
"""

from __future__ import annotations

from textual import events
from textual.widgets import Input


class FolderField(Input):
    """An Input that Tab passes over; it is focused on purpose only."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._wanted = False

    def allow_focus(self) -> bool:
        """Only when asked for (see the module notes); the focus chain and clicks ask this."""
        return self._wanted

    def focus(self, scroll_visible: bool = True) -> "FolderField":
        """Take the focus: called on purpose, so the box accepts it."""
        self._wanted = True
        return super().focus(scroll_visible)

    # Textual calls these as well as Input's own handlers of the same names (one per class).

    def _on_mouse_down(self, event: events.MouseDown) -> None:
        # A click is a request too; the screen would otherwise pass over a box that refuses focus.
        if not self._wanted:
            self.focus()

    def _on_blur(self, event: events.Blur) -> None:
        # The terminal losing focus, or a dialog on top, blurs the box but leaves it the screen's
        # focus, which comes back to it; only a real move elsewhere takes it out of the cycle.
        if self.screen.focused is not self:
            self._wanted = False
