"""Every rule of the guide: a case where it fires and one where it stays quiet."""

from __future__ import annotations

from pathlib import Path

import pytest

from loratui.assess import estimate
from loratui.estimates import GpuInfo
from loratui.rules import RULES, Context, evaluate, worst
from tests.unit.lora_files import temporary_lora
from trainer.contract.dataset_scan import CaptionStats
from trainer.contract.config.schema import Config, validate, with_value
from trainer.contract.dataset_scan import DatasetImage, DatasetScan
from trainer.contract.plan import plan_steps
from trainer.contract.prediction import Resolved

ROOT = Path("/data/zkchar")


def make(images: int = 25, *, size=(1024, 1024), arch: str | None = "sdxl", folder: str | None = None,
         missing: int = 0, without_trigger: int = 0, gpu: GpuInfo | None = None, prediction: Resolved | None = None,
         tokens: tuple[int, ...] | None = None, suffix: str = ".png", **settings) -> Context:
    """A context for a dataset of ``images`` pictures and a config with ``section__key=value`` settings."""
    config = with_value(Config(), "dataset.trigger_word", "zkchar")
    config = with_value(config, "dataset.resolution", 1024 if arch == "sdxl" else 768)
    config = with_value(config, "training.epochs", 10)
    for key, value in settings.items():
        config = with_value(config, key.replace("__", "."), value)
    parent = ROOT / folder if folder else ROOT
    repeats = int(folder.split("_")[0]) if folder else config.dataset.repeats
    files = [DatasetImage(parent / f"{i:03d}{suffix}", parent / f"{i:03d}.txt", *size, repeats) for i in range(images)]
    scan = DatasetScan(ROOT, files)
    resolution = config.dataset.resolution or 1024
    plan = plan_steps(files, resolution, config.training.batch_size, config.training.epochs,
                      accumulation=config.training.gradient_accumulation_steps,
                      processes=config.training.num_processes) if files else None
    captions = CaptionStats(images, tuple(f.path for f in files[:missing]), (),
                            tuple(f.path for f in files[missing:missing + without_trigger]))
    estimates = estimate(config, arch, plan, [gpu] if gpu else []) if arch else None
    counted = tuple((f.caption_path, n) for f, n in zip(files, tokens)) if tokens is not None else None
    return Context(config, arch, scan, plan, captions, estimates, prediction, counted)


WEIGHTS = temporary_lora({"ss_unet_lr": "0.0001", "ss_learning_rate": "0.0002"})
"""A LoRA file trained at a UNet rate of 1e-4, to continue from."""
PONY_MODEL = "/models/ponyDiffusionV6XL.safetensors"

SMALL_GPU = GpuInfo("NVIDIA GeForce RTX 3060", 12288, 0)
TINY_GPU = GpuInfo("NVIDIA GeForce GTX 1060 6GB", 6144, 0)
BIG_GPU = GpuInfo("NVIDIA H100 80GB HBM3", 81559, 0)


def fired(context: Context, rule_id: str):
    return [f for f in evaluate(context) if f.rule == rule_id]


def test_the_proven_character_setup_is_quiet():
    # 25 images × 10 repeats × 10 epochs ÷ 4 = 630 steps, the guide's own example.
    assert evaluate(make(25)) == []


# Each case: (rule id, a context where it fires, the severity, a context where it does not).
CASES = {
    "dataset.size": [(make(3), "danger", make(25)), (make(7), "warn", make(25)), (make(12), "tip", make(25)),
                     (make(60), "tip", make(25)), (make(17), "tip", make(25)),
                     (make(30, kind="style"), "warn", make(120, kind="style")),
                     (make(300, kind="style", dataset__repeats=1, training__epochs=2), "tip",
                      make(120, kind="style", dataset__repeats=2, training__epochs=2))],
    "captions.missing": [(make(25, missing=3), "warn", make(25)), (make(25, missing=25), "danger", make(25))],
    "captions.trigger_missing": [(make(25, without_trigger=4), "tip", make(25))],
    "captions.no_trigger_word": [(make(25, dataset__trigger_word=""), "warn",
                                  make(25, dataset__trigger_word="", kind="style"))],
    "dataset.small_images": [(make(25, size=(512, 512)), "tip", make(25))],
    "steps.range": [(make(25, training__epochs=2), "danger", make(25)),
                    (make(25, training__epochs=40), "danger", make(25)),
                    (make(25, dataset__repeats=9, training__epochs=4), "warn", make(25)),
                    (make(25, training__epochs=14), "tip", make(25)),
                    (make(12, dataset__repeats=20, training__epochs=10, training__batch_size=4), "warn",
                     make(12, dataset__repeats=20, training__epochs=15, training__batch_size=4)),
                    (make(12, dataset__repeats=20, training__epochs=15, training__batch_size=2), "tip",
                     make(12, dataset__repeats=20, training__epochs=15, training__batch_size=4)),
                    # 630 batches are 158 updates at 4 accumulated: the guide's steps count updates.
                    (make(25, training__gradient_accumulation_steps=4), "danger",
                     make(25, training__batch_size=2, training__gradient_accumulation_steps=2))],
    "epochs.high_lr": [(make(5, training__epochs=30), "warn", make(5, training__epochs=30, optimizer__unet_lr=3e-4))],
    "batch.too_big": [(make(25, training__batch_size=12), "danger", make(25, training__batch_size=8)),
                      (make(25, training__gradient_accumulation_steps=4), "danger",
                       make(25, training__batch_size=2, training__gradient_accumulation_steps=2)),
                      (make(25, training__batch_size=2, training__num_processes=8), "danger",
                       make(25, training__batch_size=2, training__num_processes=4))],
    "batch.fused_needs_one": [(make(25, training__fused_backward_pass=True), "danger",
                               make(25, training__fused_backward_pass=True, training__batch_size=1))],
    "lr.unet_too_high": [(make(25, optimizer__unet_lr=2e-3), "danger", make(25, optimizer__unet_lr=1e-3))],
    "lr.text_encoder_too_high": [(make(25, optimizer__text_encoder_lr=5e-3), "danger", make(25))],
    "lr.text_encoder_vs_unet": [(make(25, optimizer__text_encoder_lr=5e-4), "warn", make(25)),
                                (make(25, optimizer__text_encoder_lr=3e-4), "tip",
                                 make(25, optimizer__text_encoder_lr=0.0))],
    "lr.style_gentle": [(make(80, kind="style", network__type="locon"), "tip",
                         make(80, kind="style", optimizer__unet_lr=3e-4, optimizer__text_encoder_lr=5e-5))],
    "lr.free_optimizer_small_lr": [(make(25, optimizer__name="prodigy"), "danger",
                                    make(25, optimizer__name="prodigy", optimizer__unet_lr=1.0,
                                         optimizer__text_encoder_lr=1.0))],
    "network.proven_dim_alpha": [(make(25, network__dim=32, network__alpha=16.0), "tip",
                                  make(80, kind="style", network__dim=32, network__alpha=16.0))],
    "network.alpha_above_dim": [(make(25, network__alpha=16.0), "warn", make(25))],
    "network.style_locon": [(make(100, kind="style"), "tip", make(100, kind="style", network__type="locon"))],
    "resolution.architecture": [(make(25, dataset__resolution=768), "warn", make(25)),
                                (make(25, arch="sd15", dataset__resolution=1024), "warn", make(25, arch="sd15")),
                                (make(25, arch="sd15", dataset__resolution=512, size=(768, 768)), "tip",
                                 make(25, arch="sd15", size=(768, 768)))],
    "tiny.repeats": [(make(12), "warn", make(12, dataset__repeats=20))],
    "tiny.epochs": [(make(12), "warn", make(12, training__epochs=15))],
    "tiny.batch": [(make(12), "warn", make(12, training__batch_size=2)),
                   (make(12, training__batch_size=1, training__gradient_accumulation_steps=4), "warn",
                    make(12, training__batch_size=1, training__gradient_accumulation_steps=2))],
    "tiny.unet_lr": [(make(12), "warn", make(12, optimizer__unet_lr=3e-4))],
    "tiny.text_encoder_lr": [(make(12), "warn", make(12, optimizer__text_encoder_lr=5e-5))],
    "compat.schedule_free_needs_constant": [(make(25, optimizer__name="prodigy_plus", optimizer__unet_lr=1.0,
                                                  optimizer__text_encoder_lr=1.0), "danger",
                                             make(25, optimizer__name="prodigy_plus", optimizer__unet_lr=1.0,
                                                  optimizer__text_encoder_lr=1.0, scheduler__name="constant"))],
    "network.boft_rank": [(make(25, network__type="boft", model__base="org/model"), "danger",
                           make(25, network__type="boft", network__dim=16, model__base="org/model"))],
    "network.loaders": [(make(25, network__type="ia3"), "warn", make(25, network__type="locon")),
                        (make(25, network__type="boft", network__dim=16), "tip", make(25, network__type="glora"))],
    "captions.token_window": [(make(25, tokens=(40,) * 20 + (90,) * 5), "warn", make(25, tokens=(40,) * 25)),
                              (make(25, tokens=(40,) * 24 + (200,)), "warn",
                               make(25, tokens=(40,) * 24 + (200,), dataset__max_token_length=225)),
                              (make(25, tokens=(40,) * 24 + (300,)), "warn", make(25))],
    "model.zero_terminal_snr_epsilon": [(make(25, prediction=Resolved("epsilon", True, "set"),
                                              model__zero_terminal_snr=True), "danger",
                                         make(25, prediction=Resolved("v_prediction", True, "read")))],
    "model.vae_family": [(make(25, arch="sd15", model__vae="/vaes/sdxl_vae.safetensors"), "warn",
                          make(25, arch="sd15", model__vae="/vaes/vae-ft-mse-840000-ema-pruned.safetensors")),
                         (make(25, model__vae="/vaes/vae-ft-mse-840000-ema-pruned.safetensors"), "warn",
                          make(25, model__vae="/vaes/sdxl_vae_fp16_fix.safetensors"))],
    "compat.rex_with_came": [(make(25, scheduler__name="rex"), "tip",
                              make(25, scheduler__name="rex", optimizer__name="came"))],
    "compat.restarts_without_cycles": [(make(25, scheduler__restarts=1), "tip", make(25))],
    "output.file_size": [(make(25, network__dim=32, network__alpha=16.0), "warn", make(25)),
                         (make(25, arch="sd15", network__dim=4, network__alpha=2.0), "tip", make(25, arch="sd15"))],
    "continue.not_resume": [(make(25, network__weights="/loras/first.safetensors"), "tip", make(25))],
    "continue.rate_restart": [(make(25, network__weights=WEIGHTS), "warn",
                               make(25, network__weights=WEIGHTS, optimizer__unet_lr=1e-4))],
    "continue.dim_without_weights": [(make(25, network__dim_from_weights=True), "tip",
                                      make(25, network__dim_from_weights=True, network__weights=WEIGHTS))],
    "reg.weight_without_folder": [(make(25, training__prior_loss_weight=0.5), "tip",
                                   make(25, training__prior_loss_weight=0.5, dataset__reg_path="/data/reg"))],
    "validation.schedule_without_split": [(make(25, training__validate_every_n_steps=100), "tip",
                                           make(25, training__validate_every_n_steps=100,
                                                training__validation_split=0.1))],
    "reg.weight_high": [(make(25, dataset__reg_path="/data/reg", training__prior_loss_weight=2.0), "warn",
                         make(25, dataset__reg_path="/data/reg"))],
    "reg.weight_zero": [(make(25, dataset__reg_path="/data/reg", training__prior_loss_weight=0.0), "warn",
                         make(25, training__prior_loss_weight=0.0))],
    "reg.style": [(make(80, kind="style", network__type="locon", dataset__reg_path="/data/reg"), "tip",
                   make(80, dataset__reg_path="/data/reg"))],
    "masks.alpha": [(make(25, suffix=".jpg", dataset__masked_loss=True), "warn",
                     make(25, suffix=".jpg", dataset__masked_loss=True, dataset__mask_path="/data/masks")),
                    (make(25, dataset__masked_loss=True), "tip", make(25))],
    "masks.path_unused": [(make(25, dataset__mask_path="/data/masks"), "tip",
                           make(25, dataset__mask_path="/data/masks", dataset__masked_loss=True))],
    "validation.too_few_left": [(make(16, training__validation_split=0.1), "warn",
                                 make(25, training__validation_split=0.1)),
                                (make(12, training__validation_split=0.1), "warn", make(12))],
    "validation.large_share": [(make(25, training__validation_split=0.3), "warn",
                                make(25, training__validation_split=0.2))],
    "noise.multires_discount": [(make(25, training__multires_noise_iterations=6, training__multires_noise_discount=0.9),
                                 "warn", make(25, training__multires_noise_iterations=6)),
                                (make(25, training__multires_noise_iterations=6, training__multires_noise_discount=0.05),
                                 "warn", make(25, training__multires_noise_discount=0.05))],
    "noise.multires_iterations": [(make(25, training__multires_noise_iterations=16), "warn",
                                   make(25, training__multires_noise_iterations=10))],
    "noise.ip_gamma": [(make(25, training__ip_noise_gamma=0.5), "warn", make(25, training__ip_noise_gamma=0.1))],
    "noise.offset_with_multires": [(make(25, training__noise_offset=0.0357, training__multires_noise_iterations=6),
                                    "warn", make(25, training__noise_offset=0.0357))],
    "noise.timestep_range": [(make(25, training__min_timestep=200, training__max_timestep=600), "warn",
                              make(25, training__min_timestep=200))],
    "loss.debiased_with_min_snr": [(make(25, training__debiased_estimation=True, training__min_snr_gamma=5.0), "warn",
                                    make(25, training__debiased_estimation=True))],
    "loss.huber_c": [(make(25, training__loss_type="huber", training__huber_c=5.0), "warn",
                      make(25, training__huber_c=5.0)),
                     (make(25, training__loss_type="smooth_l1", training__huber_c=0.001), "warn",
                      make(25, training__loss_type="smooth_l1"))],
    "samples.family_prompts": [(make(25, model__base=PONY_MODEL), "tip",
                                make(25, model__base=PONY_MODEL, output__sample_negative_prompt="score_4, blurry",
                                     output__sample_prompts=["score_9, score_8_up, zkchar standing"])),
                               (make(25, model__base="/models/illustriousXL_v01.safetensors",
                                     output__sample_prompts=["zkchar standing --n lowres"]), "tip",
                                make(25, model__base="/models/sd_xl_base_1.0.safetensors"))],
    "samples.too_often": [(make(25, output__sample_every_n_steps=10), "warn", make(25, output__sample_every_n_steps=50))],
    "output.saves_too_many": [(make(25, output__save_every_n_steps=10), "warn", make(25, output__save_every_n_steps=50))],
    "memory.fit": [(make(25, gpu=SMALL_GPU, training__batch_size=4, optimizer__name="adamw"), "danger",
                    make(25, gpu=BIG_GPU, training__batch_size=4, optimizer__name="adamw")),
                   (make(25, gpu=TINY_GPU), "danger", make(25))],
}


def test_every_rule_has_cases():
    assert sorted(CASES) == sorted(r.id for r in RULES)


@pytest.mark.parametrize("rule_id,index", [(rule, i) for rule, cases in CASES.items() for i in range(len(cases))])
def test_rule_fires_and_stays_quiet(rule_id, index):
    firing, severity, quiet = CASES[rule_id][index]
    found = fired(firing, rule_id)
    assert [f.severity for f in found] == [severity]
    assert fired(quiet, rule_id) == []
    finding = found[0]
    assert finding.field and len(finding.message) > 20


@pytest.mark.parametrize("rule_id,index", [(rule, i) for rule, cases in CASES.items() for i in range(len(cases))])
def test_a_fix_resolves_its_finding_and_is_a_valid_config(rule_id, index):
    firing = CASES[rule_id][index][0]
    finding = fired(firing, rule_id)[0]
    if finding.fix is None:
        return
    fixed = finding.fix.apply(firing.config)
    assert fixed != firing.config
    hard = [p for p in validate(fixed) if p.field not in ("model.base", "dataset.path")]
    # Fixes never produce impossible values (later-version options aside, which their tests set on purpose).
    assert all(p.field in ("training.fused_backward_pass", "optimizer.name", "scheduler.name") for p in hard), hard
    gpu = firing.estimates.gpu if firing.estimates else None
    again = make(firing.image_count, arch=firing.arch, size=(firing.scan.images[0].width, firing.scan.images[0].height),
                 kind=fixed.kind, gpu=gpu,
                 tokens=tuple(n for _, n in firing.caption_tokens) if firing.caption_tokens else None,
                 **{k.replace(".", "__"): v for k, v in _changed(fixed).items()})
    # What remains is at most a tip (a tiny dataset's plan may sit above the guide's aim, as its own example does);
    # a tip's fix may only get as near as the ranges allow, and then nothing nearer is offered.
    left = [f for f in fired(again, rule_id) if f.severity != "tip" or (finding.severity == "tip" and f.fix)]
    assert left == [], (finding.fix, fired(again, rule_id))


def _changed(config: Config) -> dict:
    from trainer.contract.config.schema import FIELDS, get_value

    base = make(1).config
    return {k: get_value(config, k) for k in FIELDS if "." in k and get_value(config, k) != get_value(base, k)
            and k != "dataset.path"}


def test_findings_come_dangers_first_and_worst_says_so():
    findings = evaluate(make(12, optimizer__unet_lr=5e-3))
    severities = [f.severity for f in findings]
    assert severities == sorted(severities, key=["danger", "warn", "tip"].index)
    assert worst(findings) == "danger"
    assert worst([]) is None


def test_json_form():
    finding = fired(make(25, training__batch_size=12), "batch.too_big")[0]
    assert finding.to_json() == {"rule": "batch.too_big", "severity": "danger", "field": "training.batch_size",
                                 "message": finding.message,
                                 "fix": {"set": {"training.batch_size": 4}, "label": "set the batch size to 4"}}


def test_steps_fix_prefers_epochs_and_lands_in_the_aim():
    context = make(25, training__epochs=2)
    fix = fired(context, "steps.range")[0].fix
    assert list(fix.changes) == ["training.epochs"]
    epochs = fix.changes["training.epochs"]
    assert 500 <= context.plan.batches_per_epoch * epochs <= 750


def test_repeat_folders_are_counted_in_the_tiny_rules():
    # 12 images in a 20_zkchar folder have 20 repeats even though dataset.repeats says 10.
    assert fired(make(12, folder="20_zkchar"), "tiny.repeats") == []


def _kohya(folders: dict[str, int], loose: int = 0, config: Config | None = None) -> Context:
    """A tiny dataset in kohya repeat folders (name → images), plus ``loose`` images at the top, with the
    repeats the scan gives them under ``config`` (its dataset.folder_name_repeats)."""
    config = config or make(1).config
    by_name = config.dataset.folder_name_repeats
    files = [DatasetImage(ROOT / name / f"{name}-{i}.png", ROOT / name / f"{name}-{i}.txt", 1024, 1024,
                          int(name.split("_")[0]) if by_name else config.dataset.repeats)
             for name, count in folders.items() for i in range(count)]
    files += [DatasetImage(ROOT / f"{i}.png", ROOT / f"{i}.txt", 1024, 1024, config.dataset.repeats)
              for i in range(loose)]
    plan = plan_steps(files, 1024, config.training.batch_size, config.training.epochs)
    return Context(config, "sdxl", DatasetScan(ROOT, files), plan, None, None)


@pytest.mark.parametrize("loose", [0, 6])
def test_repeats_from_kohya_folders_are_named_and_fixed_by_a_setting_the_scan_honours(loose):
    folders = {"5_zkchar": 10 - loose, "2_extra": 2}
    (finding,) = fired(_kohya(folders, loose), "tiny.repeats")
    assert f"5_zkchar: {10 - loose} images" in finding.message and "2_extra: 2 images" in finding.message
    assert "on average" in finding.message
    # dataset.repeats alone reaches none of the folders' images: the fix also turns their names' repeats off.
    changes = finding.fix.changes
    repeats = changes["dataset.repeats"]
    assert changes["dataset.folder_name_repeats"] is False and 15 <= repeats <= 25
    # The renames that would keep per-folder weights instead are named with the same count.
    assert f"5_zkchar → {repeats}_zkchar" in finding.message and f"2_extra → {repeats}_extra" in finding.message
    fixed = _kohya(folders, loose, finding.fix.apply(make(1).config))
    assert {image.repeats for image in fixed.scan.images} == {repeats}
    assert fired(fixed, "tiny.repeats") == []


def test_repeats_from_kohya_folders_in_range_are_left_to_the_folders():
    context = _kohya({"20_zkchar": 12})
    assert fired(context, "tiny.repeats") == []
    for finding in evaluate(context):
        assert "dataset.folder_name_repeats" not in (finding.fix.changes if finding.fix else {}), finding
