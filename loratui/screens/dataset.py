"""The dataset screen: the guide's Phase 1 — scan, fix, caption and tag a folder of images.

Everything that reads or writes the dataset runs in a thread worker and reports back by
message (``call_from_thread``); only handlers touch widgets. Every caption change goes through
``trainer.contract.caption_store``, which backs the captions up first, so ``u`` undoes any of them, and
auto-captioning runs as a detached child process (``python -m trainer.tagging``) that this
screen follows through its events, like the monitor follows a run.
"""

from __future__ import annotations

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
from loratui.commands import mode_bar
from loratui.assess import dataset_fingerprint
from loratui.dataset import scan_folder
from loratui.dataset.reg_report import RegReport, reg_report
from loratui.dataset.describe import histogram, plural
from loratui.dataset.token_count import tokenizer_folder
from loratui.dataset.report import DatasetReport
from loratui.screens.ask import AskScreen
from loratui.screens.caption_job import CaptionJobMixin
from loratui.screens.caption_editor import CaptionEditor, caption_target, plan_save
from loratui.screens.confirm import ConfirmScreen
from loratui.screens.folder_field import FolderField
from loratui.screens.folder_picker import FolderPickerScreen
from loratui.widgets.sample_view import SampleView
from loratui.workspace import Workspace
from trainer.contract.caption_store import CaptionWriteError, apply_edits, undo_last
from trainer.contract.config.schema import effective_resolution

SEVERITY_MARK = {"error": "✗", "warning": "!", "info": "·"}
CAPTION_CODES = ("missing_caption", "empty_caption", "no_trigger", "caption_too_long")
"""Problems fixed by editing the caption: choosing one opens the caption editor, ready to type."""
TAB_FOCUS = {"tab-problems": "#problem-list", "tab-images": "#image-list", "tab-tags": "#tag-table"}
"""The list each tab's keys act on."""
TYPING_SAFE = {"pick_folder", "type_folder", "rescan", "save_caption"}
"""Actions whose keys work in a text field; every other key of the screen is typed there as text."""


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


class DatasetScreen(CaptionJobMixin, Screen):
    """Scan a dataset folder, see its problems, edit captions and tags, run a tagger."""

    # The footer shows the keys of the moment (check_action hides the rest), short enough for 80
    # columns; the help screen and the command palette list them all with their tooltips.
    BINDINGS = [
        Binding("ctrl+s", "save_caption", "Save", id="save-caption", priority=True,
                tooltip="Save the caption in the editor (an empty editor deletes the caption file, after asking); "
                        "backed up first, u undoes it"),
        Binding("d", "remove_tag", "Remove tag", id="remove-tag",
                tooltip="Remove the highlighted tag from every caption (Tags tab)"),
        Binding("e", "replace_tag", "Replace tag", id="replace-tag",
                tooltip="Replace the highlighted tag in every caption with what you type (Tags tab)"),
        Binding("t", "add_trigger", "Trigger", id="add-trigger",
                tooltip="Put the trigger word first in every caption"),
        Binding("u", "undo", "Undo", id="undo-captions", tooltip="Undo the last caption change to this folder"),
        Binding("w", "tagger", "Auto-caption", id="auto-caption",
                tooltip="Caption the images with a tagger model (WD14 tags or BLIP sentences)"),
        Binding("k", "stop_tagger", "Stop", id="stop-tagger", tooltip="Stop the running auto-caption job"),
        # The folder keys are named on the folder box itself, which leaves the footer to the tabs' keys.
        Binding("ctrl+o", "pick_folder", "Pick folder", show=False, id="pick-folder", priority=True,
                tooltip="Pick the dataset folder from a tree"),
        Binding("ctrl+l", "type_folder", "Type folder", show=False, id="type-folder", priority=True,
                tooltip="Type the dataset folder's path (Enter scans it, Esc goes back)"),
        Binding("ctrl+r", "rescan", "Rescan", show=False, id="rescan", priority=True,
                tooltip="Scan the dataset folder again"),
        Binding("1", "tab('tab-problems')", "Problems", show=False, id="tab-problems",
                tooltip="Show the problems found"),
        Binding("2", "tab('tab-images')", "Images", show=False, id="tab-images",
                tooltip="Show the images, each with its caption"),
        Binding("3", "tab('tab-tags')", "Tags", show=False, id="tab-tags",
                tooltip="Show how often each tag is used"),
        Binding("m", "dedupe", "Drop repeated tags", show=False, id="dedupe-tags",
                tooltip="Drop tags repeated within a caption, in every caption"),
        Binding("o", "sort_tags", "Sort tags", show=False, id="sort-tags",
                tooltip="Sort the tags of every caption, the first one kept in place"),
    ]
    """Keys of the screen (letters and digits act when the focus is not in a text field)."""

    def __init__(self) -> None:
        super().__init__()
        self.report: DatasetReport | None = None
        """The latest scan of the folder on screen."""
        self.texts: dict[Path, str] = {}
        """Caption file → its text, as last read."""
        self.fingerprint: int | None = None
        """The watched folder's fingerprint (``loratui.assess``) when the scan on screen read it; None
        for a folder the app does not watch."""
        self.job: Path | None = None
        """The tagging job folder being followed, while one runs."""

    @property
    def workspace(self) -> Workspace:
        return self.app.workspace

    @property
    def editing(self) -> Path | None:
        """The caption file open in the editor (it may not exist yet)."""
        return self.query_one(CaptionEditor).target

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="dataset-bar"):
            yield Label("Dataset ")
            path = FolderField("", placeholder="the folder of your images", id="dataset-path")
            path.border_subtitle = "ctrl+l types a path · ctrl+o picks a folder"
            yield path
        yield Static("", id="dataset-summary", markup=False)
        with Horizontal(id="tag-job"):
            yield Label("", id="tag-job-text", markup=False)
            yield ProgressBar(total=None, show_eta=False, id="tag-job-progress")
        with TabbedContent(initial="tab-problems", id="dataset-tabs"):
            # The tab's key in its label: the footer has no room for 1, 2 and 3.
            with TabPane("1 Problems", id="tab-problems"):
                yield OptionList(id="problem-list")
            with TabPane("2 Images", id="tab-images"):
                with Horizontal():
                    yield OptionList(id="image-list")
                    with Vertical(id="image-side"):
                        yield SampleView(id="image-view", empty_text="Choose an image on the left to see it here.")
                        yield CaptionEditor(id="caption-editor")
            with TabPane("3 Tags", id="tab-tags"):
                yield DataTable(id="tag-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = mode_bar("dataset")
        self.query_one("#tag-job").display = False
        table = self.query_one("#tag-table", DataTable)
        table.add_columns("tag", "images", "share", "note")
        self.query_one(CaptionEditor).show(None, None)
        self.app.workspace_changed.subscribe(self, self._workspace_changed)
        folder = self._workspace_folder()
        if folder is not None:
            self.query_one("#problem-list").focus()
            self.query_one("#dataset-path", Input).value = str(folder)
            self.scan(folder)
        else:
            # Nothing to show yet: the folder box is the one thing to use, so it has the focus.
            self.query_one("#dataset-path", Input).focus()
            self.query_one("#dataset-summary", Static).update(
                "Type the folder of your images and press Enter, or ctrl+o to pick it from a tree.")

    def _workspace_changed(self, workspace: Workspace) -> None:
        self._rescan_if_stale()

    def _rescan_if_stale(self) -> None:
        # A new resolution, trigger word or kind (the model's architecture just became known, say)
        # changes what the scan reports: scan again. So do files changed by another program: the app
        # watches the workspace's dataset folder, and its assessment carries the folder's fingerprint.
        if self.report is None:
            return
        wanted = self._settings()
        facts = self.workspace.assessment.facts if self.workspace.assessment is not None else None
        files_changed = self.fingerprint is not None and facts is not None and facts.key[-1] is not None \
            and facts.key[-1] != self.fingerprint
        if files_changed or any(self.report.settings.get(key) != value for key, value in wanted.items()):
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
                "folder_name_repeats": config.dataset.folder_name_repeats,
                "masked_loss": config.dataset.masked_loss, "mask_path": config.dataset.mask_path}

    @property
    def folder(self) -> Path | None:
        """The dataset folder on screen."""
        return self.report.root if self.report is not None else None

    # Scanning ------------------------------------------------------------------------------

    @on(Input.Submitted, "#dataset-path")
    def _path_submitted(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.scan(Path(event.value.strip()).expanduser())
            self._focus_tab()

    def action_type_folder(self) -> None:
        """Put the focus in the folder box, to type a path (Enter scans it, Esc goes back)."""
        self.query_one("#dataset-path", Input).focus()

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
        watched = self._workspace_folder()
        # Taken before the files are read, so a change made during the scan reads as a change.
        fingerprint = dataset_fingerprint(str(watched)) if watched is not None and _same(watched, folder) else None
        try:
            report = scan_folder(folder, **settings)
            reg = reg_report(self._reg_path(), str(folder), report.effective_images, settings["caption_extension"])
        except OSError as exc:
            self.app.call_from_thread(self.query_one("#dataset-summary", Static).update,
                                      f"{folder} cannot be read: {exc.strerror or exc}. Check the path.")
            return
        texts = caption_tools.read_texts(i.caption_path for i in report.images if i.caption_path is not None)
        if not get_current_worker().is_cancelled:
            self.app.call_from_thread(self._show_report, report, texts, fingerprint, reg)

    def _reg_path(self) -> str:
        """The workspace's regularization folder (``dataset.reg_path``), shown apart from the dataset's images."""
        config = self.workspace.resolved() if self.workspace.path else self.workspace.config
        return config.dataset.reg_path

    def _show_report(self, report: DatasetReport, texts: dict[Path, str], fingerprint: int | None = None,
                     reg: RegReport | None = None) -> None:
        self.report, self.texts, self.fingerprint = report, texts, fingerprint
        # The regularization images get a line of their own, never mixed into the dataset's counts, right under
        # the dataset's own line: the summary is five rows at most, and the later lines are the ones cut.
        lines = summary_lines(report)
        if reg is not None:
            lines.insert(1, reg.short_line())
        self.query_one("#dataset-summary", Static).update("\n".join(lines))
        self._fill_problems(report)
        self._fill_images(report)
        self._fill_tags()
        self._rescan_if_stale()
        # What this scan saw (captions just written, folders renamed) reaches the checklist, the settings'
        # advice and the train screen's step count now, not at the next watch.
        self.app.watch_dataset()

    def _fill_problems(self, report: DatasetReport) -> None:
        problems = self.query_one("#problem-list", OptionList)
        # A rescan (after a fix, say) keeps the place in the list; a new list starts at its top.
        was = problems.highlighted or 0
        problems.clear_options()
        if not report.issues:
            problems.add_option(Option("No problems found: every image can be trained as it is.", disabled=True))
            return
        problems.add_options(
            Option(f"{SEVERITY_MARK.get(i.severity, '·')} {report.relative(i.path)}: {i.message}", id=f"issue-{n}")
            for n, i in enumerate(report.issues))
        problems.highlighted = min(was, problems.option_count - 1)

    def _fill_images(self, report: DatasetReport) -> None:
        images = self.query_one("#image-list", OptionList)
        # The option's id names the image: self.report is already the new scan, whose order may differ.
        highlighted = images.get_option_at_index(images.highlighted).id if images.highlighted is not None else None
        images.clear_options()
        marks = {"ok": " ", "missing": "∅", "empty": "∅", "no_trigger": "!"}
        images.add_options(Option(f"{marks.get(i.caption, ' ')} {report.relative(i.path)}", id=str(i.path))
                           for i in report.images)
        paths = [str(i.path) for i in report.images]
        if paths:
            images.highlighted = paths.index(highlighted) if highlighted in paths else 0
        else:  # nothing to caption in this folder: the editor must not keep another folder's file
            self.query_one(CaptionEditor).show(None, None)
            self.query_one("#image-view", SampleView).show_images([], "")

    def _fill_tags(self) -> None:
        table = self.query_one("#tag-table", DataTable)
        was = self._highlighted_tag()
        table.clear()
        settings = self._settings()
        rows = caption_tools.tag_table(list(self.texts.values()), settings["kind"], settings["trigger_word"])
        for row in rows:
            table.add_row(row.tag, str(row.count), f"{row.share:.0%}", ("⚑ " + row.reason) if row.flagged else "",
                          key=row.tag)
        # The highlighted tag stays highlighted; else the first row is, so d and e always have a target.
        tags = [row.tag for row in rows]
        table.move_cursor(row=tags.index(was) if was in tags else 0, animate=False)

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
        self.show_image(target, edit=issue.code in CAPTION_CODES)

    def _image_for(self, path: Path) -> Path | None:
        for image in self.report.images if self.report else []:
            if path in (image.path, image.caption_path):
                return image.path
        return None

    def show_image(self, image: Path, edit: bool = False) -> None:
        """Open the Images tab on ``image`` with its caption in the editor (focused, with ``edit``)."""
        self.action_tab("tab-images")
        images = self.query_one("#image-list", OptionList)
        paths = [i.path for i in self.report.images]
        images.highlighted = paths.index(image)
        # The editor fills when the list reports the highlight; focusing it then is the same either way.
        self.query_one(CaptionEditor if edit else "#image-list").focus()

    # Images and the caption editor --------------------------------------------------------

    @on(OptionList.OptionHighlighted, "#image-list")
    def _image_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        image = next((i for i in self.report.images if str(i.path) == event.option.id), None) if self.report else None
        if image is None:
            return
        caption = f"{image.width}×{image.height} → bucket {image.bucket[0]}×{image.bucket[1]} · ×{image.repeats}"
        self.query_one("#image-view", SampleView).show_images([image.path], caption)
        target = caption_target(image.path, image.caption_path, self.report.settings["caption_extension"])
        self.query_one(CaptionEditor).show(target, self.texts.get(target) if image.caption_path else None)

    @on(OptionList.OptionSelected, "#image-list")
    def _image_selected(self) -> None:
        self.query_one(CaptionEditor).focus()

    def leave_field(self) -> None:
        """Leave the text field (the app's Esc): the caption editor for the image list, the folder box for
        the tab's list, dropping a path typed and not scanned."""
        field = self.focused
        if isinstance(field, FolderField) and self.folder is not None:
            field.value = str(self.folder)  # what was typed and not scanned is dropped
        if isinstance(field, CaptionEditor):
            if field.unsaved:
                self.notify(f"{field.target.name} is not saved yet; its text is kept here (ctrl+s saves it).")
            self.query_one("#image-list", OptionList).focus()
        else:
            self._focus_tab()

    def action_save_caption(self) -> None:
        """Save the caption in the editor: create, change or (asked first) delete its file, backed up; u undoes."""
        editor = self.query_one(CaptionEditor)
        if editor.target is None or self.folder is None:
            self.notify("Choose an image on the Images tab (2) first.", severity="warning")
            return
        target, plan = editor.target, plan_save(editor.target, editor.text, editor.on_disk)
        if plan.kind == "nothing":
            self.notify(plan.action)
        elif plan.kind == "write":
            self._change({target: plan.text}, plan.action)
        else:
            def answered(yes: bool | None) -> None:
                if yes:
                    self._change({target: None}, plan.action)

            self.app.push_screen(ConfirmScreen(
                f"Delete the caption {target.name}?",
                "The editor is empty. Without a caption the image trains on the trigger word alone. The file is "
                "backed up first; u brings it back.", yes_label="Delete", no_label="Keep it"), answered)

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
        """Remove the highlighted tag from every caption (a key of the Tags tab, where it is seen)."""
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
            self.app.call_from_thread(self.notify, f"Done: {action} ({plural(len(change.files), 'caption')}, "
                                      "backed up first; u undoes it).")
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
        count = plural(len(change.files), "caption")
        self.app.call_from_thread(self.notify, f"Undone: {change.action} ({count}).{kept}")
        self.app.call_from_thread(self.scan, folder)

    # Keys and tabs ---------------------------------------------------------------------------

    def action_tab(self, tab: str) -> None:
        """Show a tab and put the focus on its list."""
        self.query_one("#dataset-tabs", TabbedContent).active = tab
        self._focus_tab()

    def _focus_tab(self) -> None:
        self.query_one(TAB_FOCUS[self.query_one("#dataset-tabs", TabbedContent).active]).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # False hides a key from the footer and lets it through: each context shows only its own keys.
        typing = isinstance(self.focused, (Input, TextArea))
        if typing and action not in TYPING_SAFE:
            return False  # typed as text there, so not offered
        if action == "save_caption":
            return isinstance(self.focused, CaptionEditor)
        if action in ("remove_tag", "replace_tag"):
            return self.query_one("#dataset-tabs", TabbedContent).active == "tab-tags"
        if action == "stop_tagger":
            return self.job is not None
        return True

    @on(TabbedContent.TabActivated)
    def _tab_shown(self) -> None:
        self.refresh_bindings()  # the Tags tab's keys come and go with it

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # One place for failures of this screen's background work: say so instead of going quiet.
        if event.state == WorkerState.ERROR:
            self.notify(f"Something went wrong ({event.worker.group}): {event.worker.error!r}", severity="error")
            if event.worker.group == "tagging":
                self.job = None
                self.query_one("#tag-job").display = False


def _same(one: Path, other: Path) -> bool:
    """Whether two paths name the same folder (an unresolvable one names none)."""
    try:
        return one.resolve() == other.resolve()
    except (OSError, RuntimeError):
        return False


def _as_text(path: Path | None) -> str | None:
    # The scan keeps its settings as given; the same text each time, so a rescan is only asked for on a change.
    return str(path) if path else None
