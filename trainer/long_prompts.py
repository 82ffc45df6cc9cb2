"""Captions longer than CLIP's 77-token window, in 75-token chunks as sd-scripts encodes them.

CLIP reads 77 tokens: a start token, 75 of text and an end token. A WD14 tag list for Pony or
Illustrious often runs past that, and everything after token 75 is cut, silently, and with tag
shuffling a different tail each step. sd-scripts' ``max_token_length`` (150 or 225) instead:

1. tokenizes to N + 2 tokens (padded, truncated);
2. cuts the N text tokens into N / 75 chunks, each wrapped in the start token and the sequence's
   last token (end or padding), so each chunk is a normal 77-token input;
3. encodes all chunks in one batch;
4. joins them back: the first start token, the 75 text positions of every chunk, the very last
   position; N + 2 positions in all. The pooled embedding (SDXL) is the first chunk's.

A1111 encodes long prompts in the same 75-token chunks (it keeps each chunk's start and end
tokens, 77 × chunks positions), so a LoRA trained this way sees prompts the way the UIs give them.
"""

from __future__ import annotations

import torch

WINDOWS = (75, 150, 225)
"""``dataset.max_token_length`` values: text tokens the encoders read (without start and end)."""
CHUNK = 75


def chunk_ids(ids: torch.Tensor, pad_id: int, eos_id: int) -> torch.Tensor:
    """(batch, N + 2) token ids → (batch, N / 75, 77) chunks, each a complete CLIP input.

    Where padding is not the end token (SDXL's second tokenizer pads with ``!``), a chunk that
    ends inside text gets an end token, and a chunk of padding only starts with one, as sd-scripts
    does, so no chunk lacks an end for the pooled embedding to read.
    """
    length = ids.shape[1]
    chunks = []
    for start in range(1, length - 1, CHUNK):
        chunk = torch.cat([ids[:, :1], ids[:, start:start + CHUNK], ids[:, -1:]], dim=1)
        if pad_id != eos_id:
            chunk = chunk.clone()
            inside_text = (chunk[:, -2] != eos_id) & (chunk[:, -2] != pad_id)
            chunk[inside_text, -1] = eos_id
            chunk[chunk[:, 1] == pad_id, 1] = eos_id
        chunks.append(chunk)
    return torch.stack(chunks, dim=1)


def join_chunks(hidden: torch.Tensor, chunks: int) -> torch.Tensor:
    """(batch × chunks, 77, C) encoder states → (batch, 75 × chunks + 2, C): the first start token,
    every chunk's 75 text positions, the last chunk's last position."""
    batch = hidden.shape[0] // chunks
    hidden = hidden.reshape(batch, chunks, hidden.shape[1], hidden.shape[2])
    parts = [hidden[:, 0, :1]] + [hidden[:, index, 1:1 + CHUNK] for index in range(chunks)] + [hidden[:, -1, -1:]]
    return torch.cat(parts, dim=1)


def first_chunk(pooled: torch.Tensor, chunks: int) -> torch.Tensor:
    """(batch × chunks, D) pooled embeddings → (batch, D), the first chunk's of each caption."""
    return pooled.reshape(pooled.shape[0] // chunks, chunks, -1)[:, 0]
