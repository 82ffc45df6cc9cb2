"""Rules about regularization images (``dataset.reg_path``) and their weight (``training.prior_loss_weight``)."""

from __future__ import annotations

from loratui.rules import guide
from loratui.rules.engine import Context, Fix, rule

_USUAL = Fix({"training.prior_loss_weight": guide.PRIOR_LOSS_WEIGHT},
             f"weigh them as your images ({guide.PRIOR_LOSS_WEIGHT:g})")


@rule("reg.weight_high", "training.prior_loss_weight", "Regularization images weighed above the subject's (above 1).")
def weight_high(ctx: Context):
    weight = ctx.config.training.prior_loss_weight
    if not ctx.config.dataset.reg_path or weight <= guide.PRIOR_LOSS_WEIGHT:
        return None
    return "warn", (f"A prior loss weight of {weight:g} makes the regularization images count more than your own: "
                    "the LoRA is pulled back towards the generic class and the subject comes out weak. 1.0 weighs "
                    "them the same."), _USUAL


@rule("reg.weight_zero", "training.prior_loss_weight", "A regularization folder with a prior loss weight of 0.")
def weight_zero(ctx: Context):
    if not ctx.config.dataset.reg_path or ctx.config.training.prior_loss_weight > 0:
        return None
    return "warn", ("With a prior loss weight of 0 the regularization images are loaded, encoded and trained on, and "
                    "count for nothing: the run only gets slower. Weigh them 1.0, or clear dataset.reg_path."), _USUAL


@rule("reg.style", "dataset.reg_path", "Regularization images for a style LoRA.")
def reg_with_style(ctx: Context):
    if not ctx.config.dataset.reg_path or ctx.config.kind != "style":
        return None
    return "tip", ("Regularization images guard a class (a person, a dog) against a character or concept taking it "
                   "over; a style LoRA is meant to change every image, so they mostly hold it back. Style runs "
                   "usually go without."), Fix({"dataset.reg_path": ""}, "train without regularization images")


@rule("reg.weight_without_folder", "training.prior_loss_weight", "A prior loss weight without regularization images.")
def weight_without_folder(ctx: Context):
    weight = ctx.config.training.prior_loss_weight
    if ctx.config.dataset.reg_path or weight == guide.PRIOR_LOSS_WEIGHT:
        return None
    return "tip", (f"The prior loss weight ({weight:g}) only weighs regularization images, and dataset.reg_path "
                   "names none: it changes nothing."), _USUAL
