"""An sd-scripts config that uses every option of issue #18 imports whole: each one lands in its
loratui setting, none is reported as having no equivalent, and the config is valid.

The options are the ones users moving from kohya-colab, LoRA_Easy_Training_Scripts or sd-scripts
rely on (continue from a file, regularization images, masked loss, validation, gradient
accumulation, the noise and loss options, sample options and every-N-steps saves).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from loratui.interop import import_file
from trainer.contract.config.schema import get_value

PARITY_OPTIONS = ("network_weights", "dim_from_weights", "reg_data_dir", "prior_loss_weight", "masked_loss",
                  "alpha_mask", "validation_split", "validation_seed", "validate_every_n_steps",
                  "validate_every_n_epochs", "gradient_accumulation_steps", "multires_noise_iterations",
                  "multires_noise_discount", "ip_noise_gamma", "min_timestep", "max_timestep",
                  "debiased_estimation_loss", "loss_type", "huber_c", "huber_schedule", "sample_sampler",
                  "sample_every_n_steps", "save_every_n_steps", "sample_prompts")


def _folder(root: Path, names: list[str]) -> Path:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGBA", (64, 64), (120, 80, 40, 255)).save(path)
        path.with_suffix(".txt").write_text("zkchar, smile")
    return root


def test_an_sd_scripts_config_using_every_parity_option_imports_without_a_dropped_one(tmp_path):
    data = _folder(tmp_path / "train", [f"10_zkchar/{i}.png" for i in range(12)])
    reg = _folder(tmp_path / "reg", ["1_woman/w0.png", "1_woman/w1.png"])
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("zkchar, smile --n lowres, bad hands --l 6 --s 24 --w 512 --h 768 --d 7\n")
    weights = tmp_path / "start.safetensors"
    config = tmp_path / "kohya.toml"
    config.write_text(
        f'pretrained_model_name_or_path = "{tmp_path / "model.safetensors"}"\n'
        f'train_data_dir = "{data}"\nreg_data_dir = "{reg}"\nprior_loss_weight = 0.5\n'
        'network_module = "networks.lora"\nnetwork_dim = 8\nnetwork_alpha = 4\n'
        f'network_weights = "{weights}"\ndim_from_weights = true\n'
        'masked_loss = true\nalpha_mask = true\n'
        'validation_split = 0.1\nvalidation_seed = 7\nvalidate_every_n_steps = 50\nvalidate_every_n_epochs = 2\n'
        'gradient_accumulation_steps = 2\nmultires_noise_iterations = 6\nmultires_noise_discount = 0.3\n'
        'ip_noise_gamma = 0.1\nmin_timestep = 100\nmax_timestep = 900\ndebiased_estimation_loss = true\n'
        'loss_type = "smooth_l1"\nhuber_c = 0.2\nhuber_schedule = "exponential"\n'
        'sample_sampler = "k_euler_a"\nsample_every_n_steps = 100\nsave_every_n_steps = 200\n'
        f'sample_prompts = "{prompts}"\n')

    result = import_file(config)

    dropped = [entry.text() for entry in result.report.not_mapped
               if entry.source.split(" ")[0].split(".")[-1] in PARITY_OPTIONS]
    assert dropped == []
    expected = {"network.weights": str(weights), "network.dim_from_weights": True, "dataset.reg_path": str(reg),
                "training.prior_loss_weight": 0.5, "dataset.masked_loss": True, "dataset.mask_path": "",
                "training.validation_split": 0.1, "training.validation_seed": 7,
                "training.validate_every_n_steps": 50, "training.validate_every_n_epochs": 2,
                "training.gradient_accumulation_steps": 2, "training.multires_noise_iterations": 6,
                "training.multires_noise_discount": 0.3, "training.ip_noise_gamma": 0.1, "training.min_timestep": 100,
                "training.max_timestep": 900, "training.debiased_estimation": True, "training.loss_type": "smooth_l1",
                "training.huber_c": 0.2, "training.huber_schedule": "exponential",
                "output.sample_sampler": "euler_a", "output.sample_every_n_steps": 100,
                "output.save_every_n_steps": 200}
    assert {key: get_value(result.config, key) for key in expected} == expected
    # The prompt keeps every option it was written with: none is lost on the way in.
    (prompt,) = result.config.output.sample_prompts
    for option in ("--n lowres, bad hands", "--l 6", "--s 24", "--w 512", "--h 768", "--d 7"):
        assert option in prompt or _folded(result.config, option), (option, prompt)
    assert result.problems == []


def _folded(config, option: str) -> bool:
    """A prompt's option the import moved to the run-wide setting it equals (one prompt: all of them)."""
    output = config.output
    letter, value = option[2], option.split(" ", 1)[1]
    held = {"n": output.sample_negative_prompt, "l": output.sample_cfg, "s": output.sample_steps,
            "d": output.sample_seed}.get(letter)
    return held is not None and str(held).rstrip("0").rstrip(".") == value
