"""Tiny random-weight tagging models, built offline, for tests and demos.

    python -m trainer.tools.tiny_taggers OUT_DIR --kind wd14|blip [--size N] [--seed N]

``build_tiny_wd14`` writes a WD14-shaped folder: ``model.onnx`` (a small CNN that takes
(batch, size, size, 3) float pictures in 0–255, as the real taggers do, and gives one sigmoid
score per tag) and a ``selected_tags.csv`` with rating, general and character rows. Tests decide
what gets tagged through the thresholds (0 tags everything, 1 tags nothing).

The ONNX file is written by hand, field by field, from the ONNX protobuf schema: exporting a
torch module needs the ``onnx`` package (and onnxscript), which nothing else here uses. The
graph is a handful of standard operators, so the encoder below stays short.

``build_tiny_blip`` writes a BLIP captioning folder (model, tokenizer with a hand-written
WordPiece vocabulary, image processor at a tiny size) that ``from_pretrained`` loads offline.
Its captions are random words, which is all a test needs.
"""

from __future__ import annotations

import argparse
import csv
import struct
import sys
from pathlib import Path

import numpy as np

TINY_TAGS = [("general", 9), ("sensitive", 9), ("questionable", 9), ("explicit", 9),
             ("1girl", 0), ("solo", 0), ("long_hair", 0), ("red_scarf", 0), ("simple_background", 0),
             ("^_^", 0), ("hatsune_miku", 4), ("zk_mascot", 4)]
"""(name, category) rows of the tiny tagger: four rating tags, six general ones (a kaomoji among
them, and tags with underscores) and two characters."""

BLIP_WORDS = ["a", "an", "the", "picture", "photo", "of", "yellow", "creature", "with", "red", "scarf", "on",
              "blue", "green", "white", "pink", "background", "sitting", "standing", "jumping", "cartoon",
              "round", "big", "eyes"]
BLIP_SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
"""BERT's special tokens plus BLIP's ``[DEC]``, the token its caption decoder starts from."""


# ── a minimal protobuf writer for the ONNX schema ───────────────────────────────────────────

def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int64 values are written as their two's complement
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, value: bytes | str) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return _varint(field << 3 | 2) + _varint(len(data)) + data


def _float(field: int, value: float) -> bytes:
    return _varint(field << 3 | 5) + struct.pack("<f", value)


_FLOAT, _INT64 = 1, 7  # TensorProto.DataType
_ATTR_FLOAT, _ATTR_INT, _ATTR_INTS = 1, 2, 7  # AttributeProto.AttributeType


def _tensor(name: str, array: np.ndarray) -> bytes:
    """TensorProto: dims (1), data_type (2), name (8), raw_data (9, little-endian)."""
    kind = _FLOAT if array.dtype == np.float32 else _INT64
    body = b"".join(_int(1, dim) for dim in array.shape) + _int(2, kind) + _bytes(8, name)
    return body + _bytes(9, np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes())


def _attribute(name: str, value: float | int | list[int]) -> bytes:
    """AttributeProto: name (1), f (2), i (3), ints (8), type (20)."""
    if isinstance(value, float):
        return _bytes(1, name) + _float(2, value) + _int(20, _ATTR_FLOAT)
    if isinstance(value, int):
        return _bytes(1, name) + _int(3, value) + _int(20, _ATTR_INT)
    return _bytes(1, name) + b"".join(_int(8, v) for v in value) + _int(20, _ATTR_INTS)


def _node(op: str, inputs: list[str], outputs: list[str], **attributes) -> bytes:
    """NodeProto: input (1), output (2), name (3), op_type (4), attribute (5)."""
    body = b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs)
    body += _bytes(3, outputs[0] + "_node") + _bytes(4, op)
    return body + b"".join(_bytes(5, _attribute(k, v)) for k, v in attributes.items())


def _value_info(name: str, dims: list[int | str]) -> bytes:
    """ValueInfoProto with a float tensor type; a str dim is symbolic (the batch)."""
    shape = b"".join(_bytes(1, _int(1, d) if isinstance(d, int) else _bytes(2, d)) for d in dims)
    tensor_type = _int(1, _FLOAT) + _bytes(2, shape)
    return _bytes(1, name) + _bytes(2, _bytes(1, tensor_type))


def tiny_wd14_onnx(size: int, tags: int, seed: int = 0, input_name: str = "input",
                   output_name: str = "output") -> bytes:
    """The bytes of a small CNN tagger: NHWC 0–255 pictures in, one sigmoid score per tag out."""
    rng = np.random.default_rng(seed)
    channels = 8
    weights = {
        "scale": np.array(1 / 255, dtype=np.float32),
        "conv_w": rng.normal(0, 0.5, (channels, 3, 3, 3)).astype(np.float32),
        "conv_b": rng.normal(0, 0.1, (channels,)).astype(np.float32),
        "fc_w": rng.normal(0, 1.0, (channels, tags)).astype(np.float32),
        "fc_b": rng.normal(0, 0.5, (tags,)).astype(np.float32),
    }
    nodes = [
        _node("Transpose", [input_name], ["nchw"], perm=[0, 3, 1, 2]),
        _node("Mul", ["nchw", "scale"], ["scaled"]),
        _node("Conv", ["scaled", "conv_w", "conv_b"], ["conv"], kernel_shape=[3, 3], strides=[2, 2],
              pads=[1, 1, 1, 1]),
        _node("Relu", ["conv"], ["relu"]),
        _node("GlobalAveragePool", ["relu"], ["pooled"]),
        _node("Flatten", ["pooled"], ["flat"], axis=1),
        _node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"]),
        _node("Sigmoid", ["logits"], [output_name]),
    ]
    graph = b"".join(_bytes(1, node) for node in nodes) + _bytes(2, "tiny_wd14")
    graph += b"".join(_bytes(5, _tensor(name, value)) for name, value in weights.items())
    graph += _bytes(11, _value_info(input_name, ["batch", size, size, 3]))
    graph += _bytes(12, _value_info(output_name, ["batch", tags]))
    opset = _bytes(1, "") + _int(2, 17)
    # ModelProto: ir_version (1), producer_name (2), graph (7), opset_import (8).
    return _int(1, 8) + _bytes(2, "loratui-tiny") + _bytes(7, graph) + _bytes(8, opset)


def build_tiny_wd14(folder: Path, size: int = 32, seed: int = 0) -> Path:
    """Write a tiny WD14-style tagger (``model.onnx`` + ``selected_tags.csv``) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.onnx").write_bytes(tiny_wd14_onnx(size, len(TINY_TAGS), seed))
    with open(folder / "selected_tags.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["tag_id", "name", "category", "count"])
        for index, (name, category) in enumerate(TINY_TAGS):
            writer.writerow([1000 + index, name, category, 100 * (len(TINY_TAGS) - index)])
    return folder


def build_tiny_blip(folder: Path, size: int = 32, seed: int = 0) -> Path:
    """Write a tiny random-weight BLIP captioner with its processor into ``folder``."""
    import torch
    from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor,
                              BlipProcessor)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = BLIP_SPECIAL + BLIP_WORDS
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(str(vocab_file), bos_token="[DEC]", model_max_length=64)
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": size, "width": size}),
                              tokenizer=tokenizer)
    ids = {token: vocab.index(token) for token in BLIP_SPECIAL}
    config = BlipConfig(
        vision_config={"image_size": size, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
                       "num_hidden_layers": 1, "num_attention_heads": 2},
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "encoder_hidden_size": 32,
                     "max_position_embeddings": 64, "bos_token_id": ids["[DEC]"], "pad_token_id": ids["[PAD]"],
                     "sep_token_id": ids["[SEP]"], "eos_token_id": ids["[SEP]"]},
        projection_dim=32)
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.tools.tiny_taggers",
                                     description="Build a tiny random-weight tagging model offline.")
    parser.add_argument("out", type=Path, help="the folder to write")
    parser.add_argument("--kind", choices=("wd14", "blip"), default="wd14")
    parser.add_argument("--size", type=int, default=32, help="the picture side the model takes (default 32)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from trainer.quiet import quiet_libraries

    quiet_libraries()
    build = build_tiny_wd14 if args.kind == "wd14" else build_tiny_blip
    print(build(args.out, size=args.size, seed=args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
