"""The security claims that need torch or a real child process (see tests/unit/test_security.py).

- A resume state carrying code is refused and the code never runs (``weights_only``).
- A training run writes only into its run folder and the latent cache: the dataset is left
  byte-for-byte and time-for-time as it was, and prompts or captions that look like paths stay text.
- Checkpoint pruning matches only the run's own files, whatever characters the name holds.
- The auto-tagging job never writes through a caption link that leads out of the dataset.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.trainer.helpers import of_type, train
from trainer.contract.errors import TrainerError
from trainer.contract.events import read_events
from trainer.contract.tagging_jobs import JobPaths, new_job
from trainer.tools.tiny_taggers import build_tiny_wd14


def _tree(folder: Path) -> dict[str, tuple]:
    """Every entry under a folder (links not followed): its kind, and bytes and mtime for files."""
    found = {}
    for dirpath, dirs, files in os.walk(folder, followlinks=False):
        for name in dirs + files:
            path = Path(dirpath) / name
            if path.is_symlink():
                found[str(path.relative_to(folder))] = ("link", os.readlink(path))
            elif path.is_file():
                found[str(path.relative_to(folder))] = ("file", path.read_bytes(), path.stat().st_mtime_ns)
            else:
                found[str(path.relative_to(folder))] = ("dir",)
    return found


class _Payload:
    """Unpickling this creates a marker file: the harmless stand-in for what a malicious file runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_resume_state_carrying_code_is_refused_and_the_code_never_runs(tmp_path):
    import torch

    from trainer.state import load_state

    marker = tmp_path / "pwned"
    state = tmp_path / "run" / "state" / "last.pt"
    state.parent.mkdir(parents=True)
    # A real state's layout, with one value replaced by the payload: only weights_only stops it.
    torch.save({"version": 1, "progress": {"step": 1}, "network": {"w": torch.zeros(2)},
                "metadata": _Payload(marker)}, state)
    # What unpickling does with the payload: call what __reduce__ names. It must really make the
    # marker, or this test would prove nothing.
    call, arguments = _Payload(tmp_path / "probe").__reduce__()
    call(*arguments)
    assert (tmp_path / "probe").exists()
    with pytest.raises(TrainerError) as caught:
        load_state(state)
    assert caught.value.code == "resume" and str(state) in caught.value.message
    assert not marker.exists()


@pytest.mark.slow
def test_a_run_writes_only_its_run_folder_and_the_cache_never_the_dataset(tiny_sd15, dataset, make_config, tmp_path):
    # Captions and prompts that look like paths: they must stay text.
    (dataset / "mascot_00.txt").write_text("zkmascot, ../../caption-escape.txt, /tmp/loratui-caption-escape.txt")
    prompts = ["../../prompt-escape", "/tmp/loratui-prompt-escape"]
    config = make_config(tiny_sd15, dataset, dataset={"resolution": 64, "cache_latents_to_disk": True,
                                                      "cache_dir": str(tmp_path / "cache")},
                         training={"batch_size": 4},
                         output={"sample_every_n_epochs": 1, "sample_steps": 1, "sample_prompts": prompts,
                                 "save_every_n_epochs": 1})
    os.utime(dataset, ns=(1_000_000_000, 1_000_000_000))  # a folder's mtime changes when anything is added
    before, dataset_before = _tree(tmp_path), _tree(dataset)
    folder_mtime = dataset.stat().st_mtime_ns

    run, events, status = train(config)
    assert status == 0, run.log.read_text()[-3000:]
    assert _tree(dataset) == dataset_before and dataset.stat().st_mtime_ns == folder_mtime
    after = _tree(tmp_path)
    new = {name for name in after if before.get(name) != after[name]}
    allowed = (str(run.root.relative_to(tmp_path)), "cache", "runs")
    assert new and all(name.split(os.sep)[0] in allowed for name in new), sorted(new)
    assert any(name.startswith("cache" + os.sep) for name in new), "the latent cache should have been written"
    samples = of_type(events, "sample")
    assert {e["prompt"] for e in samples} == set(prompts)
    assert all(Path(e["path"]).parent.parent == run.samples for e in samples)
    for escape in (tmp_path.parent / "caption-escape.txt", tmp_path.parent / "prompt-escape",
                   Path("/tmp/loratui-caption-escape.txt"), Path("/tmp/loratui-prompt-escape")):
        assert not escape.exists()


def test_pruning_matches_only_the_runs_own_checkpoints_whatever_the_name(tmp_path):
    from trainer.checkpoint import prune_checkpoints

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    names = [f"v[2]-e{epoch:04d}.safetensors" for epoch in range(1, 5)]
    others = ["v2-e0001.safetensors", "v2-step000010.safetensors", "notes.txt"]
    for name in names + others:
        (folder / name).write_bytes(b"x")
    removed = prune_checkpoints(folder, "v[2]", keep=2)
    assert sorted(path.name for path in removed) == names[:2]
    assert sorted(path.name for path in folder.iterdir()) == sorted(names[2:] + others)


def test_the_tagging_job_never_writes_through_a_caption_link_out_of_the_dataset(tmp_path):
    from loratui.demo import write_dataset

    dataset, outside = tmp_path / "dataset", tmp_path / "outside"
    write_dataset(dataset)
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_bytes(b"precious\n")
    (dataset / "mascot_03.txt").unlink()
    (dataset / "mascot_03.txt").symlink_to(victim)
    model = build_tiny_wd14(tmp_path / "tiny-wd14")
    before = _tree(dataset)

    job = new_job(dataset, "wd14", str(model), "overwrite", general_threshold=0.0, character_threshold=0.0)
    paths = JobPaths(job)
    with open(paths.log, "wb") as log:
        status = subprocess.run([sys.executable, "-m", "trainer.tagging", str(job)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, timeout=180,
                                env={**os.environ, "OMP_NUM_THREADS": "1"}).returncode
    events = read_events(paths.events)
    final = events[-1]
    assert status == 1 and final["type"] == "error", paths.log.read_text()[-2000:]
    assert "mascot_03.txt" in final["message"] and "outside the dataset" in final["message"]
    assert victim.read_bytes() == b"precious\n"
    assert _tree(dataset) == before  # the change is refused whole: no caption written at all


@pytest.mark.slow
def test_the_trainer_refuses_to_start_on_an_unreadable_caption_and_names_it(tiny_sd15, dataset, make_config):
    (dataset / "mascot_04.txt").unlink()
    (dataset / "mascot_04.txt").mkdir()  # unreadable as root too, unlike a chmod 000 file
    run, events, status = train(make_config(tiny_sd15, dataset))
    assert status == 2 and events[-1]["type"] == "error" and events[-1]["code"] == "input"
    assert str(dataset / "mascot_04.txt") in events[-1]["message"]
    assert not list(run.root.glob("*.safetensors"))
