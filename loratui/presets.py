"""Presets: the guide's proven starting points, as the config values they set.

Picking one fills the settings form; the form then marks every value that differs from it, so
a user always sees how far they have wandered from the safe path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loratui.rules.targets import targets_for
from trainer.contract.config.schema import Config, get_value, with_value


@dataclass(frozen=True)
class Preset:
    """A named set of config values."""

    id: str
    title: str
    description: str
    values: dict[str, Any]

    def apply(self, config: Config) -> Config:
        """The config with this preset's values (everything else, paths included, kept)."""
        for key, value in self.values.items():
            config = with_value(config, key, value)
        return config

    def differences(self, config: Config) -> dict[str, Any]:
        """Field → the preset's value, for every field where the config differs from it."""
        return {key: value for key, value in self.values.items() if get_value(config, key) != value}


# Each preset is the guide's targets for its situation (loratui.rules.targets), so picking one lands on
# exactly the values the advice and the checklist ask for.
PRESETS: tuple[Preset, ...] = (
    Preset("character-sd15", "Character, SD1.5",
           "The guide's proven character run: 8/4, 5e-4 / 1e-4, cosine with 3 restarts, AdamW8bit, batch 4, 768 px.",
           targets_for("character", "sd15").values()),
    Preset("character-sdxl", "Character, SDXL",
           "The same proven run at SDXL's 1024 px (Pony and Illustrious included).",
           targets_for("character", "sdxl").values()),
    Preset("style", "Style",
           "LoCon, gentler rates (3e-4 / 5e-5) and more epochs over a larger, consistent dataset.",
           targets_for("style").values()),
    Preset("concept", "Concept",
           "The proven settings with fewer repeats for the 20–100 images a concept usually has.",
           targets_for("concept").values()),
    Preset("tiny", "Tiny dataset (10–15 images)",
           "Milk every image: 15 repeats, 15 epochs, batch 2, gentle rates (3e-4 / 5e-5).",
           targets_for("character", tiny=True).values()),
)
"""Every preset, in the order the form lists them."""

BY_ID = {preset.id: preset for preset in PRESETS}


def closest_preset(config: Config) -> Preset:
    """The preset a config differs least from (a loaded file names none)."""
    return min(PRESETS, key=lambda preset: len(preset.differences(config)))
