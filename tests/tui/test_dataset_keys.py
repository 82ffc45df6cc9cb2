"""The dataset screen's keys at 80×24: focus never lands in the folder box by surprise, the footer shows the
keys of the moment in full, the auto-caption dialog fits, and its errors speak of the dialog, not the CLI."""

from __future__ import annotations

from textual.widgets import DataTable, Footer, Input, Label, OptionList, Select, Static
from textual.widgets._footer import FooterKey

from loratui.app import LoraTuiApp
from loratui.screens.dataset import DatasetScreen
from loratui.screens.tagger import TaggerScreen
from tests.tui.conftest import settled, until
from tests.tui.test_dataset_screen import captions, scanned


async def test_tab_never_reaches_the_folder_box_and_letters_stay_keys(light_workspace):
    """Issue #17: Tab moved into the path box, then d typed "…/datad" there."""
    dataset = light_workspace.parent / "dataset"
    before = captions(dataset)
    app = LoraTuiApp(light_workspace, gpus=[], mode="dataset", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await scanned(pilot, app)
        screen = app.screen
        path_box = screen.query_one("#dataset-path", Input)
        folder = path_box.value
        for tab in ("1", "2", "3"):
            await pilot.press(tab)
            seen = []
            for _ in range(8):
                await pilot.press("tab")
                seen.append(screen.focused)
            assert path_box not in seen and all(widget is not None for widget in seen), tab
        await pilot.press("1", "tab", "tab", "d", "e")
        await settled(pilot)
        assert path_box.value == folder
        # d and e act on the Tags tab only, where the tag they change is in sight: here they did nothing.
        assert captions(dataset) == before and not [w for w in app.workers if w.group == "captions"]


async def test_the_folder_box_is_reached_on_purpose_and_esc_leaves_it(light_workspace, tmp_path):
    app = LoraTuiApp(light_workspace, gpus=[], mode="dataset", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await scanned(pilot, app)
        screen = app.screen
        path_box = screen.query_one("#dataset-path", Input)
        folder = path_box.value
        await pilot.press("ctrl+l")
        assert path_box.has_focus
        await pilot.press(*"/nowhere")
        assert path_box.value == "/nowhere"  # typed letters are text there, as they should be
        await pilot.press("escape")
        assert screen.query_one("#problem-list", OptionList).has_focus
        assert path_box.value == folder  # what was typed and never scanned is dropped

        # A path typed and entered is scanned, and the focus goes back to the tab's list.
        other = tmp_path / "elsewhere"
        other.mkdir()
        await pilot.press("ctrl+l", *str(other), "enter")
        assert await until(pilot, lambda: screen.report is not None and screen.report.root == other)
        assert screen.query_one("#problem-list", OptionList).has_focus


async def test_lists_open_highlighted_so_the_tag_keys_have_a_target(light_workspace):
    dataset = light_workspace.parent / "dataset"
    before = captions(dataset)
    app = LoraTuiApp(light_workspace, gpus=[], mode="dataset", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await scanned(pilot, app)
        screen = app.screen
        assert screen.query_one("#problem-list", OptionList).highlighted == 0
        assert screen.query_one("#image-list", OptionList).highlighted == 0
        await pilot.press("3")
        table = screen.query_one("#tag-table", DataTable)
        assert table.has_focus and table.cursor_row == 0
        first = str(table.get_row_at(0)[0])
        await pilot.press("d")  # no move needed: the first tag is the target
        assert await until(pilot, lambda: all(first not in [t.strip() for t in text.split(",")]
                                              for text in captions(dataset).values()))
        # Filled again after the change, the table highlights its new first row: d still has a target.
        assert await until(pilot, lambda: table.row_count > 0 and str(table.get_row_at(0)[0]) != first)
        assert table.cursor_row == 0
        kept = str(table.get_row_at(0)[0])
        await pilot.press("u")
        assert await until(pilot, lambda: captions(dataset) == before)
        # Filled again after the undo, it keeps the tag that was highlighted, wherever that row is now.
        assert await until(pilot, lambda: table.row_count > 0 and str(table.get_row_at(0)[0]) == first)
        assert str(table.get_row_at(table.cursor_row)[0]) == kept


def _footer_keys(screen) -> tuple[list[str], bool]:
    """The descriptions of the screen's own keys in the footer, and whether each shows in full."""
    footer = screen.query_one(Footer)
    ours = {binding.description for binding in DatasetScreen.BINDINGS}
    keys = [key for key in footer.query(FooterKey) if key.description in ours and "-command-palette" not in key.classes]
    palette = [key for key in footer.query(FooterKey) if "-command-palette" in key.classes]
    limit = palette[0].region.x if palette else screen.size.width
    return [key.description for key in keys], all(key.region.right <= limit for key in keys)


async def test_the_footer_shows_the_keys_of_the_moment_in_full_at_80_columns(light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[], mode="dataset", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await scanned(pilot, app)
        screen = app.screen
        expected = {
            "1": ["Trigger", "Undo", "Auto-caption"],
            "3": ["Remove tag", "Replace tag", "Trigger", "Undo", "Auto-caption"],
            "2": ["Trigger", "Undo", "Auto-caption"],
            "enter": ["Save"],  # in the caption editor: its letters are text (Esc, the app's key, leaves it)
            "ctrl+l": [],  # in the folder box
        }
        for key, shown in expected.items():
            await pilot.press(key)
            assert await until(pilot, lambda: _footer_keys(screen) == (shown, True)), (key, _footer_keys(screen))
    # The help screen and the palette list every key, shown or not: each says what it does.
    for binding in DatasetScreen.BINDINGS:
        assert binding.description and binding.tooltip, binding.key
        if binding.show:
            assert len(binding.description) <= 12, binding.description  # footer words stay short


async def test_the_auto_caption_dialog_fits_80_by_24_with_labels_not_placeholders(light_workspace):
    app = LoraTuiApp(light_workspace, gpus=[], mode="dataset", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await scanned(pilot, app)
        await pilot.press("w")
        assert await until(pilot, lambda: isinstance(app.screen, TaggerScreen))
        dialog_screen = app.screen
        await pilot.pause()
        dialog = dialog_screen.query_one("#tagger-dialog")
        assert dialog.region.x >= 0 and dialog.region.right <= 80 and dialog.region.y >= 0 \
            and dialog.region.bottom <= 24
        assert dialog.border_title == "Auto-caption the dataset"
        assert len(dialog.border_title) + 4 <= dialog.region.width  # the title shows in full
        labels = [str(label.render()) for label in dialog_screen.query(".tagger-label").results(Label)]
        assert labels == ["Captioner", "Model", "Captions", "Threshold"]
        assert all(not field.placeholder for field in dialog_screen.query(Input))
        for widget in [*dialog_screen.query(Input), *dialog_screen.query(Select), *dialog_screen.query(Static)]:
            if widget.display:
                assert widget.region.right <= dialog.region.right and widget.region.bottom <= dialog.region.bottom
        model_help = str(dialog_screen.query_one("#tagger-model-help", Static).render())
        assert "model.onnx and selected_tags.csv" in model_help
        # BLIP has no threshold, and its Model help names its own files.
        dialog_screen.query_one("#tagger-kind", Select).value = "blip"
        assert await until(pilot, lambda: not dialog_screen.query_one("#tagger-threshold-row").display)
        assert "BLIP" in str(dialog_screen.query_one("#tagger-model-help", Static).render())
        await pilot.press("escape")
        assert await until(pilot, lambda: not isinstance(app.screen, TaggerScreen))


async def test_a_model_that_cannot_be_fetched_points_at_the_dialogs_model_field(light_workspace):
    """Issue #17: offline, the default WD14 model fails; the app's advice is the Model field, not --model."""
    dataset = light_workspace.parent / "dataset"
    before = captions(dataset)
    app = LoraTuiApp(light_workspace, gpus=[], mode="dataset", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await scanned(pilot, app)
        screen = app.screen
        await pilot.press("w")
        assert await until(pilot, lambda: isinstance(app.screen, TaggerScreen))
        # The default hub model, for every caption (keep mode would find nothing to caption and load nothing);
        # the tests run with HF_HUB_OFFLINE, so the download fails.
        app.screen.query_one("#tagger-mode", Select).value = "overwrite"
        app.screen.query_one("#tagger-start").press()
        assert await until(pilot, lambda: screen.job is not None, timeout=30)
        assert await until(pilot, lambda: screen.job is None, timeout=60)
        messages = [n.message for n in app._notifications if n.message.startswith("error:")]
        assert len(messages) == 1, [n.message for n in app._notifications]
        assert "could not be downloaded" in messages[0]
        assert "Model field" in messages[0] and "model.onnx and selected_tags.csv" in messages[0]
        assert "--model" not in messages[0]
        assert captions(dataset) == before

