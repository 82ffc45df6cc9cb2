"""Gradient accumulation trained for real on the tiny SD1.5: a step is one optimizer update."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from tests.trainer.helpers import new_run, of_type, train
from tests.trainer.test_resume_and_cache import _run_trainer
from trainer.contract.dataset_scan import scan_dataset
from trainer.contract.events import read_events
from trainer.contract.plan import plan_steps

pytestmark = pytest.mark.slow


@pytest.fixture
def one_image(tmp_path):
    """One captioned image: every batch holds the same picture, whatever the batch size or order."""
    from loratui.demo import write_dataset

    write_dataset(tmp_path / "one", count=1)
    return tmp_path / "one"


def _settings(batch: int, accumulation: int) -> dict:
    # fp32 files; no tag shuffling and no text-encoder training, so the captions' outputs are cached and
    # draw no random numbers (a batch draws its captions' shuffles before its images' flips, so shuffling
    # would give the same image another shuffle at batch 2 than accumulating batches of 1).
    return {"dataset": {"repeats": 4, "shuffle_captions": False}, "training": {"epochs": 2, "batch_size": batch,
                                                    "gradient_accumulation_steps": accumulation},
            "optimizer": {"name": "adamw", "unet_lr": 5e-3, "text_encoder_lr": 0.0},
            "output": {"save_precision": "fp32"}}


def test_accumulating_two_batches_of_one_trains_like_one_batch_of_two(tiny_sd15, one_image, make_config, tmp_path):
    # Four repeats: each epoch is two batches of 2, or two groups of two batches of 1. (With an odd count the
    # shuffled batches at batch 2 may put the short one first, where accumulation's short group is always
    # last; the other test covers short groups.) Each image's noise and timestep are drawn image by image
    # (trainer.noise), so both runs see the same noise for the same image in the same order.
    batched, batched_events, status = train(make_config(tiny_sd15, one_image, **_settings(2, 1)))
    assert status == 0
    accumulated, events, status = train(make_config(tiny_sd15, one_image, **_settings(1, 2)))
    assert status == 0
    steps, batched_steps = of_type(events, "step"), of_type(batched_events, "step")
    assert [s["step"] for s in steps] == [1, 2, 3, 4] == [s["step"] for s in batched_steps]
    # The reported loss is the mean over the accumulated batches: the batch's mean loss.
    assert [s["loss"] for s in steps] == pytest.approx([s["loss"] for s in batched_steps], rel=1e-5)
    # Tolerance: the runs differ only in float32 summation order (two backward passes added up against one
    # pass over a batch of two), about 1e-7 relative per operation. Adam turns each gradient into a step of
    # at most about the learning rate whatever its size, and for the weights whose gradient is near Adam's
    # eps (1e-8) such rounding can change the step by a visible fraction of it. So the bound is on the
    # step size: within 5% of one step (lr = 5e-3) after 4 updates; measured 5.0e-5, 1% of a step. The
    # same batches without accumulation (8 updates of one image) end about 9 steps away (0.043), so the
    # bound tells the two apart. (Adam also hides the scale of the gradient: the 1/N share of each batch
    # is checked in-process, with plain SGD, in test_noise_and_loss.)
    lr = 5e-3
    lora, reference = load_file(accumulated.final_lora("test")), load_file(batched.final_lora("test"))
    assert lora.keys() == reference.keys()
    worst = max(float((lora[k] - reference[k]).abs().max()) for k in lora)
    assert worst <= 0.05 * lr, worst
    unaccumulated, _, status = train(make_config(tiny_sd15, one_image, **_settings(1, 1)))
    assert status == 0
    other = load_file(unaccumulated.final_lora("test"))
    assert max(float((other[k] - reference[k]).abs().max()) for k in other) > 2 * lr


def test_the_step_count_is_the_plans_and_a_stopped_run_resumes_exactly(tiny_sd15, dataset, make_config):
    # 12 images, batch 2 → 6 batches an epoch; 4 per update → updates of 4 and 2 batches: 2 steps an epoch.
    config = make_config(tiny_sd15, dataset, training={"epochs": 3, "batch_size": 2, "gradient_accumulation_steps": 4},
                         dataset={"flip": True, "caption_dropout": 0.2})
    plan = plan_steps(scan_dataset(dataset, 1).images, 128, batch_size=2, epochs=3, accumulation=4)
    assert (plan.batches_per_epoch, plan.total_steps, plan.effective_batch) == (6, 6, 8)
    whole, whole_events, status = train(config)
    assert status == 0
    start = of_type(whole_events, "start")[0]
    assert (start["total_steps"], start["gradient_accumulation_steps"], start["formula_steps"]) == (6, 4, 4.5)
    assert [s["step"] for s in of_type(whole_events, "step")] == list(range(1, 7))
    assert whole_events[-1]["type"] == "done" and whole_events[-1]["step"] == plan.total_steps

    run = new_run(config)
    assert _run_trainer(run, stop_after_step=1) == 0
    stopped = read_events(run.events)[-1]
    assert stopped["type"] == "stopped" and 1 <= stopped["step"] < 6
    assert _run_trainer(run, "--resume") == 0
    events = read_events(run.events)
    steps = of_type(events, "step")
    assert [s["step"] for s in steps] == list(range(1, 7))
    assert [s["loss"] for s in steps] == pytest.approx([s["loss"] for s in of_type(whole_events, "step")], rel=1e-5)
    final, reference = load_file(run.final_lora("test")), load_file(whole.final_lora("test"))
    assert all(torch.equal(final[k], reference[k]) for k in final)


def test_updates_group_an_epochs_batches_from_its_start_and_the_last_group_may_be_short():
    from trainer.accumulate import ends_update, group_size

    # 7 batches, 3 per update: groups [0 1 2] [3 4 5] [6].
    assert [group_size(p, 7, 3) for p in range(7)] == [3, 3, 3, 3, 3, 3, 1]
    assert [p for p in range(7) if ends_update(p, 7, 3)] == [2, 5, 6]
    assert [p for p in range(4) if ends_update(p, 4, 1)] == [0, 1, 2, 3] and group_size(3, 4, 1) == 1


def test_two_processes_accumulate_and_step_together_as_planned(tiny_sd15, dataset, make_config):
    import os
    import subprocess

    from loratui.runs.launch import trainer_command

    # 12 images, batch 1: each of 2 processes takes 6 batches an epoch, 4 per update → updates of 4 and 2.
    config = make_config(tiny_sd15, dataset, training={"num_processes": 2, "epochs": 2, "batch_size": 1,
                                                       "gradient_accumulation_steps": 4},
                         optimizer={"name": "adamw", "unet_lr": 5e-3, "text_encoder_lr": 0.0})
    plan = plan_steps(scan_dataset(dataset, 1).images, 128, batch_size=1, epochs=2, accumulation=4, processes=2)
    assert (plan.total_steps, plan.effective_batch) == (4, 8)
    run = new_run(config)
    with open(run.log, "wb") as log:
        status = subprocess.run(trainer_command(run), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=run.root, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=400).returncode
    assert status == 0, run.log.read_text()[-4000:]
    events = read_events(run.events)
    (start,) = of_type(events, "start")
    assert start["total_steps"] == len(of_type(events, "step")) == events[-1]["step"] == plan.total_steps
    assert start["formula_steps"] == plan.formula_steps == 12 * 2 / 8
    weights = load_file(str(run.final_lora("test")))
    assert all(torch.isfinite(t).all() for t in weights.values())
    assert any(torch.count_nonzero(t) for k, t in weights.items() if "lora_up" in k)
