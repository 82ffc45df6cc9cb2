"""The guide's quick-start checklist, ticked from the real state of the workspace (pure Python).

Each item knows how to decide whether it is done, why not when it is not, and which setting
fixes it, so the checklist screen can send the user straight there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from loratui.rules import guide
from loratui.rules.engine import Finding, fmt_lr
from loratui.rules.targets import Targets, is_tiny, targets_for
from loratui.workspace import Workspace

SECTIONS = ("Before you start", "Safe first run", "Feeling fancy")


@dataclass(frozen=True)
class Tick:
    """What one item's check found."""

    done: bool
    why: str = ""
    """Why it is not done, or a note on how it is (shown under the item either way)."""
    label: str | None = None
    """The item's label for this situation (the rates a tiny dataset wants), when it differs from the guide's."""
    target: str | None = None
    """The setting that fixes it, when that depends on the state (the scheduler or the optimizer)."""


@dataclass(frozen=True)
class Item:
    """One line of the checklist."""

    section: str
    label: str
    target: str
    """The setting that fixes it (a dotted config key), or ``advanced`` for the mode switch."""
    check: Callable[[Workspace, Targets], Tick]
    available: bool = True
    """False for what a later version brings; shown, never ticked."""


@dataclass(frozen=True)
class ItemState:
    item: Item
    done: bool
    why: str
    """Why it is not done yet, or a note on how it is."""
    label: str
    target: str


def situation(ws: Workspace) -> Targets:
    """The guide's targets for the workspace: its kind, dataset size and architecture, as the rules see them."""
    assessment = ws.assessment
    scan = assessment.facts.scan if assessment else None
    return targets_for(ws.config.kind, assessment.arch if assessment else None,
                       is_tiny(len(scan.images) if scan is not None else None))


def _finding(ws: Workspace, rule: str) -> Finding | None:
    findings = ws.assessment.findings if ws.assessment else []
    return next((f for f in findings if f.rule == rule), None)


def _in_words(t: Targets) -> str:
    return " (tiny dataset)" if t.tiny else f" ({t.kind})" if t.kind != "character" else ""


def _images(ws: Workspace, t: Targets) -> Tick:
    assessment = ws.assessment
    if assessment is None or assessment.facts.scan is None:
        return Tick(False, "No dataset read yet: set the dataset folder.")
    scan = assessment.facts.scan
    count = len(scan.images)
    low = guide.CHARACTER_SWEET_SPOT[0] if t.kind == "character" else guide.DATASET_SIZE[t.kind][0]
    label = f"Dataset has {low}+ good images (10–15 work with the tiny settings)"
    unread = f" ({len(scan.skipped)} more could not be read)" if scan.skipped else ""
    # Done exactly when the dataset-size advice has no warning or danger: one judgement, two places.
    finding = _finding(ws, "dataset.size")
    if finding is not None and finding.severity != "tip":
        return Tick(False, f"{count} usable images{unread}. {finding.message}", label)
    note = f"{count} usable images{unread}." if unread else ""
    return Tick(True, f"{note} {finding.message}".strip() if finding else note, label)


def _captions(ws: Workspace, t: Targets) -> Tick:
    assessment = ws.assessment
    stats = assessment.facts.captions if assessment else None
    if stats is None:
        return Tick(False, "No captions read yet.")
    if not ws.config.dataset.trigger_word.strip():
        return Tick(False, "No trigger word is set.")
    missing = len(stats.missing) + len(stats.empty)
    if missing:
        return Tick(False, f"{missing} image{'s have' if missing != 1 else ' has'} no caption.")
    if stats.without_trigger:
        # The trainer puts the trigger word first in every caption that lacks it: what it trains on has it.
        return Tick(True, f"{len(stats.without_trigger)} caption files lack the trigger word; training puts it "
                          "first in them.")
    return Tick(True)


def _kind(ws: Workspace, t: Targets) -> Tick:
    if "kind" in ws.explicit:
        return Tick(True)
    return Tick(False, "The config does not say whether this is a character, a style or a concept.")


def _dim_alpha(ws: Workspace, t: Targets) -> Tick:
    network = ws.config.network
    locon = "" if t.network_type == "lora" else "LoCon, "
    label = f"{t.kind.capitalize()} defaults: {locon}{t.dim} dim / {t.alpha:g} alpha"
    if locon and network.type != t.network_type:
        return Tick(False, f"The network is {network.type}; the guide's {t.kind} choice is LoCon.", label,
                    "network.type")
    done = (network.dim, network.alpha) == (t.dim, t.alpha)
    return Tick(done, "" if done else f"The network is {network.dim} dim / {network.alpha:g} alpha.", label)


def _rates(ws: Workspace, t: Targets) -> Tick:
    label = f"UNet rate {fmt_lr(t.unet_lr)}, text encoder {fmt_lr(t.text_encoder_lr)}{_in_words(t)}"
    optimizer = ws.config.optimizer
    if optimizer.name in guide.LR_FREE_OPTIMIZERS:
        return Tick(False, f"{optimizer.name} finds its own rates; the safe first run sets them with AdamW8bit.",
                    label, "optimizer.name")
    unet, te = optimizer.unet_lr, optimizer.text_encoder_lr
    if (unet, te) == (t.unet_lr, t.text_encoder_lr):
        return Tick(True, label=label)
    target = "optimizer.unet_lr" if unet != t.unet_lr else "optimizer.text_encoder_lr"
    return Tick(False, f"The rates are {fmt_lr(unet)} / {fmt_lr(te)}.", label, target)


SAFE_SCHEDULERS = ("cosine", "cosine_with_restarts")
SAFE_OPTIMIZERS = ("adamw8bit", "came")
"""The guide's proven optimizer is "AdamW8bit (safe) or CAME (fancy but reliable)"."""


def _schedule(ws: Workspace, t: Targets) -> Tick:
    scheduler, optimizer = ws.config.scheduler.name, ws.config.optimizer.name
    # REX is the fancy list's schedule and pairs with CAME: trying it does not undo the safe first run.
    scheduler_ok = scheduler in SAFE_SCHEDULERS or (scheduler == "rex" and optimizer == "came")
    optimizer_ok = optimizer in SAFE_OPTIMIZERS
    if scheduler_ok and optimizer_ok:
        return Tick(True)
    if not scheduler_ok:
        return Tick(False, f"The schedule is {scheduler}; the guide's is cosine (with 3 restarts)"
                           f"{'' if optimizer_ok else f', and the optimizer is {optimizer}, not AdamW8bit'}.",
                    target="scheduler.name")
    return Tick(False, f"The schedule is fine; the optimizer is {optimizer}, not AdamW8bit (or CAME).",
                target="optimizer.name")


def _steps(ws: Workspace, t: Targets) -> Tick:
    low, high = t.steps_aim
    label = f"Steps calculated: {low}–{high}{' (tiny dataset)' if t.tiny else ''}"
    plan = ws.assessment.plan if ws.assessment else None
    if plan is None:
        return Tick(False, "The step count is not known until the dataset is read.", label)
    # The guide's steps are updates, as the advice counts them: batches over the gradient accumulation.
    steps = plan.guide_steps  # updates of the user's own images, as the advice counts them
    if low <= steps <= high:
        return Tick(True, label=label)
    finding = _finding(ws, "steps.range")
    if finding is None or (finding.severity == "tip" and finding.fix is None):
        # Outside the aim, but no change within the guide's ranges gets closer (kohya folders fix the
        # repeats, say): the advice has nothing better, so neither does the checklist.
        return Tick(True, f"{steps} steps: as near the aim as these images allow.", label)
    # With regularization images the finding already says both counts (own images and the whole run).
    said = "" if plan.own_steps is not None else f"The run has {steps} steps. "
    return Tick(False, f"{said}{finding.message}", label)


def _advanced(ws: Workspace, t: Targets) -> Tick:
    return Tick(True, "The settings screen shows every setting; Enter turns it off again.") if ws.advanced else \
        Tick(False, "Basic mode shows the proven settings only; Enter turns advanced mode on.")


def _dora(ws: Workspace, t: Targets) -> Tick:
    if ws.config.network.dora:
        return Tick(True)
    return Tick(False, "DoRA is off (network.dora); it works with the lora, locon, loha and lokr types.")


def _came(ws: Workspace, t: Targets) -> Tick:
    if ws.config.optimizer.name == "came":
        return Tick(True)
    return Tick(False, "CAME needs less memory than AdamW and trains reliably; it runs at about 2e-4.")


def _rex(ws: Workspace, t: Targets) -> Tick:
    if ws.config.scheduler.name == "rex":
        return Tick(True)
    return Tick(False, "REX drops the rate quickly at first and slowly at the end; it pairs with CAME.")


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
    """Every item with whether it is done and why, for the workspace's situation (``loratui.rules.targets``)."""
    targets = situation(ws)
    states = []
    for item in ITEMS:
        tick = item.check(ws, targets)
        states.append(ItemState(item, tick.done, tick.why, tick.label or item.label, tick.target or item.target))
    return states
