"""Apply every fix at once, planned jointly so that the fixes never fight.

Each rule's fix is right on its own, but computed against the config as it stands: the step
count's fix at batch 4 is wrong once the tiny-dataset fix has set batch 2, and the two together
ran 2040 steps, a danger. So fixes are applied one at a time, each against the config the ones
before it made: dangers first, then warnings; within each, the step count last, because the
others change what it counts. After every fix the rules look again, so a fix that another made
unnecessary is never applied, and one that another made necessary is. A fix that would raise a new
danger is passed over. It stops when no danger or warning has a safe fix left that changes
anything, or when a config comes round again (a cycle the property tests would have caught;
stopping keeps the app responsive even then).

Tips are left to the user: they are preferences, not problems.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from loratui.rules.engine import Finding
from trainer.contract.config.schema import Config, to_dict

APPLIED_SEVERITIES = ("danger", "warn")
"""What "apply every fix" acts on."""
LAST = ("steps.range",)
"""Rules whose fix depends on settings other fixes change: applied after those."""
MOST_FIXES = 40
"""More fixes than any config needs (there are about 30 rules); a guard, never reached in the tests."""


@dataclass
class FixPlan:
    """What applying every fix did."""

    config: Config
    applied: list[Finding] = field(default_factory=list)
    """The findings whose fixes were applied, in order."""
    remaining: list[Finding] = field(default_factory=list)
    """The findings of the final config."""
    unsafe: list[Finding] = field(default_factory=list)
    """Findings still there whose fix was passed over because it would raise a new danger."""

    @property
    def changed(self) -> bool:
        return bool(self.applied)


def candidates(config: Config, findings: list[Finding]) -> list[Finding]:
    """Dangers and warnings whose fix changes something, in the order they are tried: the worst first,
    the step count after the rest."""
    found = [f for f in findings if f.severity in APPLIED_SEVERITIES and f.fix is not None
             and f.fix.apply(config) != config]
    return sorted(found, key=lambda f: (APPLIED_SEVERITIES.index(f.severity), f.rule in LAST))


def _dangers(findings: list[Finding]) -> set[str]:
    return {f.rule for f in findings if f.severity == "danger"}


def apply_every_fix(config: Config, findings_for: Callable[[Config], list[Finding]]) -> FixPlan:
    """Apply the fixes of every danger and warning, jointly (see the module's docstring).

    ``findings_for`` assesses a config (the app's assessment, or a test's synthetic dataset). A fix
    that would raise a danger the config does not have is passed over (``FixPlan.unsafe``): lowering
    the batch to fit the GPU, say, when kohya folders fix the repeats so high that the run would then
    pass 2000 steps. Its finding stays, for the user to decide.
    """
    plan = FixPlan(config)
    seen = {_key(config)}
    findings = findings_for(config)
    while len(plan.applied) < MOST_FIXES:
        for chosen in candidates(plan.config, findings):
            fixed = chosen.fix.apply(plan.config)
            if _key(fixed) in seen:
                continue
            after = findings_for(fixed)
            if _dangers(after) - _dangers(findings):
                plan.unsafe.append(chosen)
                continue
            break
        else:
            break
        seen.add(_key(fixed))
        plan.config, findings = fixed, after
        plan.applied.append(chosen)
    plan.remaining = findings
    plan.unsafe = [f for f in plan.unsafe if any(r.rule == f.rule for r in findings)]
    return plan


def _key(config: Config) -> str:
    return json.dumps(to_dict(config), sort_keys=True, default=str)
