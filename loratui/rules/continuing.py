"""Rules about continuing from a LoRA file (``network.weights``): what it is, and what its rate does."""

from __future__ import annotations

from loratui.rules import guide
from loratui.rules.engine import Context, Fix, fmt_lr, rule
from loratui.rules.targets import safe_unet_lr
from loratui.rules.weights_file import trained_rate


@rule("continue.not_resume", "network.weights", "Continuing from a LoRA file starts a new run from its weights.")
def not_resume(ctx: Context):
    if not ctx.config.network.weights:
        return None
    return "tip", ("Continuing starts a new run from this file's weights: a fresh optimizer, the schedule from its "
                   "start, and steps that add to those the file already had (count them, or it overcooks). To "
                   "finish a run that stopped, use `loratui resume` on its run folder instead."), None


@rule("continue.rate_restart", "network.weights",
      "Continuing at a higher UNet rate than the weights file was trained at.")
def rate_restart(ctx: Context):
    weights, opt = ctx.config.network.weights, ctx.config.optimizer
    if not weights or opt.name in guide.LR_FREE_OPTIMIZERS:
        return None
    rate = trained_rate(weights)
    if rate is None or opt.unet_lr <= rate:
        return None
    # The value every fix that lowers the UNet rate sets: the file's rate, or lower where the guide's is.
    safe = safe_unet_lr(ctx)
    label = f"continue at the file's rate, {fmt_lr(safe)}" if safe == rate else f"lower the UNet rate to {fmt_lr(safe)}"
    return "warn", (f"The file was trained at a UNet rate of {fmt_lr(rate)} and this run starts at "
                    f"{fmt_lr(opt.unet_lr)}, with a new optimizer whose first steps are full-size: the trained LoRA is shaken loose and "
                    "learnt again at the higher rate, which tends to overcook it. Continue at the file's rate or "
                    "lower."), Fix({"optimizer.unet_lr": safe}, label)


@rule("continue.dim_without_weights", "network.dim_from_weights", "Dim from weights without a weights file.")
def dim_without_weights(ctx: Context):
    network = ctx.config.network
    if not network.dim_from_weights or network.weights:
        return None
    return "tip", ("dim_from_weights reads dim and alpha from the network.weights file, and none is set: the dim "
                   f"and alpha here ({network.dim} / {network.alpha:g}) are used."), \
        Fix({"network.dim_from_weights": False}, "turn dim_from_weights off")
