"""The app counts caption tokens exactly as the trainer's tokenizer does, without torch or transformers.

The oracle is transformers' CLIPTokenizer on the same tokenizer files, over hundreds of random
captions (tags, digits, punctuation, capitals, accents, runs of spaces). Both the folder form with
``tokenizer.json`` and the older ``vocab.json`` + ``merges.txt`` form are checked.
"""

from __future__ import annotations

import json
import random
import shutil

import pytest

from loratui.assess import assess
from loratui.dataset.token_count import count_tokens, load_tokenizer
from trainer.contract.config.schema import from_dict

WORDS = ["zkmascot", "red scarf", "1girl", "solo", "looking at viewer", "Blue_Eyes", "smile!!", "café au lait",
         "score_9", "(masterpiece:1.2)", "it's", "o_O", "3d", "ナルト", "  extra   spaces ", "x" * 30]


def _captions(count: int = 300) -> list[str]:
    rng = random.Random(7)
    return [", ".join(rng.choice(WORDS) for _ in range(rng.randint(0, 40))) for _ in range(count)]


def _vocab_and_merges_copy(tokenizer_dir, target):
    """The same tokenizer as vocab.json + merges.txt only (how many diffusers folders ship it)."""
    target.mkdir(parents=True)
    if (tokenizer_dir / "vocab.json").is_file():  # transformers 4.x saves this form itself
        for name in ("vocab.json", "merges.txt"):
            shutil.copy(tokenizer_dir / name, target / name)
        return target
    model = json.loads((tokenizer_dir / "tokenizer.json").read_text())["model"]
    (target / "vocab.json").write_text(json.dumps(model["vocab"]))
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (target / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return target


@pytest.mark.parametrize("form", ["tokenizer.json", "vocab+merges"])
def test_the_apps_count_equals_the_trainers_tokenizer_on_random_captions(tiny_sdxl, tmp_path, form):
    from transformers import CLIPTokenizer

    source = tiny_sdxl / "tokenizer"
    if form == "tokenizer.json" and not (source / "tokenizer.json").is_file():
        pytest.skip("this transformers version saves no tokenizer.json")
    folder = source if form == "tokenizer.json" else _vocab_and_merges_copy(source, tmp_path / "tok")
    ours = load_tokenizer(str(folder))
    theirs = CLIPTokenizer.from_pretrained(str(tiny_sdxl), subfolder="tokenizer")
    for caption in _captions():
        assert count_tokens(ours, caption) == len(theirs(caption, truncation=False).input_ids) - 2, caption


def test_check_names_the_long_captions_and_its_fix_clears_the_warning(tiny_sd15, dataset, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_sd15, model)
    for path in sorted(dataset.glob("*.txt"))[:2]:
        path.write_text(path.read_text().strip() + ", " + ", ".join(f"tag{i}" for i in range(20)))
    config, problems = from_dict({"model": {"base": str(model)}, "dataset": {"path": str(dataset)}})
    assert not problems
    (warning,) = [f for f in assess(config).findings if f.rule == "captions.token_window"]
    assert "2 captions run past the 75-token window" in warning.message and "mascot_00.txt" in warning.message
    assert warning.fix.changes == {"dataset.max_token_length": 225}
    assert not [f for f in assess(warning.fix.apply(config)).findings if f.rule == "captions.token_window"]


def test_the_dataset_scan_names_each_caption_past_the_window_when_given_the_model(tiny_sd15, dataset, capsys):
    from loratui.cli.main import main
    from loratui.dataset import scan_folder
    from loratui.dataset.token_count import tokenizer_folder

    lengthened = sorted(dataset.glob("*.txt"))[:2]
    for path in lengthened:
        path.write_text(path.read_text().strip() + ", " + ", ".join(f"tag{i}" for i in range(20)))
    report = scan_folder(dataset, resolution=128, trigger_word="zkmascot", near_duplicates=False,
                         tokenizer=tokenizer_folder(str(tiny_sd15)))
    long = [issue for issue in report.issues if issue.code == "caption_too_long"]
    assert sorted(issue.path for issue in long) == lengthened
    assert all(issue.severity == "warning" and "max_token_length to 225" in issue.message for issue in long)
    wide = scan_folder(dataset, resolution=128, near_duplicates=False, tokenizer=tokenizer_folder(str(tiny_sd15)),
                       token_window=225)
    assert not [issue for issue in wide.issues if issue.code == "caption_too_long"]
    assert not [i for i in scan_folder(dataset, resolution=128, near_duplicates=False).issues
                if i.code == "caption_too_long"]  # without the model nothing is counted

    assert main(["dataset", "scan", str(dataset), "--no-similar", "--model", str(tiny_sd15)]) == 0
    printed = capsys.readouterr().out
    assert all(path.name in printed for path in lengthened) and "past the 75-token window" in printed
    assert main(["dataset", "scan", str(dataset), "--model", str(dataset)]) == 2
    assert "has no tokenizer/ folder" in capsys.readouterr().err
