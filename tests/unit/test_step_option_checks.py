"""The hard checks of the accumulation and timestep settings: impossible combinations are named before a run."""

from __future__ import annotations

from trainer.contract.config.schema import Config, validate, with_value


def _problems(**settings) -> list:
    config = Config()
    for key, value in settings.items():
        config = with_value(config, f"training.{key}", value)
    return [p for p in validate(config) if p.field.startswith("training.")]


def test_an_empty_timestep_range_names_both_ends():
    (problem,) = _problems(min_timestep=500, max_timestep=500)
    assert problem.field == "training.min_timestep"
    assert "max_timestep" in problem.message and "500" in problem.message
    assert _problems(min_timestep=600, max_timestep=400)
    assert _problems(min_timestep=499, max_timestep=500) == []  # one timestep is a range


def test_the_fused_backward_pass_cannot_accumulate():
    problems = _problems(fused_backward_pass=True, batch_size=1, gradient_accumulation_steps=2)
    assert [p.field for p in problems] == ["training.fused_backward_pass"]
    assert "gradient_accumulation_steps" in problems[0].message
    assert _problems(fused_backward_pass=True, batch_size=1, gradient_accumulation_steps=1) == []
    assert _problems(gradient_accumulation_steps=8) == []
