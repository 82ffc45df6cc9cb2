"""Atomic writes: a failure mid-write never replaces the good file."""

from __future__ import annotations

import pytest

from trainer.contract.fileio import atomic_write, atomic_write_bytes, atomic_write_text


def test_atomic_write_replaces_the_file(tmp_path):
    target = tmp_path / "a" / "file.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["file.txt"]


def test_a_failing_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "lora.safetensors"
    target.write_bytes(b"good")

    def write_half_then_fail(tmp):
        tmp.write_bytes(b"ha")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, write_half_then_fail)
    assert target.read_bytes() == b"good"
    assert [p.name for p in tmp_path.iterdir()] == ["lora.safetensors"]


def test_a_new_file_gets_an_ordinary_files_mode_and_a_replaced_file_keeps_its_own(tmp_path):
    import os
    import stat

    mask = os.umask(0o022)
    try:
        fresh = tmp_path / "lora.safetensors"
        atomic_write_bytes(fresh, b"new")
        # Not mkstemp's private 0600: a web UI running as another user must be able to read the LoRA.
        assert stat.S_IMODE(fresh.stat().st_mode) == 0o644
        caption = tmp_path / "001.txt"
        caption.write_text("old")
        caption.chmod(0o640)
        atomic_write_text(caption, "new")
        assert stat.S_IMODE(caption.stat().st_mode) == 0o640 and caption.read_text() == "new"
    finally:
        os.umask(mask)
