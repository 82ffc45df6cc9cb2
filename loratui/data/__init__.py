"""Data files the app reads: ``lora_shapes.json``, the layer and memory tables behind its estimates.

That file is written by ``python -m trainer.tools.shape_tables``; ``loratui.estimates`` reads it.
"""
