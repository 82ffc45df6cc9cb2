"""``loratui inspect``: files our trainer saves for every network type, a foreign sd-scripts file, bad files.

The trainer-saved files are real: each network is built on the tiny model as the trainer builds
it and saved by the trainer's own ``save_lora`` with its ``training_metadata`` (in one child
process, so this process stays free of torch). The inspector, which reads only the header in
pure Python, must give back the type, ranks, alphas, architecture, blocks and metadata the
trainer used — checked against the trainer's own account of the layers it adapted.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from loratui.cli.inspect import inspect_main
from loratui.inspect import InspectError, format_report, inspect_file
from tests.unit.lora_files import FOREIGN_LAYERS, FOREIGN_TAGS, write_foreign_lora, write_safetensors
from trainer.contract.compatibility import support

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    name: str
    arch: str
    network: dict
    precision: str = "fp16"
    text_encoder_lr: float = 1e-4
    expect: dict = field(default_factory=dict)


CASES = [
    Case("sd15-lora", "sd15", {"type": "lora", "dim": 4, "alpha": 2.0}),
    Case("sd15-locon", "sd15", {"type": "locon", "dim": 4, "alpha": 2.0, "conv_dim": 2, "conv_alpha": 1.0}),
    Case("sd15-loha", "sd15", {"type": "loha", "dim": 4, "alpha": 2.0, "conv_dim": 2, "conv_alpha": 1.0}, "fp32"),
    # Rank 2 makes LyCORIS split every tiny layer's second factor (at larger ranks it keeps full matrices).
    Case("sd15-lokr", "sd15", {"type": "lokr", "dim": 2, "alpha": 1.0, "conv_dim": 1, "conv_alpha": 0.5}),
    Case("sd15-ia3", "sd15", {"type": "ia3"}),
    Case("sd15-boft", "sd15", {"type": "boft", "dim": 4, "alpha": 2.0}),
    Case("sd15-glora", "sd15", {"type": "glora", "dim": 4, "alpha": 2.0}, "bf16"),
    Case("sd15-dora", "sd15", {"type": "lora", "dim": 4, "alpha": 2.0, "dora": True}),
    Case("sdxl-lora", "sdxl", {"type": "lora", "dim": 8, "alpha": 4.0}, "bf16"),
    Case("sdxl-loha", "sdxl", {"type": "loha", "dim": 4, "alpha": 2.0, "conv_dim": 2, "conv_alpha": 1.0},
         text_encoder_lr=0.0),
]
BLOCK_WORDS = {"down_blocks": "down", "up_blocks": "up", "input_blocks": "input", "output_blocks": "output"}
ENCODER_LABELS = {"te": "text encoder", "te1": "text encoder 1", "te2": "text encoder 2"}


@pytest.fixture(scope="module")
def saved(tiny_sd15, tiny_sdxl, tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Every case's file as the trainer saves it, with the trainer's list of the layers it adapted."""
    from loratui.demo import write_dataset

    root = tmp_path_factory.mktemp("inspect")
    write_dataset(root / "dataset")
    models = {"sd15": str(tiny_sd15), "sdxl": str(tiny_sdxl)}
    spec = {"out": str(root), "dataset": str(root / "dataset"), "files": [
        {"name": c.name, "model": models[c.arch], "arch": c.arch, "network": c.network,
         "save_precision": c.precision, "text_encoder_lr": c.text_encoder_lr} for c in CASES]}
    (root / "spec.json").write_text(json.dumps(spec))
    done = subprocess.run([sys.executable, "-m", "tests.unit.lora_files", str(root / "spec.json")], cwd=REPO,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return {c.name: (root / f"{c.name}.safetensors", json.loads((root / f"{c.name}.layers.json").read_text()))
            for c in CASES}


def expected_block(layer: dict) -> str:
    """The block a layer belongs to, from the trainer's module path (the SGM path for SDXL)."""
    if layer["part"] != "unet":
        return ENCODER_LABELS[layer["part"]]
    parts = layer["path"].split(".")
    if parts[0] in ("mid_block", "middle_block"):
        return "mid" if parts[0] == "mid_block" else "middle"
    return f"{BLOCK_WORDS[parts[0]]} {parts[1]}"


def caption_tag_counts(folder: Path, trigger: str) -> Counter:
    """Images carrying each tag, counted from the caption files (the trigger word is in every caption)."""
    counts: Counter = Counter()
    for caption in folder.glob("*.txt"):
        counts.update({tag.strip() for tag in caption.read_text().split(",") if tag.strip()} | {trigger})
    return counts


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_files_our_trainer_saves_read_back_as_configured(saved, case):
    path, layers = saved[case.name]
    report = inspect_file(path)
    network, kind = report.network, case.network["type"]

    assert (network.kind, network.from_weights, network.from_metadata) == (kind, kind, kind)
    assert network.dora == case.network.get("dora", False)
    assert network.precision == case.precision
    assert report.base_model.arch == case.arch and report.base_model.from_metadata == case.arch
    assert report.base_model.from_weights == case.arch

    assert dict(network.parts) == Counter(layer["part"] for layer in layers.values())
    assert {row.block: row.modules for row in report.blocks} == Counter(map(expected_block, layers.values()))
    flat = sum(not layer["spatial"] for layer in layers.values())
    spatial = len(layers) - flat
    if kind == "ia3":
        assert network.dims == () and network.alphas == ()
    elif kind == "boft":
        # BOFT's rank is its block size, and its alpha is LyCORIS' constraint, which the trainer leaves at 0.
        assert network.dims == ((case.network["dim"], flat),) and network.alphas == ((0.0, flat),)
        assert any("ss_network_alpha is 2.0" in note for note in report.notes)
    else:
        assert network.dims == ((case.network["dim"], flat),)
        assert network.alphas == ((case.network["alpha"], flat),)
        if spatial:
            assert network.conv_dims == ((case.network["conv_dim"], spatial),)
            assert network.conv_alphas == ((case.network["conv_alpha"], spatial),)
    assert not any(note.startswith("The metadata says") for note in report.notes)
    if network.dora:
        assert network.dora_axis == "input" and network.label == "LoRA + DoRA (input axis)"
    # Rated by the compatibility table's row for what the weights are, and said in the text report.
    loaders = {name: status for name, status, _ in report.loaders}
    assert loaders == {name: cell.status for name, cell in support(kind, network.dora).items()}
    assert loaders["ComfyUI"] == ("ignored" if kind == "ia3" else "works")
    assert loaders["AUTOMATIC1111"] == "works"
    text = "\n".join(format_report(report))
    assert ("not ComfyUI" in text) == (kind == "ia3") and ("not Forge" in text) == (kind in ("ia3", "boft"))

    settings = dict(report.training.settings)
    assert settings["seed"] == "1234" and settings["epoch"] == "6 of 6" and settings["steps"] == "36 of 36"
    assert settings["UNet learning rate"] == "0.0004" and settings["scheduler"] == "cosine"
    assert settings["batch size"] == "2" and settings["resolution"] == "(128, 128)"
    assert settings["output name"] == case.name and settings["started"] == "2023-11-14 22:13 UTC"
    assert report.training.dataset_dirs == {"dataset": {"n_repeats": 3, "img_count": 12}}
    counts = caption_tag_counts(path.parent / "dataset", "zkmascot")
    assert report.training.tag_frequency == {"dataset": dict(counts)}
    assert report.training.top_tags(4) == sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:4]

    assert report.size.size == path.stat().st_size and report.size.verdict == "below"
    text = "\n".join(format_report(report))
    assert network.label in text and "Blocks" in text and "zkmascot" in text
    assert max(len(line) for line in text.splitlines() if not line.startswith(str(path))) <= 76


def test_a_foreign_sd_scripts_file_with_dims_varying_by_block(tmp_path):
    path = write_foreign_lora(tmp_path / "mychar.safetensors")
    report = inspect_file(path)
    network = report.network
    assert network.kind == "locon" and network.from_metadata == "locon" and not network.dora
    flat = [spec for spec in FOREIGN_LAYERS.values() if spec[2] <= 1]
    assert dict(network.dims) == Counter(spec[3] for spec in flat)
    assert network.dim == 16 and network.conv_dims == ((4, 1),) and network.conv_alphas == ((1.0, 1),)
    # The text encoder's alphas are stored in BF16 and F32; both read back.
    rows = {row.block: row for row in report.blocks}
    assert list(rows) == ["down 0", "down 1", "mid", "up 1", "up 3", "text encoder"]
    assert rows["down 0"].modules == 2 and rows["down 0"].dims == (16,) and rows["down 0"].alphas == (8.0,)
    assert rows["up 1"].dims == () and rows["up 1"].conv_dims == (4,)
    assert rows["text encoder"].dims == (4,) and rows["text encoder"].alphas == (1.0,)
    assert any("rank varies" in note for note in report.notes)

    base = report.base_model
    assert base.arch == "sd15" and base.from_weights == "sd15" and base.from_metadata == "sd15"
    assert any("768-wide" in reason for reason in base.evidence)
    assert base.model_name == "v1-5-pruned-emaonly.safetensors" and base.model_hash.startswith("6ce0161689")

    settings = dict(report.training.settings)
    assert settings["noise offset"] == "0.05" and settings["min SNR gamma"] == "5.0"
    assert settings["clip skip"] == "2" and settings["multires noise iterations"] == "off"
    assert settings["saved"].endswith("(1 h 00 min in)") and settings["epoch"] == "12 of 12"
    assert report.training.network_args == {"conv_dim": "4", "conv_alpha": "1"}
    # Tags merged over both folders, the leading space sd-scripts keeps stripped.
    merged: Counter = Counter()
    for tags in FOREIGN_TAGS.values():
        merged.update({tag.strip(): count for tag, count in tags.items()})
    assert report.training.top_tags(3) == sorted(merged.items(), key=lambda item: (-item[1], item[0]))[:3]
    assert report.training.top_tags(3)[1] == ("red hair", 27)  # " red hair" and "red hair" are one tag
    assert report.training.tag_frequency["5_mychar outfit"] == FOREIGN_TAGS["5_mychar outfit"]
    assert report.size.standard_size is not None and report.size.standard_layers is False
    # Far below a standard network of its dim: the verdict gives that reason, not "this dim is this
    # small", which the standard size printed under it would contradict.
    assert report.size.size < report.size.standard_size
    assert report.size.verdict == "below" and "adapts fewer layers" in report.size.message
    assert "not a problem in itself" not in report.size.message


def test_a_diffusers_format_sdxl_lora(tmp_path):
    tensors = {}
    for module, width_in, width_out in (
            ("unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", 2048, 640),
            ("text_encoder.text_model.encoder.layers.0.self_attn.q_proj", 768, 768),
            ("text_encoder_2.text_model.encoder.layers.0.self_attn.q_proj", 1280, 1280)):
        tensors[f"{module}.lora_A.weight"] = ("F16", [8, width_in], None)
        tensors[f"{module}.lora_B.weight"] = ("F16", [width_out, 8], None)
    report = inspect_file(write_safetensors(tmp_path / "pytorch_lora_weights.safetensors", tensors))
    assert report.network.kind == "lora" and report.network.diffusers_format
    assert report.network.dims == ((8, 3),) and report.network.alphas == ()
    assert dict(report.network.parts) == {"unet": 1, "te1": 1, "te2": 1}
    assert [row.block for row in report.blocks] == ["down 1", "text encoder 1", "text encoder 2"]
    assert report.base_model.arch == "sdxl" and report.base_model.from_metadata is None
    assert any("no metadata" in note for note in report.notes)
    assert "alpha not stored" in "\n".join(format_report(report))


def test_an_output_axis_dora_file_is_named_and_rated_wrong_in_the_uis(tmp_path):
    # LyCORIS' default DoRA keeps (out, 1) magnitudes: A1111 and ComfyUI load it without a word and apply
    # something else (tests/trainer/test_ui_merge.py measures by how much).
    name = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn1_to_q"
    tensors = {f"{name}.lora_down.weight": ("F16", [8, 640], None), f"{name}.lora_up.weight": ("F16", [640, 8], None),
               f"{name}.dora_scale": ("F16", [640, 1], None), f"{name}.alpha": ("F16", [], None)}
    report = inspect_file(write_safetensors(tmp_path / "lyco.safetensors", tensors))
    assert report.network.dora_axis == "output" and report.network.label.endswith("+ DoRA (output axis)")
    loaders = {name: status for name, status, _ in report.loaders}
    assert loaders == {"diffusers": "wrong", "ComfyUI": "wrong", "AUTOMATIC1111": "wrong", "Forge": "wrong",
                       "sd-scripts": "works"}
    assert "not AUTOMATIC1111" in "\n".join(format_report(report))


def _hostile(path: Path, raw: bytes) -> Path:
    path.write_bytes(raw)
    return path


def _header(obj) -> bytes:
    raw = json.dumps(obj).encode()
    return struct.pack("<Q", len(raw)) + raw


HOSTILE = {
    "length-past-the-end": (struct.pack("<Q", 10_000) + b"{}", "not a .safetensors file"),
    "length-over-100-MB": (struct.pack("<Q", 200_000_000) + b"x" * 64, "not a .safetensors file"),
    "too-short": (b"abc", "too short"),
    "not-json": (struct.pack("<Q", 12) + b"\x00\xffnot json!!", "not valid JSON"),
    "json-list": (_header([1, 2, 3]), "not a JSON object"),
    "offsets-outside": (_header({"a.alpha": {"dtype": "F16", "shape": [], "data_offsets": [0, 2]}}),
                        "lies outside the file"),
    "size-mismatch": (_header({"a.lora_down.weight": {"dtype": "F16", "shape": [4, 4], "data_offsets": [0, 2]}})
                      + b"\x00\x00", "needs 32"),
    "bad-dtype": (_header({"a.alpha": {"dtype": "Q9", "shape": [], "data_offsets": [0, 0]}}), "unknown dtype"),
    "bad-metadata": (_header({"__metadata__": ["x"]}), "__metadata__"),
    "pickle": (b"PK\x03\x04" + b"\x00" * 40, "PyTorch pickle"),
    "deep-nesting": (struct.pack("<Q", 200_000) + b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_or_damaged_files_get_a_clear_error_naming_the_file(tmp_path, name):
    raw, why = HOSTILE[name]
    path = _hostile(tmp_path / f"{name}.safetensors", raw)
    with pytest.raises(InspectError) as caught:
        inspect_file(path)
    assert str(caught.value).startswith(str(path)) and why in str(caught.value)


def test_odd_but_well_formed_values_still_give_a_report(tmp_path):
    # A rank of 0 and a NaN alpha are legal safetensors; the report shows them rather than failing.
    path = write_safetensors(tmp_path / "odd.safetensors", {
        "lora_unet_mid_block_attentions_0_proj_in.lora_down.weight": ("F16", [0, 4], None),
        "lora_unet_mid_block_attentions_0_proj_in.lora_up.weight": ("F16", [4, 0], None),
        "lora_unet_mid_block_attentions_0_proj_in.alpha": ("F32", [], float("nan"))},
        {"ss_training_started_at": "1e300", "ss_tag_frequency": "{not json", "ss_network_args": "[1]"})
    report = inspect_file(path)
    assert report.network.dims == ((0, 1),) and "nan" in "\n".join(format_report(report))
    assert any("ss_tag_frequency is not valid JSON" in note for note in report.notes)


def test_missing_files_folders_and_full_checkpoints_are_named_and_explained(tmp_path):
    checkpoint = write_safetensors(tmp_path / "model.safetensors", {
        "model.diffusion_model.input_blocks.0.0.weight": ("F16", [4, 4], None),
        "first_stage_model.encoder.conv_in.weight": ("F16", [4], None)}, {"format": "pt"})
    cases = {tmp_path / "missing.safetensors": "no such file", tmp_path: "is a folder",
             checkpoint: "this is not a LoRA: it looks like a full Stable Diffusion checkpoint"}
    for path, why in cases.items():
        with pytest.raises(InspectError, match=why) as caught:
            inspect_file(path)
        assert str(caught.value).startswith(str(path))


def test_the_command_reports_each_file_and_names_each_bad_one(tmp_path, capsys):
    good = write_foreign_lora(tmp_path / "mychar.safetensors")
    bad = _hostile(tmp_path / "bad.safetensors", HOSTILE["not-json"][0])
    assert inspect_main([str(good), str(bad), "--tags", "3"]) == 2
    out, err = capsys.readouterr()
    assert "LoCon" in out and "Tags (top 3 of 4)" in out
    assert "      10  armor" in out and "       7  smile" not in out  # the overall list stops at 3
    assert "  5_mychar outfit: armor 10, mychar 10, red hair 9" in out  # then each folder's own
    assert err.strip().splitlines() == [f"loratui: {bad}: has a header that is not valid JSON: the file is "
                                        "damaged or not a .safetensors file."]
    assert inspect_main([str(good), str(bad), "--format", "json"]) == 2
    data = json.loads(capsys.readouterr().out)
    assert data[0]["network"]["type"] == "locon" and data[0]["base_model"]["arch"] == "sd15"
    assert data[0]["training"]["top_tags"][0] == ["mychar", 30] and data[1]["file"] == str(bad)
    assert inspect_main([str(good)]) == 0


def test_inspecting_imports_neither_torch_nor_safetensors():
    code = ("import sys, loratui.cli.inspect, loratui.screens.inspect; "
            "assert not {'torch', 'safetensors'} & {m.split('.')[0] for m in sys.modules}, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True)
