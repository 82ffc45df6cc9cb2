"""What the advice reads of a ``network.weights`` file: the UNet rate it was trained at (torch-free).

Kept apart from the rules that use it so that ``targets`` can read it too (every fix that lowers the
UNet rate then continues at most at the file's rate, and no two fixes offer different rates).
"""

from __future__ import annotations

import os
from functools import lru_cache


def trained_rate(weights: str) -> float | None:
    """The UNet rate a weights file says it was trained at (``ss_unet_lr``, else ``ss_learning_rate``);
    None when there is no file, it cannot be read, or it does not say. Only the header is read, once per
    version of the file (the rules ask on every keystroke of the settings form)."""
    if not weights:
        return None
    try:
        status = os.stat(weights)
    except (OSError, ValueError):
        return None
    return _rate(weights, status.st_mtime_ns, status.st_size)


@lru_cache(maxsize=16)
def _rate(weights: str, mtime_ns: int, size: int) -> float | None:
    # Imported here: the inspector's package reads the rules (its size verdict), which read this module.
    from loratui.inspect.safetensors_header import InspectError, read_header

    try:
        metadata = read_header(weights).metadata
    except InspectError:
        return None  # the trainer's own check of network.weights says what is wrong with the file
    for key in ("ss_unet_lr", "ss_learning_rate"):
        try:
            rate = float(metadata.get(key, ""))
        except ValueError:
            continue
        if rate > 0:
            return rate
    return None
