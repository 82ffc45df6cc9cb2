"""Bad masks stop `loratui train` and `python -m trainer` before anything loads, naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

from PIL import Image

from tests.conftest import write_config
from trainer.__main__ import main as trainer_main
from trainer.contract.events import read_events


def test_masked_loss_without_masks_or_with_a_wrong_size_mask_starts_nothing(tmp_path, tiny_sd15, dataset,
                                                                            monkeypatch):
    monkeypatch.setattr(os, "environ", dict(os.environ))  # main() runs in this process; keep what it sets
    masks = tmp_path / "masks"
    masks.mkdir()
    first = sorted(p for p in dataset.iterdir() if p.suffix == ".png")[0]
    with Image.open(first) as image:
        Image.new("L", (image.width + 8, image.height), 255).save(masks / first.name)
    cases = [({"masked_loss": True}, "dataset.masked_loss: none of the images has an alpha channel"),
             ({"masked_loss": True, "mask_path": str(masks)}, "dataset.mask_path: 1 mask is not the size"),
             ({"masked_loss": True, "mask_path": str(tmp_path / "nowhere")}, "dataset.mask_path: ")]
    for index, (values, named) in enumerate(cases):
        folder = tmp_path / f"case{index}"
        folder.mkdir()
        config = write_config(folder, tiny_sd15, dataset, dataset=values)
        result = subprocess.run([sys.executable, "-m", "loratui", "train", str(config), "--detach"],
                                capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
        assert result.returncode == 2 and f"loratui: {named}" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and not (folder / "runs").exists()

        run = folder / "run"
        run.mkdir()
        (run / "config.toml").write_text(config.read_text())
        with warnings.catch_warnings():
            assert trainer_main([str(run)]) == 2
        [event] = read_events(run / "events.jsonl")
        assert event["type"] == "error" and event["code"] == "input" and named in event["message"]
        assert sorted(p.name for p in run.iterdir()) == ["config.toml", "events.jsonl"]  # nothing loaded or made
