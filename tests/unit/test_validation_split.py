"""The validation split: which images are held out, and the bad splits refused before anything loads."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from trainer.contract.config.schema import Config
from trainer.contract.preflight import check_dataset
from trainer.contract.validation_split import held_out_count, split_images, split_problems


@dataclass(frozen=True)
class Image:
    path: Path


def _images(count: int) -> list[Image]:
    return [Image(Path(f"/data/img_{i:03d}.png")) for i in range(count)]


@pytest.mark.parametrize("images, split, held", [(12, 0.25, 3), (10, 0.3, 3), (100, 0.29, 29), (10, 0.15, 1),
                                                 (4, 0.2, 0), (1, 0.5, 0), (7, 0.5, 3), (5, 0.0, 0)])
def test_the_held_out_count_is_rounded_down(images, split, held):
    assert held_out_count(images, split) == held
    training, held_out = split_images(_images(images), split, 42)
    assert len(held_out) == held and len(training) == images - held


def test_the_split_is_disjoint_complete_ordered_and_fixed_by_the_seed():
    images = _images(40)
    training, held_out = split_images(images, 0.25, 7)
    assert not set(training) & set(held_out) and set(training) | set(held_out) == set(images)
    assert training == [i for i in images if i in training] and held_out == [i for i in images if i in held_out]
    assert split_images(list(reversed(images)), 0.25, 7)[1] == list(reversed(held_out))  # scan order is irrelevant
    assert split_images(images, 0.25, 7) == (training, held_out)
    assert split_images(images, 0.25, 8)[1] != held_out


def test_a_split_that_rounds_to_no_image_is_refused_with_what_to_do():
    (problem,) = split_problems(4, 0.2)
    assert problem.field == "training.validation_split"
    assert "no validation image" in problem.message and "0.25" in problem.message
    (problem,) = split_problems(1, 0.5)
    assert problem.field == "training.validation_split" and "add images" in problem.message
    assert split_problems(4, 0.25) == [] and split_problems(4, 0.0) == []


def test_a_split_leaving_nothing_to_train_on_is_refused():
    (problem,) = split_problems(3, 1.0)  # beyond the schema's limit, but the check stands on its own
    assert problem.field == "training.validation_split" and "none to train on" in problem.message


def _dataset(folder: Path, count: int) -> Path:
    from PIL import Image as PILImage
    folder.mkdir()
    for i in range(count):
        PILImage.new("RGB", (64, 64), (i * 40, 0, 0)).save(folder / f"{i}.png")
    return folder


def test_preflight_names_the_field_for_a_small_dataset(tmp_path):
    config = Config()
    config.dataset.path = str(_dataset(tmp_path / "data", 3))
    config.training.validation_split = 0.3
    problems, scan = check_dataset(config)
    assert [p.field for p in problems] == ["training.validation_split"] and len(scan.images) == 3
    config.training.validation_split = 0.34
    assert check_dataset(config)[0] == []


def test_the_app_plans_only_the_training_images(tmp_path):
    from loratui.assess import assess
    config = Config()
    config.dataset.path = str(_dataset(tmp_path / "data", 10))
    config.dataset.repeats, config.training.batch_size, config.training.epochs = 1, 1, 1
    config.training.validation_split = 0.3
    assessment = assess(config, gpus=())
    assert (assessment.plan.images, assessment.plan.total_steps) == (7, 7)
    from loratui.summary import summary_line
    assert summary_line(assessment).startswith("7 images + 3 held out for validation · 7 steps")


def test_the_trainer_refuses_a_bad_split_before_loading_anything(tmp_path):
    """The trainer's own preflight names the field and exits, with no model to load (none exists)."""
    from trainer.contract.rundir import create_run_dir
    config = Config()
    config.dataset.path = str(_dataset(tmp_path / "data", 3))
    config.model.base = str(tmp_path / "no-model-needed")
    config.output.dir = str(tmp_path / "runs")
    config.training.validation_split = 0.2
    run = create_run_dir(config)
    done = subprocess.run([sys.executable, "-m", "trainer", str(run.root)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert "training.validation_split" in done.stdout + done.stderr + run.events.read_text()
    assert "Traceback" not in done.stdout + done.stderr
