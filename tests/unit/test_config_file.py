"""Saving keeps the user's file as they wrote it: comments, order and spelling stay; only changed values move."""

from __future__ import annotations

import random
import tomllib

import pytest

from loratui.config_file import updated_text
from loratui.workspace import Workspace
from trainer.contract.config.schema import FIELDS, Config, from_dict, get_value, with_value

HAND_WRITTEN = '''\
# My Pony character run. Notes to self:
#   - 5e-4 overcooked at 20 epochs, keep it at 12
kind = "character"

[dataset]
path = "data/zkchar"   # the kohya folders live here
trigger_word = "zkchar"

[optimizer]
unet_lr = 5e-4         # the guide's rate
text_encoder_lr = 1e-4

[training]
epochs = 12
batch_size = 2   # VRAM is short on this box
mystery_option = 3     # a typo the app flagged; the user will fix it

[model]
base = "models/ponyDiffusionV6XL.safetensors"
'''


def _loaded(text: str) -> Config:
    config, _ = from_dict(tomllib.loads(text))
    return config


def test_an_unchanged_config_leaves_the_file_byte_for_byte():
    assert updated_text(HAND_WRITTEN, _loaded(HAND_WRITTEN)) == HAND_WRITTEN


def test_a_changed_value_is_the_only_line_that_changes():
    config = with_value(_loaded(HAND_WRITTEN), "training.epochs", 15)
    text = updated_text(HAND_WRITTEN, config)
    before, after = HAND_WRITTEN.splitlines(), text.splitlines()
    assert [(a, b) for a, b in zip(before, after) if a != b] == [("epochs = 12", "epochs = 15")]
    assert len(before) == len(after)


def test_a_changed_value_keeps_its_comment_and_new_settings_go_to_their_sections():
    config = _loaded(HAND_WRITTEN)
    config = with_value(config, "training.batch_size", 1)
    config = with_value(config, "training.gradient_checkpointing", True)  # absent from the file
    config = with_value(config, "network.dim", 16)  # a section the file lacks
    config = with_value(config, "kind", "style")
    text = updated_text(HAND_WRITTEN, config)
    assert "batch_size = 1   # VRAM is short on this box" in text
    assert "unet_lr = 5e-4         # the guide's rate" in text  # the user's spelling of an unchanged value
    assert "mystery_option = 3" in text and text.startswith("# My Pony character run.")
    parsed = tomllib.loads(text)
    assert parsed["training"]["gradient_checkpointing"] is True and parsed["network"]["dim"] == 16
    assert parsed["kind"] == "style"
    assert _loaded(text) == config


def test_dotted_keys_are_edited_where_they_are():
    text = 'model.base = "m"\ndataset.path = "d"\n\n[training]\nepochs = 3\n'
    config = with_value(with_value(_loaded(text), "model.arch", "sdxl"), "training.epochs", 4)
    saved = updated_text(text, config)
    assert saved.startswith('model.base = "m"\n')
    assert _loaded(saved) == config


def test_a_value_the_file_could_not_give_is_written_when_the_user_sets_it():
    text = '[training]\nbatch_size = "four"  # oops\n'
    config, problems = from_dict(tomllib.loads(text))
    assert [p.field for p in problems] == ["training.batch_size"]
    assert config.training.batch_size == Config().training.batch_size  # the default stands in
    saved = updated_text(text, config)
    assert tomllib.loads(saved)["training"]["batch_size"] == Config().training.batch_size
    assert "# oops" in saved


def _random_value(info, rng: random.Random):
    if info.type is bool:
        return rng.random() < 0.5
    if info.choices:
        return rng.choice(info.choices)
    if info.type is int:
        low = int(info.minimum if info.minimum is not None else 0)
        return rng.randint(low, int(info.maximum if info.maximum is not None else low + 100))
    if info.type is float:
        return rng.choice([0.0, 1e-4, 5e-4, 0.25, 3.0, round(rng.uniform(0, 2), 6)])
    if info.type is str:
        return rng.choice(["", "data", "models/a b.safetensors", 'quote " and \\ back', "ünïcode"])
    return info.default  # lists and the like: left as they are


@pytest.mark.parametrize("seed", range(300))
def test_any_edit_of_any_file_reloads_as_the_config_and_saving_again_changes_nothing(seed):
    rng = random.Random(seed)
    keys = [key for key in FIELDS if key != "config_version"]
    original = Config()
    for key in rng.sample(keys, rng.randint(0, len(keys))):
        original = with_value(original, key, _random_value(FIELDS[key], rng))
    from trainer.contract.config.toml_io import dumps

    text = dumps(original, comments=rng.random() < 0.5)
    edited = original
    for key in rng.sample(keys, rng.randint(1, 8)):
        edited = with_value(edited, key, _random_value(FIELDS[key], rng))
    saved = updated_text(text, edited)
    assert _loaded(saved) == edited
    assert updated_text(saved, edited) == saved
    # Every line of the original that still holds (the value there is unchanged) is kept as it was.
    changed = {key.rpartition(".")[2] for key in FIELDS if get_value(original, key) != get_value(edited, key)}
    kept = [line for line in text.splitlines() if line.split(" = ")[0] not in changed]
    assert [line for line in kept if line not in saved.splitlines()] == []


def test_the_workspace_saves_the_users_file_with_a_backup(tmp_path):
    path = tmp_path / "loratui.toml"
    path.write_text(HAND_WRITTEN)
    workspace = Workspace()
    workspace.load(path)
    workspace.set("training.epochs", 14)
    backup = workspace.save()
    assert backup.read_text() == HAND_WRITTEN
    assert path.read_text() == HAND_WRITTEN.replace("epochs = 12", "epochs = 14")
    # "Save as" carries the notes to the new file.
    workspace.set("training.epochs", 16)
    workspace.save(tmp_path / "copy.toml")
    assert (tmp_path / "copy.toml").read_text() == HAND_WRITTEN.replace("epochs = 12", "epochs = 16")


def test_new_sections_stand_apart_and_the_file_ends_with_a_newline():
    config = with_value(with_value(Config(), "dataset.path", "data"), "training.epochs", 15)
    text = updated_text('[dataset]\npath = "data"', with_value(config, "optimizer.unet_lr", 3e-4))
    assert text == '[dataset]\npath = "data"\n\n[optimizer]\nunet_lr = 0.0003\n\n[training]\nepochs = 15\n'


def test_saving_into_another_folder_keeps_naming_the_same_files(tmp_path):
    # `loratui check --fix --out elsewhere/x.toml` and save-as: relative paths would name other files there.
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "model").mkdir()
    (project / "loratui.toml").write_text('[model]\nbase = "model"\n\n[dataset]\npath = "data"\n'
                                          '\n[output]\ndir = "/abs/runs"\n')
    workspace = Workspace()
    workspace.load(project / "loratui.toml")
    before = workspace.resolved()
    (tmp_path / "elsewhere").mkdir()
    workspace.save(tmp_path / "elsewhere" / "copy.toml")
    moved = Workspace()
    moved.load(tmp_path / "elsewhere" / "copy.toml")
    assert moved.resolved() == before
    assert moved.config.output.dir == "/abs/runs"  # an absolute path is left as written
    # Saved again where it was, relative paths stay relative.
    workspace.load(project / "loratui.toml")
    workspace.set("training.epochs", 12)
    workspace.save()
    assert 'path = "data"' in (project / "loratui.toml").read_text()
