"""Sample options: per-prompt sd-scripts options, samplers by name, negative prompt, CFG, and
saves and samples every N steps.

The pictures are drawn by a tiny real SD1.5 loaded in this process with a LoRA whose weights are
not zero; the every-N-steps runs train it in a child process, as the app does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.trainer.helpers import of_type, train
from trainer.contract.events import EventWriter, read_events
from trainer.contract.sample_prompts import SAMPLERS

def _load(base: Path, arch: str):
    """A tiny model with a LoRA attached (its up weights not zero, so the LoRA changes pictures)."""
    import torch

    from trainer.models import load_base_model
    from trainer.networks.lora import LoRANetwork, NetworkSpec
    from trainer.step import Precision

    precision = Precision(torch.device("cpu"), torch.float32, False, "fp32")
    model = load_base_model(str(base), arch, torch.float32, precision.device)
    network = LoRANetwork(model.unet, model.text_encoders, arch, NetworkSpec(4, 2.0, 0, 1.0), True)
    network.attach()
    torch.manual_seed(0)
    with torch.no_grad():
        for lora in network.all_loras():
            lora.lora_up.weight.normal_(0, 0.3)
    return model, network, precision


@pytest.fixture(scope="module")
def loaded(tiny_sd15):
    """The tiny SD1.5, loaded once for this file's in-process tests."""
    return _load(tiny_sd15, "sd15")


def _draw(loaded, folder: Path, prompts: list[str], **settings) -> tuple[list[Path], list[dict]]:
    from trainer.sampling import Sampler, SampleSettings

    model, network, precision = loaded
    folder.mkdir()
    events = EventWriter(folder / "events.jsonl")
    options = dict(resolution=64, steps=2, seed=42, lora_name="test") | settings
    sampler = Sampler(model, network, precision, events, folder / "samples", SampleSettings(prompts, **options))
    written = sampler.write("s000001", epoch=1, step=1)
    events.close()
    return written, read_events(events.path)


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


@pytest.mark.slow
def test_a_prompts_own_options_set_its_size_seed_steps_negative_and_cfg(loaded, tmp_path):
    line = "zkmascot, red scarf --w 128 --h 64 --s 3 --d 7 --n x --l 4"
    written, events = _draw(loaded, tmp_path / "a", [line, line, line.replace("--d 7", "--d 8"), "zkmascot"])
    assert of_type(events, "warning") == []
    # 128×64 as asked; the plain prompt keeps the run's square resolution.
    assert [Image.open(p).size for p in written] == [(128, 64)] * 6 + [(64, 64)] * 2
    first, same, other = (_pixels(written[i]) for i in (1, 3, 5))  # each at strength 1.0
    assert np.array_equal(first, same)  # deterministic for its seed: --d, not the prompt's place in the list
    assert np.abs(first - other).mean() > 1  # a different seed, a different picture

    samples = of_type(events, "sample")
    assert [e["seed"] for e in samples] == [7, 7, 7, 7, 8, 8, 45, 45]  # without --d: sample_seed + index
    assert samples[0]["prompt"] == "zkmascot, red scarf" and samples[0]["options"] == \
        "--n x --w 128 --h 64 --l 4 --s 3 --d 7"
    assert samples[-1]["options"] == ""
    # prompts.txt: each prompt with every option written out, as a prompt file line that redraws it.
    lines = (tmp_path / "a" / "samples" / "s000001" / "prompts.txt").read_text().splitlines()
    assert lines[1] == "p00\tzkmascot, red scarf --n x --w 128 --h 64 --l 4 --s 3 --d 7 --ss euler"
    assert lines[4] == "p03\tzkmascot --w 64 --h 64 --l 7.5 --s 2 --d 45 --ss euler"
    parameters = Image.open(written[1]).text["parameters"]
    assert parameters == ("zkmascot, red scarf <lora:test:1.0>\nNegative prompt: x\n"
                          "Steps: 3, Sampler: Euler, CFG scale: 4, Seed: 7, Size: 128x64")


@pytest.mark.slow
def test_the_negative_prompt_and_the_cfg_scale_change_the_picture(loaded, tmp_path):
    base, _ = _draw(loaded, tmp_path / "base", ["zkmascot"])
    negative, _ = _draw(loaded, tmp_path / "neg", ["zkmascot"], negative_prompt="blurry, red scarf")
    own_negative, _ = _draw(loaded, tmp_path / "own", ["zkmascot --n blurry, red scarf"])
    cfg, _ = _draw(loaded, tmp_path / "cfg", ["zkmascot"], cfg=2.0)
    default_cfg, _ = _draw(loaded, tmp_path / "cfg0", ["zkmascot --l 7.5"])
    plain = _pixels(base[1])
    assert np.abs(plain - _pixels(negative[1])).mean() > 1
    assert np.array_equal(_pixels(negative[1]), _pixels(own_negative[1]))  # --n is the same negative prompt
    assert np.abs(plain - _pixels(cfg[1])).mean() > 1
    assert np.array_equal(plain, _pixels(default_cfg[1]))  # cfg 0 is the pipeline's own 7.5 for SD1.5


@pytest.mark.slow
@pytest.mark.parametrize("zero_terminal_snr", [False, True], ids=["epsilon", "vpred-ztsnr"])
def test_every_sampler_draws_a_real_picture(loaded, tmp_path, tiny_sd15, zero_terminal_snr):
    from trainer.models import apply_prediction

    from trainer.samplers import SAMPLER_LABELS, _lms_scheduler

    try:
        _lms_scheduler()
        names = list(SAMPLERS)
    except RuntimeError as exc:  # diffusers before 0.36 without scipy: LMS alone is refused, and says why
        assert "pip install scipy" in str(exc) and "output.sample_sampler" in str(exc)
        names = [name for name in SAMPLERS if name != "lms"]
    model = loaded[0]
    kept = model.noise_scheduler
    try:
        if zero_terminal_snr:
            apply_prediction(model, str(tiny_sd15), "v_prediction", True)
        prompts = [f"zkmascot --ss {name}" for name in names]
        written, events = _draw(loaded, tmp_path / "samplers", prompts, steps=3)
    finally:
        model.noise_scheduler = kept
    assert of_type(events, "warning") == []
    assert len(written) == 2 * len(names)
    pictures = [_pixels(path) for path in written[1::2]]
    for name, pixels in zip(names, pictures):
        assert pixels.std() > 1, name  # not one flat colour (a NaN decodes to black)
    parameters = [Image.open(path).text["parameters"] for path in written[1::2]]
    assert [p.split("Sampler: ")[1].split(",")[0] for p in parameters] == [SAMPLER_LABELS[n] for n in names]
    assert set(SAMPLER_LABELS.values()) == {"Euler", "Euler a", "DDIM", "DPM++ 2M", "Heun", "LMS", "PNDM"}
    # Each sampler really is another one: no two draw the same picture from the same seed.
    assert all(not np.array_equal(a, b) for i, a in enumerate(pictures) for b in pictures[i + 1:])


@pytest.mark.slow
def test_an_sdxl_prompt_draws_its_own_size_and_negative_prompt(tiny_sdxl, tmp_path):
    sdxl = _load(tiny_sdxl, "sdxl")
    written, events = _draw(sdxl, tmp_path / "sdxl", ["zkmascot --h 128", "zkmascot --h 128 --d 42 --n red"])
    assert of_type(events, "warning") == []
    assert [Image.open(p).size for p in written] == [(64, 128)] * 4
    assert np.abs(_pixels(written[1]) - _pixels(written[3])).mean() > 1  # the negative prompt shows
    assert "CFG scale: 5," in Image.open(written[1]).text["parameters"]  # SDXL's own scale


@pytest.mark.slow
def test_the_run_wide_sampler_is_the_one_each_prompt_uses_unless_it_names_its_own(loaded, tmp_path):
    ddim, _ = _draw(loaded, tmp_path / "ddim", ["zkmascot"], sampler="ddim")
    own, _ = _draw(loaded, tmp_path / "own", ["zkmascot --ss ddim"], sampler="heun")
    heun, _ = _draw(loaded, tmp_path / "heun", ["zkmascot"], sampler="heun")
    assert np.array_equal(_pixels(ddim[1]), _pixels(own[1]))
    assert not np.array_equal(_pixels(ddim[1]), _pixels(heun[1]))


@pytest.mark.slow
def test_saves_and_samples_every_n_steps_come_at_exactly_those_steps(tiny_sd15, dataset, make_config):
    # 12 images at batch 4: 3 steps an epoch, 9 in all. Saves every 2 steps and every epoch, samples every
    # 4 steps and every 3 epochs (the last epoch: step 9).
    config = make_config(tiny_sd15, dataset, dataset={"resolution": 64}, training={"epochs": 3, "batch_size": 4},
                         output={"save_every_n_steps": 2, "save_every_n_epochs": 1, "keep_last_n_checkpoints": 3,
                                 "sample_every_n_steps": 4, "sample_every_n_epochs": 3, "sample_steps": 2,
                                 "sample_prompts": ["zkmascot --w 128"]})
    run, events, status = train(config)
    assert status == 0, run.log.read_text()[-3000:]
    saves = [(e["step"], e["reason"], Path(e["path"]).name) for e in of_type(events, "checkpoint")]
    # Step 6 is epoch 2's end: saved once, as the epoch's checkpoint. Step 8 is the last multiple of 2.
    assert saves == [(2, "step", "test-step000002.safetensors"), (3, "epoch", "test-e0001.safetensors"),
                     (4, "step", "test-step000004.safetensors"), (6, "epoch", "test-e0002.safetensors"),
                     (8, "step", "test-step000008.safetensors")]
    # keep_last_n_checkpoints = 3 keeps the newest three by step, whatever their kind.
    assert sorted(p.name for p in run.checkpoints.iterdir()) == \
        ["test-e0002.safetensors", "test-step000004.safetensors", "test-step000008.safetensors"]
    sets = sorted({(e["step"], Path(e["path"]).parent.name) for e in of_type(events, "sample")})
    assert sets == [(4, "s000004"), (8, "s000008"), (9, "e0003")]
    assert sorted(p.name for p in run.samples.iterdir()) == ["e0003", "s000004", "s000008"]
    assert Image.open(run.samples / "s000004" / "p00-w1.0.png").size == (128, 64)
    assert events[-1]["type"] == "done"


@pytest.mark.slow
def test_a_step_sample_at_an_epoch_end_that_samples_is_drawn_once(tiny_sd15, dataset, make_config):
    # 3 steps an epoch, 6 in all: every 3 steps falls on each epoch's end, where sampling by epoch draws anyway.
    config = make_config(tiny_sd15, dataset, dataset={"resolution": 64}, training={"epochs": 2, "batch_size": 4},
                         output={"save_every_n_steps": 3, "save_every_n_epochs": 0, "sample_every_n_steps": 3,
                                 "sample_every_n_epochs": 1, "sample_steps": 2, "sample_prompts": ["zkmascot"]})
    run, events, status = train(config)
    assert status == 0, run.log.read_text()[-3000:]
    # No epoch checkpoints: step 3 saves by step; step 6 is the last, whose LoRA is the finished file.
    assert [(e["step"], e["reason"]) for e in of_type(events, "checkpoint")] == [(3, "step")]
    assert sorted({Path(e["path"]).parent.name for e in of_type(events, "sample")}) == ["e0001", "e0002"]
    assert len(of_type(events, "sample")) == 2 * 2


def test_lms_coefficients_are_the_exact_integrals_scipy_would_approximate():
    from diffusers import DDPMScheduler

    from trainer.samplers import build_scheduler

    lms = build_scheduler("lms", DDPMScheduler())
    lms.set_timesteps(10)
    sigmas = [float(s) for s in lms.sigmas]
    for t in range(3, 9):
        for order in range(1, 5):
            for current in range(order):
                basis = np.poly1d([1.0])
                for k in range(order):
                    if k != current:
                        basis *= np.poly1d([1.0, -sigmas[t - k]]) / (sigmas[t - current] - sigmas[t - k])
                exact = basis.integ()(sigmas[t + 1]) - basis.integ()(sigmas[t])
                assert lms.get_lms_coefficient(order, t, current) == pytest.approx(exact, rel=1e-9, abs=1e-12)
