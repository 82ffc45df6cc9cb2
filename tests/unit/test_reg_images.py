"""Regularization images: kohya's reg_data_dir layout, sd-scripts' balancing, the step plan and the checks."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image

from trainer.contract.config.schema import Config, with_value
from trainer.contract.dataset_scan import DatasetImage, scan_dataset
from trainer.contract.plan import assign_bucket, count_batches, plan_steps
from trainer.contract.preflight import preflight
from trainer.contract.reg_images import balance_reg_images, check_reg_folder, class_word, reg_caption, scan_reg_images


def _image(path: Path, size=(128, 128)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size).save(path)
    return path


def _fake(name: str, repeats: int, size=(512, 512)) -> DatasetImage:
    return DatasetImage(Path(f"/reg/{repeats}_woman/{name}.png"), None, size[0], size[1], repeats)


def _sd_scripts_balance(num_train_images: int, reg: list[DatasetImage]) -> dict[str, int]:
    """sd-scripts' DreamBoothDataset loop (library/train_util.py), transcribed as plainly as it is written
    there: the reference the shortcut in ``balance_reg_images`` is checked against."""
    registered: dict[str, int] = {}
    repeats = {str(i.path): i.repeats for i in reg}
    if not reg:
        return registered
    n = 0
    first_loop = True
    while n < num_train_images:
        for info in reg:
            key = str(info.path)
            if first_loop:
                registered[key] = repeats[key]
                n += repeats[key]
            else:
                registered[key] += 1
                n += 1
            if n >= num_train_images:
                break
        first_loop = False
    return registered


def test_balancing_equals_sd_scripts_loop_for_fewer_and_more_reg_than_train():
    rng = random.Random(5)
    for _ in range(500):
        reg = [_fake(f"r{i}", rng.randint(1, 4)) for i in range(rng.randint(1, 12))]
        train = rng.randint(1, 80)
        balanced = balance_reg_images(train, reg)
        assert {str(i.path): i.repeats for i in balanced} == _sd_scripts_balance(train, reg)
        # In order: the images that join are a prefix of the folder's.
        assert [i.path for i in balanced] == [i.path for i in reg[:len(balanced)]]


def test_fewer_reg_images_are_repeated_to_the_training_count():
    # 10 training samples, 3 reg images once each: 4 + 3 + 3 repeats, the first ones one more.
    balanced = balance_reg_images(10, [_fake("a", 1), _fake("b", 1), _fake("c", 1)])
    assert [i.repeats for i in balanced] == [4, 3, 3]


def test_more_reg_images_are_cut_at_the_training_count():
    # 5 training samples, 8 reg images repeating twice: the first three join (6 samples, past 5), the rest wait.
    reg = [_fake(f"r{i}", 2) for i in range(8)]
    balanced = balance_reg_images(5, reg)
    assert [i.path.name for i in balanced] == ["r0.png", "r1.png", "r2.png"]
    assert [i.repeats for i in balanced] == [2, 2, 2]
    assert balance_reg_images(0, reg) == [] and balance_reg_images(5, []) == []


def _layout(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    for index in range(4):
        _image(data / "5_zkchar" / f"c{index}.png")
    reg = tmp_path / "reg"
    for index in range(3):
        _image(reg / "2_woman" / f"w{index}.png", (128, 192))
    (reg / "2_woman" / "w0.txt").write_text("a woman, smiling")
    _image(reg / "1_man" / "m0.png")
    _image(reg / "loose.png")
    _image(reg / "unnamed" / "u.png")
    return data, reg


def test_reg_scan_reads_n_class_folders_with_captions_or_class_words(tmp_path):
    _, reg = _layout(tmp_path)
    scan = scan_reg_images(reg)
    found = {i.path.name: i for i in scan.images}
    assert set(found) == {"w0.png", "w1.png", "w2.png", "m0.png"}
    assert found["w1.png"].repeats == 2 and found["m0.png"].repeats == 1
    assert reg_caption(found["w0.png"]) == "a woman, smiling"
    assert reg_caption(found["w1.png"]) == "woman" and class_word(found["m0.png"]) == "man"
    skipped = {path.name: why for path, why in scan.skipped}
    assert set(skipped) == {"loose.png", "u.png"} and all("N_class" in why for why in skipped.values())


def test_plan_counts_reg_samples_in_shared_buckets(tmp_path):
    data, reg = _layout(tmp_path)
    train = scan_dataset(data, 1).images
    reg_images = scan_reg_images(reg).images
    plan = plan_steps(train, 128, 2, 3, reg_images=reg_images)
    # 4 images × 5 = 20 training samples; reg (2+2+2+1 = 7 in order m0, w0, w1, w2) cycles to 20.
    balanced = balance_reg_images(20, reg_images)
    assert plan.samples_per_epoch == 20 and plan.reg_samples_per_epoch == 20 == sum(i.repeats for i in balanced)
    assert plan.reg_images == 4
    everything = train + balanced
    buckets = [assign_bucket(i.width, i.height, 128) for i in everything]
    assert plan.batches_per_epoch == count_batches(buckets, [i.repeats for i in everything], 2)
    assert plan.total_steps == plan.batches_per_epoch * 3
    assert plan.formula_steps == 40 * 3 / 2
    assert plan_steps(train, 128, 2, 3).total_steps < plan.total_steps


def _config(data: Path, reg: Path | str) -> Config:
    config = with_value(Config(), "dataset.path", str(data))
    return with_value(config, "dataset.reg_path", str(reg))


def test_bad_reg_folders_are_named_before_anything_loads(tmp_path):
    data, reg = _layout(tmp_path)
    assert check_reg_folder("", str(data)) == ([], None)
    problems, scan = check_reg_folder(str(reg), str(data))
    assert problems == [] and len(scan.images) == 4

    def message(reg_path) -> str:
        problems = [p for p in preflight(_config(data, reg_path)).problems if p.field == "dataset.reg_path"]
        assert len(problems) == 1, problems
        return problems[0].message

    assert "does not exist" in message(tmp_path / "nowhere")
    (tmp_path / "file.png").write_bytes(b"x")
    assert "is a file" in message(tmp_path / "file.png")
    empty = tmp_path / "empty"
    _image(empty / "loose.png")
    text = message(empty)
    assert "no usable regularization images" in text and "N_class" in text and "loose.png" in text
    assert "is the dataset folder" in message(data)
    inside = data / "1_woman"
    _image(inside / "x.png")
    assert "inside the dataset folder" in message(data / "1_woman")
    assert "dataset folder" in message(tmp_path) and "inside" in message(tmp_path)


def _scan_cli(*args: str) -> tuple[int, str]:
    import io
    from contextlib import redirect_stdout

    from loratui.cli import main

    out = io.StringIO()
    with redirect_stdout(out):
        status = main(["dataset", "scan", *args, "--no-similar", "--resolution", "512"])
    return status, out.getvalue()


def test_dataset_scan_reports_reg_images_apart_from_the_training_images(tmp_path, monkeypatch):
    import json

    from trainer.contract.config.toml_io import save_config

    data, reg = _layout(tmp_path)
    monkeypatch.chdir(tmp_path)
    alone_status, alone = _scan_cli(str(data))
    status, out = _scan_cli(str(data), "--reg", str(reg))
    assert status == alone_status
    # The dataset's part of the report is the same with or without the reg folder: nothing mixed in.
    assert out.startswith(alone.rstrip("\n"))
    section = out[len(alone.rstrip("\n")):]
    assert "4 images in 2 folders, 7 with repeats" in section and "20 reg samples from 4 images" in section
    assert "2_woman/" in section and "1_man/" in section and '"woman"' in section
    assert "loose.png" in section and "u.png" in section
    # From the config too, and as JSON.
    save_config(with_value(with_value(Config(), "dataset.path", "data"), "dataset.reg_path", "reg"),
                tmp_path / "loratui.toml")
    status, out = _scan_cli(str(data), "--format", "json")
    report = json.loads(out)
    assert report["summary"]["images"] == 4 and report["summary"]["effective_images"] == 20
    assert report["regularization"]["images"] == 4 and report["regularization"]["used_samples_per_epoch"] == 20
    assert {f["path"]: f["repeats"] for f in report["regularization"]["folders"]} == {"1_man": 1, "2_woman": 2}


def test_dataset_scan_fails_on_an_unusable_reg_folder_and_names_the_field(tmp_path, monkeypatch):
    data, _ = _layout(tmp_path)
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty-reg"
    empty.mkdir()
    status, out = _scan_cli(str(data), "--reg", str(empty))
    assert status == 1
    assert "dataset.reg_path" in out and "no usable regularization images" in out
    status, out = _scan_cli(str(data), "--reg", str(data))
    assert status == 1 and "is the dataset folder" in out


def _assessed(data: Path, reg: Path, repeats: int):
    from loratui.assess import assess

    config = with_value(with_value(_config(data, reg), "dataset.repeats", repeats), "dataset.resolution", 128)
    config = with_value(config, "dataset.folder_name_repeats", False)
    return config, assess(config)


def test_the_apps_plan_and_the_step_advice_count_reg_images_as_the_trainer(tmp_path):
    from loratui.rules.engine import Context
    from loratui.rules.tiny_plan import epoch_batches
    from loratui.summary import formula_words

    data, reg = _layout(tmp_path)
    config, assessment = _assessed(data, reg, 1)
    assert not [p for p in assessment.problems if p.field.startswith("dataset")], assessment.problems
    reg_images = scan_reg_images(reg).images
    train = scan_dataset(data, 1, folder_name_repeats=False).images
    assert assessment.plan == plan_steps(train, 128, config.training.batch_size, config.training.epochs,
                                         reg_images=reg_images)
    assert "regularization samples" in formula_words(assessment.plan)
    # The guide's step targets judge how often the subject is seen, which reg images do not change: the
    # advice's count (and the repeat search through ``epoch_batches``) is the plan's own-image steps, while
    # the trainer runs the reg images' steps too.
    assert assessment.plan.own_steps == plan_steps(train, 128, config.training.batch_size,
                                                   config.training.epochs).total_steps
    assert assessment.plan.guide_steps == assessment.plan.own_steps < assessment.plan.total_steps
    context = Context(config, "sd15", assessment.facts.scan, assessment.plan, reg_scan=assessment.facts.reg_scan)
    count = epoch_batches(context, config.training.batch_size)
    for repeats in (1, 2, 3, 7, 20):
        with_reg = plan_steps(scan_dataset(data, repeats, folder_name_repeats=False).images, 128,
                              config.training.batch_size, 1, reg_images=reg_images)
        assert count(repeats) == with_reg.own_steps < with_reg.total_steps


def test_the_app_names_a_bad_reg_folder_as_a_problem(tmp_path):
    data, _ = _layout(tmp_path)
    _, assessment = _assessed(data, tmp_path / "missing", 1)
    assert [p.field for p in assessment.problems if "does not exist" in p.message] == ["dataset.reg_path"]


def test_loratui_check_reports_reg_images_apart(tmp_path):
    from loratui.check_report import check_report

    data, reg = _layout(tmp_path)
    config, assessment = _assessed(data, reg, 1)
    report = check_report(tmp_path / "loratui.toml", 0, [], assessment)
    assert report["images"]["usable"] == 4
    assert report["regularization_images"] == {"usable": 4, "left_out": 2,
                                               "samples_per_epoch": assessment.plan.reg_samples_per_epoch}
    # 4 training samples: 1_man/m0 (1) and 2_woman/w0 (2) make 3, w1 (2) takes it to 5, past 4, as sd-scripts does.
    assert (assessment.plan.reg_images, assessment.plan.reg_samples_per_epoch) == (3, 5)
