"""Sampling as the monitor sees it: each picture numbered, a stop taken between two pictures, and
the metadata of what the run saved saying how it really computed.

The runs train the tiny SD1.5 in a child process, as the app starts them. Each set has many
pictures so that a stop sent after the first one lands well before the set could end by itself.
"""

from __future__ import annotations

import signal

import pytest
from safetensors import safe_open

from tests.trainer.helpers import finish_trainer, new_run, of_type, start_trainer, wait_for
from trainer.checkpoint import training_metadata
from trainer.contract.config.schema import Config
from trainer.contract.control import request
from trainer.contract.events import read_events
from trainer.sampling import STRENGTHS

PROMPTS = [f"zkmascot, picture {n}" for n in range(8)]
PICTURES = len(PROMPTS) * len(STRENGTHS)


@pytest.mark.slow
@pytest.mark.parametrize("when", ["asked", "epoch"])
def test_a_stop_while_samples_are_drawn_ends_the_set_then_saves_and_stops(when, tiny_sd15, dataset, make_config):
    # 12 images at batch 4: three steps an epoch. "asked": a "sample now" waiting before the start is taken
    # after step 1; "epoch": the set drawn after the first epoch (step 3), with two epochs still to go.
    config = make_config(tiny_sd15, dataset, dataset={"resolution": 64}, training={"epochs": 3, "batch_size": 4},
                         output={"sample_prompts": PROMPTS, "sample_steps": 8,
                                 "sample_every_n_epochs": 1 if when == "epoch" else 0})
    run = new_run(config)
    if when == "asked":
        request(run.root, "sample")
    process = start_trainer(run)
    try:
        assert wait_for(lambda: of_type(read_events(run.events), "sample"), timeout=240), run.log.read_text()[-3000:]
        process.send_signal(signal.SIGTERM)
    finally:
        status = finish_trainer(process)
    assert status == 0, run.log.read_text()[-3000:]
    events = read_events(run.events)

    # Each picture says which of how many it is, so the monitor can show "sample 2/16".
    samples = of_type(events, "sample")
    assert [event["index"] for event in samples] == list(range(1, len(samples) + 1))
    assert {event["total"] for event in samples} == {PICTURES}
    # The set was cut short by the stop: the picture being drawn was finished, no more.
    assert 1 <= len(samples) < PICTURES
    stop_step = 1 if when == "asked" else 3
    # No step was trained after the stop: the set, then the save and the final event of a stop.
    sampling = next(i for i, e in enumerate(events) if e.get("phase") == "sampling")
    assert [e["type"] for e in events[sampling + 1:]] == ["sample"] * len(samples) + ["checkpoint", "stopped"]
    assert of_type(events, "step")[-1]["step"] == stop_step
    saved, stopped = events[-2], events[-1]
    assert saved["reason"] == "stopped" and stopped["step"] == stop_step and stopped["checkpoint"] == saved["path"]
    assert run.resume_state.is_file()  # "r" resumes it, as after any stop

    # A CPU computes in fp32 whatever the config asked (bf16 here): the file says so, in sd-scripts' word.
    assert of_type(events, "start")[0]["precision"] == "fp32"
    with safe_open(saved["path"], "pt") as lora:
        assert lora.metadata()["ss_mixed_precision"] == "no"


def test_the_metadata_names_the_precision_the_run_computed_in():
    common = dict(resolution=512, images=10, total_steps=100, batches_per_epoch=10, tag_frequency={},
                  started_at=0.0, session_id="1")
    config = Config()
    assert config.training.mixed_precision == "bf16"
    assert training_metadata(config, "sd15", **common, precision="fp32")["ss_mixed_precision"] == "no"
    assert training_metadata(config, "sd15", **common, precision="fp16")["ss_mixed_precision"] == "fp16"
    assert training_metadata(config, "sd15", **common, precision="bf16")["ss_mixed_precision"] == "bf16"
