"""`loratui export … --to sd-scripts DIR` and `loratui import FILE` as a user runs them.

The commands are called through their entry points (``export_main``/``import_main``), which take
the arguments after the command name, exactly as ``loratui export …`` passes them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from loratui.cli.interop import export_main, import_main
from tests.unit.test_interop_import_files import LORA_EASY_SAVED
from tests.unit.test_interop_sdscripts import make_dataset
from trainer.contract.config.schema import FIELDS, get_value
from trainer.contract.config.toml_io import load_config

REPO = Path(__file__).resolve().parents[2]


def write_loratui_config(folder: Path, extra: str = "") -> Path:
    """A loratui config with relative paths (read from its folder) and a real dataset beside it."""
    make_dataset(folder / "dataset")
    path = folder / "loratui.toml"
    path.write_text('kind = "style"\n[model]\nbase = "models/base.safetensors"\narch = "sd15"\nclip_skip = 2\n'
                    '[dataset]\npath = "dataset"\ntrigger_word = "zkchar"\n[network]\ntype = "loha"\ndora = true\n'
                    '[optimizer]\nname = "came"\nunet_lr = 2e-4\n[scheduler]\nname = "rex"\n'
                    '[output]\ndir = "runs"\nsample_prompts = ["zkchar, smile"]\nsample_every_n_epochs = 2\n' + extra)
    return path


def test_export_then_import_gives_the_config_back(tmp_path, capsys):
    source = write_loratui_config(tmp_path)
    out = tmp_path / "kohya"
    assert export_main([str(source), "--to", "sd-scripts", str(out)]) == 0
    captured = capsys.readouterr()
    assert sorted(p.name for p in out.iterdir()) == ["command.sh", "config.toml", "dataset.toml", "sample_prompts.txt"]
    assert os.access(out / "command.sh", os.X_OK) and "train_network.py" in (out / "command.sh").read_text()
    # The "no equivalent" list is printed: loratui-only settings by name, with what to do.
    assert "kind = 'style'" in captured.out and "dataset.trigger_word = 'zkchar'" in captured.out
    assert "scheduler.name = 'rex'" in captured.out
    assert "Traceback" not in captured.err

    back = tmp_path / "back" / "loratui.toml"
    assert import_main([str(out / "config.toml"), "--out", str(back)]) == 0
    printed = capsys.readouterr().out
    assert "mapped:" in printed and f"wrote {back}" in printed
    original, _ = load_config(source)
    returned, problems = load_config(back)
    assert problems == []
    differs = {key for key in FIELDS if get_value(original, key) != get_value(returned, key)}
    # kind has no sd-scripts equivalent, 0 is written as 768, and REX cannot take warmup/restarts in sd-scripts.
    assert differs == {"kind", "dataset.resolution"}
    assert returned.network.type == "loha" and returned.network.dora and returned.model.clip_skip == 2


def test_export_never_overwrites_without_force(tmp_path, capsys):
    source = write_loratui_config(tmp_path)
    out = tmp_path / "kohya"
    out.mkdir()
    (out / "config.toml").write_text("# mine\n")
    assert export_main([str(source), "--to", "sd-scripts", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'config.toml'}" in err and "--force" in err and "nothing was written" in err
    assert (out / "config.toml").read_text() == "# mine\n" and not (out / "dataset.toml").exists()
    assert export_main([str(source), "--to", "sd-scripts", str(out), "--force"]) == 0
    assert "pretrained_model_name_or_path" in (out / "config.toml").read_text()


def test_export_refuses_bad_input_with_one_line_each(tmp_path, capsys):
    broken = tmp_path / "broken.toml"
    broken.write_text("[model\n")
    assert export_main([str(broken), "--to", "sd-scripts", str(tmp_path / "a")]) == 2
    assert "broken.toml: is not valid TOML" in capsys.readouterr().err
    incomplete = tmp_path / "incomplete.toml"
    incomplete.write_text('[dataset]\npath = "x"\n')
    assert export_main([str(incomplete), "--to", "sd-scripts", str(tmp_path / "b")]) == 2
    assert "model.base: is required" in capsys.readouterr().err
    a_file = tmp_path / "taken"
    a_file.write_text("")
    assert export_main([str(write_loratui_config(tmp_path)), "--to", "sd-scripts", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_export_json_and_overrides(tmp_path, capsys):
    source = write_loratui_config(tmp_path)
    code = export_main([str(source), "--to", "sd-scripts", str(tmp_path / "o"), "--format", "json",
                        "--set", "model.arch=sdxl", "--set", "training.num_processes=2"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["script"] == "sdxl_train_network.py" and len(data["files"]) == 4
    assert any(e["source"] == "kind" for e in data["report"]["not_mapped"])
    assert "--num_processes 2" in (tmp_path / "o" / "command.sh").read_text()


def test_import_never_overwrites_without_force(tmp_path, capsys):
    source = write_loratui_config(tmp_path)
    export_main([str(source), "--to", "sd-scripts", str(tmp_path / "k")])
    target = tmp_path / "existing.toml"
    target.write_text("# keep me\n")
    capsys.readouterr()
    assert import_main([str(tmp_path / "k" / "config.toml"), "--out", str(target)]) == 2
    assert "existing.toml: already exists" in capsys.readouterr().err
    assert target.read_text() == "# keep me\n"
    assert import_main([str(tmp_path / "k" / "config.toml"), "--out", str(target), "--force"]) == 0
    assert "[model]" in target.read_text()


def test_import_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out.toml"
    broken = tmp_path / "broken.toml"
    broken.write_text("optimizer_type = \n")
    assert import_main([str(broken), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"loratui: {broken}: is not valid TOML") and "Traceback" not in err
    missing = tmp_path / "kohya.toml"
    missing.write_text('dataset_config = "gone.toml"\n')
    assert import_main([str(missing), "--out", str(out)]) == 2
    assert "'gone.toml', which is not there" in capsys.readouterr().err
    assert import_main([str(tmp_path / "nope.toml"), "--out", str(out)]) == 2
    assert "nope.toml: no such file" in capsys.readouterr().err
    assert not out.exists()


def test_import_reports_unknown_values_and_problems_but_still_writes(tmp_path, capsys):
    kohya = tmp_path / "kohya.toml"
    kohya.write_text(f'optimizer_type = "DAdaptLion"\nmax_train_epochs = 3\ntrain_data_dir = "{tmp_path}"\n')
    out = tmp_path / "out.toml"
    assert import_main([str(kohya), "--out", str(out)]) == 1  # written, but there is no model to train
    captured = capsys.readouterr()
    assert "optimizer_type = 'DAdaptLion': loratui has no such optimizer" in captured.out
    assert f"loratui: {out}: model.base: is required." in captured.err
    config, _ = load_config(out)
    assert config.optimizer.name == "adamw8bit" and config.training.epochs == 3


def test_import_a_lora_easy_config_as_json(tmp_path, capsys):
    root = make_dataset(tmp_path / "dataset")
    easy = tmp_path / "easy.toml"
    easy.write_text(LORA_EASY_SAVED.format(root=root, model=tmp_path / "xl.safetensors", out=tmp_path / "out"))
    out = tmp_path / "imported.toml"
    assert import_main([str(easy), "--out", str(out), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["format"] == "LoRA_Easy_Training_Scripts" and data["problems"] == []
    assert set(data["report"]) == {"mapped", "approximate", "not_mapped", "defaulted", "notes"}
    assert "save_toml" in {e["source"] for e in data["report"]["not_mapped"]}
    assert "multires_noise_iterations" in {e["source"] for e in data["report"]["mapped"]}  # mapped since #18
    config, problems = load_config(out)
    assert problems == [] and config.model.arch == "sdxl" and config.scheduler.name == "rex"


def test_the_commands_load_no_torch(tmp_path):
    source = write_loratui_config(tmp_path)
    code = ("import sys; from loratui.cli.interop import export_main, import_main; "
            f"assert export_main([{str(source)!r}, '--to', 'sd-scripts', {str(tmp_path / 'k')!r}]) == 0; "
            f"assert import_main([{str(tmp_path / 'k' / 'config.toml')!r}, "
            f"'--out', {str(tmp_path / 'b.toml')!r}]) == 0; "
            "heavy = {'torch', 'diffusers', 'transformers'} & {m.split('.')[0] for m in sys.modules}; "
            "assert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
