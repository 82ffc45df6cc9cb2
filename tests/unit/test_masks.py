"""Masked loss before anything loads: where masks are found, the preflight's refusals, the scan's report."""

from __future__ import annotations

import pytest
from PIL import Image

from loratui.dataset import scan_folder
from trainer.contract.config.schema import Config, with_value
from trainer.contract.dataset_scan import scan_dataset
from trainer.contract.masks import mask_sources
from trainer.contract.preflight import preflight


@pytest.fixture
def model_folder(tmp_path):
    folder = tmp_path / "model"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    return folder


def _image(path, size=(64, 48), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, (120, 60, 30, 255)[:len(mode)] if mode != "L" else 128).save(path)
    return path


def _dataset(tmp_path):
    """Two images at the top, one in a 5_zk sub-folder; all plain RGB (no alpha)."""
    root = tmp_path / "data"
    for path in (root / "a.png", root / "b.jpg", root / "5_zk" / "c.png"):
        _image(path)
    return root


def _config(model, dataset, out, **dataset_values):
    config = with_value(Config(), "model.base", str(model))
    config = with_value(config, "dataset.path", str(dataset))
    config = with_value(config, "output.dir", str(out))
    for key, value in dataset_values.items():
        config = with_value(config, f"dataset.{key}", value)
    return config


def _problems(config):
    return [(p.field, p.message) for p in preflight(config).problems]


def test_masks_mirror_the_sub_folders_whatever_their_format(tmp_path):
    root = _dataset(tmp_path)
    masks = tmp_path / "masks"
    _image(masks / "a.webp", mode="L")
    _image(masks / "5_zk" / "c.jpg", mode="L")
    _image(masks / "c.png", mode="L")  # same name, wrong folder: not c's mask
    scan = scan_dataset(root, 1)
    found = dict(zip([i.path.name for i in scan.images], mask_sources(scan.images, root, str(masks))))
    assert found == {"a.png": masks / "a.webp", "b.jpg": None, "c.png": masks / "5_zk" / "c.jpg"}


def test_without_a_mask_folder_the_alpha_channel_is_the_mask(tmp_path):
    root = tmp_path / "data"
    _image(root / "cut.png", mode="RGBA")
    _image(root / "grey_alpha.png", mode="LA")
    _image(root / "plain.png")
    scan = scan_dataset(root, 1)
    sources = mask_sources(scan.images, root, "")
    assert {i.path.name: s for i, s in zip(scan.images, sources)} == {
        "cut.png": root / "cut.png", "grey_alpha.png": root / "grey_alpha.png", "plain.png": None}


def test_good_masks_pass_and_masked_loss_off_checks_nothing(tmp_path, model_folder):
    root = _dataset(tmp_path)
    masks = tmp_path / "masks"
    _image(masks / "a.png", mode="L")
    out = tmp_path / "runs"
    assert _problems(_config(model_folder, root, out, masked_loss=True, mask_path=str(masks))) == []
    # Off, the mask settings are not looked at at all: not even a folder that is not there.
    assert _problems(_config(model_folder, root, out, mask_path=str(tmp_path / "nowhere"))) == []


def test_a_missing_mask_folder_is_named(tmp_path, model_folder):
    config = _config(model_folder, _dataset(tmp_path), tmp_path / "runs", masked_loss=True,
                     mask_path=str(tmp_path / "nowhere"))
    [(field, message)] = _problems(config)
    assert field == "dataset.mask_path" and "nowhere does not exist" in message


def test_a_mask_of_another_size_is_named_with_both_sizes(tmp_path, model_folder):
    root = _dataset(tmp_path)
    masks = tmp_path / "masks"
    _image(masks / "a.png", size=(64, 48), mode="L")
    _image(masks / "5_zk" / "c.png", size=(48, 64), mode="L")
    [(field, message)] = _problems(_config(model_folder, root, tmp_path / "runs", masked_loss=True,
                                           mask_path=str(masks)))
    assert field == "dataset.mask_path"
    assert "1 mask is not the size of its image" in message and f"{masks / '5_zk' / 'c.png'} is 48x64, its image c.png 64x48" in message


def test_an_unreadable_mask_is_named(tmp_path, model_folder):
    root = _dataset(tmp_path)
    masks = tmp_path / "masks"
    _image(masks / "a.png", mode="L")
    (masks / "b.png").write_bytes(b"not an image")
    [(field, message)] = _problems(_config(model_folder, root, tmp_path / "runs", masked_loss=True,
                                           mask_path=str(masks)))
    assert field == "dataset.mask_path" and "b.png" in message and "cannot be read" in message


def test_masked_loss_with_no_alpha_and_no_mask_folder_is_refused(tmp_path, model_folder):
    [(field, message)] = _problems(_config(model_folder, _dataset(tmp_path), tmp_path / "runs", masked_loss=True))
    assert field == "dataset.masked_loss"
    assert "none of the images has an alpha channel" in message and "dataset.mask_path" in message


def test_a_mask_folder_matching_no_image_is_refused(tmp_path, model_folder):
    root = _dataset(tmp_path)
    masks = tmp_path / "masks"
    _image(masks / "other.png", mode="L")
    [(field, message)] = _problems(_config(model_folder, root, tmp_path / "runs", masked_loss=True,
                                           mask_path=str(masks)))
    assert field == "dataset.mask_path" and "no mask named like any training image" in message


def test_the_scan_reports_images_without_a_mask_and_bad_masks(tmp_path):
    root = _dataset(tmp_path)
    masks = tmp_path / "masks"
    _image(masks / "5_zk" / "c.png", size=(10, 10), mode="L")
    report = scan_folder(root, resolution=512, near_duplicates=False, masked_loss=True, mask_path=str(masks))
    issues = {(i.code, i.path.name, i.severity) for i in report.issues if "mask" in i.code}
    assert issues == {("missing_mask", "a.png", "warning"), ("missing_mask", "b.jpg", "warning"),
                      ("mask_wrong_size", "c.png", "error")}
    # Off, masks are none of the scan's business.
    plain = scan_folder(root, resolution=512, near_duplicates=False)
    assert not [i for i in plain.issues if "mask" in i.code]


def test_the_scan_takes_alpha_channels_as_masks(tmp_path):
    root = tmp_path / "data"
    _image(root / "cut.png", mode="RGBA")
    _image(root / "plain.png")
    report = scan_folder(root, resolution=512, near_duplicates=False, masked_loss=True)
    assert [(i.code, i.path.name) for i in report.issues if "mask" in i.code] == [("missing_mask", "plain.png")]
    assert "alpha channel" in next(i.message for i in report.issues if i.code == "missing_mask")


def test_the_app_and_check_see_the_mask_problems_with_the_dataset(tmp_path):
    from trainer.contract.preflight import check_dataset

    config = _config("", _dataset(tmp_path), tmp_path / "runs", masked_loss=True)
    problems, scan = check_dataset(config)
    assert [p.field for p in problems] == ["dataset.masked_loss"] and len(scan.images) == 3


def test_the_app_reassesses_when_the_mask_settings_or_files_change(tmp_path):
    from loratui.assess import dataset_key

    root = _dataset(tmp_path)
    masks = tmp_path / "masks"
    _image(masks / "a.png", mode="L")
    config = _config("", root, tmp_path / "runs", masked_loss=True, mask_path=str(masks))
    before = dataset_key(config)
    assert dataset_key(with_value(config, "dataset.mask_path", "")) != before
    _image(masks / "b.png", mode="L")
    assert dataset_key(config) != before
