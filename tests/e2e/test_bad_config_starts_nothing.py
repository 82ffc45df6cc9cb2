"""Nothing starts on a bad config: `loratui train`, `loratui check` and `python -m trainer`.

The base config here is a real, startable one (the tiny SD1.5 model, the demo's images); each
case spoils it in one way. Whatever the spoiling, the command exits non-zero naming the field
(or the file and line), prints no traceback, creates no run folder, registers no run, leaves no
pid file or LoRA behind and starts no trainer process. One bad value per field is generated
from the schema, so a field added later is covered too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from loratui.cli import main as loratui_main
from loratui.runs.registry import registry_path
from trainer.__main__ import main as trainer_main
from trainer.contract.config.schema import FIELDS, FieldInfo
from trainer.contract.events import read_events

FIELD_KEYS = list(FIELDS)


def _bad_literal(info: FieldInfo) -> str:
    """A TOML value this field cannot take: the wrong type, or for a choice, no choice at all."""
    if info.type is int:
        return "true"  # a bool is an int in Python, never in the config
    if info.type is float:
        return "nan"
    if info.type is bool:
        return '"yes"'
    if info.choices:
        return '"nonsense"'
    return "[1, 2]" if info.type is str else '"one prompt, not a list"'


def _sections(model: Path, images: Path, out: Path) -> dict[str, dict[str, str]]:
    """A config that would train (small and fast), as raw TOML values per section."""
    return {
        "": {"kind": '"character"'},
        "model": {"base": json.dumps(str(model))},
        "dataset": {"path": json.dumps(str(images)), "trigger_word": '"zkmascot"', "repeats": "1",
                    "resolution": "128"},
        "optimizer": {"name": '"adamw"'},
        "scheduler": {"name": '"constant"'},
        "training": {"epochs": "1", "batch_size": "2"},
        "output": {"name": '"bad"', "dir": json.dumps(str(out)), "save_every_n_epochs": "0"},
    }


def _toml(sections: dict[str, dict[str, str]]) -> str:
    lines = [f"{k} = {v}" for k, v in sections.get("", {}).items()]
    for section, values in sections.items():
        if section:
            lines += [f"[{section}]"] + [f"{k} = {v}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def _spoilt(sections: dict, changes: dict[str, str]) -> str:
    """The base config with dotted keys set to raw TOML values (unknown keys included)."""
    sections = {s: dict(v) for s, v in sections.items()}
    for key, literal in changes.items():
        section, _, name = key.rpartition(".")
        sections.setdefault(section, {})[name] = literal
    return _toml(sections)


@pytest.fixture
def setup(tmp_path, tiny_sd15, dataset):
    """(write a config from changes → path, the output folder that must stay absent)."""
    out = tmp_path / "out"
    base = _sections(tiny_sd15, dataset, out)

    def write(changes: dict[str, str], name: str = "bad.toml") -> Path:
        path = tmp_path / name
        path.write_text(_spoilt(base, changes))
        return path

    return write, out


def _trainer_processes(marker: str) -> list[str]:
    """Command lines of running trainer processes whose arguments mention ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "trainer" in cmdline and marker in cmdline:
                found.append(cmdline)
    return found


def _assert_nothing_started(tmp_path: Path, out: Path) -> None:
    assert not out.exists(), f"a run folder was made: {list(out.iterdir())}"
    assert not registry_path().exists() or registry_path().read_text().strip() == ""
    assert _trainer_processes(str(tmp_path)) == []


def _loratui(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "loratui", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


def test_the_base_config_would_start(setup, capsys):
    # Without this, "nothing started" could be the tiny model or the dataset failing, not the config.
    write, _ = setup
    assert loratui_main(["check", str(write({}, "good.toml"))]) in (0, 1)
    assert capsys.readouterr().err == ""


def test_loratui_train_refuses_every_field_spoilt_in_turn(setup, tmp_path, capsys):
    write, out = setup
    for key in FIELD_KEYS:
        path = write({key: _bad_literal(FIELDS[key])})
        assert loratui_main(["train", str(path), "--detach"]) == 2, key
        captured = capsys.readouterr()
        assert f"loratui: {key}: " in captured.err, (key, captured.err)
        assert captured.out == "", key  # --detach prints the run folder; there is none
    _assert_nothing_started(tmp_path, out)


def test_loratui_train_and_check_as_a_user_runs_them(setup, tmp_path):
    write, out = setup
    spoilt = {"training.batch_size": "0", "optimizer.unet_lr": "nan", "network.dim": "true",
              "dataset.flip": '"yes"', "training.epoch": "2", "output.name": '"a/b"', "dataset.resolution": "1e12",
              "model.arch": '"sdxxl"'}
    path = write(spoilt)
    named = ["training.batch_size", "optimizer.unet_lr", "network.dim", "dataset.flip", "training.epoch",
             "output.name", "dataset.resolution", "model.arch"]
    for args in (["train", str(path)], ["train", str(path), "--detach"], ["check", str(path)],
                 ["check", str(path), "--format", "json"]):
        result = _loratui(*args)
        assert result.returncode == 2, (args, result.stderr)
        for key in named:
            assert f"loratui: {key}: " in result.stderr, (args, key, result.stderr)
        assert "loratui: training.epoch: unknown setting. Did you mean 'epochs'?" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        if args[0] == "train":
            assert result.stdout == ""
    _assert_nothing_started(tmp_path, out)


@pytest.mark.parametrize("text,expected", [
    ("[training]\nbatch_size = 2\n[training\n", "bad.toml: is not valid TOML: "),
    ("[training]\nbatch_size = 1" + "0" * 5000 + "\n", "bad.toml: is not valid TOML: it holds a number too long"),
    ("", "loratui: model.base: is required."),
])
def test_a_file_that_cannot_be_read_or_is_empty_is_named(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    for command in ("train", "check"):
        result = _loratui(command, str(path))
        assert result.returncode == 2 and expected in result.stderr, (command, result.stderr)
        assert "Traceback" not in result.stderr
    if text.startswith("[training]\nbatch_size = 2"):
        assert "(at line 3, column" in result.stderr
    if not text:
        assert "loratui: dataset.path: is required." in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("changes,field", [
    ({"dataset.resolution": "8"}, "dataset.resolution"),
    ({"dataset.resolution": "-1"}, "dataset.resolution"),
    ({"dataset.caption_extension": '"txt"'}, "dataset.caption_extension"),
    ({"dataset.path": '"images\\u0000"'}, "dataset.path"),
    ({"model.base": '"~no-such-user-here/model"'}, "model.base"),
])
def test_values_the_dataset_scan_or_paths_cannot_use_are_named_not_raised(setup, tmp_path, changes, field):
    write, out = setup
    path = write(changes)
    for command in ("train", "check"):
        result = _loratui(command, str(path))
        assert "Traceback" not in result.stderr, (command, result.stderr[-2000:])
        assert result.returncode == 2 and f"loratui: {field}: " in result.stderr, (command, result.stderr)
    _assert_nothing_started(tmp_path, out)


# ── python -m trainer RUN_DIR with a bad config.toml in the run folder ───────────────────────────

def _run_dir(tmp_path: Path, text: str, name: str = "bad-20240101-000000") -> Path:
    run = tmp_path / "runs" / name
    run.mkdir(parents=True)
    (run / "config.toml").write_text(text)
    return run


def _assert_refused(run: Path, *named: str) -> dict:
    """The run folder holds one event, a config error naming ``named``, and nothing a run makes."""
    events = read_events(run / "events.jsonl")
    assert [(e["type"], e.get("code")) for e in events] == [("error", "config")], events
    for word in named:
        assert word in events[0]["message"], (word, events[0])
    made = sorted(p.name for p in run.iterdir())
    assert made == ["config.toml", "events.jsonl"], made  # no pid, state, checkpoints, samples or LoRA
    return events[0]


def test_python_m_trainer_refuses_every_field_spoilt_in_turn(setup, tmp_path, monkeypatch):
    write, _ = setup
    # main() runs in this process here; keep the environment and warning filters it sets to itself.
    monkeypatch.setattr(os, "environ", dict(os.environ))
    for index, key in enumerate(FIELD_KEYS):
        run = _run_dir(tmp_path, write({key: _bad_literal(FIELDS[key])}).read_text(), f"run-{index}")
        with warnings.catch_warnings():
            assert trainer_main([str(run)]) == 2, key
        event = _assert_refused(run, f"{key}: ")
        assert any(p["field"] == key for p in event["problems"]), event


@pytest.mark.parametrize("changes,named", [
    ({"training.batch_size": "0", "optimizer.unet_lr": "-1e-4", "network.dim": "1e12", "training.epochs": "inf"},
     ["training.batch_size: 0 is below the minimum of 1.", "optimizer.unet_lr", "network.dim", "training.epochs"]),
    ({"dataset.path": '"images\\u0000"', "model.base": '"~no-such-user-here/x"'}, ["dataset.path: contains a NUL"]),
    ({"training.seed": "1" + "0" * 5000}, ["config.toml: is not valid TOML: it holds a number too long"]),
    ({"training": "[1"}, ["config.toml: is not valid TOML: ", "(at line"]),
])
def test_python_m_trainer_exits_2_with_one_config_event(setup, tmp_path, changes, named):
    write, _ = setup
    run = _run_dir(tmp_path, write(changes).read_text())
    result = subprocess.run([sys.executable, "-m", "trainer", str(run)], capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr + result.stdout
    event = _assert_refused(run, *named)
    assert event["advice"]
