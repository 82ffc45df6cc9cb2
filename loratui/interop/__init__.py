"""Converting configs between loratui and the trainers people already use (no torch).

``loratui export CONFIG --to sd-scripts DIR`` writes the kohya-ss/sd-scripts equivalent of a
loratui config (``sdscripts``); ``loratui import FILE`` reads an sd-scripts or
LoRA_Easy_Training_Scripts config back (``importers``). Both print a ``MappingReport``: what
carried over, what only approximately, what has no equivalent, and what was defaulted.
"""

from loratui.interop.importers import ImportResult, InteropError, import_file
from loratui.interop.report import Entry, MappingReport
from loratui.interop.sdscripts import Export, export_sdscripts

__all__ = ["Entry", "Export", "ImportResult", "InteropError", "MappingReport", "export_sdscripts", "import_file"]
