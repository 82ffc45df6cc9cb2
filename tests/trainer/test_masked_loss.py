"""Masked loss on a tiny real model: a black region contributes no loss and no gradient, a white
mask changes nothing, and each mask is cropped, scaled and mirrored exactly like its image."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.trainer.helpers import of_type, train
from trainer.contract.config.schema import Config
from trainer.contract.dataset_scan import scan_dataset
from trainer.data import cache_latents
from trainer.masks import attach_masks
from trainer.models import encode_text, load_base_model, tokenize
from trainer.networks import build_network
from trainer.step import StepOptions, choose_precision, diffusion_loss

CPU = choose_precision("no")


@pytest.fixture(scope="module")
def with_lora(tiny_sd15):
    """The tiny SD1.5 with a LoRA whose weights are all non-zero, so every one of them gets a gradient."""
    torch.manual_seed(0)
    model = load_base_model(str(tiny_sd15), "sd15", torch.float32, torch.device("cpu"))
    network = build_network(Config().network, model.unet, model.text_encoders, "sd15", False)
    network.attach()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model, network


def _step(model, network, latents, mask, change=None):
    """One step's loss and every LoRA gradient, with the same noise and timesteps each time;
    ``change`` is added to the UNet's prediction (what the model "predicts" there)."""
    network.zero_grad(set_to_none=True)
    handle = None
    if change is not None:
        handle = model.unet.register_forward_hook(lambda module, args, out: type(out)(sample=out.sample + change))
    try:
        with torch.no_grad():
            conditioning = encode_text(model, tokenize(model, ["zk", "zk"]))
        torch.manual_seed(1234)
        loss = diffusion_loss(model, latents, conditioning, None, CPU, StepOptions(), mask=mask)
        loss.backward()
    finally:
        if handle is not None:
            handle.remove()
    grads = {name: p.grad.clone() for name, p in network.named_parameters() if p.requires_grad}
    return loss.detach(), grads


def _same(a, b) -> bool:
    return torch.equal(a[0], b[0]) and a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


def test_whatever_is_predicted_under_the_mask_the_loss_and_every_lora_gradient_stay_the_same(with_lora):
    model, network = with_lora
    torch.manual_seed(0)
    latents = torch.randn(2, 4, 16, 16)
    mask = torch.ones(2, 1, 16, 16)
    mask[0, :, :, :7] = 0      # the first image: its left columns are background
    mask[1, :, 9:, 3:12] = 0   # the second: a block at the bottom
    black = (1 - mask).expand(2, 4, 16, 16)
    wild = torch.randn(2, 4, 16, 16) * 50

    plain = _step(model, network, latents, mask)
    assert all(g.abs().sum() > 0 for g in plain[1].values()), "every LoRA weight must get a gradient"
    under_mask = _step(model, network, latents, mask, change=wild * black)
    # The strong property: nothing the model outputs under black pixels reaches the loss or any gradient.
    assert _same(plain, under_mask)
    # And it is the mask that does it: the same change where the mask is white changes both.
    outside = _step(model, network, latents, mask, change=wild * (1 - black))
    assert not torch.equal(plain[0], outside[0])
    assert all(not torch.equal(plain[1][k], outside[1][k]) for k in plain[1])
    # Without the mask, the change under it is trained on like anything else.
    assert not _same(_step(model, network, latents, None), _step(model, network, latents, None, change=wild * black))


def test_the_gradient_reaching_the_prediction_is_zero_exactly_where_the_mask_is_black(with_lora):
    model, network = with_lora
    torch.manual_seed(0)
    latents = torch.randn(2, 4, 16, 16)
    mask = torch.ones(2, 1, 16, 16)
    mask[:, :, 4:10, 2:14] = 0
    mask[1, :, 0, 0] = 0.5  # grey weighs the pixel, it does not drop it
    kept = {}

    def keep(module, args, out):
        out.sample.retain_grad()
        kept["prediction"] = out.sample

    handle = model.unet.register_forward_hook(keep)
    try:
        _step(model, network, latents, mask)
    finally:
        handle.remove()
    grad = kept["prediction"].grad
    black = (mask == 0).expand_as(grad)
    assert (grad[black] == 0).all()
    assert (grad[~black] != 0).all()


def test_an_all_white_mask_is_the_same_as_no_mask(with_lora):
    model, network = with_lora
    torch.manual_seed(0)
    latents = torch.randn(2, 4, 16, 16)
    assert _same(_step(model, network, latents, None), _step(model, network, latents, torch.ones(2, 1, 16, 16)))


def test_masks_are_cropped_scaled_and_mirrored_exactly_like_their_images(tmp_path, tiny_sd15):
    root, masks = tmp_path / "data", tmp_path / "masks"
    (root / "3_zk").mkdir(parents=True)
    # 384x256, trained square at 128: scaled by half to 192x128, then the middle 128 columns kept
    # (x 32..160 of the scaled image). A black band at x 128..160 of the original lands at x 64..80
    # scaled, 32..48 in the crop: latent columns 4 and 5. One at 136..152 (a half-covered pair) gives 0.5.
    cut = Image.new("RGBA", (384, 256), (200, 30, 30, 255))
    cut.paste((200, 30, 30, 0), (128, 0, 160, 256))
    cut.save(root / "cut.png")
    Image.new("RGB", (384, 256), (30, 200, 30)).save(root / "3_zk" / "half.png")
    mask = Image.new("L", (384, 256), 255)
    mask.paste(0, (136, 0, 152, 256))
    (masks / "3_zk").mkdir(parents=True)
    mask.save(masks / "3_zk" / "half.png")
    Image.new("RGB", (128, 128), (30, 30, 200)).save(root / "none.png")

    vae = load_base_model(str(tiny_sd15), "sd15", torch.float32, torch.device("cpu")).vae
    scan = scan_dataset(root, 1)
    images, _ = cache_latents(scan.images, vae, 128, False, False, True, None)
    by_name = {image.source.path.name: image for image in images}

    assert attach_masks([by_name["cut.png"]], root, "") == []  # alpha channel
    expected = torch.ones(1, 16, 16)
    expected[:, :, 4:6] = 0
    assert torch.equal(by_name["cut.png"].mask, expected)
    assert torch.equal(by_name["cut.png"].flipped_mask, expected.flip(-1))
    assert torch.equal(by_name["cut.png"].flipped_mask[:, :, 10:12], torch.zeros(1, 16, 2))

    assert attach_masks([by_name["half.png"], by_name["none.png"]], root, str(masks)) == [root / "none.png"]
    expected = torch.ones(1, 16, 16)
    expected[:, :, 4:6] = 0.5
    assert torch.equal(by_name["half.png"].mask, expected)
    assert by_name["none.png"].mask is None  # trains as a whole


def test_a_run_with_white_masks_trains_the_very_same_lora_as_one_without(tmp_path, tiny_sd15, make_config):
    root, masks = tmp_path / "data", tmp_path / "masks"
    root.mkdir()
    masks.mkdir()
    for index, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200)]):
        Image.new("RGB", (128, 128), colour).save(root / f"{index}.png")
        (root / f"{index}.txt").write_text("zkmascot, plain")
        if index:  # image 0 has no mask: it trains as a whole, and the run says so
            Image.new("L", (128, 128), 255).save(masks / f"{index}.png")
    settings = {"training": {"epochs": 1, "batch_size": 1}}
    plain_run, _, status = train(make_config(tiny_sd15, root, dataset={"flip": True}, **settings))
    assert status == 0
    masked_run, events, status = train(make_config(tiny_sd15, root, dataset={"flip": True, "masked_loss": True,
                                                                              "mask_path": str(masks)}, **settings))
    assert status == 0
    [warning] = [w for w in of_type(events, "warning") if w["code"] == "images_without_mask"]
    assert warning["files"] == [str(root / "0.png")]
    plain = load_file(str(plain_run.final_lora("test")))
    masked = load_file(str(masked_run.final_lora("test")))
    assert plain.keys() == masked.keys()
    assert all(torch.equal(plain[k], masked[k]) for k in plain)


def test_a_changed_mask_is_used_even_when_the_latents_come_from_the_disk_cache(tmp_path, tiny_sd15):
    root, masks, cache = tmp_path / "data", tmp_path / "masks", tmp_path / "cache"
    root.mkdir()
    masks.mkdir()
    Image.new("RGB", (128, 128), (200, 30, 30)).save(root / "a.png")
    Image.new("L", (128, 128), 255).save(masks / "a.png")
    vae = load_base_model(str(tiny_sd15), "sd15", torch.float32, torch.device("cpu")).vae
    scan = scan_dataset(root, 1)
    first, report = cache_latents(scan.images, vae, 128, False, False, False, cache)
    assert report.encoded == 1
    attach_masks(first, root, str(masks))
    assert torch.equal(first[0].mask, torch.ones(1, 16, 16))

    Image.new("L", (128, 128), 0).save(masks / "a.png")  # the mask is redrawn; the image is not
    again, report = cache_latents(scan.images, vae, 128, False, False, False, cache)
    assert report.reused == 1 and torch.equal(again[0].latents, first[0].latents)
    attach_masks(again, root, str(masks))
    assert torch.equal(again[0].mask, torch.zeros(1, 16, 16))
