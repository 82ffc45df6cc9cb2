"""Rules about the length of training: total steps, epochs against the learning rate, batch size."""

from __future__ import annotations

from loratui.rules import guide
from loratui.rules.engine import Context, Fix, fmt_lr, rule
from loratui.rules.targets import batch_toward, safe_unet_lr, targets_of
from loratui.rules.tiny_plan import epoch_batches, in_repeat_folder, plan_changes, tiny_plan, uses_default_repeats
from loratui.rules.updates import accumulation, effective_batch, guide_steps, steps_words


def steps_fix(ctx: Context, low: int, high: int) -> Fix | None:
    """The smallest change that brings the exact step count into [low, high].

    Tries epochs alone, then repeats alone, then both, within the tiny-dataset ranges when those
    apply (so a fix never breaks another rule), and picks the candidate nearest the middle. When
    kohya folders fix the repeats so that nothing else gets there, it also tries turning
    ``dataset.folder_name_repeats`` off, so that ``dataset.repeats`` reaches every image.
    """
    if ctx.plan is None or ctx.scan is None or not ctx.scan.images:
        return None
    plan = tiny_plan(ctx)
    if plan is not None:
        # A tiny dataset: the same plan the tiny-dataset rules steer to, so the fixes agree.
        changes = plan_changes(ctx, plan)
        if not changes:
            return None
        return Fix(changes, f"use {_in_words(changes)} ({plan.steps} steps)")
    config, target = ctx.config, (low + high) // 2
    tiny = ctx.is_tiny_dataset
    epoch_range = range(guide.TINY_EPOCHS[0], guide.TINY_EPOCHS[1] + 1) if tiny else range(1, 201)
    repeat_range = range(guide.TINY_REPEATS[0], guide.TINY_REPEATS[1] + 1) if tiny else range(1, 101)
    flag = config.dataset.folder_name_repeats
    has_defaults = any(uses_default_repeats(ctx, i) for i in ctx.scan.images)
    now_r, now_e = config.dataset.repeats, config.training.epochs
    # Updates per epoch: with gradient accumulation several batches make one of the guide's steps.
    accumulate = accumulation(ctx)
    batches = {flag: epoch_batches(ctx, config.training.batch_size, None, accumulate)}
    # More than 20 epochs at a rate above 3e-4 is its own warning (epochs.high_lr): stay under it when any
    # change can, and go past it only when nothing else reaches the step count.
    calm = [range(1, guide.MANY_EPOCHS + 1)] if not tiny and config.optimizer.unet_lr > guide.GENTLE_UNET_LR \
        and config.optimizer.name not in guide.LR_FREE_OPTIMIZERS else []
    can_unfix_folders = flag and any(in_repeat_folder(ctx, i) for i in ctx.scan.images)
    if can_unfix_folders:
        batches[False] = epoch_batches(ctx, config.training.batch_size, False, accumulate)
    searches = []
    for epochs_allowed in calm + [epoch_range]:
        searches += [[(flag, now_r, e) for e in epochs_allowed]]
        if has_defaults:
            searches += [[(flag, r, now_e) for r in repeat_range if now_e in epochs_allowed],
                         [(flag, r, e) for r in repeat_range for e in epochs_allowed]]
        if can_unfix_folders:
            searches.append([(False, r, e) for r in repeat_range for e in epochs_allowed])
    per_epoch = {}
    # Within the aim if any change reaches it; else within the guide's safe range; else at least out of danger
    # (kohya folders can fix the repeats so that even one epoch overshoots the aim).
    for lowest, highest in ((low, high), guide.STEPS_FINE, (guide.STEPS_DANGER_BELOW, guide.STEPS_DANGER_ABOVE)):
        for candidates in searches:
            scored = []
            for f, r, e in candidates:
                if (f, r) not in per_epoch:
                    per_epoch[f, r] = batches[f](r)
                steps = per_epoch[f, r] * e
                if lowest <= steps <= highest and (f, r, e) != (flag, now_r, now_e):
                    scored.append((abs(steps - target), r, e, steps, f))
            if scored:
                _, repeats, epochs, steps, folders = min(scored)
                changes = {key: value for key, value, now in (("dataset.folder_name_repeats", folders, flag),
                                                              ("dataset.repeats", repeats, now_r),
                                                              ("training.epochs", epochs, now_e)) if value != now}
                return Fix(changes, f"use {_in_words(changes)} ({steps} steps)")
    return None


def _in_words(changes: dict) -> str:
    words = []
    for key, value in changes.items():
        if key == "dataset.folder_name_repeats":
            continue  # said with the repeats
        if key == "dataset.repeats":
            every = " for every image" if changes.get("dataset.folder_name_repeats") is False else ""
            words.append(f"{value} repeats{every}")
        elif key == "training.epochs":
            words.append(f"{value} epochs")
        elif key == "training.gradient_accumulation_steps":
            words.append("no gradient accumulation" if value == 1 else f"{value} accumulation steps")
        else:
            words.append(f"batch {value}")
    return " and ".join(words)


@rule("steps.range", "training.epochs", "Total steps against the guide's targets (tiny datasets have their own).")
def steps_range(ctx: Context):
    steps = guide_steps(ctx)  # updates of the user's own images (regularization images left out)
    if steps is None:
        return None
    tiny = ctx.is_tiny_dataset
    aim = targets_of(ctx).steps_aim
    if steps < guide.STEPS_DANGER_BELOW or steps > guide.STEPS_DANGER_ABOVE:
        fix = steps_fix(ctx, *aim)
        if steps < guide.STEPS_DANGER_BELOW:
            message = f"{steps_words(ctx, steps)} is too few: the LoRA will come out undercooked. Aim for {aim[0]}–{aim[1]}."
        else:
            message = (f"{steps_words(ctx, steps)} is too many: expect an overcooked LoRA that copies your images. Aim for "
                       f"{aim[0]}–{aim[1]}.")
        if fix is None:
            message += (" No repeats and epochs within the guide's ranges get there with these images at batch "
                        f"{ctx.config.training.batch_size}: change the batch size, or the number of images.")
        return "danger", message, fix
    if tiny:
        if steps < aim[0]:
            return "warn", (f"{steps_words(ctx, steps)} is short for a tiny dataset, which needs more passes: aim for "
                            f"{aim[0]}–{aim[1]}."), steps_fix(ctx, *aim)
        if steps > aim[1]:
            return "tip", (f"{steps_words(ctx, steps)} is above the {aim[0]}–{aim[1]} the guide aims for with a tiny dataset "
                           f"(its own 10-image example runs {guide.TINY_STEPS_EXAMPLE}); fine, watch for "
                           "overfitting."), steps_fix(ctx, *aim)
        return None
    fine = guide.STEPS_FINE
    if not fine[0] <= steps <= fine[1]:
        return "warn", (f"{steps_words(ctx, steps)} is outside the safe {fine[0]}–{fine[1]}; aim for "
                        f"{aim[0]}–{aim[1]}."), steps_fix(ctx, *aim)
    if not aim[0] <= steps <= aim[1]:
        return "tip", f"{steps_words(ctx, steps)} is fine; the guide aims for {aim[0]}–{aim[1]}.", steps_fix(ctx, *aim)
    return None


@rule("epochs.high_lr", "training.epochs", "Many epochs at a high learning rate.")
def many_epochs_high_lr(ctx: Context):
    epochs, lr = ctx.config.training.epochs, ctx.config.optimizer.unet_lr
    if ctx.config.optimizer.name in guide.LR_FREE_OPTIMIZERS:
        return None
    if epochs > guide.MANY_EPOCHS and lr > guide.GENTLE_UNET_LR:
        safe = safe_unet_lr(ctx)  # the value every UNet-rate fix sets, so the fixes agree
        return "warn", (f"{epochs} epochs at a UNet rate of {fmt_lr(lr)} tends to overfit: the LoRA memorises "
                        f"the images. Lower the rate to {fmt_lr(safe)} or train fewer epochs."), \
            Fix({"optimizer.unet_lr": safe}, f"lower the UNet rate to {fmt_lr(safe)}")
    return None


@rule("batch.too_big", "training.batch_size",
      "Effective batch (batch × gradient accumulation × processes) above 8.")
def batch_too_big(ctx: Context):
    batch, effective = ctx.config.training.batch_size, effective_batch(ctx)
    if effective <= guide.BATCH_DANGER_ABOVE:
        return None
    target = 1 if ctx.config.training.fused_backward_pass else targets_of(ctx).batch_size
    batch_fix, accumulate = batch_toward(ctx, target)
    situation = targets_of(ctx).situation
    if effective == batch:
        message = (f"A batch of {batch} needs a lot of GPU memory and makes each step coarse; the guide stops at 8 "
                   f"and uses {target} for {situation}.")
    else:
        message = (f"Each update averages {effective} images (batch {batch} × {accumulation(ctx)} accumulated × "
                   f"{ctx.config.training.num_processes} process{'es' if ctx.config.training.num_processes > 1 else ''}"
                   f"), which makes each step coarse and leaves few of them; the guide's batch stops at 8 and uses "
                   f"{target} for {situation}.")
    if effective_batch(ctx, batch_fix, accumulate) > guide.BATCH_DANGER_ABOVE:
        return "danger", message + " Even batch 1 is too many with this many processes: use fewer.", None
    changes = {key: value for key, value, now in (("training.batch_size", batch_fix, batch),
                                                   ("training.gradient_accumulation_steps", accumulate,
                                                    ctx.config.training.gradient_accumulation_steps))
               if value != now}
    label = f"set the batch size to {batch_fix}" if list(changes) == ["training.batch_size"] \
        else f"use {_in_words(changes)}"
    return "danger", message, Fix(changes, label)


@rule("batch.fused_needs_one", "training.fused_backward_pass", "Fused backward pass with a batch above 1.")
def fused_needs_batch_one(ctx: Context):
    if ctx.config.training.fused_backward_pass and ctx.config.training.batch_size != 1:
        return "danger", ("The fused backward pass steps each weight as soon as its gradient is ready, which only "
                          "works with a batch of 1."), Fix({"training.batch_size": 1}, "set the batch size to 1")
    return None
