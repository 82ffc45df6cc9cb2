"""Rules about learning rates."""

from __future__ import annotations

from loratui.rules import guide
from loratui.rules.engine import Context, Fix, fmt_lr, rule
from loratui.rules.targets import guide_unet_lr, safe_te_lr, safe_unet_lr, targets_of


def _lr_free(ctx: Context) -> bool:
    return ctx.config.optimizer.name in guide.LR_FREE_OPTIMIZERS


@rule("lr.unet_too_high", "optimizer.unet_lr", "UNet learning rate above 1e-3.")
def unet_too_high(ctx: Context):
    lr = ctx.config.optimizer.unet_lr
    if _lr_free(ctx) or lr <= guide.LR_DANGER_ABOVE:
        return None
    safe = safe_unet_lr(ctx)
    why = "the rate the continued file was trained at" if safe < guide_unet_lr(ctx) else \
        f"the proven value for {targets_of(ctx).situation}"
    return "danger", (f"A UNet rate of {fmt_lr(lr)} is above 1e-3, where runs blow up or burn in a few hundred "
                      f"steps. {fmt_lr(safe)} is {why}."), \
        Fix({"optimizer.unet_lr": safe}, f"set the UNet rate to {fmt_lr(safe)}")


@rule("lr.text_encoder_too_high", "optimizer.text_encoder_lr", "Text-encoder learning rate above 1e-3.")
def te_too_high(ctx: Context):
    lr = ctx.config.optimizer.text_encoder_lr
    if _lr_free(ctx) or lr <= guide.LR_DANGER_ABOVE:
        return None
    safe = safe_te_lr(ctx)
    return "danger", (f"A text-encoder rate of {fmt_lr(lr)} will wreck the text encoder, and with it what your "
                      f"prompts mean. {fmt_lr(safe)} is the proven value for {targets_of(ctx).situation}."), \
        Fix({"optimizer.text_encoder_lr": safe}, f"set the text-encoder rate to {fmt_lr(safe)}")


@rule("lr.text_encoder_vs_unet", "optimizer.text_encoder_lr",
      "The text-encoder rate should stay well below the UNet's (at most half; the guide's pairs are 1/5–1/6).")
def te_vs_unet(ctx: Context):
    te, unet = ctx.config.optimizer.text_encoder_lr, ctx.config.optimizer.unet_lr
    if _lr_free(ctx) or te == 0 or te > guide.LR_DANGER_ABOVE or unet <= 0:
        return None
    suggested = safe_te_lr(ctx)
    fix = Fix({"optimizer.text_encoder_lr": suggested}, f"set the text-encoder rate to {fmt_lr(suggested)}")
    if te >= unet:
        return "warn", (f"The text encoder learns at {fmt_lr(te)}, as fast as the UNet or faster ({fmt_lr(unet)}). "
                        "It is small and overfits first; keep it at a fifth to a half of the UNet's rate."), fix
    if te > unet / 2:
        return "tip", (f"The text-encoder rate {fmt_lr(te)} is more than half the UNet's ({fmt_lr(unet)}). The "
                       "guide's proven pairs run at about a fifth (5e-4 / 1e-4)."), fix
    return None


@rule("lr.free_optimizer_small_lr", "optimizer.unet_lr",
      "Learning-rate-free optimizers (Prodigy and kin) expect a rate near 1.0.")
def lr_free_small(ctx: Context):
    if not _lr_free(ctx) or ctx.config.optimizer.unet_lr >= 0.1:
        return None
    return "danger", (f"{ctx.config.optimizer.name} finds its own step size and treats the learning rate as a "
                      f"multiplier: {fmt_lr(ctx.config.optimizer.unet_lr)} makes it barely move. Use 1.0."), \
        Fix({"optimizer.unet_lr": 1.0, "optimizer.text_encoder_lr": 1.0}, "set both rates to 1.0")


@rule("lr.style_gentle", "optimizer.unet_lr", "Styles train at the guide's gentler rates (3e-4 / 5e-5).")
def style_gentle(ctx: Context):
    config = ctx.config
    if config.kind != "style" or ctx.is_tiny_dataset or _lr_free(ctx):
        return None  # a tiny dataset's own rules ask for the same rates, as warnings
    targets = targets_of(ctx)
    unet, te = config.optimizer.unet_lr, config.optimizer.text_encoder_lr
    if unet <= targets.unet_lr and te <= targets.text_encoder_lr:
        return None
    return "tip", (f"The guide trains styles more gently than characters: {fmt_lr(targets.unet_lr)} for the UNet and "
                   f"{fmt_lr(targets.text_encoder_lr)} for the text encoder, over more epochs."), \
        Fix({"optimizer.unet_lr": min(unet, safe_unet_lr(ctx)), "optimizer.text_encoder_lr": min(te, safe_te_lr(ctx))},
            "use the style rates")
