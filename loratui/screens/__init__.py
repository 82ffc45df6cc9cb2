"""Screens of the loratui app."""

from loratui.screens.checklist import ChecklistScreen
from loratui.screens.dataset import DatasetScreen
from loratui.screens.help import HelpScreen
from loratui.screens.setup import SetupScreen
from loratui.screens.train import TrainScreen

__all__ = ["ChecklistScreen", "DatasetScreen", "HelpScreen", "SetupScreen", "TrainScreen"]
