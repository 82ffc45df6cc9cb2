"""Folding events into a run's state, and the lines shown for it."""

from __future__ import annotations

from loratui.runs.state import RunState, describe_event, format_duration, progress_line


def _events():
    yield {"type": "status", "time": 1, "phase": "loading", "message": "Loading sd15 model"}
    yield {"type": "status", "time": 2, "phase": "caching", "message": "Encoding images", "current": 3, "total": 12}
    yield {"type": "start", "time": 3, "images": 12, "total_steps": 100, "epochs": 4, "device": "cpu",
           "precision": "fp32", "batches_per_epoch": 25, "formula_steps": 100.0, "resolution": 512}
    for step in range(1, 51):
        yield {"type": "step", "time": 3 + step, "step": step, "total_steps": 100, "epoch": 1 + step // 26,
               "loss": 0.2, "lr": 1e-4, "seconds_per_step": 0.5}


def test_folding_follows_the_run():
    state = RunState()
    phases = []
    for event in _events():
        state.apply(event)
        phases.append(state.phase)
    assert phases[:3] == ["loading", "caching", "training"]
    assert (state.step, state.total_steps, state.epoch, state.epochs) == (50, 100, 2, 4)
    assert abs(state.seconds_per_step - 0.5) < 1e-9
    assert state.eta_seconds == 25
    assert progress_line(state) == "step 50/100 · epoch 2/4 · loss 0.2000 · 2.0 it/s · elapsed 0:49 · ETA 0:25"


def test_final_events():
    done = RunState()
    done.apply({"type": "done", "step": 100, "output": "/r/x.safetensors"})
    assert done.finished and done.output == "/r/x.safetensors"
    failed = RunState()
    failed.apply({"type": "error", "code": "oom", "message": "Out of memory", "advice": "batch 1"})
    assert failed.phase == "failed" and failed.advice == "batch 1"
    stopped = RunState()
    stopped.apply({"type": "stopped", "step": 7, "reason": "SIGTERM", "checkpoint": "c.safetensors"})
    assert stopped.phase == "stopped" and stopped.last_checkpoint == "c.safetensors"


def test_unknown_events_are_ignored():
    state = RunState()
    state.apply({"type": "from-the-future", "x": 1})
    assert state.phase == "starting"


def test_log_lines():
    assert describe_event({"type": "step", "step": 1}) is None
    assert "error (nan)" in describe_event({"type": "error", "code": "nan", "message": "m", "advice": "a"})
    assert "guide's formula: 100" in describe_event(next(e for e in _events() if e["type"] == "start"))
    assert format_duration(3725) == "1:02:05" and format_duration(65) == "1:05" and format_duration(None) == "--:--"


def test_sampling_shows_while_it_runs_and_the_plan_returns_with_the_next_step():
    state = RunState()
    for event in _events():
        state.apply(event)
    plan = state.message
    state.apply({"type": "status", "time": 60, "phase": "sampling", "message": "Drawing 4 sample images",
                 "current": 0, "total": 4})
    assert state.phase == "sampling" and "Drawing 4 sample images" in state.message
    for strength in (0.7, 1.0):
        state.apply({"type": "sample", "time": 61, "step": 50, "path": f"p00-w{strength}.png", "strength": strength})
    state.apply({"type": "step", "time": 62, "step": 51, "total_steps": 100, "epoch": 2, "loss": 0.2, "lr": 1e-4,
                 "seconds_per_step": 0.5})
    assert state.phase == "training" and state.message == plan
    assert [s["path"] for s in state.samples] == ["p00-w0.7.png", "p00-w1.0.png"]
    state.apply({"type": "sample", "time": 90, "step": 80, "path": "new.png", "strength": 1.0})
    assert [s["path"] for s in state.samples] == ["new.png"]  # a new round replaces the old one
