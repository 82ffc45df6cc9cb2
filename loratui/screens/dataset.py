"""The dataset screen: the guide's Phase 1 — scan, fix, caption and tag a folder of images.

Everything that reads or writes the dataset runs in a thread worker and reports back by
message (``call_from_thread``); only handlers touch widgets. Every caption change goes through
``trainer.contract.caption_store``, which backs the captions up first, so ``u`` undoes any of them, and
auto-captioning runs as a detached child process (``python -m trainer.tagging``) that this
screen follows through its events, like the monitor follows a run.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import (DataTable, Footer, Header, Input, Label, OptionList, ProgressBar, Static,
                             TabbedContent, TabPane, TextArea)
from textual.widgets.option_list import Option
from textual.worker import Worker, WorkerState, get_current_worker

from loratui import caption_tools
from loratui.dataset import scan_folder
from loratui.dataset.describe import describe_tagging_event, histogram, plural
from loratui.dataset.token_count import tokenizer_folder
from loratui.dataset.report import DatasetReport
from loratui.screens.ask import AskScreen
from loratui.screens.folder_picker import FolderPickerScreen
from loratui.screens.tagger import TaggerScreen
from loratui.widgets.sample_view import SampleView
from loratui.workspace import Workspace
from trainer.contract.caption_store import CaptionWriteError, apply_edits, undo_last
from trainer.contract.config.schema import effective_resolution
from trainer.contract.events import LineTail, parse_event
from trainer.contract import tagging_jobs as jobs

JOB_POLL_SECONDS = 0.3
SEVERITY_MARK = {"error": "✗", "warning": "!", "info": "·"}


def summary_lines(report: DatasetReport) -> list[str]:
    """Four short lines about a scan: images, buckets, captions and copies, the guide's size verdict."""
    settings, captions = report.settings, report.captions()
    folders = f" in {plural(len(report.folders), 'folder')}" if len(report.folders) > 1 else ""
    caption_parts = [f"{captions['missing']} missing", f"{captions['empty']} empty"]
    if settings.get("trigger_word"):
        caption_parts.append(f"{captions['no_trigger']} without \"{settings['trigger_word']}\"")
    near = "" if report.near_duplicates is None else f", {len(report.near_duplicates)} near"
    errors = report.count("error")
    blocked = f" · {plural(errors, 'file')} cannot be trained" if errors else ""
    return [f"{report.root.name}: {plural(len(report.images), 'image')}{folders}, {report.effective_images} per "
            f"epoch with repeats, {settings['resolution']} px{blocked}",
            f"buckets {histogram(report.buckets(), limit=4)}",
            f"captions: {', '.join(caption_parts)} · duplicate groups: {len(report.duplicates)} exact{near}",
            report.size_verdict]


class DatasetScreen(Screen):
    """Scan a dataset folder, see its problems, edit captions and tags, run a tagger."""

    BINDINGS = [
        Binding("ctrl+o", "pick_folder", "Folder", id="pick-folder", priority=True),
        Binding("ctrl+r", "rescan", "Rescan", id="rescan", priority=True),
        Binding("ctrl+s", "save_caption", "Save caption", id="save-caption", priority=True),
        Binding("1", "tab('tab-problems')", "Problems", id="tab-problems"),
        Binding("2", "tab('tab-images')", "Images", id="tab-images"),
        Binding("3", "tab('tab-tags')", "Tags", id="tab-tags"),
        Binding("t", "add_trigger", "Trigger word", id="add-trigger"),
        Binding("d", "remove_tag", "Remove tag", id="remove-tag"),
        Binding("e", "replace_tag", "Replace tag", id="replace-tag"),
        Binding("m", "dedupe", "Dedupe", show=False, id="dedupe-tags"),
        Binding("o", "sort_tags", "Sort", show=False, id="sort-tags"),
        Binding("u", "undo", "Undo", id="undo-captions"),
        Binding("w", "tagger", "Auto-caption", id="auto-caption"),
        Binding("k", "stop_tagger", "Stop captioning", id="stop-tagger"),
        Binding("escape", "leave_editor", "Leave field", show=False, id="leave-editor"),
    ]
    """Keys of the screen (letters act when the focus is not in a text field)."""

    def __init__(self) -> None:
        super().__init__()
        self.report: DatasetReport | None = None
        """The latest scan of the folder on screen."""
        self.texts: dict[Path, str] = {}
        """Caption file → its text, as last read."""
        self.editing: Path | None = None
        """The caption file open in the editor."""
        self.job: Path | None = None
        """The tagging job folder being followed, while one runs."""

    @property
    def workspace(self) -> Workspace:
        return self.app.workspace

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="dataset-bar"):
            yield Label("Dataset ")
            yield Input("", placeholder="a folder of images and captions, then Enter (ctrl+o picks one)",
                        id="dataset-path")
        yield Static("", id="dataset-summary", markup=False)
        with Horizontal(id="tag-job"):
            yield Label("", id="tag-job-text", markup=False)
            yield ProgressBar(total=None, show_eta=False, id="tag-job-progress")
        with TabbedContent(initial="tab-problems", id="dataset-tabs"):
            with TabPane("Problems", id="tab-problems"):
                yield OptionList(id="problem-list")
            with TabPane("Images", id="tab-images"):
                with Horizontal():
                    yield OptionList(id="image-list")
                    with Vertical(id="image-side"):
                        yield SampleView(id="image-view", empty_text="Choose an image on the left to see it here.")
                        yield TextArea("", id="caption-editor", soft_wrap=True)
            with TabPane("Tags", id="tab-tags"):
                yield DataTable(id="tag-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#tag-job").display = False
        table = self.query_one("#tag-table", DataTable)
        table.add_columns("tag", "images", "share", "note")
        self.query_one("#problem-list").focus()
        self.app.workspace_changed.subscribe(self, self._workspace_changed)
        folder = self._workspace_folder()
        if folder is not None:
            self.query_one("#dataset-path", Input).value = str(folder)
            self.scan(folder)
        else:
            self.query_one("#dataset-summary", Static).update(
                "Type the folder of your images and press Enter, or ctrl+o to pick it.")

    def _workspace_changed(self, workspace: Workspace) -> None:
        self._rescan_if_stale()

    def _rescan_if_stale(self) -> None:
        # A new resolution, trigger word or kind (the model's architecture just became known, say)
        # changes what the scan reports: scan again.
        if self.report is None:
            return
        wanted = self._settings()
        if any(self.report.settings.get(key) != value for key, value in wanted.items()):
            self.scan(self.report.root)

    def _workspace_folder(self) -> Path | None:
        if self.workspace.path is None or not self.workspace.config.dataset.path:
            return None
        return Path(self.workspace.resolved().dataset.path)

    # Settings the scan and the tools take from the workspace's config ---------------------

    def _settings(self) -> dict:
        config = self.workspace.resolved() if self.workspace.path else self.workspace.config
        assessment = self.workspace.assessment
        arch = (assessment.arch if assessment is not None and assessment.arch else None) or \
            (config.model.arch if config.model.arch != "auto" else "sdxl")
        return {"resolution": effective_resolution(config, arch), "trigger_word": config.dataset.trigger_word,
                "default_repeats": config.dataset.repeats, "caption_extension": config.dataset.caption_extension,
                "kind": config.kind if config.kind in caption_tools.KINDS else "character",
                "tokenizer": _as_text(tokenizer_folder(config.model.base, config.model.single_file_config)),
                "token_window": config.dataset.max_token_length, "use_buckets": config.dataset.buckets,
                "bucket_upscale": config.dataset.bucket_upscale,
                "folder_name_repeats": config.dataset.folder_name_repeats}

    @property
    def folder(self) -> Path | None:
        """The dataset folder on screen."""
        return self.report.root if self.report is not None else None

    # Scanning ------------------------------------------------------------------------------

    @on(Input.Submitted, "#dataset-path")
    def _path_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.scan(Path(event.value.strip()).expanduser())

    def action_pick_folder(self) -> None:
        start = Path(self.query_one("#dataset-path", Input).value or ".").expanduser()

        def chosen(folder: Path | None) -> None:
            if folder is not None:
                self.query_one("#dataset-path", Input).value = str(folder)
                self.scan(folder)

        self.app.push_screen(FolderPickerScreen(start), chosen)

    def action_rescan(self) -> None:
        if self.folder is not None:
            self.scan(self.folder)

    @work(thread=True, exclusive=True, group="scan", exit_on_error=False)
    def scan(self, folder: Path) -> None:
        """Scan ``folder`` (and read its captions) in the background, then show the result."""
        self.app.call_from_thread(self.query_one("#dataset-summary", Static).update, f"Scanning {folder} …")
        settings = self._settings()
        try:
            report = scan_folder(folder, **settings)
        except OSError as exc:
            self.app.call_from_thread(self.query_one("#dataset-summary", Static).update,
                                      f"{folder} cannot be read: {exc.strerror or exc}. Check the path.")
            return
        texts = caption_tools.read_texts(i.caption_path for i in report.images if i.caption_path is not None)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show_report, report, texts)

    def _show_report(self, report: DatasetReport, texts: dict[Path, str]) -> None:
        self.report, self.texts = report, texts
        self.query_one("#dataset-summary", Static).update("\n".join(summary_lines(report)))
        self._fill_problems(report)
        self._fill_images(report)
        self._fill_tags()
        self._rescan_if_stale()
        # What this scan saw (captions just written, folders renamed) reaches the checklist, the settings'
        # advice and the train screen's step count now, not at the next watch.
        self.app.watch_dataset()

    def _fill_problems(self, report: DatasetReport) -> None:
        problems = self.query_one("#problem-list", OptionList)
        problems.clear_options()
        if not report.issues:
            problems.add_option(Option("No problems found: every image can be trained as it is.", disabled=True))
            return
        problems.add_options(
            Option(f"{SEVERITY_MARK.get(i.severity, '·')} {report.relative(i.path)}: {i.message}", id=f"issue-{n}")
            for n, i in enumerate(report.issues))

    def _fill_images(self, report: DatasetReport) -> None:
        images = self.query_one("#image-list", OptionList)
        highlighted = self._image_at(images.highlighted)
        images.clear_options()
        marks = {"ok": " ", "missing": "∅", "empty": "∅", "no_trigger": "!"}
        images.add_options(Option(f"{marks.get(i.caption, ' ')} {report.relative(i.path)}", id=str(i.path))
                           for i in report.images)
        paths = [i.path for i in report.images]
        if paths:
            images.highlighted = paths.index(highlighted) if highlighted in paths else 0

    def _fill_tags(self) -> None:
        table = self.query_one("#tag-table", DataTable)
        table.clear()
        settings = self._settings()
        rows = caption_tools.tag_table(list(self.texts.values()), settings["kind"], settings["trigger_word"])
        for row in rows:
            table.add_row(row.tag, str(row.count), f"{row.share:.0%}", ("⚑ " + row.reason) if row.flagged else "",
                          key=row.tag)

    # Problems → files ----------------------------------------------------------------------

    @on(OptionList.OptionSelected, "#problem-list")
    def _problem_chosen(self, event: OptionList.OptionSelected) -> None:
        if self.report is None or not event.option.id:
            return
        issue = self.report.issues[int(event.option.id.removeprefix("issue-"))]
        target = self._image_for(issue.path)
        if target is None:
            self.notify(f"{self.report.relative(issue.path)} is not trained, so it has no caption to edit here: "
                        f"{issue.message}", timeout=8)
            return
        self.show_image(target)

    def _image_for(self, path: Path) -> Path | None:
        for image in self.report.images if self.report else []:
            if path in (image.path, image.caption_path):
                return image.path
        return None

    def show_image(self, image: Path) -> None:
        """Open the Images tab on ``image`` with its caption in the editor."""
        self.action_tab("tab-images")
        images = self.query_one("#image-list", OptionList)
        paths = [i.path for i in self.report.images]
        images.highlighted = paths.index(image)
        images.focus()

    # Images and the caption editor --------------------------------------------------------

    def _image_at(self, index: int | None):
        if self.report is None or index is None or not 0 <= index < len(self.report.images):
            return None
        return self.report.images[index].path

    @on(OptionList.OptionHighlighted, "#image-list")
    def _image_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        image = next((i for i in self.report.images if str(i.path) == event.option.id), None) if self.report else None
        if image is None:
            return
        caption = f"{image.width}×{image.height} → bucket {image.bucket[0]}×{image.bucket[1]} · ×{image.repeats}"
        self.query_one("#image-view", SampleView).show_images([image.path], caption)
        self.editing = image.caption_path
        editor = self.query_one("#caption-editor", TextArea)
        editor.load_text(self.texts.get(image.caption_path, "") if image.caption_path else "")
        editor.border_title = image.caption_path.name if image.caption_path else "no caption file"

    @on(OptionList.OptionSelected, "#image-list")
    def _image_selected(self) -> None:
        self.query_one("#caption-editor", TextArea).focus()

    def action_leave_editor(self) -> None:
        self.query_one("#image-list", OptionList).focus()

    def action_save_caption(self) -> None:
        """Write the caption in the editor (backed up first; u undoes it)."""
        if self.editing is None or self.folder is None:
            self.notify("Choose an image on the Images tab (2) first.", severity="warning")
            return
        text = self.query_one("#caption-editor", TextArea).text.strip()
        self._change({self.editing: text}, f"edit the caption {self.editing.name}")

    # Bulk caption changes ----------------------------------------------------------------

    def _highlighted_tag(self) -> str | None:
        table = self.query_one("#tag-table", DataTable)
        if table.row_count == 0 or table.cursor_row is None:
            return None
        return str(table.get_row_at(table.cursor_row)[0])

    def action_add_trigger(self) -> None:
        """Put the trigger word first in every caption (from the config, or asked for)."""
        word = self._settings()["trigger_word"]

        def with_word(answer: str | None) -> None:
            if not answer:
                return
            try:
                caption_tools.check_trigger(answer)
            except ValueError as exc:
                self.notify(str(exc), severity="error")
                return
            self._change(caption_tools.add_trigger(self._all_texts(), answer), f"add trigger word {answer!r}")

        self.app.push_screen(AskScreen("Trigger word to put first in every caption:", word), with_word)

    def action_remove_tag(self) -> None:
        """Remove the highlighted tag from every caption."""
        tag = self._highlighted_tag()
        if tag is None:
            self.notify("Highlight a tag on the Tags tab (3) first.", severity="warning")
            return
        self._change(caption_tools.remove_tags(self.texts, [tag]), f"remove tag {tag!r}")

    def action_replace_tag(self) -> None:
        """Replace the highlighted tag everywhere with what is typed (several tags separated by commas)."""
        tag = self._highlighted_tag()
        if tag is None:
            self.notify("Highlight a tag on the Tags tab (3) first.", severity="warning")
            return

        def with_new(answer: str | None) -> None:
            if answer:
                self._change(caption_tools.replace_tag(self.texts, tag, answer), f"replace {tag!r} with {answer!r}")

        self.app.push_screen(AskScreen(f"Replace {tag!r} in every caption with:", tag), with_new)

    def action_dedupe(self) -> None:
        self._change(caption_tools.dedupe_tags(self.texts), "remove repeated tags")

    def action_sort_tags(self) -> None:
        self._change(caption_tools.sort_tags(self.texts, keep_first=1), "sort tags (the first kept in place)")

    def _all_texts(self) -> dict[Path, str]:
        # Missing captions count too: adding the trigger word creates them.
        return {i.caption_path: self.texts.get(i.caption_path, "")
                for i in (self.report.images if self.report else []) if i.caption_path is not None}

    def _change(self, edits: dict[Path, str], action: str) -> None:
        if self.folder is None:
            self.notify("Scan a dataset folder first.", severity="warning")
            return
        if not edits:
            self.notify(f"Nothing to change: {action} leaves every caption as it is.")
            return
        self._write(self.folder, edits, action)

    @work(thread=True, exclusive=True, group="captions", exit_on_error=False)
    def _write(self, folder: Path, edits: dict[Path, str], action: str) -> None:
        try:
            change = apply_edits(folder, edits, action)
        except CaptionWriteError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", timeout=12)
            return
        if change is not None:
            self.app.call_from_thread(self.notify, f"{action}: {len(change.files)} caption(s) changed, backed up "
                                      "first; u undoes it.")
        self.app.call_from_thread(self.scan, folder)

    def action_undo(self) -> None:
        """Undo the newest caption change to this folder (tools, editor or a tagging job)."""
        if self.folder is not None:
            self._undo(self.folder)

    @work(thread=True, exclusive=True, group="captions", exit_on_error=False)
    def _undo(self, folder: Path) -> None:
        try:
            change = undo_last(folder)
        except CaptionWriteError as exc:
            self.app.call_from_thread(self.notify, str(exc), severity="error", timeout=12)
            return
        if change is None:
            self.app.call_from_thread(self.notify, "Nothing to undo for this folder.")
            return
        kept = f" {len(change.undo_conflicts)} edited since were kept, with the old text beside them." \
            if change.undo_conflicts else ""
        self.app.call_from_thread(self.notify, f"Undone: {change.action} ({len(change.files)} file(s)).{kept}")
        self.app.call_from_thread(self.scan, folder)

    # Auto-captioning -----------------------------------------------------------------------

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
        self._follow_job(job)

    def _job_started(self) -> None:
        self.query_one("#tag-job").display = True
        self.query_one("#tag-job-text", Label).update("Starting the captioning job…")
        self.refresh_bindings()

    def _follow_job(self, job: Path) -> None:
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
                text = describe_tagging_event(event)
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
        self.notify(message, timeout=12, severity="error" if message.startswith("error") else "information")
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

    # Keys and tabs ---------------------------------------------------------------------------

    def action_tab(self, tab: str) -> None:
        self.query_one("#dataset-tabs", TabbedContent).active = tab
        focus = {"tab-problems": "#problem-list", "tab-images": "#image-list", "tab-tags": "#tag-table"}[tab]
        self.query_one(focus).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop_tagger":
            return self.job is not None
        if action == "save_caption":
            return self.query_one("#caption-editor", TextArea).has_focus
        return True

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # One place for failures of this screen's background work: say so instead of going quiet.
        if event.state == WorkerState.ERROR:
            self.notify(f"Something went wrong ({event.worker.group}): {event.worker.error!r}", severity="error")
            if event.worker.group == "tagging":
                self.job = None
                self.query_one("#tag-job").display = False


def _as_text(path: Path | None) -> str | None:
    # The scan keeps its settings as given; the same text each time, so a rescan is only asked for on a change.
    return str(path) if path else None
