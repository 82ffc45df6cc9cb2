"""``python -m trainer.tagging JOB_DIR``: caption a dataset as JOB_DIR/job.json describes.

Like the trainer, the process reads nothing from stdin, reports through JOB_DIR/events.jsonl
and leaves library output and tracebacks to stdout/stderr (job.log when started by
``trainer.contract.tagging_jobs``). SIGTERM or SIGINT stops it after the current image, writing the
captions made so far; a second signal stops it at once without writing any. SIGHUP is ignored,
so a dropped SSH link never ends a job.

Events (fields besides ``type`` and ``time``):

- ``status``: ``phase`` ``loading`` with ``message``; ``phase`` ``tagging`` with ``current``,
  ``total`` (images to caption) and ``file`` (the image just done, relative to the dataset).
- ``warning``: ``code`` (``image_skipped``, ``no_caption``, ``partial_write``,
  ``captions_unwritten``), ``message`` and, for images, ``file``.
- ``start``: ``images`` (readable images found), ``to_caption``, ``tagger``, ``model``, ``mode``,
  ``device`` (``cuda``/``cpu``; null when nothing needed the model), ``dataset``.
- ``error``: ``code`` (``input``, ``model``, ``crash``), ``message``, ``advice``.
- ``done`` / ``stopped``: ``changed`` (caption files written), ``kept`` (images whose caption
  stayed as it was), ``failed``, ``change_id`` (the undoable change in ``trainer.contract.caption_store``,
  null when nothing changed), ``output`` (the job folder), ``seconds``; ``stopped`` adds
  ``reason`` and ``remaining``.

Exit status: 0 done or stopped on request, 1 failed, 2 the job or its dataset is unusable.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from trainer.contract.events import EventWriter
from trainer.contract.fileio import atomic_write_text
from trainer.contract.rundir import pid_alive
from trainer.contract.stop import StopRequest, install_stop_handlers
from trainer.contract.tagging_jobs import JobPaths, read_pid
from trainer.quiet import quiet_libraries
from trainer.tagging.job import run_job


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.tagging",
                                     description="Caption a dataset as a job folder's job.json describes.")
    parser.add_argument("job_dir", type=Path, help="a job folder holding job.json")
    args = parser.parse_args(argv)

    paths = JobPaths(args.job_dir.resolve())
    if not paths.job.is_file():
        print(f"{paths.job} does not exist: the job folder is incomplete.", file=sys.stderr)
        return 2
    other = read_pid(paths.root)
    if other is not None and other != os.getpid() and pid_alive(other):
        # Two processes on one job would interleave their events and race on the captions.
        print(f"{paths.root} is already being run by process {other}.", file=sys.stderr)
        return 2
    quiet_libraries()
    stop = StopRequest()
    install_stop_handlers(stop)
    atomic_write_text(paths.pid, f"{os.getpid()}\n")
    events = EventWriter(paths.events)
    try:
        return run_job(paths, events, stop)
    except KeyboardInterrupt:
        events.emit("stopped", reason="interrupted twice: stopped without writing captions", changed=0,
                    output=str(paths.root))
        return 0
    except Exception as exc:
        traceback.print_exc()
        events.emit("error", code="crash", message=f"{type(exc).__name__}: {exc}".splitlines()[0],
                    advice=f"This is a bug in loratui or a library; the full traceback is in {paths.log}.")
        return 1
    finally:
        events.close()
        paths.pid.unlink(missing_ok=True)


if __name__ == "__main__":
    sys.exit(main())
