"""The guide's special settings for tiny datasets (10–15 images, and the careful 5–9)."""

from __future__ import annotations

from loratui.rules import guide
from loratui.rules.engine import Context, Fix, fmt_lr, rule
from loratui.rules.tiny_plan import tiny_plan, uses_default_repeats


def _effective_repeats(ctx: Context) -> float | None:
    if ctx.plan is None or not ctx.plan.images:
        return None
    return ctx.plan.samples_per_epoch / ctx.plan.images


@rule("tiny.repeats", "dataset.repeats", "Tiny datasets want 15–25 repeats.")
def tiny_repeats(ctx: Context):
    repeats = _effective_repeats(ctx)
    low, high = guide.TINY_REPEATS
    if not ctx.is_tiny_dataset or repeats is None or low <= repeats <= high:
        return None
    folders = _repeat_folders(ctx)
    if not folders:
        plan = tiny_plan(ctx)
        fix = Fix({"dataset.repeats": plan.repeats}, f"use {plan.repeats} repeats") \
            if plan is not None and plan.repeats != ctx.config.dataset.repeats else None
        return "warn", (f"With only {ctx.image_count} images, milk each one: {low}–{high} repeats instead of "
                        f"{repeats:g}."), fix
    # kohya folders (`5_name`) set their own repeats; dataset.repeats reaches only the images outside them.
    loose = ctx.image_count - sum(count for _, count in folders.values())
    mixed = loose > 0 or len({r for r, _ in folders.values()}) > 1
    listed = ", ".join(f"{name}: {count} image{'s' if count != 1 else ''}" for name, (_, count) in folders.items())
    renames = ", ".join(f"{name} → {_renamed(name, 20)}" for name in folders)
    them = "them" if len(folders) > 1 else "it"
    message = (f"With only {ctx.image_count} images, milk each one: {low}–{high} repeats instead of {repeats:.3g}"
               f"{' on average' if mixed else ''}. The repeats come from the folder name{'s' if len(folders) > 1 else ''}"
               f" ({listed}), which dataset.repeats does not change: rename {them} ({renames}) and check again.")
    target = _loose_repeats_for(ctx, folders, loose, 20) if loose else None
    if target is None:
        return "warn", message, None
    return "warn", message + f" Or, for the {loose} image{'s' if loose != 1 else ''} outside them:", \
        Fix({"dataset.repeats": target}, f"use {target} repeats for the images outside repeat folders")


def _repeat_folders(ctx: Context) -> dict[str, tuple[int, int]]:
    """kohya repeat folders holding images: name → (repeats, images)."""
    folders: dict[str, tuple[int, int]] = {}
    for image in ctx.scan.images:
        if not uses_default_repeats(ctx, image):
            name = image.path.parent.name
            folders[name] = (image.repeats, folders.get(name, (0, 0))[1] + 1)
    return folders


def _loose_repeats_for(ctx: Context, folders: dict[str, tuple[int, int]], loose: int, wanted: int) -> int | None:
    """The dataset.repeats for the ``loose`` images outside the folders that brings the average repeats
    nearest ``wanted`` (it is linear in them), when that lands in the guide's range."""
    low, high = guide.TINY_REPEATS
    fixed = sum(r * n for r, n in folders.values())
    repeats = max(1, round((wanted * ctx.image_count - fixed) / loose))
    average = (fixed + repeats * loose) / ctx.image_count
    return repeats if low <= average <= high and repeats != ctx.config.dataset.repeats else None


def _renamed(name: str, repeats: int) -> str:
    return f"{repeats}_{name.split('_', 1)[1]}"


@rule("tiny.epochs", "training.epochs", "Tiny datasets want 15–20 epochs (outside it when the step count cannot otherwise stay safe).")
def tiny_epochs(ctx: Context):
    epochs = ctx.config.training.epochs
    low, high = guide.TINY_EPOCHS
    if not ctx.is_tiny_dataset or low <= epochs <= high:
        return None
    plan = tiny_plan(ctx)
    if plan is not None and plan.epochs_outside and epochs == plan.epochs:
        if epochs < low:
            why = (f"{low} epochs would run past the {guide.STEPS_DANGER_ABOVE} steps where the LoRA overcooks. "
                   "Fewer repeats, or more images, make room for more epochs.")
        else:
            why = (f"{high} epochs would stay under the {guide.STEPS_DANGER_BELOW} steps a LoRA needs. "
                   "More repeats, or more images, bring the epochs back into range.")
        return "tip", (f"{epochs} epochs, outside the tiny-dataset {low}–{high}, because at these repeats and batch "
                       f"{plan.batch_size} {why}"), None
    fix = Fix({"training.epochs": plan.epochs}, f"train {plan.epochs} epochs") \
        if plan is not None and plan.epochs != epochs else None
    return "warn", f"A tiny dataset needs more passes: {low}–{high} epochs, not {epochs}.", fix


@rule("tiny.batch", "training.batch_size", "Tiny datasets train with a batch of 1–2.")
def tiny_batch(ctx: Context):
    batch = ctx.config.training.batch_size
    if not ctx.is_tiny_dataset or batch <= guide.TINY_BATCH_MAX:
        return None
    return "warn", (f"With {ctx.image_count} images a batch of {batch} averages away what each image teaches; "
                    "use 1–2."), Fix({"training.batch_size": guide.TINY_BATCH_MAX},
                                     f"set the batch size to {guide.TINY_BATCH_MAX}")


@rule("tiny.unet_lr", "optimizer.unet_lr", "Tiny datasets want a gentler UNet rate (3e-4).")
def tiny_unet_lr(ctx: Context):
    lr = ctx.config.optimizer.unet_lr
    if not ctx.is_tiny_dataset or ctx.config.optimizer.name in guide.LR_FREE_OPTIMIZERS or lr <= guide.GENTLE_UNET_LR:
        return None
    return "warn", (f"Few images overfit fast: a UNet rate of {fmt_lr(guide.GENTLE_UNET_LR)} is gentler than "
                    f"{fmt_lr(lr)}."), Fix({"optimizer.unet_lr": guide.GENTLE_UNET_LR},
                                          f"set the UNet rate to {fmt_lr(guide.GENTLE_UNET_LR)}")


@rule("tiny.text_encoder_lr", "optimizer.text_encoder_lr", "Tiny datasets want a gentler text-encoder rate (5e-5).")
def tiny_te_lr(ctx: Context):
    lr = ctx.config.optimizer.text_encoder_lr
    if not ctx.is_tiny_dataset or ctx.config.optimizer.name in guide.LR_FREE_OPTIMIZERS or lr <= guide.GENTLE_TE_LR:
        return None
    return "warn", (f"With few images the text encoder overfits first: {fmt_lr(guide.GENTLE_TE_LR)} rather than "
                    f"{fmt_lr(lr)}."), Fix({"optimizer.text_encoder_lr": guide.GENTLE_TE_LR},
                                          f"set the text-encoder rate to {fmt_lr(guide.GENTLE_TE_LR)}")
