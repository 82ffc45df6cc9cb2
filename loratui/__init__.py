"""loratui: train Stable Diffusion LoRAs from the terminal.

This package is the terminal side: the Textual app and the ``loratui`` command. It never
imports torch or diffusers; training runs in a separate process (``python -m trainer``).
"""

__version__ = "0.1.0"
