"""Regularization images on a tiny real model: their loss is weighted by prior_loss_weight, and a run
with a reg folder trains the step count the plan promises and writes sd-scripts' reg metadata."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from safetensors import safe_open

from tests.conftest import write_config
from tests.trainer.helpers import of_type, train
from trainer.contract.config.schema import Config
from trainer.contract.dataset_scan import scan_dataset
from trainer.contract.plan import plan_steps
from trainer.contract.reg_images import scan_reg_images
from trainer.models import load_base_model
from trainer.networks import build_network
from trainer.step import StepOptions, apply_update, choose_precision, diffusion_loss, encode_captions

CPU = choose_precision("no")


@pytest.fixture(scope="module")
def sd15_with_lora(tiny_sd15):
    model = load_base_model(str(tiny_sd15), "sd15", torch.float32, torch.device("cpu"))
    torch.manual_seed(0)
    network = build_network(Config().network, model.unet, model.text_encoders, "sd15", False)
    network.attach()
    # A trained-looking LoRA (the up weights start at zero), so every weight has a gradient.
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.normal_(0, 0.05)
    return model, network


def _loss_and_grads(model, network, latents, conditioning, weights):
    network.zero_grad(set_to_none=True)
    torch.manual_seed(11)  # the same noise and timesteps in every call
    loss = diffusion_loss(model, latents, conditioning, None, CPU, StepOptions(), sample_weights=torch.tensor(weights))
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in network.parameters()]


def test_reg_loss_enters_the_step_weighted_by_prior_loss_weight(sd15_with_lora):
    model, network = sd15_with_lora
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(1))
    conditioning = encode_captions(model, ["zkmascot, red scarf", "creature"], CPU, False)
    own, own_grads = _loss_and_grads(model, network, latents, conditioning, [1.0, 0.0])
    reg, reg_grads = _loss_and_grads(model, network, latents, conditioning, [0.0, 1.0])
    assert own > 0 and reg > 0
    for weight in (0.0, 0.3, 1.0, 2.5):
        loss, grads = _loss_and_grads(model, network, latents, conditioning, [1.0, weight])
        # The batch mean of each image's loss, the reg image's times its weight (sd-scripts' loss_weights).
        assert torch.allclose(loss, own + weight * reg, rtol=1e-5)
        for grad, mine, theirs in zip(grads, own_grads, reg_grads):
            assert torch.allclose(grad, mine + weight * theirs, rtol=1e-4, atol=1e-9)


def test_with_weight_zero_a_reg_only_step_leaves_the_lora_as_it_was(sd15_with_lora):
    model, network = sd15_with_lora
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    conditioning = encode_captions(model, ["creature", "creature"], CPU, False)
    network.zero_grad(set_to_none=True)  # the module's network may carry another test's gradients
    params = list(network.parameters())
    optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.0)
    start = [p.detach().clone() for p in params]
    for _ in range(3):
        torch.manual_seed(5)
        apply_update(diffusion_loss(model, latents, conditioning, None, CPU, StepOptions(), sample_weights=torch.tensor([0.0, 0.0])),
                     optimizer, None, params, 1.0)
    assert all(torch.equal(p, s) for p, s in zip(params, start))
    torch.manual_seed(5)
    apply_update(diffusion_loss(model, latents, conditioning, None, CPU, StepOptions(), sample_weights=torch.tensor([1.0, 1.0])),
                 optimizer, None, params, 1.0)
    changed = sum(not torch.equal(p, s) for p, s in zip(params, start))
    assert changed == len(params)
    with torch.no_grad():  # the module's network is shared: put it back
        for p, s in zip(params, start):
            p.copy_(s)


def _reg_folder(root):
    """Three reg images (one captioned) in 1_creature and one in 2_blob: 5 reg samples before balancing."""
    for index, (folder, colour) in enumerate([("1_creature", (200, 40, 40)), ("1_creature", (40, 200, 40)),
                                              ("1_creature", (40, 40, 200)), ("2_blob", (90, 90, 90))]):
        (root / folder).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (128, 128) if index != 1 else (128, 192), colour).save(root / folder / f"r{index}.png")
    (root / "1_creature" / "r0.txt").write_text("creature, red")
    return root


def test_a_run_with_reg_images_trains_the_planned_steps_and_writes_their_metadata(tmp_path, tiny_sd15):
    from loratui.demo import write_dataset

    data = tmp_path / "data"
    write_dataset(data, count=3)
    reg = _reg_folder(tmp_path / "reg")
    config = write_config(tmp_path, tiny_sd15, data, dataset={"reg_path": str(reg), "repeats": 3},
                          training={"epochs": 1, "batch_size": 2, "prior_loss_weight": 0.5},
                          optimizer={"name": "adamw", "unet_lr": 1e-3, "text_encoder_lr": 0.0})
    run, events, status = train(config)
    assert status == 0, run.log.read_text()[-3000:]
    start = of_type(events, "start")[0]
    # 3 images × 3 = 9 training samples; the 4 reg images (5 samples) are cycled up to 9.
    plan = plan_steps(scan_dataset(data, 3).images, 128, 2, 1, reg_images=scan_reg_images(reg).images)
    assert (start["images"], start["samples_per_epoch"]) == (3, 9)
    assert (start["reg_images"], start["reg_samples_per_epoch"]) == (4, 9) == (plan.reg_images,
                                                                             plan.reg_samples_per_epoch)
    assert start["total_steps"] == plan.total_steps == of_type(events, "done")[0]["step"]
    assert start["formula_steps"] == plan.formula_steps == 9.0
    # The app's own assessment of the same config promises the same count.
    from loratui.assess import assess
    from trainer.contract.config.toml_io import load_config

    assert assess(load_config(config)[0]).plan.total_steps == start["total_steps"]
    with safe_open(str(run.final_lora("test")), "pt") as handle:
        meta = handle.metadata()
    assert meta["ss_num_train_images"] == "9" and meta["ss_num_reg_images"] == "5"
    assert json.loads(meta["ss_reg_dataset_dirs"]) == {"1_creature": {"n_repeats": 1, "img_count": 3},
                                                       "2_blob": {"n_repeats": 2, "img_count": 1}}
    assert meta["ss_prior_loss_weight"] == "0.5"
    # The reg folders are not the subject's: they stay out of the dataset's folders and tags.
    assert "1_creature" not in json.loads(meta["ss_dataset_dirs"])
    tags = {tag for folder in json.loads(meta["ss_tag_frequency"]).values() for tag in folder}
    assert "yellow creature" in tags and "creature" not in tags


def test_reg_images_keep_their_captions_or_class_word_and_never_get_the_trigger(tmp_path):
    from trainer.contract.reg_images import balance_reg_images
    from trainer.reg_batches import RegMarks

    reg = _reg_folder(tmp_path / "reg")
    own = tmp_path / "data" / "a.png"
    own.parent.mkdir()
    Image.new("RGB", (64, 64)).save(own)
    own.with_suffix(".txt").write_text("red scarf")
    train = scan_dataset(own.parent, 1).images
    chosen = balance_reg_images(1, scan_reg_images(reg).images)  # one training sample: only the first reg image
    marks = RegMarks.of(train + chosen, chosen, 0.25)
    assert marks.is_reg == (False, True) and marks.train_count == 1
    assert marks.captions(train + chosen, "zkmascot") == ["zkmascot, red scarf", "creature, red"]
    uncaptioned = [i for i in scan_reg_images(reg).images if i.caption_path is None]
    assert RegMarks.of(uncaptioned, uncaptioned, 1.0).captions(uncaptioned, "zkmascot") == \
        ["creature", "creature", "blob"]
    assert marks.weights([1, 0, 1]).tolist() == [0.25, 1.0, 0.25]
    assert RegMarks.of(train, [], 0.25).weights([0]) is None
    assert marks.start_fields([3, 2]) == {"images": 1, "samples_per_epoch": 3, "reg_images": 1,
                                          "reg_samples_per_epoch": 2}
