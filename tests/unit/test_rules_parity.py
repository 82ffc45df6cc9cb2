"""The advice about the options of issue #18, beyond each rule's fire/quiet case in test_rules.py:
updates and the effective batch, a continued file's rate, the model families, masks and samples."""

from __future__ import annotations

import math

import pytest

from loratui.estimates import GpuInfo
from loratui.rules import evaluate
from loratui.rules.families import ILLUSTRIOUS, NOOBAI, PONY, family_of
from loratui.rules.updates import effective_batch, total_updates
from loratui.rules.weights_file import trained_rate
from tests.unit.lora_files import temporary_lora
from tests.unit.test_rules import fired, make


@pytest.mark.parametrize("batch,accumulate", [(1, 2), (1, 4), (2, 2), (1, 8), (2, 4)])
def test_the_step_count_counts_updates_and_its_fix_lands_them_in_the_aim(batch, accumulate):
    context = make(25, training__batch_size=batch, training__gradient_accumulation_steps=accumulate,
                   training__epochs=3)
    assert total_updates(context) == math.ceil(context.plan.batches_per_epoch / accumulate) * 3
    (finding,) = fired(context, "steps.range")
    fixed = make(25, training__batch_size=batch, training__gradient_accumulation_steps=accumulate,
                 **{key.replace(".", "__"): value for key, value in finding.fix.changes.items()})
    assert 500 <= total_updates(fixed) <= 750, finding.fix


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 6, 8, 12, 16])
@pytest.mark.parametrize("accumulate", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("processes", [1, 2, 4, 8, 16])
def test_the_batch_fix_brings_the_effective_batch_to_the_guide_and_never_raises_the_batch(batch, accumulate, processes):
    context = make(25, training__batch_size=batch, training__gradient_accumulation_steps=accumulate,
                   training__num_processes=processes)
    found = fired(context, "batch.too_big")
    assert bool(found) == (batch * accumulate * processes > 8)
    if not found:
        return
    fix = found[0].fix
    if fix is None:
        assert processes > 8  # only more processes than the guide's batch leave nothing to change
        return
    after = make(25, **{key.replace(".", "__"): value for key, value in
                        {"training.batch_size": batch, "training.gradient_accumulation_steps": accumulate,
                         "training.num_processes": processes, **fix.changes}.items()})
    assert effective_batch(after) <= 8 and after.config.training.batch_size <= batch
    if batch * processes <= 4:
        assert effective_batch(after) == 4 // (batch * processes) * batch * processes  # accumulated up to 4


@pytest.mark.parametrize("batch,accumulate", [(1, 4), (2, 2), (4, 1), (4, 4), (1, 2)])
def test_a_tiny_dataset_fix_keeps_the_effective_batch_at_two_or_less(batch, accumulate):
    context = make(12, training__batch_size=batch, training__gradient_accumulation_steps=accumulate)
    found = fired(context, "tiny.batch")
    assert bool(found) == (batch * accumulate > 2)
    if found:
        after = make(12, **{key.replace(".", "__"): value for key, value in
                            {"training.batch_size": batch, "training.gradient_accumulation_steps": accumulate,
                             **found[0].fix.changes}.items()})
        assert effective_batch(after) <= 2 and fired(after, "tiny.batch") == []


def test_a_continued_file_caps_every_fix_of_the_unet_rate():
    weights = temporary_lora({"ss_learning_rate": "0.0001"})  # sd-scripts' general rate, when no UNet rate is set
    assert trained_rate(weights) == 1e-4
    context = make(25, network__weights=weights, optimizer__unet_lr=2e-3)
    offered = {f.rule: f.fix.changes["optimizer.unet_lr"] for f in evaluate(context)
               if f.fix and "optimizer.unet_lr" in f.fix.changes}
    assert offered == {"lr.unet_too_high": 1e-4, "continue.rate_restart": 1e-4}
    assert "1e-4 is the rate the continued file was trained at" in fired(context, "lr.unet_too_high")[0].message
    fixed = make(25, network__weights=weights, optimizer__unet_lr=1e-4)
    assert fired(fixed, "lr.unet_too_high") == [] and fired(fixed, "continue.rate_restart") == []


def test_a_weights_file_that_says_nothing_or_is_no_safetensors_gives_no_rate(tmp_path):
    assert trained_rate(temporary_lora({})) is None
    broken = tmp_path / "model.ckpt"
    broken.write_bytes(b"\x80\x02not a safetensors file")
    assert trained_rate(str(broken)) is None
    assert trained_rate(str(tmp_path / "missing.safetensors")) is None
    assert fired(make(25, network__weights=str(broken)), "continue.rate_restart") == []


@pytest.mark.parametrize("model,family", [
    ("/models/ponyDiffusionV6XL_v6StartWithThisOne.safetensors", PONY),
    ("/models/illustriousXL_v01.safetensors", ILLUSTRIOUS),
    ("OnomaAIResearch/Illustrious-xl-early-release-v0", ILLUSTRIOUS),
    ("Laxhar/noobai-XL-1.1", NOOBAI),
    ("/models/noobaiXLNAIXL_vPred10Version.safetensors", NOOBAI),
    ("/models/pony/sd_xl_base_1.0.safetensors", None),  # a folder's name says nothing about the model in it
    ("stabilityai/stable-diffusion-xl-base-1.0", None),
])
def test_the_model_family_is_told_by_the_model_name(model, family):
    assert family_of(model) is family


def test_a_negative_prompt_in_every_sample_prompt_counts_and_the_tags_are_asked_for():
    pony = "/models/ponyDiffusionV6XL.safetensors"
    (finding,) = fired(make(25, model__base=pony, output__sample_prompts=["zkchar --n lowres", "zkchar sitting"]),
                       "samples.family_prompts")
    assert finding.fix.changes == {"output.sample_negative_prompt": PONY.negative}  # one prompt lacks its own
    (finding,) = fired(make(25, model__base=pony, output__sample_prompts=["zkchar --n lowres"]),
                       "samples.family_prompts")
    assert finding.fix is None and "score_9" in finding.message


def test_a_dataset_of_both_formats_names_the_images_that_cannot_be_masked():
    context = make(25, dataset__masked_loss=True)
    jpegs = [image.path.with_suffix(".jpg") for image in context.scan.images[:5]]
    for index, path in enumerate(jpegs):
        context.scan.images[index] = type(context.scan.images[index])(path, None, 1024, 1024, 10)
    (finding,) = fired(context, "masks.alpha")
    assert finding.severity == "tip" and finding.message.startswith("5 of 25 images cannot carry an alpha channel")


def test_short_memory_lowers_the_batch_and_accumulates_so_the_run_trains_the_same():
    gpu = GpuInfo("NVIDIA GeForce RTX 3080", 10240, 0)
    context = make(25, gpu=gpu)  # SDXL at batch 4 does not fit in 10 GB
    (finding,) = fired(context, "memory.fit")
    assert finding.fix.changes["training.batch_size"] == 1
    assert finding.fix.changes["training.gradient_accumulation_steps"] == 4  # the guide's batch 4, as 1 × 4
    fixed = make(25, gpu=gpu, **{key.replace(".", "__"): value for key, value in finding.fix.changes.items()})
    assert fired(fixed, "memory.fit") == [] and effective_batch(fixed) == 4
    assert total_updates(fixed) == total_updates(context)  # the same updates over the same images
    assert [f for f in evaluate(fixed) if f.rule.startswith(("batch.", "steps."))] == []
