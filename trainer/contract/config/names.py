"""The config's fixed vocabulary: its version, the choices some fields allow, and ``Problem``.

Kept apart from ``schema`` so that the cross-field checks can use them without importing the
schema that runs those checks.
"""

from __future__ import annotations

from dataclasses import dataclass

CONFIG_VERSION = 1
"""The schema version written into every saved config."""

SUPPORTED_NETWORKS = ("lora", "locon", "loha", "lokr", "ia3", "boft", "glora")
DORA_NETWORKS = ("lora", "locon", "loha", "lokr")
"""Network types that ``network.dora`` can add weight decomposition to."""
SUPPORTED_OPTIMIZERS = ("adamw", "adamw8bit", "came", "adafactor", "prodigy", "prodigy_plus")
SUPPORTED_SCHEDULERS = ("constant", "linear", "cosine", "cosine_with_restarts", "rex")
LR_FREE_OPTIMIZERS = ("prodigy", "prodigy_plus")
"""Optimizers that find their own step size: the configured rate only scales it, so it is near 1.0."""
SCHEDULE_FREE_OPTIMIZERS = ("prodigy_plus",)
"""Optimizers that average their own weights instead of following a schedule."""
FUSED_OPTIMIZERS = ("adamw", "adamw8bit", "came", "adafactor", "prodigy_plus")
"""Optimizers that can update one weight at a time inside the backward pass."""
LR_FREE_MIN = 0.1
"""Below this, a rate given to a learning-rate-free optimizer is a leftover AdamW value, not a scale."""
CONV_NETWORKS = ("locon", "loha", "lokr")
"""Network types that adapt the 3×3 convolutions, and so use ``conv_dim`` and ``conv_alpha``."""
MAX_NAME_BYTES = 200
"""Longest ``output.name`` in UTF-8 bytes. File systems cap a file name at 255 bytes, and the longest
name loratui derives from it (``<name>-step0001234.safetensors``, ``<name>-20250101-120000-2``) adds
up to about 30; 200 leaves room to spare, so a run never dies at its first save."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: the dotted field name and what to do about it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"
