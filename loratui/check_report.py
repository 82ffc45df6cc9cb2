"""What ``loratui check --format json`` prints: one object, whatever state the config is in.

Scripts read stdout. A config that cannot be used still gets the whole object, its problems listed
as findings of severity ``error`` (field and message), beside the advice, the planned steps and the
image counts known so far; ``exit_code`` repeats the process's exit status (0 clean, 1 a danger,
2 unusable).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainer.contract.config.schema import Problem

EXIT_MEANINGS = {0: "clean", 1: "danger", 2: "unusable"}


def problem_json(problem: Problem) -> dict[str, Any]:
    """A hard problem in the findings' shape."""
    return {"rule": "config.problem", "severity": "error", "field": problem.field, "message": problem.message,
            "fix": None}


def check_report(config: Path, exit_code: int, problems: list[Problem], assessment: Any = None) -> dict[str, Any]:
    """The JSON object for one check: ``assessment`` is None when the config could not be assessed."""
    findings = [problem_json(p) for p in problems]
    report: dict[str, Any] = {"config": str(config), "exit_code": exit_code, "status": EXIT_MEANINGS[exit_code],
                              "findings": findings, "steps": None, "images": None, "arch": None, "prediction": None}
    if assessment is None:
        return report
    findings += [f.to_json() for f in assessment.findings]
    report["arch"] = assessment.arch
    if assessment.prediction is not None:
        report["prediction"] = {"type": assessment.prediction.prediction,
                                "zero_terminal_snr": assessment.prediction.zero_terminal_snr,
                                "why": assessment.prediction.explanation}
    plan = assessment.plan
    if plan is not None:
        report["steps"] = {"total": plan.total_steps, "guide_formula": plan.formula_steps}
    report["images"] = image_counts(assessment.facts)
    reg = getattr(assessment.facts, "reg_scan", None)
    if reg is not None:
        # Kept apart from the dataset's images: the reg folder's usable images and what an epoch trains of them.
        report["regularization_images"] = {
            "usable": len(reg.images), "left_out": len(reg.skipped),
            "samples_per_epoch": plan.reg_samples_per_epoch if plan is not None else None}
    return report


def image_counts(facts: Any) -> dict[str, Any] | None:
    """Found, usable, broken (named, with why) and uncaptioned images; None when the folder could not be read."""
    scan = facts.scan if facts is not None else None
    if scan is None:
        return None
    captions = facts.captions
    uncaptioned = len(captions.missing) + len(captions.empty) if captions is not None else 0
    return {"found": len(scan.images) + len(scan.skipped), "usable": len(scan.images), "broken": len(scan.skipped),
            "uncaptioned": uncaptioned,
            "broken_files": [{"path": str(path), "why": why} for path, why in scan.skipped]}
