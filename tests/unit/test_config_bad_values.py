"""Bad configs, generated from the schema: every field, every kind of wrong value.

Each case goes through ``from_dict`` + ``validate`` and through real TOML text (``loads``), and
must end one of two ways: the value is allowed by the field's documented limits and kept as
written, or there is a Problem whose field is the dotted key and whose message says what is
allowed. Never an exception, never an impossible value accepted in silence. The cases are made
by iterating the schema, so a field added later is covered without touching this file (the
tables below make its author decide what 0 and "" mean for it).
"""

from __future__ import annotations

import datetime
import json
import math
import random
from pathlib import Path

import pytest

from trainer.contract.config.schema import (CONFIG_VERSION, FIELDS, SECTIONS, Config, FieldInfo, Problem, from_dict,
                                            get_value, validate, with_value)
from trainer.contract.config.toml_io import ConfigFileError, apply_overrides, load_config, loads
from trainer.contract.rundir import create_run_dir

NUMBER_FIELDS = [key for key, info in FIELDS.items() if info.type in (int, float)]
TEXT_FIELDS = [key for key, info in FIELDS.items() if info.type is str]
CHOICE_FIELDS = [key for key, info in FIELDS.items() if info.choices]
# The two settings every config must name; the rest of a valid base config is the defaults.
BASE = {"model": {"base": "models/base.safetensors"}, "dataset": {"path": "images"}}

# ── The table of what is impossible ──────────────────────────────────────────────────────────────
# Every number field has a minimum of 0 or more (no setting has a meaning for a negative value) and
# a maximum where a value stops being possible rather than unwise; why each maximum is where it is
# (advice below it belongs to loratui.rules). Only config_version has none: EXTRA_RULES refuses a
# newer version. A new number field fails test_every_number_field_has_justified_limits until listed.
MAXIMUM_WHY = {
    "model.clip_skip": "CLIP ViT-L has 12 layers; past the 4th from the end no checkpoint was trained on them",
    "dataset.repeats": "1000 × images × epochs is already millions of steps",
    "dataset.resolution": "4096 px is 16× SDXL's native area: neither architecture trains there",
    "dataset.keep_tokens": "CLIP reads 75 tokens per chunk; more leading tags cannot be kept together",
    "dataset.max_token_length": "225 is sd-scripts' largest window (three CLIP chunks); the UIs read prompts the same way",
    "dataset.caption_dropout": "a share of uses: 1 drops every caption",
    "network.dim": "a rank past the adapted layers' width (320–2048) is no longer low-rank",
    "network.alpha": "alpha/dim is the scale; the same bound as dim",
    "network.conv_dim": "as network.dim",
    "network.conv_alpha": "as network.alpha",
    "optimizer.unet_lr": "1.0 is Prodigy's scale; an Adam rate of 1 diverges at the first step",
    "optimizer.text_encoder_lr": "as optimizer.unet_lr",
    "optimizer.weight_decay": "the share of each weight decayed per step (times the rate)",
    "optimizer.max_grad_norm": "clipping at 1000 clips nothing; 0 already says 'no clipping'",
    "scheduler.restarts": "more cosine cycles than a LoRA run has epochs",
    "scheduler.warmup_steps": "longer than any LoRA run",
    "training.epochs": "10000 passes: far past the point a LoRA is burnt",
    "training.batch_size": "256 images per step fit no GPU at SD resolutions",
    "training.num_processes": "one process per GPU; no single machine has 64",
    "training.seed": "NumPy and Python's data order take 32-bit seeds",
    "training.min_snr_gamma": "a cap of 100 is above the SNR of almost every step: the same as off",
    "training.noise_offset": "an offset the size of the noise itself",
    "output.save_every_n_epochs": "training.epochs' maximum",
    "output.keep_last_n_checkpoints": "training.epochs' maximum",
    "output.sample_every_n_epochs": "training.epochs' maximum",
    "output.sample_steps": "Euler has converged long before 150 steps",
    "output.sample_seed": "as training.seed",
    "training.gradient_accumulation_steps": "256 batches per update: as training.batch_size",
    "training.prior_loss_weight": "a weight of 10 makes the regularization images the whole loss",
    "training.validation_split": "holding out more than half leaves fewer images to train on than to test",
    "training.validation_seed": "as training.seed",
    "training.validate_every_n_steps": "as scheduler.warmup_steps: longer than any LoRA run",
    "training.validate_every_n_epochs": "training.epochs' maximum",
    "training.multires_noise_iterations": "2^20 is past any latent's size: the coarsest layers are one pixel",
    "training.multires_noise_discount": "a discount above 1 makes the coarse layers stronger than the noise",
    "training.ip_noise_gamma": "a perturbation as large as the noise itself",
    "training.min_timestep": "the schedule has timesteps 0 to 999",
    "training.max_timestep": "the schedule has 1000 timesteps",
    "training.huber_c": "past 10 the Huber loss is the squared loss for every value the model predicts",
    "output.save_every_n_steps": "as scheduler.warmup_steps",
    "output.sample_every_n_steps": "as scheduler.warmup_steps",
    "output.sample_cfg": "guidance past 30 burns every picture",
}
# Beyond a field's own limits, these rules refuse values the limits let through:
EXTRA_RULES = {
    "config_version": (lambda v: v <= CONFIG_VERSION, "newer than"),
    "dataset.resolution": (lambda v: v % 64 == 0, "multiple of 64"),  # buckets are made of 64 px steps
    "dataset.max_token_length": (lambda v: v % 75 == 0, "75-token chunks"),  # CLIP reads 75 text tokens at a time
    "network.alpha": (lambda v: v > 0, "above 0"),  # alpha/dim scales the LoRA: 0 outputs and learns nothing
    "optimizer.unet_lr": (lambda v: v > 0, "above 0"),  # a rate of 0 trains nothing
}
# What 0 means for each number field whose limits include it. A new field whose range includes 0
# fails test_zero_is_decided_for_every_field until someone writes down here what 0 does.
ZERO_MEANS = {
    "dataset.resolution": "the architecture's own size (768 or 1024)",
    "dataset.keep_tokens": "every tag is shuffled",
    "dataset.caption_dropout": "no caption is ever dropped",
    "network.alpha": "IMPOSSIBLE (EXTRA_RULES)",
    "network.conv_alpha": "unused by lora; impossible with locon, loha, lokr (test_conv_alpha_zero…)",
    "optimizer.unet_lr": "IMPOSSIBLE (EXTRA_RULES)",
    "optimizer.text_encoder_lr": "the text encoder is left untouched",
    "optimizer.weight_decay": "no weight decay",
    "optimizer.max_grad_norm": "no clipping",
    "scheduler.warmup_steps": "no warmup",
    "training.seed": "a seed like any other",
    "training.min_snr_gamma": "Min-SNR weighting off",
    "training.noise_offset": "no noise offset",
    "output.save_every_n_epochs": "only the final LoRA is saved",
    "output.keep_last_n_checkpoints": "every checkpoint is kept",
    "output.sample_every_n_epochs": "samples only when asked",
    "output.sample_seed": "a seed like any other",
    "training.prior_loss_weight": "the regularization images count for nothing",
    "training.validation_split": "no image is held out",
    "training.validation_seed": "a seed like any other",
    "training.validate_every_n_steps": "validation only at epoch ends",
    "training.multires_noise_iterations": "multires noise off",
    "training.multires_noise_discount": "the coarse layers add nothing",
    "training.ip_noise_gamma": "no input perturbation",
    "training.min_timestep": "from the first timestep",
    "output.save_every_n_steps": "no step-interval saves",
    "output.sample_every_n_steps": "no step-interval samples",
    "output.sample_cfg": "the pipeline's own guidance scale",
}
# Text fields (not required, no choices) where "" is still impossible.
EMPTY_IMPOSSIBLE = {
    "output.name": "no file can be named ''",
    "output.dir": "'' names no folder",
    "dataset.caption_extension": "captions are found by swapping the image's extension for this one",
}

WRONG_TYPES = {
    int: ["8", 8.5, True, False, [8], {"v": 8}, datetime.date(2024, 5, 27), None],
    float: ["5e-4", True, False, [0.1], {"v": 0.1}, datetime.date(2024, 5, 27), None],
    bool: ["true", 1, 0, 1.0, [True], {"v": True}, None],
    str: [1, 1.5, True, ["a"], {"a": "b"}, datetime.date(2024, 5, 27), None],
    list: ["one prompt", 1, True, {"a": "b"}, [1], ["a", 2], [["nested"]], None],
}
EXPECTED_WORDS = {int: "expected a whole number", float: "expected a number", bool: "expected true or false",
                  str: "expected text", list: "expected a list of texts"}


def _literal(value) -> str:
    """``value`` written as TOML (nan, ±inf and any integer included), for configs made as real text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float, datetime.date)):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_literal(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def _data(key: str, value) -> dict:
    """The base config with one field set to ``value`` (raw, as parsed TOML would hold it)."""
    data = {section: dict(values) for section, values in BASE.items()}
    if "." in key:
        section, name = key.split(".", 1)
        data.setdefault(section, {})[name] = value
    else:
        data[key] = value
    return data


def _text(data: dict) -> str:
    """Parsed-TOML-shaped data written back as TOML text: top-level keys first, then [section] tables."""
    lines = [f"{k} = {_literal(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for section, values in data.items():
        if isinstance(values, dict):
            lines += [f"[{section}]"] + [f"{k} = {_literal(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def _check(data: dict) -> tuple[Config, list[Problem]]:
    """Every problem with raw config data, found both ways; both ways must agree."""
    config, problems = from_dict(data)
    problems = problems + validate(config)
    if all(v is not None for v in [*data.values(), *(x for s in data.values() if isinstance(s, dict)
                                                     for x in s.values())]):
        _, from_text = loads(_text(data))
        assert [str(p) for p in from_text] == [str(p) for p in problems]
    return config, problems


def _limit_words(info: FieldInfo) -> list[str]:
    """The ways a message can state this field's range: its limits as numbers."""
    return [str(int(x)) if float(x).is_integer() else f"{x:g}" for x in (info.minimum, info.maximum) if x is not None]


def _allowed(key: str, value) -> bool:
    """Whether a number is allowed by the field's documented limits and the rules above."""
    info = FIELDS[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    if info.type is int and isinstance(value, float) and not value.is_integer():
        return False
    if info.type is float and abs(value) > 1e300:
        return False  # no float holds it
    if (info.minimum is not None and value < info.minimum) or (info.maximum is not None and value > info.maximum):
        return False
    rule = EXTRA_RULES.get(key)
    return rule[0](value) if rule else True


def _number_cases(info: FieldInfo) -> list:
    cases = [-1, 0, 1, -0.0, 0.5, 10**12, 1e12, float("inf"), float("-inf"), float("nan"), 10**400, -10**400, True]
    for limit in (info.minimum, info.maximum):
        if limit is not None:
            cases += [info.type(limit), info.type(limit) - 1, info.type(limit) + 1]
    return cases


# ── Numbers: negative, zero, huge, nan, inf, bool ────────────────────────────────────────────────

@pytest.mark.parametrize("key", NUMBER_FIELDS)
def test_every_number_is_either_allowed_and_kept_or_refused_saying_what_is_allowed(key):
    info = FIELDS[key]
    for value in _number_cases(info):
        config, problems = _check(_data(key, value))
        assert {p.field for p in problems} <= {key}, (value, problems)
        if _allowed(key, value):
            assert problems == [], (value, problems)
            kept = get_value(config, key)
            assert kept == value and type(kept) is info.type, (value, kept)
        else:
            assert problems, f"{key} = {value!r} is impossible but was accepted"
            hints = _limit_words(info) + ([EXTRA_RULES[key][1]] if key in EXTRA_RULES else [])
            for problem in problems:
                assert any(hint in problem.message for hint in hints), (value, problem)
                assert len(problem.message) < 200, problem  # a 400-digit number is described, not echoed


def test_every_number_field_has_justified_limits():
    for key in NUMBER_FIELDS:
        info = FIELDS[key]
        assert info.minimum is not None and info.minimum >= 0, key
        assert info.maximum is not None or key in EXTRA_RULES, f"{key} needs a hard maximum"
    with_maximum = {key for key in NUMBER_FIELDS if FIELDS[key].maximum is not None}
    assert with_maximum == set(MAXIMUM_WHY), "say in MAXIMUM_WHY why each maximum is impossible, not unwise"


@pytest.mark.parametrize("key", NUMBER_FIELDS)
def test_zero_is_decided_for_every_field(key):
    info = FIELDS[key]
    _, problems = _check(_data(key, 0))
    if info.minimum > 0:
        assert problems and problems[0].field == key
        return
    assert key in ZERO_MEANS, f"{key} allows 0: write down in ZERO_MEANS what 0 does (or forbid it)"
    refused = bool(problems)
    assert refused == ZERO_MEANS[key].startswith("IMPOSSIBLE"), (key, problems)


def test_conv_alpha_zero_is_refused_where_the_convolutions_are_trained():
    for network in ("locon", "loha", "lokr"):
        data = _data("network.conv_alpha", 0)
        data["network"]["type"] = network
        _, problems = _check(data)
        assert [p.field for p in problems] == ["network.conv_alpha"], problems
        assert "above 0" in problems[0].message and network in problems[0].message


def test_form_values_nan_and_inf_are_refused_by_validate_alone():
    # The settings form parses "nan" with float() and sets it straight into the config.
    for key in NUMBER_FIELDS:
        for value in (float("nan"), float("inf"), float("-inf")):
            problems = validate(with_value(with_value(Config(), "model.base", "m"), key, value))
            assert [p.field for p in problems if p.field != "dataset.path"] == [key], (key, value, problems)


# ── Wrong types ─────────────────────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("key", list(FIELDS))
def test_a_wrong_type_is_named_keeps_the_default_and_never_raises(key):
    info = FIELDS[key]
    for value in WRONG_TYPES[info.type]:
        config, problems = _check(_data(key, value))
        # A required field also reports its stand-in default as missing: both name the field.
        assert [p.field for p in problems] == [key] * (1 + info.required), (value, problems)
        assert problems[0].message.startswith(EXPECTED_WORDS[info.type]), problems
        if info.type in (int, float) and info.maximum is not None:
            assert all(word in problems[0].message for word in _limit_words(info)), problems
        assert get_value(config, key) == info.default
        # Code (or the form) can put any value into a Config; validate names it rather than raising.
        in_code = validate(with_value(from_dict(BASE)[0], key, value))
        assert [p.field for p in in_code] == [key] and in_code[0].message == problems[0].message, (value, in_code)


def test_a_whole_float_set_in_code_into_an_int_field_is_refused():
    # From a file 4.0 becomes 4; left as a float it would reach range() in the trainer.
    for key in NUMBER_FIELDS:
        if FIELDS[key].type is int:
            problems = validate(with_value(from_dict(BASE)[0], key, 4.0))
            assert [p.field for p in problems] == [key] and "whole number" in problems[0].message


def test_a_section_that_is_not_a_table_is_named():
    for section in SECTIONS:
        for value in (1, "text", [1, 2], True):
            _, problems = from_dict({section: value})
            assert [p.field for p in problems] == [section]
            assert f"expected a [{section}] table" in problems[0].message


# ── Text: required, empty, choices, characters no file can hold ──────────────────────────────────

@pytest.mark.parametrize("key", TEXT_FIELDS)
def test_empty_text_is_refused_only_where_it_is_impossible(key):
    info = FIELDS[key]
    _, problems = _check(_data(key, ""))
    impossible = info.required or info.choices or key in EMPTY_IMPOSSIBLE
    assert bool(problems) == bool(impossible), (key, problems)
    assert {p.field for p in problems} <= {key}
    if info.required:
        assert [p.message for p in problems] == ["is required."]
        _, blank = _check(_data(key, "   "))
        assert [str(p) for p in blank] == [f"{key}: is required."]


@pytest.mark.parametrize("key", TEXT_FIELDS + ["output.sample_prompts"])
def test_a_nul_character_or_undecodable_text_is_refused(key):
    for bad in ("a\x00b", "bad \udcff byte"):
        value = [bad] if FIELDS[key].type is list else bad
        config, problems = from_dict(_data(key, value))
        problems += validate(config)
        assert problems and {p.field for p in problems} == {key}, (bad, problems)
        if bad.startswith("a") and not FIELDS[key].choices:
            assert any("NUL" in p.message for p in problems)
    # TOML can write a NUL (\u0000); it must arrive at the same problem.
    _, problems = loads(_text(_data(key, ["a\x00b"] if FIELDS[key].type is list else "a\x00b")))
    assert problems and {p.field for p in problems} == {key}


def _distance(a: str, b: str) -> int:
    """Levenshtein distance (to judge a "did you mean" among equally near choices)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


@pytest.mark.parametrize("key", CHOICE_FIELDS)
def test_a_value_outside_the_choices_lists_them_and_suggests_the_nearest(key):
    info = FIELDS[key]
    _, problems = _check(_data(key, "nonsense"))
    assert [p.field for p in problems] == [key]
    assert all(choice in problems[0].message for choice in info.choices)
    for choice in info.choices:
        for i in range(len(choice)):
            typo = choice[:i] + ("q" if "q" not in choice else "z") + choice[i + 1:]
            _, problems = _check(_data(key, typo))
            (problem,) = problems
            if "Did you mean" in problem.message:
                suggested = problem.message.split("Did you mean '")[1].split("'")[0]
                assert _distance(typo, suggested) == 1, (typo, problem)  # as near as the intended choice
            else:
                assert len(choice) < 4, (typo, problem)  # only two-letter words are too short to guess


def test_caption_extension_must_be_an_extension_pathlib_accepts():
    for extension in (".txt", ".caption", ".tags.txt", "..txt"):
        _, problems = _check(_data("dataset.caption_extension", extension))
        assert problems == [], extension
        Path("images/a.png").with_suffix(extension)  # what the dataset scan does with it
    for extension in (".", "", "/txt", ".a/b", ".a\\b", " .txt", "a\x00"):
        _, problems = _check(_data("dataset.caption_extension", extension))
        assert [p.field for p in problems][:1] == ["dataset.caption_extension"], extension
        assert "Write it with its dot, such as '.txt'." in problems[-1].message
    for extension in ("txt", "caption"):
        _, problems = _check(_data("dataset.caption_extension", extension))
        assert [p.message for p in problems] == [f"'{extension}' is not a file extension. Did you mean '.{extension}'?"]


def test_output_name_must_fit_the_file_names_made_from_it(tmp_path):
    longest = "é" * 100  # 200 bytes in UTF-8: the most allowed
    assert _check(_data("output.name", longest))[1] == []
    problems = _check(_data("output.name", longest + "x"))[1]
    assert [p.field for p in problems] == ["output.name"] and "201 bytes" in problems[0].message
    # The limit is enough: the run folder and the longest file the trainer names from it can exist.
    config = with_value(with_value(from_dict(BASE)[0], "output.name", longest), "output.dir", str(tmp_path))
    run = create_run_dir(config)
    run.checkpoints.mkdir()
    run.checkpoint(longest, 10000).touch()
    (run.checkpoints / f"{longest}-step{10**9:06d}.safetensors").touch()
    # And it is needed: the file system refuses a name this check refuses.
    with pytest.raises(OSError):
        (tmp_path / ("n" * 256)).mkdir()


def test_output_dir_cannot_be_empty():
    _, problems = _check(_data("output.dir", ""))
    assert [p.field for p in problems] == ["output.dir"] and "runs" in problems[0].message


# ── Unknown keys: "did you mean" for every real key, generated ───────────────────────────────────

def _typos(word: str):
    """``word`` with each letter in turn replaced by one it does not contain."""
    letter = next(c for c in "qxzj" if c not in word)
    return [word[:i] + letter + word[i + 1:] for i, c in enumerate(word) if c.isalpha()]


@pytest.mark.parametrize("key", list(FIELDS))
def test_a_misspelt_key_or_section_suggests_the_real_one(key):
    section, _, name = key.rpartition(".")
    for typo in _typos(name):
        _, problems = from_dict({section: {typo: 1}} if section else {typo: 1})
        wanted = f"{section}.{typo}" if section else typo
        assert [p.field for p in problems] == [wanted]
        assert problems[0].message == f"unknown setting. Did you mean '{name}'?", problems
    for typo in _typos(section) if section else []:
        _, problems = from_dict({typo: {name: 1}})
        assert [str(p) for p in problems] == [f"{typo}: unknown setting. Did you mean '{section}'?"]
    for typo in _typos(key):  # --set with a misspelt dotted key
        problems = apply_overrides({}, [f"{typo}=1"])
        assert [p.message for p in problems] == [f"unknown setting. Did you mean '{key}'?"], typo


def test_a_real_key_in_the_wrong_place_names_where_it_belongs():
    # Keys written above the first [section] header, as people do, land at the top level.
    _, problems = loads('batch_size = 2\n[model]\nbase = "m"\n[dataset]\npath = "d"\n[training]\nunet_lr = 1e-4\n')
    messages = {p.field: p.message for p in problems}
    assert "Did you mean 'training.batch_size'? It belongs in the [training] table." in messages["batch_size"]
    assert "Did you mean 'optimizer.unet_lr'? It belongs in the [optimizer] table." in messages["training.unet_lr"]
    _, problems = from_dict({"dataset": {"name": "x"}})
    assert problems[0].message.endswith("'name' is a setting of [optimizer], [scheduler], [output].")


# ── Missing and empty files, missing required fields, malformed TOML ─────────────────────────────

def test_an_empty_or_comment_only_file_names_every_required_field(tmp_path):
    required = [key for key, info in FIELDS.items() if info.required]
    assert {"model.base", "dataset.path"} <= set(required)
    for text in ("", "\n\n", "# only a comment\n", "[model]\n[dataset]\n"):
        path = tmp_path / "empty.toml"
        path.write_text(text)
        _, problems = load_config(path)
        assert [str(p) for p in problems] == [f"{key}: is required." for key in required], text
    # Each one missing on its own is named on its own.
    for key in required:
        data = {section: dict(values) for section, values in BASE.items()}
        section, name = key.split(".")
        del data[section][name]
        assert [str(p) for p in _check(data)[1]] == [f"{key}: is required."]


def test_a_missing_file_or_a_folder_is_one_clear_error_naming_it(tmp_path):
    with pytest.raises(ConfigFileError, match="nope.toml: no such file"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigFileError, match="is a folder, not a config file"):
        load_config(tmp_path)


@pytest.mark.parametrize("text,line", [
    ('[model]\nbase = "m"\n[training\nepochs = 2\n', 3),
    ('[model]\nbase = "m"\n\n[training]\nbatch_size =\n', 5),
    ('[training]\nepochs = 2\nepochs = 3\n', 3),
    ('[model]\nbase = "unterminated\n', 2),
    ('[output]\nname = lora\n', 2),
    ('[training]\nbatch_size = 2\n[training]\nepochs = 1\n', 3),
    ('[model]\nbase = "m"\n[dataset]\npath = "d"\n[optimizer]\nunet_lr = 5e-4.1\n', 6),
])
def test_malformed_toml_names_the_file_and_the_line(tmp_path, text, line):
    path = tmp_path / "broken.toml"
    path.write_text(text)
    with pytest.raises(ConfigFileError) as caught:
        load_config(path)
    assert str(caught.value).startswith(f"{path}: is not valid TOML: ")
    assert f"line {line}," in str(caught.value)


def test_a_number_too_long_for_python_is_a_clear_error_not_a_traceback(tmp_path):
    path = tmp_path / "huge.toml"
    path.write_text('[training]\nbatch_size = 1' + "0" * 5000 + "\n")
    with pytest.raises(ConfigFileError, match="huge.toml: is not valid TOML: it holds a number too long"):
        load_config(path)
    # The same digits given with --set are read as text, and named as the wrong type.
    path.write_text('[model]\nbase = "m"\n[dataset]\npath = "d"\n')
    _, problems = load_config(path, ["training.batch_size=1" + "0" * 5000, "optimizer.unet_lr=1" + "0" * 400])
    assert [p.field for p in problems] == ["training.batch_size", "optimizer.unet_lr"]
    assert all(len(p.message) < 200 for p in problems)


def test_paths_that_cannot_be_resolved_are_named_not_raised(tmp_path):
    (tmp_path / "loop1").symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(tmp_path / "loop1")
    path = tmp_path / "c.toml"
    for key in ("model.base", "model.single_file_config", "dataset.path", "dataset.cache_dir", "output.dir"):
        for value in ("a\\u0000b", "~no-such-user-here/x", "loop1/x"):
            section, name = key.split(".")
            base = {"model": {"base": '"m"'}, "dataset": {"path": '"d"'}}
            base.setdefault(section, {})[name] = f'"{value}"'
            path.write_text("".join(f"[{s}]\n" + "".join(f"{k} = {v}\n" for k, v in d.items())
                                    for s, d in base.items()))
            config, problems = load_config(path)
            if "u0000" in value:
                assert [p.field for p in problems] == [key]
            else:
                assert problems == [], (key, value)  # the preflight then says the path does not exist


def test_a_bad_override_value_is_named_like_one_in_the_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[model]\nbase = "m"\n[dataset]\npath = "d"\n')
    overrides = ["training.batch_size=true", "optimizer.unet_lr=nan", "network.dim=0", "dataset.trigger_word=\udcff"]
    _, problems = load_config(path, overrides)
    assert sorted(p.field for p in problems) == ["dataset.trigger_word", "network.dim", "optimizer.unet_lr",
                                                 "training.batch_size"]


# ── A little fuzzing ─────────────────────────────────────────────────────────────────────────────

def _garbage(rng: random.Random, depth: int = 0):
    kind = rng.randrange(13 if depth < 3 else 10)
    if kind == 0:
        return rng.choice([0, 1, -1, 2**31, -2**63, 10**400, rng.randint(-10**6, 10**6)])
    if kind == 1:
        return rng.choice([0.0, -0.0, 1e-300, 1e308, float("inf"), float("-inf"), float("nan"), rng.uniform(-9, 9)])
    if kind == 2:
        return rng.choice([True, False])
    if kind == 3:
        return rng.choice(["", " ", "\x00", "\udcff", "é" * 300, "a/b", "..", "lora", "nan", "1e-4", "[x]"])
    if kind == 4:
        info = FIELDS[rng.choice(list(FIELDS))]
        return rng.choice([info.default, *(info.choices or ()), info.minimum, info.maximum])
    if kind == 5:
        return None
    if kind == 6:
        return datetime.datetime(2024, 1, 1, 12, 0)
    if kind == 7:
        return "".join(rng.choice("abz_.-\u00e9\x00\ud800 ") for _ in range(rng.randrange(12)))
    if kind == 8:
        return rng.choice(list(FIELDS))
    if kind == 9:
        return ["ok", "a\x00"][: rng.randrange(3)]
    if kind in (10, 11):
        return [_garbage(rng, depth + 1) for _ in range(rng.randrange(4))]
    return _nested(rng, depth + 1)


def _key(rng: random.Random, pool: list[str]) -> str:
    key = rng.choice(pool)
    if rng.random() < 0.3:  # a typo
        i = rng.randrange(len(key))
        key = key[:i] + rng.choice("xq_ ") + key[i + 1:]
    return key if rng.random() > 0.05 else rng.choice(["", " ", "model.base", "ü", "0"])


def _nested(rng: random.Random, depth: int = 0) -> dict:
    data = {}
    for _ in range(rng.randrange(8)):
        section = _key(rng, list(SECTIONS) + [k for k in FIELDS if "." not in k])
        if section in SECTIONS and rng.random() < 0.8:
            names = [k.split(".", 1)[1] for k in FIELDS if k.startswith(section + ".")]
            data[section] = {_key(rng, names): _garbage(rng, depth + 1) for _ in range(rng.randrange(6))}
        else:
            data[section] = _garbage(rng, depth + 1)
    return data


def test_fuzzed_garbage_never_raises_and_every_problem_names_a_field():
    rng = random.Random(20240527)
    for _ in range(500):
        data = _nested(rng)
        config, problems = from_dict(data)
        before = repr(config)
        problems += validate(config)
        assert repr(config) == before  # validate never changes the config
        named = set(FIELDS) | set(SECTIONS) | {str(k) for k in data} | {
            f"{s}.{k}" for s, table in data.items() if isinstance(table, dict) for k in table}
        for problem in problems:
            assert isinstance(problem.field, str) and problem.field in named, problem
            assert isinstance(problem.message, str) and problem.message.strip() and len(problem.message) < 400
        # Whatever went in, what comes out has every field's own type: the trainer can rely on it.
        assert not [p for p in validate(config) if p.message.startswith("expected")]
        # The same garbage set straight into a Config, as code could, is named too.
        key = rng.choice(list(FIELDS))
        value = _garbage(rng)
        assert all(p.field in FIELDS for p in validate(with_value(config, key, value)))
