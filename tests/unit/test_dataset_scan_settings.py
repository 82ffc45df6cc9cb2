"""``loratui dataset scan`` takes its settings from the training config and says so; repeated findings are
said once; a tagging error's advice fits where it is read (the command line or the app)."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from loratui.cli import main
from loratui.dataset.describe import describe_tagging_event
from trainer.contract.config.schema import Config, with_value
from trainer.contract.config.toml_io import save_config


def _images(folder: Path, sizes: dict[str, int], caption: str | None = "zkchar, smile") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, (name, side) in enumerate(sizes.items()):
        Image.new("RGB", (side, side), (index * 20 % 256, 90, 160)).save(folder / name)
        if caption is not None:
            (folder / name).with_suffix(".txt").write_text(caption)
    return folder


def _config(folder: Path, **values) -> Path:
    config = with_value(Config(), "dataset.path", "data")
    for key, value in values.items():
        config = with_value(config, key.replace("__", "."), value)
    path = folder / "loratui.toml"
    save_config(config, path)
    return path


def _scan(*args: str) -> tuple[int, str]:
    import io
    from contextlib import redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out):
        status = main(["dataset", "scan", *args, "--no-similar"])
    return status, out.getvalue()


def _too_small(out: str) -> str:
    """The too-small finding's lines (empty when there is none)."""
    block = out.split("WARNING too_small:")
    return block[1].split("\n\n")[0] if len(block) > 1 else ""


def test_the_resolution_comes_from_the_workspace_config_and_the_report_says_so(tmp_path, monkeypatch):
    # 400 px is fine for 512 (over half its area) and too small for 1024 (under half of it).
    _images(tmp_path / "data", {"a.png": 400, "b.png": 400})
    _config(tmp_path, dataset__resolution=512, dataset__trigger_word="zkchar", model__arch="sd15")
    monkeypatch.chdir(tmp_path)

    status, out = _scan("data")
    assert status == 0
    lines = out.splitlines()
    assert lines[0].endswith('(512 px, trigger "zkchar", character LoRA)')
    assert lines[1] == "  resolution: 512 px, from dataset.resolution in loratui.toml (--resolution changes it)."
    assert lines[2].startswith('  also from loratui.toml: trigger word "zkchar", character LoRA, 10 repeats')
    assert "too_small" not in out

    # The command line wins, and says so; the rest still comes from the config.
    status, out = _scan("data", "--resolution", "1024", "--trigger", "other")
    assert "resolution: 1024 px (--resolution)." in out and 'trigger "other"' in out.splitlines()[0]
    assert "also from loratui.toml: character LoRA, 10 repeats" in out
    assert "a.png: is 400×400, well below the training size 1024×1024" in _too_small(out)

    # JSON carries the same words, beside the settings they explain.
    status, out = _scan("data", "--format", "json")
    settings = json.loads(out)["settings"]
    assert settings["resolution"] == 512 and settings["trigger_word"] == "zkchar"
    assert settings["from"][0].startswith("resolution: 512 px, from dataset.resolution in loratui.toml")


def test_a_config_resolution_of_0_is_the_models_own_size(tmp_path):
    _images(tmp_path / "data", {"a.png": 400})
    (tmp_path / "elsewhere").mkdir()
    config = _config(tmp_path / "elsewhere", dataset__resolution=0, model__arch="sd15")
    status, out = _scan(str(tmp_path / "data"), "--config", str(config))
    assert out.splitlines()[0].endswith("(768 px, character LoRA)")
    assert f"resolution: 768 px, SD1.5's own size: dataset.resolution in {config} is 0" in out


def test_without_a_config_the_assumed_resolution_is_named_with_the_way_to_change_it(tmp_path, monkeypatch):
    _images(tmp_path / "data", {"a.png": 400})
    monkeypatch.chdir(tmp_path)  # no loratui.toml here
    status, out = _scan("data")
    assert status == 0
    assert "(1024 px, character LoRA)" in out.splitlines()[0]
    assert ("resolution: 1024 px assumed (SDXL's size), as no --resolution was given and there is no loratui.toml "
            "here. For SD1.5 pass --resolution 768 (or 512), or --config with your training config.") in out


def test_a_config_that_cannot_be_read(tmp_path, monkeypatch, capsys):
    _images(tmp_path / "data", {"a.png": 400})
    broken = tmp_path / "broken.toml"
    broken.write_text("[dataset\n")
    assert main(["dataset", "scan", str(tmp_path / "data"), "--config", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "broken.toml: is not valid TOML" in err and len(err.strip().splitlines()) == 1
    # A broken loratui.toml nobody named is only mentioned: the scan goes on with the defaults.
    (tmp_path / "loratui.toml").write_text("[dataset\n")
    monkeypatch.chdir(tmp_path)
    status, out = _scan("data")
    assert status == 0
    assert "loratui.toml: is not valid TOML" in out and "so its settings are not used." in out
    assert "1024 px assumed" in out


def test_many_images_with_one_finding_are_said_once_with_a_few_names(tmp_path, monkeypatch):
    names = {f"img_{index:02d}.png": 200 for index in range(12)}
    _images(tmp_path / "data", names)
    _images(tmp_path / "data", {"big.png": 900})
    for index in range(3):
        (tmp_path / "data" / f"empty_{index}.png").write_bytes(b"")
    monkeypatch.chdir(tmp_path)

    status, out = _scan("data", "--resolution", "512")
    assert status == 1
    small = _too_small(out)
    assert small.splitlines() == [
        " 12 files",
        "  12 images are well below the training size 512×512 (under half its area): they train at their own, "
        "smaller sizes. Larger sources teach more detail:",
        "    img_00.png, img_01.png, img_02.png … (and 9 more; --all lists them)"]
    # The same message for every file: said once, whatever the finding.
    assert ("ERROR zero_bytes: 3 files\n  3 files, each of which is empty (0 bytes)" in out
            and "    empty_0.png, empty_1.png, empty_2.png\n" in out)
    assert "img_05.png" not in out

    status, out = _scan("data", "--resolution", "512", "--all")
    assert all(name in _too_small(out) for name in names) and "(and" not in _too_small(out)


def test_two_files_with_a_finding_keep_a_line_each(tmp_path, monkeypatch):
    _images(tmp_path / "data", {"a.png": 200, "b.png": 210})
    monkeypatch.chdir(tmp_path)
    status, out = _scan("data", "--resolution", "512")
    assert "  a.png: is 200×200, well below the training size 512×512" in out
    assert "  b.png: is 210×210, well below" in out


def test_a_model_error_advises_the_option_on_the_command_line_and_the_field_in_the_app():
    event = {"type": "error", "code": "model",
             "message": "The WD14 tagger 'SmilingWolf/wd-vit-tagger-v3' is not on this machine and could not be "
                        "downloaded (HF_HUB_OFFLINE is set)",
             "advice": "Downloading needs network access on this box and a correct hub id. Without network, copy "
                       "the model here and pass its folder with --model."}
    cli = describe_tagging_event(event)
    assert cli.startswith("error: The WD14 tagger") and "pass its folder with --model" in cli
    app = describe_tagging_event(event, in_app=True, tagger="wd14")
    assert app.startswith("error: The WD14 tagger") and "--model" not in app
    assert "Press w and put in the Model field a folder on this machine that holds model.onnx and " \
           "selected_tags.csv" in app
    blip = describe_tagging_event({**event, "advice": "Point --model at a complete BLIP captioning folder."},
                                  in_app=True, tagger="blip")
    assert "BLIP captioning model" in blip and "--model" not in blip
    # Advice that fits anywhere is kept as it is.
    other = {"type": "error", "code": "model", "message": "bad file", "advice": "Download the model again."}
    assert describe_tagging_event(other, in_app=True, tagger="wd14") == "error: bad file\n  Download the model again."
