"""Optimizers, schedules and the fused backward pass, on the tiny SD1.5 model.

Runs train in a child process as the app starts them (64 px, a handful of steps). The config
checks and the schedule's curve are plain unit tests beside them.
"""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file

from tests.trainer.helpers import of_type, train
from trainer.contract.config.schema import Config, validate, with_value

FAST = {"dataset": {"resolution": 64}}


def _config(make_config, model, dataset, **sections):
    merged = {key: dict(values) for key, values in FAST.items()}
    for section, values in sections.items():
        merged.setdefault(section, {}).update(values)
    return make_config(model, dataset, **merged)


def _fields(config: Config, **changes) -> set[str]:
    for key, value in changes.items():
        config = with_value(config, key.replace("__", "."), value)
    return {p.field for p in validate(config)}


RATES = {"adamw": 1e-3, "adamw8bit": 1e-3, "came": 2e-4, "adafactor": 1e-3, "prodigy": 1.0, "prodigy_plus": 1.0}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RATES))
def test_every_optimizer_trains_and_saves(name, tiny_sd15, dataset, make_config):
    lr = RATES[name]
    config = _config(make_config, tiny_sd15, dataset, optimizer={"name": name, "unet_lr": lr, "text_encoder_lr": lr},
                     output={"save_precision": "fp32"})
    run, events, status = train(config)
    assert status == 0, run.log.read_text()[-3000:]
    losses = [e["loss"] for e in of_type(events, "step")]
    assert len(losses) == 6 and all(math.isfinite(v) for v in losses)
    tensors = load_file(run.final_lora("test"))
    ups = [v for k, v in tensors.items() if k.endswith("lora_up.weight")]
    # lora_up starts at zero: a non-zero one shows the optimizer moved the weights.
    assert ups and all(torch.isfinite(v).all() for v in tensors.values()) and any(v.abs().sum() > 0 for v in ups)


@pytest.mark.slow
def test_prodigy_plus_samples_and_saves_its_averaged_weights(tiny_sd15, dataset, make_config):
    config = _config(make_config, tiny_sd15, dataset,
                     optimizer={"name": "prodigy_plus", "unet_lr": 1.0, "text_encoder_lr": 1.0},
                     training={"epochs": 2},
                     output={"sample_every_n_epochs": 1, "sample_steps": 2, "save_every_n_epochs": 1,
                             "save_precision": "fp32"})
    run, events, status = train(config)
    assert status == 0, run.log.read_text()[-3000:]
    assert of_type(events, "sample") and events[-1]["type"] == "done"

    # The epoch-1 checkpoint and its resume state were written inside eval(): the optimizer says
    # so, and the LoRA file holds the averaged weights x, not the training-form y = x + (1 - β1)(z - x).
    (saved,) = [e for e in of_type(events, "checkpoint") if e["reason"] == "epoch"]
    lora = load_file(saved["path"])
    state = torch.load(run.resume_state, map_location="cpu", weights_only=True)
    groups = state["optimizer"]["param_groups"]
    assert all(g["train_mode"] is False for g in groups)
    beta1 = groups[0]["betas"][0]
    z_of = {i: s["z"] for i, s in state["optimizer"]["state"].items() if "z" in s}
    by_index = [p for g in groups for p in g["params"]]
    network = [v for k, v in state["network"].items() if k.endswith(("lora_down.weight", "lora_up.weight"))]
    assert len(network) == len(by_index) and z_of
    files = sorted((v for k, v in lora.items() if k.endswith(("lora_down.weight", "lora_up.weight"))),
                   key=lambda t: (t.shape, t.sum().item()))
    eval_form = sorted(network, key=lambda t: (t.shape, t.sum().item()))
    assert all(torch.equal(a, b) for a, b in zip(files, eval_form))
    train_form = [x + (1 - beta1) * (z_of[i].to(x.dtype) - x) for i, x in zip(by_index, network) if i in z_of]
    assert any(not torch.allclose(y, x) for y, x in zip(train_form, network))


@pytest.mark.slow
def test_rex_warms_up_to_the_full_rate_then_decays(tiny_sd15, dataset, make_config):
    config = _config(make_config, tiny_sd15, dataset, optimizer={"name": "came", "unet_lr": 2e-4,
                                                                 "text_encoder_lr": 1e-4},
                     scheduler={"name": "rex", "warmup_steps": 2}, training={"batch_size": 1})
    run, events, status = train(config)
    assert status == 0, run.log.read_text()[-3000:]
    # A step event reports the rate the *next* step uses.
    lrs = [e["lr"] for e in of_type(events, "step")]
    assert len(lrs) == 12
    assert lrs[0] == pytest.approx(1e-4) and lrs[1] == pytest.approx(2e-4)  # warmup, then the full rate
    after = lrs[1:]
    assert all(a > b for a, b in zip(after, after[1:])) and after[-1] == 0.0
    # REX falls slower than linear early on: halfway through it is still above half the rate.
    assert after[5] > 2e-4 * (1 - 5 / 10)


def test_rex_curve_is_pytorch_optimizers_without_the_min_rate_first_step():
    from pytorch_optimizer import REXScheduler

    from trainer.optim import rex_factor

    total = 20
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    rex = REXScheduler(optimizer, total_steps=total, max_lr=1.0, min_lr=0.0)
    assert optimizer.param_groups[0]["lr"] == 0.0  # what it would train the first step with
    theirs = []
    for _ in range(total):
        rex.step()
        theirs.append(optimizer.param_groups[0]["lr"])
    # Theirs trains step 1 at the minimum, then follows the curve one step late; ours starts at the top.
    assert [rex_factor(s, 0, total) for s in range(total)] == pytest.approx([1.0] + theirs[:-1])
    assert rex_factor(0, 3, total) == 0.0 and rex_factor(3, 3, total) == 1.0


def test_averaged_weights_switches_a_schedule_free_optimizer_and_back():
    from prodigyplus import ProdigyPlusScheduleFree

    from trainer.optim import averaged_weights, start_training

    layer = torch.nn.Linear(4, 4)
    optimizer = ProdigyPlusScheduleFree(layer.parameters(), lr=1.0, d0=1e-2)  # large first steps: visible moves
    start_training(optimizer)
    for _ in range(10):
        layer(torch.randn(2, 4)).pow(2).mean().backward()
        optimizer.step()
        optimizer.zero_grad()
    trained = layer.weight.detach().clone()
    with averaged_weights(optimizer):
        assert optimizer.param_groups[0]["train_mode"] is False
        assert not torch.allclose(layer.weight, trained)
    assert optimizer.param_groups[0]["train_mode"] is True
    assert torch.allclose(layer.weight, trained, atol=1e-6)


def test_impossible_combinations_are_config_errors():
    base = with_value(Config(), "dataset.path", "x")
    assert "scheduler.name" in _fields(base, optimizer__name="prodigy_plus", optimizer__unet_lr=1.0,
                                       optimizer__text_encoder_lr=1.0, scheduler__name="cosine")
    assert "scheduler.name" not in _fields(base, optimizer__name="prodigy_plus", optimizer__unet_lr=1.0,
                                           optimizer__text_encoder_lr=1.0, scheduler__name="constant")
    assert "training.fused_backward_pass" in _fields(base, training__fused_backward_pass=True,
                                                     training__batch_size=2)
    assert "training.fused_backward_pass" not in _fields(base, training__fused_backward_pass=True,
                                                         training__batch_size=1)
    assert "training.fused_backward_pass" in _fields(base, training__fused_backward_pass=True,
                                                     training__batch_size=1, optimizer__name="prodigy",
                                                     optimizer__unet_lr=1.0, optimizer__text_encoder_lr=1.0)
    # A learning-rate-free optimizer given an AdamW-sized rate: said plainly, with the value it expects.
    problems = validate(with_value(base, "optimizer.name", "prodigy"))
    message = " ".join(p.message for p in problems if p.field == "optimizer.unet_lr")
    assert "unet_lr = 1.0" in message
    assert not any(p.field.startswith("optimizer.") for p in validate(
        with_value(with_value(with_value(base, "optimizer.name", "prodigy"), "optimizer.unet_lr", 1.0),
                   "optimizer.text_encoder_lr", 0.0)))


@pytest.mark.slow
def test_fused_backward_pass_matches_the_ordinary_update(tiny_sd15, dataset, make_config):
    # Clipping off: the ordinary loop clips the whole gradient, the fused pass each weight alone.
    sections = dict(optimizer={"name": "adamw", "unet_lr": 1e-3, "text_encoder_lr": 1e-3, "max_grad_norm": 0.0},
                    output={"save_precision": "fp32"})
    plain_run, plain, status = train(_config(make_config, tiny_sd15, dataset, training={"batch_size": 1},
                                             **sections))
    assert status == 0, plain_run.log.read_text()[-3000:]
    fused_run, fused, status = train(_config(make_config, tiny_sd15, dataset,
                                             training={"batch_size": 1, "fused_backward_pass": True}, **sections))
    assert status == 0, fused_run.log.read_text()[-3000:]
    plain_losses = [e["loss"] for e in of_type(plain, "step")]
    assert len(plain_losses) == 12
    assert [e["loss"] for e in of_type(fused, "step")] == pytest.approx(plain_losses, rel=1e-5, abs=1e-7)
    a, b = load_file(plain_run.final_lora("test")), load_file(fused_run.final_lora("test"))
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    assert any(a[k].abs().sum() > 0 for k in a if k.endswith("lora_up.weight"))


@pytest.mark.slow
def test_prodigy_plus_trains_with_the_fused_backward_pass(tiny_sd15, dataset, make_config):
    config = _config(make_config, tiny_sd15, dataset,
                     optimizer={"name": "prodigy_plus", "unet_lr": 1.0, "text_encoder_lr": 1.0},
                     training={"batch_size": 1, "fused_backward_pass": True})
    run, events, status = train(config)
    assert status == 0, run.log.read_text()[-3000:]
    losses = [e["loss"] for e in of_type(events, "step")]
    assert len(losses) == 12 and all(math.isfinite(v) for v in losses)
    tensors = load_file(run.final_lora("test"))
    assert any(v.abs().sum() > 0 for k, v in tensors.items() if k.endswith("lora_up.weight"))
