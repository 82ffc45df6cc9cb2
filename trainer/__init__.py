"""The loratui training process: ``python -m trainer RUN_DIR``.

Three rooms, told apart by where they live:

- ``trainer.contract``: the torch-free contract the app imports (config, run folder, events,
  dataset scan and step plan, captions, preflight, file io).
- the runtime modules directly here and in ``networks``/``tagging``: the loop and everything
  heavy it loads, imported by the training and tagging processes only.
- ``trainer.tools``: offline builders (tiny models, shape tables) used by the demo, tests and
  maintainers, never by a training run.
"""
