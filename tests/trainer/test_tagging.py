"""Auto-captioning end to end: a tiny ONNX tagger and a tiny BLIP, built offline, in a child process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.trainer.helpers import of_type, wait_for
from trainer.contract.caption_store import history, undo_last
from trainer.contract.captions import split_tags
from trainer.contract.events import read_events
from trainer.contract.tagging_jobs import JobPaths, TaggingError, job_running, new_job, read_job, start_job
from trainer.tools.tiny_taggers import TINY_TAGS, build_tiny_wd14

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
RATING = {name for name, category in TINY_TAGS if category == 9}
GENERAL = {name for name, category in TINY_TAGS if category == 0}
CHARACTER = {name for name, category in TINY_TAGS if category == 4}


def _child_env() -> dict[str, str]:
    # Tiny models gain nothing from threads, and on a busy two-core machine OpenMP's spinning
    # threads make every small operation milliseconds slower.
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def tiny_wd14(tmp_path_factory) -> Path:
    return build_tiny_wd14(tmp_path_factory.mktemp("models") / "tiny-wd14")


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "tiny-blip"
    # A child process, as conftest builds the SD models: torch stays out of the test process.
    subprocess.run([sys.executable, "-m", "trainer.tools.tiny_taggers", str(folder), "--kind", "blip"], check=True,
                   stdin=subprocess.DEVNULL, capture_output=True, env=_child_env())
    return folder


@pytest.fixture
def tag_dataset(dataset: Path) -> Path:
    """The demo dataset with one empty caption, one missing caption and one broken image."""
    (dataset / "mascot_00.txt").write_bytes(b"")
    (dataset / "mascot_01.txt").unlink()
    (dataset / "broken.png").write_bytes(b"not a png at all")
    return dataset


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix == ".txt"}


def _run(job_dir: Path, timeout: float = 180) -> tuple[int, list[dict]]:
    paths = JobPaths(job_dir)
    with open(paths.log, "wb") as log:
        status = subprocess.run([sys.executable, "-m", "trainer.tagging", str(job_dir)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, timeout=timeout, env=_child_env()).returncode
    return status, read_events(paths.events)


def _final(events: list[dict]) -> dict:
    finals = [e for e in events if e["type"] in ("done", "stopped", "error")]
    assert len(finals) == 1 and events[-1] is finals[0], [e["type"] for e in events]
    return finals[0]


def _tags(folder: Path, name: str) -> list[str]:
    return split_tags((folder / name).read_text(encoding="utf-8"))


def _readable(name: str) -> str:
    return name if name == "^_^" else name.replace("_", " ")


# ── preprocessing ─────────────────────────────────────────────────────────────────────────────

def test_preprocess_composites_on_white_pads_white_and_gives_bgr_nhwc():
    from trainer.tagging.wd14 import preprocess

    image = Image.new("RGBA", (4, 2), (0, 0, 0, 0))
    image.putpixel((0, 0), (255, 0, 0, 255))    # opaque red
    image.putpixel((1, 0), (0, 0, 255, 128))    # half-transparent blue
    image.putpixel((2, 1), (10, 200, 30, 255))  # opaque green-ish
    array = preprocess(image, 4)  # the padded square is already 4 px: no resizing blurs the check

    assert array.shape == (1, 4, 4, 3) and array.dtype == np.float32
    assert array.flags["C_CONTIGUOUS"]
    assert np.all(array[0, 0] == 255) and np.all(array[0, 3] == 255), "padding rows must be white"
    assert array[0, 1, 0].tolist() == [0, 0, 255], "red must come out as BGR"
    assert array[0, 2, 2].tolist() == [30, 200, 10]
    assert array[0, 1, 3].tolist() == [255, 255, 255], "transparent pixels become white"
    blue = array[0, 1, 1]
    assert blue[0] == 255 and abs(blue[1] - 127) <= 1 and abs(blue[2] - 127) <= 1, blue

    tall = preprocess(Image.new("RGB", (2, 6), (40, 80, 120)), 6)
    assert np.all(tall[0, :, :2] == 255) and np.all(tall[0, :, 4:] == 255), "pad left and right"
    assert tall[0, 3, 3].tolist() == [120, 80, 40]

    resized = preprocess(Image.new("L", (30, 20), 90), 8)
    assert resized.shape == (1, 8, 8, 3) and resized.max() <= 255 and resized.min() >= 0
    assert resized[0, 4, 4].tolist() == [90, 90, 90], "values stay in 0–255, not normalised"


def test_the_tiny_tagger_takes_nhwc_pictures_like_the_real_ones(tiny_wd14):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tiny_wd14 / "model.onnx"), providers=["CPUExecutionProvider"])
    (model_input,) = session.get_inputs()
    assert model_input.shape[1:] == [32, 32, 3] and model_input.type == "tensor(float)"
    scores = session.run(None, {model_input.name: np.full((2, 32, 32, 3), 128, np.float32)})[0]
    assert scores.shape == (2, len(TINY_TAGS)) and np.all((scores > 0) & (scores < 1))


def test_tag_image_thresholds_order_and_spelling(tiny_wd14):
    from trainer.tagging.wd14 import default_thresholds, load_wd14, tag_image

    tagger = load_wd14(str(tiny_wd14))
    assert tagger.size == 32 and tagger.device == "cpu"
    picture = Image.new("RGB", (50, 40), (200, 60, 60))
    scores = dict(zip(tagger.names, tagger.scores(picture)))

    everything = tag_image(tagger, picture, 0.0, 0.0, underscores_to_spaces=False)
    assert set(everything) == GENERAL | CHARACTER, "every general and character tag, no rating tag"
    assert [scores[t] for t in everything] == sorted((scores[t] for t in everything), reverse=True)
    assert tag_image(tagger, picture, 1.0, 1.0) == []
    assert set(tag_image(tagger, picture, 0.0, 1.0, False)) == GENERAL
    assert set(tag_image(tagger, picture, 1.0, 0.0, False)) == CHARACTER
    middle = tag_image(tagger, picture, 0.5, 0.5, False)
    assert set(middle) == {t for t in GENERAL | CHARACTER if scores[t] > 0.5}

    spaced = tag_image(tagger, picture, 0.0, 0.0)
    assert set(spaced) == {_readable(t) for t in GENERAL | CHARACTER}
    assert "^_^" in spaced and "long hair" in spaced and "hatsune miku" in spaced

    assert default_thresholds("SmilingWolf/wd-vit-tagger-v3") == (0.35, 0.85)
    assert default_thresholds("SmilingWolf/wd-eva02-large-tagger-v3") == (0.50, 0.85)


# ── jobs ──────────────────────────────────────────────────────────────────────────────────────

def test_new_job_writes_a_checked_job_folder(tag_dataset, tiny_wd14):
    first = new_job(tag_dataset, "wd14", str(tiny_wd14), "append", general_threshold=0.4, trigger_word="zk",
                    now=1_700_000_000)
    second = new_job(tag_dataset, "wd14", str(tiny_wd14), now=1_700_000_000)
    assert first != second and first.parent == second.parent
    assert first.parent == Path(os.environ["XDG_STATE_HOME"]) / "loratui" / "jobs"
    assert first.name.startswith("wd14-") and second.name.endswith("-2")
    job = read_job(first)
    assert (job.mode, job.thresholds, job.trigger_word) == ("append", {"general": 0.4, "character": None}, "zk")
    assert read_job(second).mode == "keep"
    assert new_job(tag_dataset, "blip") and read_job(max(first.parent.glob("blip-*"))).model == \
        "Salesforce/blip-image-captioning-base"

    with pytest.raises(TaggingError) as caught:
        new_job(tag_dataset, "wd14", mode="replace", general_threshold=1.5)
    assert "mode 'replace'" in caught.value.message and "threshold 1.5" in caught.value.message
    with pytest.raises(TaggingError, match="not a folder"):
        new_job(tag_dataset / "nowhere", "wd14")
    with pytest.raises(TypeError):
        new_job(tag_dataset, "wd14", threshold=0.3)


def test_keep_mode_captions_only_the_uncaptioned_images_and_undo_restores_them(tag_dataset, tiny_wd14):
    before = _snapshot(tag_dataset)
    job = new_job(tag_dataset, "wd14", str(tiny_wd14), "keep", general_threshold=0.0, character_threshold=0.0,
                  trigger_word="zkmascot")
    status, events = _run(job)
    assert status == 0, JobPaths(job).log.read_text()

    done = _final(events)
    assert done["type"] == "done" and (done["changed"], done["kept"], done["failed"]) == (2, 10, 1)
    assert done["output"] == str(job) and done["change_id"]
    start = of_type(events, "start")[0]
    assert (start["images"], start["to_caption"], start["tagger"], start["mode"]) == (12, 2, "wd14", "keep")
    (warning,) = of_type(events, "warning")
    assert warning["code"] == "image_skipped" and warning["file"].endswith("broken.png")
    progress = [e for e in of_type(events, "status") if e["phase"] == "tagging"]
    assert [(e["current"], e["total"]) for e in progress] == [(1, 2), (2, 2)]

    after = _snapshot(tag_dataset)
    assert {name for name in after if after[name] != before.get(name)} == {"mascot_00.txt", "mascot_01.txt"}
    for name in ("mascot_00.txt", "mascot_01.txt"):
        tags = _tags(tag_dataset, name)
        assert tags[0] == "zkmascot"
        assert set(tags[1:]) == {_readable(t) for t in GENERAL | CHARACTER}
        assert not RATING & set(tags)

    undone = undo_last(tag_dataset)
    assert undone is not None and undone.id == done["change_id"]
    assert _snapshot(tag_dataset) == before, "undo gives the exact bytes back (and removes the new file)"


def test_append_mode_adds_new_tags_after_the_old_ones_without_duplicates(tag_dataset, tiny_wd14):
    (tag_dataset / "mascot_02.txt").write_bytes(b"zkmascot, Long Hair, solo\r\n")
    before = _snapshot(tag_dataset)
    job = new_job(tag_dataset, "wd14", str(tiny_wd14), "append", general_threshold=0.0, character_threshold=1.0,
                  trigger_word="zkmascot")
    status, events = _run(job)
    assert status == 0 and _final(events)["type"] == "done"
    assert _final(events)["changed"] == 12

    def key(tag: str) -> str:
        return tag.lower().replace("_", " ")

    new = {_readable(t) for t in GENERAL}
    for name, old in before.items():
        tags = _tags(tag_dataset, name)
        kept = ["zkmascot"] + [t for t in split_tags(old.decode()) if t != "zkmascot"]
        assert tags[: len(kept)] == kept, "the old tags stay first, in their order, after the trigger"
        added = tags[len(kept):]
        assert set(added) == {t for t in new if key(t) not in {key(k) for k in kept}}, (name, tags)
        assert len({key(t) for t in tags}) == len(tags), f"{name} has a tag twice: {tags}"
        assert not (RATING | {_readable(t) for t in CHARACTER}) & set(tags)
    assert _tags(tag_dataset, "mascot_02.txt")[:3] == ["zkmascot", "Long Hair", "solo"]
    assert (tag_dataset / "mascot_02.txt").read_bytes().endswith(b"\r\n"), "the file's line ending is kept"
    # The demo's captions 3 and 8 lack the trigger word: appending puts it in front.
    assert _tags(tag_dataset, "mascot_03.txt")[:2] == ["zkmascot", "yellow creature"]

    undo_last(tag_dataset)
    assert _snapshot(tag_dataset) == before


def test_overwrite_mode_replaces_captions_and_can_keep_underscores(tag_dataset, tiny_wd14):
    before = _snapshot(tag_dataset)
    job = new_job(tag_dataset, "wd14", str(tiny_wd14), "overwrite", general_threshold=0.0, character_threshold=0.0,
                  underscores_to_spaces=False)
    status, events = _run(job)
    assert status == 0 and _final(events)["changed"] == 12
    for name in list(before) + ["mascot_01.txt"]:
        tags = _tags(tag_dataset, name)
        assert set(tags) == GENERAL | CHARACTER, (name, tags)
    assert "long_hair" in tags and "^_^" in tags
    assert len(history(tag_dataset)) == 1, "one job is one change, undone in one step"
    undo_last(tag_dataset)
    assert _snapshot(tag_dataset) == before


def test_a_job_with_nothing_to_caption_never_loads_the_model(dataset):
    job = new_job(dataset, "wd14", str(dataset / "no-such-model"), "keep")
    status, events = _run(job)
    assert status == 0
    done = _final(events)
    assert (done["type"], done["changed"], done["kept"]) == ("done", 0, 12)
    assert of_type(events, "start")[0]["device"] is None


def test_blip_job_writes_a_sentence_for_every_image(tag_dataset, tiny_blip):
    before = _snapshot(tag_dataset)
    job = new_job(tag_dataset, "blip", str(tiny_blip), "overwrite", trigger_word="zkmascot")
    status, events = _run(job)
    assert status == 0, JobPaths(job).log.read_text()
    done = _final(events)
    assert (done["type"], done["changed"], done["failed"]) == ("done", 12, 1)
    assert of_type(events, "start")[0]["tagger"] == "blip"
    for name in list(before) + ["mascot_01.txt"]:
        tags = _tags(tag_dataset, name)
        assert tags[0] == "zkmascot" and len(tags) >= 2 and len(" ".join(tags[1:]).split()) >= 1, (name, tags)
    undo_last(tag_dataset)
    assert _snapshot(tag_dataset) == before


@pytest.mark.parametrize("tagger", ["wd14", "blip"])
def test_a_missing_local_model_is_a_clear_model_error(tag_dataset, tagger):
    before = _snapshot(tag_dataset)
    job = new_job(tag_dataset, tagger, "/nowhere/tagger-model", "overwrite")
    status, events = _run(job)
    error = _final(events)
    assert status == 1 and error["type"] == "error" and error["code"] == "model"
    assert "/nowhere/tagger-model" in error["message"] and "hub id" in error["message"]
    assert error["advice"]
    assert _snapshot(tag_dataset) == before


@pytest.mark.parametrize("tagger", ["wd14", "blip"])
def test_an_unreachable_hub_model_says_the_box_needs_network(tag_dataset, tagger):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"  # set by tests/conftest.py: nothing is downloaded
    job = new_job(tag_dataset, tagger, "loratui-tests/no-such-tagger", "overwrite")
    status, events = _run(job)
    error = _final(events)
    assert status == 1 and (error["type"], error["code"]) == ("error", "model")
    assert "loratui-tests/no-such-tagger" in error["message"] and "could not be downloaded" in error["message"]
    assert "HF_HUB_OFFLINE" in error["message"]
    assert "network" in error["advice"] and "--model" in error["advice"]


def test_a_broken_job_file_is_an_input_error(tmp_path):
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "job.json").write_text('{"dataset": "/x", "tagger": "clip", "model": "m", "colour": 1}')
    status, events = _run(folder)
    error = _final(events)
    assert status == 2 and error["code"] == "input"
    assert "unknown field 'colour'" in error["message"] and "job.json" in error["message"]


def test_sigterm_stops_after_the_current_image_and_writes_what_was_done(dataset, tiny_blip):
    for index in range(12, 48):  # enough images that the job is still running when the signal lands
        shutil.copy(dataset / f"mascot_{index % 12:02d}.png", dataset / f"mascot_{index:02d}.png")
    before = _snapshot(dataset)
    job = new_job(dataset, "blip", str(tiny_blip), "overwrite")
    paths = JobPaths(job)
    with open(paths.log, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "trainer.tagging", str(job)], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, env=_child_env())
    try:
        assert wait_for(lambda: any(e.get("phase") == "tagging" for e in read_events(paths.events)), 120, 0.01)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
    events = read_events(paths.events)
    stopped = _final(events)
    assert stopped["type"] == "stopped" and stopped["reason"] == "SIGTERM"
    assert 1 <= stopped["changed"] < 48 and stopped["remaining"] == 48 - stopped["changed"]
    changed = [n for n, data in _snapshot(dataset).items() if data != before[n]]
    assert len(changed) == stopped["changed"]
    assert not paths.pid.exists()
    undo_last(dataset)
    assert _snapshot(dataset) == before


def test_start_job_runs_detached_and_records_its_pid(tag_dataset, tiny_wd14):
    job = new_job(tag_dataset, "wd14", str(tiny_wd14), "keep", general_threshold=0.0)
    pid = start_job(job)
    assert pid > 0
    assert wait_for(lambda: any(e["type"] == "done" for e in read_events(JobPaths(job).events)), 60, 0.05)
    assert wait_for(lambda: not job_running(job), 30, 0.05)
    assert _final(read_events(JobPaths(job).events))["changed"] == 2


def test_the_dataset_tag_command_runs_follows_and_detaches_jobs(tag_dataset, tiny_wd14):
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "loratui", "dataset", "tag", str(tag_dataset), *args],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
                              env=_child_env(), cwd=REPO)

    result = cli("--tagger", "wd14", "--model", str(tiny_wd14), "--mode", "overwrite", "--threshold", "0",
                 "--character-threshold", "1", "--trigger", "zkmascot", "--keep-underscores")
    assert result.returncode == 0, result.stderr
    assert "Done: 12 captions written" in result.stderr and "1 could not be read" in result.stderr
    assert "broken.png" in result.stderr and "loratui dataset undo" in result.stderr
    tags = _tags(tag_dataset, "mascot_01.txt")
    assert tags[0] == "zkmascot" and set(tags[1:]) == GENERAL

    result = cli("--tagger", "wd14", "--model", "loratui-tests/no-such-tagger", "--mode", "append")
    assert result.returncode == 1 and "could not be downloaded" in result.stderr and "--model" in result.stderr

    result = cli("--tagger", "wd14", "--threshold", "2")
    assert result.returncode == 2 and "threshold 2.0" in result.stderr

    (tag_dataset / "mascot_05.txt").unlink()
    result = cli("--tagger", "wd14", "--model", str(tiny_wd14), "--detach")
    assert result.returncode == 0, result.stderr
    job = Path(result.stdout.strip())
    assert (job / "job.json").is_file() and read_job(job).mode == "keep"
    assert wait_for(lambda: any(e["type"] == "done" for e in read_events(JobPaths(job).events)), 60, 0.05)
    assert _final(read_events(JobPaths(job).events))["changed"] == 1
    assert (tag_dataset / "mascot_05.txt").is_file()
