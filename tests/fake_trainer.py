"""A stand-in trainer that writes canned events at a chosen rate (for monitor tests and the benchmark).

    python tests/fake_trainer.py RUN_DIR [--steps N] [--rate EVENTS_PER_S] [--scenario NAME]
                                         [--seconds-per-step S] [--device NAME] [--sample-image PNG]
                                         [--sample-count N] [--sample-seconds S] [--validate-every N]

It behaves like ``python -m trainer`` where the monitor can see it: it records its pid in the
run folder (and removes it when it ends), appends events to ``events.jsonl`` through the real
``EventWriter``, prints tqdm-style progress to stdout, stops gracefully on SIGTERM with a
``stopped`` event, and answers "save"/"sample" requests from ``trainer.contract.control``. Like the
real trainer it announces a sampling round with a ``status`` event, numbers each picture, and takes a
stop between two pictures (``--sample-seconds`` makes each picture take that long). Scenarios shape
the loss series and the ending:

- ``healthy``: a noisy, slowly falling diffusion-like loss; ends with ``done``.
- ``flat``: noisy but never falling; ``oscillating``: swings wildly; both end with ``done``.
- ``oom`` / ``nan``: an ``error`` event with that code after the steps.
- ``die``: prints a traceback and exits without a final event (as a kill -9 or a hard crash would).
- ``hold``: after the steps, waits (still alive) until SIGTERM.
- ``overfitting``: the healthy training loss, with a validation loss that falls for the first half
  of the run and then climbs (as held-out images do once a LoRA memorises its training images).

``--validate-every N`` writes a ``validation`` event every N steps (the healthy shape: falling
with the training loss, unless the scenario is ``overfitting``).

It imports nothing heavy, so a test can run it many times a second; its file name contains
"trainer" so the app's liveness check (which looks at the command line) accepts it.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import shutil
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from trainer.contract.control import take_requests  # noqa: E402
from trainer.contract.events import EventWriter  # noqa: E402
from trainer.contract.rundir import RunPaths, write_pid  # noqa: E402

STOP = {"requested": False}
"""Set by SIGTERM; checked after every step, as the real trainer does."""
SCENARIOS = ("healthy", "flat", "oscillating", "oom", "nan", "die", "hold", "overfitting")


def loss_at(scenario: str, step: int, rng: random.Random) -> float:
    """The canned loss of one step: per-step diffusion loss is noisy whatever the trend."""
    noise = rng.uniform(0.25, 1.75)
    if scenario == "oscillating":
        # Fine at first, then swinging between normal and ten times too high, as with a far too high rate.
        return 0.1 * noise * (12 if step > 100 and (step // 50) % 2 else 1)
    base = 0.14 if scenario == "flat" else 0.06 + 0.1 * math.exp(-step / 400)
    return base * noise


def validation_loss_at(scenario: str, step: int, steps: int) -> float:
    """The canned validation loss after ``step``: fixed noise makes it smooth, unlike the training loss."""
    level = 0.08 + 0.05 * math.exp(-step / 400)
    if scenario == "overfitting":
        level += 0.2 * max(0.0, step - steps / 2) / steps
    return level


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rate", type=float, default=200.0, help="step events per second (0: as fast as possible)")
    parser.add_argument("--scenario", choices=SCENARIOS, default="healthy")
    parser.add_argument("--seconds-per-step", type=float, default=None,
                        help="the pace written into step events (default: the real one)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sample-image", type=Path, default=None, help="a PNG to publish as a sample at the end")
    parser.add_argument("--resumed-from", type=int, default=0, help="start after this step (a resumed run)")
    parser.add_argument("--sample-count", type=int, default=2, help="pictures in a sampling round")
    parser.add_argument("--sample-seconds", type=float, default=0.0, help="how long each picture takes")
    parser.add_argument("--validate-every", type=int, default=0, help="a validation event every N steps (0: none)")
    args = parser.parse_args(argv)

    run = RunPaths(args.run_dir.resolve())
    write_pid(run, os.getpid())
    signal.signal(signal.SIGTERM, lambda *_: STOP.update(requested=True))
    rng = random.Random(7)
    events = EventWriter(run.events)
    epochs = 4
    per_epoch = max(1, math.ceil(args.steps / epochs))
    try:
        events.emit("status", phase="loading", message="Loading sd15 model from fake")
        events.emit("start", run=run.root.name, arch="sd15", device=args.device, precision="fp32", resolution=512,
                    images=20, samples_per_epoch=per_epoch, batches_per_epoch=per_epoch, epochs=epochs, batch_size=1,
                    total_steps=args.steps, formula_steps=args.steps, trainable_parameters=1000,
                    text_encoder_outputs_cached=False, resumed_from_step=args.resumed_from or None)
        interval = 1 / args.rate if args.rate > 0 else 0.0
        started = time.perf_counter()
        for step in range(args.resumed_from + 1, args.steps + 1):
            if interval:
                # Pace against the clock, not with fixed sleeps, so the rate holds under load.
                delay = started + (step - args.resumed_from) * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            loss = float("nan") if args.scenario == "nan" and step > args.steps - 3 else loss_at(args.scenario, step, rng)
            pace = args.seconds_per_step if args.seconds_per_step is not None else interval
            extra = {"vram_peak_gib": 6.5, "vram_total_gib": 24.0} if args.device != "cpu" else {}
            events.emit("step", step=step, total_steps=args.steps, epoch=(step - 1) // per_epoch + 1, loss=loss,
                        lr=1e-4 * (1 - step / (args.steps + 1)), seconds_per_step=pace, **extra)
            if args.validate_every and step % args.validate_every == 0:
                events.emit("validation", step=step, epoch=(step - 1) // per_epoch + 1, images=5, timesteps=5,
                            loss=validation_loss_at(args.scenario, step, args.steps))
            if step % 50 == 0:
                print(f"\rsteps: {step}/{args.steps} loss={loss:.4f}", end="", flush=True)
            for action in take_requests(run.root):
                _answer(action, run, events, step, args)
            if step % per_epoch == 0:
                events.emit("epoch", epoch=step // per_epoch, epochs=epochs, step=step, mean_loss=0.1)
            if STOP["requested"]:
                return _stop(run, events, step, args.steps, step // per_epoch)
        print()
        return _finish(args, run, events)
    finally:
        events.close()
        if args.scenario != "die":
            run.pid.unlink(missing_ok=True)


def _stop(run: RunPaths, events: EventWriter, step: int, total: int, epoch: int) -> int:
    """A requested stop, as the real trainer makes it: a checkpoint, then the ``stopped`` event."""
    path = _write_checkpoint(run, f"fake-step{step:06d}")
    events.emit("checkpoint", epoch=epoch, step=step, path=str(path), reason="stopped")
    events.emit("stopped", step=step, total_steps=total, epoch=epoch, reason="SIGTERM", checkpoint=str(path))
    return 0


def _finish(args: argparse.Namespace, run: RunPaths, events: EventWriter) -> int:
    if args.sample_image is not None:
        _answer("sample", run, events, args.steps, args)
        if STOP["requested"]:  # the stop came while the pictures were drawn
            return _stop(run, events, args.steps, args.steps, 4)
    if args.scenario == "oom":
        events.emit("error", code="oom", message="Out of memory: CUDA out of memory.", advice="Lower the batch size.")
        return 1
    if args.scenario == "nan":
        events.emit("error", code="nan", message="the loss was not a number for 3 steps in a row.",
                    advice="Lower the learning rate.")
        return 1
    if args.scenario == "die":
        print("Traceback (most recent call last):\n  File \"fake\", line 1\nRuntimeError: the fake trainer died",
              flush=True)
        os._exit(9)
    if args.scenario == "hold":
        while not STOP["requested"]:
            for action in take_requests(run.root):
                _answer(action, run, events, args.steps, args)
            time.sleep(0.05)
        return _stop(run, events, args.steps, args.steps, 4)
    path = _write_checkpoint(run, "fake")
    events.emit("done", step=args.steps, total_steps=args.steps, output=str(path), seconds=1.0)
    return 0


def _answer(action: str, run: RunPaths, events: EventWriter, step: int, args: argparse.Namespace) -> None:
    if action == "save":
        path = _write_checkpoint(run, f"fake-step{step:06d}")
        events.emit("checkpoint", epoch=1, step=step, path=str(path), reason="requested")
    elif action == "sample" and args.sample_image is not None:
        _draw_samples(run, events, step, args.sample_image, args.sample_count, args.sample_seconds)


def _draw_samples(run: RunPaths, events: EventWriter, step: int, image: Path, count: int, seconds: float) -> None:
    """A round of ``count`` pictures (copies of ``image``), each taking ``seconds``; a stop ends it early."""
    events.emit("status", phase="sampling", message=f"Drawing {count} sample images at step {step}",
                current=0, total=count)
    folder = run.samples / f"s{step:06d}"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        if STOP["requested"]:
            return  # between two pictures, as the real trainer checks
        time.sleep(seconds)  # "drawing": like a real picture, it is finished even when a stop comes meanwhile
        strength = (0.7, 1.0)[index % 2]
        target = folder / f"p{index // 2:02d}-w{strength}.png"
        shutil.copyfile(image, target)
        events.emit("sample", epoch=1, step=step, path=str(target), prompt="zkmascot, 1girl", strength=strength,
                    seed=42 + index // 2, index=index + 1, total=count)


def _write_checkpoint(run: RunPaths, name: str) -> Path:
    path = run.checkpoints / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"fake")
    return path


if __name__ == "__main__":
    sys.exit(main())
