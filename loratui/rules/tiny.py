"""The guide's special settings for tiny datasets (10–15 images, and the careful 5–9)."""

from __future__ import annotations

from loratui.rules import guide
from loratui.rules.engine import Context, Fix, fmt_lr, rule


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
    return "warn", (f"With only {ctx.image_count} images, milk each one: {low}–{high} repeats instead of "
                    f"{repeats:g}."), Fix({"dataset.repeats": 20}, "use 20 repeats")


@rule("tiny.epochs", "training.epochs", "Tiny datasets want 15–20 epochs.")
def tiny_epochs(ctx: Context):
    epochs = ctx.config.training.epochs
    low, high = guide.TINY_EPOCHS
    if not ctx.is_tiny_dataset or low <= epochs <= high:
        return None
    return "warn", f"A tiny dataset needs more passes: {low}–{high} epochs, not {epochs}.", \
        Fix({"training.epochs": low}, f"train {low} epochs")


@rule("tiny.batch", "training.batch_size", "Tiny datasets train with a batch of 1–2.")
def tiny_batch(ctx: Context):
    batch = ctx.config.training.batch_size
    if not ctx.is_tiny_dataset or batch <= guide.TINY_BATCH_MAX:
        return None
    return "warn", (f"With {ctx.image_count} images a batch of {batch} averages away what each image teaches; "
                    "use 1–2."), Fix({"training.batch_size": 2}, "set the batch size to 2")


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
