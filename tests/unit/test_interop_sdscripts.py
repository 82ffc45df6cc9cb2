"""Export to sd-scripts and import from sd-scripts / LoRA_Easy_Training_Scripts (loratui.interop).

The round-trip tests generate configs over every network type, optimizer and scheduler (and random
mixes of every other setting), export each one, import the files back and check that what comes
back equals what went out, except for settings the export named as not carried over.
"""

from __future__ import annotations

import ast
import math
import random
import sys
from pathlib import Path

import pytest
from PIL import Image

from loratui.interop import InteropError, export_sdscripts, import_file
from loratui.interop.importers import LORA_EASY, SD_SCRIPTS, parse_prompt_line
from loratui.interop.sdscripts_validation import FOLLOWERS as VALIDATION_FOLLOWERS
from loratui.interop.sdscripts_samples import resolved_prompts
from loratui.interop.sdscripts import (CAME_BETAS, CONV_TYPES, GUIDANCE_SCALE, LYCORIS_ALGOS,
                                      bucket_range)
from trainer.contract.config.schema import (DORA_NETWORKS, FIELDS, LR_FREE_OPTIMIZERS, SUPPORTED_NETWORKS,
                                            SUPPORTED_OPTIMIZERS, SUPPORTED_SCHEDULERS, Config, get_value,
                                            native_resolution, validate, with_value)
from trainer.contract.plan import bucket_candidates

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]

# Names read in kohya-ss/sd-scripts (library/train_util.py, train_network.py, library/config_util.py).
SD_SCRIPTS_ARGUMENTS = {
    "pretrained_model_name_or_path", "clip_skip", "v_parameterization", "zero_terminal_snr", "max_token_length", "vae",
    "network_module", "network_dim", "network_alpha", "network_args", "network_weights", "dim_from_weights",
    "optimizer_type", "optimizer_args", "learning_rate", "unet_lr", "text_encoder_lr", "network_train_unet_only",
    "max_grad_norm", "lr_scheduler", "lr_warmup_steps", "lr_scheduler_num_cycles", "lr_scheduler_type",
    "lr_scheduler_args", "max_train_epochs", "train_batch_size", "mixed_precision", "seed", "gradient_checkpointing",
    "min_snr_gamma", "noise_offset", "sdpa", "cache_latents", "cache_latents_to_disk", "output_dir", "output_name",
    "save_model_as", "save_precision", "save_every_n_epochs", "save_last_n_epochs", "sample_every_n_epochs",
    "sample_sampler", "sample_prompts", "dataset_config", "masked_loss",
    "validate_every_n_steps", "validate_every_n_epochs",
    "prior_loss_weight", "reg_data_dir",
    "save_every_n_steps", "save_last_n_steps", "sample_every_n_steps",
    "gradient_accumulation_steps", "multires_noise_iterations",
    "multires_noise_discount", "ip_noise_gamma", "min_timestep", "max_timestep", "debiased_estimation_loss",
    "loss_type", "huber_c", "huber_schedule"}

_SUBSET_ASCENDABLE = {"color_aug", "face_crop_aug_range", "flip_aug", "num_repeats", "random_crop", "shuffle_caption",
                      "keep_tokens", "keep_tokens_separator", "secondary_separator", "caption_separator",
                      "enable_wildcard", "token_warmup_min", "token_warmup_step", "caption_prefix", "caption_suffix",
                      "custom_attributes", "caption_extension", "class_tokens", "cache_info",
                      "caption_dropout_every_n_epochs", "caption_dropout_rate", "caption_tag_dropout_rate"}
DATASET_GENERAL_KEYS = _SUBSET_ASCENDABLE | {"batch_size", "bucket_no_upscale", "bucket_reso_steps", "enable_bucket",
                                             "max_bucket_reso", "min_bucket_reso", "validation_seed",
                                             "validation_split", "resolution", "network_multiplier"}
DATASET_SUBSET_KEYS = _SUBSET_ASCENDABLE | {"image_dir", "is_reg", "alpha_mask", "conditioning_data_dir"}


def make_dataset(root: Path) -> Path:
    """Images in the folder, in a ``3_extra`` repeat folder, in a plain sub-folder and in a hidden one."""
    sizes = {"a.png": (96, 64), "b.png": (64, 96), "3_extra/c.png": (64, 64), "misc/d.png": (128, 64),
             ".backup/e.png": (64, 64)}
    for name, size in sizes.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (120, 80, 40)).save(path)
        path.with_suffix(".txt").write_text("zkchar, smile, red hair")
    return root


def base_config(tmp_path: Path, arch: str = "sd15") -> Config:
    """A default config with absolute paths, as ``load_config`` gives one to the exporter."""
    dataset = tmp_path / "dataset"
    if not dataset.exists():
        make_dataset(dataset)
    config = Config()
    for key, value in (("model.base", str(tmp_path / "model.safetensors")), ("model.arch", arch),
                       ("dataset.path", str(dataset)), ("output.dir", str(tmp_path / "runs"))):
        config = with_value(config, key, value)
    return config


def round_trip(config: Config, folder: Path):
    """Export ``config`` into ``folder``, write the files, import config.toml back."""
    export = export_sdscripts(config, folder)
    folder.mkdir(parents=True)
    for name, text in export.files.items():
        (folder / name).write_text(text)
    return export, import_file(folder / "config.toml")


def expected_back(config: Config, arch: str) -> Config:
    """What an import of the export gives back: the config, less what the export cannot carry."""
    losses = {"kind": "character", "model.arch": arch, "model.single_file_config": "", "dataset.cache_dir": "",
              "training.fused_backward_pass": False, "dataset.trigger_word": config.dataset.trigger_word.strip()}
    if arch == "sdxl":
        losses["model.clip_skip"] = 1
    if config.model.prediction == "epsilon":  # sd-scripts' default, so not written; it comes back as auto
        losses["model.prediction"] = "auto"
    if config.dataset.resolution == 0:
        losses["dataset.resolution"] = native_resolution(arch)
    if config.network.type not in ("locon", "loha", "lokr"):
        losses.update({"network.conv_dim": 8, "network.conv_alpha": 4.0})
    if config.scheduler.name != "cosine_with_restarts":
        losses["scheduler.restarts"] = 3
    if config.scheduler.name == "rex":
        losses["scheduler.warmup_steps"] = 0
    if not config.dataset.buckets:
        losses["dataset.bucket_upscale"] = False
    if config.output.save_every_n_epochs == 0 and config.output.save_every_n_steps == 0:
        losses["output.keep_last_n_checkpoints"] = 0
    if not config.dataset.masked_loss:
        losses["dataset.mask_path"] = ""  # sd-scripts reads no masks then, so none are written
    if not config.training.validation_split:  # the other validation settings are not written without a split
        losses.update({key: FIELDS[key].default for key in VALIDATION_FOLLOWERS})
    if not any(p.strip() for p in config.output.sample_prompts):
        losses.update({"output.sample_steps": 20, "output.sample_seed": 42, "output.sample_prompts": [],
                       "output.sample_negative_prompt": "", "output.sample_cfg": 0.0})
    for key, value in losses.items():
        config = with_value(config, key, value)
    return config


def differing(a: Config, b: Config) -> set[str]:
    return {key for key in FIELDS if get_value(a, key) != get_value(b, key)}


SAMPLE_SETTINGS = ("output.sample_prompts", "output.sample_steps", "output.sample_seed",
                   "output.sample_negative_prompt", "output.sample_cfg")
"""Settings that the prompt file carries as each prompt's options (compared as ``resolved_prompts``)."""


def check_round_trip(config: Config, folder: Path, arch: str) -> None:
    assert validate(config) == [], validate(config)
    export, result = round_trip(config, folder)
    back = result.config
    assert result.format == SD_SCRIPTS
    # Sample prompts come back as the same pictures: each prompt with the same options once settled,
    # though an option the run-wide settings give may move between the prompt's line and those settings.
    assert resolved_prompts(back, arch) == resolved_prompts(config, arch)
    for key in SAMPLE_SETTINGS if any(p.strip() for p in config.output.sample_prompts) else ():
        back = with_value(back, key, get_value(config, key))
    # Nothing is lost silently: every setting that did not come back is named in the export's report.
    lost = differing(config, back)
    named = export.report.names("approximate", "not_mapped")
    assert lost <= named, f"lost without a word: {sorted(lost - named)}"
    assert differing(expected_back(config, arch), back) == set()
    assert result.problems == []
    # Everything read back was understood: the export writes nothing the import has to drop.
    assert [e.text() for e in result.report.not_mapped] == []


# ---- generated configs ---------------------------------------------------------------------------------------

SAMPLE_VALUES = {
    "kind": ["character", "style", "concept"], "model.clip_skip": [1, 2], "model.single_file_config": ["", "org/cfg"],
    "dataset.trigger_word": ["", "zkchar"], "dataset.repeats": [1, 3, 10], "dataset.resolution": [0, 512, 768, 1024],
    "dataset.caption_extension": [".txt", ".caption"], "dataset.shuffle_captions": [True, False],
    "dataset.keep_tokens": [0, 1, 2], "dataset.flip": [True, False], "dataset.buckets": [True, False],
    "dataset.bucket_upscale": [True, False], "dataset.caption_dropout": [0.0, 0.05],
    "dataset.cache_latents_to_disk": [True, False], "dataset.cache_dir": ["", "/tmp/loratui-cache"],
    "network.dim": [4, 8, 32], "network.alpha": [1.0, 4.0, 16.0], "network.conv_dim": [4, 8],
    "network.conv_alpha": [1.0, 2.5], "network.dora": [False, True],
    "network.weights": ["", "/loras/start.safetensors"], "network.dim_from_weights": [False, True],
    "optimizer.unet_lr": [1e-4, 5e-4, 1.0],
    "optimizer.text_encoder_lr": [0.0, 5e-5, 1e-4], "optimizer.weight_decay": [0.0, 0.01, 0.1],
    "optimizer.max_grad_norm": [0.0, 1.0], "scheduler.restarts": [1, 3, 4], "scheduler.warmup_steps": [0, 10],
    "training.epochs": [1, 10, 16], "training.batch_size": [1, 2, 4],
    "training.mixed_precision": ["no", "fp16", "bf16"],
    "training.gradient_checkpointing": [True, False], "training.fused_backward_pass": [False, True],
    "training.num_processes": [1, 2], "training.seed": [0, 42, 1234], "training.min_snr_gamma": [0.0, 5.0],
    "training.noise_offset": [0.0, 0.0357], "training.prior_loss_weight": [1.0, 0.5, 2.0],
    "training.gradient_accumulation_steps": [1, 2, 4],
    "training.multires_noise_iterations": [0, 6], "training.multires_noise_discount": [0.3, 0.8],
    "training.ip_noise_gamma": [0.0, 0.1], "training.min_timestep": [0, 100], "training.max_timestep": [1000, 900],
    "training.debiased_estimation": [False, True], "training.huber_c": [0.1, 0.25], "output.name": ["lora", "char_v2"],
    "output.save_every_n_epochs": [0, 1, 2],
    "output.keep_last_n_checkpoints": [0, 3], "output.save_precision": ["fp16", "bf16", "fp32"],
    "output.sample_every_n_epochs": [0, 2],
    "output.sample_prompts": [[], ["zkchar, smile"], ["zkchar", "a b, c"],
                              ["zkchar --w 768 --h 512 --n ugly", "a b, c --s 12 --d 3 --ss heun --l 6", "zk --l 7.5"]],
    "output.sample_steps": [20, 28], "output.sample_seed": [42, 7], "output.sample_negative_prompt": ["", "lowres"],
    "output.sample_cfg": [0.0, 4.0], "output.sample_every_n_steps": [0, 100], "output.save_every_n_steps": [0, 50],
    "dataset.masked_loss": [False, True], "dataset.mask_path": ["", "/tmp/loratui-masks"],
    "training.validation_split": [0.0, 0.2], "training.validation_seed": [42, 7],
    "training.validate_every_n_steps": [0, 50], "training.validate_every_n_epochs": [1, 2],
}


def random_config(rng: random.Random, tmp_path: Path) -> Config:
    """A random valid config: every setting drawn from its choices or from sample values."""
    while True:
        config = base_config(tmp_path, rng.choice(["sd15", "sdxl"]))
        for key, info in FIELDS.items():
            values = SAMPLE_VALUES.get(key) or (list(info.choices) if info.choices else None)
            if values is not None and key != "model.arch":
                config = with_value(config, key, rng.choice(values))
        if config.optimizer.name in LR_FREE_OPTIMIZERS:
            config = with_value(with_value(config, "optimizer.unet_lr", 1.0), "optimizer.text_encoder_lr",
                                rng.choice([0.0, 1.0]))
        if not validate(config):
            return config


def grid_configs(tmp_path: Path) -> list[tuple[str, Config]]:
    """Every network type (with and without DoRA), optimizer and scheduler, each on top of the defaults."""
    cases = [("default", base_config(tmp_path))]
    for index, network in enumerate(SUPPORTED_NETWORKS):
        for dora in ([False, True] if network in DORA_NETWORKS else [False]):
            config = base_config(tmp_path, ["sd15", "sdxl"][index % 2])
            config = with_value(with_value(config, "network.type", network), "network.dora", dora)
            config = with_value(with_value(config, "network.conv_dim", 16), "network.conv_alpha", 2.0)
            cases.append((f"network-{network}{'-dora' if dora else ''}", config))
    for dim_from_weights in (False, True):  # continuing a LoRA file
        config = with_value(base_config(tmp_path), "network.weights", str(tmp_path / "start.safetensors"))
        cases.append((f"continue-{dim_from_weights}", with_value(config, "network.dim_from_weights", dim_from_weights)))
    for name in SUPPORTED_OPTIMIZERS:
        config = with_value(base_config(tmp_path), "optimizer.name", name)
        if name in LR_FREE_OPTIMIZERS:
            config = with_value(with_value(config, "optimizer.unet_lr", 1.0), "optimizer.text_encoder_lr", 1.0)
        if name == "prodigy_plus":
            config = with_value(with_value(config, "scheduler.name", "constant"), "scheduler.warmup_steps", 5)
        cases.append((f"optimizer-{name}", config))
    for name in SUPPORTED_SCHEDULERS:
        config = with_value(base_config(tmp_path, "sdxl"), "scheduler.name", name)
        config = with_value(with_value(config, "scheduler.warmup_steps", 7), "scheduler.restarts", 5)
        cases.append((f"scheduler-{name}", config))
    return cases


def test_default_config_comes_back_equal_but_for_the_size_written_out(tmp_path):
    config = base_config(tmp_path)
    export, result = round_trip(config, tmp_path / "out")
    assert differing(config, result.config) == {"dataset.resolution"}
    assert result.config.dataset.resolution == 768
    assert "dataset.resolution" in export.report.names("approximate")


def test_every_network_optimizer_and_scheduler_round_trips(tmp_path):
    for name, config in grid_configs(tmp_path):
        check_round_trip(config, tmp_path / name, config.model.arch)


def test_random_mixes_of_every_setting_round_trip(tmp_path):
    rng = random.Random(20240229)
    for index in range(60):
        config = random_config(rng, tmp_path)
        check_round_trip(config, tmp_path / f"random-{index}", config.model.arch)


def test_auto_architecture_is_read_from_the_model_and_written_as_the_script(tmp_path):
    model = tmp_path / "xl-model"
    (model / "text_encoder_2").mkdir(parents=True)
    config = with_value(with_value(base_config(tmp_path), "model.base", str(model)), "model.arch", "auto")
    export, result = round_trip(config, tmp_path / "out")
    assert export.script == "sdxl_train_network.py"
    assert result.config.model.arch == "sdxl" and result.config.dataset.resolution == 1024
    assert "model.arch" in export.report.names("approximate")
    unknown = with_value(config, "model.base", str(tmp_path / "missing.safetensors"))
    export = export_sdscripts(unknown, tmp_path / "out2")
    assert export.script == "train_network.py"
    assert any("could not be read" in e.note for e in export.report.approximate)


# ---- what the exported files say ------------------------------------------------------------------------------

def test_exported_files_use_only_sd_scripts_names_and_parse_with_its_toml_library(tmp_path):
    toml = pytest.importorskip("toml")  # the parser sd-scripts itself uses
    rng = random.Random(7)
    for index in range(12):
        config = random_config(rng, tmp_path)
        export = export_sdscripts(config, tmp_path / f"out{index}")
        for name in ("config.toml", "dataset.toml"):
            assert toml.loads(export.files[name]) == tomllib.loads(export.files[name]), name
        assert set(tomllib.loads(export.files["config.toml"])) <= SD_SCRIPTS_ARGUMENTS
        data = tomllib.loads(export.files["dataset.toml"])
        assert set(data) == {"general", "datasets"} and set(data["general"]) <= DATASET_GENERAL_KEYS
        for subset in data["datasets"][0]["subsets"]:
            assert set(subset) <= DATASET_SUBSET_KEYS


def test_subsets_are_the_folder_and_its_image_sub_folders_with_their_repeats(tmp_path):
    config = with_value(base_config(tmp_path), "dataset.repeats", 4)
    data = tomllib.loads(export_sdscripts(config, tmp_path / "out").files["dataset.toml"])
    subsets = {Path(s["image_dir"]).name: s["num_repeats"] for s in data["datasets"][0]["subsets"]}
    assert subsets == {"dataset": 4, "3_extra": 3, "misc": 4}  # the hidden .backup folder is not trained


def test_network_optimizer_and_schedule_arguments(tmp_path):
    def flat(**changes):
        config = base_config(tmp_path)
        for key, value in changes.items():
            config = with_value(config, key.replace("__", "."), value)
        return tomllib.loads(export_sdscripts(config, tmp_path / "out").files["config.toml"])

    loha = flat(network__type="loha", network__dora=True, network__conv_dim=6, network__conv_alpha=3.0)
    assert loha["network_module"] == "lycoris.kohya"
    # wd_on_output=False: sd-scripts then trains the input-axis DoRA that loratui trains and the UIs apply exactly.
    assert loha["network_args"] == ["algo=loha", "conv_dim=6", "conv_alpha=3.0", "dora_wd=True", "wd_on_output=False"]
    ia3 = flat(network__type="ia3")
    assert ia3["network_args"] == ["algo=ia3", "preset=attn-mlp"]  # LyCORIS's default would adapt convolutions too
    locon = flat(network__type="locon")
    assert locon["network_module"] == "networks.lora" and locon["network_args"] == ["conv_dim=8", "conv_alpha=4.0"]
    came = flat(optimizer__name="came", optimizer__weight_decay=0.04)
    assert came["optimizer_type"] == "pytorch_optimizer.CAME"
    assert ast.literal_eval(came["optimizer_args"][1].split("=", 1)[1]) == CAME_BETAS
    adafactor = flat(optimizer__name="adafactor")
    assert "relative_step=False" in adafactor["optimizer_args"]  # else sd-scripts ignores the learning rate
    unet_only = flat(optimizer__text_encoder_lr=0.0)
    assert unet_only["network_train_unet_only"] is True and "text_encoder_lr" not in unet_only
    warm = flat(scheduler__name="constant", scheduler__warmup_steps=10)
    assert warm["lr_scheduler"] == "constant_with_warmup"  # sd-scripts' constant refuses warmup steps
    rex = flat(scheduler__name="rex", scheduler__warmup_steps=10)
    assert rex["lr_scheduler_type"] == "pytorch_optimizer.REXScheduler" and "lr_warmup_steps" not in rex
    assert any(arg.startswith("total_steps=") for arg in rex["lr_scheduler_args"])


def test_trigger_word_becomes_class_tokens_and_the_report_counts_captions_without_it(tmp_path):
    config = with_value(base_config(tmp_path), "dataset.trigger_word", "newword")
    export = export_sdscripts(config, tmp_path / "out")
    assert tomllib.loads(export.files["dataset.toml"])["general"]["class_tokens"] == "newword"
    (entry,) = [e for e in export.report.approximate if e.source == "dataset.trigger_word"]
    assert "4 of 4 captions lack it" in entry.note and "loratui dataset trigger" in entry.note


def test_prompt_file_lines_carry_steps_seeds_size_and_guidance(tmp_path):
    config = base_config(tmp_path, "sdxl")
    for key, value in (("output.sample_prompts", ["zkchar, smile", "zkchar"]), ("output.sample_steps", 24),
                       ("output.sample_seed", 9)):
        config = with_value(config, key, value)
    text = export_sdscripts(config, tmp_path / "out").files["sample_prompts.txt"]
    lines = [parse_prompt_line(line) for line in text.splitlines() if not line.startswith("#")]
    assert lines == [("zkchar, smile", {"w": "1024", "h": "1024", "d": "9", "l": "5", "s": "24"}),
                     ("zkchar", {"w": "1024", "h": "1024", "d": "10", "l": "5", "s": "24"})]


def test_command_line_runs_the_right_script_with_both_files_and_the_processes(tmp_path):
    config = with_value(base_config(tmp_path, "sdxl"), "training.num_processes", 2)
    command = export_sdscripts(config, tmp_path / "out").files["command.sh"]
    out = (tmp_path / "out").resolve()
    assert "accelerate launch --num_cpu_threads_per_process 1 --multi_gpu --num_processes 2 sdxl_train_network.py" \
        in command
    assert f"--config_file {out / 'config.toml'}" in command and f"--dataset_config {out / 'dataset.toml'}" in command


def test_fused_backward_pass_and_other_loratui_only_settings_are_listed(tmp_path):
    config = base_config(tmp_path)
    for key, value in (("training.fused_backward_pass", True), ("training.batch_size", 1),
                       ("dataset.cache_dir", "/tmp/c"), ("kind", "style")):
        config = with_value(config, key, value)
    export = export_sdscripts(config, tmp_path / "out")
    dropped = {e.source: e.note for e in export.report.not_mapped}
    assert "full fine-tuning" in dropped["training.fused_backward_pass"]
    assert {"dataset.cache_dir", "kind"} <= set(dropped)
    assert "training.fused_backward_pass" in export.files["config.toml"]  # listed in the file's header too


# ---- the duplicated tables agree with the trainer ------------------------------------------------------------

def _constant(relative: str, name: str):
    """A module-level constant read from source (the trainer modules import torch; this test must not)."""
    tree = ast.parse((REPO / relative).read_text())
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            value = node.value
            if isinstance(value, ast.Call) and value.args:  # frozenset({...})
                value = value.args[0]
            return ast.literal_eval(value)
    raise AssertionError(f"{name} not found in {relative}")


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


def test_tables_agree_with_the_trainer():
    assert CAME_BETAS == _constant("trainer/optim.py", "CAME_BETAS")
    assert GUIDANCE_SCALE == _constant("trainer/sampling.py", "GUIDANCE_SCALE")
    assert LYCORIS_ALGOS == _constant("trainer/networks/lycoris_net.py", "ALGORITHMS")
    assert set(CONV_TYPES) == set(_constant("trainer/networks/lycoris_net.py", "CONV_TYPES"))
    for resolution in (128, 256, 512, 768, 1024, 1536):
        sides = [side for bucket in bucket_candidates(resolution) for side in bucket]
        assert bucket_range(resolution) == (min(sides), max(sides))


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


def test_v_prediction_and_zero_terminal_snr_cross_both_ways(tmp_path):
    root = make_dataset(tmp_path / "dataset")
    path = tmp_path / "vpred.toml"
    path.write_text(f'pretrained_model_name_or_path = "m"\ntrain_data_dir = "{root}"\n'
                    'v_parameterization = true\nzero_terminal_snr = true\n')
    config = import_file(path).config
    assert (config.model.prediction, config.model.zero_terminal_snr) == ("v_prediction", True)
    exported = tomllib.loads(export_sdscripts(config, tmp_path / "out").files["config.toml"])
    assert exported["v_parameterization"] is True and exported["zero_terminal_snr"] is True
    # Without v_parameterization sd-scripts would train noise prediction; loratui keeps auto and says so.
    path.write_text(f'pretrained_model_name_or_path = "m"\ntrain_data_dir = "{root}"\n')
    result = import_file(path)
    assert result.config.model.prediction == "auto"
    assert any(e.source == "model.prediction" for e in result.report.defaulted)


def test_the_vae_crosses_both_ways(tmp_path):
    root = make_dataset(tmp_path / "dataset")
    path = tmp_path / "vae.toml"
    path.write_text(f'pretrained_model_name_or_path = "m"\ntrain_data_dir = "{root}"\n'
                    'vae = "/vaes/vae-ft-mse-840000-ema-pruned.safetensors"\n')
    result = import_file(path)
    assert result.config.model.vae == "/vaes/vae-ft-mse-840000-ema-pruned.safetensors"
    assert [e.source for e in result.report.mapped if e.source == "vae"] == ["vae"]
    exported = tomllib.loads(export_sdscripts(result.config, tmp_path / "out").files["config.toml"])
    assert exported["vae"] == "/vaes/vae-ft-mse-840000-ema-pruned.safetensors"


def test_folder_name_repeats_off_exports_as_equal_subsets_and_imports_back(tmp_path):
    config = with_value(with_value(base_config(tmp_path), "dataset.repeats", 20), "dataset.folder_name_repeats", False)
    export, back = round_trip(config, tmp_path / "out")
    data = tomllib.loads(export.files["dataset.toml"])
    subsets = {Path(s["image_dir"]).name: s["num_repeats"] for s in data["datasets"][0]["subsets"]}
    assert subsets == {"dataset": 20, "3_extra": 20, "misc": 20}  # sd-scripts repeats 3_extra 20 times too
    assert back.config.dataset.folder_name_repeats is False and back.config.dataset.repeats == 20


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
