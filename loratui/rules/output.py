"""Rules about what the run costs: the file it writes and the GPU memory it needs."""

from __future__ import annotations

from loratui.rules import guide
from loratui.rules.engine import Context, rule

MB = 1_000_000
GIB = 2**30


@rule("output.file_size", "network.dim", "The finished file against the guide's 20–100 MB.")
def file_size(ctx: Context):
    estimates = ctx.estimates
    if estimates is None:
        return None
    size, (low, high) = estimates.file_size, guide.FILE_SIZE_MB
    dim = ctx.config.network.dim
    if size > high * MB:
        return "warn", (f"The LoRA will be about {size / MB:.0f} MB, above the guide's {low}–{high} MB: dim {dim} "
                        "holds far more than one subject needs, and big LoRAs overfit and crowd out others."), None
    if size < low * MB and dim < guide.PROVEN_DIM_ALPHA[0]:
        return "tip", (f"The LoRA will be about {size / MB:.1f} MB: dim {dim} is below the proven 8 and may not "
                       "hold the subject's detail."), None
    return None


@rule("memory.fit", "training.batch_size", "The run's GPU memory against the GPU's.")
def memory_fit(ctx: Context):
    estimates = ctx.estimates
    if estimates is None or estimates.fits is not False:
        return None
    need, have = estimates.vram.total / GIB, estimates.gpu.memory_total_mib / 1024
    if estimates.savers is None:
        return "danger", (f"This run needs about {need:.1f} GiB of GPU memory; the {estimates.gpu.name} has "
                          f"{have:.0f}. Even with every memory saver it will not fit: lower the resolution or "
                          "rent a larger GPU."), None
    return "danger", (f"This run needs about {need:.1f} GiB of GPU memory; the {estimates.gpu.name} has {have:.0f}. "
                      "It would spill into system memory and crawl, or stop out of memory."), estimates.savers
