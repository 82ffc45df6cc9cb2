"""Export to sd-scripts and import from sd-scripts / LoRA_Easy_Training_Scripts (loratui.interop).

The round-trip tests generate configs over every network type, optimizer and scheduler (and random
mixes of every other setting), export each one, import the files back and check that what comes
back equals what went out, except for settings the export named as not carried over.
"""

from __future__ import annotations

import ast
import random
import sys
from pathlib import Path

import pytest
from PIL import Image

from loratui.interop import export_sdscripts, import_file
from loratui.interop.importers import SD_SCRIPTS, parse_prompt_line
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


def test_tables_agree_with_the_trainer():
    assert CAME_BETAS == _constant("trainer/optim.py", "CAME_BETAS")
    assert GUIDANCE_SCALE == _constant("trainer/sampling.py", "GUIDANCE_SCALE")
    assert LYCORIS_ALGOS == _constant("trainer/networks/lycoris_net.py", "ALGORITHMS")
    assert set(CONV_TYPES) == set(_constant("trainer/networks/lycoris_net.py", "CONV_TYPES"))
    for resolution in (128, 256, 512, 768, 1024, 1536):
        sides = [side for bucket in bucket_candidates(resolution) for side in bucket]
        assert bucket_range(resolution) == (min(sides), max(sides))


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
