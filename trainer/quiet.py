"""Keep library chatter out of the user's way.

transformers, diffusers and huggingface_hub print progress bars, telemetry notices and
config warnings that mean nothing to someone training a LoRA. Called before those libraries
are imported; real problems still reach trainer.log through warnings and exceptions.
"""

from __future__ import annotations

import logging
import os
import warnings


def quiet_libraries() -> None:
    """Silence progress bars and info-level logging of the ML libraries."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("transformers", "diffusers", "huggingface_hub", "accelerate", "bitsandbytes"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*Failed to initialize NumPy.*")
