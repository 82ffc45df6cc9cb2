"""Captions past CLIP's window: read in 75-token chunks with max_token_length, and never cut without a word.

A WD14 tag list for Pony or Illustrious often runs past 75 tokens. At the default window the tail
is cut (the trainer now says so, naming the files); at 150 or 225 every tag reaches the UNet.
"""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from tests.trainer.helpers import of_type, train

TAGS = ", ".join(f"tag{index}" for index in range(30))  # about 175 tokens with the tiny byte-level tokenizer


def _model(base, arch: str, window: int):
    from trainer.models import load_base_model
    model = load_base_model(str(base), arch, torch.float32, torch.device("cpu"))
    model.max_token_length = window
    return model


def _encoded(model, captions: list[str]):
    from trainer.models import encode_text, tokenize
    with torch.no_grad():
        return encode_text(model, tokenize(model, captions))


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_every_tag_of_a_long_caption_reaches_the_unet_at_225_and_not_at_75(request, arch):
    from trainer.models import caption_tokens

    base = request.getfixturevalue(f"tiny_{arch}")
    head, tail_a, tail_b = "zkmascot, " + TAGS, ", red scarf", ", blue hat"
    model = _model(base, arch, 225)
    assert 75 < caption_tokens(model, head) and caption_tokens(model, head + tail_a) <= 225
    long_a, pooled_a = _encoded(model, [head + tail_a])
    long_b, _ = _encoded(model, [head + tail_b])
    assert long_a.shape[1] == 227  # the start token, 3 × 75 text positions, the last position
    assert not torch.allclose(long_a, long_b)  # the tail tags change what the UNet is given
    model.max_token_length = 75
    short_a, _ = _encoded(model, [head + tail_a])
    short_b, _ = _encoded(model, [head + tail_b])
    assert short_a.shape[1] == 77 and torch.equal(short_a, short_b)  # one window: the tail was cut
    if arch == "sdxl":  # the pooled embedding is the first chunk's, which is the same 75 tokens as one window
        assert torch.allclose(pooled_a, _encoded(model, [head + tail_a])[1], atol=1e-6)


def test_each_chunk_is_a_whole_clip_input_encoded_on_its_own(tiny_sd15):
    from trainer.models import tokenize

    model = _model(tiny_sd15, "sd15", 150)
    (ids,) = tokenize(model, ["zkmascot, " + TAGS])
    tokenizer = model.tokenizers[0]
    assert ids.shape == (1, 2, 77)
    assert (ids[0, :, 0] == tokenizer.bos_token_id).all()
    assert set(ids[0, :, -1].tolist()) <= {tokenizer.eos_token_id, tokenizer.pad_token_id}
    joined, _ = _encoded(model, ["zkmascot, " + TAGS])
    encoder = model.text_encoders[0]
    with torch.no_grad():
        for index in range(2):  # positions 1..75 of each chunk, where the join put them
            alone = encoder(ids[:, index]).last_hidden_state
            assert torch.allclose(joined[:, 1 + 75 * index:76 + 75 * index], alone[:, 1:76], atol=1e-6)
        assert torch.allclose(joined[:, 0], encoder(ids[:, 0]).last_hidden_state[:, 0], atol=1e-6)


def test_a_caption_that_fits_one_window_reads_the_same_in_a_longer_one(tiny_sdxl):
    model = _model(tiny_sdxl, "sdxl", 225)
    long_hidden, long_pooled = _encoded(model, ["zkmascot, red scarf"])
    model.max_token_length = 75
    short_hidden, short_pooled = _encoded(model, ["zkmascot, red scarf"])
    assert torch.allclose(long_hidden[:, :76], short_hidden[:, :76], atol=1e-6)
    assert torch.allclose(long_pooled, short_pooled, atol=1e-6)


def _long_captions(folder, count: int = 3) -> list[str]:
    """Lengthen ``count`` captions to between 150 and 225 tokens (the demo's own are about 70)."""
    captions = sorted(folder.glob("*.txt"))[:count]
    for path in captions:
        path.write_text(path.read_text().strip() + ", " + ", ".join(TAGS.split(", ")[:20]))
    return [path.name for path in captions]


@pytest.mark.slow
def test_cut_captions_are_named_and_a_long_window_trains_and_is_recorded(tiny_sd15, tiny_sdxl, dataset, make_config):
    names = _long_captions(dataset)
    run, events, status = train(make_config(tiny_sd15, dataset))
    assert status == 0, run.log.read_text()[-3000:]
    (warning,) = [e for e in of_type(events, "warning") if e["code"] == "captions_cut"]
    assert sorted(p.rsplit("/", 1)[-1] for p in warning["files"]) == names
    assert "3 captions are longer than the 75-token window" in warning["message"]
    assert "set dataset.max_token_length = 225" in warning["message"] and warning["longest"] > 150

    run, events, status = train(make_config(tiny_sdxl, dataset, dataset={"max_token_length": 225}))
    assert status == 0, run.log.read_text()[-3000:]
    assert not [e for e in of_type(events, "warning") if e["code"] == "captions_cut"]
    with safe_open(str(run.final_lora("test")), "pt") as handle:
        assert handle.metadata()["ss_max_token_length"] == "225"
