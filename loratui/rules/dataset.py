"""Rules about the dataset: its size for the kind of LoRA, its captions and trigger word."""

from __future__ import annotations

from trainer.contract.dataset_scan import parse_repeat_folder

from loratui.rules import guide
from loratui.rules.engine import Context, Fix, rule


@rule("dataset.size", "dataset.path", "Image count against the guide's range for the kind of LoRA.")
def dataset_size(ctx: Context):
    count = ctx.image_count
    if count is None:
        return None
    kind = ctx.config.kind
    low, high = guide.DATASET_SIZE.get(kind, guide.DATASET_SIZE["character"])
    if count < guide.CAREFUL_DATASET[0]:
        return "danger", (f"Only {count} usable image{'s' if count != 1 else ''}: too few to learn from. The guide's "
                          f"floor is 5, and 10–15 works with the tiny-dataset settings."), None
    if count <= guide.CAREFUL_DATASET[1]:
        return "warn", (f"{count} images can work, but only with careful settings: the tiny-dataset preset, "
                        "perfect images and careful captions."), None
    if count <= guide.TINY_DATASET[1] and count < low:
        return "tip", (f"{count} images: a tiny dataset. That is doable; use the tiny-dataset settings "
                       "(more repeats and epochs, gentler learning rates, batch 1–2)."), None
    if count < low:
        return "warn", f"{count} images is few for a {kind} LoRA; the guide suggests {low}–{high}.", None
    if count > high:
        return "tip", (f"{count} images is more than a {kind} LoRA usually needs ({low}–{high}); more is not "
                       "safer. Keep only the best and most varied."), None
    if kind == "character" and not guide.CHARACTER_SWEET_SPOT[0] <= count <= guide.CHARACTER_SWEET_SPOT[1]:
        sweet = guide.CHARACTER_SWEET_SPOT
        return "tip", f"{count} images is fine; the sweet spot for a character is {sweet[0]}–{sweet[1]}.", None
    return None


@rule("captions.missing", "dataset.caption_extension", "Images without a caption file.")
def captions_missing(ctx: Context):
    stats = ctx.captions
    if stats is None or not (stats.missing or stats.empty):
        return None
    count = len(stats.missing) + len(stats.empty)
    example = (stats.missing or stats.empty)[0].name
    severity = "danger" if count == stats.images else "warn"
    return severity, (f"{count} of {stats.images} images have no caption (such as {example}); they train on the "
                      f"trigger word alone. Tag them (WD14 for art, BLIP for photos) or check that "
                      f"caption_extension ({ctx.config.dataset.caption_extension}) matches your files."), None


@rule("captions.trigger_missing", "dataset.trigger_word", "Captions that lack the trigger word.")
def trigger_missing(ctx: Context):
    stats = ctx.captions
    if stats is None or not ctx.config.dataset.trigger_word or not stats.without_trigger:
        return None
    count = len(stats.without_trigger)
    return "tip", (f"{count} caption file{'s' if count != 1 else ''} lack{'s' if count == 1 else ''} the trigger word "
                   f"(such as {stats.without_trigger[0].name}). Training puts it first anyway; your files stay as "
                   "they are."), None


def _suggest_trigger(ctx: Context) -> str | None:
    if ctx.scan is None:
        return None
    for image in ctx.scan.images:
        parsed = parse_repeat_folder(image.path.parent.name)
        if parsed:
            return parsed[1].replace(" ", "_")
    name = ctx.scan.root.name.strip()
    return name.replace(" ", "_") if name and not name.startswith(".") else None


@rule("captions.no_trigger_word", "dataset.trigger_word", "A character or concept LoRA without a trigger word.")
def no_trigger_word(ctx: Context):
    if ctx.config.dataset.trigger_word.strip() or ctx.config.kind == "style":
        return None
    suggestion = _suggest_trigger(ctx)
    fix = Fix({"dataset.trigger_word": suggestion}, f"use '{suggestion}' as the trigger word") if suggestion else None
    return "warn", (f"No trigger word: a {ctx.config.kind} LoRA needs a made-up word that calls it up. Pick one no "
                    "model already knows (like zkchar), and the trainer puts it first in every caption."), fix


@rule("dataset.small_images", "dataset.resolution", "Images smaller than the training size.")
def small_images(ctx: Context):
    if ctx.scan is None or ctx.arch is None or ctx.tiny_model:
        return None  # the tiny model's pictures are small on purpose
    resolution = ctx.config.dataset.resolution or guide.RESOLUTION[ctx.arch]
    small = [i for i in ctx.scan.images if i.width * i.height < (resolution * resolution) // 2]
    if not small:
        return None
    upscale = ctx.config.dataset.bucket_upscale
    how = "are scaled up, which blurs them" if upscale else "train at their own, smaller size"
    return "tip", (f"{len(small)} images (such as {small[0].path.name}, {small[0].width}×{small[0].height}) are "
                   f"well below {resolution}×{resolution}; they {how}. Larger sources teach more detail."), None


@rule("captions.token_window", "dataset.max_token_length", "Captions longer than the tokens the text encoders read.")
def token_window(ctx: Context):
    counts = ctx.caption_tokens
    window = ctx.config.dataset.max_token_length
    if not counts:
        return None
    long = [(path, tokens) for path, tokens in counts if tokens > window]
    if not long:
        return None
    longest = max(tokens for _, tokens in long)
    names = ", ".join(path.name for path, _ in long[:3]) + (f" and {len(long) - 3} more" if len(long) > 3 else "")
    message = (f"{len(long)} caption{'s run' if len(long) != 1 else ' runs'} past the {window}-token window (up to "
               f"{longest} tokens: {names}); the tags after it never reach the model.")
    fits = next((size for size in (150, 225) if size >= longest), None)
    if fits is None:
        # No fix: no window holds them, and a setting that still leaves the warning is no fix.
        return "warn", message + " 225 is the longest window: shorten those captions (fewer tags).", None
    return "warn", message + f" Reading {fits} tokens keeps them all.", \
        Fix({"dataset.max_token_length": fits}, f"read {fits} tokens")
