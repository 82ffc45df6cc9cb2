"""Caption changes: backed up before writing, refused whole when a file cannot be written, undone exactly."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from trainer.contract import caption_store
from trainer.contract.caption_store import (
    CONFLICT_SUFFIX,
    MANIFEST,
    CaptionWriteError,
    apply_edits,
    backup_root,
    dataset_backup_dir,
    history,
    undo_last,
)

ROOT = os.geteuid() == 0


def _dataset(tmp_path: Path, files: dict[str, bytes]) -> Path:
    folder = tmp_path / "dataset"
    folder.mkdir()
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under a folder with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_backup_root_follows_xdg_state_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert backup_root() == tmp_path / "state" / "loratui" / "caption-backups"
    monkeypatch.delenv("XDG_STATE_HOME")
    assert backup_root() == Path.home() / ".local" / "state" / "loratui" / "caption-backups"


def test_each_dataset_gets_its_own_readable_backup_folder(tmp_path):
    one, two = tmp_path / "a" / "my chars", tmp_path / "b" / "my chars"
    assert dataset_backup_dir(one) != dataset_backup_dir(two)
    assert dataset_backup_dir(one).name.startswith("my-chars-")
    assert dataset_backup_dir(one).parent == backup_root()


def test_a_change_is_backed_up_outside_the_dataset_and_undone_to_the_exact_bytes(tmp_path):
    # Odd bytes on purpose: CRLF, a byte-order mark, and a byte that is not UTF-8.
    files = {"a.txt": b"1girl, red hair\r\n", "b.txt": b"\xef\xbb\xbfsolo", "sub/c.txt": b"caf\xe9, smile\n"}
    folder = _dataset(tmp_path, files)
    edits = {folder / "a.txt": "zk, 1girl, red hair", folder / "b.txt": "zk, solo",
             folder / "sub" / "c.txt": "zk, smile"}

    change = apply_edits(folder, edits, "add trigger word 'zk'")

    assert change is not None and change.action == "add trigger word 'zk'"
    assert sorted(change.files) == sorted(edits)
    # The ending of each file is kept; the texts are UTF-8 without a byte-order mark.
    assert _snapshot(folder) == {"a.txt": b"zk, 1girl, red hair\r\n", "b.txt": b"zk, solo", "sub/c.txt": b"zk, smile\n"}
    assert not change.folder.is_relative_to(folder)
    assert change.folder.is_relative_to(backup_root())
    assert (change.folder / MANIFEST).is_file()

    undone = undo_last(folder)
    assert undone is not None and undone.id == change.id and undone.undo_conflicts == []
    assert _snapshot(folder) == files


def test_edits_that_change_nothing_make_no_change(tmp_path):
    folder = _dataset(tmp_path, {"a.txt": b"zk, solo\n"})
    # The same text without the newline: the file's own ending is kept, so it is the same file.
    assert apply_edits(folder, {folder / "a.txt": "zk, solo"}, "nothing") is None
    assert apply_edits(folder, {folder / "missing.txt": ""}, "nothing") is None
    assert history(folder) == []
    assert not (folder / "missing.txt").exists()


def test_a_created_caption_is_removed_by_undo(tmp_path):
    folder = _dataset(tmp_path, {"a.txt": b"solo"})
    change = apply_edits(folder, {folder / "new.txt": "zk", folder / "a.txt": "zk, solo"}, "add trigger")
    assert (folder / "new.txt").read_bytes() == b"zk"
    assert change.created_files == [folder / "new.txt"]
    undo_last(folder)
    assert _snapshot(folder) == {"a.txt": b"solo"}



def test_a_removed_caption_is_backed_up_and_undo_writes_it_back(tmp_path):
    files = {"a.txt": b"zk, solo\r\n", "b.txt": b"zk, smile"}
    folder = _dataset(tmp_path, files)
    os.chmod(folder / "a.txt", 0o640)

    change = apply_edits(folder, {folder / "a.txt": None}, "delete the caption a.txt")

    assert _snapshot(folder) == {"b.txt": b"zk, smile"}
    assert change.removed_files == [folder / "a.txt"] and change.created_files == []
    # Read back from its manifest, the removal is still a removal.
    assert history(folder)[0].removed_files == [folder / "a.txt"]
    undone = undo_last(folder)
    assert undone is not None and undone.undo_conflicts == []
    assert _snapshot(folder) == files  # the exact bytes, CRLF included
    assert stat.S_IMODE((folder / "a.txt").stat().st_mode) == 0o640


def test_removing_a_caption_that_is_not_there_changes_nothing(tmp_path):
    folder = _dataset(tmp_path, {"b.txt": b"zk"})
    assert apply_edits(folder, {folder / "a.txt": None}, "delete") is None
    assert history(folder) == []


def test_a_caption_written_again_after_its_removal_is_kept_by_undo(tmp_path):
    folder = _dataset(tmp_path, {"a.txt": b"old words"})
    apply_edits(folder, {folder / "a.txt": None}, "delete the caption a.txt")
    (folder / "a.txt").write_bytes(b"new words")  # written since, by hand or by another tool

    undone = undo_last(folder)

    side = folder / ("a.txt" + CONFLICT_SUFFIX)
    assert undone.undo_conflicts == [(folder / "a.txt", side)]
    assert _snapshot(folder) == {"a.txt": b"new words", "a.txt" + CONFLICT_SUFFIX: b"old words"}


def test_a_removal_that_fails_half_way_puts_back_what_was_removed(tmp_path, monkeypatch):
    folder = _dataset(tmp_path, {"a.txt": b"one", "b.txt": b"two"})

    real_write = caption_store._write_file
    calls = []

    def failing_write(path, data, mode):
        calls.append(path)
        if len(calls) == 1:
            raise OSError(28, "No space left on device")
        real_write(path, data, mode)

    # One change that removes a.txt, then fails to write b.txt: the rollback writes a.txt back.
    monkeypatch.setattr(caption_store, "_write_file", failing_write)
    with pytest.raises(CaptionWriteError, match="nothing was changed"):
        apply_edits(folder, {folder / "a.txt": None, folder / "b.txt": "TWO"}, "mixed")
    assert calls == [folder / "b.txt", folder / "a.txt"]
    assert _snapshot(folder) == {"a.txt": b"one", "b.txt": b"two"}


def test_two_changes_are_undone_newest_first_then_nothing_is_left(tmp_path):
    folder = _dataset(tmp_path, {"a.txt": b"one"})
    first = apply_edits(folder, {folder / "a.txt": "two"}, "first")
    second = apply_edits(folder, {folder / "a.txt": "three"}, "second")
    assert second.id > first.id
    assert [c.action for c in history(folder)] == ["second", "first"]

    assert undo_last(folder).action == "second"
    assert (folder / "a.txt").read_bytes() == b"two"
    assert [c.undone for c in history(folder)] == [True, False]
    assert undo_last(folder).action == "first"
    assert (folder / "a.txt").read_bytes() == b"one"
    assert undo_last(folder) is None
    assert (folder / "a.txt").read_bytes() == b"one"


def test_undo_after_a_new_change_skips_the_undone_one(tmp_path):
    folder = _dataset(tmp_path, {"a.txt": b"one"})
    apply_edits(folder, {folder / "a.txt": "two"}, "first")
    apply_edits(folder, {folder / "a.txt": "three"}, "second")
    undo_last(folder)  # back to "two"
    apply_edits(folder, {folder / "a.txt": "four"}, "third")
    assert undo_last(folder).action == "third"
    assert undo_last(folder).action == "first"
    assert (folder / "a.txt").read_bytes() == b"one"


def test_a_caption_edited_after_the_change_is_kept_and_its_old_text_put_beside_it(tmp_path):
    folder = _dataset(tmp_path, {"a.txt": b"solo", "b.txt": b"smile"})
    apply_edits(folder, {folder / "a.txt": "zk, solo", folder / "b.txt": "zk, smile"}, "add trigger")
    (folder / "a.txt").write_bytes(b"zk, solo, hand edited")

    undone = undo_last(folder)

    side = folder / ("a.txt" + CONFLICT_SUFFIX)
    assert undone.undo_conflicts == [(folder / "a.txt", side)]
    assert (folder / "a.txt").read_bytes() == b"zk, solo, hand edited"
    assert side.read_bytes() == b"solo"
    assert (folder / "b.txt").read_bytes() == b"smile"
    # The conflict is recorded, and the change counts as undone.
    assert history(folder)[0].undone and history(folder)[0].undo_conflicts == [(folder / "a.txt", side)]


def test_a_created_caption_edited_since_is_kept(tmp_path):
    folder = _dataset(tmp_path, {})
    apply_edits(folder, {folder / "a.txt": "zk"}, "add trigger")
    (folder / "a.txt").write_text("zk, my own words")
    undone = undo_last(folder)
    assert undone.undo_conflicts == [(folder / "a.txt", None)]
    assert _snapshot(folder) == {"a.txt": b"zk, my own words"}


def test_a_second_conflict_never_overwrites_the_first_side_file(tmp_path):
    folder = _dataset(tmp_path, {"a.txt": b"v1", "a.txt" + CONFLICT_SUFFIX: b"kept from before"})
    apply_edits(folder, {folder / "a.txt": "v2"}, "edit")
    (folder / "a.txt").write_text("v3")
    undone = undo_last(folder)
    assert undone.undo_conflicts[0][1].name == "a.txt" + CONFLICT_SUFFIX + "-2"
    assert (folder / ("a.txt" + CONFLICT_SUFFIX)).read_bytes() == b"kept from before"
    assert (folder / ("a.txt" + CONFLICT_SUFFIX + "-2")).read_bytes() == b"v1"


def test_permissions_are_kept_and_new_captions_get_the_folder_bits(tmp_path):
    folder = _dataset(tmp_path, {"a.txt": b"solo"})
    os.chmod(folder / "a.txt", 0o640)
    os.chmod(folder, 0o755)
    apply_edits(folder, {folder / "a.txt": "zk, solo", folder / "new.txt": "zk"}, "add trigger")
    assert stat.S_IMODE((folder / "a.txt").stat().st_mode) == 0o640
    assert stat.S_IMODE((folder / "new.txt").stat().st_mode) == 0o644
    undo_last(folder)
    assert stat.S_IMODE((folder / "a.txt").stat().st_mode) == 0o640


def test_a_caption_reached_through_a_link_is_written_through_it(tmp_path):
    folder = _dataset(tmp_path, {"real.txt": b"solo"})
    (folder / "a.txt").symlink_to("real.txt")
    apply_edits(folder, {folder / "a.txt": "zk, solo"}, "add trigger")
    assert (folder / "a.txt").is_symlink()
    assert (folder / "real.txt").read_bytes() == b"zk, solo"
    undo_last(folder)
    assert (folder / "a.txt").is_symlink() and (folder / "real.txt").read_bytes() == b"solo"


def test_relative_paths_and_a_linked_dataset_folder_land_in_the_same_history(tmp_path, monkeypatch):
    folder = _dataset(tmp_path, {"a.txt": b"solo"})
    (tmp_path / "link").symlink_to(folder)
    monkeypatch.chdir(tmp_path)
    apply_edits(Path("link"), {Path("link/a.txt"): "zk, solo"}, "add trigger")
    assert [c.files for c in history(folder)] == [[folder / "a.txt"]]
    assert undo_last(Path("dataset")).files == [folder / "a.txt"]
    assert (folder / "a.txt").read_bytes() == b"solo"


def test_an_edit_outside_the_dataset_is_a_programming_error(tmp_path):
    folder = _dataset(tmp_path, {})
    with pytest.raises(ValueError, match="not a file inside"):
        apply_edits(folder, {tmp_path / "elsewhere.txt": "zk"}, "x")


# ── refusals: nothing changes ────────────────────────────────────────────────────────────────

def test_a_folder_in_place_of_a_caption_refuses_the_whole_change(tmp_path):
    folder = _dataset(tmp_path, {"a.txt": b"solo"})
    (folder / "b.txt").mkdir()
    before = _snapshot(folder)
    with pytest.raises(CaptionWriteError) as caught:
        apply_edits(folder, {folder / "a.txt": "zk, solo", folder / "b.txt": "zk"}, "add trigger")
    assert "b.txt" in str(caught.value) and "nothing was changed" in str(caught.value)
    assert [p.name for p, _ in caught.value.problems] == ["b.txt"]
    assert _snapshot(folder) == before and (folder / "b.txt").is_dir()
    assert history(folder) == []


def test_a_file_reported_read_only_refuses_the_whole_change(tmp_path, monkeypatch):
    # Works as root too: os.access answers as for an ordinary user with a read-only file.
    folder = _dataset(tmp_path, {"a.txt": b"solo", "b.txt": b"smile"})
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if Path(p).name == "b.txt" else real_access(p, mode))
    with pytest.raises(CaptionWriteError, match=r"b\.txt: the file is read-only.*nothing was changed"):
        apply_edits(folder, {folder / "a.txt": "zk, solo", folder / "b.txt": "zk, smile"}, "add trigger")
    assert _snapshot(folder) == {"a.txt": b"solo", "b.txt": b"smile"}
    assert history(folder) == []


@pytest.mark.skipif(ROOT, reason="root can write read-only files")
def test_a_read_only_caption_file_refuses_the_whole_change(tmp_path):
    folder = _dataset(tmp_path, {"a.txt": b"solo", "b.txt": b"smile"})
    os.chmod(folder / "b.txt", 0o444)
    with pytest.raises(CaptionWriteError, match="read-only"):
        apply_edits(folder, {folder / "a.txt": "zk, solo", folder / "b.txt": "zk, smile"}, "add trigger")
    assert _snapshot(folder) == {"a.txt": b"solo", "b.txt": b"smile"}


@pytest.mark.skipif(ROOT, reason="root can write into read-only folders")
def test_a_read_only_dataset_folder_refuses_the_whole_change(tmp_path):
    folder = _dataset(tmp_path, {"a.txt": b"solo"})
    os.chmod(folder, 0o555)
    try:
        with pytest.raises(CaptionWriteError, match="folder is read-only"):
            apply_edits(folder, {folder / "a.txt": "zk, solo", folder / "new.txt": "zk"}, "add trigger")
        assert _snapshot(folder) == {"a.txt": b"solo"}
    finally:
        os.chmod(folder, 0o755)


def test_an_unusable_backup_folder_refuses_the_change(tmp_path, monkeypatch):
    folder = _dataset(tmp_path, {"a.txt": b"solo"})
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "not-a-folder"))
    with pytest.raises(CaptionWriteError, match="XDG_STATE_HOME"):
        apply_edits(folder, {folder / "a.txt": "zk, solo"}, "add trigger")
    assert _snapshot(folder) == {"a.txt": b"solo"}


def test_a_failure_half_way_puts_back_what_was_written(tmp_path, monkeypatch):
    folder = _dataset(tmp_path, {"a.txt": b"one", "b.txt": b"two"})
    real_write = caption_store._write_file
    calls = []

    def failing_write(path, data, mode):
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_write(path, data, mode)

    monkeypatch.setattr(caption_store, "_write_file", failing_write)
    with pytest.raises(CaptionWriteError, match="nothing was changed"):
        apply_edits(folder, {folder / "a.txt": "ONE", folder / "b.txt": "TWO"}, "upper-case")
    assert _snapshot(folder) == {"a.txt": b"one", "b.txt": b"two"}
    assert history(folder)[0].undone  # the rollback is recorded, so undo goes further back


@pytest.mark.skipif(ROOT, reason="root can write into read-only folders")
def test_undo_into_a_read_only_folder_refuses_and_changes_nothing(tmp_path):
    folder = _dataset(tmp_path, {"a.txt": b"solo"})
    apply_edits(folder, {folder / "a.txt": "zk, solo"}, "add trigger")
    os.chmod(folder, 0o555)
    try:
        with pytest.raises(CaptionWriteError, match="nothing was undone"):
            undo_last(folder)
        assert (folder / "a.txt").read_bytes() == b"zk, solo"
        assert not history(folder)[0].undone
    finally:
        os.chmod(folder, 0o755)


def test_a_damaged_backup_is_never_restored(tmp_path):
    folder = _dataset(tmp_path, {"a.txt": b"solo"})
    change = apply_edits(folder, {folder / "a.txt": "zk, solo"}, "add trigger")
    change.backups[0].backup.write_bytes(b"garbage")
    with pytest.raises(CaptionWriteError, match="damaged"):
        undo_last(folder)
    assert (folder / "a.txt").read_bytes() == b"zk, solo"
    assert not history(folder)[0].undone


def test_a_backup_without_its_manifest_is_not_taken_for_a_change(tmp_path):
    folder = _dataset(tmp_path, {"a.txt": b"solo"})
    change = apply_edits(folder, {folder / "a.txt": "zk, solo"}, "add trigger")
    half_made = change.folder.parent / "29990101-000000-000000"
    (half_made / "files").mkdir(parents=True)
    (half_made / "files" / "00000").write_bytes(b"partial")
    assert [c.id for c in history(folder)] == [change.id]
    undo_last(folder)
    assert (folder / "a.txt").read_bytes() == b"solo"


def test_ids_keep_their_order_when_the_clock_goes_back(tmp_path, monkeypatch):
    folder = _dataset(tmp_path, {"a.txt": b"one"})
    first = apply_edits(folder, {folder / "a.txt": "two"}, "first")
    monkeypatch.setattr(caption_store.time, "time_ns", lambda: 0)  # back to 1970
    second = apply_edits(folder, {folder / "a.txt": "three"}, "second")
    assert second.id > first.id
    assert [c.action for c in history(folder)] == ["second", "first"]
