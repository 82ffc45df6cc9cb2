"""Following a run from its files: what each poll hands the UI (no Textual involved)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from loratui.runs.follower import MAX_LINES_PER_POLL, RunFollower, clean_output_line
from trainer.contract.config.schema import Config, with_value
from trainer.contract.events import EventWriter
from trainer.contract.rundir import RunPaths, create_run_dir, write_pid


def make_run(parent: Path) -> RunPaths:
    return create_run_dir(with_value(Config(), "output.dir", str(parent)))


class LiveProcess:
    """A real process whose pid stands for a running trainer (its command line names one)."""

    def __enter__(self) -> int:
        self.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "trainer"])
        return self.process.pid

    def __exit__(self, *exc) -> None:
        self.process.kill()
        self.process.wait()


def test_clean_output_line_keeps_the_last_redraw_without_colours():
    assert clean_output_line("\x1b[32m 10%\r 20%\r 30%\x1b[0m") == " 30%"
    assert clean_output_line("\r\r") == ""


def test_polls_fold_events_as_they_arrive_and_end_when_the_process_is_gone(tmp_path):
    run = make_run(tmp_path)
    with LiveProcess() as pid, EventWriter(run.events) as events:
        write_pid(run, pid)
        follower = RunFollower(run)
        assert follower.poll().empty  # nothing written yet, process alive
        events.emit("start", total_steps=4, epochs=1, device="cpu", images=3, batches_per_epoch=4,
                    formula_steps=4, precision="fp32", resolution=512)
        for step in (1, 2):
            events.emit("step", step=step, total_steps=4, epoch=1, loss=0.1 * step, lr=1e-4, seconds_per_step=0.5)
        run.log.write_text("loading\rloaded\n")
        batch = follower.poll()
        assert batch.state.step == 2 and batch.state.total_steps == 4
        assert any(line.startswith("│ loaded") for line in batch.log_lines)
        assert any("start: 3 images" in line for line in batch.log_lines)
        assert batch.series is not None and batch.series.steps == [1, 2]
        assert not batch.exited
        quiet = follower.poll()
        assert quiet.empty and quiet.series is None  # no new steps: no new plot
        for step in (3, 4):
            events.emit("step", step=step, total_steps=4, epoch=1, loss=0.1, lr=1e-4, seconds_per_step=0.5)
        events.emit("done", step=4, total_steps=4, output="out.safetensors", seconds=2.0)
    run.pid.unlink()
    batch = follower.poll()
    assert batch.exited and batch.state.phase == "done"
    assert follower.history.steps_seen == 4


def test_a_process_that_died_without_a_final_event_is_reported_failed_with_its_output(tmp_path):
    run = make_run(tmp_path)
    with EventWriter(run.events) as events:
        events.emit("start", total_steps=10, epochs=1, device="cpu")
        events.emit("step", step=1, total_steps=10, epoch=1, loss=0.2, lr=1e-4, seconds_per_step=0.5)
    run.log.write_text("Traceback (most recent call last):\nMemoryError\n")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    write_pid(run, gone.pid)
    batch = RunFollower(run).poll()
    assert batch.exited and batch.state.phase == "failed"
    assert "without a final event" in batch.state.error_message
    assert batch.log_lines[-1] == "│ MemoryError"


def test_a_long_history_is_replayed_in_bounded_memory_and_bounded_log(tmp_path, monkeypatch):
    run = make_run(tmp_path)
    total = 50_000
    with EventWriter(run.events) as events:
        events.emit("start", total_steps=total, epochs=total // 10, device="cpu")
        for step in range(1, total + 1):
            events.emit("step", step=step, total_steps=total, epoch=step // 10 + 1, loss=0.1, lr=1e-4,
                        seconds_per_step=0.01)
            if step % 10 == 0:
                events.emit("epoch", epoch=step // 10, epochs=total // 10, step=step, mean_loss=0.1)
        events.emit("done", step=total, total_steps=total, output="x", seconds=1.0)
    # One 1 MiB chunk per poll: the replay takes several polls, each showing the run further on.
    monkeypatch.setattr("loratui.runs.follower.CHUNKS_PER_POLL", 1)
    follower = RunFollower(run)
    follower.plot_width = 100
    steps_seen, lines = [], []
    batch = follower.poll()
    while not batch.caught_up:
        assert not batch.exited
        steps_seen.append(batch.state.step)
        lines += batch.log_lines
        batch = follower.poll()
    lines += batch.log_lines
    assert len(steps_seen) >= 3 and steps_seen == sorted(steps_seen)
    assert batch.exited and batch.state.phase == "done" and batch.state.step == total
    assert lines[-1].endswith("done in 0:01: x")
    series = follower.history.series(follower.plot_width)
    assert len(series) <= 100 and series.steps[0] <= total / 100 and series.steps[-1] >= total - total / 100
    assert follower.history.bucket_count <= follower.history.capacity


def test_one_poll_hands_over_only_the_newest_log_lines(tmp_path):
    run = make_run(tmp_path)
    with EventWriter(run.events) as events:
        for epoch in range(1, 5001):
            events.emit("epoch", epoch=epoch, epochs=5000, step=epoch, mean_loss=0.1)
        events.emit("done", step=5000, total_steps=5000, output="x", seconds=1.0)
    batch = RunFollower(run).poll()
    assert len(batch.log_lines) == MAX_LINES_PER_POLL
    assert "epoch 5000/5000" in batch.log_lines[-2] and "done in" in batch.log_lines[-1]
    assert f"epoch {5000 - MAX_LINES_PER_POLL + 2}/5000" in batch.log_lines[0]


def test_a_resumed_process_continues_the_same_history(tmp_path):
    run = make_run(tmp_path)
    with EventWriter(run.events) as events:
        events.emit("start", total_steps=6, epochs=1, device="cpu")
        for step in (1, 2, 3):
            events.emit("step", step=step, total_steps=6, epoch=1, loss=0.1, lr=1e-4, seconds_per_step=0.5)
        events.emit("stopped", step=3, total_steps=6, epoch=1, reason="SIGTERM", checkpoint="c")
    first = RunFollower(run)
    assert first.poll().state.phase == "stopped"
    offset = run.events.stat().st_size
    with EventWriter(run.events) as events:
        events.emit("start", total_steps=6, epochs=1, device="cpu", resumed_from_step=3)
        for step in (4, 5, 6):
            events.emit("step", step=step, total_steps=6, epoch=1, loss=0.1, lr=1e-4, seconds_per_step=0.5)
        events.emit("done", step=6, total_steps=6, output="x", seconds=1.0)
    second = RunFollower(run, offset, 0, first.state, first.history, first.watch)
    batch = second.poll()
    assert batch.state.phase == "done"
    assert second.history.steps_seen == 6
    assert batch.series.steps == [1, 2, 3, 4, 5, 6]  # the plot shows the whole run, not only this process
