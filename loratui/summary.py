"""The one-line summary the screens show: steps, problems and advice, and the estimates."""

from __future__ import annotations

from loratui.assess import Assessment, Estimates
from loratui.runs.state import format_duration
from trainer.contract.validation_split import held_out_count

GIB = 2**30


def estimates_text(estimates: Estimates | None) -> str:
    """``file ~57 MB · 10.9 GiB of the RTX 4090's 24 ✓ · about 40–45 min`` (what is known of it)."""
    if estimates is None:
        return ""
    need = estimates.vram.total / GIB
    parts = [f"file ~{estimates.file_size / 1e6:.0f} MB" if estimates.file_size >= 1e6
             else f"file ~{estimates.file_size / 1e3:.0f} kB"]
    if estimates.gpu is None:
        parts.append(f"GPU memory ~{need:.1f} GiB (no GPU here)")
    else:
        have = estimates.gpu.memory_total_mib / 1024
        mark = "fits" if estimates.fits else "does NOT fit"
        parts.append(f"GPU memory ~{need:.1f} of {have:.0f} GiB: {mark}")
        duration = estimates.duration
        if duration is None:
            parts.append("no speed figure for this GPU yet")
        else:
            low, high = format_duration(duration.total_seconds_low), format_duration(duration.total_seconds_high)
            span = low if low == high else f"{low}–{high}"
            origin = "measured on this GPU" if duration.measured else "user reports"
            if duration.scaled_from_batch:  # an upper bound: a larger batch usually costs less per image
                origin += f" at batch {duration.scaled_from_batch}, scaled"
            parts.append(f"about {span} ({origin})")
    return " · ".join(parts)


def formula_words(plan) -> str:
    """The guide's formula worked out for a plan, and why the exact count differs from it: the repeats are
    an average when kohya folders repeat their images differently (hence a fraction), and each
    aspect-ratio bucket rounds its last, partial batch up to a whole step. Regularization images
    (``dataset.reg_path``) are included, as their own term."""
    if plan.images and plan.samples_per_epoch % plan.images == 0:
        count = f"{plan.images} images × {plan.samples_per_epoch // plan.images} repeats"
    else:
        count = f"{plan.images} images with their folders' repeats ({plan.samples_per_epoch} per epoch)"
    reg = plan.reg_samples_per_epoch
    if reg:
        # Regularization images count as sd-scripts counts them: about as many samples as the training images.
        count = f"({count} + {reg} regularization samples)"
    words = f"guide's formula: {count} × {plan.epochs} epochs ÷ {batch_words(plan)} = {plan.formula_steps:g}"
    if plan.total_steps != plan.formula_steps:
        partial = "each bucket's last, partial batch is a whole step" if plan.effective_batch == plan.batch_size \
            else "partial batches and updates count whole"
        words += f"; {partial}, so {plan.total_steps}"
    return words


def held_out_words(assessment: Assessment) -> str:
    """`` + 2 held out for validation`` when ``training.validation_split`` holds images out, else ""."""
    scan = assessment.facts.scan if assessment.facts is not None else None
    held = held_out_count(len(scan.images), assessment.config.training.validation_split) if scan else 0
    return f" + {held} held out for validation" if held else ""


def batch_words(plan) -> str:
    """``batch 4``, or with accumulation or several processes the effective batch worked out:
    ``batch 2 × 4 accumulated × 2 processes (16)``."""
    words = f"batch {plan.batch_size}"
    if plan.accumulation > 1:
        words += f" × {plan.accumulation} accumulated"
    if plan.processes > 1:
        words += f" × {plan.processes} processes"
    return words if plan.effective_batch == plan.batch_size else f"{words} ({plan.effective_batch})"


def summary_line(assessment: Assessment | None) -> str:
    """``630 steps (formula 625) · sdxl · 1 problem · 2 warnings`` and, when known, size and memory."""
    if assessment is None:
        return "checking…"
    parts = []
    plan = assessment.plan
    if plan is not None:
        parts.append(f"{plan.images} images{held_out_words(assessment)} · {plan.total_steps} steps "
                     f"(guide's formula {plan.formula_steps:g})")
    parts.append(assessment.arch or "architecture unknown")
    parts += summary_notes(assessment)
    return " · ".join(parts)


def summary_notes(assessment: Assessment, problems: bool = True) -> list[str]:
    """The summary's words about the model's prediction, size and memory, problems (unless the
    screen lists them itself) and the guide's findings, counted by severity."""
    notes = []
    prediction = assessment.prediction
    if prediction is not None and prediction.prediction == "v_prediction":
        notes.append("v-prediction" + (" + zero terminal SNR" if prediction.zero_terminal_snr else ""))
    estimates = estimates_text(assessment.estimates)
    if estimates:
        notes.append(estimates)
    if problems and assessment.problems:
        count = len(assessment.problems)
        notes.append(f"{count} problem{'s' if count != 1 else ''} to fix")
    for severity, word in (("danger", "danger"), ("warn", "warning"), ("tip", "tip")):
        count = sum(1 for f in assessment.findings if f.severity == severity)
        if count:
            notes.append(f"{count} {word}{'s' if count != 1 else ''}")
    return notes


def display_path(path) -> str:
    """A path as the user would type it here: relative to the working folder when inside it, else
    with ``~`` for the home folder, else whole (never cut at the left, which hides the leading /)."""
    from pathlib import Path

    path = Path(path)
    try:
        resolved = path.resolve()
    except OSError:
        return str(path)
    for base, prefix in ((Path.cwd().resolve(), ""), (Path.home().resolve(), "~/")):
        if resolved.is_relative_to(base) and resolved != base:
            return prefix + str(resolved.relative_to(base))
    return str(resolved)
