"""The events file: one flushed JSON line per event, readable while it is written."""

from __future__ import annotations

import json

import pytest

from trainer.contract.events import EVENT_TYPES, EventWriter, LineTail, parse_event, read_events


def test_each_event_is_readable_as_soon_as_it_is_emitted(tmp_path):
    path = tmp_path / "events.jsonl"
    tail = LineTail(path)
    assert tail.read_lines() == []  # the file does not exist yet
    writer = EventWriter(path)
    writer.emit("step", step=1, total_steps=10, epoch=1, loss=0.5, lr=1e-4, seconds_per_step=0.1)
    lines = tail.read_lines()  # no close, no explicit flush by the reader
    assert len(lines) == 1
    event = json.loads(lines[0])
    assert event["type"] == "step" and event["step"] == 1 and "time" in event
    writer.emit("done", step=10, output="x.safetensors")
    assert [parse_event(line)["type"] for line in tail.read_lines()] == ["done"]
    writer.close()


def test_non_finite_numbers_become_null(tmp_path):
    with EventWriter(tmp_path / "e.jsonl") as writer:
        writer.emit("step", loss=float("nan"), lr=float("inf"), values=[1.0, float("-inf")])
    (event,) = read_events(tmp_path / "e.jsonl")
    assert event["loss"] is None and event["lr"] is None and event["values"] == [1.0, None]


def test_unknown_event_types_are_refused(tmp_path):
    with EventWriter(tmp_path / "e.jsonl") as writer, pytest.raises(ValueError):
        writer.emit("progress")
    assert "step" in EVENT_TYPES and "done" in EVENT_TYPES


def test_a_torn_last_line_is_held_back_until_complete(tmp_path):
    path = tmp_path / "e.jsonl"
    path.write_text('{"type": "start"}\n{"type": "st')
    tail = LineTail(path)
    assert tail.read_lines() == ['{"type": "start"}']
    with open(path, "a") as handle:
        handle.write('ep", "step": 1}\n')
    assert [parse_event(line) for line in tail.read_lines()] == [{"type": "step", "step": 1}]


def test_garbage_lines_are_not_events():
    assert parse_event("") is None
    assert parse_event("Traceback (most recent call last):") is None
    assert parse_event("[1, 2]") is None
    assert parse_event('{"no_type": 1}') is None


def test_long_histories_replay_in_bounded_chunks(tmp_path):
    path = tmp_path / "e.jsonl"
    with EventWriter(path) as writer:
        for step in range(2000):
            writer.emit("step", step=step)
    tail = LineTail(path, max_chunk=4096)
    chunks = list(tail.iter_chunks())
    assert len(chunks) > 10
    assert sum(len(c) for c in chunks) == 2000
    assert parse_event(chunks[-1][-1])["step"] == 1999
