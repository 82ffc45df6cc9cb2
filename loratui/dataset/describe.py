"""The words for a dataset report and a tagging job: shared by ``loratui dataset`` and the dataset screen."""

from __future__ import annotations

SHOWN_PER_CODE = 20
"""Text output lists this many files per issue code unless asked for all (JSON always lists all)."""
GROUP_FROM = 3
"""From this many files with the same finding, text output says it once and lists the names."""
NAMES_SHOWN = 3
"""A grouped finding names this many files, then says how many more (all of them with --all)…"""
NAMES_ALL_UP_TO = 5
"""…unless there are at most this many: then it names them all."""


def plural(count: int, word: str) -> str:
    """``1 image`` / ``2 images``."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def histogram(pairs, limit: int = 6) -> str:
    """``512×512 (10), 768×512 (2)``: the commonest sizes first, at most ``limit`` of them."""
    shown = ", ".join(f"{w}×{h} ({n})" for (w, h), n in pairs[:limit])
    more = len(pairs) - limit
    return shown + (f", and {more} more" if more > 0 else "") if pairs else "none"


def format_report(report, limit: int | None = SHOWN_PER_CODE, notes: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The text form of a ``DatasetReport``: the summary, then issues grouped by code.

    A finding shared by :data:`GROUP_FROM` files or more is said once, followed by the files'
    names (the first few, or all of them when ``limit`` is None); other findings get a line per
    file, at most ``limit`` per code. ``notes`` go under the first line (where settings came from).
    """
    from loratui.dataset.report import printable

    settings = report.settings
    trigger = f', trigger "{settings["trigger_word"]}"' if settings["trigger_word"] else ""
    root = printable(str(report.root))
    lines = [f"{root}: {plural(len(report.images), 'usable image')}, {report.effective_images} per epoch with "
             f"repeats ({settings['resolution']} px{trigger}, {settings['kind']} LoRA)"]
    lines += [f"  {note}" for note in notes]
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
        shared = group_finding(report, code, issues)
        if shared is not None:
            lines.append(f"  {shared}:")
            names = [report.relative(issue.path) for issue in issues]
            lines.append(f"    {name_list(names, everything=limit is None)}")
            continue
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


def group_finding(report, code: str, issues: list) -> str | None:
    """One sentence for a finding many files share, or None to list the files one by one.

    The commonest findings have their own sentence (a too-small image's message names its size, so
    no two are alike); any other finding is grouped when every file got the very same message.
    """
    if len(issues) < GROUP_FROM:
        return None
    settings, count = report.settings, len(issues)
    if code == "too_small":
        side = settings["resolution"]
        outcome = ("they train at their own, smaller sizes" if settings.get("use_buckets", True)
                   and not settings.get("bucket_upscale", False) else "they are scaled up, which blurs them")
        return (f"{count} images are well below the training size {side}×{side} (under half its area): {outcome}. "
                "Larger sources teach more detail")
    if code in ("missing_caption", "empty_caption"):
        what = "no caption" if code == "missing_caption" else "an empty caption"
        return f"{count} images have {what}, so they train on the trigger word alone"
    if code == "no_trigger":
        return (f"{count} captions lack the trigger word \"{settings['trigger_word']}\"; the trainer puts it first "
                "anyway, and the files stay as they are")
    messages = {issue.message for issue in issues}
    if len(messages) == 1:
        # The messages are written to follow a file's name ("is empty …"), which "each of which" keeps.
        return f"{count} files, each of which {messages.pop().rstrip('.')}"
    return None


def name_list(names: list[str], everything: bool = False) -> str:
    """``a.png, b.png, c.png … (and 9 more)``: the first few names, or all of them."""
    if everything or len(names) <= NAMES_ALL_UP_TO:
        return ", ".join(names)
    return f"{', '.join(names[:NAMES_SHOWN])} … (and {len(names) - NAMES_SHOWN} more; --all lists them)"


def describe_tagging_event(event: dict, in_app: bool = False, tagger: str | None = None) -> str | None:
    """A line for a tagging event worth keeping on screen (None for progress, which is redrawn).

    The job's advice is written for the command line. With ``in_app`` (the dataset screen), advice
    that names the ``--model`` option is replaced by :func:`app_model_advice` for ``tagger``: in the
    app the model is chosen in the auto-caption dialog's Model field.
    """
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
        advice = event.get("advice") or ""
        if in_app and "--model" in advice:
            advice = app_model_advice(tagger or event.get("tagger") or "wd14")
        advice = f"\n  {advice}" if advice else ""
        return f"error: {event.get('message')}{advice}"
    if kind in ("done", "stopped"):
        verb = "Done" if kind == "done" else "Stopped"
        failed = f", {event.get('failed')} could not be read" if event.get("failed") else ""
        left = f", {event.get('remaining')} not reached" if event.get("remaining") else ""
        return (f"{verb}: {plural(event.get('changed', 0), 'caption')} written, {event.get('kept', 0)} kept as "
                f"they were{failed}{left}.")
    return None


def app_model_advice(tagger: str) -> str:
    """What to do in the app when a tagger model cannot be found or fetched: the dialog's Model field."""
    from trainer.contract.tagging_jobs import MODEL_CONTENTS

    contents = MODEL_CONTENTS.get(tagger, "the model's files")
    return (f"Press w and put in the Model field a folder on this machine that holds {contents}. A hub id "
            "there only works when this machine has network (copy the model files over if it has none).")
