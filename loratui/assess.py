"""Everything known about a config before launch: its dataset, exact steps, the guide's findings.

Reading the dataset (image headers, caption files) is the slow part, so it is kept apart in
``DatasetFacts`` and only redone when a setting that changes it does; the rest is recomputed on
every keystroke of the settings form.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from loratui.rules import Context, Finding, evaluate
from trainer.captions import CaptionStats, caption_stats
from trainer.config import Config, Problem, effective_resolution, validate
from trainer.model_ref import check_model, local_model_arch
from trainer.plan import DatasetScan, StepPlan, plan_steps
from trainer.preflight import check_dataset, check_output

DATASET_KEYS = ("dataset.path", "dataset.repeats", "dataset.caption_extension", "dataset.trigger_word")
"""Settings whose change means the dataset must be read again."""


@dataclass
class DatasetFacts:
    """What reading the dataset folder found."""

    key: tuple
    scan: DatasetScan | None = None
    captions: CaptionStats | None = None
    problems: list[Problem] = field(default_factory=list)


def dataset_key(config: Config) -> tuple:
    return (config.dataset.path, config.dataset.repeats, config.dataset.caption_extension,
            config.dataset.trigger_word)


def read_dataset(config: Config) -> DatasetFacts:
    """Scan the dataset folder and count its captions (the I/O part of an assessment)."""
    problems, scan = check_dataset(config)
    captions = caption_stats(scan.images, config.dataset.trigger_word) if scan and scan.images else None
    return DatasetFacts(dataset_key(config), scan, captions, problems)


@dataclass
class Assessment:
    """A config with its hard problems, its plan and the guide's findings."""

    config: Config
    problems: list[Problem]
    """Hard problems: the run cannot start until they are fixed."""
    findings: list[Finding]
    arch: str | None
    plan: StepPlan | None
    facts: DatasetFacts

    @property
    def startable(self) -> bool:
        return not self.problems


def assess(config: Config, facts: DatasetFacts | None = None, parse_problems: Iterable[Problem] = ()) -> Assessment:
    """Assess an in-memory config; pass the last ``facts`` to skip re-reading an unchanged dataset."""
    if facts is None or facts.key != dataset_key(config):
        facts = read_dataset(config)
    problems = list(parse_problems) + validate(config) + check_model(config.model.base) + facts.problems \
        + check_output(config)
    arch = config.model.arch if config.model.arch != "auto" else local_model_arch(config.model.base)
    plan = None
    if facts.scan is not None and facts.scan.images:
        resolution = effective_resolution(config, arch or "sd15")
        plan = plan_steps(facts.scan.images, resolution, config.training.batch_size, config.training.epochs,
                          config.dataset.buckets)
    context = Context(config, arch, facts.scan, plan, facts.captions)
    return Assessment(config, problems, evaluate(context), arch, plan, facts)
