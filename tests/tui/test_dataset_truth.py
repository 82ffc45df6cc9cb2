"""One dataset truth: what the checklist, the advice and the train screen count follows the files on disk,
however they change (from the app, or from another program while the app is open)."""

from __future__ import annotations

from textual.widgets import OptionList

from loratui.app import LoraTuiApp
from loratui.checklist import checklist
from tests.tui.conftest import assessed, until


def _captions_item(app):
    return next(s for s in checklist(app.workspace) if s.item.label.startswith("All images tagged"))


async def test_captions_changed_by_another_program_reach_the_checklist(light_workspace):
    dataset = light_workspace.parent / "dataset"
    app = LoraTuiApp(light_workspace, gpus=[], mode="checklist", offer_live_runs=False)
    async with app.run_test(size=(100, 40)) as pilot:
        assert await until(pilot, lambda: assessed(app))
        version = app.workspace.version
        assert len(app.workspace.assessment.facts.captions.without_trigger) == 2  # the demo's mascot_03 and _08
        # Another terminal adds the trigger word to both, and removes one caption altogether.
        for name in ("mascot_03", "mascot_08"):
            caption = dataset / f"{name}.txt"
            caption.write_text("zkmascot, " + caption.read_text())
        (dataset / "mascot_05.txt").unlink()
        assert await until(pilot, lambda: not app.workspace.assessment.facts.captions.without_trigger
                           and len(app.workspace.assessment.facts.captions.missing) == 1)
        assert app.workspace.version == version  # the config did not change; the files did
        item = _captions_item(app)
        assert not item.done and item.why == "1 image has no caption."


async def test_a_renamed_kohya_folder_changes_the_step_count_everywhere(light_workspace):
    dataset = light_workspace.parent / "dataset"
    app = LoraTuiApp(light_workspace, gpus=[], mode="train", offer_live_runs=False)
    async with app.run_test(size=(100, 40)) as pilot:
        assert await until(pilot, lambda: assessed(app))
        before = app.workspace.assessment.plan.total_steps
        # The 12 images move into a kohya folder that repeats them 20 times instead of dataset.repeats' 10.
        (dataset / "20_zkmascot").mkdir()
        for path in list(dataset.iterdir()):
            if path.is_file():
                path.rename(dataset / "20_zkmascot" / path.name)
        assert await until(pilot, lambda: app.workspace.assessment.plan.total_steps == 2 * before)
        assert await until(pilot, lambda: f"{2 * before}" in str(app.screen.query_one("#summary").render()))


async def test_the_dataset_screen_follows_captions_changed_by_another_program(light_workspace):
    dataset = light_workspace.parent / "dataset"
    app = LoraTuiApp(light_workspace, gpus=[], mode="dataset", offer_live_runs=False)
    async with app.run_test(size=(80, 24)) as pilot:
        assert await until(pilot, lambda: app.screen.report is not None and assessed(app))
        screen = app.screen
        assert screen.report.captions() == {"missing": 0, "empty": 0, "no_trigger": 2}
        # Another terminal fixes one caption and removes another; nobody presses a key here.
        caption = dataset / "mascot_03.txt"
        caption.write_text("zkmascot, " + caption.read_text())
        (dataset / "mascot_05.txt").unlink()
        assert await until(pilot, lambda: screen.report.captions() == {"missing": 1, "empty": 0, "no_trigger": 1})
        problems = screen.query_one("#problem-list", OptionList)
        texts = [str(problems.get_option_at_index(i).prompt) for i in range(problems.option_count)]
        assert any("mascot_05.png: has no caption" in text for text in texts)
        assert not any("mascot_03.png" in text and "trigger" in text for text in texts)
