"""Screens of the loratui app."""

from loratui.screens.train import TrainScreen

__all__ = ["TrainScreen"]
