"""Rules about the noise and loss options: multires and perturbed noise, the timestep range, the loss weighting."""

from __future__ import annotations

from loratui.rules import guide
from loratui.rules.engine import Context, Fix, rule


@rule("noise.multires_discount", "training.multires_noise_discount",
      "Multires noise with a discount outside 0.1–0.8.")
def multires_discount(ctx: Context):
    training = ctx.config.training
    low, high = guide.MULTIRES_DISCOUNT
    if not training.multires_noise_iterations or low <= training.multires_noise_discount <= high:
        return None
    usual = guide.MULTIRES_DISCOUNT_USUAL
    if training.multires_noise_discount < low:
        why = "the coarse layers all but vanish and the option does next to nothing"
    else:
        why = "the coarse layers are nearly as strong as the fine noise and swamp it, washing out colour and contrast"
    discount = training.multires_noise_discount
    return "warn", f"A multires discount of {discount:g} is outside {low:g}–{high:g}: {why}.", \
        Fix({"training.multires_noise_discount": usual}, f"use a discount of {usual:g}")


@rule("noise.multires_iterations", "training.multires_noise_iterations", "More than 10 layers of multires noise.")
def multires_iterations(ctx: Context):
    iterations = ctx.config.training.multires_noise_iterations
    if iterations <= guide.MULTIRES_ITERATIONS_MAX:
        return None
    usual = guide.MULTIRES_ITERATIONS_USUAL
    return "warn", (f"{iterations} layers of multires noise: past about 10 the layers are coarser than the latent "
                    f"itself and only add a flat shift. {usual} to 10 is usual."), \
        Fix({"training.multires_noise_iterations": usual}, f"use {usual} layers")


@rule("noise.ip_gamma", "training.ip_noise_gamma", "Input perturbation above 0.2.")
def ip_gamma(ctx: Context):
    gamma = ctx.config.training.ip_noise_gamma
    if gamma <= guide.IP_NOISE_GAMMA_MAX:
        return None
    usual = guide.IP_NOISE_GAMMA_USUAL
    return "warn", (f"An input perturbation of {gamma:g} trains the model on noise that differs a lot from what it "
                    f"is asked to remove, which blurs what it learns; {usual:g} is the usual value."), \
        Fix({"training.ip_noise_gamma": usual}, f"use {usual:g}")


@rule("noise.offset_with_multires", "training.noise_offset", "Noise offset and multires noise together.")
def offset_with_multires(ctx: Context):
    training = ctx.config.training
    if not training.noise_offset or not training.multires_noise_iterations:
        return None
    return "warn", ("Noise offset and multires noise both shift the noise's broad brightness; together they overdo "
                    "it, and sd-scripts refuses the pair. Multires alone covers dark and bright images."), \
        Fix({"training.noise_offset": 0.0}, "turn the noise offset off")


@rule("noise.timestep_range", "training.min_timestep", "A timestep range narrower than half the schedule.")
def timestep_range(ctx: Context):
    low, high = ctx.config.training.min_timestep, ctx.config.training.max_timestep
    if low >= high or high - low >= guide.NARROW_TIMESTEPS:
        return None  # an empty range is the config's hard error, not advice
    part = "the fine detail" if high <= guide.TIMESTEPS // 2 else \
        "the layout and colours" if low >= guide.TIMESTEPS // 2 else "part of the picture"
    return "warn", (f"Training only timesteps {low}–{high} teaches the LoRA {part} alone; when it is used, every "
                    "other step of the denoising draws as if it were not loaded."), \
        Fix({"training.min_timestep": 0, "training.max_timestep": guide.TIMESTEPS}, "train every timestep")


@rule("loss.debiased_with_min_snr", "training.debiased_estimation",
      "Debiased estimation and min-SNR weighting together.")
def debiased_with_min_snr(ctx: Context):
    training = ctx.config.training
    if not training.debiased_estimation or not training.min_snr_gamma:
        return None
    return "warn", ("Debiased estimation and min-SNR both reweigh the loss by the noise level; on top of each other "
                    "they weigh the low-noise steps down twice. Keep one."), \
        Fix({"training.debiased_estimation": False}, "keep min-SNR only")


@rule("loss.huber_c", "training.huber_c", "A Huber threshold outside 0.01–1.")
def huber_c(ctx: Context):
    training = ctx.config.training
    low, high = guide.HUBER_C
    if training.loss_type == "l2" or low <= training.huber_c <= high:
        return None
    usual = guide.HUBER_C_USUAL
    if training.huber_c > high:
        why = "so large that nearly every error stays on the squared side: it trains as plain l2"
    else:
        why = "so small that nearly every error is on the linear side: small errors pull as hard as large ones"
    return "warn", f"A huber_c of {training.huber_c:g} is {why}. {usual:g} is sd-scripts' default.", \
        Fix({"training.huber_c": usual}, f"use huber_c {usual:g}")
