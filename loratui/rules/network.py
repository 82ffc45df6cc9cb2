"""Rules about the network's shape and the training resolution."""

from __future__ import annotations

from loratui.rules import guide
from loratui.rules.engine import Context, Fix, rule


@rule("network.proven_dim_alpha", "network.dim", "A first character run uses the proven 8 dim / 4 alpha.")
def proven_dim_alpha(ctx: Context):
    dim, alpha = ctx.config.network.dim, ctx.config.network.alpha
    proven_dim, proven_alpha = guide.PROVEN_DIM_ALPHA
    if ctx.config.kind != "character" or (dim, alpha) == (proven_dim, proven_alpha):
        return None
    return "tip", (f"{dim} dim / {alpha:g} alpha: for a first character run the guide's proven choice is "
                   f"{proven_dim}/{proven_alpha}. Larger dims hold more, and overfit and weigh more."), \
        Fix({"network.dim": proven_dim, "network.alpha": float(proven_alpha)}, f"use {proven_dim} dim / {proven_alpha} alpha")


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
    if ctx.config.kind != "style" or ctx.config.network.type != "lora":
        return None
    return "tip", ("A style lives in textures and colours as much as in shapes; LoCon adapts the convolution "
                   "layers too and usually catches it better than plain LoRA."), \
        Fix({"network.type": "locon"}, "switch to LoCon")


@rule("resolution.architecture", "dataset.resolution", "Resolution against the architecture (SD1.5 768, SDXL 1024).")
def resolution_for_arch(ctx: Context):
    if ctx.arch is None or not ctx.config.dataset.resolution:
        return None
    resolution, native = ctx.config.dataset.resolution, guide.RESOLUTION[ctx.arch]
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
