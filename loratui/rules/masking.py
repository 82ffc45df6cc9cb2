"""Rules about masked loss (``dataset.masked_loss``, ``dataset.mask_path``)."""

from __future__ import annotations

from loratui.rules.engine import Context, Fix, rule

ALPHA_SUFFIXES = (".png", ".webp", ".tif", ".tiff", ".gif")
"""Image formats that can carry an alpha channel (JPEG and BMP cannot)."""


@rule("masks.alpha", "dataset.masked_loss", "Masked loss that reads masks from the images' alpha channels.")
def alpha_masks(ctx: Context):
    dataset = ctx.config.dataset
    if not dataset.masked_loss or dataset.mask_path:
        return None
    if ctx.scan is None or not ctx.scan.images:
        return None
    # The scan reads image sizes, not their channels: the file format is the one thing it can tell.
    opaque = [i for i in ctx.scan.images if i.path.suffix.lower() not in ALPHA_SUFFIXES]
    if len(opaque) == len(ctx.scan.images):
        return "warn", (f"Masked loss reads each image's alpha channel, and none of these {len(opaque)} images can "
                        f"have one (such as {opaque[0].path.name}): every pixel trains, as without masks. Put masks "
                        "in dataset.mask_path, or turn masked loss off."), \
            Fix({"dataset.masked_loss": False}, "turn masked loss off")
    if opaque:
        return "tip", (f"{len(opaque)} of {len(ctx.scan.images)} images cannot carry an alpha channel (such as "
                       f"{opaque[0].path.name}) and train everywhere. Check that the others are transparent where "
                       "they should not teach."), None
    return "tip", ("Masked loss reads each image's alpha channel; an image without one trains everywhere. Check that "
                   "your images are transparent where the LoRA should learn nothing."), None


@rule("masks.path_unused", "dataset.mask_path", "A mask folder while masked loss is off.")
def mask_path_unused(ctx: Context):
    dataset = ctx.config.dataset
    if not dataset.mask_path or dataset.masked_loss:
        return None
    return "tip", "A mask folder is set, but masked loss is off, so the masks are not read.", \
        Fix({"dataset.masked_loss": True}, "turn masked loss on")
