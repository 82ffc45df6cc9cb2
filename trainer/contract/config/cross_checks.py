"""Hard checks that involve several fields at once: combinations that cannot train as configured.

``schema.validate`` runs these after every field has passed its own type and limit checks, so
each check here may compare and divide freely. Advice (a combination that merely risks a poor
LoRA) belongs to the app's rules, not here.
"""

from __future__ import annotations

from trainer.contract.config.messages import number_text, quoted
from typing import Any

from trainer.contract.config.names import (CONFIG_VERSION, CONV_NETWORKS, DORA_NETWORKS, FUSED_OPTIMIZERS, LR_FREE_MIN,
                                           LR_FREE_OPTIMIZERS, MAX_NAME_BYTES, SCHEDULE_FREE_OPTIMIZERS,
                                           SUPPORTED_NETWORKS, Problem)
from trainer.contract.sample_prompts import prompt_problems

# The schema imports this module to run these checks, so configs arrive untyped here: ``Config``
# stands for a whole ``schema.Config`` and ``OutputConfig`` for its ``output`` section.
Config = OutputConfig = Any


def cross_field_problems(config: Config) -> list[Problem]:
    """Every problem that involves more than one field, or a field's value beyond its limits."""
    problems = []
    if config.config_version > CONFIG_VERSION:
        problems.append(Problem("config_version", f"this file is version {number_text(config.config_version)}, "
                                f"newer than this loratui understands ({CONFIG_VERSION}); upgrade loratui."))
    resolution = config.dataset.resolution
    if resolution % 64:
        problems.append(Problem("dataset.resolution", f"{number_text(resolution)} is not a multiple of 64; "
                                "use 512, 768, 1024 or 0 for the architecture's own size."))
    if config.dataset.max_token_length % 75:
        problems.append(Problem("dataset.max_token_length", f"{number_text(config.dataset.max_token_length)} is not "
                                "a whole number of 75-token chunks; use 75, 150 or 225."))
    extension = config.dataset.caption_extension
    if not (extension.startswith(".") and len(extension) > 1 and not any(c in extension for c in "/\\\0")):
        # Caption paths are built as image.with_suffix(extension), which refuses anything else.
        dotted = extension and not any(c in extension for c in "./\\\0")
        hint = f" Did you mean '.{extension}'?" if dotted else " Write it with its dot, such as '.txt'."
        problems.append(Problem("dataset.caption_extension", f"{quoted(extension)} is not a file extension.{hint}"))
    if config.network.alpha <= 0:
        problems.append(Problem("network.alpha", "must be above 0 (alpha/dim scales the LoRA)."))
    if config.network.type in CONV_NETWORKS and config.network.conv_alpha <= 0:
        # As with alpha, a scale of 0 makes the convolution adapters output nothing and learn nothing.
        problems.append(Problem("network.conv_alpha", f"must be above 0 with network.type = {config.network.type!r} "
                                "(conv_alpha/conv_dim scales the convolution layers)."))
    if config.network.dora and config.network.type in SUPPORTED_NETWORKS \
            and config.network.type not in DORA_NETWORKS:
        problems.append(Problem("network.dora", f"cannot be combined with network.type = "
                                f"{config.network.type!r}; DoRA works with {', '.join(DORA_NETWORKS)}."))
    if config.network.dim_from_weights and not config.network.weights:
        problems.append(Problem("network.dim_from_weights", "reads dim and alpha from network.weights, which is "
                                "empty: name the LoRA file to continue, or turn dim_from_weights off."))
    if config.optimizer.unet_lr <= 0:
        problems.append(Problem("optimizer.unet_lr", "must be above 0, or nothing is trained."))
    problems.extend(_optimizer_problems(config))
    problems.extend(_output_problems(config.output))
    problems.extend(_output_name_control_problems(config.output.name))
    problems.extend(prompt_problems(config.output.sample_prompts))
    return problems


def _output_problems(output: OutputConfig) -> list[Problem]:
    """Output names and folders that no file system can hold."""
    problems = []
    name = output.name
    if not name or any(c in name for c in "/\\\0") or name in (".", ".."):
        problems.append(Problem("output.name", f"{quoted(name)} is not a usable file name "
                                "(no slashes, not empty)."))
    elif len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        problems.append(Problem("output.name", f"is {len(name.encode('utf-8', 'surrogatepass'))} bytes long; "
                                f"use at most {MAX_NAME_BYTES}, so the file names made from it fit the file "
                                "system's limit of 255."))
    if not output.dir:
        problems.append(Problem("output.dir", "is empty; name the folder that holds the run folders, such as runs."))
    return problems


def _output_name_control_problems(name: str) -> list[Problem]:
    """``output.name`` with a control character: a newline, tab, escape or DEL.

    The name becomes file and folder names that logs, scripts and terminals show: a newline splits
    a path across lines and an escape sequence can rewrite the screen it is printed on. NUL is
    reported for every text field already (``_text_problem``), so it is left out here.
    """
    bad = sorted({c for c in name if c != "\0" and (ord(c) < 32 or 127 <= ord(c) < 160)})
    if not bad:
        return []
    shown = ", ".join(repr(c) for c in bad)
    return [Problem("output.name", f"contains a control character ({shown}), which has no place in a file name; "
                    "use letters, digits, - and _.")]


def _optimizer_problems(config: Config) -> list[Problem]:
    """Optimizer, schedule and fused-pass combinations that cannot train as configured."""
    problems = []
    opt = config.optimizer
    if opt.name in LR_FREE_OPTIMIZERS:
        # Their rate multiplies the step size they find; an AdamW-sized rate would all but stop training.
        for key, value in (("unet_lr", opt.unet_lr), ("text_encoder_lr", opt.text_encoder_lr)):
            if 0 < value < LR_FREE_MIN:
                problems.append(Problem(f"optimizer.{key}", f"{opt.name} finds its own step size and expects "
                                        f"{key} = 1.0 (at least {LR_FREE_MIN:g}); {value:g} would barely train."))
    if opt.name in SCHEDULE_FREE_OPTIMIZERS and config.scheduler.name != "constant":
        problems.append(Problem("scheduler.name", f"{opt.name} averages its weights in place of a schedule; "
                                f"use constant (warmup is allowed), not {config.scheduler.name}."))
    problems += step_option_problems(config)
    if config.training.fused_backward_pass:
        if config.training.gradient_accumulation_steps > 1:
            # Each weight is stepped inside the backward pass, before the next batch's gradient could join it.
            problems.append(Problem("training.fused_backward_pass", "updates each weight during the backward "
                                    "pass, so it cannot add up several batches: set "
                                    "training.gradient_accumulation_steps = 1 (it is "
                                    f"{config.training.gradient_accumulation_steps}) or turn the fused pass off."))
        if config.training.num_processes > 1:
            # Each weight is updated inside the backward pass, before the processes could average its gradient.
            problems.append(Problem("training.fused_backward_pass", "cannot be used with training.num_processes "
                                    f"> 1 (it is {config.training.num_processes})."))
        if config.training.batch_size != 1:
            problems.append(Problem("training.fused_backward_pass", "updates weights during the backward pass, "
                                    f"which needs training.batch_size = 1 (it is {config.training.batch_size})."))
        if opt.name not in FUSED_OPTIMIZERS:
            # Prodigy estimates one step size from all gradients together; one weight at a time it would not.
            problems.append(Problem("training.fused_backward_pass", f"cannot be used with {opt.name}, which needs "
                                    f"every gradient at once to find its step size; use one of "
                                    f"{', '.join(FUSED_OPTIMIZERS)}."))
    return problems


def step_option_problems(config: Config) -> list[Problem]:
    """The timestep range must hold at least one timestep."""
    low, high = config.training.min_timestep, config.training.max_timestep
    if not (isinstance(low, int) and isinstance(high, int) and 0 <= low <= 999 and 1 <= high <= 1000):
        return []  # a value outside its own limits is named by that field's check alone
    if low >= high:
        return [Problem("training.min_timestep", f"must be below training.max_timestep: timesteps are drawn from "
                        f"min_timestep up to but not including max_timestep, and {number_text(low)} to "
                        f"{number_text(high)} holds none. Lower min_timestep or raise max_timestep.")]
    return []
