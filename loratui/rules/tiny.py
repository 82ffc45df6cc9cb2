"""The guide's special settings for tiny datasets (10–15 images, and the careful 5–9)."""

from __future__ import annotations

from loratui.rules import guide
from loratui.rules.engine import Context, Fix, fmt_lr, rule
from loratui.rules.targets import guide_unet_lr, safe_te_lr, safe_unet_lr, targets_of
from loratui.rules.tiny_plan import tiny_batch_choice, tiny_plan, uses_default_repeats
from loratui.rules.updates import effective_batch


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
    plan = tiny_plan(ctx)
    folders = _repeat_folders(ctx)
    if not folders:
        fix = Fix({"dataset.repeats": plan.repeats}, f"use {plan.repeats} repeats") \
            if plan is not None and plan.repeats != ctx.config.dataset.repeats else None
        return "warn", (f"With only {ctx.image_count} images, milk each one: {low}–{high} repeats instead of "
                        f"{repeats:g}."), fix
    # kohya folders (`5_name`) set their own repeats, which dataset.repeats does not change.
    loose = ctx.image_count - sum(count for _, count in folders.values())
    mixed = loose > 0 or len({r for r, _ in folders.values()}) > 1
    listed = ", ".join(f"{name}: {count} image{'s' if count != 1 else ''}" for name, (_, count) in folders.items())
    wanted = plan.repeats if plan is not None else 20
    renames = ", ".join(f"{name} → {_renamed(name, wanted)}" for name in folders)
    several = len(folders) > 1
    message = (f"With only {ctx.image_count} images, milk each one: {low}–{high} repeats instead of {repeats:.3g}"
               f"{' on average' if mixed else ''}. The repeats come from the folder name{'s' if several else ''} "
               f"({listed}), which dataset.repeats does not change. The fix sets {wanted} repeats for every image "
               f"and tells the trainer to ignore the folders' numbers (dataset.folder_name_repeats off; the folders "
               f"are not touched). To keep {'different repeats per folder' if several else 'the number in the name'}, "
               f"rename {'them' if several else 'it'} instead ({renames}).")
    if plan is None or plan.folder_name_repeats:
        return "warn", message, None
    return "warn", message, Fix({"dataset.folder_name_repeats": False, "dataset.repeats": plan.repeats},
                                f"use {plan.repeats} repeats for every image, whatever its folder's name")


def _repeat_folders(ctx: Context) -> dict[str, tuple[int, int]]:
    """kohya repeat folders holding images whose repeats come from their name: name → (repeats, images)."""
    folders: dict[str, tuple[int, int]] = {}
    for image in ctx.scan.images:
        if not uses_default_repeats(ctx, image):
            name = image.path.parent.name
            folders[name] = (image.repeats, folders.get(name, (0, 0))[1] + 1)
    return folders


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


@rule("tiny.batch", "training.batch_size", "Tiny datasets train with an effective batch of 1–2.")
def tiny_batch(ctx: Context):
    batch, effective = ctx.config.training.batch_size, effective_batch(ctx)
    if not ctx.is_tiny_dataset or effective <= guide.TINY_BATCH_MAX:
        return None
    what = f"a batch of {batch}" if effective == batch else \
        f"an effective batch of {effective} (batch × gradient accumulation × processes)"
    message = f"With {ctx.image_count} images {what} averages away what each image teaches; use 1–2."
    new_batch, accumulate = tiny_batch_choice(ctx)
    if effective_batch(ctx, new_batch, accumulate) > guide.TINY_BATCH_MAX:
        return "warn", message + " With this many processes even batch 1 is more: train on fewer GPUs.", None
    changes = {key: value for key, value, now in (("training.batch_size", new_batch, batch),
                                                   ("training.gradient_accumulation_steps", accumulate,
                                                    ctx.config.training.gradient_accumulation_steps)) if value != now}
    label = f"set the batch size to {new_batch}" if "training.gradient_accumulation_steps" not in changes else \
        f"use batch {new_batch} without gradient accumulation"
    return "warn", message, Fix(changes, label)


@rule("tiny.unet_lr", "optimizer.unet_lr", "Tiny datasets want a gentler UNet rate (3e-4).")
def tiny_unet_lr(ctx: Context):
    lr = ctx.config.optimizer.unet_lr
    if not ctx.is_tiny_dataset or ctx.config.optimizer.name in guide.LR_FREE_OPTIMIZERS:
        return None
    if lr <= guide_unet_lr(ctx):
        return None
    gentle = safe_unet_lr(ctx)  # the value every UNet-rate fix sets (no higher than a continued file's)
    return "warn", f"Few images overfit fast: a UNet rate of {fmt_lr(gentle)} is gentler than {fmt_lr(lr)}.", \
        Fix({"optimizer.unet_lr": gentle}, f"set the UNet rate to {fmt_lr(gentle)}")


@rule("tiny.text_encoder_lr", "optimizer.text_encoder_lr", "Tiny datasets want a gentler text-encoder rate (5e-5).")
def tiny_te_lr(ctx: Context):
    lr = ctx.config.optimizer.text_encoder_lr
    if not ctx.is_tiny_dataset or ctx.config.optimizer.name in guide.LR_FREE_OPTIMIZERS:
        return None
    if lr <= targets_of(ctx).text_encoder_lr:
        return None
    gentle = safe_te_lr(ctx)  # the proven rate, or less when the UNet's is low: never above it
    return "warn", (f"With few images the text encoder overfits first: {fmt_lr(gentle)} rather than "
                    f"{fmt_lr(lr)}."), Fix({"optimizer.text_encoder_lr": gentle}, f"set the text-encoder rate to {fmt_lr(gentle)}")
