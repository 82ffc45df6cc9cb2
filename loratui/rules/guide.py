"""The guide's numbers (../shared/lora-training-guide.md), in one place, so every rule reads the same facts."""

from __future__ import annotations

DATASET_SIZE = {
    "character": (15, 50),
    "style": (50, 200),
    "concept": (20, 100),
}
"""Comfortable image counts per kind (inclusive)."""
CHARACTER_SWEET_SPOT = (20, 30)
TINY_DATASET = (10, 15)
"""10–15 images: fine with the tiny-dataset settings."""
CAREFUL_DATASET = (5, 9)
"""5–9 images: possible, but only with careful settings."""

STEPS_AIM = (500, 750)
STEPS_FINE = (250, 1000)
STEPS_DANGER_BELOW = 200
STEPS_DANGER_ABOVE = 2000
TINY_STEPS_AIM = (800, 1200)
TINY_STEPS_EXAMPLE = 1500
"""The guide's own 10-image example (10 × 20 × 15 ÷ 2) runs 1500 steps, above its 800–1200 aim."""

LR_DANGER_ABOVE = 1e-3
PROVEN_UNET_LR = 5e-4
PROVEN_TE_LR = 1e-4
GENTLE_UNET_LR = 3e-4
"""Style and tiny datasets: the guide's lower UNet rate."""
GENTLE_TE_LR = 5e-5
MANY_EPOCHS = 20
"""Beyond the tiny-dataset 15–20, more epochs at a high rate overfit."""

BATCH_DANGER_ABOVE = 8
PROVEN_DIM_ALPHA = (8, 4)
RESOLUTION = {"sd15": 768, "sdxl": 1024}

TINY_REPEATS = (15, 25)
TINY_EPOCHS = (15, 20)
TINY_BATCH_MAX = 2

FILE_SIZE_MB = (20, 100)
"""The guide's "reasonable" file size range."""

LR_FREE_OPTIMIZERS = ("prodigy", "prodigy_plus", "dadaptation")
"""Optimizers that find their own rate: they expect a learning rate near 1.0."""
SCHEDULE_FREE_OPTIMIZERS = ("prodigy_plus",)
"""Optimizers that replace the schedule; anything but a constant schedule fights them."""

# The options every other trainer has (issue #18). The guide has no numbers for these; the ranges
# are those sd-scripts' documentation and the common notebooks use, kept here with the guide's.
PRIOR_LOSS_WEIGHT = 1.0
"""Regularization images weighed the same as the subject's: sd-scripts' default and the usual choice."""
VALIDATION_SHARE_MAX = 0.2
"""Above a fifth of the images, the held-out share costs more training than the curve is worth."""
MULTIRES_DISCOUNT = (0.1, 0.8)
MULTIRES_DISCOUNT_USUAL = 0.3
"""kohya-colab's SDXL choice, with 6 iterations."""
MULTIRES_ITERATIONS_MAX = 10
MULTIRES_ITERATIONS_USUAL = 6
IP_NOISE_GAMMA_MAX = 0.2
IP_NOISE_GAMMA_USUAL = 0.1
TIMESTEPS = 1000
NARROW_TIMESTEPS = 500
"""A timestep range narrower than half the schedule teaches the LoRA only part of the denoising."""
HUBER_C = (0.01, 1.0)
HUBER_C_USUAL = 0.1
"""sd-scripts' default ``huber_c``."""
MOST_SAMPLE_SETS = 20
"""More sample sets than this in one run, counted from ``sample_every_n_steps``, mostly slow it down."""
MOST_STEP_SAVES = 30
"""More checkpoint files than this, counted from ``save_every_n_steps``, is more than anyone compares."""
EVENT_SPREAD = 10
"""The fixes for too many samples or saves space them to about this many over the run."""
