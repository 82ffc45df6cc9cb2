"""Speed settings without config fields (``trainer.speed``): TF32 for fp32 GPU runs, CUDA's allocator."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.trainer.helpers import new_run
from trainer.speed import (EXPANDABLE_SEGMENTS, EXPANDABLE_SEGMENTS_SWITCH, TF32_SWITCH, allocator_settings,
                           configure_allocator, use_tf32)
from trainer.step import Precision

CUDA = torch.device("cuda")
CLEAN = {"PATH": "/usr/bin"}


def test_expandable_segments_are_set_unless_the_user_chose_or_switched_them_off():
    assert allocator_settings(CLEAN) == {"PYTORCH_CUDA_ALLOC_CONF": EXPANDABLE_SEGMENTS}
    for name in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF"):
        assert allocator_settings({**CLEAN, name: "max_split_size_mb:128"}) == {}
    for off in ("0", "false", "off", "No"):
        assert allocator_settings({**CLEAN, EXPANDABLE_SEGMENTS_SWITCH: off}) == {}
    assert allocator_settings({**CLEAN, EXPANDABLE_SEGMENTS_SWITCH: "1"}) != {}


def test_configure_allocator_keeps_the_users_own_setting():
    environ = {**CLEAN, "PYTORCH_ALLOC_CONF": "max_split_size_mb:128"}
    line = configure_allocator(environ)
    assert environ == {**CLEAN, "PYTORCH_ALLOC_CONF": "max_split_size_mb:128"}
    assert "set by the user" in line and "max_split_size_mb:128" in line
    environ = dict(CLEAN)
    assert EXPANDABLE_SEGMENTS in configure_allocator(environ)
    assert environ["PYTORCH_CUDA_ALLOC_CONF"] == EXPANDABLE_SEGMENTS


@pytest.fixture
def tf32_flags():
    """Put torch's TF32 flags back as they were (they are process-wide)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_tf32_is_allowed_for_fp32_runs_on_a_gpu_only(tf32_flags, monkeypatch):
    monkeypatch.delenv(TF32_SWITCH, raising=False)
    for precision in (Precision(torch.device("cpu"), torch.float32, False, "fp32"),
                      Precision(CUDA, torch.bfloat16, True, "bf16"), Precision(CUDA, torch.float16, True, "fp16")):
        assert use_tf32(precision) is False
        assert torch.backends.cuda.matmul.allow_tf32 is False
    monkeypatch.setenv(TF32_SWITCH, "0")
    assert use_tf32(Precision(CUDA, torch.float32, False, "fp32")) is False
    assert torch.backends.cuda.matmul.allow_tf32 is False
    monkeypatch.delenv(TF32_SWITCH)
    assert use_tf32(Precision(CUDA, torch.float32, False, "fp32")) is True
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    # Set through the legacy flags, which keeps every reader (inductor's included) working.
    assert torch.get_float32_matmul_precision() == "high"


# The trainer child records the allocator variable at the moment anything first imports torch.
SPY = """
import os, runpy, sys
RECORD = sys.argv.pop(1)
class Spy:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not os.path.exists(RECORD):
            with open(RECORD, "w") as f:
                f.write(os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "<unset>"))
        return None
sys.meta_path.insert(0, Spy())
sys.argv = ["trainer"] + sys.argv[1:]
runpy.run_module("trainer", run_name="__main__", alter_sys=True)
"""


@pytest.mark.slow
def test_a_trainer_run_has_expandable_segments_before_torch_is_imported(tiny_sd15, dataset, make_config, tmp_path):
    config = make_config(tiny_sd15, dataset, dataset={"resolution": 64},
                         training={"epochs": 1, "batch_size": 4}, output={"sample_every_n_epochs": 0})
    run = new_run(config)
    record = tmp_path / "at-torch-import.txt"
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTORCH_CUDA_ALLOC_CONF", "PYTORCH_ALLOC_CONF", EXPANDABLE_SEGMENTS_SWITCH)}
    with open(run.log, "wb") as log:
        status = subprocess.run([sys.executable, "-c", SPY, str(record), str(run.root)], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, env=env, timeout=240).returncode
    text = run.log.read_text()
    assert status == 0, text[-3000:]
    assert record.read_text() == EXPANDABLE_SEGMENTS
    assert f"CUDA allocator: {EXPANDABLE_SEGMENTS}" in text
    assert "Precision: fp32 on cpu; TF32 matmuls off." in text
