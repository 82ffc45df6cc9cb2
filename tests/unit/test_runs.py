"""Finding runs and reading their state from the folder alone (``loratui runs``, attach)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loratui.cli import main
from loratui.runs.registry import (HEAD_BYTES, TAIL_BYTES, choose_run, find_runs, register_run, registered_runs,
                          summarize)
from trainer.contract.config.schema import Config, with_value
from trainer.contract.events import EventWriter
from trainer.contract.rundir import RunPaths, create_run_dir, write_pid

FAKE_TRAINER = Path(__file__).resolve().parents[1] / "fake_trainer.py"


def make_run(parent: Path, name: str = "run", now: float | None = None) -> RunPaths:
    config = with_value(with_value(Config(), "output.dir", str(parent)), "output.name", name)
    return create_run_dir(config, now=now)


def write_events(run: RunPaths, *events: tuple[str, dict]) -> None:
    with EventWriter(run.events) as writer:
        for kind, fields in events:
            writer.emit(kind, **fields)


START = ("start", {"total_steps": 10, "epochs": 1, "device": "cpu"})


def steps(upto: int, total: int = 10):
    return [("step", {"step": s, "total_steps": total, "epoch": 1, "loss": 0.1 + s / 1000, "lr": 1e-4})
            for s in range(1, upto + 1)]


def test_a_finished_run(tmp_path):
    run = make_run(tmp_path)
    write_events(run, START, *steps(10), ("done", {"step": 10, "output": str(run.root / "run.safetensors")}))
    summary = summarize(run.root)
    assert summary.status == "finished"
    assert (summary.state.step, summary.state.total_steps) == (10, 10)
    assert summary.state.output.endswith("run.safetensors")
    assert summary.state.loss == pytest.approx(0.11)


def test_a_stopped_run_and_a_run_that_failed_with_an_error(tmp_path):
    stopped = make_run(tmp_path, "a")
    write_events(stopped, START, *steps(4), ("stopped", {"step": 4, "reason": "SIGTERM", "checkpoint": "c.safetensors"}))
    failed = make_run(tmp_path, "b")
    write_events(failed, START, ("error", {"code": "oom", "message": "Out of memory", "advice": "batch 1"}))
    assert summarize(stopped.root).status == "stopped"
    assert summarize(stopped.root).state.last_checkpoint == "c.safetensors"
    summary = summarize(failed.root)
    assert summary.status == "failed" and summary.state.error_code == "oom"


def test_a_run_whose_process_died_without_a_final_event_is_failed_with_its_last_output(tmp_path):
    run = make_run(tmp_path)
    write_events(run, START, *steps(3))
    run.log.write_text("step 1\rstep 2\rstep 3\nTraceback (most recent call last):\nRuntimeError: boom\n")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    write_pid(run, dead.pid)  # a pid file left behind by a process that is gone
    summary = summarize(run.root)
    assert summary.status == "failed"
    assert "without a final event" in summary.state.error_message
    assert summary.log_tail[-1] == "RuntimeError: boom"
    assert summary.log_tail[0] == "step 3"  # progress-bar redraws collapse to their last state


def test_a_fresh_folder_is_starting_then_failed_once_the_grace_period_passed(tmp_path):
    run = make_run(tmp_path)
    assert summarize(run.root).status == "starting"
    assert summarize(run.root, now=time.time() + 3600).status == "failed"


def test_a_live_run_is_running(tmp_path):
    run = make_run(tmp_path)
    process = subprocess.Popen([sys.executable, str(FAKE_TRAINER), str(run.root), "--steps", "5", "--rate", "0",
                                "--scenario", "hold"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (run.events.exists() and b'"step": 5' in run.events.read_bytes()):
            time.sleep(0.05)
        summary = summarize(run.root)
        assert summary.status == "running" and summary.alive and summary.pid == process.pid
        assert summary.state.step == 5
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert summarize(run.root).status == "stopped"


def test_a_long_history_is_read_by_its_head_and_tail_only(tmp_path):
    run = make_run(tmp_path)
    total = 60_000
    write_events(run, ("start", {"total_steps": total, "epochs": 3, "device": "NVIDIA H100"}), *steps(total, total),
                 ("done", {"step": total, "output": "x.safetensors"}))
    assert run.events.stat().st_size > 4 * (HEAD_BYTES + TAIL_BYTES)
    summary = summarize(run.root)
    assert summary.status == "finished"
    assert summary.state.step == total and summary.state.total_steps == total
    assert summary.state.device == "NVIDIA H100"  # from the head: the start event


def test_the_registry_lists_each_existing_run_once(tmp_path):
    first, second = make_run(tmp_path, "one"), make_run(tmp_path, "two")
    register_run(first)
    register_run(second)
    register_run(first)
    gone = make_run(tmp_path, "gone")
    register_run(gone)
    for child in gone.root.iterdir():
        child.unlink()
    gone.root.rmdir()
    assert registered_runs() == [first.root, second.root]


def test_find_runs_merges_folders_and_registry_newest_first(tmp_path):
    older = make_run(tmp_path / "project", "old")
    newer = make_run(tmp_path / "elsewhere", "new")
    os.utime(older.config, (time.time() - 100, time.time() - 100))
    register_run(newer)
    names = [s.name for s in find_runs([tmp_path / "project"])]
    assert names == [newer.root.name, older.root.name]


def test_choose_run_by_name_prefix_or_newest(tmp_path):
    a = make_run(tmp_path, "alpha")
    b = make_run(tmp_path, "beta")
    os.utime(a.config, (time.time() - 100, time.time() - 100))
    summaries = find_runs([tmp_path])
    assert choose_run(summaries, None)[0].paths == b  # no live run: the newest
    assert choose_run(summaries, "alph")[0].paths == a
    assert choose_run(summaries, str(a.root))[0].paths.root == a.root
    none, why = choose_run(summaries, "gamma")
    assert none is None and "loratui runs" in why
    make_run(tmp_path, "alphabet")
    none, why = choose_run(find_runs([tmp_path]), "alph")
    assert none is None and "several runs" in why


def test_loratui_runs_prints_each_run_with_its_state(tmp_path, capsys):
    done = make_run(tmp_path, "good")
    write_events(done, START, *steps(10), ("done", {"step": 10, "output": "/out/good.safetensors"}))
    died = make_run(tmp_path, "bad")
    write_events(died, START, *steps(2))
    died.log.write_text("RuntimeError: boom\n")
    os.utime(died.config, (time.time() - 3600, time.time() - 3600))

    assert main(["runs", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "finished" in out and "10/10" in out and "/out/good.safetensors" in out
    assert "failed" in out and "RuntimeError: boom" in out

    assert main(["runs", str(tmp_path), "--format", "json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["status"] for r in listed] == ["finished", "failed"]
    assert listed[1]["log_tail"] == ["RuntimeError: boom"]


def test_loratui_runs_without_runs_says_how_to_start_one(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["runs"]) == 0
    assert "No runs yet" in capsys.readouterr().out


def test_loratui_attach_names_a_missing_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["attach", "nothing-like-this"]) == 2
    assert "no run called 'nothing-like-this'" in capsys.readouterr().err
