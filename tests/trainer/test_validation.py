"""The validation loss on real tiny runs: held-out images never train, the events come when asked,
and the loss is a fixed measurement of the LoRA, not of the dice."""

from __future__ import annotations

import math
import shutil

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from tests.trainer.helpers import of_type, train
from trainer.contract.dataset_scan import scan_dataset
from trainer.contract.validation_split import split_images

pytestmark = pytest.mark.slow

SPLIT = {"validation_split": 0.25, "validation_seed": 7}


def test_a_split_run_trains_exactly_as_a_run_without_the_held_out_images(tiny_sd15, dataset, tmp_path,
                                                                          make_config):
    """Held-out images are in no batch: the LoRA equals, bit for bit, one trained on a folder without them."""
    training = {"epochs": 2, "batch_size": 2, **SPLIT, "validate_every_n_steps": 2}
    run, events, status = train(make_config(tiny_sd15, dataset, training=training))
    assert status == 0, run.log.read_text()[-3000:]

    scanned = scan_dataset(dataset, 1, ".txt").images
    kept, held = split_images(scanned, SPLIT["validation_split"], SPLIT["validation_seed"])
    assert len(held) == 3 and len(kept) == 9  # floor(0.25 × 12)
    alone = tmp_path / "without-held-out"
    alone.mkdir()
    for image in kept:
        shutil.copy2(image.path, alone / image.path.name)
        shutil.copy2(image.caption_path, alone / image.caption_path.name)
    other_folder = tmp_path / "other"
    other_folder.mkdir()
    from tests.conftest import write_config
    reference, reference_events, reference_status = train(write_config(
        other_folder, tiny_sd15, alone, training={"epochs": 2, "batch_size": 2, "seed": 42}))
    assert reference_status == 0, reference.log.read_text()[-3000:]

    (start,) = of_type(events, "start")
    (reference_start,) = of_type(reference_events, "start")
    assert start["images"] == len(kept) and start["validation_images"] == len(held)
    assert start["total_steps"] == reference_start["total_steps"]
    from loratui.assess import assess
    from trainer.contract.config.toml_io import load_config
    plan = assess(load_config(run.config)[0]).plan  # the app's estimate counts what the run trained on
    assert (plan.images, plan.total_steps) == (start["images"], start["total_steps"])
    assert [e["loss"] for e in of_type(events, "step")] == [e["loss"] for e in of_type(reference_events, "step")]
    ours, theirs = load_file(run.final_lora("test")), load_file(reference.final_lora("test"))
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)

    # Validated every 2 steps and at the end of each epoch, each step once, each loss finite.
    total, per_epoch = start["total_steps"], start["batches_per_epoch"]
    expected = sorted({s for s in range(2, total + 1, 2)} | {per_epoch, total})
    validations = of_type(events, "validation")
    assert [e["step"] for e in validations] == expected
    assert all(math.isfinite(e["loss"]) and e["images"] == len(held) for e in validations)
    assert [e["epoch"] for e in validations] == [1 if s <= per_epoch else 2 for s in expected]
    assert not of_type(reference_events, "validation")

    with safe_open(str(run.final_lora("test")), "pt") as handle:
        meta = handle.metadata()
    assert meta["ss_validation_split"] == "0.25" and meta["ss_validation_seed"] == "7"
    assert meta["ss_num_validation_images"] == "3" and meta["ss_num_train_images"] == "9"
    assert meta["ss_validate_every_n_steps"] == "2" and meta["ss_validate_every_n_epochs"] == "1"
    assert meta["ss_max_validation_steps"] == "None"


def test_validation_every_n_epochs_and_at_the_end(tiny_sd15, dataset, make_config):
    """Every second epoch of three, and after the last although 3 is odd; no step-wise validation."""
    training = {"epochs": 3, "batch_size": 4, **SPLIT, "validate_every_n_epochs": 2}
    run, events, status = train(make_config(tiny_sd15, dataset, training=training))
    assert status == 0, run.log.read_text()[-3000:]
    epochs = {e["epoch"]: e["step"] for e in of_type(events, "epoch")}
    validations = of_type(events, "validation")
    assert [(e["epoch"], e["step"]) for e in validations] == [(2, epochs[2]), (3, epochs[3])]
    assert all(math.isfinite(e["loss"]) for e in validations)


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_unchanged_weights_measure_the_same_loss(arch, tiny_sd15, tiny_sdxl, dataset):
    """Fixed noise and timesteps: measuring twice gives the same number, the training generators are
    untouched, and changing the LoRA changes the number (it measures the LoRA)."""
    from trainer.contract.config.schema import Config
    from trainer.data import cache_latents
    from trainer.models import load_base_model
    from trainer.networks import build_network
    from trainer.step import choose_precision
    from trainer.validation import Validator

    model_path = tiny_sd15 if arch == "sd15" else tiny_sdxl
    config = Config()
    config.dataset.path, config.model.base = str(dataset), str(model_path)
    config.training.validation_split, config.training.batch_size = 0.25, 2
    precision = choose_precision("no")
    model = load_base_model(str(model_path), arch, torch.float32, precision.device, None, None)
    model.clip_skip, model.max_token_length = 1, 75
    network = build_network(config.network, model.unet, model.text_encoders, arch, False)
    network.attach()
    _, held = split_images(scan_dataset(dataset, 1, ".txt").images, 0.25, config.training.validation_seed)
    images, _ = cache_latents(held, model.vae, 64, True, False, False, None)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)

    class Events:
        def __init__(self):
            self.emitted = []

        def emit(self, kind, **fields):
            self.emitted.append((kind, fields))

    events = Events()
    validator = Validator(config, model, network, optimizer, precision, images, False, events)
    network.train()
    modes = [m.training for top in (model.unet, network) for m in top.modules()]
    before = torch.get_rng_state()
    first, second = validator.measure(), validator.measure()
    assert torch.equal(before, torch.get_rng_state())
    assert math.isfinite(first) and first == second
    assert [m.training for top in (model.unet, network) for m in top.modules()] == modes
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(0.05)
    assert validator.measure() != first
    validator.after_epoch(1, 10)
    validator.after_epoch(1, 10)  # the same weights at the same step are measured once
    assert [kind for kind, _ in events.emitted] == ["validation"]


def test_a_stopped_and_resumed_split_run_validates_as_an_uninterrupted_one(tiny_sd15, dataset, make_config):
    """Fixed noise across processes: the resumed run's validation losses are the uninterrupted run's."""
    from tests.trainer.helpers import new_run
    from tests.trainer.test_resume_and_cache import _run_trainer
    from trainer.contract.events import read_events

    config = make_config(tiny_sd15, dataset, training={"epochs": 2, "batch_size": 2, **SPLIT,
                                                        "validate_every_n_steps": 3})
    whole, whole_events, status = train(config)
    assert status == 0, whole.log.read_text()[-3000:]
    run = new_run(config)
    assert _run_trainer(run, stop_after_step=4) == 0
    assert _run_trainer(run, "--resume") == 0
    events = read_events(run.events)
    assert events[-1]["type"] == "done" and of_type(events, "stopped")
    # Readers keep the last event of a step (as for steps repeated after a kill).
    resumed = {e["step"]: e["loss"] for e in of_type(events, "validation")}
    uninterrupted = {e["step"]: e["loss"] for e in of_type(whole_events, "validation")}
    assert resumed.keys() == uninterrupted.keys()
    assert [resumed[s] for s in sorted(resumed)] == pytest.approx([uninterrupted[s] for s in sorted(resumed)],
                                                                   rel=1e-5)
