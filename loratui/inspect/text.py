"""The inspection report as lines of plain text, 76 columns wide (the CLI and the app's screen show the same)."""

from __future__ import annotations

from loratui.inspect.base_model import ARCH_LABELS
from loratui.inspect.lora_file import PART_LABELS, BlockRow
from loratui.inspect.report import LoraReport
from loratui.inspect.size import megabytes

WIDTH = 76
"""Fits an 80-column terminal beside the app's padding and scroll bar."""


def _values(values, counted: bool = False) -> str:
    """``8``, ``4–16`` or ``4, 8``; with ``counted``, ``(value, modules)`` pairs as ``8 ×40, 4 ×12``."""
    if counted:
        return ", ".join(f"{v:g} ×{n}" for v, n in values)
    values = list(values)
    if not values:
        return "-"
    if len(values) > 3:
        return f"{values[0]:g}–{values[-1]:g}"
    return ", ".join(f"{v:g}" for v in values)


def _ranks(report: LoraReport) -> str:
    """``dim 8 · alpha 4 (scale 0.5) · conv dim 4 · conv alpha 1``, or what varies."""
    network = report.network
    words = "block size" if network.kind in ("boft", "oft", "diag-oft") else "dim"
    alpha_word = "constraint" if network.kind in ("boft", "oft", "diag-oft") else "alpha"
    parts = []
    for label, dims, alphas in ((words, network.dims, network.alphas),
                                (f"conv {words}", network.conv_dims, network.conv_alphas)):
        if not dims and not alphas:
            continue
        if len(dims) == 1:
            parts.append(f"{label} {dims[0][0]}")
        elif dims:
            parts.append(f"{label} varies ({_values(dims, counted=True)})")
        elif network.kind == "lokr" and label == words:
            parts.append(f"{label} full")
        alpha_label = alpha_word if label == words else f"conv {alpha_word}"
        missing = sum(n for _, n in dims) - sum(n for _, n in alphas)
        if len(alphas) == 1:
            scale = f" (scale {alphas[0][0] / dims[0][0]:.3g})" \
                if len(dims) == 1 and dims[0][0] > 0 and alpha_word == "alpha" and missing <= 0 else ""
            parts.append(f"{alpha_label} {alphas[0][0]:g}{scale}")
        elif alphas:
            parts.append(f"{alpha_label} varies ({_values(alphas, counted=True)})")
        if alpha_word == "alpha" and dims and missing > 0:
            where = f" on {missing}" if alphas else ""
            parts.append(f"{alpha_label} not stored{where} (= dim{' there' if alphas else ''})")
    return " · ".join(parts)


def _block_line(row: BlockRow) -> str:
    return (f"  {row.block:<16}{row.modules:>7}  {_values(row.dims):<9}{_values(row.alphas):<9}"
            f"{_values(row.conv_dims):<9}{_values(row.conv_alphas):<11}{megabytes(row.nbytes):>9}")


def _wrap(label: str, text: str, indent: int = 14) -> list[str]:
    """``label`` then ``text`` wrapped at ``WIDTH`` with continuation lines indented."""
    words, lines, line = text.split(" "), [], f"  {label:<{indent - 2}}"
    start = len(line)
    for word in words:
        if len(line) + len(word) + 1 > WIDTH and len(line) > start:
            lines.append(line.rstrip())
            line = " " * indent
        line += word + " "
    lines.append(line.rstrip())
    return lines


def format_report(report: LoraReport, tags: int = 10) -> list[str]:
    """The whole report as text lines: summary, notes, blocks, base model, training and tags."""
    network, base, size = report.network, report.base_model, report.size
    layout = "diffusers layout" if network.diffusers_format else "kohya layout"
    lines = [f"{report.path}", f"  {megabytes(size.size)} · {layout} · {network.precision or 'mixed dtypes'}"]
    lines += _wrap("network", f"{network.label} · {_ranks(report)}".rstrip(" ·"))
    counts = ", ".join(f"{PART_LABELS[part]} {n}" for part, n in network.parts)
    lines += _wrap("modules", f"{sum(n for _, n in network.parts)}: {counts}")
    if network.from_metadata and network.from_metadata != network.kind:
        lines += _wrap("", f"(the metadata names it {network.from_metadata})")
    arch = base.label
    if base.from_metadata and base.from_weights and base.from_metadata != base.from_weights:
        arch += f" (metadata: {ARCH_LABELS[base.from_metadata]})"
    lines += _wrap("base model", arch + (f": {'; '.join(base.evidence)}" if base.evidence else ""))
    if base.model_name or base.model_hash:
        model_hash = f" [{base.model_hash[:10]}]" if base.model_hash else ""
        vae = f", VAE {base.vae}" if base.vae else ""
        lines += _wrap("", f"trained on {base.model_name or '?'}{model_hash}{vae}")
    lines += _wrap("file size", size.message)
    if size.standard_size is not None:
        same = "exactly those layers" if size.standard_layers else "a different set of layers"
        lines += _wrap("", f"a standard {base.label} {network.label} at dim {network.dim} saves "
                           f"{megabytes(size.standard_size)}; this file adapts {same}")
    if report.resize is not None:
        offer = report.resize
        lines += _wrap("", f"to bring it within range, resize to dim {offer.dim} (it is {offer.from_dim} now), "
                           f"about {megabytes(offer.size)}:")
        lines.append(" " * 16 + offer.command)  # never wrapped: it is there to be copied whole
    if report.loaders:
        works = [name for name, status, _ in report.loaders if status == "works"]
        lines += _wrap("applies in", ", ".join(works) if works else "none of the usual UIs")
        for name, status, why in report.loaders:
            if status != "works":
                lines += _wrap(f"not {name}", why)
    for note in report.notes:
        lines += _wrap("note", note)
    lines += ["", "Blocks", f"  {'block':<16}{'modules':>7}  {'dim':<9}{'alpha':<9}{'conv dim':<9}{'conv alpha':<11}"
              f"{'size':>9}"]
    lines += [_block_line(row) for row in report.blocks]
    training = report.training
    if training.settings:
        lines += ["", "Training"]
        for label, value in training.settings:
            lines += _wrap(label, value, indent=30)
    if training.dataset_dirs:
        lines += ["", "Dataset folders"]
        for folder, info in training.dataset_dirs.items():
            lines.append(f"  {folder}: {info.get('img_count', '?')} images × {info.get('n_repeats', '?')} repeats")
    lines += _tag_lines(report, tags)
    return lines


def _tag_lines(report: LoraReport, count: int) -> list[str]:
    frequency = report.training.tag_frequency
    if count <= 0 or not any(frequency.values()):
        return [] if count <= 0 else ["", "Tags: none recorded in the metadata."]
    top = report.training.top_tags(count)
    distinct = len({tag for tags in frequency.values() for tag in tags})
    lines = ["", f"Tags (top {len(top)} of {distinct})"]
    lines += [f"  {n:>6}  {tag}" for tag, n in top]
    if len(frequency) > 1:
        for folder, tags in frequency.items():
            shown = ", ".join(f"{tag} {n}" for tag, n in list(tags.items())[:max(3, count // 2)])
            lines += _wrap(f"{folder}:", shown or "-", indent=4 + min(len(folder), 24))
    return lines
