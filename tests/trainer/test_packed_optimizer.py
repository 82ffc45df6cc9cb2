"""Packing the LoRA for the optimizer changes the number of optimizer calls and nothing else."""

from __future__ import annotations

import random

import pytest
import torch
from safetensors.torch import load_file

from tests.trainer.helpers import of_type, train
from trainer.contract.errors import TrainerError
from trainer.packed_optimizer import BLOCK, MIN_PACKED_SIZE, PackedParameters, packing_wanted
from trainer.state import Fingerprint, Progress, restore

bnb = pytest.importorskip("bitsandbytes")

# LoRA-like shapes: some a multiple of the 256-element block, some not, some under min_8bit_size.
SHAPES = [(8, 640), (640, 8), (8, 1280), (1280, 8), (4, 333), (333, 4), (3, 77), (16, 4096), (4096, 16), (7, 700)]


def _params(seed: int = 0) -> list[torch.nn.Parameter]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*shape, generator=generator) * 0.1) for shape in SHAPES]


def _groups(params: list[torch.nn.Parameter]) -> list[dict]:
    # Two groups with their own rates, as the UNet's and the text encoder's LoRA weights are.
    return [{"params": params[:6], "lr": 1e-3, "name": "unet"}, {"params": params[6:], "lr": 3e-4, "name": "text"}]


def _targets(step: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(1000 + step)
    return [torch.randn(*shape, generator=generator) for shape in SHAPES]


def _optimizer(params, packed: bool):
    groups = _groups(params)
    holder = PackedParameters(groups) if packed else None
    optimizer = bnb.optim.AdamW8bit(holder.groups if holder else groups, weight_decay=0.01)
    if holder:
        holder.bind(optimizer)
    return optimizer, holder


def _steps(params, optimizer, steps: range) -> None:
    for step in steps:
        # Gradients through autograd, as in training: they accumulate into whatever .grad holds.
        loss = sum(((p - t) ** 2).sum() for p, t in zip(params, _targets(step)))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


def test_a_packed_adamw8bit_makes_exactly_the_per_tensor_updates():
    plain, packed = _params(), _params()
    plain_opt, _ = _optimizer(plain, packed=False)
    packed_opt, holder = _optimizer(packed, packed=True)
    _steps(plain, plain_opt, range(6))
    _steps(packed, packed_opt, range(6))
    assert all(torch.equal(a, b) for a, b in zip(plain, packed))
    assert not torch.equal(plain[0], _params()[0])  # and they did move
    # Two groups, each one flat tensor plus its three small weights: 5 tensors stepped instead of 10.
    stepped = [p for group in packed_opt.param_groups for p in group["params"]]
    small = [p for p in packed if p.numel() < MIN_PACKED_SIZE]
    assert len(stepped) == len(holder.packs) + len(small) == 2 + 3
    # The small ones keep bitsandbytes' 32-bit state, the packed ones its 8-bit state.
    assert all(packed_opt.state[p]["state1"].dtype == torch.float32 for p in small)
    assert all(packed_opt.state[pack.param]["state1"].dtype == torch.uint8 for pack in holder.packs)


def test_packed_weights_and_gradients_are_views_that_survive_zero_grad():
    params = _params()
    optimizer, holder = _optimizer(params, packed=True)
    _steps(params, optimizer, range(2))
    for pack in holder.packs:
        assert pack.param.numel() % BLOCK == 0 and pack.param.grad is pack.grad
        assert torch.count_nonzero(pack.grad) == 0  # zeroed in place, not freed
    flat_storages = {pack.param.untyped_storage().data_ptr() for pack in holder.packs}
    grad_storages = {pack.grad.untyped_storage().data_ptr() for pack in holder.packs}
    for p in params:
        if p.numel() >= MIN_PACKED_SIZE:
            assert p.untyped_storage().data_ptr() in flat_storages
            assert p.grad.untyped_storage().data_ptr() in grad_storages
        else:
            assert p.grad is None  # set_to_none, as before, for what is not packed


def test_clipping_the_flat_gradients_sees_the_same_total_norm():
    plain, packed = _params(), _params()
    _, holder = _optimizer(packed, packed=True)
    for params in (plain, packed):
        sum(((p - t) ** 2).sum() for p, t in zip(params, _targets(0))).backward()
    expected = torch.nn.utils.clip_grad_norm_(plain, 1.0)
    got = torch.nn.utils.clip_grad_norm_(holder.optimizer_params(), 1.0)
    assert got == pytest.approx(expected.item(), rel=1e-6)
    assert all(torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-8) for a, b in zip(plain, packed))


def _state(params, optimizer) -> dict:
    module = torch.nn.ParameterList(params)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return {"fingerprint": vars(Fingerprint(10, 2, 4)), "network": module.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": None,
            "rng": {"python": random.Random(0).getstate(), "torch": torch.get_rng_state(), "cuda": None},
            "progress": vars(Progress())}


def _restore(state: dict, params, optimizer) -> None:
    module = torch.nn.ParameterList(params)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    restore(state, fingerprint=Fingerprint(10, 2, 4), network=module, optimizer=optimizer, scheduler=scheduler,
            scaler=None, rng=random.Random(0))


def test_a_packed_state_resumes_exactly_and_a_per_tensor_one_is_refused_clearly():
    straight = _params()
    straight_opt, _ = _optimizer(straight, packed=True)
    _steps(straight, straight_opt, range(6))

    first = _params()
    first_opt, _ = _optimizer(first, packed=True)
    _steps(first, first_opt, range(3))
    saved = _state(first, first_opt)
    resumed = _params(seed=5)  # other starting weights: everything must come from the state
    resumed_opt, _ = _optimizer(resumed, packed=True)
    _restore(saved, resumed, resumed_opt)
    _steps(resumed, resumed_opt, range(3, 6))
    assert all(torch.equal(a, b) for a, b in zip(straight, resumed))

    old = _params()
    old_opt, _ = _optimizer(old, packed=False)
    _steps(old, old_opt, range(2))
    fresh = _params()
    fresh_opt, _ = _optimizer(fresh, packed=True)
    with pytest.raises(TrainerError) as caught:
        _restore(_state(old, old_opt), fresh, fresh_opt)
    assert caught.value.code == "resume" and "layout" in caught.value.message
    assert "start a new run" in caught.value.advice


def test_packing_is_for_the_per_tensor_optimizers_and_can_be_switched_off(monkeypatch):
    assert packing_wanted("adamw8bit", fused_backward_pass=False)
    assert not packing_wanted("adamw8bit", fused_backward_pass=True)  # each weight steps from its own hook
    assert not packing_wanted("adamw", fused_backward_pass=False)  # torch's AdamW already steps all at once
    assert not packing_wanted("came", fused_backward_pass=False)  # factored state needs each matrix's shape
    monkeypatch.setenv("LORATUI_PACKED_OPTIMIZER", "0")
    assert not packing_wanted("adamw8bit", fused_backward_pass=False)


@pytest.mark.slow
def test_a_training_run_is_the_same_packed_or_not(tiny_sd15, dataset, make_config, monkeypatch):
    # Without clipping (whose global norm is summed in another order when packed) every saved weight is equal.
    config = make_config(tiny_sd15, dataset, network={"dim": 64, "alpha": 32.0},
                         optimizer={"name": "adamw8bit", "max_grad_norm": 0.0}, training={"epochs": 2})
    runs, logs = {}, {}
    for packed in ("1", "0"):
        monkeypatch.setenv("LORATUI_PACKED_OPTIMIZER", packed)
        run, events, status = train(config)
        assert status == 0, run.log.read_text()[-2000:]
        assert of_type(events, "done")
        runs[packed], logs[packed] = load_file(run.final_lora("test")), run.log.read_text()
    assert "packed" in logs["1"] and "packed" not in logs["0"]
    packed, plain = runs["1"], runs["0"]
    assert packed.keys() == plain.keys()
    assert all(torch.equal(packed[k], plain[k]) for k in plain)
    ups = [t for k, t in packed.items() if k.endswith("lora_up.weight")]
    assert ups and all(t.abs().max() > 0 for t in ups)


def test_a_loss_scaler_unscales_and_steps_the_packed_gradients_as_it_does_the_per_tensor_ones():
    # fp16 runs step through torch's GradScaler: it unscales and checks the optimizer's own tensors.
    results = []
    for packed in (False, True):
        params = _params()
        optimizer, _ = _optimizer(params, packed=packed)
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
        for step in range(4):
            loss = sum(((p - t) ** 2).sum() for p, t in zip(params, _targets(step)))
            if step == 2:
                loss = loss * float("inf")  # an overflowing step: skipped, and the scale halves
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
        results.append((params, scaler.get_scale()))
    (plain, plain_scale), (packed, packed_scale) = results
    assert plain_scale == packed_scale == 512.0
    assert all(torch.equal(a, b) for a, b in zip(plain, packed))
