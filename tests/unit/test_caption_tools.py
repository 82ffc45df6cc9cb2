"""Caption tools: the tag table's consistency flags, trigger/remove/replace/dedupe/sort, each undoable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from loratui.caption_tools import (
    MIN_IMAGES_TO_FLAG,
    add_trigger,
    dedupe_tags,
    load_texts,
    rare_limit,
    read_captions,
    read_texts,
    remove_tags,
    replace_tag,
    sort_tags,
    tag_key,
    tag_table,
)
from trainer.contract.caption_store import apply_edits, backup_root, history, undo_last

ROOT = os.geteuid() == 0


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), (200, 40, 40)).save(path)


def _dataset(tmp_path: Path, captions: dict[str, bytes | None]) -> Path:
    """Images named by the keys (``x.png``); each gets the caption bytes given, or none for None."""
    folder = tmp_path / "dataset"
    folder.mkdir(exist_ok=True)
    for name, caption in captions.items():
        _image(folder / name)
        if caption is not None:
            (folder / name).with_suffix(".txt").write_bytes(caption)
    return folder


def _captions(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*.txt")) if p.is_file()}


def _texts(**captions: str) -> dict[Path, str]:
    return {Path(f"{name}.txt"): text for name, text in captions.items()}


# ── reading ─────────────────────────────────────────────────────────────────────────────────

def test_every_usable_image_gets_its_caption_path_existing_or_not(tmp_path):
    folder = _dataset(tmp_path, {"a.png": b"zk, solo", "b.jpg": None, "10_zk/c.png": b"zk"})
    (folder / "notes.md").write_text("not an image")
    captions = read_captions(folder)
    assert captions == {folder / "a.png": folder / "a.txt", folder / "b.jpg": folder / "b.txt",
                        folder / "10_zk" / "c.png": folder / "10_zk" / "c.txt"}
    assert load_texts(folder) == {folder / "a.txt": "zk, solo", folder / "b.txt": "",
                                  folder / "10_zk" / "c.txt": "zk"}


def test_reading_drops_a_byte_order_mark(tmp_path):
    path = tmp_path / "a.txt"
    path.write_bytes(b"\xef\xbb\xbfzk, solo\n")
    assert read_texts([path, tmp_path / "missing.txt"]) == {path: "zk, solo\n", tmp_path / "missing.txt": ""}


# ── the tag table ───────────────────────────────────────────────────────────────────────────

def _character_captions() -> list[str]:
    captions = ["zk, 1girl, red hair, smile"] * 24
    captions[0] += ", hat"
    captions[1] += ", hat"
    captions[2] += ", glasses"
    captions[3] = captions[3].replace("zk, ", "")
    return captions


def test_the_table_counts_tags_most_common_first():
    rows = tag_table(_character_captions())
    assert [(r.tag, r.count) for r in rows] == [("1girl", 24), ("red hair", 24), ("smile", 24), ("zk", 23),
                                               ("hat", 2), ("glasses", 1)]
    assert rows[0].share == 1.0 and rows[-1].share == pytest.approx(1 / 24)


def test_a_character_tag_on_only_a_few_images_is_flagged():
    rows = {r.tag: r for r in tag_table(_character_captions(), "character", trigger="zk")}
    assert rare_limit(24) == 2
    assert rows["hat"].flagged and rows["glasses"].flagged
    assert rows["hat"].reason.startswith("only on 2 of 24 images")
    assert not rows["smile"].flagged and rows["smile"].reason == ""
    assert not rows["zk"].flagged


def test_the_trigger_word_is_never_flagged():
    captions = ["zk, 1girl"] + ["1girl"] * 23
    rows = {r.tag: r for r in tag_table(captions, "character", trigger="zk")}
    assert not rows["zk"].flagged
    assert {r.tag: r for r in tag_table(captions, "character")}["zk"].flagged


def test_styles_tiny_datasets_and_common_tags_are_not_flagged():
    assert not any(r.flagged for r in tag_table(_character_captions(), "style"))
    assert not any(r.flagged for r in tag_table(["a", "b", "c", "d"][:MIN_IMAGES_TO_FLAG - 1]))
    # Twelve images: one is 8%, so only a tag on a single image is flagged.
    captions = ["x, y"] * 10 + ["x, y, once", "x, twice, once2"]
    flagged = {r.tag for r in tag_table(captions) if r.flagged}
    assert flagged == {"once", "twice", "once2"}
    assert tag_table([]) == []


# ── operations ──────────────────────────────────────────────────────────────────────────────

def test_the_trigger_goes_first_and_never_twice():
    texts = _texts(a="1girl, red hair", b="zk, solo", c="solo, zk, smile", d="zk, zk, solo, zk", e="")
    edits = add_trigger(texts, " zk ")
    assert edits == {Path("a.txt"): "zk, 1girl, red hair", Path("c.txt"): "zk, solo, smile",
                     Path("d.txt"): "zk, solo", Path("e.txt"): "zk"}
    assert add_trigger({**texts, **edits}, "zk") == {}


def test_an_unusable_trigger_word_is_refused():
    with pytest.raises(ValueError, match="empty"):
        add_trigger(_texts(a="solo"), "  ")
    with pytest.raises(ValueError, match="comma"):
        add_trigger(_texts(a="solo"), "zk, char")


def test_only_captions_whose_tags_change_are_returned():
    # Spacing alone is never a reason to rewrite a caption.
    assert add_trigger(_texts(a="zk,solo ,  smile"), "zk") == {}
    assert dedupe_tags(_texts(a="zk ,solo")) == {}


def test_remove_matches_whole_tags_only():
    texts = _texts(a="zk, red hair, hair, hair ornament", b="zk, solo")
    assert remove_tags(texts, ["hair"]) == {Path("a.txt"): "zk, red hair, hair ornament"}
    assert remove_tags(texts, ["Red_Hair"]) == {}
    assert remove_tags(texts, ["Red_Hair", "solo"], loose=True) == {
        Path("a.txt"): "zk, hair, hair ornament", Path("b.txt"): "zk"}


def test_replace_keeps_the_position_and_matches_whole_tags():
    texts = _texts(a="zk, red hair, smile", b="zk, long red hair", c="red hair")
    assert replace_tag(texts, "red hair", "blue hair") == {Path("a.txt"): "zk, blue hair, smile",
                                                           Path("c.txt"): "blue hair"}


def test_replace_never_makes_a_duplicate_and_can_split_or_remove():
    texts = _texts(a="zk, red_hair, blue hair, smile")
    assert replace_tag(texts, "red_hair", "blue hair") == {Path("a.txt"): "zk, blue hair, smile"}
    assert replace_tag(texts, "smile", "open mouth, grin") == {Path("a.txt"): "zk, red_hair, blue hair, open mouth, grin"}
    assert replace_tag(texts, "smile", "") == {Path("a.txt"): "zk, red_hair, blue hair"}
    with pytest.raises(ValueError):
        replace_tag(texts, " ", "x")


def test_loose_matching_ignores_case_underscores_and_spacing():
    assert tag_key("Long_Hair ") == "Long_Hair"
    assert tag_key("Long_Hair", loose=True) == tag_key("long   hair", loose=True) == "long hair"
    texts = _texts(a="zk, Long_Hair", b="zk, long hair")
    assert replace_tag(texts, "long_hair", "long hair") == {}  # exact: the case differs
    assert replace_tag(texts, "Long_Hair", "long hair") == {Path("a.txt"): "zk, long hair"}
    assert replace_tag(texts, "long_hair", "very long hair", loose=True) == {
        Path("a.txt"): "zk, very long hair", Path("b.txt"): "zk, very long hair"}


def test_dedupe_keeps_the_first_occurrence():
    texts = _texts(a="zk, smile, solo, smile, zk", b="zk, long_hair, long hair")
    assert dedupe_tags(texts) == {Path("a.txt"): "zk, smile, solo"}
    assert dedupe_tags(texts, loose=True) == {Path("a.txt"): "zk, smile, solo", Path("b.txt"): "zk, long_hair"}


def test_sort_keeps_the_head_and_orders_the_rest():
    texts = _texts(a="zk, smile, Blue eyes, apron", b="zk, apron, smile", c="zk, smile")
    assert sort_tags(texts) == {Path("a.txt"): "zk, apron, Blue eyes, smile"}
    assert sort_tags(texts, keep_first=0) == {Path("a.txt"): "apron, Blue eyes, smile, zk",
                                              Path("b.txt"): "apron, smile, zk", Path("c.txt"): "smile, zk"}
    # By frequency: smile (3) before apron (2) before Blue eyes (1).
    assert sort_tags(texts, by="frequency") == {Path("a.txt"): "zk, smile, apron, Blue eyes",
                                                Path("b.txt"): "zk, smile, apron"}
    with pytest.raises(ValueError, match="sort order"):
        sort_tags(texts, by="colour")


# ── with the store: applied, backed up, undone ──────────────────────────────────────────────

def test_add_trigger_creates_missing_captions_and_undo_removes_them(tmp_path):
    folder = _dataset(tmp_path, {"a.png": b"1girl, smile\n", "b.png": None, "c.png": b"zk, solo"})
    before = _captions(folder)
    change = apply_edits(folder, add_trigger(load_texts(folder), "zk"), "add trigger word 'zk'")
    assert _captions(folder) == {"a.txt": b"zk, 1girl, smile\n", "b.txt": b"zk", "c.txt": b"zk, solo"}
    assert change.created_files == [folder / "b.txt"]
    # The dataset holds its images and captions only: the backup lives in the state folder.
    assert sorted(p.name for p in folder.iterdir()) == ["a.png", "a.txt", "b.png", "b.txt", "c.png", "c.txt"]
    assert change.folder.is_relative_to(backup_root())
    undo_last(folder)
    assert _captions(folder) == before


@pytest.mark.parametrize("operation", [
    lambda t: remove_tags(t, ["smile"]),
    lambda t: replace_tag(t, "smile", "grin"),
    lambda t: dedupe_tags(t),
    lambda t: sort_tags(t, keep_first=1),
])
def test_each_operation_is_undone_to_the_exact_bytes(tmp_path, operation):
    folder = _dataset(tmp_path, {"a.png": b"zk, smile, apron, smile\r\n", "b.png": b"zk,smile", "c.png": None})
    before = _captions(folder)
    change = apply_edits(folder, operation(load_texts(folder)), "edit")
    assert change is not None and _captions(folder) != before
    undo_last(folder)
    assert _captions(folder) == before
    assert undo_last(folder) is None


def test_two_operations_are_undone_in_order(tmp_path):
    folder = _dataset(tmp_path, {"a.png": b"1girl, smile", "b.png": b"smile"})
    original = _captions(folder)
    apply_edits(folder, add_trigger(load_texts(folder), "zk"), "add trigger word 'zk'")
    after_trigger = _captions(folder)
    apply_edits(folder, remove_tags(load_texts(folder), ["smile"]), "remove 'smile'")
    assert _captions(folder) == {"a.txt": b"zk, 1girl", "b.txt": b"zk"}
    assert [c.action for c in history(folder)] == ["remove 'smile'", "add trigger word 'zk'"]
    undo_last(folder)
    assert _captions(folder) == after_trigger
    undo_last(folder)
    assert _captions(folder) == original


# ── the commands ────────────────────────────────────────────────────────────────────────────

def _cli(*argv: str) -> int:
    from loratui.cli import main

    return main(["dataset", *argv])


def test_tags_without_actions_prints_the_table_and_changes_nothing(tmp_path, capsys):
    folder = _dataset(tmp_path, {f"{i:02d}.png": b"zk, 1girl, smile" + (b", hat" if i == 0 else b"")
                                 for i in range(12)})
    before = _captions(folder)
    assert _cli("tags", str(folder), "--trigger", "zk") == 0
    out = capsys.readouterr().out
    assert "12 images, 4 different tags, 1 flagged" in out
    hat = next(line for line in out.splitlines() if " hat " in line)
    assert "! only on 1 of 12 images" in hat
    assert "!" not in next(line for line in out.splitlines() if line.rstrip().endswith(" zk"))
    assert _captions(folder) == before and history(folder) == []


def test_trigger_command_reports_the_change_and_undo_reverts_it(tmp_path, capsys):
    folder = _dataset(tmp_path, {"a.png": b"1girl\n", "b.png": None, "c.png": b"zk, solo"})
    before = _captions(folder)
    assert _cli("trigger", str(folder), "zk") == 0
    out = capsys.readouterr().out
    assert "changed 2 of 3 captions, 1 of them new" in out
    assert f"loratui dataset undo {folder}" in out
    assert _captions(folder)["b.txt"] == b"zk"

    assert _cli("trigger", str(folder), "zk") == 0
    assert "Nothing to change" in capsys.readouterr().out

    assert _cli("history", str(folder)) == 0
    assert "add trigger word 'zk'" in capsys.readouterr().out
    assert _cli("undo", str(folder)) == 0
    out = capsys.readouterr().out
    assert "Undone: add trigger word 'zk'" in out and "1 removed" in out
    assert _captions(folder) == before
    assert _cli("undo", str(folder)) == 0
    assert "Nothing to undo" in capsys.readouterr().out


def test_tags_actions_make_one_change_and_one_undo(tmp_path, capsys):
    folder = _dataset(tmp_path, {"a.png": b"zk, smile, red hair, hat, smile", "b.png": b"zk, red hair"})
    before = _captions(folder)
    assert _cli("tags", str(folder), "--remove", "hat", "--replace", "red hair=blue hair", "--dedupe",
                "--sort", "--table") == 0
    out = capsys.readouterr().out
    assert "changed 2 of 2 captions" in out and "2 images, 3 different tags" in out
    assert _captions(folder) == {"a.txt": b"zk, blue hair, smile", "b.txt": b"zk, blue hair"}
    assert len(history(folder)) == 1
    assert _cli("undo", str(folder)) == 0
    assert _captions(folder) == before


def test_the_commands_refuse_bad_input_with_one_line(tmp_path, capsys):
    folder = _dataset(tmp_path, {"a.png": b"solo"})
    assert _cli("tags", str(folder), "--replace", "no-equals-sign") == 2
    assert _cli("trigger", str(folder), "zk, two") == 2
    assert _cli("trigger", str(tmp_path / "missing"), "zk") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("loratui: ") for line in err)
    assert _captions(folder) == {"a.txt": b"solo"}


def test_a_caption_that_cannot_be_written_refuses_the_command_and_changes_nothing(tmp_path, capsys):
    # A folder where b's caption should go cannot be written, even by root.
    folder = _dataset(tmp_path, {"a.png": b"solo", "b.png": None})
    (folder / "b.txt").mkdir()
    assert _cli("trigger", str(folder), "zk") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "b.txt" in err[0] and "nothing was changed" in err[0]
    assert _captions(folder) == {"a.txt": b"solo"} and history(folder) == []


@pytest.mark.skipif(ROOT, reason="root can write into read-only folders")
def test_a_read_only_dataset_refuses_the_command_and_changes_nothing(tmp_path, capsys):
    folder = _dataset(tmp_path, {"a.png": b"solo", "b.png": b"smile"})
    os.chmod(folder, 0o555)
    try:
        assert _cli("tags", str(folder), "--remove", "solo") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "read-only" in err[0]
        assert _captions(folder) == {"a.txt": b"solo", "b.txt": b"smile"}
    finally:
        os.chmod(folder, 0o755)


def test_what_saving_the_caption_editor_does():
    from loratui.screens.caption_editor import caption_target, plan_save

    image = Path("/data/5_x/pic.jpg.png")
    # An image without a caption gets one where the trainer looks: its name with the caption extension.
    assert caption_target(image, None, ".txt") == Path("/data/5_x/pic.jpg.txt")
    assert caption_target(image, Path("/data/5_x/pic.jpg.caption"), ".txt") == Path("/data/5_x/pic.jpg.caption")
    target = Path("/data/a.txt")
    created = plan_save(target, "  zk, smile \n", None)
    assert (created.kind, created.text, created.action) == ("write", "zk, smile", "create the caption a.txt")
    edited = plan_save(target, "zk, smile, hat", "zk, smile\n")
    assert (edited.kind, edited.text, edited.action) == ("write", "zk, smile, hat", "edit the caption a.txt")
    assert plan_save(target, "zk, smile", "zk, smile\n").kind == "nothing"  # never rewrite an untouched caption
    deleted = plan_save(target, " \n", "zk, smile\n")
    assert (deleted.kind, deleted.text, deleted.action) == ("delete", None, "delete the caption a.txt")
    nothing = plan_save(target, "", None)
    assert nothing.kind == "nothing" and "ctrl+s creates it" in nothing.action
