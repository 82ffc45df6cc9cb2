"""The ``loratui dataset`` commands: look after a folder of training images before renting a GPU.

    loratui dataset scan DIR [--config FILE] [--resolution N] [--trigger WORD] [--kind KIND]
                             [--no-similar] [--format text|json]
    loratui dataset trigger DIR WORD
    loratui dataset tags DIR [--remove TAG]… [--replace OLD=NEW]… [--dedupe] [--sort] [--table]
    loratui dataset undo DIR
    loratui dataset history DIR
    loratui dataset tag DIR --tagger wd14|blip [--model PATH_OR_ID] [--mode keep|append|overwrite]
                            [--threshold F] [--character-threshold F] [--keep-underscores]
                            [--trigger WORD] [--detach]

Each command is a sub-parser of ``_build_parser()`` and a function in ``COMMANDS``; adding one
means adding both. Exit status: 0 when nothing blocks training, 1 when something does (an
error-severity issue), 2 when the input cannot be used at all (DIR is not a readable folder).
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from loratui.cli.common import DEFAULT_CONFIG, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from loratui.dataset.describe import SHOWN_PER_CODE, describe_tagging_event, format_report



def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loratui dataset", description="Check and tidy a folder of training images and captions.",
        epilog="`loratui dataset COMMAND --help` tells more.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    scan = commands.add_parser("scan", help="report what will go wrong with a dataset folder (changes nothing)",
                               description=(
        "Read every image's header and every caption in DIR, the way the trainer will, and report: images and "
        "repeats per folder, sizes and training buckets, missing or empty captions, captions without the trigger "
        "word, duplicates and near-duplicates, images too small for the resolution, and every file the trainer "
        "would skip or choke on, with the reason. Nothing in DIR is changed. The resolution, trigger word, kind, "
        f"repeats and bucket settings come from the training config (--config, or ./{DEFAULT_CONFIG} when it "
        "exists) unless given here; the report says where each came from. Exit status 1 when some file cannot "
        "be trained, 2 when DIR is not a readable folder, else 0."))
    scan.add_argument("dir", type=Path, help="the dataset folder (images plus captions, or N_name sub-folders)")
    scan.add_argument("--config", type=Path, metavar="FILE",
                      help=f"the training config to take the settings from (default: ./{DEFAULT_CONFIG} when it "
                           "exists)")
    scan.add_argument("--resolution", type=int,
                      help="training resolution in pixels (default: the config's; without one 1024, SDXL's size; "
                           "SD1.5 usually trains at 768 or 512)")
    scan.add_argument("--trigger", metavar="WORD",
                      help="the trigger word every caption should hold (default: the config's)")
    scan.add_argument("--kind", choices=("character", "style", "concept"),
                      help="what the LoRA teaches, for the guide's dataset size (default: the config's, else "
                           "character)")
    scan.add_argument("--repeats", type=int,
                      help="repeats for images not in an N_name folder (default: the config's, else 1)")
    scan.add_argument("--caption-extension",
                      help="caption file extension (default: the config's, else .txt)")
    scan.add_argument("--no-similar", action="store_true",
                      help="skip the near-duplicate check (it decodes every image; the rest reads headers only)")
    scan.add_argument("--all", action="store_true",
                      help=f"list every file of each issue (default: the first {SHOWN_PER_CODE})")
    scan.add_argument("--model", default="", metavar="MODEL",
                      help="the base model (a diffusers folder): count each caption's tokens with its tokenizer")
    scan.add_argument("--max-token-length", type=int, choices=(75, 150, 225), default=75,
                      help="the tokens the text encoders read (dataset.max_token_length; default 75)")
    scan.add_argument("--reg", type=Path, metavar="REG_DIR",
                      help="a regularization folder (kohya's N_class layout), reported apart from DIR (default: "
                           "the config's dataset.reg_path)")
    scan.add_argument("--format", choices=("text", "json"), default="text")
    _add_caption_commands(commands)
    _add_tag_command(commands)
    return parser


def cmd_scan(args: argparse.Namespace) -> int:
    """Scan a folder and print the report."""
    from loratui.cli.scan_settings import SettingsError, scan_settings
    from loratui.dataset import scan_folder
    from loratui.dataset.reg_report import reg_report
    from loratui.dataset.token_count import tokenizer_folder

    try:
        settings, notes = scan_settings(args)
    except SettingsError as exc:
        print(f"loratui: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    reg_path = settings.pop("reg_path", "")
    args.resolution = settings["resolution"]
    if args.resolution < 64:
        print(f"loratui: --resolution {args.resolution} is too small; SD models train at 512 to 1024.",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    if settings["default_repeats"] < 1:
        print("loratui: --repeats must be 1 or more.", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.model and tokenizer_folder(args.model) is None:
        print(f"loratui: --model {args.model} has no tokenizer/ folder here; give a diffusers model folder "
              "(for a single-file model, the folder its configs come from).", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        report = scan_folder(args.dir, **settings, near_duplicates=not args.no_similar,
                             tokenizer=tokenizer_folder(args.model) if args.model else None,
                             token_window=args.max_token_length)
    except OSError as exc:
        why = "is not a folder" if isinstance(exc, NotADirectoryError) else \
              "does not exist" if isinstance(exc, FileNotFoundError) else f"cannot be read ({exc.strerror or exc})"
        print(f"loratui: {args.dir} {why}. Give the folder that holds your training images.", file=sys.stderr)
        return EXIT_BAD_INPUT
    reg = reg_report(reg_path, str(args.dir), report.effective_images, settings["caption_extension"])
    if args.format == "json":
        data = report.to_json()
        data["settings"]["from"] = notes  # where each setting came from, as the text report says it
        if reg is not None:  # only with a reg folder: the keys of a plain scan stay as they were
            data["regularization"] = reg.to_json()
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print("\n".join(format_report(report, limit=None if args.all else SHOWN_PER_CODE, notes=notes)))
        if reg is not None:
            print("\n" + "\n".join(reg.lines()))
    failed = report.has_errors or (reg is not None and reg.problem is not None)
    return EXIT_FAILED if failed else EXIT_OK


# ── caption tools: trigger · tags · undo · history ───────────────────────────────────────────

_UNDO_NOTE = ("Every change is backed up first, outside DIR, and `loratui dataset undo DIR` reverts it. "
              "Nothing is written unless every caption to change can be written.")


def _add_caption_commands(commands) -> None:
    """The caption tools' sub-parsers (each change they make is backed up and can be undone)."""
    from loratui.caption_tools import KINDS, SORT_ORDERS

    trigger = commands.add_parser("trigger", help="put the trigger word first in every caption (undoable)",
                                  description=(
        "Put WORD first in the caption of every image in DIR, and never twice: a caption holding it elsewhere "
        "has it moved to the front (so keep_tokens = 1 keeps it there), and an image without a caption gets one "
        "holding just WORD. " + _UNDO_NOTE))
    trigger.add_argument("dir", type=Path, help="the dataset folder")
    trigger.add_argument("word", help="the trigger word (a single tag: no commas)")
    trigger.add_argument("--caption-extension", default=".txt", help="caption file extension (default .txt)")

    tags = commands.add_parser("tags", help="tag table with inconsistent tags flagged; remove, replace, "
                                            "dedupe or sort tags (undoable)", description=(
        "Without an action, print how many captions carry each tag, flagging for a character the tags found on "
        "only a few images (the guide: same character, same tags). With actions, apply them in the order "
        "remove, replace, dedupe, sort, as one change. Tags match whole: removing 'hair' leaves 'red hair'. "
        + _UNDO_NOTE))
    tags.add_argument("dir", type=Path, help="the dataset folder")
    tags.add_argument("--remove", action="append", default=[], metavar="TAG",
                      help="remove this tag from every caption (repeatable)")
    tags.add_argument("--replace", action="append", default=[], metavar="OLD=NEW",
                      help="replace tag OLD by NEW where it stands (repeatable; NEW may list several tags "
                           "separated by commas, or be empty to remove OLD)")
    tags.add_argument("--dedupe", action="store_true", help="drop repeated tags, keeping the first")
    tags.add_argument("--sort", action="store_true", help="sort each caption's tags after the first --keep-first")
    tags.add_argument("--sort-by", choices=SORT_ORDERS, default="name",
                      help="name: alphabetical; frequency: tags common in the dataset first (default name)")
    tags.add_argument("--keep-first", type=int, default=1, metavar="N",
                      help="tags --sort leaves in front; match your keep_tokens (default 1: the trigger word)")
    tags.add_argument("--loose", action="store_true",
                      help="match tags ignoring case, underscores and extra spaces (long_hair = Long hair)")
    tags.add_argument("--table", action="store_true", help="also print the tag table after the change")
    tags.add_argument("--kind", choices=KINDS, default="character",
                      help="what the LoRA teaches; only a character's rare tags are flagged (default character)")
    tags.add_argument("--trigger", default="", metavar="WORD", help="the trigger word (never flagged)")
    tags.add_argument("--caption-extension", default=".txt", help="caption file extension (default .txt)")

    undo = commands.add_parser("undo", help="revert the last caption change made to a folder", description=(
        "Put back the captions of DIR as they were before the newest change that still stands (run it again to "
        "go further back). Captions the change created are removed. A caption edited after the change is kept "
        "as it is, and its earlier text is written beside it as NAME.undo-conflict, so nothing is lost."))
    undo.add_argument("dir", type=Path, help="the dataset folder")

    history = commands.add_parser("history", help="list the caption changes made to a folder, newest first")
    history.add_argument("dir", type=Path, help="the dataset folder")


def _load_captions(folder: Path, extension: str) -> dict[Path, str] | None:
    """Every usable image's caption text (missing = ""), or None after printing why there is none."""
    from loratui.caption_tools import load_texts
    from trainer.contract.dataset_scan import IMAGE_EXTENSIONS

    if not folder.is_dir():
        print(f"loratui: {folder} is not a folder. Give the folder that holds your training images.",
              file=sys.stderr)
        return None
    try:
        texts = load_texts(folder, extension if extension.startswith(".") else "." + extension)
    except (OSError, ValueError) as exc:
        print(f"loratui: {folder} cannot be read ({getattr(exc, 'strerror', None) or exc}).", file=sys.stderr)
        return None
    if not texts:
        print(f"loratui: no usable images in {folder} (looked for {' '.join(IMAGE_EXTENSIONS)}).", file=sys.stderr)
        return None
    return texts


def _apply_change(folder: Path, original: dict[Path, str], edits: dict[Path, str], action: str) -> int:
    """Apply one change through the caption store and say what it did and how to undo it."""
    from trainer.contract.caption_store import CaptionWriteError, apply_edits

    try:
        change = apply_edits(folder, edits, action)
    except CaptionWriteError as exc:
        print(f"loratui: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if change is None:
        print(f"Nothing to change: the {len(original)} captions already are that way ({action}).")
        return EXIT_OK
    created = len(change.created_files)
    new = f", {created} of them new" if created else ""
    print(f"{action}: changed {len(change.files)} of {len(original)} captions{new}.")
    print(f"Undo with: loratui dataset undo {shlex.quote(str(folder))}")
    return EXIT_OK


def cmd_trigger(args: argparse.Namespace) -> int:
    """Put the trigger word first in every caption."""
    from loratui.caption_tools import add_trigger, check_trigger

    try:
        word = check_trigger(args.word)
    except ValueError as exc:
        print(f"loratui: {exc}.", file=sys.stderr)
        return EXIT_BAD_INPUT
    texts = _load_captions(args.dir, args.caption_extension)
    if texts is None:
        return EXIT_BAD_INPUT
    return _apply_change(args.dir, texts, add_trigger(texts, word), f"add trigger word '{word}'")


def cmd_tags(args: argparse.Namespace) -> int:
    """Print the tag table, or remove/replace/dedupe/sort tags as one undoable change."""
    from loratui.caption_tools import dedupe_tags, remove_tags, replace_tag, sort_tags
    from trainer.contract.captions import split_tags

    replacements = []
    for item in args.replace:
        old, sep, new = item.partition("=")
        if not sep or not old.strip():
            print(f"loratui: --replace wants OLD=NEW (NEW may be empty to remove OLD), not {item!r}.", file=sys.stderr)
            return EXIT_BAD_INPUT
        replacements.append((old.strip(), new.strip()))
    texts = _load_captions(args.dir, args.caption_extension)
    if texts is None:
        return EXIT_BAD_INPUT

    # Every action works on the result of the previous one; together they make one change, one undo.
    current, steps = dict(texts), []
    if args.remove:
        current.update(remove_tags(current, args.remove, args.loose))
        steps.append("remove " + ", ".join(repr(tag) for tag in args.remove))
    for old, new in replacements:
        current.update(replace_tag(current, old, new, args.loose))
        steps.append(f"replace {old!r} with {new!r}" if new else f"remove {old!r}")
    if args.dedupe:
        current.update(dedupe_tags(current, args.loose))
        steps.append("drop repeated tags")
    if args.sort:
        current.update(sort_tags(current, args.keep_first, args.sort_by))
        steps.append(f"sort tags by {args.sort_by}")

    status = EXIT_OK
    if steps:
        edits = {path: text for path, text in current.items() if split_tags(text) != split_tags(texts[path])}
        status = _apply_change(args.dir, texts, edits, "; ".join(steps))
        if status != EXIT_OK:
            return status
    if args.table or not steps:
        print("\n".join(format_tag_table(list(current.values()), args.kind, args.trigger, args.dir)))
    return status


def format_tag_table(captions: list[str], kind: str, trigger: str, folder: Path) -> list[str]:
    """The text form of the tag table: a summary line, then count, share and tag, flags marked with !."""
    from loratui.caption_tools import tag_table

    rows = tag_table(captions, kind, trigger)
    if not rows:
        return [f"{len(captions)} images and no tags yet: their captions are missing or empty."]
    flagged = sum(row.flagged for row in rows)
    lines = [f"{len(captions)} images, {len(rows)} different tags"
             + (f", {flagged} flagged as inconsistent (!)" if flagged else "")]
    width = min(40, max(len(row.tag) for row in rows))
    lines.append(f"{'count':>6} {'share':>6}  tag")
    for row in rows:
        mark = f"  ! {row.reason}" if row.flagged else ""
        lines.append(f"{row.count:>6} {row.share:>6.0%}  {row.tag:<{width}}{mark}".rstrip())
    if flagged:
        lines.append(f"A character's traits belong in every caption where they show: add the flagged tags where "
                     f"they are missing, or drop them with `loratui dataset tags {shlex.quote(str(folder))} "
                     f"--remove TAG`.")
    return lines


def cmd_undo(args: argparse.Namespace) -> int:
    """Revert the newest caption change that still stands."""
    from trainer.contract.caption_store import CaptionWriteError, undo_last

    if not args.dir.is_dir():
        print(f"loratui: {args.dir} is not a folder.", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        change = undo_last(args.dir)
    except CaptionWriteError as exc:
        print(f"loratui: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if change is None:
        print(f"Nothing to undo: no caption change to {args.dir} is on record.")
        return EXIT_OK
    kept = {path for path, _ in change.undo_conflicts}
    removed = sum(1 for entry in change.backups if not entry.existed and entry.path not in kept)
    restored = len(change.files) - len(kept)
    gone = f" ({removed} removed: the change had created them)" if removed else ""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(change.created))
    print(f"Undone: {change.action} (from {when}). {restored} of {len(change.files)} captions are back "
          f"as they were{gone}.")
    for path, side in change.undo_conflicts:
        name = path.relative_to(change.dataset)
        if side is not None:
            print(f"  kept {name}: it was edited after the change; its earlier text is in {side.name}")
        else:
            print(f"  kept {name}: the change created it and it was edited since")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    """List the recorded caption changes of a folder, newest first."""
    from trainer.contract.caption_store import dataset_backup_dir, history

    changes = history(args.dir)
    if not changes:
        print(f"No caption changes to {args.dir} are on record.")
        return EXIT_OK
    for change in changes:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(change.created))
        state = "  (undone)" if change.undone else ""
        print(f"{when}  {len(change.files):>5} captions  {change.action}{state}")
    print(f"Backups: {dataset_backup_dir(args.dir)}")
    if any(not change.undone for change in changes):
        print(f"`loratui dataset undo {shlex.quote(str(args.dir))}` reverts the newest change not yet undone.")
    return EXIT_OK


# ── auto-captioning: tag ─────────────────────────────────────────────────────────────────────

def _add_tag_command(commands) -> None:
    """The ``tag`` sub-parser: auto-captioning in a child process (the app never loads the model)."""
    from trainer.contract.tagging_jobs import DEFAULT_MODELS, MODES, TAGGERS

    tag = commands.add_parser("tag", help="caption images automatically with WD14 tags or BLIP sentences "
                                          "(undoable)", description=(
        "Caption the images of DIR with a model, in a child process: the WD14 tagger (booru tags, for anime and "
        "art) or BLIP (a sentence, for photos). Images that already have a caption keep it unless --mode says "
        "otherwise. The model comes from a local folder or the Hugging Face hub (downloading needs network). "
        "Ctrl-C stops after the current image and writes the captions made so far. " + _UNDO_NOTE))
    tag.add_argument("dir", type=Path, help="the dataset folder")
    tag.add_argument("--tagger", choices=TAGGERS, required=True,
                     help="wd14: tags for anime and art; blip: a sentence for photos")
    tag.add_argument("--model", metavar="PATH_OR_ID",
                     help=f"a local model folder or a hub id (default {DEFAULT_MODELS['wd14']} for wd14, "
                          f"{DEFAULT_MODELS['blip']} for blip)")
    tag.add_argument("--mode", choices=MODES, default="keep",
                     help="keep: caption only images without one; append: add new tags after the existing ones; "
                          "overwrite: replace every caption (default keep)")
    tag.add_argument("--threshold", type=float, metavar="F",
                     help="WD14: keep general tags scored above F, 0 to 1 (default: the model's, 0.35 for most)")
    tag.add_argument("--character-threshold", type=float, metavar="F",
                     help="WD14: keep character tags scored above F (default 0.85)")
    tag.add_argument("--keep-underscores", action="store_true",
                     help="WD14: write tags as long_hair rather than long hair")
    tag.add_argument("--trigger", default="", metavar="WORD", help="put this trigger word first in every caption")
    tag.add_argument("--caption-extension", default=".txt", help="caption file extension (default .txt)")
    tag.add_argument("--detach", action="store_true",
                     help="run in the background (survives logout) and print the job folder")


def cmd_tag(args: argparse.Namespace) -> int:
    """Create a tagging job and run it: followed here, or detached with --detach."""
    from trainer.contract.tagging_jobs import JobPaths, TaggingError, new_job, start_foreground, start_job

    if not args.dir.is_dir():
        print(f"loratui: {args.dir} is not a folder. Give the folder that holds your training images.",
              file=sys.stderr)
        return EXIT_BAD_INPUT
    extension = args.caption_extension if args.caption_extension.startswith(".") else "." + args.caption_extension
    try:
        job = new_job(args.dir, args.tagger, args.model, args.mode, general_threshold=args.threshold,
                      character_threshold=args.character_threshold,
                      underscores_to_spaces=not args.keep_underscores, trigger_word=args.trigger,
                      caption_extension=extension)
    except TaggingError as exc:
        print(f"loratui: {exc.message}.", file=sys.stderr)
        return EXIT_BAD_INPUT
    paths = JobPaths(job)
    if args.detach:
        try:
            pid = start_job(job)
        except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
            print(f"loratui: {exc}", file=sys.stderr)
            return EXIT_FAILED
        print(f"Tagging in the background (pid {pid}); progress in {paths.events}, output in {paths.log}.",
              file=sys.stderr)
        print(job)
        return EXIT_OK
    process = start_foreground(job)
    try:
        return follow_tagging(paths, process, args.dir)
    finally:
        if process.poll() is None:
            process.wait()


def follow_tagging(paths, process: subprocess.Popen, folder: Path, stream=None) -> int:
    """Print a tagging job's events until its process exits; return the process's exit status."""
    from loratui.runs.headless import POLL_SECONDS, ProgressPrinter
    from trainer.contract.events import LineTail, parse_event

    printer = ProgressPrinter(stream or sys.stderr)
    tail = LineTail(paths.events)
    final: dict | None = None
    stop_sent = False
    while True:
        try:
            exited = process.poll() is not None
            for event in filter(None, map(parse_event, tail.read_lines())):
                if event.get("type") in ("done", "stopped", "error"):
                    final = event
                line = describe_tagging_event(event)
                if line:
                    printer.log(line)
                elif event.get("phase") == "tagging":
                    printer.progress(f"tagging {event.get('current')}/{event.get('total')}  {event.get('file', '')}",
                                     force=event.get("current") == event.get("total"))
            if exited:
                break
            time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            # The terminal sent SIGINT to the job as well: it stops after the current image.
            printer.log("Stopping after the current image and writing the captions made so far… "
                        "(Ctrl-C again to stop at once, writing nothing)" if not stop_sent
                        else "Stopping now, without writing.")
            stop_sent = True
    printer.finish()
    if final is None:
        printer.log(f"error: the tagging process exited with status {process.returncode} without a word; "
                    f"see {paths.log}")
        return EXIT_FAILED
    if final.get("type") != "error" and final.get("changed"):
        printer.log(f"Undo with: loratui dataset undo {shlex.quote(str(folder))}")
    return {0: EXIT_OK, 2: EXIT_BAD_INPUT}.get(process.returncode, EXIT_FAILED)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "scan": cmd_scan,
    "trigger": cmd_trigger,
    "tags": cmd_tags,
    "undo": cmd_undo,
    "history": cmd_history,
    "tag": cmd_tag,
}
"""Sub-command name → the function that runs it with the parsed arguments."""


def dataset_main(argv: list[str]) -> int:
    """Entry point of ``loratui dataset …`` (argv without the leading "dataset")."""
    args = _build_parser().parse_args(argv)
    return COMMANDS[args.command](args)
