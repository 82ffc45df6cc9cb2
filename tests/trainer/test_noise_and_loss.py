"""The noise, timestep and loss options of a training step, checked in-process on a tiny model."""

from __future__ import annotations

import math

import pytest
import torch

from trainer.losses import debiased_weights, elementwise_loss, huber_thresholds, signal_to_noise
from trainer.models import apply_prediction, load_base_model
from trainer.noise import sample_noise
from trainer.step import StepOptions, add_noise, choose_precision, diffusion_loss, encode_captions

CPU = choose_precision("no")


@pytest.fixture(scope="module")
def sd15(tiny_sd15):
    return load_base_model(str(tiny_sd15), "sd15", torch.float32, torch.device("cpu"))


def _timesteps_the_unet_receives(model, options: StepOptions, calls: int, batch: int = 8) -> torch.Tensor:
    """The timesteps of ``calls`` training steps, read by a hook on the UNet's own forward call."""
    seen = []
    handle = model.unet.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
    try:
        conditioning = encode_captions(model, ["zkmascot"] * batch, CPU, train_text_encoders=False)
        with torch.no_grad():
            for _ in range(calls):
                diffusion_loss(model, torch.randn(batch, 4, 8, 8), conditioning, None, CPU, options)
    finally:
        handle.remove()
    return torch.cat(seen)


def test_the_unet_only_sees_timesteps_from_min_up_to_but_not_including_max(sd15):
    torch.manual_seed(0)
    seen = _timesteps_the_unet_receives(sd15, StepOptions(min_timestep=200, max_timestep=216), calls=20)
    assert len(seen) == 160
    assert seen.min() == 200 and seen.max() == 215  # both ends are drawn; 216 never is
    assert set(seen.tolist()) == set(range(200, 216))
    torch.manual_seed(0)
    full = _timesteps_the_unet_receives(sd15, StepOptions(), calls=8)
    assert full.min() < 100 and full.max() > 900  # the default covers the whole schedule


def _neighbour_correlation(noise: torch.Tensor) -> float:
    """Correlation of horizontally adjacent values (about 0 for white noise)."""
    return float((noise[..., 1:] * noise[..., :-1]).mean() / (noise ** 2).mean())


def test_multires_noise_is_off_at_zero_iterations_and_adds_coarse_structure_when_on():
    latent = torch.zeros(1, 4, 64, 64)
    torch.manual_seed(3)
    plain = torch.randn_like(latent)
    torch.manual_seed(3)
    assert torch.equal(sample_noise(latent, StepOptions(multires_noise_iterations=0, multires_noise_discount=0.8)),
                       plain)

    def draws(iterations: int, discount: float) -> torch.Tensor:
        torch.manual_seed(4)
        options = StepOptions(multires_noise_iterations=iterations, multires_noise_discount=discount)
        return torch.cat([sample_noise(latent, options) for _ in range(16)])

    strong, weak, flat = draws(6, 0.8), draws(6, 0.3), draws(6, 0.0)
    for noise in (strong, weak, flat):  # every image is rescaled to unit variance
        assert all(math.isclose(float(n.std()), 1.0, rel_tol=1e-5) for n in noise)
    # Discount 0 keeps only layer 0, full-size white noise: no structure. Coarser layers, weighted by
    # discount^i, make neighbours alike and whole channels shift, more so the larger the discount.
    # (The estimate's own spread is about 0.002 over these 258,048 pairs.)
    assert abs(_neighbour_correlation(flat)) < 0.01 and abs(_neighbour_correlation(plain)) < 0.01
    assert 0.01 < _neighbour_correlation(weak) < _neighbour_correlation(strong)
    assert _neighbour_correlation(strong) > 0.25
    white_mean = 1 / 64  # the standard deviation of a 64×64 channel's mean for unit white noise
    assert flat.mean(dim=(2, 3)).std() < 3 * white_mean
    assert strong.mean(dim=(2, 3)).std() > 10 * white_mean


def test_input_perturbation_changes_what_the_unet_sees_and_not_what_it_must_predict(sd15):
    latent = torch.randn(1, 4, 32, 32)
    torch.manual_seed(5)
    plain_input, plain_target, plain_t = add_noise(sd15, latent, StepOptions())
    torch.manual_seed(5)
    gamma = 0.1
    input_, target, t = add_noise(sd15, latent, StepOptions(ip_noise_gamma=gamma))
    assert torch.equal(target, plain_target) and torch.equal(t, plain_t)
    # The input differs by the scheduler's noise scale times γ times fresh unit noise.
    scale = (1 - sd15.noise_scheduler.alphas_cumprod[t]).sqrt()
    extra = (input_ - plain_input) / (gamma * scale)
    assert 0.95 < float(extra.std()) < 1.05 and abs(float(extra.mean())) < 0.05
    assert abs(float((extra * plain_target).mean())) < 0.05  # independent of the target noise


def test_each_loss_type_equals_its_formula():
    prediction = torch.tensor([0.0, 0.01, 0.1, 1.0, -3.0]).view(5, 1, 1, 1)
    target = torch.zeros_like(prediction)
    c = torch.full((5,), 0.1)
    l2 = elementwise_loss(prediction, target, "l2").flatten()
    huber = elementwise_loss(prediction, target, "huber", c).flatten()
    smooth = elementwise_loss(prediction, target, "smooth_l1", c).flatten()
    assert l2.tolist() == pytest.approx([0.0, 1e-4, 1e-2, 1.0, 9.0])
    # 2c(√(x² + c²) − c) and 2(√(x² + c²) − c), worked out by hand for c = 0.1.
    assert huber.tolist() == pytest.approx([0.0, 0.2 * (math.sqrt(0.0101) - 0.1), 0.2 * (math.sqrt(0.02) - 0.1),
                                            0.2 * (math.sqrt(1.01) - 0.1), 0.2 * (math.sqrt(9.01) - 0.1)], rel=1e-5)
    assert smooth.tolist() == pytest.approx([v / 0.1 for v in huber.tolist()], rel=1e-5)
    # Pseudo-Huber: squared error well inside c, 2c·|x| − 2c² well outside it.
    assert float(huber[1]) == pytest.approx(float(l2[1]), rel=0.01)
    assert float(huber[4]) == pytest.approx(2 * 0.1 * 3.0 - 2 * 0.01, rel=1e-3)


def test_huber_schedules(sd15):
    t = torch.tensor([0, 500, 999])
    alphas = sd15.noise_scheduler.alphas_cumprod[t]
    constant = huber_thresholds(sd15, t, StepOptions(loss_type="huber", huber_c=0.2, huber_schedule="constant"))
    assert constant.tolist() == pytest.approx([0.2] * 3)
    exponential = huber_thresholds(sd15, t, StepOptions(loss_type="huber", huber_c=0.2, huber_schedule="exponential"))
    assert exponential.tolist() == pytest.approx([1.0, 0.2 ** 0.5, 0.2 ** 0.999])  # from 1 at t=0 towards c
    snr = huber_thresholds(sd15, t, StepOptions(loss_type="huber", huber_c=0.2, huber_schedule="snr"))
    sigma = ((1 - alphas) / alphas).sqrt()
    assert snr.tolist() == pytest.approx((0.8 / (1 + sigma) ** 2 + 0.2).tolist())
    assert snr[0] > 0.9 and snr[0] > snr[1] > snr[2] > 0.2  # near 1 on clean images, near c on noise


def test_debiased_weights_are_one_over_root_snr_and_one_minus_alpha_bar_for_v_prediction(tiny_sd15):
    model = load_base_model(str(tiny_sd15), "sd15", torch.float32, torch.device("cpu"))
    every = torch.arange(1000)
    eps = debiased_weights(model, every)
    snr = signal_to_noise(model, every)
    inside = (snr > 1e-3) & (snr < 1000)
    assert torch.allclose(eps[inside] ** 2 * snr[inside], torch.ones(int(inside.sum())), rtol=1e-4)
    assert torch.all(eps[1:] >= eps[:-1])  # noisier steps weigh more
    apply_prediction(model, str(tiny_sd15), "v_prediction", True)  # zero terminal SNR: SNR is 0 at the end
    v = debiased_weights(model, every)
    alphas = model.noise_scheduler.alphas_cumprod
    assert torch.allclose(v[1:], 1 - alphas[1:], atol=1e-6)  # 1/(SNR + 1) = 1 − ᾱ (t = 0 is capped at SNR 1000)
    model.noise_scheduler.register_to_config(prediction_type="epsilon")
    assert torch.isfinite(debiased_weights(model, every)).all()  # the floor keeps pure noise finite


def test_loss_weights_and_types_reach_the_loss(sd15):
    latents = torch.randn(4, 4, 8, 8)
    conditioning = encode_captions(sd15, ["zkmascot"] * 4, CPU, train_text_encoders=False)

    def loss(**options) -> float:
        torch.manual_seed(9)
        with torch.no_grad():
            return float(diffusion_loss(sd15, latents, conditioning, None, CPU, StepOptions(**options)))

    plain = loss()
    assert loss() == plain
    for changed in ({"debiased_estimation": True}, {"loss_type": "huber"}, {"loss_type": "smooth_l1"},
                    {"min_timestep": 900}, {"multires_noise_iterations": 6}):
        assert loss(**changed) != plain, changed


@pytest.mark.slow
def test_every_noise_and_loss_option_at_once_trains_and_the_file_says_so(tiny_sd15, dataset, make_config):
    from safetensors import safe_open

    from tests.trainer.helpers import assert_every_adapter_trained, of_type, train

    training = {"epochs": 1, "batch_size": 2, "gradient_accumulation_steps": 2, "multires_noise_iterations": 6,
                "multires_noise_discount": 0.4, "ip_noise_gamma": 0.1, "min_timestep": 100, "max_timestep": 900,
                "debiased_estimation": True, "loss_type": "huber", "huber_c": 0.2, "huber_schedule": "exponential",
                "min_snr_gamma": 5.0, "noise_offset": 0.05}
    run, events, status = train(make_config(tiny_sd15, dataset, training=training))
    assert status == 0, run.log.read_text()[-2000:]
    steps = of_type(events, "step")
    assert len(steps) == 3 and all(math.isfinite(s["loss"]) for s in steps)  # 6 batches of 2, two per update
    with safe_open(str(run.final_lora("test")), "pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (a safetensors file is not iterable)
    assert_every_adapter_trained(tensors, tiny_sd15, "sd15", text_encoder=True)
    assert (meta["ss_gradient_accumulation_steps"], meta["ss_total_batch_size"], meta["ss_max_train_steps"]) == \
        ("2", "4", "3")
    assert (meta["ss_multires_noise_iterations"], meta["ss_multires_noise_discount"], meta["ss_ip_noise_gamma"]) == \
        ("6", "0.4", "0.1")
    assert (meta["ss_debiased_estimation"], meta["ss_loss_type"], meta["ss_huber_c"], meta["ss_huber_schedule"]) == \
        ("True", "huber", "0.2", "exponential")


def test_accumulated_gradients_are_the_mean_gradient_of_the_group(tiny_sd15):
    # In-process, with plain SGD at rate 1 so that the update *is* the gradient: Adam, which the trained
    # comparison uses, divides the scale of the gradient away, so only this shows each batch's 1/N share.
    from trainer.accumulate import Accumulator
    from trainer.contract.config.schema import NetworkConfig
    from trainer.networks import build_network

    def one_update(batches: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = load_base_model(str(tiny_sd15), "sd15", torch.float32, torch.device("cpu"))
        network = build_network(NetworkConfig(type="lora", dim=4, alpha=4.0), model.unet, model.text_encoders,
                                "sd15", False)
        network.attach()
        params = [p for p in network.parameters() if p.requires_grad]
        accumulator = Accumulator(torch.optim.SGD(params, lr=1.0), None, params, 0.0, fused=False)
        start = {k: v.clone() for k, v in network.state_dict().items()}
        torch.manual_seed(1)
        for latents in batches:
            conditioning = encode_captions(model, ["zkmascot"] * len(latents), CPU, train_text_encoders=False)
            loss = diffusion_loss(model, latents, conditioning, None, CPU, StepOptions(multires_noise_iterations=3))
            accumulator.add(loss, 1 / len(batches))
        accumulator.finish()
        return {k: v - start[k] for k, v in network.state_dict().items()}

    pair = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    batched, accumulated = one_update([pair]), one_update([pair[:1], pair[1:]])
    moved = max(float(d.abs().max()) for d in batched.values())
    assert moved > 1e-4  # the update is not empty
    # The same update to float rounding (about 1e-7 of its size), not twice it or half of it.
    assert all(torch.allclose(accumulated[k], batched[k], rtol=1e-4, atol=1e-6 * moved) for k in batched)
