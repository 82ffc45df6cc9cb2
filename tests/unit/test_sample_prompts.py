"""Sample prompts with sd-scripts' options, read without torch; the steps every-N-steps saves and samples come at;
and checkpoint pruning across epoch and step saves."""

from __future__ import annotations

import pytest

from trainer.checkpoint import prune_checkpoints
from trainer.contract.config.schema import Config, with_value
from trainer.contract.config.schema import validate
from trainer.contract.sample_prompts import SamplePrompt, parse_prompt, prompt_problems
from trainer.every_n_steps import StepSchedule


def test_a_prompt_line_reads_as_sd_scripts_reads_it():
    prompt = parse_prompt("zk, red scarf --n blurry, low quality --w 130 --h 64 --l 4.5 --s 3 --d 7 --ss k_euler_a")
    assert prompt == SamplePrompt("zk, red scarf", negative="blurry, low quality", cfg=4.5, steps=3, width=128,
                                  height=64, seed=7, sampler="euler_a")
    # Sizes round down to a multiple of 64, as sd-scripts does; letters in either case.
    assert parse_prompt("zk --W 1000 --H 64").width == 960
    assert parse_prompt("zk") == SamplePrompt("zk")
    assert parse_prompt("zk --n").negative == ""
    # Written back, a prompt reads as itself.
    assert parse_prompt(prompt.line()) == prompt
    assert prompt.line() == "zk, red scarf --n blurry, low quality --w 128 --h 64 --l 4.5 --s 3 --d 7 --ss euler_a"


@pytest.mark.parametrize("line, message", [
    ("zk --s abc", "--s 'abc' is not a whole number (steps)"),
    ("zk --s 0", "--s 0 is outside 1 to 150 steps"),
    ("zk --w 100000", "--w 100000 is outside 64 to 4096 pixels (width)"),
    ("zk --h 32", "--h 32 is outside 64 to 4096 pixels (height)"),
    ("zk --d -1", "--d -1 is outside 0 to 4294967295 (seed)"),
    ("zk --l x", "--l 'x' is not a number"),
    ("zk --l 31", "--l '31' is outside 0 to 30"),
    ("zk --ss dpm_2", "--ss 'dpm_2' is not a sampler; use one of euler, euler_a, ddim, dpmsolver++, heun, lms, pndm"),
    ("zk --cn pose.png", "--cn is not a prompt option (they are --n, --l, --s, --w, --h, --d, --ss)"),
])
def test_a_bad_option_is_a_problem_naming_the_field_and_the_prompt(line, message):
    config = with_value(Config(), "output.sample_prompts", ["zk, fine --s 3", line])
    problems = [p for p in validate(config) if p.field == "output.sample_prompts"]
    assert len(problems) == 1
    assert problems[0].message.startswith(f"the prompt {line!r}: ") and message in problems[0].message
    assert prompt_problems(["zk --w 128", "", "  "]) == []


def test_every_n_steps_skips_the_steps_an_epoch_end_already_covers():
    # 3 steps an epoch, 4 epochs (12 steps); checkpoints every 2 epochs, samples every 3.
    schedule = StepSchedule(save_every_n_steps=2, sample_every_n_steps=3, save_every_n_epochs=2,
                            sample_every_n_epochs=3, steps_per_epoch=3, epochs=4)
    # Step 6 ends epoch 2, which saves; step 12 is the last: the finished LoRA.
    assert [s for s in range(1, 13) if schedule.saves_at(s)] == [2, 4, 8, 10]
    # Step 9 ends epoch 3, which samples; step 12 ends the last epoch, which samples too.
    assert [s for s in range(1, 13) if schedule.samples_at(s)] == [3, 6]
    off = StepSchedule(0, 0, 1, 0, 3, 4)
    assert not any(off.saves_at(s) or off.samples_at(s) for s in range(1, 13))
    # Without epoch samples the last step's set is drawn by step.
    assert StepSchedule(0, 4, 0, 0, 3, 4).samples_at(12)


def test_pruning_keeps_the_newest_checkpoints_by_step_whatever_their_kind(tmp_path):
    names = ["v-e0001", "v-step000004", "v-e0002", "v-step000007", "v-e0003", "v-step000009"]
    for name in names + ["v-step000009-copy", "other-e0009"]:
        (tmp_path / f"{name}.safetensors").write_bytes(b"x")
    # 3 steps an epoch: e0001 is step 3, e0002 step 6, e0003 step 9, where a stop's step save came after it.
    removed = prune_checkpoints(tmp_path, "v", keep=3, steps_per_epoch=3)
    assert [p.stem for p in removed] == names[:3]
    assert sorted(p.stem for p in tmp_path.iterdir()) == sorted(names[3:] + ["v-step000009-copy", "other-e0009"])


def test_the_setup_field_shows_and_reads_back_prompts_with_their_options():
    from loratui.widgets.setting_field import format_value, parse_value
    from trainer.contract.config.schema import FIELDS

    info = FIELDS["output.sample_prompts"]
    prompts = ["zk, smile --n lowres, blurry --w 768 --h 1280 --d 3", "zk --ss euler_a"]
    text = format_value(info, prompts)
    assert text == "zk, smile --n lowres, blurry --w 768 --h 1280 --d 3; zk --ss euler_a"
    assert parse_value(info, text) == prompts
