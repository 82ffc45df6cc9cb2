"""The ``loratui`` command's entry point and its core subcommands (see ``loratui.cli``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from loratui import __version__
from loratui.cli.common import DEFAULT_CONFIG, EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, add_overrides


def _app_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loratui", description="Train SD1.5 and SDXL LoRAs from the terminal.",
        epilog="commands:\n  demo    build the demo workspace (tiny model, small dataset) and train on it\n"
               "  train   train from a config without the app\n"
               "  resume  continue a stopped or interrupted run from its last checkpoint\n"
               "  check   the guide's warnings and fixes for a config (exit 1 on a danger)\n"
               "  runs    list runs: running, finished, stopped or failed\n"
               "  attach  open the app on a run (after an SSH drop: the run kept going)\n"
               "  dataset check a dataset folder: `loratui dataset scan DIR` (changes nothing)\n"
               "  inspect show a LoRA file's type, dim/alpha per block, base model, training settings and tags\n"
               "  resize  make a LoRA/LoCon file smaller: `loratui resize FILE --dim N --out OUT`\n"
               "  export  write a config's sd-scripts equivalent: `loratui export CONFIG --to sd-scripts DIR`\n"
               "  import  read an sd-scripts or LoRA_Easy_Training_Scripts config into a loratui config\n"
               "  serve   the app in a browser tab, on 127.0.0.1 (reach it through SSH port forwarding)\n\n"
               "`loratui COMMAND --help` tells more.", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", nargs="?", type=Path,
                        help=f"the training config to open (default: ./{DEFAULT_CONFIG} when it exists)")
    add_overrides(parser)
    parser.add_argument("--version", action="version", version=f"loratui {__version__}")
    return parser


def _demo_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loratui demo", description=(
        "Build a demo workspace (a tiny SD1.5 model and a dozen captioned images, made offline) "
        "and open the app on it, or train on it straight away with --headless."))
    parser.add_argument("--dir", type=Path, default=Path("loratui-demo"),
                        help="where the workspace goes (default: ./loratui-demo; an existing one is reused)")
    parser.add_argument("--headless", action="store_true",
                        help="train without the app and print the path of the LoRA it wrote")
    return parser


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loratui train", description=(
        "Train from a config without the app: a progress line here, Ctrl-C stops after the "
        "current step and saves."))
    parser.add_argument("config", type=Path, help="the training config (TOML)")
    add_overrides(parser)
    parser.add_argument("--detach", action="store_true",
                        help="run in the background (survives logout) and print the run folder")
    return parser


def _resume_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loratui resume", description=(
        "Continue a run that was stopped or interrupted, from the state saved with its last "
        "checkpoint; it ends at the step count it planned, in the same run folder."))
    parser.add_argument("run_dir", type=Path, help="the run folder (runs/<name>-<time>)")
    parser.add_argument("--detach", action="store_true", help="run in the background and print the run folder")
    return parser


def _check_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loratui check", description=(
        "Check a config against the guide's rules of thumb: each finding with its severity, the setting "
        "it concerns and, where there is one, the fix. Exit status 1 when any finding is a danger, "
        "2 when the config cannot be used at all (every problem is named at once), else 0."))
    parser.add_argument("config", type=Path, help="the training config (TOML)")
    add_overrides(parser)
    parser.add_argument("--format", choices=("text", "json"), default="text",
                        help="json: one object in every case, with findings (problems as severity error), "
                             "steps, image counts, arch, prediction and exit_code")
    parser.add_argument("--fix", action="store_true",
                        help="apply every danger's and warning's fix, planned together, and save the config "
                             "(in place, keeping the old file as .bak; only changed values are rewritten)")
    parser.add_argument("--out", type=Path, help="with --fix: write the fixed config here instead")
    return parser


def _runs_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loratui runs", description=(
        "List runs, newest first: every run started on this machine (they are remembered) plus the "
        "run folders in the folders named here. A run whose process died without a final event is "
        "shown as failed, with the end of its trainer.log."))
    parser.add_argument("folders", nargs="*", type=Path,
                        help=f"folders holding run folders (default: the output folder of ./{DEFAULT_CONFIG})")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    return parser


def _attach_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loratui attach", description=(
        "Open the app on a run and follow it: the whole history is read back from the run folder, "
        "so nothing is lost by having closed the app or lost the connection."))
    parser.add_argument("run", nargs="?",
                        help="a run folder, or a run's name or the start of it (default: the newest live run, "
                             "else the newest run)")
    return parser


def _print_problems(problems) -> None:
    for problem in problems:  # a problem with the whole file (it is not TOML) names no field
        print(f"loratui: {problem if problem.field else problem.message}", file=sys.stderr)


def _load_workspace(config: Path, overrides: list[str]):
    """A workspace for a config file, or None after printing why it cannot be read."""
    from loratui.workspace import Workspace
    from trainer.contract.config.toml_io import ConfigFileError

    workspace = Workspace()
    try:
        workspace.load(config, overrides)
    except ConfigFileError as exc:
        print(f"loratui: {exc}", file=sys.stderr)
        return None
    return workspace


def _impossible(workspace) -> list:
    """The config's own hard problems (types, limits, unknown keys), with its files' problems beside them.

    Those are checked before anything else: the dataset scan, the step plan and the rules all assume
    a valid config (a resolution of 8 or an arch of "sdxxl" would raise in them). The files it names
    (model, dataset, output) are checked as well, so one run of the command names everything to fix.
    """
    from trainer.contract.config.schema import validate
    from trainer.contract.preflight import preflight

    problems = workspace.parse_problems + validate(workspace.resolved())
    if problems:
        named = {problem.field for problem in problems}
        try:
            problems += [p for p in preflight(workspace.resolved()).problems if p.field not in named]
        except Exception:  # noqa: BLE001 - best effort on a config already known to be broken; its own
            pass           # problems (printed) say what to fix first
    return problems


def _refuse_impossible(workspace) -> bool:
    """Print the config's hard problems (see ``_impossible``); True when there are any."""
    problems = _impossible(workspace)
    _print_problems(problems)
    return bool(problems)


def cmd_train(config: Path, overrides: list[str], detach: bool) -> int:
    """Check the config, then train in the foreground or start a detached run."""
    from loratui.runs.headless import train_in_foreground
    from loratui.runs.launch import start_detached
    from loratui.runs.registry import register_run
    from trainer.contract.rundir import create_run_dir

    workspace = _load_workspace(config, overrides)
    if workspace is None or _refuse_impossible(workspace):
        return EXIT_BAD_INPUT
    assessment = workspace.assess()
    if not assessment.startable:
        _print_problems(assessment.problems)
        return EXIT_BAD_INPUT
    run = create_run_dir(workspace.resolved())
    register_run(run)
    if detach:
        pid = start_detached(run)
        print(f"training in the background (pid {pid}); follow it with: tail -f {run.events}", file=sys.stderr)
        print(run.root)
        return EXIT_OK
    print(f"run folder: {run.root}", file=sys.stderr)
    return _finish(train_in_foreground(run))


def _finish(state) -> int:
    if state.phase == "done":
        print(state.output)
        return EXIT_OK
    if state.phase == "stopped":
        return EXIT_OK
    if state.advice:
        print(f"loratui: {state.advice}", file=sys.stderr)
    return EXIT_FAILED


def cmd_check(config: Path, overrides: list[str], output_format: str, fix: bool = False,
              out: Path | None = None) -> int:
    """Print the guide's findings for a config (JSON: one object in every case, see ``loratui.check_report``)."""
    import json

    from loratui.check_report import check_report
    from loratui.estimates import detect_gpus
    from loratui.rules import worst
    from loratui.workspace import Workspace
    from trainer.contract.config.schema import Problem
    from trainer.contract.config.toml_io import ConfigFileError

    def finish(code: int, problems: list, assessment=None) -> int:
        _print_problems(problems)
        if output_format == "json":
            print(json.dumps(check_report(config, code, problems, assessment), indent=2, default=str))
        elif assessment is not None:
            _print_findings(config, assessment)
        return code

    workspace = Workspace()
    try:
        workspace.load(config, overrides)
    except ConfigFileError as exc:
        return finish(EXIT_BAD_INPUT, [Problem("", str(exc))])
    problems = _impossible(workspace)
    if problems:
        return finish(EXIT_BAD_INPUT, problems)
    gpus = detect_gpus()
    if fix:
        _fix_everything(workspace, gpus, out)
    result = workspace.assess(gpus=gpus)
    if result.problems:
        return finish(EXIT_BAD_INPUT, result.problems, result)
    return finish(EXIT_FAILED if worst(result.findings) == "danger" else EXIT_OK, [], result)


def _fix_everything(workspace, gpus, out: Path | None) -> None:
    """Apply every fix jointly (``loratui.rules.fix_all``) and save, saying what changed on stderr."""
    plan = workspace.plan_every_fix(gpus)
    for finding in plan.applied:
        print(f"fixed: {finding.fix.label} [{finding.rule}]", file=sys.stderr)
    for finding in plan.unsafe:
        print(f"not fixed: {finding.rule}: its fix ({finding.fix.label}) would raise a new danger", file=sys.stderr)
    if not plan.changed:
        print("nothing to fix", file=sys.stderr)
        if out is None:
            return
    workspace.take_fixes(plan)
    backup = workspace.save(out)
    print(f"saved {workspace.path}" + (f" (the previous file is kept as {backup.name})" if backup else ""),
          file=sys.stderr)


def _print_findings(config: Path, result) -> None:
    from loratui.check_report import image_counts
    from trainer.contract.config.toml_io import toml_value

    from loratui.summary import estimates_text, formula_words

    plan = result.plan
    if plan is not None:
        print(f"{config}: {plan.images} images, {plan.total_steps} steps, {len(result.findings)} findings")
        print(f"steps: {formula_words(plan)}")
    counts = image_counts(result.facts)
    if counts and counts["broken"]:
        shown = "; ".join(f"{Path(b['path']).name} ({b['why']})" for b in counts["broken_files"][:5])
        more = f"; and {counts['broken'] - 5} more" if counts["broken"] > 5 else ""
        print(f"images: {counts['usable']} usable of {counts['found']}; left out: {shown}{more}")
    if result.prediction is not None:
        print(f"model: predicts {result.prediction.explanation}")
    if result.estimates is not None:
        print(f"estimates: {estimates_text(result.estimates)}")
    for finding in result.findings:
        print(f"{finding.severity.upper():6} {finding.field}: {finding.message} [{finding.rule}]")
        if finding.fix:
            flags = " ".join(f"--set {k}={toml_value(v)}" for k, v in finding.fix.changes.items())
            print(f"       fix: {finding.fix.label}   ({flags})")
    if not result.findings and not result.problems:
        print("No advice: this config follows the guide.")


def cmd_resume(folder: Path, detach: bool) -> int:
    """Resume a run in the foreground or detached."""
    from loratui.runs.headless import train_in_foreground
    from loratui.runs.launch import resumable_run, start_detached

    run, why = resumable_run(folder)
    if run is None:
        print(f"loratui: {why}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if detach:
        pid = start_detached(run, resume=True)
        print(f"resumed in the background (pid {pid}); follow it with: tail -f {run.events}", file=sys.stderr)
        print(run.root)
        return EXIT_OK
    return _finish(train_in_foreground(run, resume=True))


def _default_run_folders() -> list[Path]:
    """The output folder of ./loratui.toml, when there is one (runs elsewhere come from the registry)."""
    if not DEFAULT_CONFIG.is_file():
        return []
    from trainer.contract.config.toml_io import ConfigFileError, load_config

    try:
        config, _ = load_config(DEFAULT_CONFIG)
    except ConfigFileError:
        return []
    return [Path(config.output.dir)]


def cmd_runs(folders: list[Path], output_format: str) -> int:
    """Print every known run with its state."""
    import json

    from loratui.runs.state import format_duration
    from loratui.runs.registry import find_runs

    summaries = find_runs(folders or _default_run_folders())
    if output_format == "json":
        print(json.dumps([{
            "run": str(s.paths.root), "status": s.status, "step": s.state.step, "total_steps": s.state.total_steps,
            "loss": s.state.loss, "output": s.state.output, "pid": s.pid, "error": s.state.error_message or None,
            "log_tail": s.log_tail} for s in summaries], indent=2))
        return EXIT_OK
    if not summaries:
        print("No runs yet. Start one with `loratui train CONFIG`, from the app, or try `loratui demo`.")
        return EXIT_OK
    for s in summaries:
        state = s.state
        steps = f"{state.step}/{state.total_steps}" if state.total_steps else "-"
        loss = f"{state.loss:.4f}" if state.loss is not None else "-"
        eta = f"  ETA {format_duration(state.eta_seconds)}" if s.status == "running" and state.eta_seconds else ""
        print(f"{s.status:9} {steps:>13}  loss {loss:>7}  {s.paths.root}{eta}")
        if state.output:
            print(f"{'':9} output: {state.output}")
        elif s.status == "failed":
            print(f"{'':9} {state.error_message} {state.advice}".rstrip())
            for line in s.log_tail[-5:]:
                print(f"{'':9} │ {line}")
        elif s.status == "stopped" and state.last_checkpoint:
            print(f"{'':9} checkpoint: {state.last_checkpoint}  (continue with: loratui resume {s.paths.root})")
    return EXIT_OK


def cmd_attach(wanted: str | None) -> int:
    """Open the app following one run."""
    from loratui.runs.registry import choose_run, find_runs

    summary, why = choose_run(find_runs(_default_run_folders()), wanted)
    if summary is None:
        print(f"loratui: {why}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_app(None, [], attach=summary.paths.root)


def cmd_demo(folder: Path, headless: bool) -> int:
    """Build (or reuse) the demo workspace, then train headless or open the app."""
    from loratui.demo import ensure_demo_workspace

    print(f"preparing the demo workspace in {folder.resolve()} …", file=sys.stderr)
    try:
        workspace = ensure_demo_workspace(folder)
    except (OSError, RuntimeError) as exc:
        print(f"loratui: could not build the demo workspace in {folder}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if headless:
        return cmd_train(workspace.config, [], detach=False)
    return run_app(workspace.config, [])


def run_app(config: Path | None, overrides: list[str], attach: Path | None = None) -> int:
    """Open the terminal app (following the run in ``attach``, when given)."""
    from loratui.app import LoraTuiApp
    from loratui.widgets.sample_view import enable_terminal_graphics

    # Asks the terminal about Sixel/Kitty graphics, which only works before Textual owns the input.
    enable_terminal_graphics()
    app = LoraTuiApp(config_path=config, overrides=overrides, attach=attach)
    app.run()
    if app.farewell:
        print(app.farewell)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``loratui`` command."""
    try:
        return _dispatch(sys.argv[1:] if argv is None else argv)
    except BrokenPipeError:
        # The reader went away (`loratui check … | head`): stop quietly, as Unix tools do.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] == "dataset":
        from loratui.cli.dataset import dataset_main
        return dataset_main(argv[1:])
    if argv and argv[0] == "serve":
        from loratui.cli.serve import serve_main
        return serve_main(argv[1:])
    if argv and argv[0] == "inspect":
        from loratui.cli.inspect import inspect_main
        return inspect_main(argv[1:])
    if argv and argv[0] == "resize":
        from loratui.cli.resize import resize_main
        return resize_main(argv[1:])
    if argv and argv[0] == "export":
        from loratui.cli.interop import export_main
        return export_main(argv[1:])
    if argv and argv[0] == "import":
        from loratui.cli.interop import import_main
        return import_main(argv[1:])
    if argv and argv[0] == "demo":
        args = _demo_parser().parse_args(argv[1:])
        return cmd_demo(args.dir, args.headless)
    if argv and argv[0] == "train":
        args = _train_parser().parse_args(argv[1:])
        return cmd_train(args.config, args.overrides, args.detach)
    if argv and argv[0] == "check":
        args = _check_parser().parse_args(argv[1:])
        return cmd_check(args.config, args.overrides, args.format, args.fix, args.out)
    if argv and argv[0] == "resume":
        args = _resume_parser().parse_args(argv[1:])
        return cmd_resume(args.run_dir, args.detach)
    if argv and argv[0] == "runs":
        args = _runs_parser().parse_args(argv[1:])
        return cmd_runs(args.folders, args.format)
    if argv and argv[0] == "attach":
        args = _attach_parser().parse_args(argv[1:])
        return cmd_attach(args.run)
    args = _app_parser().parse_args(argv)
    config = args.config
    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    if config is not None and not config.exists():
        print(f"loratui: {config}: no such file", file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_app(config, args.overrides)
