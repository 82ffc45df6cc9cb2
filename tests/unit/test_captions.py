"""Caption handling: the trigger word first and once, shuffling that keeps the head."""

from __future__ import annotations

import random

from trainer.contract.captions import join_tags, read_caption, shuffle_tags, split_tags, tag_frequency, with_trigger


def test_trigger_is_added_first_when_missing():
    assert with_trigger("1girl, red hair", "zkchar") == "zkchar, 1girl, red hair"


def test_trigger_is_never_doubled_and_moves_to_the_front():
    assert with_trigger("zkchar, 1girl", "zkchar") == "zkchar, 1girl"
    assert with_trigger("1girl, zkchar, red hair", "zkchar") == "zkchar, 1girl, red hair"


def test_empty_trigger_leaves_the_caption_alone():
    assert with_trigger("a photo of a cat", "") == "a photo of a cat"


def test_empty_caption_gets_just_the_trigger():
    assert with_trigger("", "zkchar") == "zkchar"


def test_shuffle_keeps_the_first_tokens_and_every_tag():
    caption = "zkchar, a, b, c, d, e, f"
    seen = set()
    for seed in range(20):
        shuffled = shuffle_tags(caption, 1, random.Random(seed))
        tags = split_tags(shuffled)
        assert tags[0] == "zkchar"
        assert sorted(tags) == sorted(split_tags(caption))
        seen.add(shuffled)
    assert len(seen) > 5  # it really shuffles


def test_split_and_join_tidy_whitespace():
    assert split_tags(" a ,b,, c \n d ") == ["a", "b", "c", "d"]
    assert join_tags(["a", "b"]) == "a, b"


def test_read_caption(tmp_path):
    path = tmp_path / "x.txt"
    path.write_text("zkchar,  red hair\n\n")
    assert read_caption(path) == "zkchar, red hair"
    assert read_caption(None) == ""


def test_tag_frequency_counts_captions_not_repeats():
    counts = tag_frequency(["a, b, a", "a, c"])
    assert counts == {"a": 2, "b": 1, "c": 1}
    assert list(counts)[0] == "a"
