"""The words for a dataset report and a tagging job: shared by ``loratui dataset`` and the dataset screen."""

from __future__ import annotations

SHOWN_PER_CODE = 20
"""Text output lists this many files per issue code unless asked for all (JSON always lists all)."""


def plural(count: int, word: str) -> str:
    """``1 image`` / ``2 images``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def histogram(pairs, limit: int = 6) -> str:
    """``512×512 (10), 768×512 (2)``: the commonest sizes first, at most ``limit`` of them."""
    shown = ", ".join(f"{w}×{h} ({n})" for (w, h), n in pairs[:limit])
    more = len(pairs) - limit
    return shown + (f", and {more} more" if more > 0 else "") if pairs else "none"


def format_report(report, limit: int | None = SHOWN_PER_CODE) -> list[str]:
    """The text form of a ``DatasetReport``: the summary, then issues grouped by code, each naming its file."""
    from loratui.dataset.report import printable

    settings = report.settings
    trigger = f', trigger "{settings["trigger_word"]}"' if settings["trigger_word"] else ""
    root = printable(str(report.root))
    lines = [f"{root}: {plural(len(report.images), 'usable image')}, {report.effective_images} per epoch with "
             f"repeats ({settings['resolution']} px{trigger}, {settings['kind']} LoRA)"]
    for folder in report.folders:
        name = "(top level)" if folder.path == report.root else report.relative(folder.path) + "/"
        lines.append(f"  {name:<24} {plural(folder.images, 'image'):>12} × {plural(folder.repeats, 'repeat'):<11} "
                     f"= {folder.effective_images:>6}")
    lines.append(f"  sizes:    {histogram(report.resolutions())}")
    lines.append(f"  buckets:  {histogram(report.buckets())}")
    captions = report.captions()
    parts = [f"{captions['missing']} missing", f"{captions['empty']} empty"]
    if settings["trigger_word"]:
        parts.append(f"{captions['no_trigger']} without the trigger word")
    lines.append(f"  captions: {', '.join(parts)}")
    near = ("near-duplicates not checked" if report.near_duplicates is None
            else plural(len(report.near_duplicates), "group") + " of near-duplicates")
    lines.append(f"  copies:   {plural(len(report.duplicates), 'group')} of exact duplicates, {near}")
    lines.append(f"  size:     {report.size_verdict}")

    for code, issues in report.by_code().items():
        lines.append("")
        lines.append(f"{issues[0].severity.upper()} {code}: {plural(len(issues), 'file')}")
        for issue in issues[:limit]:
            lines.append(f"  {report.relative(issue.path)}: {issue.message}")
        if limit is not None and len(issues) > limit:
            lines.append(f"  … and {len(issues) - limit} more (--all lists them, --format json too)")
    lines.append("")
    errors = report.count("error")
    if errors:
        lines.append(f"{plural(errors, 'problem')} will keep files out of training or stop it: fix or remove "
                     "them before you train.")
    elif report.count("warning"):
        lines.append("Nothing blocks training; the warnings above are worth a look.")
    else:
        lines.append("Nothing blocks training.")
    return lines


def describe_tagging_event(event: dict) -> str | None:
    """A line for a tagging event worth keeping on screen (None for progress, which is redrawn)."""
    from trainer.contract.tagging_jobs import MODEL_NAMES

    kind = event.get("type")
    if kind == "status" and event.get("phase") == "loading":
        return f"{event.get('message', 'Loading the model')}…"
    if kind == "start":
        device = f" on {event['device']}" if event.get("device") else ""
        tagger = MODEL_NAMES.get(event.get("tagger"), event.get("tagger"))
        return (f"Captioning {event.get('to_caption')} of {plural(event.get('images', 0), 'image')} with the "
                f"{tagger} ({event.get('mode')} mode){device}.")
    if kind == "warning":
        return f"warning: {event.get('message')}"
    if kind == "error":
        advice = f"\n  {event['advice']}" if event.get("advice") else ""
        return f"error: {event.get('message')}{advice}"
    if kind in ("done", "stopped"):
        verb = "Done" if kind == "done" else "Stopped"
        failed = f", {event.get('failed')} could not be read" if event.get("failed") else ""
        left = f", {event.get('remaining')} not reached" if event.get("remaining") else ""
        return (f"{verb}: {plural(event.get('changed', 0), 'caption')} written, {event.get('kept', 0)} kept as "
                f"they were{failed}{left}.")
    return None
