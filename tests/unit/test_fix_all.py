"""Applying every fix at once: over thousands of random configs and dataset shapes, one application
leaves no danger or warning that a fix could remove without raising another danger, a second changes
nothing, no danger is created, and every fixed config is valid."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from loratui.assess import estimate
from loratui.estimates import GpuInfo
from loratui.rules import Context, evaluate
from loratui.rules.fix_all import APPLIED_SEVERITIES, apply_every_fix
from trainer.contract.config.schema import FIELDS, Config, effective_resolution, validate, with_value
from trainer.contract.dataset_scan import CaptionStats, DatasetImage, DatasetScan
from trainer.contract.plan import plan_steps
from trainer.contract.validation_split import split_images
from tests.unit.lora_files import temporary_lora

ROOT = Path("/data/set")
WEIGHTS = temporary_lora({"ss_unet_lr": "0.0003"})
"""A LoRA file to continue from, trained at 3e-4."""
GPUS = [None, GpuInfo("NVIDIA GeForce GTX 1060 6GB", 6144, 0), GpuInfo("NVIDIA GeForce RTX 3060", 12288, 0),
        GpuInfo("NVIDIA GeForce RTX 4090", 24564, 0), GpuInfo("NVIDIA H100 80GB HBM3", 81559, 0)]
# Settings the advice looks at, with values people actually type (and some they should not).
CHOICES = {
    "kind": ["character", "style", "concept"],
    "dataset.repeats": [1, 2, 4, 5, 10, 15, 20, 25, 40, 100],
    "dataset.resolution": [0, 512, 640, 768, 1024, 1280],
    "training.epochs": [1, 2, 5, 8, 10, 15, 20, 30, 60],
    "training.batch_size": [1, 2, 3, 4, 6, 8, 12, 16],
    "optimizer.name": ["adamw", "adamw8bit", "came", "adafactor", "prodigy", "prodigy_plus"],
    "optimizer.unet_lr": [1.0, 1e-2, 2e-3, 1e-3, 5e-4, 3e-4, 1e-4, 1e-5],
    "optimizer.text_encoder_lr": [0.0, 1.0, 1e-3, 1e-4, 5e-5, 1e-5],
    "scheduler.name": ["constant", "linear", "cosine", "cosine_with_restarts", "rex"],
    "scheduler.restarts": [1, 2, 3, 4],
    "network.type": ["lora", "locon", "loha", "lokr", "ia3", "boft", "glora"],
    "network.dim": [1, 4, 8, 16, 32, 64, 128],
    "network.alpha": [1.0, 2.0, 4.0, 8.0, 16.0, 64.0],
    "training.mixed_precision": ["no", "fp16", "bf16"],
    "training.gradient_checkpointing": [False, True],
    "training.fused_backward_pass": [False, True],
    "training.min_snr_gamma": [0.0, 5.0],
    "dataset.bucket_upscale": [False, True],
    "dataset.folder_name_repeats": [True, True, False],
    # The options of issue #18: gradient accumulation, regularization, masks, validation, noise and loss, samples.
    "training.gradient_accumulation_steps": [1, 1, 2, 4, 8],
    "training.num_processes": [1, 1, 2, 4],
    "network.weights": ["", "", WEIGHTS],
    "network.dim_from_weights": [False, True],
    "training.validate_every_n_steps": [0, 0, 100],
    "dataset.reg_path": ["", "/data/reg"],
    "training.prior_loss_weight": [0.0, 0.5, 1.0, 2.0],
    "dataset.masked_loss": [False, True],
    "dataset.mask_path": ["", "/data/masks"],
    "training.validation_split": [0.0, 0.05, 0.1, 0.2, 0.3, 0.5],
    "training.multires_noise_iterations": [0, 6, 10, 16],
    "training.multires_noise_discount": [0.05, 0.3, 0.8, 0.9],
    "training.ip_noise_gamma": [0.0, 0.1, 0.5],
    "training.noise_offset": [0.0, 0.0357, 0.1],
    "training.min_timestep": [0, 200, 500],
    "training.max_timestep": [1000, 800, 600],
    "training.debiased_estimation": [False, True],
    "training.loss_type": ["l2", "huber", "smooth_l1"],
    "training.huber_c": [0.001, 0.1, 5.0],
    "output.sample_every_n_steps": [0, 10, 50, 200],
    "output.save_every_n_steps": [0, 10, 50, 200],
    "output.sample_negative_prompt": ["", "lowres"],
    "output.sample_prompts": [[], ["zkchar standing"], ["score_9, zkchar --n lowres"]],
}
BASES = ["org/model", "org/model", "/models/ponyDiffusionV6XL.safetensors", "/models/illustriousXL_v01.safetensors"]
"""Base models: the families whose samples have their own conventions are told by name."""


@dataclass(frozen=True)
class Dataset:
    """A dataset's shape: how many images, how large, in which kohya folders, with what captions."""

    images: int
    size: tuple[int, int]
    folder: str | None
    missing: int
    untriggered: int
    arch: str
    gpu: GpuInfo | None
    suffix: str = ".png"
    """The images' format (JPEG cannot carry the alpha channel masked loss reads)."""


def context_for(dataset: Dataset, config: Config) -> Context:
    """What the app's assessment hands the rules, for this dataset and config (as ``loratui.assess`` does)."""
    parent = ROOT / dataset.folder if dataset.folder else ROOT
    folder_repeats = dataset.folder and config.dataset.folder_name_repeats
    repeats = int(dataset.folder.split("_")[0]) if folder_repeats else config.dataset.repeats
    files = [DatasetImage(parent / f"{i}{dataset.suffix}", parent / f"{i}.txt", *dataset.size, repeats)
             for i in range(dataset.images)]
    plan = None
    counts_valid = min(config.training.batch_size, config.training.epochs, config.dataset.repeats) >= 1 \
        and config.dataset.resolution % 64 == 0
    if files and counts_valid:
        # As the app plans (loratui.assess): the images the validation split leaves, updates counted.
        training, _ = split_images(files, config.training.validation_split, config.training.validation_seed)
        plan = plan_steps(training, effective_resolution(config, dataset.arch), config.training.batch_size,
                          config.training.epochs, config.dataset.buckets, config.dataset.bucket_upscale,
                          accumulation=config.training.gradient_accumulation_steps,
                          processes=config.training.num_processes)
    estimates = None if validate(config) else estimate(config, dataset.arch, plan,
                                                        [dataset.gpu] if dataset.gpu else [], image_count=len(files))
    captions = CaptionStats(dataset.images, tuple(f.path for f in files[:dataset.missing]), (),
                            tuple(f.path for f in files[dataset.missing:dataset.missing + dataset.untriggered]))
    return Context(config, dataset.arch, DatasetScan(ROOT, files), plan, captions, estimates)


def random_case(rng: random.Random) -> tuple[Dataset, Config]:
    count = rng.choice([3, 5, 7, 9, 10, 12, 14, 15, 16, 20, 25, 30, 40, 60, 80, 150])
    folder = rng.choice([None, None, f"{rng.choice([1, 2, 5, 10, 20])}_subject"])
    dataset = Dataset(count, rng.choice([(512, 512), (1024, 1024), (832, 1216), (128, 128), (2048, 1536)]), folder,
                      rng.randint(0, count // 3), rng.randint(0, count // 3), rng.choice(["sd15", "sdxl"]),
                      rng.choice(GPUS), rng.choice([".png", ".png", ".jpg"]))
    config = with_value(with_value(Config(), "model.base", rng.choice(BASES)), "dataset.path", str(ROOT))
    config = with_value(config, "dataset.trigger_word", "zkchar")
    for key in rng.sample(sorted(CHOICES), rng.randint(0, len(CHOICES))):
        config = with_value(config, key, rng.choice(CHOICES[key]))
    return dataset, config


def _fixable(config: Config, findings, dataset: Dataset) -> list:
    """Dangers and warnings whose fix would change the config without raising a new danger."""
    dangers = {f.rule for f in findings if f.severity == "danger"}
    return [f for f in findings if f.severity in APPLIED_SEVERITIES and f.fix is not None
            and f.fix.apply(config) != config
            and not {g.rule for g in evaluate(context_for(dataset, f.fix.apply(config)))
                     if g.severity == "danger"} - dangers]


CASES = int(os.environ.get("LORATUI_FIX_ALL_CASES", "1200"))
"""Random cases per run (the suite's time budget); set LORATUI_FIX_ALL_CASES higher for a deeper search."""


@pytest.mark.parametrize("chunk", range(6))
def test_applying_every_fix_converges_at_once_and_stays(chunk):
    rng = random.Random(chunk)
    checked = 0
    while checked < CASES // 6:
        dataset, config = random_case(rng)
        if validate(config):
            continue  # impossible values are refused before any advice is given
        checked += 1
        before = evaluate(context_for(dataset, config))
        plan = apply_every_fix(config, lambda c: evaluate(context_for(dataset, c)))
        case = (dataset, {k: v for k, v in _diff(config).items()}, [f.rule for f in plan.applied])
        assert validate(plan.config) == [], case
        assert _fixable(plan.config, plan.remaining, dataset) == [], (case, [(f.rule, f.fix) for f in plan.remaining])
        again = apply_every_fix(plan.config, lambda c: evaluate(context_for(dataset, c)))
        assert not again.changed, case
        new_dangers = {f.rule for f in plan.remaining if f.severity == "danger"} - \
            {f.rule for f in before if f.severity == "danger"}
        assert new_dangers == set(), case


def _diff(config: Config) -> dict:
    from trainer.contract.config.schema import get_value

    base = Config()
    return {k: get_value(config, k) for k in FIELDS if get_value(config, k) != get_value(base, k)}
