"""The trainer's fault suite: hard kills, full disks and out-of-memory, on real trainer processes.

Each test starts ``python -m trainer`` on a tiny model, as the app does, and makes it fail the
way real runs fail: SIGKILL at random moments, SIGKILL in the middle of a save, a disk that
fills up during a save (a real small tmpfs where the machine allows mounting one, and the
``LORATUI_FAULT`` fault point everywhere), CUDA running out of memory at a chosen step, a stop
while images are encoded. What must hold afterwards: the last checkpoint loads, nothing torn
is taken for a file, a resume reaches the planned step count, and the user gets one clear
``error`` event instead of a traceback.
"""

from __future__ import annotations

import errno
import gc
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from loratui.runs.launch import resumable_run
from loratui.runs.registry import summarize
from tests.trainer import helpers
from tests.trainer.helpers import finish_trainer, of_type, start_trainer, wait_for
from trainer.contract import faults
from trainer.checkpoint import prune_checkpoints
from trainer.contract.errors import OOM_ADVICE
from trainer.contract.events import read_events
from trainer.contract.fileio import (DiskFullError, atomic_write, atomic_write_text, disk_full_errno, is_temp_file,
                            remove_stale_temps)
from trainer.contract.rundir import RunPaths

pytestmark = pytest.mark.slow


# Running the trainer ------------------------------------------------------------------------------

def new_run(config: Path) -> RunPaths:
    # The trainer names files by the resolved run folder; so do the assertions.
    return RunPaths(helpers.new_run(config).root.resolve())


def _train(run, *extra: str, fault: str | None = None) -> tuple[int, list[dict]]:
    """Run the trainer to its end; return its exit status and the events this process wrote."""
    before = len(read_events(run.events))
    status = finish_trainer(start_trainer(run, *extra, fault=fault))
    return status, read_events(run.events)[before:]


def _log(run) -> str:
    return run.log.read_text(errors="replace")[-3000:]


# What a run folder holds ---------------------------------------------------------------------------

def _temps(run) -> list[Path]:
    return sorted(p for p in run.root.rglob("*") if is_temp_file(p))


def _checkpoints(run) -> list[Path]:
    """The checkpoint files a reader sees (what ``loratui`` and other tools would list)."""
    return sorted(p for p in run.checkpoints.glob("*.safetensors") if not p.name.startswith("."))


def _assert_lora_loads(path: Path) -> dict[str, str]:
    """A LoRA file that opens, holds weights that are not all zero, and its metadata."""
    with safe_open(str(path), "pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = handle.metadata()
    assert any(key.startswith("lora_unet_") for key in tensors), path
    assert any(t.float().abs().sum() > 0 for t in tensors.values()), f"{path} holds only zeros"
    return metadata


def _state_step(run) -> int:
    """The step the resume state was saved at (loading it the way a resume does)."""
    state = torch.load(run.resume_state, map_location="cpu", weights_only=True)
    return state["progress"]["step"]


def _planned_total(events: list[dict]) -> int:
    return of_type(events, "start")[0]["total_steps"]


# a. kill -9 at random moments ---------------------------------------------------------------------

def _kill_at_random(run, chance: random.Random, window: tuple[int, int], resume: bool, replay: str) -> int:
    """Start the trainer, SIGKILL it at a random moment after a random step in ``window``; return the plan."""
    before = len(read_events(run.events))

    def mine() -> list[dict]:
        return read_events(run.events)[before:]

    process = start_trainer(run, *(["--resume"] if resume else []))
    try:
        assert wait_for(lambda: of_type(mine(), "start"), timeout=180), _log(run)
        start = of_type(mine(), "start")[0]
        # After the first checkpoint (step 3), past where this process began, and early enough that
        # the process cannot have finished when the kill arrives.
        target = chance.randint(max(window[0], (start["resumed_from_step"] or 0) + 1), window[1])
        assert wait_for(lambda: any(e["step"] >= target for e in of_type(mine(), "step")), timeout=120), \
            f"{replay}: step {target} never came\n{_log(run)}"
        time.sleep(chance.uniform(0.0, 0.12))  # about one step: inside a step, or inside a save
        assert process.poll() is None, f"{replay}: the trainer ended before the kill after step {target}"
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        finish_trainer(process, timeout=1)
    return start["total_steps"]


def test_random_hard_kills_never_cost_more_than_the_last_checkpoint(tiny_sd15, dataset, make_config):
    seed = int(os.environ.get("LORATUI_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))
    chance = random.Random(seed)
    replay = f"replay with LORATUI_FAULT_SEED={seed}"
    # 3 steps an epoch and a checkpoint after each: a kill lands in a step or in a save.
    config = make_config(tiny_sd15, dataset, training={"epochs": 10, "batch_size": 4},
                         output={"save_every_n_epochs": 1})
    run = new_run(config)
    # Three kills, each after a random step of its own part of the 30.
    for kill, window in enumerate([(4, 11), (12, 19), (20, 26)]):
        total = _kill_at_random(run, chance, window, resume=kill > 0, replay=replay)
        # Whatever the moment, the newest checkpoint is whole, and the resume state is one that loads.
        newest = _checkpoints(run)[-1]
        meta = _assert_lora_loads(newest)
        state_step = _state_step(run)
        assert state_step % 3 == 0 and state_step <= int(meta["ss_steps"]), f"{replay}: state at {state_step}, {newest}"
        assert resumable_run(run.root)[0] is not None, f"{replay}: {resumable_run(run.root)[1]}"

    status, events = _train(run, "--resume")
    assert status == 0, f"{replay}\n{_log(run)}"
    assert events[-1]["type"] == "done", replay
    assert of_type(events, "step")[-1]["step"] == total == events[-1]["step"] == 30, replay
    _assert_lora_loads(run.final_lora("test"))
    assert _temps(run) == [], f"{replay}: {_temps(run)}"


# b. kill -9 in the middle of a save ---------------------------------------------------------------

def test_a_kill_during_a_save_leaves_the_previous_checkpoint_and_a_resumable_run(tiny_sd15, dataset, make_config):
    config = make_config(tiny_sd15, dataset, training={"epochs": 3, "batch_size": 4}, output={"save_every_n_epochs": 1})
    run = new_run(config)
    first, second = run.checkpoint("test", 1), run.checkpoint("test", 2)

    # Killed while the epoch-2 LoRA is half written.
    assert finish_trainer(start_trainer(run, fault="kill@write:test-e0002.safetensors")) == -signal.SIGKILL, _log(run)
    (torn,) = _temps(run)
    assert torn.parent == run.checkpoints and torn.name.startswith(".test-e0002.safetensors.")
    assert 0 < torn.stat().st_size < first.stat().st_size  # really a partial file
    assert _checkpoints(run) == [first]
    _assert_lora_loads(first)
    assert _state_step(run) == 3
    # Neither the app nor pruning takes the torn file for a checkpoint.
    summary = summarize(run.root)
    assert summary.status == "failed" and summary.state.last_checkpoint == str(first)
    assert prune_checkpoints(run.checkpoints, "test", keep=1) == [] and torn.exists()

    # Resumed, then killed again with the resume state half written (the LoRA before it is whole).
    assert finish_trainer(start_trainer(run, "--resume", fault="kill@write:last.pt")) == -signal.SIGKILL, _log(run)
    assert not torn.exists(), "the resume did not clear the torn temporary file"
    (torn_state,) = _temps(run)
    assert torn_state.parent == run.state and torn_state.name.startswith(".last.pt.")
    assert _checkpoints(run) == [first, second]
    _assert_lora_loads(second)
    assert _state_step(run) == 3  # the state saved with epoch 1: the resume redoes epoch 2

    status, events = _train(run, "--resume")
    assert status == 0, _log(run)
    assert of_type(events, "start")[0]["resumed_from_step"] == 3
    assert events[-1]["type"] == "done" and events[-1]["step"] == _planned_total(events) == 9
    _assert_lora_loads(run.final_lora("test"))
    assert _temps(run) == []
    assert f"Removed {torn_state}" in run.log.read_text()


# c, e. out of GPU memory, then full disks (injected) ----------------------------------------------

def _assert_one_error(events: list[dict], status: int, code: str) -> dict:
    assert status == 1
    assert [e["type"] for e in events if e["type"] in ("error", "stopped", "done")] == ["error"]
    error = events[-1]
    assert error["code"] == code, error
    assert "Traceback" not in error["message"] and "\n" not in error["message"]
    return error


def _assert_disk_full(events: list[dict], status: int, path: Path) -> dict:
    error = _assert_one_error(events, status, "disk_full")
    assert str(path) in error["message"] and "free on that disk" in error["message"]
    assert "Free space" in error["advice"] and "output.keep_last_n_checkpoints" in error["advice"]
    return error


def test_out_of_memory_and_full_disks_are_clear_errors_that_keep_the_last_checkpoint(tiny_sd15, dataset,
                                                                                      make_config):
    config = make_config(tiny_sd15, dataset, training={"epochs": 3, "batch_size": 4}, output={"save_every_n_epochs": 1})
    run = new_run(config)
    first, second, final = run.checkpoint("test", 1), run.checkpoint("test", 2), run.final_lora("test")

    # CUDA runs out of memory in the 5th step (epoch 2): one error with advice, the details in the log.
    status, events = _train(run, fault="oom@step:5")
    error = _assert_one_error(events, status, "oom")
    assert error["advice"] == OOM_ADVICE
    assert error["message"].startswith("CUDA out of memory. Tried to allocate")
    assert "OutOfMemoryError" in run.log.read_text() and "Traceback" in run.log.read_text()
    assert [s["step"] for s in of_type(events, "step")] == [1, 2, 3, 4]
    _assert_lora_loads(first)
    assert _state_step(run) == 3 and _temps(run) == []
    good_state, good_first = run.resume_state.read_bytes(), first.read_bytes()

    # Resumed from that checkpoint: epoch 2's LoRA fits, the resume state saved with it does not.
    # The state it replaces is byte for byte the one before, so the run can still be resumed.
    status, events = _train(run, "--resume", fault="enospc@write:last.pt")
    assert of_type(events, "start")[0]["resumed_from_step"] == 3
    error = _assert_disk_full(events, status, run.resume_state)
    assert f"loratui resume {run.root}" in error["advice"]
    assert run.resume_state.read_bytes() == good_state and first.read_bytes() == good_first
    assert _temps(run) == []
    _assert_lora_loads(second)

    # Resumed again: every step is done, then the finished LoRA does not fit. Nothing takes its place.
    status, events = _train(run, "--resume", fault="enospc@write:test.safetensors")
    _assert_disk_full(events, status, final)
    assert of_type(events, "step")[-1]["step"] == _planned_total(events) == 9
    assert not final.exists() and _temps(run) == []
    assert _state_step(run) == 6  # saved with epoch 2 this time: a resume redoes only epoch 3
    _assert_lora_loads(second)


# d. a real small disk -----------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """Factory: mount a tmpfs of ``size`` bytes and return its folder (skips where mounting is not allowed)."""
    mounted = []

    def mount(size: int) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        try:
            result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                    capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            pytest.skip(f"cannot mount a small filesystem here: {exc}")
        if result.returncode != 0:
            pytest.skip(f"cannot mount a small filesystem here: {result.stderr.strip() or result.returncode}")
        mounted.append(folder)
        return folder

    try:
        yield mount
    finally:
        gc.collect()  # nothing of this test may still hold a file open there
        for folder in mounted:
            if subprocess.run(["umount", str(folder)], capture_output=True, timeout=30).returncode != 0:
                subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


@pytest.mark.parametrize("write", [
    pytest.param(lambda tmp, value: save_file({"x": value}, str(tmp)), id="safetensors"),
    pytest.param(lambda tmp, value: torch.save({"x": value}, tmp), id="torch.save"),
    pytest.param(lambda tmp, value: tmp.write_bytes(value.numpy().tobytes()), id="plain-write"),
])
def test_a_really_full_disk_raises_disk_full_and_keeps_the_old_file(small_disk, write):
    disk = small_disk(256 * 1024)
    target = disk / "weights.bin"
    atomic_write(target, lambda tmp: write(tmp, torch.ones(1000)))
    good = target.read_bytes()
    # Each library words a full disk its own way (torch.save: "unexpected pos …"); all become DiskFullError.
    with pytest.raises(DiskFullError) as caught:
        atomic_write(target, lambda tmp: write(tmp, torch.ones(200_000)))
    assert caught.value.errno == errno.ENOSPC and caught.value.filename == str(target)
    # The space the failed write took is given back before the free space is reported.
    assert 128 * 1024 < caught.value.free_bytes < 256 * 1024
    assert target.read_bytes() == good
    assert [p.name for p in disk.iterdir()] == ["weights.bin"]


def test_a_disk_that_fills_up_during_training(small_disk, tiny_sd15, dataset, make_config):
    disk = small_disk(32 * 1024 * 1024)
    config = make_config(tiny_sd15, dataset, training={"epochs": 3, "batch_size": 1},
                         output={"save_every_n_epochs": 1, "dir": str(disk / "runs")})
    run = new_run(config)
    process = start_trainer(run)
    try:
        assert wait_for(lambda: of_type(read_events(run.events), "checkpoint"), timeout=180), _log(run)
        # Paused between the first and the second checkpoint while the disk is filled, leaving room
        # for half a LoRA: the next checkpoint does not fit.
        process.send_signal(signal.SIGSTOP)
        try:
            assert len(of_type(read_events(run.events), "checkpoint")) == 1 and _temps(run) == [], \
                "the trainer was not paused between its first two checkpoints"
            good_state, good_first = run.resume_state.read_bytes(), run.checkpoint("test", 1).read_bytes()
            ballast = disk / "ballast"
            ballast.write_bytes(b"\0" * (shutil.disk_usage(disk).free - len(good_first) // 2))
        finally:
            process.send_signal(signal.SIGCONT)
        status = finish_trainer(process)
    finally:
        finish_trainer(process, timeout=1)
    events = read_events(run.events)
    _assert_disk_full(events, status, run.checkpoint("test", 2))
    assert run.resume_state.read_bytes() == good_state and run.checkpoint("test", 1).read_bytes() == good_first
    assert _checkpoints(run) == [run.checkpoint("test", 1)] and _temps(run) == []

    # Doing what the advice says (free space, resume) finishes the run.
    ballast.unlink()
    status, resumed = _train(run, "--resume")
    assert status == 0, _log(run)
    assert resumed[-1]["type"] == "done" and resumed[-1]["step"] == _planned_total(events) == 36
    _assert_lora_loads(run.final_lora("test"))


# f. a stop while images are encoded ---------------------------------------------------------------

def test_a_stop_while_encoding_is_prompt_and_leaves_only_whole_cache_entries(tiny_sd15, make_config,
                                                                               tmp_path):
    from PIL import Image

    # Enough pictures that encoding cannot finish between two polls, even on a fast machine.
    images = tmp_path / "many"
    images.mkdir()
    for index in range(COUNT := 120):
        Image.new("RGB", (128, 128), (index * 2 % 256, 80, 160)).save(images / f"{index:04d}.png")
    cache = tmp_path / "cache"
    config = make_config(tiny_sd15, images, dataset={"cache_dir": str(cache)})
    run = new_run(config)
    process = start_trainer(run)
    try:
        assert wait_for(lambda: any(e.get("current", 0) >= 2 for e in read_events(run.events)
                                    if e.get("phase") == "caching"), timeout=180), _log(run)
        asked = time.monotonic()
        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=60)
        took = time.monotonic() - asked
    finally:
        finish_trainer(process, timeout=1)
    events = read_events(run.events)
    assert status == 0 and events[-1]["type"] == "stopped" and events[-1]["checkpoint"] is None
    assert of_type(events, "start") == [] and of_type(events, "step") == []
    assert took < 15, f"the stop took {took:.1f} s"  # about one image's encoding, not the rest of the dataset's
    encoded = [e for e in events if e.get("phase") == "caching"][-1]["current"]
    assert encoded < COUNT

    # Exactly the images reported encoded are cached, each a whole file; nothing half written.
    entries = sorted((cache / "latents").rglob("*.safetensors"))
    assert len(entries) == encoded and not any(is_temp_file(p) for p in cache.rglob("*"))
    for entry in entries:
        with safe_open(str(entry), "pt") as handle:
            assert handle.get_tensor("latents").ndim == 3

    # The next run trusts those entries and encodes the rest.
    status, events = _train(new_run(config))
    assert status == 0, _log(run)
    ready = [e["message"] for e in events if e.get("message", "").startswith("Images ready")]
    assert ready == [f"Images ready: {COUNT - encoded} encoded, {encoded} from the cache"]


# The fault points themselves ----------------------------------------------------------------------

def test_fault_specs_parse_and_bad_ones_are_ignored_with_a_warning(capsys):
    armed = faults.parse("enospc@write:*.safetensors:2, oom@step:5,kill@write:last.pt")
    assert [(f.action, f.point, f.name, f.count) for f in armed] == [
        ("enospc", "write", "*.safetensors", 2), ("oom", "step", "*", 5), ("kill", "write", "last.pt", 1)]
    assert capsys.readouterr().err == ""
    bad = ["nonsense", "oom@write", "enospc@step:3", "kill@step:x.pt", "enospc@write:a:b:3", "oom@step:0",
           "explode@write"]
    assert faults.parse(",".join(bad + ["kill@step:2"]))[0].count == 2
    warnings = capsys.readouterr().err.splitlines()
    assert len(warnings) == len(bad)
    assert all(line.startswith(f"{faults.ENV_VAR}: ignoring '{spec}'") for line, spec in zip(warnings, bad, strict=True))


def test_a_bad_fault_spec_never_stops_a_process(tmp_path):
    env = {**os.environ, faults.ENV_VAR: "enospc@nowhere"}
    result = subprocess.run([sys.executable, "-c", "import trainer.contract.fileio, trainer.contract.faults as f; print(f._armed)"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "()"
    assert "LORATUI_FAULT: ignoring 'enospc@nowhere': unknown point 'nowhere'" in result.stderr


def test_an_armed_write_fault_fires_once_on_the_nth_matching_file(tmp_path):
    with faults.armed("enospc@write:*.txt:2"):
        atomic_write_text(tmp_path / "a.txt", "first")
        atomic_write_text(tmp_path / "b.bin", "not counted")
        with pytest.raises(DiskFullError) as caught:
            atomic_write_text(tmp_path / "a.txt", "second")
        atomic_write_text(tmp_path / "c.txt", "third")  # fired once; later writes go through
    assert caught.value.filename == str(tmp_path / "a.txt") and "injected" in str(caught.value.__cause__)
    assert (tmp_path / "a.txt").read_text() == "first" and (tmp_path / "c.txt").read_text() == "third"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.bin", "c.txt"]
    # Disarmed again: nothing fires.
    atomic_write_text(tmp_path / "a.txt", "fourth")
    assert (tmp_path / "a.txt").read_text() == "fourth"


def test_a_full_disk_is_recognised_however_it_is_worded():
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        assert disk_full_errno(OSError(code, os.strerror(code))) == code
    # safetensors' Rust writer, and an error raised while handling one.
    rust = Exception("Error while serializing: I/O error: No space left on device (os error 28)")
    assert disk_full_errno(rust) == errno.ENOSPC
    try:
        try:
            raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))
        except OSError as quota:
            raise RuntimeError("writing the archive failed") from quota
    except RuntimeError as wrapped:
        assert disk_full_errno(wrapped) == errno.EDQUOT
    assert disk_full_errno(OSError(errno.EACCES, "Permission denied")) is None
    assert disk_full_errno(RuntimeError("CUDA out of memory")) is None


def test_only_the_temporary_files_of_atomic_writes_are_cleared(tmp_path):
    # Real temporary names, made the way atomic_write makes them, and files that only look alike.
    (tmp_path / "state").mkdir()
    stale = [Path(tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)[1])
             for name, folder in (("test-e0002.safetensors", tmp_path), ("last.pt", tmp_path / "state"))]
    kept = [tmp_path / "test-e0002.safetensors", tmp_path / ".hidden", tmp_path / "notes.tmp",
            tmp_path / ".last.pt.short.tmp"]
    for path in kept:
        path.write_text("keep")
    assert all(is_temp_file(p) for p in stale) and not any(is_temp_file(p) for p in kept)
    assert remove_stale_temps(tmp_path) == [stale[0]]
    assert remove_stale_temps(tmp_path, recursive=True) == [stale[1]]
    assert all(p.exists() for p in kept) and not any(p.exists() for p in stale)
