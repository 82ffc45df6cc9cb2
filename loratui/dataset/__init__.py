"""The dataset tools of the app: scanning a folder of training images for what will go wrong.

Pure Python and Pillow (no torch): ``scan_folder`` reads image headers, captions and file
bytes, never writes into the dataset, and returns a ``DatasetReport`` that the CLI prints
(``loratui dataset scan``) and the app shows.
"""

from loratui.dataset.scan import CODES, DatasetReport, FolderSummary, Issue, ScannedImage, scan_folder

__all__ = ["CODES", "DatasetReport", "FolderSummary", "Issue", "ScannedImage", "scan_folder"]
