"""Rules about the length of training: total steps, epochs against the learning rate, batch size."""

from __future__ import annotations

from loratui.rules import guide
from loratui.rules.engine import Context, Fix, fmt_lr, rule
from loratui.rules.tiny_plan import epoch_batches, plan_changes, tiny_plan, uses_default_repeats


def steps_fix(ctx: Context, low: int, high: int) -> Fix | None:
    """The smallest change that brings the exact step count into [low, high].

    Tries epochs alone, then repeats alone, then both, within the tiny-dataset ranges when those
    apply (so a fix never breaks another rule), and picks the candidate nearest the middle.
    """
    if ctx.plan is None or ctx.scan is None or not ctx.scan.images:
        return None
    plan = tiny_plan(ctx)
    if plan is not None:
        # A tiny dataset: the same plan the tiny-dataset rules steer to, so the fixes agree.
        changes = plan_changes(ctx, plan)
        if not changes:
            return None
        words = {"dataset.repeats": "repeats", "training.epochs": "epochs", "training.batch_size": "batch"}
        said = " and ".join(f"{words[k]} {v}" if k == "training.batch_size" else f"{v} {words[k]}"
                            for k, v in changes.items())
        return Fix(changes, f"use {said} ({plan.steps} steps)")
    config, target = ctx.config, (low + high) // 2
    tiny = ctx.is_tiny_dataset
    epoch_range = range(guide.TINY_EPOCHS[0], guide.TINY_EPOCHS[1] + 1) if tiny else range(1, 201)
    repeat_range = range(guide.TINY_REPEATS[0], guide.TINY_REPEATS[1] + 1) if tiny else range(1, 101)
    has_defaults = any(uses_default_repeats(ctx, i) for i in ctx.scan.images)
    now_r, now_e = config.dataset.repeats, config.training.epochs
    batches = epoch_batches(ctx, config.training.batch_size)
    per_epoch = {r: batches(r) for r in ({now_r} | (set(repeat_range) if has_defaults else set()))}
    searches = [[(now_r, e) for e in epoch_range]]
    if has_defaults:
        searches += [[(r, now_e) for r in repeat_range], [(r, e) for r in repeat_range for e in epoch_range]]
    # Within the aim if any change reaches it; else within the guide's safe range; else at least out of danger
    # (kohya folders can fix the repeats so that even one epoch overshoots the aim).
    for lowest, highest in ((low, high), guide.STEPS_FINE, (guide.STEPS_DANGER_BELOW, guide.STEPS_DANGER_ABOVE)):
        for candidates in searches:
            scored = [(abs(steps - target), r, e, steps) for r, e in candidates
                      if lowest <= (steps := per_epoch[r] * e) <= highest and (r, e) != (now_r, now_e)]
            if scored:
                _, repeats, epochs, steps = min(scored)
                changes, words = {}, []
                if repeats != now_r:
                    changes["dataset.repeats"], words = repeats, words + [f"{repeats} repeats"]
                if epochs != now_e:
                    changes["training.epochs"], words = epochs, words + [f"{epochs} epochs"]
                return Fix(changes, f"use {' and '.join(words)} ({steps} steps)")
    return None


@rule("steps.range", "training.epochs", "Total steps against the guide's targets (tiny datasets have their own).")
def steps_range(ctx: Context):
    plan = ctx.plan
    if plan is None:
        return None
    steps = plan.total_steps
    tiny = ctx.is_tiny_dataset
    aim = guide.TINY_STEPS_AIM if tiny else guide.STEPS_AIM
    if steps < guide.STEPS_DANGER_BELOW:
        return "danger", (f"{steps} steps is too few: the LoRA will come out undercooked. Aim for "
                          f"{aim[0]}–{aim[1]}."), steps_fix(ctx, *aim)
    if steps > guide.STEPS_DANGER_ABOVE:
        return "danger", (f"{steps} steps is too many: expect an overcooked LoRA that copies your images. Aim "
                          f"for {aim[0]}–{aim[1]}."), steps_fix(ctx, *aim)
    if tiny:
        if steps < aim[0]:
            return "warn", (f"{steps} steps is short for a tiny dataset, which needs more passes: aim for "
                            f"{aim[0]}–{aim[1]}."), steps_fix(ctx, *aim)
        if steps > aim[1]:
            return "tip", (f"{steps} steps is above the {aim[0]}–{aim[1]} the guide aims for with a tiny dataset "
                           f"(its own 10-image example runs {guide.TINY_STEPS_EXAMPLE}); fine, watch for "
                           "overfitting."), steps_fix(ctx, *aim)
        return None
    fine = guide.STEPS_FINE
    if not fine[0] <= steps <= fine[1]:
        return "warn", (f"{steps} steps is outside the safe {fine[0]}–{fine[1]}; aim for "
                        f"{aim[0]}–{aim[1]}."), steps_fix(ctx, *aim)
    if not aim[0] <= steps <= aim[1]:
        return "tip", f"{steps} steps is fine; the guide aims for {aim[0]}–{aim[1]}.", steps_fix(ctx, *aim)
    return None


@rule("epochs.high_lr", "training.epochs", "Many epochs at a high learning rate.")
def many_epochs_high_lr(ctx: Context):
    epochs, lr = ctx.config.training.epochs, ctx.config.optimizer.unet_lr
    if ctx.config.optimizer.name in guide.LR_FREE_OPTIMIZERS:
        return None
    if epochs > guide.MANY_EPOCHS and lr > guide.GENTLE_UNET_LR:
        return "warn", (f"{epochs} epochs at a UNet rate of {fmt_lr(lr)} tends to overfit: the LoRA memorises "
                        f"the images. Lower the rate to {fmt_lr(guide.GENTLE_UNET_LR)} or train fewer epochs."), \
            Fix({"optimizer.unet_lr": guide.GENTLE_UNET_LR}, f"lower the UNet rate to {fmt_lr(guide.GENTLE_UNET_LR)}")
    return None


@rule("batch.too_big", "training.batch_size", "Batch size above 8.")
def batch_too_big(ctx: Context):
    batch = ctx.config.training.batch_size
    if batch > guide.BATCH_DANGER_ABOVE:
        return "danger", (f"A batch of {batch} needs a lot of GPU memory and makes each step coarse; the guide "
                          "stops at 8 and uses 4."), Fix({"training.batch_size": 4}, "set the batch size to 4")
    return None


@rule("batch.fused_needs_one", "training.fused_backward_pass", "Fused backward pass with a batch above 1.")
def fused_needs_batch_one(ctx: Context):
    if ctx.config.training.fused_backward_pass and ctx.config.training.batch_size != 1:
        return "danger", ("The fused backward pass steps each weight as soon as its gradient is ready, which only "
                          "works with a batch of 1."), Fix({"training.batch_size": 1}, "set the batch size to 1")
    return None
