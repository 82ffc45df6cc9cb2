"""Widgets of the loratui app."""

from loratui.widgets.run_status import RunStatus

__all__ = ["RunStatus"]
