"""The command palette's entries (ctrl+p): every action of the app from any screen, then the keys
of the screen in front, so that nothing needs a key you have to remember.

An app-wide command names the screen that owns the action and the action's name there; running
it shows that screen and acts, as pressing the key on it would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from textual.app import SystemCommand


@dataclass(frozen=True)
class AppCommand:
    """One thing the user can do from anywhere."""

    title: str
    help: str
    mode: str
    """The screen that does it: checklist, dataset, setup or train (or "app" for the app itself)."""
    action: str
    """The action's name on that screen (what its key binding runs)."""


APP_COMMANDS = (
    AppCommand("Train: start training", "Start the config's run in its own process and follow it", "train", "start"),
    AppCommand("Train: stop the run", "Stop the followed run; it saves a checkpoint first (asks)", "train", "stop"),
    AppCommand("Train: save a checkpoint now", "The run writes its LoRA as it is now, and goes on", "train",
               "save_now"),
    AppCommand("Train: draw sample images now", "The run draws its sample prompts now, and goes on", "train",
               "sample_now"),
    AppCommand("Train: resume a stopped run", "Continue the followed run from its last checkpoint", "train", "resume"),
    AppCommand("Train: every run", "Runs in this folder and elsewhere: finished, stopped, still training", "train",
               "runs"),
    AppCommand("Train: inspect the run's LoRA", "Open the newest LoRA file of the followed run in the inspector",
               "train", "inspect_output"),
    AppCommand("Dataset: open the dataset", "Scan the images, fix captions and tags, auto-caption", "app",
               "switch_mode('dataset')"),
    AppCommand("Dataset: pick the dataset folder", "Browse to the folder of images and captions", "dataset",
               "pick_folder"),
    AppCommand("Dataset: auto-caption", "Caption every image with WD14 tags or BLIP sentences", "dataset", "tagger"),
    AppCommand("Dataset: trigger word first in every caption", "Add the trigger word to the front of each caption",
               "dataset", "add_trigger"),
    AppCommand("Dataset: undo the last caption change", "Every caption change is backed up first", "dataset",
               "undo"),
    AppCommand("Settings: apply every fix", "Plan the guide's fixes together and apply them (ctrl+g)", "setup",
               "apply_every_fix"),
    AppCommand("Settings: choose a preset", "Start from one of the guide's proven settings", "setup",
               "choose_preset"),
    AppCommand("Settings: save the config", "Write the settings to the config file (keeps a .bak)", "setup", "save"),
    AppCommand("Settings: open another config", "Load a different loratui.toml", "setup", "open"),
    AppCommand("Settings: switch between proven and every setting", "Advanced mode shows every setting (F5)",
               "setup", "toggle_advanced"),
    AppCommand("Checklist: the guide's quick-start checklist", "What is done and what is left before training",
               "app", "switch_mode('checklist')"),
    AppCommand("Settings: the settings form", "Every setting with the guide's advice", "app", "switch_mode('setup')"),
    AppCommand("Train: the train screen", "Start and follow runs", "app", "switch_mode('train')"),
    AppCommand("Inspect a LoRA file", "Network type, dim and alpha per block, base model, training settings and "
               "tags of any kohya-style LoRA (F6)", "app", "inspect_lora"),
    AppCommand("Help: keys of this screen", "Every key of the screen in front, and the troubleshooting (F9)", "app",
               "help"),
)
"""Everything the app does, reachable from any screen."""


def app_commands(app) -> Iterator[SystemCommand]:
    """The app-wide commands as palette entries."""
    for command in APP_COMMANDS:
        yield SystemCommand(command.title, command.help, _runner(app, command))


def _runner(app, command: AppCommand):
    if command.mode == "app":
        return lambda: app.run_action(command.action)
    return lambda: app.run_in_mode(command.mode, command.action)


def screen_commands(app, screen) -> Iterator[SystemCommand]:
    """The keys of the screen in front, each as a palette entry that runs it ("Dataset: Remove tag (d)")."""
    covered = {(c.mode, c.action) for c in APP_COMMANDS}
    mode = app.current_mode
    for binding in getattr(type(screen), "BINDINGS", []):
        if not binding.description or (mode, binding.action) in covered:
            continue
        key = app.get_key_display(binding)
        where = screen_title(screen)
        help_text = binding.tooltip or binding.description
        yield SystemCommand(f"{where}: {binding.description} ({key})", help_text,
                            lambda action=binding.action: screen.run_action(action))


def screen_title(screen) -> str:
    """The name users know a screen by."""
    names = {"ChecklistScreen": "Checklist", "DatasetScreen": "Dataset", "SetupScreen": "Settings",
             "TrainScreen": "Train", "InspectScreen": "Inspector"}
    return names.get(type(screen).__name__, type(screen).__name__.removesuffix("Screen"))


MODES = (("f1", "checklist", "Checklist"), ("f2", "dataset", "Dataset"), ("f3", "setup", "Settings"),
         ("f4", "train", "Train"))


def mode_bar(mode: str) -> str:
    """The header's line for a screen: where you are, and the keys to the others and to help (the
    footer keeps its room for the screen's own keys)."""
    here = next(title for _, name, title in MODES if name == mode)
    others = " ".join(f"{key.upper()} {title.lower()}" for key, name, title in MODES if name != mode)
    return f"{here} │ {others} F9 help"
