"""Sample images while training: every N epochs, at the end, and when the app asks.

The runs train tiny real models in a child process, as the app starts them; the in-process tests
drive the sampler on a loaded tiny model to check what a run cannot show from outside (the
state it leaves behind after a failure, the mixed-precision path a GPU takes).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file

from tests.trainer.helpers import new_run, of_type, train, wait_for
from trainer.contract.control import request
from trainer.contract.events import read_events
from trainer.sampling import STRENGTHS, choose_prompts, default_prompts

# Small and quick: 64 px images (8×8 latents) and three denoising steps per sample.
FAST = {"dataset": {"resolution": 64}, "output": {"sample_steps": 3}}


def _config(make_config, model, dataset, **sections):
    merged = {key: dict(values) for key, values in FAST.items()}
    for section, values in sections.items():
        merged.setdefault(section, {}).update(values)
    return make_config(model, dataset, **merged)


def _pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def _check_images(samples: list[dict], size: int) -> None:
    for event in samples:
        with Image.open(event["path"]) as image:
            image.verify()  # a whole, readable PNG (the atomic write never leaves a torn one)
        with Image.open(event["path"]) as image:
            assert image.size == (size, size) and image.format == "PNG"



def test_default_prompts_put_the_trigger_word_before_the_most_common_tags():
    frequency = {"zk": 12, "big eyes": 12, "red scarf": 10, "blue eyes": 6, "smile": 3, "hat": 1}
    # Tags in fewer than half as many captions as the commonest (poses, backgrounds) are left out.
    assert default_prompts("zk", frequency) == ["zk, big eyes, red scarf, blue eyes", "zk"]
    assert default_prompts("zk", frequency, tags=2) == ["zk, big eyes, red scarf", "zk"]
    assert default_prompts("", frequency, tags=2) == ["zk, big eyes"]
    assert default_prompts("zk", {}) == ["zk"]
    assert default_prompts("", {}) == [""]
    assert choose_prompts(["  a cat ", "", "a dog"], "zk", frequency) == ["a cat", "a dog"]
    assert choose_prompts([" "], "zk", {"zk": 1}) == ["zk"]


@pytest.mark.slow
def test_epoch_samples_come_at_both_strengths_and_leave_training_unchanged(tiny_sd15, dataset, make_config):
    config = _config(make_config, tiny_sd15, dataset, training={"epochs": 2, "batch_size": 4},
                     optimizer={"name": "adamw", "unet_lr": 1e-2, "text_encoder_lr": 1e-2},
                     output={"sample_every_n_epochs": 1})
    # A "sample now" waiting before the trainer starts is taken after the first step, so this run
    # samples at step 1, after each epoch and at the end: the most sampling a run can do.
    sampled = new_run(config)
    request(sampled.root, "sample")
    with open(sampled.log, "wb") as log:
        status = subprocess.run([sys.executable, "-m", "trainer", str(sampled.root)], check=False,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, timeout=240).returncode
    assert status == 0, sampled.log.read_text()[-3000:]
    events = read_events(sampled.events)
    assert events[-1]["type"] == "done"

    samples = of_type(events, "sample")
    # No prompts are configured: the default two (trigger word with common tags, trigger word alone).
    assert len({e["prompt"] for e in samples}) == 2 and len(samples) == 3 * 2 * len(STRENGTHS)
    tags = {Path(e["path"]).parent.name for e in samples}
    assert tags == {"s000001", "e0001", "e0002"}  # epoch 2 is the last: its set is the end-of-training one
    assert {e["strength"] for e in samples} == set(STRENGTHS)
    assert samples[0]["prompt"].startswith("zkmascot, big eyes, red scarf")
    assert samples[-1]["step"] == of_type(events, "done")[0]["step"] and samples[-1]["epoch"] == 2
    _check_images(samples, 64)
    for tag in tags:
        folder = sampled.samples / tag
        assert sorted(p.name for p in folder.glob("*.png")) == ["p00-w0.7.png", "p00-w1.0.png",
                                                                 "p01-w0.7.png", "p01-w1.0.png"]
        assert "zkmascot" in (folder / "prompts.txt").read_text()
    # Each set is announced as it starts, so the monitor can say what the pause is.
    assert len([e for e in events if e.get("phase") == "sampling"]) == 3
    # The trained LoRA shows: the same seed at strength 0.7 and 1.0 gives different pictures.
    end = sampled.samples / "e0002"
    assert np.abs(_pixels(end / "p00-w0.7.png") - _pixels(end / "p00-w1.0.png")).mean() > 0.5

    # Sampling draws from its own generator: the same run without it takes exactly the same steps.
    plain, plain_events, status = train(config, overrides=["output.sample_every_n_epochs=0"])
    assert status == 0
    assert of_type(plain_events, "sample") == []
    assert [e["loss"] for e in of_type(plain_events, "step")] == [e["loss"] for e in of_type(events, "step")]
    assert load_file(plain.final_lora("test")).keys() == load_file(sampled.final_lora("test")).keys()
    for key, tensor in load_file(plain.final_lora("test")).items():
        assert tensor.equal(load_file(sampled.final_lora("test"))[key]), key


@pytest.mark.slow
def test_save_and_sample_requests_are_honoured_while_training_runs(tiny_sd15, dataset, make_config):
    config = _config(make_config, tiny_sd15, dataset, training={"epochs": 50, "batch_size": 1},
                     output={"sample_prompts": ["zkmascot, red scarf"]})
    run = new_run(config)
    with open(run.log, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "trainer", str(run.root)], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: of_type(read_events(run.events), "step"))
        request(run.root, "save")
        request(run.root, "sample")
        assert wait_for(lambda: len(of_type(read_events(run.events), "sample")) == len(STRENGTHS)
                         and of_type(read_events(run.events), "checkpoint"))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
    events = read_events(run.events)
    assert events[-1]["type"] == "stopped"
    requested, stopped = of_type(events, "checkpoint")
    assert requested["reason"] == "requested" and stopped["reason"] == "stopped"
    assert Path(requested["path"]).name == f"test-step{requested['step']:06d}.safetensors"
    assert any(k.startswith("lora_unet_") for k in load_file(requested["path"]))
    samples = of_type(events, "sample")
    assert [e["prompt"] for e in samples] == ["zkmascot, red scarf"] * len(STRENGTHS)
    assert all(Path(e["path"]).parent.name == f"s{e['step']:06d}" for e in samples)
    _check_images(samples, 64)
    # Each request is acted on once: its file is gone, and training went on after it.
    assert not any((run.root / "control").iterdir())
    assert of_type(events, "step")[-1]["step"] > samples[-1]["step"]


@pytest.mark.slow
def test_an_sdxl_run_samples_at_the_end(tiny_sdxl, dataset, make_config):
    # Every 5 epochs in a 1-epoch run: the only set is the one drawn when training ends.
    config = _config(make_config, tiny_sdxl, dataset, training={"epochs": 1, "batch_size": 4},
                     output={"sample_every_n_epochs": 5, "sample_prompts": ["zkmascot"], "sample_seed": 7})
    run, events, status = train(config)
    assert status == 0, run.log.read_text()[-3000:]
    samples = of_type(events, "sample")
    assert [(Path(e["path"]).parent.name, e["strength"], e["seed"]) for e in samples] == \
        [("e0001", strength, 7) for strength in STRENGTHS]
    _check_images(samples, 64)
    assert [e["type"] for e in events].index("sample") < [e["type"] for e in events].index("done")


@pytest.fixture
def loaded(request, tiny_sd15, tiny_sdxl):
    """A tiny model loaded in this process with a LoRA attached whose weights are not zero."""
    import torch

    from trainer.models import load_base_model
    from trainer.networks.lora import LoRANetwork, NetworkSpec
    from trainer.step import Precision

    arch, name = request.param
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[name]
    precision = Precision(torch.device("cpu"), dtype, dtype != torch.float32, name)
    model = load_base_model(str(tiny_sd15 if arch == "sd15" else tiny_sdxl), arch, dtype, precision.device)
    network = LoRANetwork(model.unet, model.text_encoders, arch, NetworkSpec(4, 2.0, 0, 1.0), True)
    network.attach()
    with torch.no_grad():
        for lora in network.all_loras():
            lora.lora_up.weight.normal_(0, 0.3)
    model.unet.train()
    model.text_encoders[0].train()
    return model, network, precision


def _sampler(loaded, tmp_path, resolution=64):
    from trainer.contract.events import EventWriter
    from trainer.sampling import Sampler, SampleSettings

    model, network, precision = loaded
    events = EventWriter(tmp_path / "events.jsonl")
    settings = SampleSettings(["zkmascot, red scarf"], resolution, 2, 42, "test")
    return Sampler(model, network, precision, events, tmp_path / "samples", settings), events


@pytest.mark.slow
@pytest.mark.parametrize("loaded", [("sd15", "fp32")], indirect=True)
def test_a_failed_sample_is_a_warning_and_leaves_training_as_it_was(loaded, tmp_path):
    import torch

    model, network, _ = loaded
    # 60 px is not a size the pipeline can draw (it needs multiples of 8): a real failure mid-set.
    sampler, events = _sampler(loaded, tmp_path, resolution=60)
    generator_state = torch.get_rng_state()
    assert sampler.write("s000005", epoch=1, step=5) == []
    events.close()
    (warning,) = of_type(read_events(events.path), "warning")
    assert warning["code"] == "sample_failed" and "step 5" in warning["message"]
    assert all(lora.multiplier == 1.0 for lora in network.all_loras())
    assert model.unet.training and model.text_encoders[0].training and not model.vae.training
    assert all(m.training for m in model.unet.modules())
    assert torch.equal(generator_state, torch.get_rng_state())


@pytest.mark.slow
@pytest.mark.parametrize("loaded", [("sd15", "bf16"), ("sdxl", "bf16")], indirect=True,
                         ids=["sd15-bf16", "sdxl-bf16"])
def test_sampling_works_with_half_precision_weights_under_autocast(loaded, tmp_path):
    # On a GPU the UNet and text encoders are bf16/fp16 with fp32 LoRA weights and an fp32 VAE;
    # the CPU's bf16 autocast takes the same mixed-precision path.
    sampler, events = _sampler(loaded, tmp_path)
    written = sampler.write("e0001", epoch=1, step=3)
    events.close()
    assert [p.name for p in written] == ["p00-w0.7.png", "p00-w1.0.png"]
    assert of_type(read_events(events.path), "warning") == []
    pixels = _pixels(written[1])
    assert pixels.std() > 0 and np.abs(_pixels(written[0]) - pixels).mean() > 0
