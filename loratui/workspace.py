"""The config being worked on, shared by the app's screens (pure Python, no widgets).

The form edits the config as the file has it (relative paths stay relative, so saving never
rewrites them); assessments and runs use a copy with the paths resolved against the file's
folder. Every change bumps ``version``, so a background assessment of an older version is
recognised as stale and dropped.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from loratui.assess import Assessment, DatasetFacts, assess
from loratui.config_file import save_preserving
from loratui.presets import Preset, closest_preset
from loratui.rules import Fix
from loratui.rules.fix_all import FixPlan, apply_every_fix
from trainer.contract.config.schema import FIELDS, Config, Problem, from_dict, get_value, with_value
from trainer.contract.config.toml_io import PATH_FIELDS, apply_overrides, read_toml, resolve_paths


@dataclass
class Workspace:
    """One config file and everything known about it."""

    path: Path | None = None
    config: Config = field(default_factory=Config)
    """The config as edited (paths as written in the file)."""
    saved: Config | None = None
    """The config as last loaded or saved, to tell unsaved changes."""
    explicit: set[str] = field(default_factory=set)
    """Settings the file (or the user, since) set on purpose, rather than left to their defaults."""
    parse_problems: list[Problem] = field(default_factory=list)
    """Problems found while reading the file (unknown keys, wrong types)."""
    unparsed: dict[str, str] = field(default_factory=dict)
    """Settings whose text in the form does not parse (a batch of "abc"), with why: problems like any
    other, so every screen counts them and nothing starts while one is left."""
    assessment: Assessment | None = None
    advanced: bool = False
    """Whether the form shows every setting or only the guide's proven-settings ones."""
    preset: Preset | None = None
    version: int = 0
    """Bumped by every change to the config."""
    assessed_version: int = -1
    """The version ``assessment`` describes."""
    loaded_mtime: int | None = None
    """The file's modification time when it was loaded or saved."""
    backed_up: bool = False

    @property
    def base_dir(self) -> Path:
        return self.path.resolve().parent if self.path else Path.cwd()

    @property
    def dirty(self) -> bool:
        """True when the form holds changes not yet saved to the file."""
        return self.saved is None or self.config != self.saved

    def resolved(self) -> Config:
        """The config with its paths made absolute, as a run uses it."""
        return resolve_paths(self.config, self.base_dir)

    def load(self, path: Path, overrides: Iterable[str] = ()) -> None:
        """Read a config file (raises ConfigFileError when it cannot be parsed)."""
        data = read_toml(path)
        problems = apply_overrides(data, overrides)
        config, parse_problems = from_dict(data)
        self.loaded_mtime = _mtime(Path(path))
        self.path, self.config, self.saved = Path(path), config, config
        self.parse_problems = problems + parse_problems
        self.unparsed = {}
        self.explicit = {key for key in FIELDS if _present(data, key)}
        self.preset = closest_preset(config)
        self.assessment, self.backed_up = None, False
        self.version += 1

    def set(self, key: str, value: Any) -> None:
        """Change one setting."""
        if get_value(self.config, key) == value:
            return
        self.config = with_value(self.config, key, value)
        self.explicit.add(key)
        self.parse_problems = [p for p in self.parse_problems if p.field != key]
        self.version += 1

    def set_unparsed(self, key: str, reason: str | None) -> bool:
        """Note that the form's text for ``key`` does not parse (``reason``), or parses again (None).
        True when that changed anything."""
        if self.unparsed.get(key) == reason:
            return False
        if reason is None:
            del self.unparsed[key]
        else:
            self.unparsed[key] = reason
        self.version += 1
        return True

    @property
    def problems_before_assessing(self) -> list[Problem]:
        """The problems known without reading anything: the file's, then the form's unparsed text."""
        return self.parse_problems + [Problem(key, reason) for key, reason in self.unparsed.items()]

    def apply_fix(self, fix: Fix) -> None:
        for key, value in fix.changes.items():
            self.set(key, value)

    def apply_preset(self, preset: Preset) -> None:
        for key, value in preset.values.items():
            self.set(key, value)
        self.preset = preset

    def assess(self, facts: DatasetFacts | None = None, gpus: list = ()) -> Assessment:
        """Assess the current config (thread-safe: it reads a snapshot and changes nothing)."""
        return assess(self.resolved(), facts, self.problems_before_assessing, gpus)

    def plan_every_fix(self, gpus: list = ()) -> FixPlan:
        """Every danger's and warning's fix, planned together against the config as it is now
        (``loratui.rules.fix_all``); nothing is changed here. The dataset is read again only when a fix
        changes what it depends on."""
        facts = [self.assessment.facts if self.assessment else None]

        def findings_for(config: Config) -> list:
            assessment = assess(resolve_paths(config, self.base_dir), facts[0], self.problems_before_assessing, gpus)
            facts[0] = assessment.facts
            return assessment.findings

        return apply_every_fix(self.config, findings_for)

    def take_fixes(self, plan: FixPlan) -> None:
        """Set every value a fix plan changed."""
        for key in FIELDS:
            if get_value(plan.config, key) != get_value(self.config, key):
                self.set(key, get_value(plan.config, key))

    def save(self, path: Path | None = None) -> Path | None:
        """Write the config (atomically); the first overwrite in a session keeps the old file as ``.bak``.

        Returns the backup's path when one was made.
        """
        target = Path(path or self.path or "loratui.toml")
        self.config = self._rebased(target)
        backup = None
        if target.exists() and not self.backed_up:
            backup = target.with_name(target.name + ".bak")
            shutil.copy2(target, backup)
            self.backed_up = True
        # The file as the user wrote it, with only the changed values rewritten (comments and order kept).
        save_preserving(self.config, target, self.path)
        self.path, self.saved, self.loaded_mtime = target, self.config, _mtime(target)
        return backup

    def _rebased(self, target: Path) -> Config:
        """The config with each relative path that would name another file from ``target``'s folder made
        absolute, so that saving into another folder keeps pointing at the same model, dataset and output."""
        if self.path is None or target.resolve().parent == self.base_dir:
            return self.config
        here, there = resolve_paths(self.config, self.base_dir), resolve_paths(self.config, target.resolve().parent)
        config = self.config
        for key in PATH_FIELDS:
            if get_value(here, key) != get_value(there, key):
                config = with_value(config, key, get_value(here, key))
        return config

    def file_changed_on_disk(self) -> bool:
        """True when the file was changed by something else since it was loaded or saved."""
        return self.path is not None and _mtime(self.path) != self.loaded_mtime


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _present(data: dict, key: str) -> bool:
    if "." not in key:
        return key in data
    section, name = key.split(".", 1)
    return isinstance(data.get(section), dict) and name in data[section]

