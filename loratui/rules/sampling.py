"""Rules about samples and checkpoints along the run: prompts for quality-tag models, and how often."""

from __future__ import annotations

import math

from loratui.rules import guide
from loratui.rules.engine import Context, Fix, rule
from loratui.rules.families import family_of
from loratui.rules.updates import total_updates


@rule("samples.family_prompts", "output.sample_negative_prompt",
      "Samples of a Pony, Illustrious or NoobAI model without its negative prompt or quality tags.")
def family_prompts(ctx: Context):
    output = ctx.config.output
    family = family_of(ctx.config.model.base)
    if family is None:  # samples can be asked for during any run, so this holds without a sample schedule
        return None
    prompts = [str(p) for p in output.sample_prompts]
    negative = bool(output.sample_negative_prompt.strip()) or (prompts and all("--n " in p for p in prompts))
    tagged = bool(prompts) and all(any(tag in p.lower() for tag in family.quality_tags) for p in prompts)
    if negative and tagged:
        return None
    missing = []
    if not negative:
        missing.append("its usual negative prompt")
    if not tagged:
        missing.append(f"quality tags such as {', '.join(family.quality_tags[:2])} in every prompt"
                       + ("" if prompts else " (the prompts made from the captions have none: write your own)"))
    message = (f"This looks like a {family.name} model, whose pictures depend on {' and '.join(missing)}; without "
               "them the samples look worse than the LoRA is.")
    fix = None if negative else Fix({"output.sample_negative_prompt": family.negative},
                                    f"use {family.name}'s usual negative prompt")
    return "tip", message, fix


def _spaced(total: int) -> int:
    """An interval that spaces events about ``guide.EVENT_SPREAD`` times over ``total`` steps."""
    return max(1, math.ceil(total / guide.EVENT_SPREAD))


@rule("samples.too_often", "output.sample_every_n_steps", "Samples every N steps, more than 20 times in the run.")
def samples_too_often(ctx: Context):
    every, total = ctx.config.output.sample_every_n_steps, total_updates(ctx)
    if not every or total is None or total // every <= guide.MOST_SAMPLE_SETS:
        return None
    spaced = _spaced(total)
    return "warn", (f"Sampling every {every} steps draws {total // every} sets over {total} steps; each set stops "
                    f"training for every prompt at two strengths, so the run takes much longer. About "
                    f"{guide.EVENT_SPREAD} sets show the progress."), \
        Fix({"output.sample_every_n_steps": spaced}, f"sample every {spaced} steps")


@rule("output.saves_too_many", "output.save_every_n_steps", "Checkpoints every N steps, more than 30 in the run.")
def saves_too_many(ctx: Context):
    every, total = ctx.config.output.save_every_n_steps, total_updates(ctx)
    if not every or total is None or total // every <= guide.MOST_STEP_SAVES:
        return None
    spaced = _spaced(total)
    kept = ctx.config.output.keep_last_n_checkpoints
    keep = f" (only the newest {kept} are kept)" if kept else ""
    return "warn", (f"Saving every {every} steps writes {total // every} checkpoint files over {total} steps{keep}: "
                    f"time spent writing, and more files than anyone compares. About {guide.EVENT_SPREAD} is "
                    "plenty."), Fix({"output.save_every_n_steps": spaced}, f"save every {spaced} steps")
