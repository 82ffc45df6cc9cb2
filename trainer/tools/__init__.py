"""Build-time tools that never run inside a training run.

``tiny`` builds the tiny offline SD1.5/SDXL models the demo and the tests train; ``tiny_taggers``
builds tiny WD14/BLIP taggers; ``shape_tables`` writes the LoRA shape tables the app's size
estimates read (``loratui/data/lora_shapes.json``).
"""
