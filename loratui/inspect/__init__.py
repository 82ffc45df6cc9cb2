"""Inspect LoRA files from any kohya-compatible trainer, in pure Python (no torch, no safetensors).

``inspect_file(path)`` → ``LoraReport``: network type, dim and alpha per block, base model, the
training settings and tag counts of the ``ss_*`` metadata, and the file's size against the
guide's range. ``format_report`` renders it as text; ``LoraReport.to_json`` as data.
"""

from loratui.inspect.report import LoraReport, inspect_file
from loratui.inspect.safetensors_header import InspectError, read_header
from loratui.inspect.text import format_report

__all__ = ["InspectError", "LoraReport", "format_report", "inspect_file", "read_header"]
