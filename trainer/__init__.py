"""The loratui training process: ``python -m trainer RUN_DIR``.

Importing this package is cheap on purpose: the contract modules (``config``, ``events``,
``plan``, ``rundir``, ``captions``, ``preflight``, ``fileio``) import no torch, so the terminal
app can use them. Everything heavy lives in the modules the training process alone imports.
"""
