"""The options of issue #18 cross to sd-scripts and back: an sd-scripts config that uses every one
imports whole (each lands in its loratui setting, none is reported as having no equivalent), and
each option's export, import and round trip is tested on its own below.

The options are the ones users moving from kohya-colab, LoRA_Easy_Training_Scripts or sd-scripts
rely on (continue from a file, regularization images, masked loss, validation, gradient
accumulation, the noise and loss options, sample options and every-N-steps saves).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from loratui.interop import export_sdscripts, import_file
from tests.unit.test_interop_sdscripts import base_config, check_round_trip, make_dataset, round_trip
from trainer.contract.config.schema import get_value, with_value
from trainer.contract.config.toml_io import tomllib

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


def test_accumulation_and_the_noise_and_loss_options_cross_both_ways_and_l1_is_named(tmp_path):
    config = base_config(tmp_path)
    for key, value in (("gradient_accumulation_steps", 3), ("multires_noise_iterations", 8),
                       ("multires_noise_discount", 0.5), ("ip_noise_gamma", 0.05), ("min_timestep", 50),
                       ("max_timestep", 950), ("debiased_estimation", True), ("loss_type", "smooth_l1"),
                       ("huber_c", 0.2), ("huber_schedule", "exponential")):
        config = with_value(config, f"training.{key}", value)
    check_round_trip(config, tmp_path / "back", "sd15")
    written = tomllib.loads(export_sdscripts(config, tmp_path / "out").files["config.toml"])
    assert (written["gradient_accumulation_steps"], written["debiased_estimation_loss"], written["loss_type"],
            written["min_timestep"], written["max_timestep"], written["huber_schedule"]) == \
        (3, True, "smooth_l1", 50, 950, "exponential")
    l1 = tmp_path / "l1.toml"
    l1.write_text(f'pretrained_model_name_or_path = "{tmp_path / "m.safetensors"}"\ntrain_data_dir = "{tmp_path}"\n'
                  'loss_type = "l1"\nhuber_scale = 2.0\n')
    imported = import_file(l1)
    dropped = {e.source: e for e in imported.report.not_mapped}
    assert imported.config.training.loss_type == "l2" and "L1" in dropped["loss_type"].note
    assert "huber_scale" in dropped


def test_masked_loss_exports_a_mask_folder_per_subset_and_imports_back_as_one(tmp_path):
    masks = tmp_path / "masks"
    config = with_value(with_value(base_config(tmp_path), "dataset.masked_loss", True), "dataset.mask_path", str(masks))
    export, back = round_trip(config, tmp_path / "out")
    assert tomllib.loads(export.files["config.toml"])["masked_loss"] is True
    subsets = tomllib.loads(export.files["dataset.toml"])["datasets"][0]["subsets"]
    # Each subset's masks sit in the mask folder's sub-folder of the same name, as the trainer reads them.
    assert {Path(s["image_dir"]).name: s["conditioning_data_dir"] for s in subsets} == {
        "dataset": str(masks), "3_extra": str(masks / "3_extra"), "misc": str(masks / "misc")}
    assert back.config.dataset.masked_loss and back.config.dataset.mask_path == str(masks)
    assert [e.text() for e in back.report.not_mapped + back.report.approximate
            if e.source in ("masked_loss", "datasets.subsets conditioning_data_dir")] == []
    # No image has a mask there yet: loratui would train them whole, sd-scripts would not start, and the export says so.
    assert any(e.source == "dataset.mask_path" and "4 images have no mask" in e.note for e in export.report.approximate)
    for name in ("a.png", "b.png", "3_extra/c.png", "misc/d.png"):
        (masks / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8), 255).save(masks / name)
    assert not [e for e in export_sdscripts(config, tmp_path / "again").report.approximate
                if e.source == "dataset.mask_path"]

    alpha = with_value(config, "dataset.mask_path", "")
    export, back = round_trip(alpha, tmp_path / "alpha")
    subsets = tomllib.loads(export.files["dataset.toml"])["datasets"][0]["subsets"]
    assert all(s["alpha_mask"] is True and "conditioning_data_dir" not in s for s in subsets)
    assert back.config.dataset.masked_loss and back.config.dataset.mask_path == ""


def test_an_sd_scripts_masked_loss_config_imports_without_unknown_options(tmp_path):
    (tmp_path / "config.toml").write_text(
        'pretrained_model_name_or_path = "model.safetensors"\nnetwork_module = "networks.lora"\n'
        f'masked_loss = true\ndataset_config = "{tmp_path / "dataset.toml"}"\n')
    (tmp_path / "dataset.toml").write_text(
        '[[datasets]]\n[[datasets.subsets]]\nimage_dir = "/data/zundamon"\n'
        'conditioning_data_dir = "/data/zundamon_mask"\nnum_repeats = 8\n')
    result = import_file(tmp_path / "config.toml")
    assert result.config.dataset.masked_loss and result.config.dataset.mask_path == "/data/zundamon_mask"
    assert [e.text() for e in result.report.not_mapped if "mask" in e.source or "conditioning" in e.source] == []
    # Masks in folders that do not mirror the dataset's: the first is used, and the report says so.
    (tmp_path / "dataset.toml").write_text(
        '[[datasets]]\n[[datasets.subsets]]\nimage_dir = "/data/a"\nconditioning_data_dir = "/m/one"\n'
        '[[datasets.subsets]]\nimage_dir = "/data/b"\nconditioning_data_dir = "/elsewhere/two"\n')
    result = import_file(tmp_path / "config.toml")
    assert result.config.dataset.mask_path == "/m/one"
    assert any("conditioning_data_dir" in e.text() for e in result.report.approximate)


def test_a_train_data_dir_config_with_alpha_masks_imports_them(tmp_path):
    (tmp_path / "config.toml").write_text('pretrained_model_name_or_path = "model.safetensors"\n'
                                          'train_data_dir = "/data/train"\nmasked_loss = true\nalpha_mask = true\n')
    result = import_file(tmp_path / "config.toml")
    assert result.config.dataset.masked_loss and result.config.dataset.mask_path == ""
    assert [e.text() for e in result.report.not_mapped if "mask" in e.source] == []
    assert any(e.source == "alpha_mask" for e in result.report.mapped)


def test_continuing_a_lora_file_crosses_both_ways(tmp_path):
    root = make_dataset(tmp_path / "dataset")
    path = tmp_path / "continue.toml"
    path.write_text(f'pretrained_model_name_or_path = "m"\ntrain_data_dir = "{root}"\n'
                    'network_weights = "/loras/mychar.safetensors"\ndim_from_weights = true\n')
    result = import_file(path)
    assert (result.config.network.weights, result.config.network.dim_from_weights) == \
        ("/loras/mychar.safetensors", True)
    assert {"network_weights", "dim_from_weights"} <= {e.source for e in result.report.mapped}
    assert [e.text() for e in result.report.not_mapped] == []
    exported = tomllib.loads(export_sdscripts(result.config, tmp_path / "out").files["config.toml"])
    assert (exported["network_weights"], exported["dim_from_weights"]) == ("/loras/mychar.safetensors", True)


# ---- regularization images ---------------------------------------------------------------------------------------

def _reg_folder(root: Path) -> Path:
    for name in ("2_woman/w0.png", "2_woman/w1.png", "1_man/m0.png"):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 64), (40, 40, 40)).save(path)
    return root


def test_reg_images_and_prior_loss_weight_export_as_is_reg_subsets_and_come_back(tmp_path):
    reg = _reg_folder(tmp_path / "reg")
    config = with_value(with_value(base_config(tmp_path), "dataset.reg_path", str(reg)),
                        "training.prior_loss_weight", 0.7)
    config = with_value(config, "dataset.trigger_word", "zkchar")
    check_round_trip(config, tmp_path / "out", "sd15")
    data = tomllib.loads((tmp_path / "out" / "dataset.toml").read_text())
    reg_subsets = [s for s in data["datasets"][0]["subsets"] if s.get("is_reg")]
    # One subset per N_class folder, with its repeats and its own class word (never the trigger word).
    assert reg_subsets == [{"image_dir": str(reg / "1_man"), "num_repeats": 1, "is_reg": True, "class_tokens": "man"},
                           {"image_dir": str(reg / "2_woman"), "num_repeats": 2, "is_reg": True,
                            "class_tokens": "woman"}]
    assert tomllib.loads((tmp_path / "out" / "config.toml").read_text())["prior_loss_weight"] == 0.7


def test_reg_data_dir_and_prior_loss_weight_import_from_a_plain_sd_scripts_config(tmp_path):
    make_dataset(tmp_path / "train")
    reg = _reg_folder(tmp_path / "reg")
    source = tmp_path / "kohya.toml"
    source.write_text(f'pretrained_model_name_or_path = "{tmp_path / "m.safetensors"}"\n'
                      f'train_data_dir = "{tmp_path / "train"}"\nreg_data_dir = "{reg}"\nprior_loss_weight = 0.25\n')
    result = import_file(source)
    assert result.problems == []
    assert (result.config.dataset.reg_path, result.config.training.prior_loss_weight) == (str(reg), 0.25)
    mapped = {e.source for e in result.report.mapped}
    assert {"reg_data_dir", "prior_loss_weight"} <= mapped
    assert not [e for e in result.report.not_mapped if "reg" in e.source or "prior" in e.source]


def test_is_reg_subsets_named_otherwise_are_mapped_with_a_note_and_never_inside_the_dataset(tmp_path):
    root = make_dataset(tmp_path / "dataset")
    reg = _reg_folder(tmp_path / "reg")
    (tmp_path / "dataset.toml").write_text(
        f'[[datasets]]\n[[datasets.subsets]]\nimage_dir = "{root}"\nnum_repeats = 2\n'
        f'[[datasets.subsets]]\nimage_dir = "{reg / "2_woman"}"\nis_reg = true\nnum_repeats = 3\n')
    source = tmp_path / "kohya.toml"
    source.write_text(f'pretrained_model_name_or_path = "{tmp_path / "m.safetensors"}"\n'
                      f'dataset_config = "{tmp_path / "dataset.toml"}"\n')
    result = import_file(source)
    assert result.config.dataset.reg_path == str(reg)
    (note,) = [e for e in result.report.approximate if e.source == "datasets.subsets is_reg"]
    assert "2_woman: 3 repeats" in str(note.value)
