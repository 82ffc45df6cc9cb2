"""``loratui dataset scan``: a corpus of bad input, each case reported by code and file, nothing changed."""

from __future__ import annotations

import json
import os
import random
import stat
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageEnhance

from loratui.cli import main
from loratui.dataset import CODES, scan_folder
from loratui.dataset.similar import difference_hash
from loratui.rules import guide
from trainer.contract.dataset_scan import scan_dataset
from trainer.contract.plan import assign_bucket

TRIGGER = "zkhero"


def picture(seed: int, size: tuple[int, int] = (256, 256)) -> Image.Image:
    """A picture with large shapes (so its perceptual hash is stable), different for every seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x0, y0 = rng.randrange(size[0]), rng.randrange(size[1])
        box = (x0, y0, x0 + rng.randrange(20, size[0] // 2), y0 + rng.randrange(20, size[1] // 2))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape(box, fill=tuple(rng.randrange(256) for _ in range(3)))
    return image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def huge_png(path: Path, width: int, height: int) -> None:
    """A real, valid 1-bit PNG of this size: all-zero rows compress to a few KB (a decompression bomb)."""
    packer = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", pixels) + _chunk(b"IEND", b""))


def captioned(path: Path, image: Image.Image, caption: str | None = f"{TRIGGER}, 1boy", **save) -> Path:
    image.save(path, **save)
    if caption is not None:
        path.with_suffix(".txt").write_text(caption, encoding="utf-8")
    return path


def build_corpus(root: Path) -> Path:
    """Every kind of bad input the issue names, beside enough good images to train."""
    hero = root / "10_hero"
    hero.mkdir(parents=True)
    for index in range(4):
        captioned(hero / f"good_{index}.png", picture(index))
    captioned(root / "top.png", picture(10))

    good_jpeg = hero / "whole.jpg"
    captioned(good_jpeg, picture(11), quality=90)
    data = good_jpeg.read_bytes()
    (hero / "cut.jpg").write_bytes(data[: len(data) // 2])
    (hero / "cut.txt").write_text(TRIGGER)
    (hero / "empty.png").write_bytes(b"")
    (hero / "notes.png").write_text("this is a text file with an image's name\n")
    deep = np.linspace(0, 65535, 128 * 128, dtype=np.uint16).reshape(128, 128)
    captioned(hero / "deep16.png", Image.fromarray(deep))  # mode I;16
    captioned(hero / "print.jpg", picture(12).convert("CMYK"), quality=90)
    huge_png(hero / "huge.png", 20000, 20000)
    huge_png(hero / "large.png", 10000, 10000)
    captioned(hero / "ünï cödé 日本.png", picture(13))
    captioned(hero / "with space.jpg", picture(14), caption=None, quality=90)
    captioned(hero / "blank.png", picture(15), caption="  \n ")
    captioned(hero / "untriggered.png", picture(16), caption="1boy, red hair")
    (hero / "lonely.txt").write_text(f"{TRIGGER}, its image was deleted")
    Image.new("P", (32, 32)).save(hero / "moving.gif")
    captioned(hero / "tiny.png", picture(17, (96, 96)))
    (hero / "good_0_copy.png").write_bytes((hero / "good_0.png").read_bytes())
    (hero / "good_0_copy.txt").write_text(TRIGGER)
    source = picture(18)
    captioned(hero / "near_a.jpg", source, quality=92)
    captioned(hero / "near_b.jpg", ImageEnhance.Brightness(source).enhance(1.05), quality=70)

    nested = hero / "old" / "older"
    nested.mkdir(parents=True)
    picture(19).save(nested / "forgotten.png")
    os.symlink(hero, hero / "loop")
    os.symlink(root, root / "back")
    locked = root / "locked"
    locked.mkdir()
    captioned(locked / "secret.png", picture(20))
    os.chmod(locked, 0)
    captioned(hero / "private.png", picture(21))
    os.chmod(hero / "private.png", 0)
    return root


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry's type, mode, mtime and content (bytes, or a link's target), without following links."""
    found = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            path = Path(folder) / name
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(info.st_mode):
                try:
                    content = path.read_bytes()
                except PermissionError:
                    content = "unreadable"
            else:
                content = None
            found[str(path.relative_to(root))] = (info.st_mode, info.st_mtime_ns, content)
    return found


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """The corpus, scanned once: (root, report, snapshot before, snapshot after)."""
    root = build_corpus(tmp_path_factory.mktemp("corpus") / "dataset")
    before = snapshot(root)
    report = scan_folder(root, resolution=512, trigger_word=TRIGGER, cache_dir=root.parent / "cache")
    after = snapshot(root)
    yield root, report, before, after
    os.chmod(root / "locked", 0o755)  # so pytest can clean up
    os.chmod(root / "10_hero" / "private.png", 0o644)


def _codes(report) -> set[tuple[str, str]]:
    return {(issue.code, report.relative(issue.path)) for issue in report.issues}


@pytest.mark.parametrize("code, path", [
    ("broken_image", "10_hero/cut.jpg"),
    ("zero_bytes", "10_hero/empty.png"),
    ("not_an_image", "10_hero/notes.png"),
    ("unusual_mode", "10_hero/deep16.png"),
    ("unusual_mode", "10_hero/print.jpg"),
    ("decompression_bomb", "10_hero/huge.png"),
    ("decompression_bomb", "10_hero/large.png"),
    ("missing_caption", "10_hero/with space.jpg"),
    ("empty_caption", "10_hero/blank.png"),
    ("no_trigger", "10_hero/untriggered.png"),
    ("orphan_caption", "10_hero/lonely.txt"),
    ("unsupported", "10_hero/moving.gif"),
    ("too_small", "10_hero/tiny.png"),
    ("duplicate", "10_hero/good_0_copy.png"),
    ("near_duplicate", "10_hero/near_b.jpg"),
    ("nested_ignored", "10_hero/old/older"),
    ("symlink_loop", "10_hero/loop"),
    ("symlink_loop", "back"),
])
def test_each_bad_input_is_reported_with_its_code_and_file(corpus, code, path):
    _, report, _, _ = corpus
    assert (code, path) in _codes(report), sorted(_codes(report))


def test_the_scan_changes_nothing_in_the_dataset(corpus):
    _, _, before, after = corpus
    assert after == before


def test_what_cannot_be_trained_is_an_error_and_left_out(corpus):
    _, report, _, _ = corpus
    usable = {report.relative(image.path) for image in report.images}
    for name in ("cut.jpg", "empty.png", "notes.png", "huge.png", "large.png", "moving.gif"):
        assert f"10_hero/{name}" not in usable
        assert any(i.severity == "error" and i.path.name == name for i in report.issues), name
    # Odd but trainable files stay in, with a note; unicode and spaces in names are no problem.
    for name in ("deep16.png", "print.jpg", "ünï cödé 日本.png", "with space.jpg", "tiny.png", "good_0_copy.png"):
        assert f"10_hero/{name}" in usable, name
    assert "10_hero/old/older/forgotten.png" not in usable
    assert report.has_errors


def test_messages_name_what_happens(corpus):
    _, report, _, _ = corpus
    issues = {(i.code, i.path.name): i for i in report.issues}
    assert "10000×10000" in issues["decompression_bomb", "large.png"].message
    assert "400 megapixels" in issues["decompression_bomb", "huge.png"].message
    assert "cut short" in issues["broken_image", "cut.jpg"].message
    assert "text" in issues["not_an_image", "notes.png"].message
    assert "own, smaller size (64×64)" in issues["too_small", "tiny.png"].message
    assert "good_0.png" in issues["duplicate", "good_0_copy.png"].message
    assert "near_a.jpg" in issues["near_duplicate", "near_b.jpg"].message
    assert "10_hero" in issues["nested_ignored", "older"].message
    assert "neither does the trainer" in issues["symlink_loop", "back"].message
    assert issues["symlink_loop", "loop"].severity == "info"  # too deep for the trainer to follow
    assert all(i.severity == CODES[i.code] for i in report.issues if i.code not in ("symlink_loop", "unreadable"))


def test_repeats_buckets_and_summary(corpus):
    root, report, _, _ = corpus
    for image in report.images:
        assert image.bucket == assign_bucket(image.width, image.height, 512)
        assert image.repeats == (10 if image.folder.name == "10_hero" else 1)
    folders = {report.relative(f.path): (f.images, f.repeats, f.effective_images) for f in report.folders}
    hero = sum(1 for image in report.images if image.folder.name == "10_hero")
    assert folders["10_hero"] == (hero, 10, hero * 10)
    assert report.effective_images == sum(f.effective_images for f in report.folders)
    assert report.captions() == {"missing": 1, "empty": 1, "no_trigger": 1}
    assert report.duplicates == [[root / "10_hero" / "good_0.png", root / "10_hero" / "good_0_copy.png"]]
    assert [sorted(p.name for p in group) for group in report.near_duplicates] == [["near_a.jpg", "near_b.jpg"]]
    assert sum(n for _, n in report.buckets()) == len(report.images)


def test_a_folder_and_a_file_without_permissions_are_named(corpus):
    root, report, _, _ = corpus
    try:
        os.listdir(root / "locked")
    except PermissionError:
        pass
    else:
        pytest.skip("permissions are not enforced for this user (root reads any folder)")
    unreadable = {report.relative(i.path): i.severity for i in report.issues if i.code == "unreadable"}
    assert unreadable == {"locked": "error", "10_hero/private.png": "error"}
    assert "10_hero/private.png" not in {report.relative(i.path) for i in report.images}


def test_a_clean_dataset_matches_the_trainers_view(tmp_path):
    root = tmp_path / "clean"
    (root / "5_pose").mkdir(parents=True)
    (root / "misc" / "deeper").mkdir(parents=True)
    (root / ".backup").mkdir()
    captioned(root / "a.png", picture(1, (320, 256)))
    captioned(root / "5_pose" / "b.jpg", picture(2, (700, 1100)), quality=90)
    rotated = Image.Exif()
    rotated[0x0112] = 6
    captioned(root / "5_pose" / "c.jpg", picture(3, (320, 192)), quality=90, exif=rotated)
    captioned(root / "misc" / "d.webp", picture(4, (2000, 1500)))
    captioned(root / "misc" / "e.bmp", picture(5, (400, 400)), caption=None)
    picture(6).save(root / "misc" / "deeper" / "ignored.png")
    picture(7).save(root / ".backup" / "hidden.png")

    report = scan_folder(root, resolution=768, default_repeats=2, near_duplicates=False)
    trainer = scan_dataset(root, 2)
    assert [(i.path, i.caption_path, i.width, i.height, i.repeats) for i in report.images] == \
           [(i.path, i.caption_path, i.width, i.height, i.repeats) for i in trainer.images]
    assert (report.images[2].width, report.images[2].height) == (192, 320)  # EXIF rotation honoured
    assert [i.bucket for i in report.images] == [assign_bucket(i.width, i.height, 768) for i in trainer.images]
    assert {(i.code, report.relative(i.path)) for i in report.issues} >= {("nested_ignored", "misc/deeper"),
                                                                         ("missing_caption", "misc/e.bmp")}
    assert not report.has_errors and report.near_duplicates is None


def test_the_size_verdict_is_the_guides(tmp_path):
    for index in range(3):
        picture(index, (64, 64)).save(tmp_path / f"{index}.png")
    few = scan_folder(tmp_path, near_duplicates=False)
    assert few.size_severity == "danger" and few.size_verdict.startswith("Only 3 usable images")
    low, high = guide.CHARACTER_SWEET_SPOT
    for index in range(3, low):
        picture(index, (64, 64)).save(tmp_path / f"{index}.png")
    sweet = scan_folder(tmp_path, near_duplicates=False)
    assert sweet.size_severity == "ok" and f"{low}–{high}" in sweet.size_verdict
    style = scan_folder(tmp_path, kind="style", near_duplicates=False)
    assert style.size_severity == "warn" and "style" in style.size_verdict


def test_the_hash_cache_lives_outside_the_dataset_and_is_used(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    root = tmp_path / "data"
    root.mkdir()
    for index in range(3):
        picture(index).save(root / f"{index}.png")
    first = scan_folder(root)
    files = list((tmp_path / "xdg" / "loratui" / "phash").glob("*.json"))
    assert len(files) == 1 and sorted(p.name for p in root.iterdir()) == ["0.png", "1.png", "2.png"]
    assert {i.path.name: i.phash for i in first.images}["0.png"] == difference_hash(root / "0.png")

    # A rescan reads hashes from the cache: a planted value comes back for an unchanged file …
    cache = json.loads(files[0].read_text())
    cache["entries"]["0.png"][2] = "00000000000000ff"
    files[0].write_text(json.dumps(cache))
    assert {i.path.name: i.phash for i in scan_folder(root).images}["0.png"] == 0xFF
    # … and a changed file (new mtime) is hashed again.
    os.utime(root / "0.png", ns=(1, 1))
    assert {i.path.name: i.phash for i in scan_folder(root).images}["0.png"] == difference_hash(root / "0.png")


def test_damage_only_a_decode_can_see_is_found_by_the_similarity_pass(tmp_path):
    picture(1).save(tmp_path / "ok.png")
    picture(2).save(tmp_path / "bad.png")
    data = bytearray((tmp_path / "bad.png").read_bytes())
    data[200:400] = bytes(200)  # damage inside the compressed pixels; header and IEND are intact
    (tmp_path / "bad.png").write_bytes(bytes(data))
    fast = scan_folder(tmp_path, near_duplicates=False)
    assert [i.path.name for i in fast.images] == ["bad.png", "ok.png"]
    full = scan_folder(tmp_path, cache_dir=tmp_path.parent / "cache")
    assert [i.path.name for i in full.images] == ["ok.png"]
    assert ("broken_image", "bad.png") in _codes(full)


def test_a_name_that_is_not_utf8_is_reported_printably(tmp_path, capsys):
    os.makedirs(tmp_path / "data")
    name = os.fsdecode(b"caf\xe9.png")
    picture(1).save(tmp_path / "data" / name)
    report = scan_folder(tmp_path / "data", near_duplicates=False)
    assert report.relative(report.images[0].path) == "caf\ufffd.png"
    assert main(["dataset", "scan", str(tmp_path / "data")]) == 0
    assert "caf\ufffd.png" in capsys.readouterr().out


def test_cli_text_names_each_file_and_exits_1_on_errors(corpus, capsys):
    root, _, _, _ = corpus
    assert main(["dataset", "scan", str(root), "--resolution", "512", "--trigger", TRIGGER]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"{root}: ")
    assert "10_hero/" in out and "× 10 repeats" in out
    for heading in ("ERROR broken_image: 1 file", "ERROR decompression_bomb: 2 files", "WARNING duplicate: 1 file"):
        assert heading in out
    for name in ("10_hero/cut.jpg: ", "10_hero/empty.png: ", "10_hero/notes.png: ", "10_hero/moving.gif: ",
                 "10_hero/lonely.txt: "):
        assert name in out, name
    assert "fix or remove them before you train" in out
    # Every 256-px image is too small for 512 px: said once, with a few of the names.
    assert "WARNING too_small: 18 files\n  18 images are well below the training size 512×512" in out
    assert "(and 15 more; --all lists them)" in out and "ünï cödé 日本.png" not in out
    assert main(["dataset", "scan", str(root), "--resolution", "512", "--trigger", TRIGGER, "--all"]) == 1
    assert "10_hero/ünï cödé 日本.png" in capsys.readouterr().out


def test_cli_json_is_complete_and_stable(corpus, capsys):
    root, report, _, _ = corpus
    assert main(["dataset", "scan", str(root), "--resolution", "512", "--trigger", TRIGGER, "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {"root", "settings", "summary", "images", "duplicates", "near_duplicates", "issues", "seconds"}
    assert set(data["summary"]) == {"images", "effective_images", "folders", "resolutions", "buckets", "captions",
                                    "size", "issues"}
    assert data["summary"]["images"] == len(report.images)
    assert {(i["code"], i["path"]) for i in data["issues"]} == _codes(report)
    assert {i["severity"] for i in data["issues"]} <= {"error", "warning", "info"}
    hero = next(f for f in data["summary"]["folders"] if f["path"] == "10_hero")
    assert hero["repeats"] == 10 and hero["effective_images"] == hero["images"] * 10
    first = data["images"][0]
    assert set(first) == {"path", "folder", "repeats", "width", "height", "format", "mode", "bytes", "bucket",
                          "caption", "phash"}


def test_cli_exit_codes_for_clean_and_missing_folders(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    for index in range(2):
        captioned(data / f"{index}.png", picture(index, (1024, 1024)), caption=TRIGGER)
    assert main(["dataset", "scan", str(data), "--trigger", TRIGGER, "--no-similar"]) == 0
    assert "Nothing blocks training" in capsys.readouterr().out  # the size verdict still warns
    assert main(["dataset", "scan", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["dataset", "scan", str(data / "0.png")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as raised:
        main(["dataset", "scan"])
    assert raised.value.code == 2
