"""``loratui resize``'s refusals and the inspector's resize offer, from file headers alone (no torch here).

Every refusal happens in this process, before the resize process (and torch) would start: exit
status 2, one line that names the file (or the option) and says what to do, no traceback, and no
output file. The offer for a file above the guide's 20–100 MB is checked on a sparse 210 MB file
whose sizes are worked out by hand below.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from loratui.cli.resize import _parser, check, format_resize, resize_main
from loratui.inspect import format_report, inspect_file, read_header
from loratui.inspect.safetensors_header import DTYPE_BYTES
from tests.unit.lora_files import write_foreign_lora, write_safetensors
from trainer.contract.resize_plan import lora_shapes, size_after

M = "lora_unet_mid_block_attentions_0_proj_in"


def _lora(path: Path, rank: int = 8, extra: dict | None = None) -> Path:
    tensors = {f"{M}.lora_down.weight": ("F16", [rank, 64], None), f"{M}.lora_up.weight": ("F16", [32, rank], None),
               f"{M}.alpha": ("F16", [], float(rank))}
    return write_safetensors(path, {**tensors, **(extra or {})}, {"ss_network_dim": str(rank)})


def _other(kind: str) -> dict:
    return {
        "LoHa": {f"{M}.hada_w1_a": ("F16", [32, 4], None), f"{M}.hada_w1_b": ("F16", [4, 64], None),
                 f"{M}.hada_w2_a": ("F16", [32, 4], None), f"{M}.hada_w2_b": ("F16", [4, 64], None)},
        "LoKr": {f"{M}.lokr_w1": ("F16", [4, 8], None), f"{M}.lokr_w2": ("F16", [8, 8], None)},
        "(IA)³": {f"{M}.weight": ("F16", [64], None), f"{M}.on_input": ("F16", [], 1.0)},
        "BOFT/OFT": {f"{M}.oft_blocks": ("F16", [2, 4, 8, 8], None)},
        "GLoRA": {f"{M}.a1.weight": ("F16", [4, 64], None), f"{M}.a2.weight": ("F16", [32, 4], None),
                  f"{M}.b1.weight": ("F16", [4, 64], None), f"{M}.b2.weight": ("F16", [32, 4], None)},
    }[kind]


REFUSALS = {
    # case: (how the file is written, extra arguments, words the message must hold)
    **{kind: (lambda p, k=kind: write_safetensors(p, {**_other(k), f"{M}.alpha": ("F16", [], 4.0)}), ["--dim", "2"],
              [f"this is a {kind} file", "LoRA and LoCon only"]) for kind in ("LoHa", "LoKr", "(IA)³", "BOFT/OFT", "GLoRA")},
    "DoRA": (lambda p: _lora(p, extra={f"{M}.dora_scale": ("F16", [1, 64], None)}), ["--dim", "2"],
             ["this is a DoRA file", "LoRA and LoCon only"]),
    "diffusers-layout": (lambda p: write_safetensors(p, {
        "unet.mid_block.attentions.0.proj_in.lora_A.weight": ("F16", [8, 64], None),
        "unet.mid_block.attentions.0.proj_in.lora_B.weight": ("F16", [32, 8], None)}), ["--dim", "2"],
        ["diffusers layout", "kohya layout"]),
    "checkpoint": (lambda p: write_safetensors(p, {"model.diffusion_model.out.2.weight": ("F16", [4, 4], None)}),
                   ["--dim", "2"], ["not a LoRA"]),
    "damaged": (lambda p: p.write_bytes(b"\x0c" + b"\x00" * 7 + b"\x00\xffnot json!!"), ["--dim", "2"],
                ["not valid JSON", "damaged"]),
    "shapes-disagree": (lambda p: write_safetensors(p, {f"{M}.lora_down.weight": ("F16", [8, 64], None),
                                                        f"{M}.lora_up.weight": ("F16", [32, 4], None)}),
                        ["--dim", "2"], [f"module {M}", "do not multiply", "damaged"]),
    "dim-not-below-rank": (_lora, ["--dim", "8"], ["largest rank is 8", "--dim 8 would change nothing",
                                                   "below 8"]),
    "no-dim-or-fro": (_lora, [], ["give --dim N", "--fro F"]),
    "fro-out-of-range": (_lora, ["--fro", "1.5"], ["--fro must be above 0 and below 1"]),
    "dim-zero": (_lora, ["--dim", "0"], ["--dim must be 1 or more"]),
    "conv-dim-without-convs": (_lora, ["--conv-dim", "2"], ["no 3×3 convolution layers", "use --dim"]),
    "conv-dim-not-below-rank": (write_foreign_lora, ["--conv-dim", "4"],
                                ["3×3 layers' largest rank is 4", "--conv-dim 4 would change nothing"]),
    "dim-and-conv-dim-change-nothing": (write_foreign_lora, ["--dim", "16", "--conv-dim", "4"],
                                        ["largest rank is 16", "--dim 16 would change nothing"]),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_what_cannot_be_resized_is_refused_in_one_line_naming_the_file(tmp_path, capsys, case):
    write, flags, words = REFUSALS[case]
    path = tmp_path / "in.safetensors"
    write(path)
    before = path.read_bytes()
    out = tmp_path / "out.safetensors"
    assert resize_main([str(path), "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("loratui: ") and "Traceback" not in err[0]
    if not case.startswith(("no-dim", "fro-", "dim-zero")):  # those name an option, not the file
        assert err[0].startswith(f"loratui: {path}: ")
    for word in words:
        assert word in err[0], (word, err[0])
    assert not out.exists() and path.read_bytes() == before


def test_the_output_is_never_the_input_nor_an_existing_file_without_force(tmp_path, capsys):
    source = _lora(tmp_path / "in.safetensors")
    taken = tmp_path / "taken.safetensors"
    taken.write_bytes(b"the user's file")
    cases = {str(source): "that is the file being resized",
             str(tmp_path / "." / "in.safetensors"): "that is the file being resized",
             str(taken): "already exists; give another --out, or add --force",
             str(tmp_path / "missing" / "o.safetensors"): "does not exist",
             str(tmp_path / "o.ckpt"): "give --out a .safetensors name",
             str(tmp_path): "is a folder"}
    for out, words in cases.items():
        assert resize_main([str(source), "--dim", "4", "--out", out]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"loratui: {out}: ") and words in err, err
    assert taken.read_bytes() == b"the user's file"
    # --force replaces an existing file; the file itself is refused even then.
    assert check(source, taken, 4, None, force=True) is None
    assert "that is the file being resized" in check(source, source, 4, None, force=True)


def test_the_sd_scripts_locon_layout_passes_the_checks(tmp_path):
    """sd-scripts' LoCon: mixed ranks, 1×1 and 3×3 convolutions, fp16/bf16/fp32 alphas."""
    path = write_foreign_lora(tmp_path / "mychar.safetensors")
    header = read_header(path)
    found = lora_shapes(path, {k: (v.shape, DTYPE_BYTES[v.dtype]) for k, v in header.tensors.items()})
    assert found.max_rank == 16 and {m.kernel for m in found.modules} == {(), (1, 1), (3, 3)}
    conv = next(m for m in found.modules if m.spatial)
    assert (conv.rank, conv.inputs, conv.outputs) == (4, 2560 * 9, 1280)
    assert check(path, tmp_path / "small.safetensors", 8, None, False) is None
    assert check(path, tmp_path / "small.safetensors", None, 0.9, False) is None
    assert check(path, tmp_path / "small.safetensors", None, None, False, conv_dim=2) is None  # the 3×3 layers only
    # With --fro, --dim is a cap: one at the file's rank changes nothing by itself, and is allowed.
    assert check(path, tmp_path / "small.safetensors", 16, 0.9, False) is None


def _layer_names(count: int) -> list[str]:
    return [f"lora_unet_middle_block_1_transformer_blocks_{i // 4}_attn1_{('to_q', 'to_k', 'to_v', 'to_out_0')[i % 4]}"
            for i in range(count)]


def _sparse(path: Path, shapes: dict[str, list[int]], metadata: dict[str, str]) -> Path:
    """A header-true fp16 .safetensors file whose data is a sparse hole (hundreds of MB, no disk used)."""
    header, offset = {"__metadata__": metadata}, 0
    for name, shape in shapes.items():
        size = 2
        for n in shape:
            size *= n
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as handle:
        handle.write(len(raw).to_bytes(8, "little") + raw)
        handle.truncate(8 + len(raw) + offset)
    return path


def _sparse_lora(path: Path, modules: int, width: int, rank: int) -> Path:
    shapes = {}
    for name in _layer_names(modules):
        shapes.update({f"{name}.alpha": [], f"{name}.lora_down.weight": [rank, width],
                       f"{name}.lora_up.weight": [width, rank]})
    return _sparse(path, shapes, {"ss_network_dim": str(rank), "ss_network_alpha": str(rank / 2)})


def test_the_inspector_offers_the_resize_that_brings_a_big_file_into_the_guides_range(tmp_path):
    # 80 layers of 1280×1280 at rank 512 in fp16: 80 · 512 · (1280 + 1280) · 2 bytes ≈ 210 MB. Each rank
    # costs 80 · 2560 · 2 = 409,600 bytes, so dim 244 is the largest under 100 MB and 240 the multiple of 8.
    path = _sparse_lora(tmp_path / "huge lora.safetensors", 80, 1280, 512)
    report = inspect_file(path)
    assert report.size.verdict == "above" and report.resize is not None
    offer = report.resize
    assert (offer.dim, offer.from_dim) == (240, 512)
    header = read_header(path)
    found = lora_shapes(path, {k: (v.shape, DTYPE_BYTES[v.dtype]) for k, v in header.tensors.items()})
    assert 20e6 <= size_after(found, header.file_size, 240) == offer.size <= 100e6
    assert size_after(found, header.file_size, 248) > 100e6
    assert offer.size == header.file_size - 80 * (512 - 240) * 2560 * 2  # the hand count above

    # The command is exact: quoted for the shell, and accepted by resize's own checks.
    argv = shlex.split(offer.command)
    assert argv[:3] == ["loratui", "resize", str(path)] and argv[3:5] == ["--dim", "240"]
    args = _parser().parse_args(argv[2:])
    assert args.out == tmp_path / "huge lora-dim240.safetensors"
    assert check(args.file, args.out, args.dim, args.fro, args.force) is None

    # Shown whole (never wrapped) under the size line, by the CLI and the F6 screen alike; in the JSON too.
    lines = format_report(report)
    size_line = next(i for i, line in enumerate(lines) if "above the guide's" in line)
    assert any(line.strip() == offer.command for line in lines[size_line:size_line + 8])
    assert "resize to dim 240 (it is 512 now), about 98.3 MB:" in " ".join(" ".join(lines).split())
    assert report.to_json()["resize"]["command"] == offer.command


def test_no_offer_for_a_file_within_range_or_one_resize_cannot_shrink(tmp_path):
    within = _sparse_lora(tmp_path / "ok.safetensors", 80, 1280, 128)  # ≈ 52 MB
    assert inspect_file(within).size.verdict == "within" and inspect_file(within).resize is None
    shapes = {}
    for name in _layer_names(80):  # a LoHa as big as the LoRA above: above the range, but not resizable
        shapes.update({f"{name}.alpha": [], f"{name}.hada_w1_a": [1280, 512], f"{name}.hada_w1_b": [512, 1280],
                       f"{name}.hada_w2_a": [1280, 512], f"{name}.hada_w2_b": [512, 1280]})
    big_loha = _sparse(tmp_path / "loha.safetensors", shapes, {})
    report = inspect_file(big_loha)
    assert report.network.kind == "loha" and report.size.verdict == "above" and report.resize is None


def test_the_report_names_kept_ranks_norm_and_sizes():
    report = {"file": "a.safetensors", "out": "b.safetensors", "old_bytes": 143_000_000, "new_bytes": 36_000_000,
              "modules": [{"name": "x", "kernel": [], "old": 32, "new": 8, "kept": 0.91, "alpha": 4.0},
                          {"name": "y", "kernel": [1, 1], "old": 32, "new": 8, "kept": 0.99, "alpha": 4.0},
                          {"name": "z", "kernel": [3, 3], "old": 16, "new": 5, "kept": 0.95, "alpha": 2.5}]}
    text = "\n".join(format_resize(report))
    assert "a.safetensors → b.safetensors" in text
    assert "linear and 1×1     2 modules: rank 32 → 8" in text and "3×3 conv           1 modules: rank 16 → 5" in text
    assert "91.0%–99.0% (mean 95.0%" in text and "143 MB → 36.0 MB" in text
