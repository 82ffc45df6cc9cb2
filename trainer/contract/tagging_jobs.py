"""Tagging job folders: what a job asks for, where it lives and how it is started (no torch).

The app and ``loratui dataset tag`` import this module, so it must stay light: no torch,
no onnxruntime, no transformers, not even at function level. A job is a folder::

    $XDG_STATE_HOME/loratui/jobs/<tagger>-<YYYYmmdd-HHMMSS>/
      job.json       what to do (the schema below), written by whoever creates the job
      events.jsonl   start · status · warning · error · stopped · done (trainer.contract.events)
      job.log        the child's stdout/stderr (library output, tracebacks)
      pid            while the job runs

``job.json``::

    {"version": 1,
     "dataset": "/abs/path",            # the folder scanned like the trainer scans it
     "tagger": "wd14" | "blip",
     "model": "org/name" | "/local/folder",
     "mode": "keep" | "append" | "overwrite",
     "thresholds": {"general": 0.35 | null, "character": 0.85 | null},   # null: the model's default
     "underscores_to_spaces": true,
     "trigger_word": "",                # put first in every caption the job writes ("" for none)
     "caption_extension": ".txt"}

Jobs live under the state folder rather than in the dataset so that a dataset stays clean to
zip or upload, as the caption backups do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from trainer.contract.fileio import atomic_write_text
from trainer.contract.model_ref import looks_like_hub_id
from trainer.contract.rundir import pid_alive

JOB_VERSION = 1
TAGGERS = ("wd14", "blip")
"""``wd14``: booru-style tags for anime and art; ``blip``: a sentence for photos."""
MODES = ("keep", "append", "overwrite")
"""``keep``: only images without a caption (or with an empty one) get one; ``append``: new tags
go after the existing ones, without duplicates; ``overwrite``: the new caption replaces the old."""
DEFAULT_MODELS = {"wd14": "SmilingWolf/wd-vit-tagger-v3", "blip": "Salesforce/blip-image-captioning-base"}
"""The model each tagger uses when none is named (downloaded from the Hugging Face hub)."""


class TaggingError(Exception):
    """A job that cannot go on, said plainly: ``code`` is the error event's code (``model``,
    ``input``), ``advice`` what to do about it."""

    def __init__(self, message: str, advice: str = "", code: str = "model") -> None:
        super().__init__(message)
        self.message = message
        self.advice = advice
        self.code = code


MODEL_FILES = {"wd14": ("model.onnx", "selected_tags.csv"), "blip": ("config.json",)}
"""The files that mark a local model folder, per tagger (BLIP's also holds weights, a tokenizer
and the image processor's settings, whose file names vary between transformers versions)."""
MODEL_NAMES = {"wd14": "WD14 tagger", "blip": "BLIP captioner"}
MODEL_CONTENTS = {"wd14": "model.onnx and selected_tags.csv",
                  "blip": "a BLIP captioning model saved by transformers (config, weights, processor)"}


def local_model_folder(reference: str, tagger: str) -> Path | None:
    """The local folder a model reference names, or None when it is a hub id to download.

    Raises TaggingError when it is neither: a path that does not exist, or a folder without the
    files the tagger needs (MODEL_FILES).
    """
    needs, what = MODEL_FILES[tagger], MODEL_NAMES[tagger]
    path = Path(reference).expanduser()
    if path.is_dir():
        absent = [name for name in needs if not (path / name).is_file()]
        if absent:
            raise TaggingError(f"The {what} folder {path} has no {' and no '.join(absent)}",
                               advice=f"Point --model at a folder holding {MODEL_CONTENTS[tagger]}, or at a hub id.")
        return path
    if looks_like_hub_id(reference) and not path.exists():
        return None
    raise TaggingError(f"The {what} {reference!r} is neither a folder on this machine nor a hub id (org/name)",
                       advice=f"Give a folder holding {MODEL_CONTENTS[tagger]}, or a Hugging Face id such as "
                              f"{DEFAULT_MODELS[tagger]}.")


def download_failed(reference: str, tagger: str, exc: BaseException) -> TaggingError:
    """The error for a hub model that could not be fetched (no network, offline mode, unknown id)."""
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    reason = "HF_HUB_OFFLINE is set" if offline else f"{type(exc).__name__}{': ' + detail if detail else ''}"
    return TaggingError(
        f"The {MODEL_NAMES[tagger]} {reference!r} is not on this machine and could not be downloaded ({reason})",
        advice="Downloading needs network access on this box and a correct hub id. Without network, copy the "
               "model here and pass its folder with --model.")


@dataclass
class TagJob:
    """What one tagging job does (the content of ``job.json``)."""

    dataset: str
    """The dataset folder (absolute): its images and ``N_name`` sub-folders, as the trainer sees them."""
    tagger: str
    """``wd14`` or ``blip``."""
    model: str
    """A local folder or a Hugging Face hub id (``org/name``)."""
    mode: str = "keep"
    """``keep``, ``append`` or ``overwrite`` (see MODES)."""
    thresholds: dict = field(default_factory=lambda: {"general": None, "character": None})
    """WD14 confidence thresholds for general and character tags; None picks the model's default."""
    underscores_to_spaces: bool = True
    """WD14 tags with spaces (``long hair``), as most SD1.5/SDXL captions are written; False keeps
    the booru spelling (``long_hair``). Kaomoji such as ``^_^`` are never changed."""
    trigger_word: str = ""
    """Put first in every caption the job writes; empty for none."""
    caption_extension: str = ".txt"
    """Caption files sit beside their images with this extension."""
    version: int = JOB_VERSION

    def to_json(self) -> str:
        """The job as ``job.json`` text."""
        return json.dumps(asdict(self), indent=1, ensure_ascii=False) + "\n"


def check_job(job: TagJob) -> list[str]:
    """Every problem with a job's values, each one sentence (empty when the job is usable)."""
    problems = []
    if job.version != JOB_VERSION:
        problems.append(f"job version {job.version!r} is not {JOB_VERSION}; it was written by another loratui")
    if job.tagger not in TAGGERS:
        problems.append(f"tagger {job.tagger!r} is not one of {', '.join(TAGGERS)}")
    if job.mode not in MODES:
        problems.append(f"mode {job.mode!r} is not one of {', '.join(MODES)}")
    if not isinstance(job.model, str) or not job.model.strip():
        problems.append("no model is named")
    if not isinstance(job.thresholds, dict) or set(job.thresholds) - {"general", "character"}:
        problems.append("thresholds must be {\"general\": number or null, \"character\": number or null}")
    else:
        for kind, value in job.thresholds.items():
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 <= value <= 1):
                problems.append(f"the {kind} threshold {value!r} is not a number from 0 to 1")
    if not isinstance(job.caption_extension, str) or not job.caption_extension.startswith(".") \
            or len(job.caption_extension) < 2 or "/" in job.caption_extension:
        problems.append(f"caption extension {job.caption_extension!r} must look like .txt")
    if not isinstance(job.trigger_word, str) or "," in job.trigger_word:
        problems.append("the trigger word must be text without commas (commas separate tags)")
    if not isinstance(job.underscores_to_spaces, bool):
        problems.append("underscores_to_spaces must be true or false")
    return problems


@dataclass(frozen=True)
class JobPaths:
    """Where each file of one job lives."""

    root: Path

    @property
    def job(self) -> Path:
        return self.root / "job.json"

    @property
    def events(self) -> Path:
        return self.root / "events.jsonl"

    @property
    def log(self) -> Path:
        return self.root / "job.log"

    @property
    def pid(self) -> Path:
        return self.root / "pid"


def jobs_root() -> Path:
    """Where job folders go: ``$XDG_STATE_HOME/loratui/jobs`` (default ``~/.local/state/loratui/jobs``)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "loratui" / "jobs"


_OPTIONS = {"general_threshold", "character_threshold", "underscores_to_spaces", "trigger_word",
            "caption_extension"}


def new_job(dataset: Path, tagger: str, model: str | None = None, mode: str = "keep", *,
            root: Path | None = None, now: float | None = None, **options) -> Path:
    """Check a job and write it into a fresh folder; return the folder.

    ``options``: ``general_threshold``, ``character_threshold`` (None: the model's default),
    ``underscores_to_spaces``, ``trigger_word``, ``caption_extension``. ``root`` is where the
    folder goes (default :func:`jobs_root`). Raises TaggingError (code ``input``) naming every
    problem; nothing is written then.
    """
    unknown = set(options) - _OPTIONS
    if unknown:
        raise TypeError(f"unknown tagging options: {', '.join(sorted(unknown))}")
    dataset = Path(dataset).expanduser().resolve()
    job = TagJob(dataset=str(dataset), tagger=tagger, model=model or DEFAULT_MODELS.get(tagger, ""), mode=mode,
                 thresholds={"general": options.get("general_threshold"),
                             "character": options.get("character_threshold")},
                 underscores_to_spaces=options.get("underscores_to_spaces", True),
                 trigger_word=(options.get("trigger_word") or "").strip(),
                 caption_extension=options.get("caption_extension", ".txt"))
    problems = check_job(job)
    if not dataset.is_dir():
        problems.insert(0, f"{dataset} is not a folder")
    if problems:
        raise TaggingError("; ".join(problems), advice="Fix these and start the job again.", code="input")
    parent = Path(root) if root is not None else jobs_root()
    parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    folder, suffix = parent / f"{tagger}-{stamp}", 1
    while True:
        try:
            folder.mkdir()
            break
        except FileExistsError:
            # Two jobs started in the same second must never share a folder (or an events file).
            suffix += 1
            folder = parent / f"{tagger}-{stamp}-{suffix}"
    atomic_write_text(JobPaths(folder).job, job.to_json())
    return folder


def read_job(job_dir: Path) -> TagJob:
    """The job a folder describes; TaggingError (code ``input``) when job.json is missing or wrong."""
    path = JobPaths(Path(job_dir)).job
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaggingError(f"{path} does not exist", advice="Create jobs with `loratui dataset tag`.",
                           code="input") from None
    except (OSError, ValueError) as exc:
        raise TaggingError(f"{path} cannot be read ({exc})", advice="Create the job again.", code="input") from None
    if not isinstance(data, dict):
        raise TaggingError(f"{path} does not hold a job", advice="Create the job again.", code="input")
    known = set(TagJob.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    missing = sorted({"dataset", "tagger", "model"} - set(data))
    problems = [f"unknown field {name!r}" for name in unknown] + [f"missing field {name!r}" for name in missing]
    if not problems:
        job = TagJob(**data)
        problems = check_job(job)
    if problems:
        raise TaggingError(f"{path}: " + "; ".join(problems), advice="Fix job.json or create the job again.",
                           code="input")
    return job


def tagging_command(job_dir: Path) -> list[str]:
    """The command line of the tagging process for a job."""
    return [sys.executable, "-m", "trainer.tagging", str(Path(job_dir).resolve())]


def detach_command(job_dir: Path) -> list[str]:
    """The tagging command wrapped in the app's detach helper (``python -m trainer.contract.detach``).

    Only a command line is built here: the trainer side never imports the app, but the helper
    is what keeps a job running when the app closes or the SSH link drops, exactly as for training.
    """
    paths = JobPaths(Path(job_dir).resolve())
    return [sys.executable, "-m", "trainer.contract.detach", str(paths.log), "--", *tagging_command(paths.root)]


def start_job(job_dir: Path) -> int:
    """Start a job detached (its own session, output to job.log); write and return its pid."""
    paths = JobPaths(Path(job_dir).resolve())
    result = subprocess.run(detach_command(paths.root), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                            cwd=paths.root, timeout=60)
    output = result.stdout if result.returncode == 0 else result.stdout + result.stderr
    try:
        pid = int(output.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"the tagging job did not start: {output.strip() or 'no output'}") from None
    # The job writes its pid too; writing it here makes the job visible as running at once.
    atomic_write_text(paths.pid, f"{pid}\n")
    return pid


def start_foreground(job_dir: Path) -> subprocess.Popen:
    """Start a job as an ordinary child (same terminal session, so Ctrl-C reaches it too)."""
    paths = JobPaths(Path(job_dir).resolve())
    with open(paths.log, "ab") as log:
        return subprocess.Popen(tagging_command(paths.root), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, cwd=paths.root)


def read_pid(job_dir: Path) -> int | None:
    """The recorded process id of a job, or None."""
    try:
        return int(JobPaths(Path(job_dir)).pid.read_text().strip())
    except (OSError, ValueError):
        return None


def job_running(job_dir: Path) -> bool:
    """True while the job's process is alive (a stale pid file never counts)."""
    pid = read_pid(job_dir)
    return pid is not None and pid_alive(pid)
