"""Sample prompts with options, samplers and every-N-steps settings between loratui and sd-scripts."""

from __future__ import annotations

from pathlib import Path

from loratui.interop import import_file
from loratui.interop.sdscripts_samples import resolved_prompts
from tests.unit.test_interop_sdscripts import base_config, make_dataset, round_trip
from trainer.contract.config.schema import validate, with_value
from trainer.contract.sample_prompts import SamplePrompt, parse_prompt

PROMPTS = """# sd-scripts prompt file
zkchar, smile --n lowres, blurry --w 832 --h 1216 --l 6 --s 28 --d 100 --ss k_euler_a
zkchar, running --n lowres, blurry --l 6 --s 28 --d 101
zkchar --n lowres, blurry --l 6 --s 40 --d 77 --cn pose.png
"""


def _kohya(tmp_path: Path, extra: str) -> Path:
    dataset = make_dataset(tmp_path / "dataset")
    (tmp_path / "prompts.txt").write_text(PROMPTS)
    path = tmp_path / "kohya.toml"
    path.write_text(f'pretrained_model_name_or_path = "{tmp_path / "m.safetensors"}"\n'
                    f'train_data_dir = "{dataset}"\nresolution = "1024,1024"\nsample_prompts = "prompts.txt"\n'
                    + extra)
    return path


def test_a_prompt_file_with_options_imports_each_prompts_own_and_the_shared_ones_run_wide(tmp_path):
    result = import_file(_kohya(tmp_path, 'sample_sampler = "k_lms"\nsample_every_n_steps = 200\n'
                                          'save_every_n_steps = 500\nsave_last_n_steps = 1500\n'))
    out, report = result.config.output, result.report
    assert result.problems == []
    # Shared by every prompt: the negative prompt, the CFG scale; by most: 28 steps; seeds count up from 100.
    assert (out.sample_negative_prompt, out.sample_cfg, out.sample_steps, out.sample_seed) == \
        ("lowres, blurry", 6.0, 28, 100)
    assert out.sample_prompts == ["zkchar, smile --w 832 --h 1216 --ss euler_a", "zkchar, running",
                                  "zkchar --s 40 --d 77"]
    assert out.sample_sampler == "lms"  # k_lms is sd-scripts' other name for LMS
    assert (out.sample_every_n_steps, out.save_every_n_steps, out.keep_last_n_checkpoints) == (200, 500, 3)
    dropped = {e.source: e for e in report.not_mapped}
    # The one option loratui cannot use is named, with the prompt it was on; the prompt itself is kept.
    assert dropped["sample_prompts --cn"].value == "pose.png" and "'zkchar'" in dropped["sample_prompts --cn"].note
    for key in ("sample_every_n_steps", "save_every_n_steps", "save_last_n_steps", "sample_sampler"):
        assert key not in dropped

    # Each prompt is drawn as sd-scripts drew it (but for --d-less seeds, which sd-scripts draws at random).
    drawn = resolved_prompts(result.config, "sdxl")
    assert drawn[0] == SamplePrompt("zkchar, smile", "lowres, blurry", 6.0, 28, 832, 1216, 100, "euler_a")
    assert drawn[2] == SamplePrompt("zkchar", "lowres, blurry", 6.0, 40, 1024, 1024, 77, None)


def test_an_unknown_sampler_is_reported_and_prompts_without_options_take_sd_scripts_defaults(tmp_path):
    (tmp_path / "p").mkdir()
    result = import_file(_kohya(tmp_path / "p", 'sample_sampler = "dpm_2_a"\n'))
    assert result.config.output.sample_sampler == "euler"
    (entry,) = [e for e in result.report.approximate if e.source == "sample_sampler"]
    assert entry.value == "dpm_2_a" and "euler" in entry.note.lower()


def test_prompts_with_options_and_step_settings_round_trip(tmp_path):
    config = base_config(tmp_path, "sdxl")
    for key, value in (("output.sample_prompts", ["zkchar --n bad hands --w 768 --h 1280", "zkchar, smile --d 9",
                                                  "zk --l 3.5 --s 12 --ss dpmsolver++"]),
                       ("output.sample_negative_prompt", "lowres"), ("output.sample_cfg", 6.5),
                       ("output.sample_sampler", "heun"), ("output.sample_every_n_steps", 250),
                       ("output.save_every_n_steps", 100), ("output.save_every_n_epochs", 0),
                       ("output.keep_last_n_checkpoints", 4)):
        config = with_value(config, key, value)
    assert validate(config) == []
    export, result = round_trip(config, tmp_path / "out")
    lines = [parse_prompt(line) for line in export.files["sample_prompts.txt"].splitlines()
             if not line.startswith("#")]
    # sd-scripts reads every option on the line: nothing is left to defaults that differ from loratui's.
    assert lines[1] == SamplePrompt("zkchar, smile", "lowres", 6.5, 20, 1024, 1024, 9, None)
    assert lines[2].sampler == "dpmsolver++" and lines[0].sampler is None
    back = result.config
    assert result.problems == [] and [e.text() for e in result.report.not_mapped] == []
    assert resolved_prompts(back, "sdxl") == resolved_prompts(config, "sdxl")
    assert back.output == config.output  # written in the options' usual order, the prompts come back word for word


def test_save_last_n_steps_without_step_saves_is_reported_and_keeps_sd_scripts_default(tmp_path):
    result = import_file(_kohya(tmp_path, "save_every_n_epochs = 1\nsave_last_n_steps = 300\n"))
    assert result.config.output.keep_last_n_checkpoints == 0  # sd-scripts keeps every epoch checkpoint
    (entry,) = [e for e in result.report.not_mapped if e.source == "save_last_n_steps"]
    assert entry.value == 300 and "by step" in entry.note
