"""The dataset screen shows the regularization folder (``dataset.reg_path``) on a line of its own."""

from __future__ import annotations

from PIL import Image

from loratui.app import LoraTuiApp
from tests.tui.test_dataset_screen import scanned
from trainer.contract.config.schema import Config, with_value
from trainer.contract.config.toml_io import save_config


async def test_reg_images_get_their_own_line_and_stay_out_of_the_dataset_counts(light_workspace):
    reg = light_workspace.parent / "reg"
    for index in range(3):
        (reg / "2_creature").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), (index * 60, 90, 90)).save(reg / "2_creature" / f"c{index}.png")
    config = with_value(with_value(Config(), "model.base", "model"), "dataset.path", "dataset")
    config = with_value(with_value(config, "dataset.trigger_word", "zkmascot"), "dataset.reg_path", "reg")
    save_config(config, light_workspace)
    app = LoraTuiApp(light_workspace, gpus=[], mode="dataset", offer_live_runs=False)
    async with app.run_test(size=(120, 40)) as pilot:
        ok = await scanned(pilot, app)
        assert ok, (str(app.screen.query_one("#dataset-summary").render()), [w.error for w in app.workers])
        lines = str(app.screen.query_one("#dataset-summary").render()).splitlines()
        # The dataset's own line counts its 12 images only; the reg images have a line of their own.
        assert lines[0].startswith("dataset: 12 images") and "creature" not in lines[0]
        (reg_line,) = [line for line in lines if line.startswith("regularization")]
        assert "3 images in 2_creature (3×2)" in reg_line and "reg samples per epoch" in reg_line
        assert all(image.path.parent.name != "2_creature" for image in app.screen.report.images)
