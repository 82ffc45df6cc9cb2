"""The security suite: no code from data files, no shell, no writes outside the run or the dataset.

Claims and where each is proven:

1. ``.ckpt`` and state files load with ``weights_only``: every ``torch.load`` in the project says
   so (static check here); a .ckpt carrying code is refused (tests/trainer/test_single_file.py)
   and so is a resume state carrying code (tests/trainer/test_path_safety.py).
2. No shell anywhere: no ``shell=True``, no shell-only call, every command an argument list.
3. Paths from configs: ``output.name`` cannot leave ``output.dir`` (validation, then the run
   folder code itself); sample prompts never become file names (tests/trainer/test_path_safety.py).
4. Paths from captions and datasets: caption writes stay inside the dataset, links out of it
   are refused, a tampered undo record is refused, caption text is never a path.
5. Bad input from the dataset: unreadable captions are named problems, a pipe never blocks, a
   linked folder is never trained twice.

The trainer runs (3 and 5 for training and tagging) are in tests/trainer/test_path_safety.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.unit import static_checks as checks
from trainer.contract.caption_store import (MANIFEST, CaptionWriteError, apply_edits, dataset_backup_dir, history,
                                            undo_last)
from trainer.contract.dataset_scan import caption_stats
from trainer.contract.captions import CaptionReadError, read_caption
from trainer.contract.config.schema import Config, validate, with_value
from trainer.contract.config.toml_io import dumps, load_config
from trainer.contract.dataset_scan import scan_dataset
from trainer.contract.plan import plan_steps
from trainer.contract.rundir import RunPaths, create_run_dir, plain_name

REPO = Path(__file__).resolve().parents[2]
ROOT = os.geteuid() == 0


def _tree(folder: Path) -> dict[str, tuple]:
    """Every entry under a folder (links not followed): kind, and bytes or link target, and mtime."""
    found = {}
    for dirpath, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = Path(dirpath) / name
            status = path.lstat()
            if path.is_symlink():
                found[str(path.relative_to(folder))] = ("link", os.readlink(path))
            elif path.is_dir():
                found[str(path.relative_to(folder))] = ("dir",)
            elif path.is_file():
                found[str(path.relative_to(folder))] = ("file", path.read_bytes(), status.st_mtime_ns)
            else:
                found[str(path.relative_to(folder))] = ("other", status.st_mode)
    return found


def _image(path: Path, caption: str | None = "zk, solo", seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), (seed * 40 % 256, 90, 160)).save(path)
    if caption is not None:
        path.with_suffix(".txt").write_text(caption, encoding="utf-8")
    return path


# ── 1 and 2: static checks of the source ─────────────────────────────────────────────────────

@pytest.fixture(scope="module")
def project_modules() -> list[checks.Module]:
    return checks.parse_all(checks.source_files(REPO / "loratui", REPO / "trainer", REPO / "bench", REPO / "tests"))


def test_every_torch_load_passes_weights_only_true(project_modules):
    findings, count = checks.torch_load_findings(project_modules)
    assert count >= 3, "the trainer loads .ckpt files and resume states with torch.load; the walk missed them"
    assert findings == []


def test_no_pickle_style_loader_numpy_pickles_or_eval_exec(project_modules):
    assert checks.unsafe_loader_findings(project_modules) == []


def test_no_shell_anywhere(project_modules):
    assert checks.shell_findings(project_modules) == []


def test_every_command_is_an_argument_list(project_modules):
    findings, count = checks.command_findings(project_modules)
    assert count >= 10, "the app starts the trainer, the tagger and nvidia-smi; the walk missed them"
    assert findings == []


BAD_SOURCE = '''
import os, pickle, subprocess, torch
import numpy as np
from subprocess import Popen as P
def start(name, cmd: list[str]):
    torch.load("a.ckpt")
    torch.load("b.pt", weights_only=False)
    pickle.loads(b"")
    np.load("x.npy", allow_pickle=True)
    eval("1 + 1")
    os.system("ls")
    subprocess.run(["ls"], shell=True)
    subprocess.run("ls -l")
    subprocess.run(f"ls {name}")
    line = "ls " + name
    P(line)
    subprocess.run(cmd)
    subprocess.run(["ls", name])
'''


def test_the_checks_catch_what_they_look_for():
    # Without this, a checker that never fires would make the four tests above pass vacuously.
    module = checks.Module.parse(Path("bad.py"), BAD_SOURCE)
    loads, count = checks.torch_load_findings([module])
    assert count == 2 and [f.split(": ", 1)[1] for f in loads] == ["torch.load without weights_only=True"] * 2
    unsafe = " | ".join(checks.unsafe_loader_findings([module]))
    assert "pickle.loads" in unsafe and "allow_pickle" in unsafe and "eval()" in unsafe
    shell = " | ".join(checks.shell_findings([module]))
    assert "shell=True" in shell and "os.system" in shell
    commands, count = checks.command_findings([module])
    assert count == 6
    # The string, the f-string and the concatenated name are caught; the two lists are not.
    assert [f.split(": ", 1)[1].split(" — ")[0] for f in commands] == [
        "subprocess.run('ls -l')", "subprocess.run(f'ls {name}')", "subprocess.Popen(line)"]


# ── 3: paths from configs ────────────────────────────────────────────────────────────────────

ESCAPING_NAMES = ["../../escape", "/abs/path", "a/b", "..", ".", "", "a\0b", "a\nb", "a\\b", "x\x1b]0;title\x07"]


@pytest.mark.parametrize("name", ESCAPING_NAMES)
def test_an_output_name_that_is_not_a_plain_file_name_is_a_problem(name):
    problems = validate(with_value(Config(), "output.name", name))
    assert "output.name" in [p.field for p in problems]


def test_a_config_file_with_an_escaping_name_is_refused_with_the_field_named(tmp_path):
    path = tmp_path / "config.toml"
    config = with_value(with_value(Config(), "dataset.path", str(tmp_path)), "model.base", str(tmp_path / "m"))
    config = with_value(config, "output.name", "../../escape")
    path.write_text(dumps(config))
    _, problems = load_config(path)
    assert [p.field for p in problems] == ["output.name"]


@pytest.mark.parametrize("name", ["../../escape", "/abs/path", "a/b", "..", ".", "", "a\0b", "a\\b"])
def test_the_run_folder_code_refuses_such_a_name_before_creating_anything(tmp_path, name):
    # Defence in depth: a Config built in code skips validation, and must still not escape.
    base = tmp_path / "base"
    (base / "deep").mkdir(parents=True)
    out = base / "deep" / "runs"
    before = _tree(tmp_path)
    config = with_value(Config(), "output.dir", str(out))
    with pytest.raises(ValueError, match="not a plain file name"):
        create_run_dir(with_value(config, "output.name", name))
    assert _tree(tmp_path) == before  # not even output.dir was created
    paths = RunPaths(out / "run")
    for make in (paths.final_lora, lambda n: paths.checkpoint(n, 1), lambda n: paths.step_checkpoint(n, 10)):
        with pytest.raises(ValueError):
            make(name)


def test_a_run_folder_is_a_new_real_folder_directly_in_output_dir_even_past_a_planted_link(tmp_path):
    out, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    (out / f"lora-{stamp}").symlink_to(elsewhere)  # a link where the run folder would go
    paths = create_run_dir(with_value(Config(), "output.dir", str(out)), now=now)
    assert paths.root == out / f"lora-{stamp}-2" and not paths.root.is_symlink()
    assert paths.root.resolve().parent == out.resolve() and paths.config.is_file()
    assert list(elsewhere.iterdir()) == []
    for path in (paths.final_lora("lora"), paths.checkpoint("lora", 3), paths.step_checkpoint("lora", 7)):
        assert path.parent in (paths.root, paths.checkpoints)
    assert plain_name("my lora v1.5") == "my lora v1.5"


# ── 4: paths from captions and datasets ──────────────────────────────────────────────────────

@pytest.fixture
def captioned_set(tmp_path) -> tuple[Path, Path]:
    """A dataset of two captioned images and, beside it, a folder that stands for "anywhere else"."""
    dataset, outside = tmp_path / "dataset", tmp_path / "outside"
    _image(dataset / "a.png")
    _image(dataset / "b.png", seed=1)
    outside.mkdir()
    (outside / "victim.txt").write_bytes(b"precious, do not touch\n")
    return dataset, outside


def test_a_caption_that_is_a_link_out_of_the_dataset_is_refused_not_written_through(captioned_set):
    dataset, outside = captioned_set
    (dataset / "b.txt").unlink()
    (dataset / "b.txt").symlink_to(outside / "victim.txt")
    before, outside_before = _tree(dataset), _tree(outside)
    with pytest.raises(CaptionWriteError) as caught:
        apply_edits(dataset, {dataset / "a.txt": "zk, solo, new", dataset / "b.txt": "zk, solo"}, "add tag")
    # Refused whole, naming the file and why: replacing the link by a plain file would quietly
    # change what the user shares, and writing through it would change a file loratui was never given.
    assert "b.txt" in str(caught.value) and "outside the dataset" in str(caught.value)
    assert [path.name for path, _ in caught.value.problems] == ["b.txt"]
    assert _tree(dataset) == before and _tree(outside) == outside_before
    assert history(dataset) == []


def test_a_dangling_link_out_of_the_dataset_is_refused_and_nothing_is_created(captioned_set):
    dataset, outside = captioned_set
    (dataset / "b.txt").unlink()
    (dataset / "b.txt").symlink_to(outside / "new.txt")
    with pytest.raises(CaptionWriteError, match="outside the dataset"):
        apply_edits(dataset, {dataset / "b.txt": "zk"}, "add trigger")
    assert not (outside / "new.txt").exists()


def test_a_caption_in_a_folder_linked_in_from_outside_is_refused_not_a_crash(captioned_set):
    dataset, outside = captioned_set
    _image(outside / "more" / "c.png")
    (dataset / "10_more").symlink_to(outside / "more")
    # The trainer reads linked-in folders (people link pictures in); writing captions there is refused.
    assert [i.path.name for i in scan_dataset(dataset, 1).images] == ["a.png", "b.png", "c.png"]
    before = _tree(outside)
    with pytest.raises(CaptionWriteError, match="outside the dataset"):
        apply_edits(dataset, {dataset / "10_more" / "c.txt": "zk, more"}, "add trigger")
    assert _tree(outside) == before


def test_a_link_inside_the_dataset_is_still_written_through(captioned_set):
    dataset, _ = captioned_set
    (dataset / "b.txt").unlink()
    (dataset / "b.txt").symlink_to("a.txt")
    apply_edits(dataset, {dataset / "b.txt": "zk, shared"}, "edit")
    assert (dataset / "b.txt").is_symlink() and (dataset / "a.txt").read_text() == "zk, shared"


def _tamper(dataset: Path, change_id: str, edit) -> None:
    manifest = dataset_backup_dir(dataset.resolve()) / change_id / MANIFEST
    data = json.loads(manifest.read_text())
    edit(data)
    manifest.write_text(json.dumps(data))


@pytest.mark.parametrize("where", ["absolute", "dotdot", "through-link", "conflict", "backup"])
def test_undo_refuses_a_record_that_names_a_path_outside_the_dataset(captioned_set, tmp_path, where):
    dataset, outside = captioned_set
    (dataset / "sub").mkdir()
    (dataset / "sub" / "out").symlink_to(outside)
    change = apply_edits(dataset, {dataset / "a.txt": "zk, solo, edited", dataset / "new.txt": "zk"}, "edit")
    victim = outside / "victim.txt"
    named = {"absolute": str(victim), "dotdot": "../outside/victim.txt", "through-link": "sub/out/victim.txt",
             "conflict": "sub/../../outside/victim.txt", "backup": "../../../../outside/victim.txt"}[where]

    def edit(data):
        if where == "backup":
            data["files"][0]["backup"] = named
        elif where == "conflict":
            data["undo_conflicts"] = [["a.txt", named]]
        else:
            data["files"][0]["path"] = named
            data["files"][1]["path"] = named.replace("victim", "created")  # undo would delete this one

    _tamper(dataset, change.id, edit)
    (outside / "created.txt").write_text("kept")
    before, outside_before = _tree(dataset), _tree(outside)
    with pytest.raises(CaptionWriteError) as caught:
        undo_last(dataset)
    assert MANIFEST in str(caught.value) and "nothing was undone" in str(caught.value)
    assert _tree(dataset) == before and _tree(outside) == outside_before
    assert history(dataset) == []  # listed nowhere, and never undone in place of the tampered one


def test_caption_text_that_looks_like_a_path_is_only_text(captioned_set, tmp_path):
    dataset, _ = captioned_set
    evil = "zk, ../../escape.txt, /tmp/loratui-absolute-escape.txt, ..\\win.txt, ~/home.txt"
    before = _tree(tmp_path)
    apply_edits(dataset, {dataset / "a.txt": evil}, "edit")
    after = _tree(tmp_path)
    changed = {name for name in after if before.get(name) != after[name]}
    assert changed == {"dataset/a.txt"}  # the backups live under $XDG_STATE_HOME, outside tmp_path here
    assert not Path("/tmp/loratui-absolute-escape.txt").exists()
    assert read_caption(dataset / "a.txt") == evil
    undo_last(dataset)
    assert (dataset / "a.txt").read_bytes() == before["dataset/a.txt"][1]


# ── 5: bad input from the dataset (bug A: unreadable captions; bug B: linked folders) ─────────

def _dataset_with_unusable_captions(tmp_path: Path) -> Path:
    """Three images: a.png's caption is a folder, b.png's a named pipe, c.png's a plain file."""
    dataset = tmp_path / "dataset"
    _image(dataset / "a.png", caption=None)
    _image(dataset / "b.png", caption=None, seed=1)
    _image(dataset / "c.png", seed=2)
    (dataset / "a.txt").mkdir()
    os.mkfifo(dataset / "b.txt")
    return dataset


def test_a_folder_or_a_pipe_named_like_a_caption_is_a_named_problem_and_never_blocks(tmp_path):
    dataset = _dataset_with_unusable_captions(tmp_path)
    result: dict = {}

    def scan() -> None:
        found = scan_dataset(dataset, 1)
        result["scan"] = found
        result["stats"] = caption_stats(found.images, "zk")
        for image in found.images[:2]:
            try:
                read_caption(image.caption_path)
            except CaptionReadError as exc:
                result.setdefault("errors", []).append(exc)

    worker = threading.Thread(target=scan, daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():  # a blocking read of the pipe: give it a writer so the thread can end
        os.close(os.open(dataset / "b.txt", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("reading a pipe named like a caption blocked")
    problems = {path.name: why for path, why in result["scan"].caption_problems}
    assert set(problems) == {"a.txt", "b.txt"} and all("not a regular file" in why for why in problems.values())
    assert [e.filename for e in result["errors"]] == [str(dataset / "a.txt"), str(dataset / "b.txt")]
    assert all("a.txt" in str(e) or "b.txt" in str(e) for e in result["errors"])
    stats = result["stats"]
    assert [p.name for p in stats.unreadable] == ["a.png", "b.png"] and stats.missing == () and stats.empty == ()


def test_the_apps_assessment_of_such_a_dataset_does_not_crash(tmp_path):
    from loratui.assess import read_dataset

    dataset = tmp_path / "dataset"
    _image(dataset / "a.png", caption=None)
    _image(dataset / "b.png", seed=1)
    (dataset / "a.txt").mkdir()
    facts = read_dataset(with_value(Config(), "dataset.path", str(dataset)))
    assert facts.captions is not None and [p.name for p in facts.captions.unreadable] == ["a.png"]


def test_caption_writes_never_block_on_a_pipe(captioned_set):
    dataset, _ = captioned_set
    (dataset / "b.txt").unlink()
    os.mkfifo(dataset / "b.txt")
    caught: list = []
    worker = threading.Thread(target=lambda: caught.append(pytest.raises(CaptionWriteError, apply_edits, dataset,
                                                                         {dataset / "b.txt": "zk"}, "x")),
                              daemon=True)
    worker.start()
    worker.join(20)
    if worker.is_alive():
        os.close(os.open(dataset / "b.txt", os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("a caption write read a pipe and blocked")
    assert "b.txt" in str(caught[0].value)


_UNREADABLE_PROBE = """
import sys
from pathlib import Path
from trainer.contract.captions import CaptionReadError, read_caption
from trainer.contract.dataset_scan import scan_dataset
scan = scan_dataset(Path(sys.argv[1]), 1)
print("PROBLEMS", [(p.name, why) for p, why in scan.caption_problems])
try:
    read_caption(Path(sys.argv[1]) / "a.txt")
except CaptionReadError as exc:
    print("ERROR", exc)
"""


def test_a_caption_without_read_permission_is_a_named_problem():
    # Root reads any file whatever its mode, so as root the check runs as the user "nobody".
    if ROOT and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: no way to be refused a read")
    folder = Path(tempfile.mkdtemp(prefix="loratui-perm-"))
    try:
        os.chmod(folder, 0o755)
        _image(folder / "a.png")
        _image(folder / "b.png", seed=1)
        for path in folder.iterdir():
            os.chmod(path, 0o644)
        os.chmod(folder / "a.txt", 0)
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if ROOT else []
        done = subprocess.run([*prefix, sys.executable, "-c", _UNREADABLE_PROBE, str(folder)], cwd=REPO,
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
        assert done.returncode == 0, done.stderr
        assert "PROBLEMS [('a.txt', 'Permission denied')]" in done.stdout
        assert f"ERROR the caption file {folder / 'a.txt'} cannot be read (Permission denied)" in done.stdout
    finally:
        shutil.rmtree(folder)


def test_a_linked_folder_is_never_trained_twice(tmp_path):
    dataset, outside = tmp_path / "dataset", tmp_path / "outside"
    for index in range(3):
        _image(dataset / f"root_{index}.png", seed=index)
    for index in range(2):
        _image(dataset / "10_pose" / f"pose_{index}.png", seed=10 + index)
    _image(outside / "extra.png", seed=20)
    (dataset / "back").symlink_to(dataset)            # a loop back to the dataset itself
    (dataset / "5_again").symlink_to("10_pose")        # a second name for a sibling, with other repeats
    (dataset / "20_extra").symlink_to(outside)         # a folder linked in from elsewhere: trained

    scan = scan_dataset(dataset, 1)
    distinct = {image.path.resolve() for image in scan.images}
    assert len(scan.images) == len(distinct) == 6
    assert plan_steps(scan.images, 64, 1, 1).images == 6
    skipped = {path.name: why for path, why in scan.skipped}
    assert set(skipped) == {"back", "5_again"}  # the first name in order is kept, as the app's scan does
    assert "the dataset folder" in skipped["back"] and "10_pose" in skipped["5_again"]
    assert {(i.path.parent.name, i.repeats) for i in scan.images} == {("dataset", 1), ("10_pose", 10),
                                                                      ("20_extra", 20)}


def test_the_apps_scan_and_the_trainer_agree_on_linked_folders(tmp_path):
    from loratui.dataset.scan import scan_folder

    dataset = tmp_path / "dataset"
    _image(dataset / "a.png")
    _image(dataset / "10_pose" / "b.png", seed=1)
    (dataset / "back").symlink_to(dataset)
    (dataset / "5_again").symlink_to("10_pose")
    report = scan_folder(dataset, resolution=512, near_duplicates=False, cache_dir=tmp_path / "cache")
    trainer = scan_dataset(dataset, 1)
    assert [(i.path, i.repeats) for i in report.images] == [(i.path, i.repeats) for i in trainer.images]


# ── the trainer's preflight and the app see them before anything loads ──────────────────────────

def _unusable_captions(tmp_path: Path) -> tuple[Path, Config]:
    dataset = _dataset_with_unusable_captions(tmp_path)
    model = tmp_path / "model"
    (model / "unet").mkdir(parents=True)
    (model / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    config = with_value(Config(), "dataset.path", str(dataset))
    config = with_value(with_value(config, "model.base", str(model)), "output.dir", str(tmp_path / "runs"))
    return dataset, config


def test_the_trainers_preflight_and_the_apps_assessment_name_unreadable_captions(tmp_path):
    from loratui.assess import assess
    from trainer.contract.preflight import preflight

    dataset, config = _unusable_captions(tmp_path)
    checked = preflight(config)
    assert [p.field for p in checked.problems] == ["dataset.path"]
    message = checked.problems[0].message
    assert message.startswith("2 caption files cannot be read") and str(dataset / "a.txt") in message \
        and str(dataset / "b.txt") in message and "chmod u+r" in message
    assessment = assess(config)
    assert not assessment.startable and message in [p.message for p in assessment.problems]


def test_the_apps_dataset_scan_reports_them_as_unreadable(tmp_path):
    from loratui.dataset.scan import scan_folder

    dataset, _ = _unusable_captions(tmp_path)
    report = scan_folder(dataset, resolution=512, near_duplicates=False, cache_dir=tmp_path / "cache")
    unreadable = {report.relative(i.path): i.message for i in report.issues if i.code == "unreadable"}
    assert set(unreadable) == {"a.txt", "b.txt"} and "not a regular file" in unreadable["a.txt"]
    assert not [i for i in report.issues if i.code == "missing_caption"]
