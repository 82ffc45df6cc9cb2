"""Rules about the network's shape and the training resolution."""

from __future__ import annotations

from loratui.rules.engine import Context, Fix, rule
from loratui.rules.targets import targets_of
from trainer.contract.boft_rank import boft_rank_message, model_widths, suitable_rank
from trainer.contract.compatibility import ROW_LABELS, loaders_that_fail, loaders_that_work


@rule("network.proven_dim_alpha", "network.dim", "A first character run uses the proven 8 dim / 4 alpha.")
def proven_dim_alpha(ctx: Context):
    dim, alpha = ctx.config.network.dim, ctx.config.network.alpha
    targets = targets_of(ctx)
    proven_dim, proven_alpha = targets.dim, targets.alpha
    # BOFT and (IA)³ do not read dim as a LoRA rank; BOFT's own rule picks a rank the model can split.
    # Alpha above dim is warned about first, with its own fix; this tip follows once that is settled.
    if ctx.config.kind != "character" or ctx.config.network.type in ("boft", "ia3") or alpha > dim \
            or (dim, alpha) == (proven_dim, proven_alpha):
        return None
    return "tip", (f"{dim} dim / {alpha:g} alpha: for a first character run the guide's proven choice is "
                   f"{proven_dim}/{proven_alpha:g}. Larger dims hold more, and overfit and weigh more."), \
        Fix({"network.dim": proven_dim, "network.alpha": proven_alpha}, f"use {proven_dim} dim / {proven_alpha:g} alpha")


@rule("network.alpha_above_dim", "network.alpha", "Alpha above dim amplifies every update.")
def alpha_above_dim(ctx: Context):
    dim, alpha = ctx.config.network.dim, ctx.config.network.alpha
    if alpha <= dim:
        return None
    return "warn", (f"Alpha {alpha:g} above dim {dim} scales every update up by {alpha / dim:g}×, like a higher "
                    f"learning rate. Half of dim ({dim / 2:g}) is the usual choice."), \
        Fix({"network.alpha": dim / 2}, f"set alpha to {dim / 2:g}")


@rule("network.style_locon", "network.type", "Styles learn better when the convolutions are adapted too (LoCon).")
def style_locon(ctx: Context):
    if ctx.config.network.type != "lora" or targets_of(ctx).network_type == "lora":
        return None
    return "tip", ("A style lives in textures and colours as much as in shapes; LoCon adapts the convolution "
                   "layers too and usually catches it better than plain LoRA."), \
        Fix({"network.type": targets_of(ctx).network_type}, "switch to LoCon")


@rule("resolution.architecture", "dataset.resolution", "Resolution against the architecture (SD1.5 768, SDXL 1024).")
def resolution_for_arch(ctx: Context):
    if ctx.arch is None or not ctx.config.dataset.resolution or ctx.tiny_model:
        return None  # loratui's tiny model (the demo's) works at 128 px: 768 would only make it slow
    resolution, native = ctx.config.dataset.resolution, targets_of(ctx).resolution
    fix = Fix({"dataset.resolution": native}, f"train at {native}")
    if ctx.arch == "sdxl" and resolution < native:
        return "warn", (f"SDXL was trained at 1024; at {resolution} it learns a blurrier, smaller-scale version of "
                        "your subject. Train at 1024 (lower the batch or turn on gradient checkpointing if memory "
                        "is short)."), fix
    if ctx.arch == "sd15" and resolution > native:
        return "warn", (f"SD1.5 was trained at 512; at {resolution} it costs much more memory and time for "
                        "little gain, and can duplicate subjects. The guide uses 768."), fix
    if ctx.arch == "sd15" and resolution < native:
        return "tip", f"The guide trains SD1.5 at 768; {resolution} works but keeps less detail.", fix
    return None


@rule("network.boft_rank", "network.dim", "BOFT needs a rank that splits every adapted layer into butterfly blocks.")
def boft_rank(ctx: Context):
    network = ctx.config.network
    if network.type != "boft" or not ctx.config.model.base or network.dim < 1:
        return None
    widths = model_widths(ctx.config.model.base, ctx.arch or "sd15", ctx.config.optimizer.text_encoder_lr > 0)
    message = boft_rank_message(network.dim, widths)
    if message is None:
        return None
    fixed = suitable_rank(network.dim, widths)
    if fixed is None:
        message += " No rank splits every layer of this model: BOFT cannot train it; LoCon or LoKr can."
    return "danger", message + " The trainer refuses this rank before loading the model.", \
        (Fix({"network.dim": fixed}, f"use rank {fixed}") if fixed else None)


@rule("network.loaders", "network.type",
      "Where a file of the chosen type will and will not load (the compatibility table).")
def loaders(ctx: Context):
    network = ctx.config.network
    if network.type not in ("ia3", "boft"):
        return None  # the others load in every UI (diffusers reads only LoRA/LoCon, which the README says)
    works = loaders_that_work(network.type)
    failing = list(loaders_that_fail(network.type))
    label = ROW_LABELS[network.type]
    message = (f"{label} files apply only in {_joined(works)}; {_joined(failing)} load nothing from them "
               "(docs/contract.md, 'Where each file applies', says why).")
    if network.type == "ia3":
        return "warn", message + " LoCon is the usual style choice and loads everywhere.", \
            Fix({"network.type": "locon"}, "switch to LoCon")
    return "tip", message, None


def _joined(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
