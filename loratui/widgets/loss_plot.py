"""The loss plot widget: shows a plot that was rendered elsewhere (``loratui.monitor.plot``, in a thread worker).

Building the plot with plotext takes milliseconds to tens of milliseconds, too long for the UI thread at
every refresh, so this widget never builds it: the screen reads ``size``, calls
``render_loss_plot`` in a worker and passes the result to ``show``.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from loratui.monitor.plot import WAITING_TEXT


class LossPlot(Static):
    """A ready-made loss plot (a Rich ``Text``); ``size`` tells the renderer how large to make it."""

    DEFAULT_CSS = """
    LossPlot {
        width: 1fr;
        height: 1fr;
        min-height: 6;
        /* A plot drawn for a wider widget must be cut, not wrapped, until the next one arrives. */
        text-wrap: nowrap;
        text-overflow: clip;
        overflow: hidden;
    }
    LossPlot.-waiting {
        content-align: center middle;
        color: $text-muted;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        # markup off: the plot is a Text already, and a run name with [brackets] must show as typed.
        super().__init__(Text(WAITING_TEXT), id=id, classes=classes, markup=False)
        self.add_class("-waiting")
        self.shown: Text = Text(WAITING_TEXT)
        """The text on show (for reading; call ``show`` to change it)."""

    def show(self, text: Text) -> None:
        """Show ``text`` (a plot from ``render_loss_plot``, or any short message) as it is."""
        self.shown = text
        # A plot fills the widget from its top-left; a one-line message reads better centred.
        self.set_class("\n" not in text.plain, "-waiting")
        self.update(text)

    def show_waiting(self) -> None:
        """Show the plain waiting message (a new run, no steps yet)."""
        self.show(Text(WAITING_TEXT))
