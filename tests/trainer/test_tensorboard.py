"""TensorBoard logging: a real tiny run, read back with TensorBoard's own reader."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.trainer.helpers import of_type, train
from trainer.tensorboard_log import TENSORBOARD_FOLDER

pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")


def _read(folder):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


@pytest.mark.slow
def test_a_run_logs_its_loss_learning_rate_and_samples(tiny_sd15, dataset, make_config):
    config = make_config(tiny_sd15, dataset, dataset={"resolution": 64}, training={"epochs": 2, "batch_size": 4},
                         output={"tensorboard": True, "sample_every_n_epochs": 2, "sample_steps": 2})
    run, events, status = train(config)
    assert status == 0, run.log.read_text()[-3000:]

    logged = _read(run.root / TENSORBOARD_FOLDER)
    steps = of_type(events, "step")
    loss = logged.Scalars("loss/step")
    # Every step's loss, at its step number, as the events file has it.
    assert [s.step for s in loss] == [e["step"] for e in steps]
    assert [s.value for s in loss] == pytest.approx([e["loss"] for e in steps], rel=1e-6)
    assert [s.value for s in logged.Scalars("learning_rate/unet")] == pytest.approx([e["lr"] for e in steps])
    assert [s.value for s in logged.Scalars("loss/epoch_mean")] == pytest.approx(
        [e["mean_loss"] for e in of_type(events, "epoch")], rel=1e-6)

    samples = of_type(events, "sample")
    assert samples
    image_tags = logged.Tags()["images"]
    assert sorted(image_tags) == sorted(f"samples/{e['path'].rsplit('/', 1)[1][:-4]}" for e in samples)
    first = logged.Images(image_tags[0])[0]
    assert (first.width, first.height) == (64, 64) and first.step == samples[0]["step"]


def test_without_the_package_the_option_is_named_before_anything_starts(tiny_sd15, dataset, make_config):
    config = make_config(tiny_sd15, dataset, output={"tensorboard": True})
    # The run's process, with the tensorboard package hidden from it as on a box without it.
    from tests.trainer.helpers import new_run
    from trainer.contract.events import read_events

    run = new_run(config)
    hide = "import sys, runpy; sys.modules['tensorboard'] = None; sys.argv = ['trainer', sys.argv[1]]; " \
           "runpy.run_module('trainer', run_name='__main__')"
    result = subprocess.run([sys.executable, "-c", hide, str(run.root)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    (error,) = of_type(read_events(run.events), "error")
    assert error["code"] == "input" and "output.tensorboard" in error["message"] and "pip install" in error["message"]
    assert not (run.root / TENSORBOARD_FOLDER).exists()


def test_the_app_names_the_missing_package_before_launch(tiny_sd15, dataset, make_config, monkeypatch):
    import sys

    from trainer.contract.config.toml_io import load_config
    from trainer.contract.preflight import check_output

    config, _ = load_config(make_config(tiny_sd15, dataset, output={"tensorboard": True}))
    assert check_output(config) == []
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as on a box without it
    (problem,) = check_output(config)
    assert problem.field == "output.tensorboard" and "pip install tensorboard" in problem.message


def test_validation_losses_are_mirrored_at_their_steps(tmp_path):
    """The validation curve is a TensorBoard scalar too, at the step each validation followed."""
    from trainer.contract.events import EventWriter
    from trainer.tensorboard_log import TensorBoardEvents

    with EventWriter(tmp_path / "events.jsonl") as inner:
        events = TensorBoardEvents(inner, tmp_path / TENSORBOARD_FOLDER)
        for step, loss in ((10, 0.25), (20, 0.2), (30, None)):  # a loss that was not finite is left out
            events.emit("validation", step=step, epoch=1, loss=loss, images=2, timesteps=5)
        events.close()
    logged = _read(tmp_path / TENSORBOARD_FOLDER).Scalars("loss/validation")
    assert [(s.step, s.value) for s in logged] == [(10, pytest.approx(0.25)), (20, pytest.approx(0.2))]
