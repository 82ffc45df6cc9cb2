"""One set of targets behind the rules, their fixes, the presets and the checklist: over random
configs no two findings offer different values for one setting, and in every situation a config
set to the guide's targets is left alone by the fixes and ticks the checklist's safe first run."""

from __future__ import annotations

import itertools
import random

import pytest

from loratui.assess import Assessment, DatasetFacts
from loratui.checklist import SECTIONS, checklist
from loratui.presets import PRESETS
from loratui.rules import evaluate
from loratui.rules.fix_all import apply_every_fix
from loratui.rules.targets import targets_for
from loratui.workspace import Workspace
from tests.unit.test_fix_all import ROOT, Dataset, context_for, random_case
from trainer.contract.config.schema import Config, get_value, validate, with_value

DATASET_DEPENDENT = ("dataset.repeats", "training.epochs")
"""Targets that are starting points: the step count's fix moves them to fit the dataset."""


def valid_cases(seed: int, count: int):
    """``count`` random (dataset, config) pairs with possible values (impossible ones never reach advice)."""
    rng = random.Random(seed)
    checked = 0
    while checked < count:
        dataset, config = random_case(rng)
        if not validate(config):
            checked += 1
            yield dataset, config


@pytest.mark.parametrize("seed", range(3))
def test_no_two_findings_offer_different_values_for_one_setting(seed):
    for dataset, config in valid_cases(1000 + seed, 500):
        offered: dict[str, tuple[object, str]] = {}
        for finding in evaluate(context_for(dataset, config)):
            for key, value in (finding.fix.changes if finding.fix else {}).items():
                earlier = offered.setdefault(key, (value, finding.rule))
                assert earlier[0] == value, (dataset, key, earlier, (value, finding.rule))


def _config(values: dict) -> Config:
    config = with_value(with_value(Config(), "model.base", "org/model"), "dataset.path", str(ROOT))
    config = with_value(config, "dataset.trigger_word", "zkchar")
    for key, value in values.items():
        config = with_value(config, key, value)
    return config


def _workspace(dataset: Dataset, config: Config) -> Workspace:
    """A workspace whose assessment is what the app's would be for this dataset and config."""
    context = context_for(dataset, config)
    facts = DatasetFacts((), context.scan, context.captions)
    assessment = Assessment(config, [], evaluate(context), dataset.arch, context.plan, facts, context.estimates)
    return Workspace(config=config, explicit={"kind"}, assessment=assessment)


SITUATIONS = list(itertools.product(("character", "style", "concept"), (6, 10, 12, 15, 25, 60, 120),
                                    (None, "20_subject", "3_subject"), ("sd15", "sdxl")))


@pytest.mark.parametrize("kind,images,folder,arch", SITUATIONS)
def test_a_config_set_to_its_targets_is_left_alone_and_ticks_the_safe_first_run(kind, images, folder, arch):
    dataset = Dataset(images, (1024, 1024), folder, 0, 0, arch, None)
    targets = targets_for(kind, arch, tiny=images < 16)
    config = _config(targets.values())
    for finding in evaluate(context_for(dataset, config)):
        for key, value in (finding.fix.changes if finding.fix else {}).items():
            if key in targets.values() and key not in DATASET_DEPENDENT:
                assert value == targets.values()[key], (finding.rule, key, value)
    fixed = apply_every_fix(config, lambda c: evaluate(context_for(dataset, c))).config
    steps = next((f for f in evaluate(context_for(dataset, fixed)) if f.rule == "steps.range" and f.fix), None)
    if steps is not None:  # the step count's tip is the user's call; the checklist asks for the aim itself
        fixed = steps.fix.apply(fixed)
    moved = {key: get_value(fixed, key) for key, value in targets.values().items()
             if key not in DATASET_DEPENDENT and get_value(fixed, key) != value}
    assert moved == {}
    states = checklist(_workspace(dataset, fixed))
    safe = [s for s in states if s.item.section == SECTIONS[1]]
    assert [(s.label, s.why) for s in safe if not s.done] == []
    # The checklist names this situation's values, not the character run's.
    rates = next(s for s in safe if s.label.startswith("UNet rate"))
    assert f"{targets.unet_lr:.0e}".replace("e-0", "e-") in rates.label


def test_each_preset_is_its_situations_targets():
    by_id = {preset.id: preset.values for preset in PRESETS}
    assert by_id["character-sd15"] == targets_for("character", "sd15").values()
    assert by_id["character-sdxl"] == targets_for("character", "sdxl").values()
    assert by_id["style"] == targets_for("style").values()
    assert by_id["tiny"] == targets_for("character", tiny=True).values()
    # The descriptions people choose by name the same numbers the values set.
    for preset in PRESETS:
        rates = f"{preset.values['optimizer.unet_lr']:.0e} / {preset.values['optimizer.text_encoder_lr']:.0e}"
        if "/" in preset.description and "e-" in preset.description:
            assert rates.replace("e-0", "e-") in preset.description, preset.id


def test_the_tiny_dataset_checklist_asks_for_what_the_tiny_fixes_set():
    dataset = Dataset(12, (1024, 1024), None, 0, 0, "sdxl", None)
    config = _config(targets_for("character", "sdxl").values())  # the character run on a tiny dataset
    states = {s.item.label: s for s in checklist(_workspace(dataset, config))}
    assert not states["UNet rate 5e-4, text encoder 1e-4"].done
    assert states["UNet rate 5e-4, text encoder 1e-4"].label == "UNet rate 3e-4, text encoder 5e-5 (tiny dataset)"
    fixed = apply_every_fix(config, lambda c: evaluate(context_for(dataset, c))).config
    states = {s.item.label: s for s in checklist(_workspace(dataset, fixed))}
    assert states["UNet rate 5e-4, text encoder 1e-4"].done
    assert states["Steps calculated: 500–750"].label == "Steps calculated: 800–1200 (tiny dataset)"
    assert states["Steps calculated: 500–750"].done, states["Steps calculated: 500–750"].why
    # A 12-image dataset is doable: the dataset item ticks, and says it is tiny.
    assert states["Dataset has 20+ good images"].done and "tiny" in states["Dataset has 20+ good images"].why


def test_the_schedule_item_names_the_wrong_half_and_opens_its_field():
    dataset = Dataset(25, (1024, 1024), None, 0, 0, "sdxl", None)
    base = targets_for("character", "sdxl").values()
    wrong_optimizer = {s.item.label: s for s in checklist(_workspace(dataset, _config({**base, "optimizer.name": "adamw"})))}
    item = wrong_optimizer["Cosine schedule, AdamW8bit optimizer"]
    assert not item.done and "optimizer is adamw" in item.why and item.target == "optimizer.name"
    wrong_schedule = {s.item.label: s for s in checklist(_workspace(dataset, _config({**base, "scheduler.name": "linear"})))}
    item = wrong_schedule["Cosine schedule, AdamW8bit optimizer"]
    assert not item.done and "schedule is linear" in item.why and item.target == "scheduler.name"
    fancy = {s.item.label: s for s in checklist(_workspace(dataset, _config({**base, "optimizer.name": "came",
                                                                          "scheduler.name": "rex"})))}
    # Trying the fancy list's CAME and REX does not undo the safe first run.
    assert fancy["Cosine schedule, AdamW8bit optimizer"].done and fancy["Use the REX schedule"].done


REASONS = {
    "dataset.size": "floor is 5",
    "captions.missing": "Tag them",
    "memory.fit": "Even with every memory saver",
    "steps.range": "No repeats and epochs within the guide's ranges get there",
    "network.boft_rank": "No rank splits every layer",
}
"""Dangers that can come without a fix, and the words that say why none exists."""


def test_every_danger_has_a_fix_or_says_why_none_exists():
    for dataset, config in valid_cases(7, 600):
        for finding in evaluate(context_for(dataset, config)):
            if finding.severity == "danger" and finding.fix is None:
                assert finding.rule in REASONS, finding
                assert REASONS[finding.rule] in finding.message, finding
