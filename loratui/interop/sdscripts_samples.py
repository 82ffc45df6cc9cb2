"""Sample prompts and sampling settings between loratui and sd-scripts, both ways (no torch).

sd-scripts keeps everything about a sample picture in its prompt file: each line's ``--n --w --h --l
--s --d --ss``, with fixed defaults for what a line leaves out (no negative prompt, 512×512, CFG 7.5,
30 steps, a random seed, ``sample_sampler``). loratui has run-wide settings that a prompt's own options
replace. The export writes every prompt with all its options spelled out, so sd-scripts draws what
loratui would; the import keeps each prompt's options and folds the ones most prompts share back into
the run-wide settings, so an exported config comes back as it was written.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from loratui.interop.report import MappingReport
from loratui.interop.sdscripts_source import SD_SCRIPTS_DEFAULTS, as_int
from trainer.contract.config.schema import Config, effective_resolution, native_resolution
from trainer.contract.sample_prompts import SAMPLERS, PromptError, SamplePrompt, parse_prompt, sampler_name

GUIDANCE_SCALE = {"sd15": 7.5, "sdxl": 5.0}
"""The diffusers pipelines' default CFG per architecture (the trainer's ``sampling.GUIDANCE_SCALE``)."""

SD_SCRIPTS_SAMPLE = {"negative": "", "size": 512, "cfg": 7.5, "steps": SD_SCRIPTS_DEFAULTS["sample_steps"],
                     "sampler": "ddim"}
"""What sd-scripts draws a prompt line with when it leaves an option out (``train_util.sample_image_inference``)."""

MAX_SEED = 2**32

_ATTRIBUTES = {"s": "steps", "l": "cfg", "n": "negative"}
"""The ``SamplePrompt`` attribute each folded option sets."""


# ---- export ---------------------------------------------------------------------------------------------------


def resolved_prompts(config: Config, arch: str) -> list[SamplePrompt]:
    """Every configured prompt with every option settled as the trainer draws it (blank prompts skipped)."""
    out = config.output
    size = effective_resolution(config, arch)
    prompts = []
    for index, line in enumerate(p for p in out.sample_prompts if p.strip()):
        own = parse_prompt(line)
        negative = out.sample_negative_prompt if own.negative is None else own.negative
        cfg = own.cfg if own.cfg is not None else out.sample_cfg
        prompts.append(SamplePrompt(
            own.text, negative=negative or None, cfg=cfg or GUIDANCE_SCALE[arch], steps=own.steps or out.sample_steps,
            width=own.width or size, height=own.height or size,
            seed=own.seed if own.seed is not None else (out.sample_seed + index) % MAX_SEED,
            sampler=own.sampler if own.sampler not in (None, out.sample_sampler) else None))
    return prompts


def prompt_file(config: Config, arch: str) -> str:
    """sd-scripts' prompt file for the config's prompts, every option written out."""
    prompts = resolved_prompts(config, arch)
    lines = [f"# Sample prompts written by `loratui export` ({len(prompts)} prompts).",
             "# --n negative prompt, --w/--h size, --l CFG scale, --s steps, --d seed, --ss sampler "
             "(sd-scripts' prompt options)."]
    return "\n".join(lines + [prompt.line() for prompt in prompts]) + "\n"


def export_samples(config: Config, report: MappingReport) -> list[tuple[str, Any]]:
    """The sampling keys of sd-scripts' config (the prompt file itself is ``prompt_file``)."""
    out = config.output
    pairs: list[tuple[str, Any]] = [("sample_sampler", out.sample_sampler)]
    report.map("output.sample_sampler", "sample_sampler")
    if out.sample_every_n_steps:
        pairs.append(("sample_every_n_steps", out.sample_every_n_steps))
        report.approx("output.sample_every_n_steps", "sample_every_n_steps", out.sample_every_n_steps,
                      "sd-scripts also draws at a step where an epoch's end draws (loratui draws that set once)")
    else:
        report.map("output.sample_every_n_steps", "sample_every_n_steps", 0, "not written: no samples by step")
    if any(p.strip() for p in out.sample_prompts):
        for key, option in (("sample_negative_prompt", "--n"), ("sample_cfg", "--l")):
            report.map(f"output.{key}", f"sample_prompts.txt {option}")
    else:
        for key in ("sample_negative_prompt", "sample_cfg"):
            if getattr(out, key):
                report.drop(f"output.{key}", getattr(out, key), "kept in the prompt file, and there are no prompts")
    return pairs


def export_step_saves(config: Config, report: MappingReport) -> list[tuple[str, Any]]:
    """``save_every_n_steps``, and the newest checkpoints kept as sd-scripts counts them (in steps)."""
    out = config.output
    if not out.save_every_n_steps:
        report.map("output.save_every_n_steps", "save_every_n_steps", 0, "not written: no saves by step")
        return []
    pairs: list[tuple[str, Any]] = [("save_every_n_steps", out.save_every_n_steps)]
    report.map("output.save_every_n_steps", "save_every_n_steps")
    if out.keep_last_n_checkpoints:
        pairs.append(("save_last_n_steps", out.keep_last_n_checkpoints * out.save_every_n_steps))
    return pairs


# ---- import ---------------------------------------------------------------------------------------------------


def import_samples(importer: Any) -> None:
    """Map sd-scripts' sampling keys and prompt file onto ``importer`` (an ``sdscripts_import.Importer``)."""
    src, report = importer.src, importer.report
    importer.take("sample_every_n_steps", "output.sample_every_n_steps", as_int)
    path = src.get("sample_prompts")
    given = src.get("sample_sampler")
    sampler = sampler_name(given if given is not None else SD_SCRIPTS_SAMPLE["sampler"])
    if given is not None and sampler is not None:
        importer.mapped("sample_sampler", given, "output.sample_sampler", sampler)
    elif given is not None:
        sampler = "euler"
        report.approx("sample_sampler", "output.sample_sampler", given,
                      f"loratui has no such sampler; Euler draws instead (it has {', '.join(SAMPLERS)})")
    elif path:
        importer.set("output.sample_sampler", sampler)
        report.default("output.sample_sampler", sampler, "sd-scripts' default sampler")
    if path and importer.hints.prompts is None:
        report.drop("sample_prompts", path, importer.hints.prompt_source or "the prompt file could not be read")
    if importer.hints.prompts is None:
        return
    prompts = [_read_prompt(text, options, report) for text, options in
               zip(importer.hints.prompts, importer.hints.prompt_options)]
    # A prompt's size or CFG is left out only when it equals what loratui would use anyway, which needs the
    # architecture: with model.arch = auto an SD1.5 default could turn into SDXL's once the model is read.
    arch = importer.arch
    size = importer.values.get("dataset", {}).get("resolution") or (native_resolution(arch) if arch else None)
    prompts = _fold(importer, prompts, sampler or "euler", size, arch)
    importer.set("output.sample_prompts", [p.line() for p in prompts])
    report.map("sample_prompts", f"output.sample_prompts ({len(prompts)} prompts from "
               f"{importer.hints.prompt_source})", src.args.get("sample_prompts"))


def _read_prompt(text: str, options: dict[str, str], report: MappingReport) -> SamplePrompt:
    """One prompt file line as loratui reads it; each option it cannot use is reported and left out."""
    kept = []
    for key, value in options.items():
        try:
            parse_prompt(f"x --{key} {value}")
        except PromptError as exc:
            report.drop(f"sample_prompts --{key}", value, f"{exc}; left out of the prompt {text!r}")
            continue
        kept.append(f"--{key} {value}")
    return parse_prompt(" ".join([text, *kept]))


def _shared(values: list[Any], default: Any) -> Any:
    """The run-wide value for one option: the commonest when every prompt gives it, else sd-scripts' default."""
    if values and all(v is not None for v in values):
        return Counter(values).most_common(1)[0][0]
    return default


def _fold(importer: Any, prompts: list[SamplePrompt], sampler: str, size: int | None,
          arch: str | None) -> list[SamplePrompt]:
    """Set the run-wide sample settings from what the prompts share; each prompt keeps only what differs.

    ``size`` and ``arch`` are None when the architecture is not known yet: then a prompt keeps its own
    size, and the CFG scale is written out, since the defaults they would match are not known."""
    report = importer.report
    steps = _shared([p.steps for p in prompts], SD_SCRIPTS_SAMPLE["steps"])
    cfg = _shared([p.cfg for p in prompts], SD_SCRIPTS_SAMPLE["cfg"])
    negative = _shared([p.negative for p in prompts], SD_SCRIPTS_SAMPLE["negative"])
    # 0 is "the pipeline's own scale": the same pictures, and the config reads as the default.
    for option, value, dotted, ours in (("s", steps, "output.sample_steps", steps),
                                        ("l", cfg, "output.sample_cfg", 0.0 if arch and cfg == GUIDANCE_SCALE[arch] else cfg),
                                        ("n", negative, "output.sample_negative_prompt", negative)):
        if any(getattr(p, _ATTRIBUTES[option]) is not None for p in prompts):
            importer.mapped(f"sample_prompts --{option}", value, dotted, ours)
        else:
            importer.set(dotted, ours)
            report.default(dotted, ours, f"sd-scripts' own for a prompt without --{option}")
    first = next(((i, p.seed) for i, p in enumerate(prompts) if p.seed is not None), None)
    base = first[1] - first[0] if first is not None and first[1] >= first[0] else None
    if base is not None:
        importer.mapped("sample_prompts --d", first[1], "output.sample_seed", base)
    if any(p.seed is None for p in prompts):
        report.approx("sample_prompts --d", "output.sample_seed", None, "sd-scripts draws a prompt without --d "
                      "from a random seed; loratui gives prompt i the seed sample_seed + i, so sets compare")
    if any(p.width is None or p.height is None for p in prompts) and size != SD_SCRIPTS_SAMPLE["size"]:
        at = f" ({size}×{size})" if size else ""
        report.approx("sample_prompts --w --h", "output.sample_prompts", None, "sd-scripts draws a prompt without "
                      f"--w/--h at 512×512; loratui at the training resolution{at}")
    return [SamplePrompt(p.text, negative=None if p.negative in (None, negative) else p.negative,
                         cfg=None if p.cfg in (None, cfg) else p.cfg, steps=None if p.steps in (None, steps) else p.steps,
                         width=None if p.width is None or p.width == size else p.width,
                         height=None if p.height is None or p.height == size else p.height,
                         seed=None if p.seed is None or (base is not None and p.seed == base + i) else p.seed,
                         sampler=None if p.sampler in (None, sampler) else p.sampler)
            for i, p in enumerate(prompts)]


def import_step_saves(importer: Any) -> None:
    """``save_every_n_steps``, and ``save_last_n_steps`` as a count of checkpoints when nothing else gives one."""
    src, report = importer.src, importer.report
    every = importer.take("save_every_n_steps", "output.save_every_n_steps", as_int)
    if src.has("save_last_n_epochs") or not (every and src.has("save_last_n_steps")):
        importer.take("save_last_n_epochs", "output.keep_last_n_checkpoints", as_int, default=0,
                      default_note="sd-scripts keeps every checkpoint unless told")
    if not src.has("save_last_n_steps"):
        return
    last = as_int(src.get("save_last_n_steps"))
    if not every:
        report.drop("save_last_n_steps", last, "no checkpoints are saved by step")
    elif src.has("save_last_n_epochs"):
        kept = importer.values["output"]["keep_last_n_checkpoints"]
        if last != kept * every:
            report.approx("save_last_n_steps", "output.keep_last_n_checkpoints", last,
                          f"loratui keeps one number of checkpoints of both kinds ({kept}, from save_last_n_epochs)")
    else:
        importer.mapped("save_last_n_steps", last, "output.keep_last_n_checkpoints", -(-last // every),
                        f"the checkpoints of the last {last} steps, saved every {every}")
