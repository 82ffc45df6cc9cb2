"""The settings form shows the advice about every option of issue #18 inline, under its own field."""

from __future__ import annotations

import pytest

from loratui.app import LoraTuiApp
from loratui.widgets.setting_field import SettingField
from tests.tui.conftest import assessed, until
from tests.unit.lora_files import temporary_lora
from trainer.contract.config.toml_io import loads, save_config
from trainer.contract.config.schema import with_value


def _advice(screen, key: str) -> str:
    field = screen.query_one(f"#field-{key.replace('.', '-')}", SettingField)
    return " ".join(str(s.render()) for s in field.query(".advice"))


RISKY = {
    "network.weights": "WEIGHTS",
    "dataset.reg_path": "reg",
    "training.prior_loss_weight": 2.0,
    "dataset.masked_loss": True,
    "training.validation_split": 0.5,
    "training.multires_noise_iterations": 16,
    "training.multires_noise_discount": 0.9,
    "training.noise_offset": 0.0357,
    "training.ip_noise_gamma": 0.5,
    "training.min_timestep": 200,
    "training.max_timestep": 600,
    "training.debiased_estimation": True,
    "training.min_snr_gamma": 5.0,
    "training.loss_type": "huber",
    "training.huber_c": 5.0,
    "training.gradient_accumulation_steps": 4,
    "output.sample_every_n_steps": 1,
    "output.save_every_n_steps": 1,
}
"""Settings that set off every new rule at once, and where each one's advice shows."""
SHOWN = {
    "network.weights": ["Continuing starts a new run", "The file was trained at a UNet rate of 1e-4"],
    "training.prior_loss_weight": ["A prior loss weight of 2"],
    "dataset.masked_loss": ["Masked loss reads each image's alpha channel"],
    "training.validation_split": ["Holding out 6 of 12 images", "Holding out 0.5 of the images"],
    "training.multires_noise_discount": ["A multires discount of 0.9"],
    "training.multires_noise_iterations": ["16 layers of multires noise"],
    "training.noise_offset": ["Noise offset and multires noise"],
    "training.ip_noise_gamma": ["An input perturbation of 0.5"],
    "training.min_timestep": ["Training only timesteps 200–600"],
    "training.debiased_estimation": ["Debiased estimation and min-SNR"],
    "training.huber_c": ["A huber_c of 5"],
    "training.batch_size": ["Each update averages 16 images"],
    "output.sample_every_n_steps": ["Sampling every 1 steps"],
    "output.save_every_n_steps": ["Saving every 1 steps"],
}
OTHERS = {
    "model.base": "ponyDiffusionV6XL",
    "kind": "style",
    "dataset.reg_path": "reg",
    "training.prior_loss_weight": 0.0,
    "dataset.mask_path": "masks",
    "network.dim_from_weights": True,
    "training.validate_every_n_steps": 100,
}
"""The rules the first set cannot set off together with it (a mask folder silences the alpha advice)."""
OTHERS_SHOWN = {
    "output.sample_negative_prompt": ["This looks like a Pony model"],
    "dataset.reg_path": ["Regularization images guard a class"],
    "training.prior_loss_weight": ["With a prior loss weight of 0"],
    "dataset.mask_path": ["A mask folder is set, but masked loss is off"],
    "network.dim_from_weights": ["dim_from_weights reads dim and alpha"],
    "training.validate_every_n_steps": ["Validating every few steps needs held-out images"],
}


@pytest.mark.parametrize("settings,shown", [(RISKY, SHOWN), (OTHERS, OTHERS_SHOWN)], ids=["risky", "others"])
async def test_each_new_option_shows_its_advice_under_its_field(light_workspace, settings, shown):
    folder = light_workspace.parent
    (folder / "reg").mkdir()
    (folder / "masks").mkdir()
    if "model.base" in settings:
        (folder / "model").rename(folder / settings["model.base"])  # the family is told by the model's name
    config = loads(light_workspace.read_text())[0]
    for key, value in settings.items():
        config = with_value(config, key, temporary_lora({"ss_unet_lr": "0.0001"}) if value == "WEIGHTS" else value)
    save_config(config, light_workspace)
    app = LoraTuiApp(light_workspace, gpus=[], mode="setup")
    async with app.run_test(size=(120, 50)) as pilot:
        screen = app.screen
        await pilot.press("f5")  # advanced mode: every setting shows
        assert await until(pilot, lambda: assessed(app))
        rules = {f.rule for f in app.workspace.assessment.findings}
        assert await until(pilot, lambda: all(text in _advice(screen, key)
                                              for key, texts in shown.items() for text in texts)), \
            ({key: _advice(screen, key) for key in shown}, rules)
        for key in shown:
            assert screen.query_one(f"#field-{key.replace('.', '-')}", SettingField).display, key
