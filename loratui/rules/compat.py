"""Rules about combinations that fail together: optimizer and schedule, model and noise schedule, model and VAE."""

from __future__ import annotations

import re
from pathlib import Path

from loratui.rules import guide
from loratui.rules.engine import Context, Fix, rule
from trainer.contract.vae_ref import ARCH_NAMES, checkpoint_lacks_vae


@rule("compat.schedule_free_needs_constant", "scheduler.name",
      "Schedule-free optimizers with anything but a constant schedule.")
def schedule_free(ctx: Context):
    if ctx.config.optimizer.name not in guide.SCHEDULE_FREE_OPTIMIZERS or ctx.config.scheduler.name == "constant":
        return None
    return "danger", (f"{ctx.config.optimizer.name} replaces the learning-rate schedule with its own averaging; a "
                      f"{ctx.config.scheduler.name} schedule on top fights it. Use constant."), \
        Fix({"scheduler.name": "constant"}, "use a constant schedule")


@rule("compat.rex_with_came", "optimizer.name", "The REX schedule is tuned for the CAME optimizer.")
def rex_with_came(ctx: Context):
    if ctx.config.scheduler.name != "rex" or ctx.config.optimizer.name == "came":
        return None
    return "tip", "REX restarts pair best with CAME, which the guide recommends together.", \
        Fix({"optimizer.name": "came"}, "switch to CAME")


@rule("compat.restarts_without_cycles", "scheduler.restarts", "Cosine with restarts set to a single cycle.")
def restarts_of_one(ctx: Context):
    if ctx.config.scheduler.name != "cosine_with_restarts" or ctx.config.scheduler.restarts > 1:
        return None
    return "tip", ("cosine_with_restarts with 1 cycle is plain cosine. The guide's proven setting is 3 "
                   "cycles."), Fix({"scheduler.restarts": 3}, "use 3 cycles")


@rule("model.zero_terminal_snr_epsilon", "model.zero_terminal_snr",
      "Zero terminal SNR on a model that predicts noise.")
def zero_snr_with_epsilon(ctx: Context):
    prediction = ctx.prediction
    if prediction is None or not prediction.zero_terminal_snr or prediction.prediction != "epsilon":
        return None
    return "danger", ("Zero terminal SNR makes the last step pure noise, where a model that predicts the noise "
                      "has nothing to go on: that step's loss is meaningless and the samples wash out. Use it only "
                      "with a v-prediction model (set model.prediction if this one is)."), \
        Fix({"model.zero_terminal_snr": False}, "turn zero terminal SNR off")


_SDXL_NAME = re.compile(r"(?<![a-z])(sdxl|xl)(?![a-z])")
_SD15_VAE_NAME = re.compile(r"ft-mse|ft-ema|840000|560000|kl-f8-anime|animevae|orangemix|blessed|clearvae|"
                            r"(?<![a-z])(sd-?1[.-]?5|sd15|v1-5)(?![0-9])")
"""Names of the VAE files SD1.5 users pass around (vae-ft-mse-840000, NovelAI's animevae, ...)."""


@rule("model.vae_family", "model.vae", "A VAE file whose name says it was made for the other architecture.")
def vae_family(ctx: Context):
    vae = ctx.config.model.vae
    if not vae or ctx.arch not in ARCH_NAMES or Path(vae).is_dir():
        return None  # a folder's config says its family, and the check of model.vae reads it
    name = Path(vae).name
    other = "sdxl" if _SDXL_NAME.search(name.lower()) else "sd15" if _SD15_VAE_NAME.search(name.lower()) else None
    if other is None or other == ctx.arch:
        return None
    fix = None if checkpoint_lacks_vae(ctx.config.model.base) else Fix({"model.vae": ""}, "use the model's own VAE")
    return "warn", (f"{name} reads like an {ARCH_NAMES[other]} VAE, and this model is "
                    f"{ARCH_NAMES[ctx.arch]}. Both families' VAEs have the same shapes, so only the name can tell; "
                    "the other family's VAE gives the UNet latents it was not trained on, and the LoRA learns the "
                    "wrong thing without an error."), fix
