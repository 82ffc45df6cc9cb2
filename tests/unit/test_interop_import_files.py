"""Importing other people's files: an sd-scripts config with its dataset config, a
LoRA_Easy_Training_Scripts save, and the messages for input that cannot be read.

(Split from ``test_interop_sdscripts``, which keeps the export and the round trips.)
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from loratui.interop import InteropError, import_file
from loratui.interop.importers import LORA_EASY, SD_SCRIPTS
from tests.unit.test_interop_sdscripts import make_dataset

# ---- importing other people's files ----------------------------------------------------------------------------

SD_SCRIPTS_CONFIG = """
[model_arguments]
pretrained_model_name_or_path = "{model}"
clip_skip = 2

[additional_network_arguments]
network_module = "lycoris.kohya"
network_dim = 16
network_alpha = 8
network_args = ["algo=lokr", "conv_dim=4", "conv_alpha=2", "factor=8"]
unet_lr = 3e-4
text_encoder_lr = 6e-5

[optimizer_arguments]
optimizer_type = "Lion"
optimizer_args = ["weight_decay=0.05", "betas=(0.9,0.99)"]
lr_scheduler = "cosine_with_restarts"

[dataset_arguments]
dataset_config = "data/dataset.toml"
color_aug = false

[training_arguments]
max_train_steps = 120
mixed_precision = "fp16"
xformers = true
gradient_accumulation_steps = 2
output_dir = "{out}"
output_name = "mychar"
save_precision = "float"
sample_prompts = "prompts.txt"
sample_every_n_epochs = 1
"""

SD_SCRIPTS_DATASET = """
[general]
enable_bucket = true
caption_extension = ".txt"
shuffle_caption = true
keep_tokens = 1
resolution = [768, 768]

[[datasets]]
batch_size = 2

  [[datasets.subsets]]
  image_dir = "{root}/3_extra"
  num_repeats = 3
  class_tokens = "zkchar"

  [[datasets.subsets]]
  image_dir = "{root}/misc"
  num_repeats = 5
  random_crop = true

  [[datasets.subsets]]
  image_dir = "{root}/reg"
  is_reg = true
"""


def _sd_scripts_files(tmp_path: Path) -> Path:
    root = make_dataset(tmp_path / "dataset")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "dataset.toml").write_text(SD_SCRIPTS_DATASET.format(root=root))
    (tmp_path / "prompts.txt").write_text("# a comment\nzkchar, smile --n lowres --s 28 --d 5 --l 7\n"
                                          "zkchar --s 28 --d 6\n")
    config = tmp_path / "kohya.toml"
    config.write_text(SD_SCRIPTS_CONFIG.format(model=tmp_path / "m.safetensors", out=tmp_path / "out"))
    return config


def test_an_sd_scripts_config_maps_with_sd_scripts_defaults_and_reports_the_rest(tmp_path):
    result = import_file(_sd_scripts_files(tmp_path))
    config, report = result.config, result.report
    assert result.format == SD_SCRIPTS and result.problems == []
    assert (config.network.type, config.network.dim, config.network.alpha) == ("lokr", 16, 8.0)
    assert (config.network.conv_dim, config.network.conv_alpha) == (4, 2.0)
    assert (config.optimizer.unet_lr, config.optimizer.text_encoder_lr) == (3e-4, 6e-5)
    assert config.scheduler.restarts == 1  # sd-scripts' default number of cycles
    assert config.dataset.path == str(tmp_path / "dataset")
    assert (config.dataset.repeats, config.dataset.trigger_word) == (5, "zkchar")
    assert (config.dataset.caption_extension, config.dataset.keep_tokens, config.dataset.buckets) == (".txt", 1, True)
    assert (config.training.batch_size, config.training.mixed_precision) == (2, "fp16")
    assert config.output.save_precision == "fp32" and config.output.name == "mychar"
    # Each prompt keeps what only it says; what they share becomes the run-wide setting (sd-scripts: ddim).
    assert config.output.sample_prompts == ["zkchar, smile --n lowres --l 7", "zkchar"]
    assert (config.output.sample_steps, config.output.sample_seed) == (28, 5)
    assert (config.output.sample_sampler, config.output.sample_negative_prompt, config.output.sample_cfg) == \
        ("ddim", "", 7.5)  # sd-scripts' 7.5 written out: with arch auto, "the pipeline's own" may be SDXL's 5
    assert config.model.clip_skip == 2 and config.model.arch == "auto"
    # 120 steps become whole epochs of the steps loratui counts for this dataset.
    (steps,) = [e for e in report.approximate if e.target == "training.epochs"]
    per_epoch = int(steps.note.split(" epochs of ")[1].split()[0])
    assert steps.value == 120 and config.training.epochs == math.ceil(120 / per_epoch)
    dropped = {e.source: e.value for e in report.not_mapped}
    assert dropped["optimizer_type"] == "Lion" and config.optimizer.name == "adamw8bit"
    assert dropped["network_args factor"] == 8
    assert dropped["xformers"] is True and config.training.gradient_accumulation_steps == 2
    assert dropped["datasets[0].subsets[1].random_crop"] is True
    assert dropped["datasets.subsets is_reg"] == f"{tmp_path / 'dataset'}/reg"
    assert not any(key.startswith("sample_prompts") for key in dropped)
    assert "color_aug" not in dropped  # false: changes nothing in sd-scripts either
    assert "optimizer_args betas" in dropped
    # The root folder's own images are trained by loratui but left out by these subsets: said so.
    (unlisted,) = [e for e in report.approximate if e.source == "datasets.subsets"]
    assert unlisted.value == [str(tmp_path / "dataset")]
    assert {"dataset.trigger_word", "cache_latents"} <= report.names("approximate")
    assert {"model.arch", "scheduler.restarts", "training.seed"} <= report.names("defaulted")


def test_missing_settings_take_sd_scripts_defaults(tmp_path):
    path = tmp_path / "bare.toml"
    path.write_text(f'pretrained_model_name_or_path = "{tmp_path / "m.safetensors"}"\ntrain_data_dir = "{tmp_path}"\n')
    config = import_file(path).config
    assert (config.optimizer.name, config.scheduler.name) == ("adamw", "constant")
    assert (config.network.dim, config.network.alpha, config.training.batch_size) == (4, 1.0, 1)
    assert (config.dataset.caption_extension, config.dataset.buckets, config.dataset.shuffle_captions) == \
        (".caption", False, False)
    assert config.optimizer.unet_lr == config.optimizer.text_encoder_lr == 2e-6
    assert config.training.mixed_precision == "no" and config.output.name == "last"


LORA_EASY_SAVED = """
[[subsets]]
num_repeats = 3
keep_tokens = 1
caption_extension = ".txt"
shuffle_caption = true
flip_aug = false
is_reg = false
image_dir = "{root}/3_extra"
name = "subset 1"

[[subsets]]
num_repeats = 2
keep_tokens = 1
caption_extension = ".txt"
shuffle_caption = true
image_dir = "{root}/misc"
name = "subset 2"

[noise_args.args]
noise_offset = 0.0357
multires_noise_iterations = 6

[sample_args]

[logging_args]

[general_args.args]
pretrained_model_name_or_path = "{model}"
sdxl = true
mixed_precision = "bf16"
seed = 23
max_data_loader_n_workers = 1
persistent_data_loader_workers = true
max_token_length = 225
prior_loss_weight = 1.0
max_train_epochs = 4
cache_latents = true

[general_args.dataset_args]
resolution = 1024
batch_size = 2

[network_args.args]
network_dim = 8
network_alpha = 4.0
min_timestep = 0
max_timestep = 1000

[network_args.args.network_args]
conv_dim = 8
conv_alpha = 4.0
algo = "locon"
dora_wd = true

[optimizer_args.args]
optimizer_type = "LoraEasyCustomOptimizer.came.CAME"
lr_scheduler_type = "LoraEasyCustomOptimizer.RexAnnealingWarmRestarts.RexAnnealingWarmRestarts"
learning_rate = 0.0001
unet_lr = 0.0002
text_encoder_lr = 0.00005
warmup_ratio = 0.1
min_snr_gamma = 5

[optimizer_args.args.optimizer_args]
weight_decay = "0.04"

[optimizer_args.args.lr_scheduler_args]
min_lr = 1e-6
gamma = 0.9
d = 0.9

[saving_args.args]
output_dir = "{out}"
output_name = "easy"
save_precision = "fp16"
save_model_as = "safetensors"
save_every_n_epochs = 1
save_last_n_epochs = 2
save_toml = true

[bucket_args.dataset_args]
enable_bucket = true
min_bucket_reso = 256
max_bucket_reso = 2048
bucket_reso_steps = 64
"""


def test_a_lora_easy_config_maps_its_panels_network_table_and_custom_scheduler(tmp_path):
    root = make_dataset(tmp_path / "dataset")
    path = tmp_path / "easy.toml"
    path.write_text(LORA_EASY_SAVED.format(root=root, model=tmp_path / "xl.safetensors", out=tmp_path / "out"))
    result = import_file(path)
    config, report = result.config, result.report
    assert result.format == LORA_EASY and result.problems == []
    assert config.model.arch == "sdxl" and config.training.seed == 23
    assert (config.network.type, config.network.dora, config.network.conv_dim) == ("locon", True, 8)
    assert (config.optimizer.name, config.optimizer.weight_decay) == ("came", 0.04)
    assert (config.optimizer.unet_lr, config.optimizer.text_encoder_lr) == (2e-4, 5e-5)
    assert config.scheduler.name == "rex" and config.scheduler.warmup_steps > 0  # 10% of the counted steps
    assert (config.training.epochs, config.training.batch_size, config.training.min_snr_gamma) == (4, 2, 5.0)
    assert (config.dataset.path, config.dataset.repeats) == (str(root), 2)  # misc: a plain folder repeated twice
    assert (config.dataset.resolution, config.dataset.buckets, config.dataset.cache_latents_to_disk) == \
        (1024, True, False)
    assert (config.output.name, config.output.keep_last_n_checkpoints, config.training.noise_offset) == \
        ("easy", 2, 0.0357)
    dropped = {e.source: e.value for e in report.not_mapped}
    assert config.training.multires_noise_iterations == 6 and config.dataset.max_token_length == 225
    assert dropped["save_toml"] is True and dropped["datasets[0].subsets[0].name"] == "subset 1"
    assert {"lr_scheduler_type", "optimizer_type", "warmup_ratio"} <= report.names("approximate")
    # Its DoRA (LyCORIS' default axis) becomes loratui's input-axis DoRA, and the report says so.
    (axis,) = [e for e in report.approximate if e.source == "network_args wd_on_output"]
    assert "input axis" in axis.note


def test_dora_spelled_false_stays_off_and_the_input_axis_is_taken_silently(tmp_path):
    root = make_dataset(tmp_path / "dataset")
    for text, dora in [("dora_wd=False", False), ("dora_wd=True", True)]:
        path = tmp_path / "lyco.toml"
        path.write_text(f'pretrained_model_name_or_path = "m"\ntrain_data_dir = "{root}"\n'
                        f'network_module = "lycoris.kohya"\n'
                        f'network_args = ["algo=loha", "{text}", "wd_on_output=False"]\n')
        result = import_file(path)
        assert result.config.network.dora is dora
        assert "network_args wd_on_output" not in result.report.names("approximate", "not_mapped")


@pytest.mark.parametrize("text, message", [
    ("[training\n", "is not valid TOML"),
    ("[model]\nbase = 'x'\n[dataset]\npath = 'd'\n", "already a loratui config"),
    ("[general]\n[[datasets]]\n", "is an sd-scripts dataset config"),
    ("dataset_config = 'nowhere.toml'\n", "names the dataset config 'nowhere.toml', which is not there"),
    ("network_dim = \"sixteen\"\n", "not usable"),
])
def test_unusable_input_gets_one_clear_message(tmp_path, text, message):
    path = tmp_path / "input.toml"
    path.write_text(text)
    if message == "not usable":  # text where a number belongs: reported, loratui's default kept
        result = import_file(path)
        assert any(message in e.note for e in result.report.not_mapped) and result.config.network.dim == 8
        return
    with pytest.raises(InteropError, match=message):
        import_file(path)


def test_a_bad_dataset_config_is_named(tmp_path):
    (tmp_path / "ds.toml").write_text("[[datasets\n")
    path = tmp_path / "c.toml"
    path.write_text('dataset_config = "ds.toml"\n')
    with pytest.raises(InteropError, match=r"its dataset config .*ds.toml: is not valid TOML"):
        import_file(path)
    with pytest.raises(InteropError, match="--dataset-config .*other.toml: no such file"):
        import_file(path, tmp_path / "other.toml")
