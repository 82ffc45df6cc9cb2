"""The demo workspace: a tiny SD1.5 model, a small captioned dataset and a config, all offline.

``loratui demo`` builds it (once; an existing workspace is reused, never overwritten) so a
newcomer can watch a real training run in a minute on any machine, GPU or not. The dataset is
a made-up mascot, "zkmascot", drawn with Pillow in a dozen poses and backgrounds; two captions
lack the trigger word on purpose, because the trainer adds it.
"""

from __future__ import annotations

import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from trainer.contract.config.schema import (Config, DatasetConfig, ModelConfig, OptimizerConfig, OutputConfig,
                                            TrainingConfig)
from trainer.contract.config.toml_io import save_config
from trainer.contract.fileio import atomic_write, atomic_write_text

TRIGGER = "zkmascot"
"""The demo's trigger word: made-up, so the base model has no prior meaning for it."""

BACKGROUNDS = [("blue", (70, 110, 200)), ("green", (80, 160, 90)), ("white", (240, 240, 240)),
               ("pink", (230, 150, 180))]
POSES = ["standing", "jumping", "sitting"]
SIZES = [(128, 128), (160, 128), (128, 160)]


@dataclass(frozen=True)
class DemoWorkspace:
    """Where the demo's pieces live."""

    root: Path

    @property
    def model(self) -> Path:
        return self.root / "model"

    @property
    def dataset(self) -> Path:
        return self.root / "dataset"

    @property
    def config(self) -> Path:
        return self.root / "loratui.toml"


def draw_mascot(size: tuple[int, int], background: tuple[int, int, int], pose: str, seed: int) -> Image.Image:
    """One picture of the mascot: a round yellow creature with big eyes and a red scarf."""
    rng = random.Random(seed)
    width, height = size
    image = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(image)
    radius = min(width, height) // 4 + rng.randint(-4, 4)
    cx = width // 2 + rng.randint(-width // 8, width // 8)
    cy = height // 2 + {"standing": 0, "jumping": -height // 8, "sitting": height // 8}[pose]
    draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(250, 210, 60), outline=(90, 60, 20), width=2)
    for side in (-1, 1):
        ex = cx + side * radius // 3
        draw.ellipse((ex - 6, cy - radius // 3 - 6, ex + 6, cy - radius // 3 + 6), fill="white", outline="black")
        draw.ellipse((ex - 2, cy - radius // 3 - 2, ex + 2, cy - radius // 3 + 2), fill="black")
    draw.rectangle((cx - radius, cy + radius // 3, cx + radius, cy + radius // 3 + 8), fill=(200, 30, 40))
    if pose == "sitting":
        draw.rectangle((0, cy + radius, width, height), fill=(120, 90, 60))
    return image


DEMO_IMAGES = 20
"""Images in the demo's dataset: the guide's 20 for a character, so the demo opens on its proven settings
(10 repeats, 10 epochs, batch 4: 500 steps) rather than on the tiny-dataset advice."""


def write_dataset(folder: Path, count: int = 12) -> list[Path]:
    """Draw ``count`` captioned images into ``folder``; return the image paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        name, rgb = BACKGROUNDS[index % len(BACKGROUNDS)]
        pose = POSES[index % len(POSES)]
        image = draw_mascot(SIZES[index % len(SIZES)], rgb, pose, seed=index)
        path = folder / f"mascot_{index:02d}.png"
        atomic_write(path, lambda tmp, image=image: image.save(tmp, format="PNG"))
        tags = ["yellow creature", "round body", "big eyes", "red scarf", f"{name} background", pose]
        # Two captions without the trigger word show the trainer putting it first.
        caption = ", ".join(tags if index in (3, 8) else [TRIGGER] + tags)
        atomic_write_text(path.with_suffix(".txt"), caption + "\n")
        paths.append(path)
    return paths


def demo_config() -> Config:
    """A config sized for the tiny model: small images and a few hundred quick steps."""
    return Config(
        kind="character",
        model=ModelConfig(base="model", arch="auto"),
        dataset=DatasetConfig(path="dataset", trigger_word=TRIGGER, repeats=10, resolution=128),
        optimizer=OptimizerConfig(name="adamw", unet_lr=5e-4, text_encoder_lr=1e-4),
        training=TrainingConfig(epochs=10, batch_size=4, seed=42),
        output=OutputConfig(name="zkmascot", dir="runs", save_every_n_epochs=2),
    )


def build_model(folder: Path) -> None:
    """Build the tiny SD1.5 model in a child process, so this process never imports torch."""
    result = subprocess.run([sys.executable, "-m", "trainer.tools.tiny", str(folder), "--arch", "sd15"],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"building the demo model failed:\n{result.stderr.strip()[-2000:]}")


def ensure_demo_workspace(root: Path | str) -> DemoWorkspace:
    """Create whatever part of the demo workspace is missing and return it.

    Existing files are kept as they are: a user may have edited the config or captions.
    """
    workspace = DemoWorkspace(Path(root).resolve())
    workspace.root.mkdir(parents=True, exist_ok=True)
    if not (workspace.model / "model_index.json").is_file():
        build_model(workspace.model)
    if not workspace.dataset.is_dir() or not any(workspace.dataset.glob("*.png")):
        write_dataset(workspace.dataset, DEMO_IMAGES)
    if not workspace.config.exists():
        save_config(demo_config(), workspace.config)
    return workspace
