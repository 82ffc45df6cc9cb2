"""The pieces of a training step, checked in-process on a tiny model."""

from __future__ import annotations

import random

import pytest
import torch

from trainer.contract.config.schema import Config, with_value
from trainer.loop import _caption_for_step
from trainer.models import encode_text, load_base_model, tokenize
from trainer.step import (StepOptions, TextEmbeddingCache, add_noise, choose_precision, encode_captions,
                          min_snr_weights)

CPU = choose_precision("no")


@pytest.fixture(scope="module")
def sd15(tiny_sd15):
    return load_base_model(str(tiny_sd15), "sd15", torch.float32, torch.device("cpu"))


@pytest.fixture(scope="module")
def sdxl(tiny_sdxl):
    return load_base_model(str(tiny_sdxl), "sdxl", torch.float32, torch.device("cpu"))


def test_caption_dropout_empties_about_that_share_and_keeps_the_rest(tmp_path):
    config = with_value(with_value(Config(), "dataset.caption_dropout", 0.25), "dataset.shuffle_captions", False)
    rng = random.Random(0)
    results = [_caption_for_step("zk, a, b", config, rng) for _ in range(4000)]
    assert 0.22 < results.count("") / len(results) < 0.28
    assert set(results) == {"", "zk, a, b"}


def test_shuffling_keeps_the_trigger_first():
    config = with_value(Config(), "dataset.keep_tokens", 1)
    rng = random.Random(1)
    shuffled = {_caption_for_step("zk, a, b, c, d", config, rng) for _ in range(50)}
    assert len(shuffled) > 5 and all(s.startswith("zk, ") for s in shuffled)


def test_clip_skip_takes_an_earlier_layer_through_the_final_norm(sd15):
    ids = tokenize(sd15, ["zkmascot, red scarf"])
    last, _ = encode_text(sd15, ids)
    sd15.clip_skip = 2
    try:
        skipped, _ = encode_text(sd15, ids)
    finally:
        sd15.clip_skip = 1
    encoder = sd15.text_encoders[0]
    hidden = encoder(ids[0], output_hidden_states=True).hidden_states[-2]
    assert torch.allclose(skipped, encoder.final_layer_norm(hidden))
    assert not torch.allclose(skipped, last)


def test_sdxl_conditioning_joins_both_encoders(sdxl):
    hidden, pooled = encode_text(sdxl, tokenize(sdxl, ["a", "b"]))
    assert hidden.shape == (2, 77, 32 + 48) and pooled.shape == (2, 32)


def test_cached_text_embeddings_equal_fresh_ones(sdxl):
    captions = ["zkmascot, red scarf", "zkmascot, blue background"]
    cache = TextEmbeddingCache(sdxl, captions, CPU)
    texts = [captions[1], "", captions[0]]
    cached = cache.lookup(texts, torch.device("cpu"))
    fresh = encode_captions(sdxl, texts, CPU, train_text_encoders=False)
    assert torch.allclose(cached[0], fresh[0], atol=1e-6) and torch.allclose(cached[1], fresh[1], atol=1e-6)


def test_min_snr_weights_cap_easy_timesteps(sd15):
    timesteps = torch.tensor([0, 10, 100, 500, 999])
    weights = min_snr_weights(sd15, timesteps, gamma=5.0)
    alphas = sd15.noise_scheduler.alphas_cumprod[timesteps]
    snr = alphas / (1 - alphas)
    assert torch.all(weights <= 1.0 + 1e-6)
    assert torch.allclose(weights[snr > 5], 5.0 / snr[snr > 5])
    assert torch.allclose(weights[snr <= 5], torch.ones_like(weights[snr <= 5]))


def test_noise_offset_shifts_whole_channels(sd15):
    torch.manual_seed(0)
    latents = torch.zeros(256, 4, 8, 8)
    _, plain, _ = add_noise(sd15, latents, StepOptions())
    _, offset, _ = add_noise(sd15, latents, StepOptions(noise_offset=0.5))
    # Per-channel means of plain noise are tiny; the offset makes them about 0.5 × N(0, 1).
    assert plain.mean(dim=(2, 3)).std() < 0.2
    assert 0.35 < offset.mean(dim=(2, 3)).std() < 0.65
