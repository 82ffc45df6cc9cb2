"""What a conversion to or from another trainer's config did with each setting (no torch).

Every setting on either side ends up in one of four lists, so nothing is ever dropped without a
line saying so:

- ``mapped``: carried over with the same meaning;
- ``approximate``: carried over, but the other trainer does it somewhat differently (the note says how);
- ``not_mapped``: has no equivalent on the other side (the value and the reason are shown);
- ``defaulted``: the source did not say, so a value was chosen (the note says whose default it is).

``notes`` holds remarks about the conversion as a whole (packages the other trainer needs).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def show(value: Any) -> str:
    """A value as it reads in a TOML file, short enough for one report line."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = repr(value) if len(value) <= 70 else repr(value[:67] + "...")
        return text
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass(frozen=True)
class Entry:
    """One line of a report: where a setting came from, where it went, its value and a note."""

    source: str
    """The setting's name on the side it came from (``optimizer_type``, ``dataset.trigger_word``)."""
    target: str = ""
    """Its name on the other side; empty when it has none."""
    value: Any = None
    note: str = ""

    def text(self) -> str:
        """The entry as one human-readable line."""
        head = self.source if self.value is None else f"{self.source} = {show(self.value)}"
        if self.target:
            head += f" → {self.target}"
        return f"{head}: {self.note}" if self.note else head

    def to_json(self) -> dict[str, Any]:
        """The entry as plain data."""
        return {"source": self.source, "target": self.target, "value": self.value, "note": self.note}


@dataclass
class MappingReport:
    """The four lists of a conversion, in the order the settings were met."""

    mapped: list[Entry] = field(default_factory=list)
    approximate: list[Entry] = field(default_factory=list)
    not_mapped: list[Entry] = field(default_factory=list)
    defaulted: list[Entry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def map(self, source: str, target: str, value: Any = None, note: str = "") -> None:
        """Record a setting carried over unchanged in meaning."""
        self.mapped.append(Entry(source, target, value, note))

    def approx(self, source: str, target: str, value: Any, note: str) -> None:
        """Record a setting carried over with a difference the note explains."""
        self.approximate.append(Entry(source, target, value, note))

    def drop(self, source: str, value: Any, note: str) -> None:
        """Record a setting with no equivalent on the other side."""
        self.not_mapped.append(Entry(source, "", value, note))

    def default(self, target: str, value: Any, note: str) -> None:
        """Record a value chosen because the source did not give one."""
        self.defaulted.append(Entry(target, "", value, note))

    def note(self, text: str) -> None:
        """Record a remark about the conversion as a whole (once)."""
        if text not in self.notes:
            self.notes.append(text)

    def names(self, *lists: str) -> set[str]:
        """Every source and target name in the given lists (all four when none are named)."""
        chosen = lists or ("mapped", "approximate", "not_mapped", "defaulted")
        found: set[str] = set()
        for name in chosen:
            for entry in getattr(self, name):
                found.add(entry.source)
                if entry.target:
                    found.add(entry.target)
        return found

    def lines(self, *, include_mapped: bool = True) -> list[str]:
        """The report as text lines, one heading per non-empty list."""
        sections = [("approximate (carried over, but not exactly)", self.approximate),
                    ("no equivalent (not carried over)", self.not_mapped),
                    ("defaulted (the source did not say)", self.defaulted)]
        if include_mapped:
            sections.insert(0, ("mapped", self.mapped))
        out: list[str] = []
        for title, entries in sections:
            if not entries:
                continue
            out.append(f"{title}:")
            out += [f"  {entry.text()}" for entry in entries]
        if self.notes:
            out += ["notes:"] + [f"  {note}" for note in self.notes]
        return out

    def to_json(self) -> dict[str, list]:
        """The report as plain data (for ``--format json``)."""
        data: dict[str, list] = {name: [e.to_json() for e in getattr(self, name)]
                                 for name in ("mapped", "approximate", "not_mapped", "defaulted")}
        data["notes"] = list(self.notes)
        return data
