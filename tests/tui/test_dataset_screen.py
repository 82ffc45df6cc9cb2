"""The dataset screen with Textual's Pilot: scan, jump to a problem, edit, bulk tag changes, undo, tagging."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable, OptionList, TabbedContent, TextArea

from loratui.app import LoraTuiApp
from loratui.screens.ask import AskScreen
from loratui.screens.caption_editor import CaptionEditor
from loratui.screens.confirm import ConfirmScreen
from loratui.screens.folder_picker import FolderPickerScreen
from loratui.screens.tagger import TaggerScreen
from tests.tui.conftest import settled, until


def captions(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.glob("*.txt"))}


async def scanned(pilot, app) -> bool:
    """Wait until a scan has been shown and none is pending: showing one can start another (a setting
    became known meanwhile), and the summary reads "Scanning …" until that one is shown too."""
    def settled() -> bool:
        scanning = any(w.group == "scan" and not w.is_finished for w in app.workers)
        return app.current_mode == "dataset" and app.screen.report is not None and not scanning
    return await until(pilot, settled, timeout=20)


async def test_the_scan_summary_problems_and_jumping_to_a_file(light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[], mode="dataset", offer_live_runs=False)
    async with app.run_test(size=(100, 32)) as pilot:
        assert await scanned(pilot, app)
        screen = app.screen
        summary = str(screen.query_one("#dataset-summary").render())
        assert "12 images" in summary and 'without "zkmascot"' in summary
        problems = screen.query_one("#problem-list", OptionList)
        texts = [str(problems.get_option_at_index(i).prompt) for i in range(problems.option_count)]
        no_trigger = [i for i, text in enumerate(texts) if "without the trigger word" in text]
        assert len(no_trigger) == 2
        problems.focus()
        problems.highlighted = no_trigger[0]
        await pilot.press("enter")
        assert await until(pilot, lambda: screen.query_one(TabbedContent).active == "tab-images")
        issue = screen.report.issues[no_trigger[0]]
        editor = screen.query_one("#caption-editor", TextArea)
        assert await until(pilot, lambda: screen.editing == issue.path.with_suffix(".txt"))
        assert await until(pilot, lambda: editor.text.strip() == issue.path.with_suffix(".txt").read_text().strip())
        assert "zkmascot" not in editor.text


async def test_editing_a_caption_saves_it_with_a_backup_and_undo_restores_it(light_workspace):
    dataset = light_workspace.parent / "dataset"
    before = captions(dataset)
    app = LoraTuiApp(light_workspace, gpus=[], mode="dataset", offer_live_runs=False)
    async with app.run_test(size=(100, 32)) as pilot:
        assert await scanned(pilot, app)
        screen = app.screen
        await pilot.press("2")
        images = screen.query_one("#image-list", OptionList)
        assert await until(pilot, lambda: screen.editing is not None)
        target = screen.editing
        await pilot.press("enter")  # into the caption editor
        assert screen.query_one("#caption-editor", TextArea).has_focus
        screen.query_one("#caption-editor", TextArea).load_text("zkmascot, hand edited")
        await pilot.press("ctrl+s")
        assert await until(pilot, lambda: target.read_text().strip() == "zkmascot, hand edited")
        await pilot.press("escape")
        assert images.has_focus
        await pilot.press("u")
        assert await until(pilot, lambda: captions(dataset) == before)


def problem_texts(screen) -> list[str]:
    problems = screen.query_one("#problem-list", OptionList)
    return [str(problems.get_option_at_index(i).prompt) for i in range(problems.option_count)]


async def test_a_caption_is_created_for_an_image_without_one_and_undo_removes_it(light_workspace):
    """Issue #17: Enter on "has no caption", type, ctrl+s creates the caption; the counts follow; u removes it."""
    dataset = light_workspace.parent / "dataset"
    (dataset / "mascot_05.txt").unlink()
    before = captions(dataset)
    app = LoraTuiApp(light_workspace, gpus=[], mode="dataset", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await scanned(pilot, app)
        screen = app.screen
        assert screen.report.captions()["missing"] == 1
        texts = problem_texts(screen)
        index = next(i for i, text in enumerate(texts) if "mascot_05.png: has no caption" in text)
        problems = screen.query_one("#problem-list", OptionList)
        assert problems.highlighted == 0  # the list opens with its first problem highlighted
        problems.highlighted = index
        await pilot.press("enter")

        editor = screen.query_one(CaptionEditor)
        target = dataset / "mascot_05.txt"
        assert await until(pilot, lambda: editor.has_focus and editor.target == target)
        assert editor.text == "" and editor.border_title == "mascot_05.txt (new)"
        await pilot.press(*"zkmascot, waving")
        assert editor.border_subtitle.startswith("not saved")
        await pilot.press("ctrl+s")

        assert await until(pilot, lambda: target.is_file() and target.read_text() == "zkmascot, waving")
        assert await until(pilot, lambda: screen.report.captions()["missing"] == 0)
        assert not any("has no caption" in text for text in problem_texts(screen))
        assert "0 missing" in str(screen.query_one("#dataset-summary").render())
        assert await until(pilot, lambda: editor.border_title == "mascot_05.txt" and not editor.border_subtitle)

        await pilot.press("escape")  # out of the editor, so u is a key again rather than a letter
        assert screen.query_one("#image-list", OptionList).has_focus
        await pilot.press("u")
        assert await until(pilot, lambda: not target.exists())
        assert await until(pilot, lambda: screen.report.captions()["missing"] == 1)
        assert captions(dataset) == before


async def test_an_emptied_caption_is_deleted_only_when_confirmed_and_undo_brings_it_back(light_workspace):
    dataset = light_workspace.parent / "dataset"
    before = captions(dataset)
    app = LoraTuiApp(light_workspace, gpus=[], mode="dataset", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await scanned(pilot, app)
        screen = app.screen
        await pilot.press("2")
        images = screen.query_one("#image-list", OptionList)
        assert images.highlighted == 0
        editor = screen.query_one(CaptionEditor)
        target = dataset / "mascot_00.txt"
        assert await until(pilot, lambda: editor.target == target)
        await pilot.press("enter")
        assert editor.has_focus
        # The cursor waits at the end of the caption, where new tags go.
        assert editor.text == target.read_text().rstrip() and editor.cursor_location == editor.document.end
        await pilot.press("f7", "backspace")  # select all (TextArea's f7), then delete it
        assert editor.text == ""

        await pilot.press("ctrl+s")
        assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await settled(pilot)
        assert app.screen is screen and captions(dataset) == before  # kept: nothing written, nothing deleted

        await pilot.press("ctrl+s")
        assert await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        assert await until(pilot, lambda: not target.exists())
        assert await until(pilot, lambda: screen.report.captions()["missing"] == 1)
        assert editor.border_title == "mascot_00.txt (new)"

        await pilot.press("escape", "u")
        assert await until(pilot, lambda: captions(dataset) == before)
        assert await until(pilot, lambda: editor.text == before["mascot_00.txt"].rstrip())


async def test_unsaved_caption_text_survives_moving_to_another_image_and_back(light_workspace):
    dataset = light_workspace.parent / "dataset"
    before = captions(dataset)
    app = LoraTuiApp(light_workspace, gpus=[], mode="dataset", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await scanned(pilot, app)
        screen = app.screen
        editor = screen.query_one(CaptionEditor)
        await pilot.press("2")
        assert await until(pilot, lambda: editor.target == dataset / "mascot_00.txt")
        await pilot.press("enter", *", draft")
        typed = editor.text
        assert typed.endswith(", draft")
        await pilot.press("escape", "down")
        assert await until(pilot, lambda: editor.target == dataset / "mascot_01.txt")
        assert editor.text == before["mascot_01.txt"].rstrip()
        await pilot.press("up")
        assert await until(pilot, lambda: editor.target == dataset / "mascot_00.txt")
        assert editor.text == typed and editor.border_subtitle.startswith("not saved")
        await pilot.press("ctrl+r")  # a rescan leaves typed text alone too
        assert await scanned(pilot, app)
        await settled(pilot)
        assert editor.text == typed
        assert captions(dataset) == before  # and nothing was written without ctrl+s


async def test_bulk_tag_changes_from_the_table_and_their_undo(light_workspace):
    dataset = light_workspace.parent / "dataset"
    before = captions(dataset)
    app = LoraTuiApp(light_workspace, gpus=[], mode="dataset", offer_live_runs=False)
    async with app.run_test(size=(100, 32)) as pilot:
        assert await scanned(pilot, app)
        screen = app.screen
        await pilot.press("3")
        table = screen.query_one("#tag-table", DataTable)
        assert table.has_focus and table.row_count > 3
        tags = [str(table.get_row_at(i)[0]) for i in range(table.row_count)]
        victim = next(t for t in tags if t != "zkmascot")
        table.move_cursor(row=tags.index(victim))
        await pilot.press("d")
        assert await until(pilot, lambda: all(victim not in [t.strip() for t in text.split(",")]
                                              for text in captions(dataset).values()))
        await pilot.press("u")
        assert await until(pilot, lambda: captions(dataset) == before)

        # The trigger word, first in every caption: two of the demo captions lack it.
        await pilot.press("t")
        assert await until(pilot, lambda: isinstance(app.screen, AskScreen))
        await pilot.press("enter")  # the config's trigger word is offered
        assert await until(pilot, lambda: all(text.startswith("zkmascot") for text in captions(dataset).values()))
        await pilot.press("u")
        assert await until(pilot, lambda: captions(dataset) == before)


async def test_the_folder_picker_and_a_folder_that_cannot_be_read(light_workspace, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    app = LoraTuiApp(light_workspace, gpus=[], mode="dataset", offer_live_runs=False)
    async with app.run_test(size=(100, 32)) as pilot:
        assert await scanned(pilot, app)
        screen = app.screen
        assert await until(pilot, lambda: screen.query_one(CaptionEditor).target is not None)  # the first image's
        path_box = screen.query_one("#dataset-path")
        path_box.value = str(tmp_path / "missing")
        path_box.focus()
        await pilot.press("enter")
        assert await until(pilot, lambda: "cannot be read" in str(screen.query_one("#dataset-summary").render()))
        path_box.value = str(other)
        await pilot.press("ctrl+o")
        assert await until(pilot, lambda: isinstance(app.screen, FolderPickerScreen))
        await pilot.press("s")
        assert await until(pilot, lambda: screen.report is not None and screen.report.root == other.resolve())
        assert "0 images" in str(screen.query_one("#dataset-summary").render())
        # No image here: the caption editor lets go of the other folder's caption, so ctrl+s has no target.
        editor = screen.query_one(CaptionEditor)
        assert editor.target is None and editor.read_only and editor.text == ""


@pytest.mark.slow
async def test_auto_captioning_runs_as_a_job_with_progress_and_can_be_undone(light_workspace, tmp_path):
    model = tmp_path / "tiny-wd14"
    subprocess.run([sys.executable, "-m", "trainer.tools.tiny_taggers", str(model), "--kind", "wd14"], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True)
    dataset = light_workspace.parent / "dataset"
    before = captions(dataset)
    app = LoraTuiApp(light_workspace, gpus=[], mode="dataset", offer_live_runs=False)
    async with app.run_test(size=(100, 32)) as pilot:
        assert await scanned(pilot, app)
        screen = app.screen
        await pilot.press("w")
        assert await until(pilot, lambda: isinstance(app.screen, TaggerScreen))
        dialog = app.screen
        dialog.query_one("#tagger-model").value = str(model)
        dialog.query_one("#tagger-mode").value = "overwrite"
        dialog.query_one("#tagger-threshold").value = "0"
        dialog.query_one("#tagger-start").press()
        assert await until(pilot, lambda: screen.job is not None, timeout=30)
        assert await until(pilot, lambda: screen.job is None, timeout=120)
        after = captions(dataset)
        assert after != before
        assert all(text.startswith("zkmascot") for text in after.values())  # the config's trigger word first
        assert await until(pilot, lambda: screen.report is not None and screen.report.captions()["no_trigger"] == 0)
        await pilot.press("1")
        await pilot.press("u")
        assert await until(pilot, lambda: captions(dataset) == before, timeout=20)
