"""The `loratui` command as a user runs it: the demo, bad input, a detached run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loratui.cli import main
from trainer.contract.config.toml_io import load_config
from trainer.contract.events import read_events
from trainer.contract.rundir import create_run_dir, pid_alive

pytestmark = pytest.mark.slow


def _loratui(*args, cwd=None, timeout=300):
    return subprocess.run([sys.executable, "-m", "loratui", *args], capture_output=True, text=True, cwd=cwd,
                          stdin=subprocess.DEVNULL, timeout=timeout)


def test_demo_headless_trains_and_prints_the_lora(tmp_path):
    result = _loratui("demo", "--headless", "--dir", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr[-3000:]
    lora = Path(result.stdout.strip().splitlines()[-1])
    assert lora.is_file() and lora.suffix == ".safetensors"
    assert "done in" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_reuses_a_workspace_and_keeps_user_edits(tmp_path):
    from loratui.demo import ensure_demo_workspace

    workspace = ensure_demo_workspace(tmp_path / "demo")
    workspace.config.write_text(workspace.config.read_text() + "\n# my note\n")
    caption = workspace.dataset / "mascot_00.txt"
    caption.write_text("zkmascot, edited by hand\n")
    model_stamp = (workspace.model / "model_index.json").stat().st_mtime_ns
    ensure_demo_workspace(tmp_path / "demo")
    assert "# my note" in workspace.config.read_text()
    assert caption.read_text() == "zkmascot, edited by hand\n"
    assert (workspace.model / "model_index.json").stat().st_mtime_ns == model_stamp


def _config(tmp_path, dataset, model, name="lora.toml"):
    path = tmp_path / name
    path.write_text(f'[model]\nbase = "{model}"\n[dataset]\npath = "{dataset}"\n[output]\ndir = "runs"\n')
    return path


def test_bad_input_gets_one_clear_message_and_writes_nothing(tmp_path, capsys, tiny_sd15, dataset):
    cases = {}
    malformed = tmp_path / "malformed.toml"
    malformed.write_text("[training\n")
    cases["malformed"] = (malformed, "malformed.toml: is not valid TOML")
    cases["missing dataset"] = (_config(tmp_path, tmp_path / "no-such-folder", tiny_sd15, "a.toml"),
                                "dataset.path: " + str(tmp_path / "no-such-folder") + " does not exist")
    (tmp_path / "empty").mkdir()
    cases["empty dataset"] = (_config(tmp_path, tmp_path / "empty", tiny_sd15, "b.toml"), "has no usable images")
    cases["missing model"] = (_config(tmp_path, dataset, tmp_path / "models" / "none", "c.toml"),
                              "model.base: " + str(tmp_path / "models" / "none") + " does not exist")
    cases["missing config"] = (tmp_path / "nope.toml", "nope.toml: no such file")
    for name, (config, expected) in cases.items():
        status = main(["train", str(config)])
        err = capsys.readouterr().err
        assert status == 2, name
        assert expected in err, (name, err)
        assert len(err.strip().splitlines()) == 1, (name, err)
        assert "Traceback" not in err
        assert not (tmp_path / "runs").exists(), name


def test_set_overrides_reach_the_run(tmp_path, tiny_sd15, dataset, capsys):
    config = _config(tmp_path, dataset, tiny_sd15)
    status = main(["train", str(config), "--set", "training.batch_size=0", "--set", "training.epoch=2"])
    err = capsys.readouterr().err
    assert status == 2
    assert "training.batch_size: 0 is below the minimum of 1." in err
    assert "Did you mean 'training.epochs'?" in err


def test_detached_training_outlives_its_starter_and_finishes(tmp_path, tiny_sd15, dataset):
    config = _config(tmp_path, dataset, tiny_sd15)
    result = _loratui("train", str(config), "--detach", "--set", "dataset.resolution=128",
                      "--set", "training.epochs=1", "--set", "dataset.repeats=1", "--set", 'optimizer.name="adamw"')
    assert result.returncode == 0, result.stderr
    run = Path(result.stdout.strip().splitlines()[-1])
    pid = int((run / "pid").read_text())
    # The trainer is in its own session: a hang-up of this terminal session does not reach it.
    assert os.getsid(pid) != os.getsid(0)
    deadline = time.monotonic() + 120
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    events = read_events(run / "events.jsonl")
    assert events[-1]["type"] == "done", (run / "trainer.log").read_text()[-2000:]
    assert Path(events[-1]["output"]).is_file()
    assert not (run / "pid").exists()


def test_resume_from_the_command_line(tmp_path, tiny_sd15, dataset, capsys):
    config = _config(tmp_path, dataset, tiny_sd15)
    assert main(["resume", str(tmp_path)]) == 2
    assert "not a run folder" in capsys.readouterr().err
    loaded, problems = load_config(config, ["dataset.resolution=128", "dataset.repeats=1", "training.epochs=4",
                                            "training.batch_size=1", 'optimizer.name="adamw"'])
    assert not problems, problems
    run = create_run_dir(loaded)
    assert main(["resume", str(run.root)]) == 2
    assert "no saved state" in capsys.readouterr().err
    with open(run.log, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "trainer", str(run.root)], stdout=log, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(e["type"] == "step" for e in read_events(run.events)):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    result = _loratui("resume", str(run.root), "--detach")
    assert result.returncode == 0, result.stderr
    pid = int((run.root / "pid").read_text())
    while pid_alive(pid) and time.monotonic() < deadline + 120:
        time.sleep(0.2)
    events = read_events(run.events)
    assert events[-1]["type"] == "done" and events[-1]["step"] == events[-1]["total_steps"]
