"""The guide's quick-start checklist, ticked from the real state of the workspace (pure Python).

Each item knows how to decide whether it is done, why not when it is not, and which setting
fixes it, so the checklist screen can send the user straight there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from loratui.rules import guide
from loratui.workspace import Workspace

SECTIONS = ("Before you start", "Safe first run", "Feeling fancy")


@dataclass(frozen=True)
class Item:
    """One line of the checklist."""

    section: str
    label: str
    target: str
    """The setting that fixes it (a dotted config key), or ``advanced`` for the mode switch."""
    check: Callable[[Workspace], tuple[bool, str]]
    available: bool = True
    """False for what a later version brings; shown, never ticked."""


@dataclass(frozen=True)
class ItemState:
    item: Item
    done: bool
    why: str
    """Why it is not done yet (empty when it is)."""


def _images(ws: Workspace) -> tuple[bool, str]:
    assessment = ws.assessment
    if assessment is None or assessment.facts.scan is None:
        return False, "No dataset read yet: set the dataset folder."
    count = len(assessment.facts.scan.images)
    if count >= 20:
        return True, ""
    skipped = len(assessment.facts.scan.skipped)
    extra = f" ({skipped} more could not be read)" if skipped else ""
    return False, f"{count} usable images{extra}; the guide wants 20 or more (10–15 work with the tiny preset)."


def _captions(ws: Workspace) -> tuple[bool, str]:
    assessment = ws.assessment
    stats = assessment.facts.captions if assessment else None
    if stats is None:
        return False, "No captions read yet."
    if not ws.config.dataset.trigger_word.strip():
        return False, "No trigger word is set."
    missing = len(stats.missing) + len(stats.empty)
    if missing:
        return False, f"{missing} images have no caption."
    if stats.without_trigger:
        return False, f"{len(stats.without_trigger)} caption files lack the trigger word (training adds it)."
    return True, ""


def _kind(ws: Workspace) -> tuple[bool, str]:
    if "kind" in ws.explicit:
        return True, ""
    return False, "The config does not say whether this is a character, a style or a concept."


def _dim_alpha(ws: Workspace) -> tuple[bool, str]:
    dim, alpha = ws.config.network.dim, ws.config.network.alpha
    if (dim, alpha) == guide.PROVEN_DIM_ALPHA:
        return True, ""
    return False, f"The network is {dim} dim / {alpha:g} alpha."


def _rates(ws: Workspace) -> tuple[bool, str]:
    unet, te = ws.config.optimizer.unet_lr, ws.config.optimizer.text_encoder_lr
    if (unet, te) == (guide.PROVEN_UNET_LR, guide.PROVEN_TE_LR):
        return True, ""
    return False, f"The rates are {unet:g} / {te:g}."


def _schedule(ws: Workspace) -> tuple[bool, str]:
    scheduler, optimizer = ws.config.scheduler.name, ws.config.optimizer.name
    if scheduler in ("cosine", "cosine_with_restarts") and optimizer == "adamw8bit":
        return True, ""
    return False, f"The schedule is {scheduler} and the optimizer {optimizer}."


def _steps(ws: Workspace) -> tuple[bool, str]:
    plan = ws.assessment.plan if ws.assessment else None
    if plan is None:
        return False, "The step count is not known until the dataset is read."
    low, high = guide.STEPS_AIM
    if low <= plan.total_steps <= high:
        return True, ""
    return False, f"The run has {plan.total_steps} steps."


def _advanced(ws: Workspace) -> tuple[bool, str]:
    return (True, "") if ws.advanced else (False, "Basic mode shows the proven settings only.")


def _dora(ws: Workspace) -> tuple[bool, str]:
    if ws.config.network.dora:
        return True, ""
    return False, "DoRA is off (network.dora); it works with the lora, locon, loha and lokr types."


def _came(ws: Workspace) -> tuple[bool, str]:
    if ws.config.optimizer.name == "came":
        return True, ""
    return False, "CAME needs less memory than AdamW and trains reliably; it runs at about 2e-4."


def _rex(ws: Workspace) -> tuple[bool, str]:
    if ws.config.scheduler.name == "rex":
        return True, ""
    return False, "REX drops the rate quickly at first and slowly at the end; it pairs with CAME."


def _later(what: str) -> Callable[[Workspace], tuple[bool, str]]:
    return lambda ws: (False, f"{what} comes with a later version of loratui.")


ITEMS: tuple[Item, ...] = (
    Item(SECTIONS[0], "Dataset has 20+ good images", "dataset.path", _images),
    Item(SECTIONS[0], "All images tagged, with the trigger word", "dataset.trigger_word", _captions),
    Item(SECTIONS[0], "You know what you're training (character, style or concept)", "kind", _kind),
    Item(SECTIONS[1], "Character defaults: 8 dim / 4 alpha", "network.dim", _dim_alpha),
    Item(SECTIONS[1], "UNet rate 5e-4, text encoder 1e-4", "optimizer.unet_lr", _rates),
    Item(SECTIONS[1], "Cosine schedule, AdamW8bit optimizer", "scheduler.name", _schedule),
    Item(SECTIONS[1], "Steps calculated: 500–750", "training.epochs", _steps),
    Item(SECTIONS[2], "Advanced mode on", "advanced", _advanced),
    Item(SECTIONS[2], "Try the CAME optimizer", "optimizer.name", _came),
    Item(SECTIONS[2], "Experiment with DoRA", "network.dora", _dora),
    Item(SECTIONS[2], "Use the REX schedule", "scheduler.name", _rex),
)
"""The guide's quick-start checklist, in its order."""


def checklist(ws: Workspace) -> list[ItemState]:
    """Every item with whether it is done and, if not, why."""
    return [ItemState(item, *item.check(ws)) for item in ITEMS]
