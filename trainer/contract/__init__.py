"""The contract between the app and the training process: pure Python, no torch.

Everything here is safe to import from the terminal app, a shell tool or a notebook: the config
schema and its TOML file (``config``), the run folder and its pid (``rundir``), the events the
trainer writes (``events``), control and stop requests (``control``, ``stop``), the dataset as
the trainer reads it (``dataset_scan``, ``captions``, ``caption_store``) and its exact step count
(``plan``), the checks run before a start (``preflight``), model references (``model_ref``),
tagging job folders (``tagging_jobs``), what a LoRA resize can do with a file (``resize_plan``),
atomic file writes (``fileio``), trainer errors (``errors``) and the fault-injection switches tests use (``faults``).

``tests/unit/test_walls.py`` fails when a module here imports a heavy library (torch, diffusers,
transformers, safetensors' torch half, ...), directly, through another module, or inside a function.
"""
