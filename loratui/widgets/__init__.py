"""Widgets of the loratui app."""

from loratui.widgets.loss_plot import LossPlot
from loratui.widgets.run_status import RunStatus
from loratui.widgets.sample_view import SampleView

__all__ = ["LossPlot", "RunStatus", "SampleView"]
