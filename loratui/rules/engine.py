"""The rules engine: the guide's rules of thumb as data, checked against a config and its dataset.

A rule has a stable id, the field it concerns, and a check that looks at a ``Context`` (the
config, the architecture, the dataset scan, the exact step plan, caption counts, estimates) and
returns a ``Finding`` or nothing. A finding carries a severity (tip, warn, danger), a message in
plain words and, where one exists, a ``Fix``: the config change that resolves it.

This is advice. Impossible values are the config validation's business (trainer.contract.config.schema); the
rules never refuse to train, but ``loratui check`` exits 1 on a danger so scripts can.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from loratui.rules.targets import is_tiny
from trainer.contract.dataset_scan import CaptionStats
from trainer.contract.config.schema import Config, get_value, with_value
from trainer.contract.dataset_scan import DatasetScan
from trainer.contract.plan import StepPlan

SEVERITIES = ("tip", "warn", "danger")
"""From mildest to worst."""


@dataclass(frozen=True)
class Fix:
    """A config change that resolves a finding."""

    changes: dict[str, Any]
    """Dotted field → new value."""
    label: str
    """What applying it does, in a few words ("set the batch size to 2")."""

    def apply(self, config: Config) -> Config:
        """The config with this fix applied (the original is left alone)."""
        for key, value in self.changes.items():
            config = with_value(config, key, value)
        return config


@dataclass(frozen=True)
class Finding:
    """One piece of advice about one field."""

    rule: str
    severity: str
    field: str
    message: str
    fix: Fix | None = None

    def to_json(self) -> dict[str, Any]:
        """The JSON form ``loratui check --format json`` prints."""
        fix = {"set": self.fix.changes, "label": self.fix.label} if self.fix else None
        return {"rule": self.rule, "severity": self.severity, "field": self.field, "message": self.message, "fix": fix}


@dataclass
class Context:
    """Everything the rules look at. Parts that are unknown (no dataset yet, no GPU) are None."""

    config: Config
    arch: str | None = None
    scan: DatasetScan | None = None
    plan: StepPlan | None = None
    captions: CaptionStats | None = None
    estimates: Any = None
    """A ``loratui.estimates`` summary (file size, VRAM, GPU), when known."""
    prediction: Any = None
    """What the run trains with (a ``trainer.contract.prediction.Resolved``), when a model is set."""
    caption_tokens: Any = None
    """(caption file, CLIP tokens) of every caption, counted with the model's tokenizer, when it is here."""
    tiny_model: bool = False
    """True for loratui's own tiny test model (the demo's): it is drawn at 128 px, not at SD's sizes."""
    reg_scan: DatasetScan | None = None
    """The regularization images of ``dataset.reg_path``, when it is set and readable (kept apart from ``scan``)."""

    def value(self, key: str) -> Any:
        return get_value(self.config, key)

    @property
    def image_count(self) -> int | None:
        return len(self.scan.images) if self.scan is not None else None

    @property
    def is_tiny_dataset(self) -> bool:
        """The guide's "tiny dataset" (fewer than 16 images), where its special rules apply."""
        return is_tiny(self.image_count)


@dataclass(frozen=True)
class Rule:
    """One rule of the guide."""

    id: str
    field: str
    summary: str
    """What the rule checks, for the rules reference."""
    check: Callable[[Context], Finding | None] = field(repr=False)


RULES: list[Rule] = []
"""Every rule, in the order findings are listed (registered by the rule modules)."""


def rule(id: str, field: str, summary: str) -> Callable[[Callable[[Context], Any]], Callable[[Context], Any]]:
    """Register a check as a rule. The check returns ``(severity, message, fix)`` or None."""
    def register(check: Callable[[Context], Any]) -> Callable[[Context], Any]:
        def run(context: Context) -> Finding | None:
            result = check(context)
            if result is None:
                return None
            severity, message, fix = result
            assert severity in SEVERITIES, f"{id}: unknown severity {severity}"
            return Finding(id, severity, field, message, fix)

        RULES.append(Rule(id, field, summary, run))
        return check
    return register


def evaluate(context: Context) -> list[Finding]:
    """Every finding for a context, dangers first, then warnings, then tips (rule order within).

    A rule that cannot judge an impossible value (a dim of 0) is skipped: validation already
    reports the value, and advice must never break the form.
    """
    findings = []
    for checked in RULES:
        try:
            finding = checked.check(context)
        except (ArithmeticError, ValueError):
            continue
        if finding is not None:
            findings.append(finding)
    order = {severity: index for index, severity in enumerate(reversed(SEVERITIES))}
    return sorted(findings, key=lambda f: order[f.severity])


def worst(findings: list[Finding]) -> str | None:
    """The worst severity among findings, or None when there are none."""
    present = {f.severity for f in findings}
    for severity in reversed(SEVERITIES):
        if severity in present:
            return severity
    return None


def fmt_lr(value: float) -> str:
    """A learning rate the way people write them: 5e-4, 1e-4, 1.0."""
    if value >= 0.1:
        return f"{value:g}"
    mantissa, exponent = f"{value:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}" if float(f"{value:.0e}") == value else f"{value:.1e}"
