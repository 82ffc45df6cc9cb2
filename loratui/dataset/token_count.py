"""Caption lengths in CLIP tokens, counted with the model's own tokenizer files (no torch, no transformers).

The text encoders read ``dataset.max_token_length`` tokens (75 by default) and drop the rest; a
long WD14 tag list loses its tail tags. Counting needs the model's tokenizer: ``tokenizer.json``
when the folder has one (the whole pipeline is in the file), else ``vocab.json`` and
``merges.txt`` assembled as CLIP's tokenizer is defined (NFC, whitespace folded, lower case; split
into words, numbers and punctuation; byte-level BPE with ``</w>`` word ends). A single-file
checkpoint is counted through ``model.single_file_config`` when that is a local folder; a model
whose tokenizer is not on this machine is not counted (None), and the trainer still warns at start.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

CLIP_SPLIT = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
"""CLIP's word pattern: a word, one digit, or a run of punctuation (the special tokens kept whole)."""


def tokenizer_folder(base: str, single_file_config: str = "") -> Path | None:
    """The local folder holding the model's first tokenizer, or None."""
    for candidate in (Path(base), Path(single_file_config) if single_file_config else None):
        if candidate is not None and candidate.is_dir() and (candidate / "tokenizer").is_dir():
            return candidate / "tokenizer"
    return None


@lru_cache(maxsize=4)
def load_tokenizer(folder: str) -> Any:
    """A ``tokenizers.Tokenizer`` from a tokenizer folder, or None when its files are missing or unreadable."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers
    from tokenizers.models import BPE

    path = Path(folder)
    try:
        if (path / "tokenizer.json").is_file():
            return Tokenizer.from_file(str(path / "tokenizer.json"))
        vocab = json.loads((path / "vocab.json").read_text(encoding="utf-8"))
        lines = (path / "merges.txt").read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError, Exception):  # tokenizers raises its own Exception type for a bad file
        return None
    merges = [tuple(line.split()) for line in lines if line and not line.startswith("#version")]
    tokenizer = Tokenizer(BPE(vocab, merges, unk_token="<|endoftext|>", end_of_word_suffix="</w>",
                              continuing_subword_prefix="", fuse_unk=False))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "),
                                                 normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(CLIP_SPLIT), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    return tokenizer


def count_tokens(tokenizer: Any, text: str) -> int:
    """How many text tokens ``text`` has (start and end tokens not counted)."""
    return len(tokenizer.encode(text, add_special_tokens=False).ids)


def caption_token_counts(captions: list[tuple[Path, str]], base: str,
                         single_file_config: str = "") -> tuple[tuple[Path, int], ...] | None:
    """(caption file, tokens) for every caption; None when the model's tokenizer is not on this machine."""
    folder = tokenizer_folder(base, single_file_config)
    tokenizer = load_tokenizer(str(folder)) if folder else None
    if tokenizer is None:
        return None
    return tuple((path, count_tokens(tokenizer, text)) for path, text in captions)
