"""Auto-captioning from the dataset screen: ask how (``TaggerScreen``), start the job, follow it.

The job is a detached child process (``python -m trainer.tagging``) that writes its captions through
the caption store, so ``u`` undoes the whole job; the screen only reads the job's events. Its
error advice is written for the command line (``--model``): here it is told in the app's words,
pointing at the dialog's Model field (``describe_tagging_event(..., in_app=True)``).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from textual import work
from textual.widgets import Label, ProgressBar
from textual.worker import get_current_worker

from loratui.dataset.describe import describe_tagging_event
from loratui.screens.tagger import TaggerScreen
from trainer.contract import tagging_jobs as jobs
from trainer.contract.events import LineTail, parse_event

JOB_POLL_SECONDS = 0.3


class CaptionJobMixin:
    """The dataset screen's auto-captioning keys (w starts, k stops) and the job's progress bar.

    Mixed into ``DatasetScreen``, which provides ``folder``, ``job``, ``_settings()`` and
    ``action_rescan()`` and composes ``#tag-job``, ``#tag-job-text`` and ``#tag-job-progress``.
    """

    def action_tagger(self) -> None:
        """Ask how to caption, then start the tagging job and follow it."""
        if self.folder is None:
            self.notify("Scan a dataset folder first.", severity="warning")
            return
        if self.job is not None:
            self.notify("A captioning job is already running (k stops it).", severity="warning")
            return
        folder, settings = self.folder, self._settings()

        def start(options: dict | None) -> None:
            if options is not None:
                self._start_job(folder, options, settings)

        self.app.push_screen(TaggerScreen(), start)

    @work(thread=True, exclusive=True, group="tagging", exit_on_error=False)
    def _start_job(self, folder: Path, options: dict, settings: dict) -> None:
        try:
            job = jobs.new_job(folder, options["tagger"], options["model"], options["mode"],
                               general_threshold=options["general_threshold"],
                               trigger_word=settings["trigger_word"], caption_extension=settings["caption_extension"])
            jobs.start_job(job)
        except (jobs.TaggingError, OSError, RuntimeError) as exc:
            self.app.call_from_thread(self.notify, f"Could not start captioning: {exc}", severity="error", timeout=12)
            return
        self.job = job
        self.app.call_from_thread(self._job_started)
        self._follow_job(job, options["tagger"])

    def _job_started(self) -> None:
        self.query_one("#tag-job").display = True
        self.query_one("#tag-job-text", Label).update("Starting the captioning job…")
        self.refresh_bindings()

    def _follow_job(self, job: Path, tagger: str) -> None:
        """Tail the job's events until it ends (runs in the tagging worker's thread)."""
        paths = jobs.JobPaths(job)
        tail = LineTail(paths.events)
        worker = get_current_worker()
        final = None
        while not worker.is_cancelled and final is None:
            alive = jobs.job_running(job)
            for event in filter(None, map(parse_event, tail.read_lines())):
                if event["type"] == "status" and event.get("phase") == "tagging":
                    self.app.call_from_thread(self._job_progress, event.get("current", 0), event.get("total", 0),
                                              event.get("file", ""))
                text = describe_tagging_event(event, in_app=True, tagger=tagger)
                if text and event["type"] in ("start", "warning", "status"):
                    self.app.call_from_thread(self.query_one("#tag-job-text", Label).update, text)
                if event["type"] in ("done", "stopped", "error"):
                    final = text or event["type"]
            if final is None and not alive:
                final = f"The captioning job stopped without a word; its output is in {paths.log}."
            time.sleep(JOB_POLL_SECONDS)
        self.app.call_from_thread(self._job_finished, final or "Stopped following the captioning job.")

    def _job_progress(self, current: int, total: int, file: str) -> None:
        self.query_one("#tag-job-progress", ProgressBar).update(total=total or None, progress=current)
        self.query_one("#tag-job-text", Label).update(f"Captioning {current}/{total} {Path(file).name}")

    def _job_finished(self, message: str) -> None:
        self.job = None
        self.query_one("#tag-job").display = False
        self.refresh_bindings()
        failed = message.startswith("error")
        # An error's advice is worth the time to read it.
        self.notify(message, timeout=30 if failed else 12, severity="error" if failed else "information")
        self.action_rescan()

    def action_stop_tagger(self) -> None:
        """Stop the captioning job after its current image (what it captioned so far is written)."""
        pid = jobs.read_pid(self.job) if self.job is not None else None
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        self.notify("Stopping the captioning job after the current image…")
