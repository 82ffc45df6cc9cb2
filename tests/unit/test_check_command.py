"""`loratui check`: the guide's findings for a config, as text or JSON, with telling exit codes."""

from __future__ import annotations

import json

from loratui.cli import main
from loratui.demo import write_dataset


def _workspace(tmp_path, images=25, **lines):
    (tmp_path / "model" / "unet").mkdir(parents=True)
    (tmp_path / "model" / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    write_dataset(tmp_path / "data", count=images)
    config = tmp_path / "lora.toml"
    config.write_text('kind = "character"\n[model]\nbase = "model"\n[dataset]\npath = "data"\n'
                      'trigger_word = "zkmascot"\nresolution = 1024\n')
    return config


def test_a_config_that_follows_the_guide_exits_zero(tmp_path, capsys):
    config = _workspace(tmp_path)
    assert main(["check", str(config), "--set", "dataset.repeats=10", "--set", "training.epochs=10"]) == 0
    out = capsys.readouterr().out
    assert "25 images, 630 steps" in out


def test_a_danger_exits_one_and_json_lists_every_finding(tmp_path, capsys):
    config = _workspace(tmp_path)
    assert main(["check", str(config), "--set", "optimizer.unet_lr=5e-3", "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["exit_code"], report["status"]) == (1, "danger")
    findings = report["findings"]
    assert {"rule", "severity", "field", "message", "fix"} == set(findings[0])
    danger = next(f for f in findings if f["rule"] == "lr.unet_too_high")
    assert danger["severity"] == "danger" and danger["fix"]["set"] == {"optimizer.unet_lr": 5e-4}


def test_text_output_names_the_fix_as_a_set_flag(tmp_path, capsys):
    config = _workspace(tmp_path)
    main(["check", str(config), "--set", "training.batch_size=12"])
    out = capsys.readouterr().out
    assert "DANGER training.batch_size" in out and "--set training.batch_size=4" in out


def test_an_unusable_config_exits_two(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[training\n")
    assert main(["check", str(bad)]) == 2
    assert "not valid TOML" in capsys.readouterr().err
    config = _workspace(tmp_path)
    assert main(["check", str(config), "--set", "training.batch_size=0"]) == 2
    assert "training.batch_size: 0 is below the minimum" in capsys.readouterr().err


def test_json_is_one_object_in_every_case_with_problems_as_error_findings(tmp_path, capsys):
    config = _workspace(tmp_path)
    assert main(["check", str(config), "--set", "dataset.repeats=10", "--set", "training.epochs=10",
                 "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "clean"
    assert {f["severity"] for f in report["findings"]} <= {"tip"}
    assert report["steps"] == {"total": 630, "guide_formula": 625}
    assert report["images"] == {"found": 25, "usable": 25, "broken": 0, "uncaptioned": 0, "broken_files": []}

    bad = tmp_path / "bad.toml"
    bad.write_text("[training\n")
    assert main(["check", str(bad), "--format", "json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert report["status"] == "unusable" and report["steps"] is None
    assert [f["severity"] for f in report["findings"]] == ["error"]
    assert "not valid TOML" in report["findings"][0]["message"]


def test_every_problem_is_named_in_one_pass(tmp_path, capsys):
    """An impossible value and a missing model are both named at once, not one per run."""
    config = _workspace(tmp_path)
    assert main(["check", str(config), "--set", "training.batch_size=0", "--set", "model.base=nowhere/x/y",
                 "--set", "dataset.path=no-such-folder", "--format", "json"]) == 2
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    errors = {f["field"] for f in report["findings"] if f["severity"] == "error"}
    assert errors == {"training.batch_size", "model.base", "dataset.path"}
    for field in errors:
        assert f"loratui: {field}: " in captured.err


def test_a_broken_image_is_named_and_counted_apart(tmp_path, capsys):
    config = _workspace(tmp_path)
    (tmp_path / "data" / "broken.png").write_bytes(b"not a picture")
    main(["check", str(config), "--format", "json"])
    images = json.loads(capsys.readouterr().out)["images"]
    assert (images["found"], images["usable"], images["broken"]) == (26, 25, 1)
    assert images["broken_files"][0]["path"].endswith("broken.png")
    main(["check", str(config)])
    assert "images: 25 usable of 26; left out: broken.png (" in capsys.readouterr().out


def test_fix_applies_every_fix_together_keeps_the_file_and_a_second_fix_changes_nothing(tmp_path, capsys):
    """The issue's tiny dataset: fixed one at a time, the steps fix (at batch 4) and the batch fix ran 2040
    steps, a danger. Together: no danger, no warning a fix could remove, and the user's notes kept."""
    config = _workspace(tmp_path, images=12)
    config.write_text("# my notes\n" + config.read_text().replace('resolution = 1024\n', 'resolution = 1024  # XL\n'))
    original = config.read_text()
    assert main(["check", str(config), "--fix", "--format", "json"]) in (0, 1)
    report = json.loads(capsys.readouterr().out)
    assert {f["severity"] for f in report["findings"]} <= {"tip"}, report["findings"]
    fixed = config.read_text()
    assert fixed.startswith("# my notes\n") and "resolution = 1024  # XL" in fixed
    assert (tmp_path / "lora.toml.bak").read_text() == original
    assert main(["check", str(config), "--fix"]) == 0
    assert "nothing to fix" in capsys.readouterr().err and config.read_text() == fixed
    out = tmp_path / "other.toml"
    config.write_text(original)
    main(["check", str(config), "--fix", "--out", str(out)])
    assert config.read_text() == original and out.read_text() == fixed


def test_the_demo_opens_on_the_guides_proven_settings(tmp_path, tiny_sd15):
    # The first thing a new user sees: no warning to fix, only the tip about the two captions left without
    # the trigger word on purpose (to show the trainer putting it first).
    from loratui.assess import assess
    from loratui.checklist import SECTIONS, checklist
    from loratui.demo import DEMO_IMAGES, demo_config
    from loratui.workspace import Workspace
    from trainer.contract.config.schema import with_value

    write_dataset(tmp_path / "dataset", DEMO_IMAGES)
    config = with_value(with_value(demo_config(), "model.base", str(tiny_sd15)), "dataset.path",
                        str(tmp_path / "dataset"))
    assessment = assess(config)
    assert assessment.problems == []
    assert [(f.rule, f.severity) for f in assessment.findings] == [("captions.trigger_missing", "tip")]
    assert assessment.plan.total_steps == 500
    states = checklist(Workspace(config=config, explicit={"kind"}, assessment=assessment))
    # AdamW rather than AdamW8bit: the demo trains on any machine, and bitsandbytes' 8-bit optimizer needs a GPU.
    assert [s.label for s in states if s.item.section in SECTIONS[:2] and not s.done] == \
        ["Cosine schedule, AdamW8bit optimizer"]


def test_the_guides_formula_is_worked_out_and_the_difference_explained(tmp_path, capsys):
    config = _workspace(tmp_path, images=13)
    assert main(["check", str(config), "--set", "dataset.repeats=15", "--set", "training.epochs=15",
                 "--set", "training.batch_size=2"]) in (0, 1)
    out = capsys.readouterr().out
    # 13 × 15 × 15 ÷ 2 is 1462.5; the odd image in each bucket is a step of its own.
    assert "guide's formula: 13 images × 15 repeats × 15 epochs ÷ batch 2 = 1462.5" in out
    assert "partial batch is a whole step, so 1470" in out
