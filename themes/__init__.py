"""loratui's look: the registered Textual theme and the app's stylesheet (installed as ``loratui.themes``).

Colours come from the theme's variables everywhere, the loss plot included, so a user who picks
another Textual theme gets a consistent app.
"""

from __future__ import annotations

from pathlib import Path

from textual.theme import Theme

STYLESHEET = Path(__file__).with_name("app.tcss")
"""The app's stylesheet (Textual CSS)."""

LORATUI_THEME = Theme(
    name="loratui",
    primary="#E8A33D",
    secondary="#5FA8D3",
    accent="#C678DD",
    foreground="#E6E1D6",
    background="#16181D",
    surface="#1E2128",
    panel="#272B33",
    success="#7BC47F",
    warning="#E5C07B",
    error="#E06C75",
    dark=True,
)
"""A warm amber-on-charcoal theme that reads well in dim SSH terminals."""
