"""Auto-captioning: the WD14 tagger (ONNX) and BLIP captions, run as a child process.

The app never loads a tagging model itself. It writes a job folder (``trainer.contract.tagging_jobs``,
which is pure Python and safe to import anywhere) and starts ``python -m trainer.tagging
JOB_DIR``, which reports through ``JOB_DIR/events.jsonl`` the same way the trainer does.

This package is the tagging process's runtime; the app imports nothing from it.
"""
