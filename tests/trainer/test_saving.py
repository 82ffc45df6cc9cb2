"""Saving LoRA files: atomic under failure, the metadata sd-scripts writes, nothing overwritten."""

from __future__ import annotations

import errno

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import trainer.checkpoint as checkpoint
from tests.trainer.helpers import of_type, train
from trainer.networks.lora import LoRANetwork, NetworkSpec

REQUIRED_METADATA = [
    "ss_network_module", "ss_network_dim", "ss_network_alpha", "ss_network_args", "ss_base_model_version",
    "ss_sd_model_name", "ss_learning_rate", "ss_unet_lr", "ss_text_encoder_lr", "ss_num_train_images",
    "ss_num_epochs", "ss_epoch", "ss_steps", "ss_max_train_steps", "ss_batch_size_per_device", "ss_resolution",
    "ss_optimizer", "ss_lr_scheduler", "ss_mixed_precision", "ss_seed", "ss_tag_frequency", "ss_dataset_dirs",
    "ss_output_name", "ss_training_started_at", "ss_training_finished_at",
]


def _network():
    unet = torch.nn.Module()
    unet.config = type("C", (), {"layers_per_block": 1, "up_block_types": []})()
    block = type("Transformer2DModel", (torch.nn.Module,), {})()
    block.proj_in = torch.nn.Linear(4, 4)
    unet.add_module("mid", block)
    return LoRANetwork(unet, [], "sd15", NetworkSpec(2, 1.0), train_text_encoders=False)


def test_a_save_that_fails_midway_leaves_the_good_file(tmp_path, monkeypatch):
    target = tmp_path / "lora.safetensors"
    network = _network()
    checkpoint.save_lora(target, network, {"ss_x": "1"}, epoch=1, step=1, precision="fp16")
    good = target.read_bytes()

    def disk_full(tensors, filename, metadata=None):
        save_file(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as handle:
            handle.truncate(10)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", disk_full)
    with pytest.raises(OSError, match="No space left"):
        checkpoint.save_lora(target, network, {"ss_x": "2"}, epoch=2, step=2, precision="fp16")
    assert target.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["lora.safetensors"]


def test_saved_files_carry_every_metadata_key_as_text(trained_sd15):
    run, events, status = trained_sd15.run, trained_sd15.events, trained_sd15.status
    assert status == 0
    for path in [run.final_lora("test"), *run.checkpoints.iterdir()]:
        with safe_open(str(path), "pt") as handle:
            meta = handle.metadata()
        assert [k for k in REQUIRED_METADATA if k not in meta] == []
        assert all(isinstance(v, str) for v in meta.values())
    with safe_open(str(run.checkpoint("test", 1)), "pt") as handle:
        assert handle.metadata()["ss_epoch"] == "1"
    with safe_open(str(run.final_lora("test")), "pt") as handle:
        meta = handle.metadata()
    assert meta["ss_epoch"] == "2" and meta["ss_steps"] == str(len(of_type(events, "step")))
    assert meta["ss_resolution"] == "(128, 128)"


def test_every_option_at_once_trains(tiny_sd15, dataset, make_config):
    run, events, status = train(make_config(
        tiny_sd15, dataset, model={"clip_skip": 2},
        training={"min_snr_gamma": 5.0, "noise_offset": 0.05, "gradient_checkpointing": True, "epochs": 1},
        dataset={"flip": True, "caption_dropout": 0.1, "keep_tokens": 2, "bucket_upscale": True},
        scheduler={"name": "cosine_with_restarts", "restarts": 2, "warmup_steps": 2},
        optimizer={"name": "adamw8bit"}, output={"save_precision": "bf16"}))
    assert status == 0, run.log.read_text()[-2000:]
    assert events[-1]["type"] == "done"
    tensors = load_file(run.final_lora("test"))
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}
    lrs = [s["lr"] for s in of_type(events, "step")]
    assert lrs[0] < lrs[1]  # warm-up rises


def test_metadata_describes_the_settings_that_shaped_the_weights():
    from trainer.contract.config.schema import Config, with_value

    config = Config()
    for key, value in [("model.clip_skip", 2), ("training.noise_offset", 0.05), ("training.min_snr_gamma", 5.0),
                       ("dataset.bucket_upscale", True), ("dataset.caption_dropout", 0.1),
                       ("training.batch_size", 2), ("training.num_processes", 3)]:
        config = with_value(config, key, value)
    meta = checkpoint.training_metadata(config, "sd15", resolution=512, images=10, total_steps=100,
                                        batches_per_epoch=10, tag_frequency={}, started_at=0.0, session_id="1")
    assert (meta["ss_clip_skip"], meta["ss_noise_offset"], meta["ss_min_snr_gamma"]) == ("2", "0.05", "5.0")
    assert (meta["ss_bucket_no_upscale"], meta["ss_caption_dropout_rate"]) == ("False", "0.1")
    assert (meta["ss_batch_size_per_device"], meta["ss_total_batch_size"]) == ("2", "6")
    # Features that are off are written as sd-scripts writes them.
    plain = checkpoint.training_metadata(Config(), "sdxl", resolution=1024, images=10, total_steps=100,
                                         batches_per_epoch=10, tag_frequency={}, started_at=0.0, session_id="1")
    assert (plain["ss_clip_skip"], plain["ss_noise_offset"], plain["ss_min_snr_gamma"]) == ("None", "None", "None")
    assert plain["ss_bucket_no_upscale"] == "True"


def test_folders_are_listed_as_sd_scripts_lists_them(tmp_path):
    import json

    from trainer.contract.config.schema import Config

    root = tmp_path / "mychar"
    images = [(root / "a.png", 10, "mychar, red hair"), (root / "b.png", 10, "mychar, red hair, smile"),
              (root / "3_wide" / "c.png", 3, "mychar, smile")]
    folders = checkpoint.dataset_folders(root, images)
    meta = checkpoint.training_metadata(Config(), "sd15", resolution=512, images=3, total_steps=10,
                                        batches_per_epoch=10, tag_frequency={}, started_at=0.0, session_id="1",
                                        folders=folders)
    assert json.loads(meta["ss_dataset_dirs"]) == {"mychar": {"n_repeats": 10, "img_count": 2},
                                                   "3_wide": {"n_repeats": 3, "img_count": 1}}
    assert json.loads(meta["ss_tag_frequency"]) == {"mychar": {"mychar": 2, "red hair": 2, "smile": 1},
                                                    "3_wide": {"mychar": 1, "smile": 1}}
    assert meta["ss_num_train_images"] == "23"  # every image once per repeat, as sd-scripts counts
