"""Frozen text encoders whose outputs are cached wait on the CPU; sampling fetches them and puts them back."""

from __future__ import annotations

import contextlib

import pytest
import torch

from trainer.models import (BaseModel, encode_text, load_base_model, on_device, place_for_training,
                            text_encoder_device, tokenize)
from trainer.sampling import _sampling_mode

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_text_encoders_leave_the_gpu_only_when_their_outputs_are_cached():
    assert text_encoder_device(CUDA, outputs_cached=True) == CPU
    assert text_encoder_device(CUDA, outputs_cached=False) == CUDA
    assert text_encoder_device(CPU, outputs_cached=True) == CPU


class Recorder(torch.nn.Module):
    """A module that records where it is sent instead of going (this machine may have no GPU)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.moves: list[torch.device] = []

    def to(self, device):  # noqa: D102 - records the move only
        self.moves.append(torch.device(device))
        return self


class _Network:
    def set_multiplier(self, value: float) -> None:
        self.multiplier = value


def _recorded_model() -> BaseModel:
    return BaseModel("sdxl", [None, None], [Recorder(), Recorder()], Recorder(), Recorder(), None)


@pytest.mark.parametrize("fail", [False, True], ids=["sampled", "failed"])
def test_sampling_brings_the_vae_and_text_encoders_to_the_device_and_back(fail):
    model = _recorded_model()
    device = torch.device("meta")  # any device but the CPU the recorders are on
    with pytest.raises(RuntimeError) if fail else contextlib.nullcontext():
        with _sampling_mode(model, _Network(), device):
            for module in (model.vae, *model.text_encoders):
                assert module.moves == [device]
            if fail:
                raise RuntimeError("out of memory while sampling")
    for module in (model.vae, *model.text_encoders):
        assert module.moves == [device, CPU]  # back where it was, after a failure too
    assert model.unet.moves == []  # the UNet trains on the device: it never moves


def test_on_device_returns_each_module_to_its_own_device():
    first, second = Recorder(), Recorder()
    with on_device([first, second], torch.device("meta")):
        pass
    assert first.moves == second.moves == [torch.device("meta"), CPU]


@pytest.mark.parametrize("cached", [True, False])
def test_training_places_the_unet_on_the_device_and_the_encoders_where_they_are_needed(cached):
    model = _recorded_model()
    device = torch.device("meta")
    place_for_training(model, device, text_outputs_cached=cached)
    assert model.unet.moves == [device] and model.vae.moves == [CPU]
    for encoder in model.text_encoders:
        assert encoder.moves == [CPU if cached else device]


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_text_is_encoded_where_the_encoders_are_not_where_the_unet_is(arch, tiny_sd15, tiny_sdxl):
    model = load_base_model(str(tiny_sd15 if arch == "sd15" else tiny_sdxl), arch, torch.float32, CPU)
    reference = encode_text(model, tokenize(model, ["zkmascot, red scarf"]))
    model.unet.to("meta")  # the UNet somewhere else (as on a GPU while the encoders wait on the CPU)
    hidden, pooled = encode_text(model, tokenize(model, ["zkmascot, red scarf"]))
    assert hidden.device == CPU and torch.equal(hidden, reference[0])
    if arch == "sdxl":
        assert torch.equal(pooled, reference[1])


@pytest.mark.slow
def test_a_run_with_cached_text_outputs_samples_with_its_parked_encoders(tiny_sdxl, dataset, make_config):
    # On a GPU the encoders wait on the CPU here and sampling must fetch them; on a CPU the same code runs.
    from tests.trainer.helpers import of_type, train

    config = make_config(tiny_sdxl, dataset, optimizer={"text_encoder_lr": 0.0},
                         dataset={"shuffle_captions": False, "resolution": 64},
                         training={"epochs": 1, "batch_size": 4},
                         output={"sample_every_n_epochs": 1, "sample_steps": 2, "sample_prompts": ["zkmascot"]})
    run, events, status = train(config)
    assert status == 0, run.log.read_text()[-3000:]
    assert of_type(events, "start")[0]["text_encoder_outputs_cached"] is True
    assert len(of_type(events, "sample")) == 2 and not of_type(events, "warning")
