"""The monitor under load: ingestion, key latency, and memory over a million-step history.

    python bench/bench_monitor.py [--rate 1000] [--seconds 15] [--history 1000000]

Three measurements, each a ratio against a baseline taken in the same session:

1. Keeping up. The stand-in trainer (tests/fake_trainer.py) writes ``--rate`` step events a
   second while the app (headless, 100×32) follows it. Reported: the events the monitor
   folded per second, and how far behind the file it was at the end (goal: it keeps up, i.e.
   ingests the full rate and ends less than a second behind).
2. Key latency. Switching tabs (a real key press through Textual, waiting until the tab is
   shown) while the trainer writes at full rate, against the same presses while the app
   follows a finished run. Goal: the median under load within 2× the idle median, and well
   under 100 ms.
3. Memory. Runs of 10,000, 100,000, ``--history`` and twice that many step events are
   replayed by the follower (as attaching does); the memory it keeps (tracemalloc) at twice the
   history against the history is the bounded-memory check (goal: 1.0x within a few percent),
   with the replay rate and the plot redraw time at each length.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
FAKE_TRAINER = REPO / "tests" / "fake_trainer.py"
PRESSES = 40


def new_run(parent: Path):
    from trainer.contract.config.schema import Config, with_value
    from trainer.contract.rundir import create_run_dir

    return create_run_dir(with_value(Config(), "output.dir", str(parent)))


def start_fake(run, *args: str) -> subprocess.Popen:
    with open(run.log, "ab") as log:
        return subprocess.Popen([sys.executable, str(FAKE_TRAINER), str(run.root), *args], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def last_step_written(run) -> int:
    """The step of the newest step event in the file (read from its end)."""
    import json

    with open(run.events, "rb") as handle:
        handle.seek(0, 2)
        handle.seek(max(0, handle.tell() - 4096))
        for line in reversed(handle.read().split(b"\n")):
            if b'"step"' in line and b'"type": "step"' in line:
                try:
                    return json.loads(line)["step"]
                except ValueError:
                    continue
    return 0


async def press_latencies(app, count: int, run=None, rate: float = 0.0) -> tuple[list[float], list[float]]:
    """Seconds from a key arriving until its tab is the active one, ``count`` times.

    The key goes in where a terminal's key would (the driver's message queue), not through
    Pilot.press, which also waits for animations. With ``run``, also samples how far behind the
    file the monitor is, in seconds of trainer output.
    """
    from textual import events
    from textual.widgets import TabbedContent

    tabs = app.screen.query_one("#monitor-tabs", TabbedContent)
    monitor = app.screen.monitor
    seconds, lags = [], []
    for index in range(count):
        key, wanted = (("l", "tab-log"), ("p", "tab-loss"))[index % 2]
        began = time.perf_counter()
        app._driver.send_message(events.Key(key, key))
        while tabs.active != wanted:
            await asyncio.sleep(0.0005)
        seconds.append(time.perf_counter() - began)
        if run is not None:
            lags.append(max(0, last_step_written(run) - monitor.state.step) / rate)
        await asyncio.sleep(0.25)  # a person presses keys a few times a second at most
    return seconds, lags


async def follow_and_press(run, wait_for_steps: int | None, measure) -> dict:
    from loratui.app import LoraTuiApp

    app = LoraTuiApp(attach=run.root, gpus=[])
    result: dict = {}
    async with app.run_test(size=(100, 32)) as pilot:
        while app.screen.run is None:
            await pilot.pause(0.05)
        monitor = app.screen.monitor
        if wait_for_steps is not None:
            while monitor.state.step < wait_for_steps:
                await pilot.pause(0.05)
        result = await measure(pilot, app, monitor)
    return result


def bench_live(rate: float, seconds: float) -> None:
    from trainer.contract.events import read_events

    steps = int(rate * seconds)
    with tempfile.TemporaryDirectory() as work:
        idle_run = new_run(Path(work))
        start_fake(idle_run, "--steps", "2000", "--rate", "0").wait()

        async def idle(pilot, app, monitor):
            while monitor.state.phase != "done":
                await pilot.pause(0.05)
            return {"latency": (await press_latencies(app, PRESSES))[0]}

        baseline = asyncio.run(follow_and_press(idle_run, None, idle))["latency"]

        live_run = new_run(Path(work))
        process = start_fake(live_run, "--steps", str(steps), "--rate", str(rate), "--scenario", "hold")

        async def loaded(pilot, app, monitor):
            began, first = time.perf_counter(), monitor.state.step
            latency, lags = await press_latencies(app, PRESSES, live_run, rate)
            elapsed = time.perf_counter() - began
            ingested = monitor.state.step - first
            while monitor.state.step < steps and time.perf_counter() - began < seconds * 3:
                await pilot.pause(0.05)
            return {"latency": latency, "lags": lags, "ingested": ingested, "elapsed": elapsed,
                    "final_step": monitor.state.step}

        try:
            live = asyncio.run(follow_and_press(live_run, 50, loaded))
        finally:
            process.terminate()
            process.wait(timeout=30)
        written = sum(1 for e in read_events(live_run.events) if e["type"] == "step")

    idle_median, live_median = statistics.median(baseline), statistics.median(live["latency"])
    print(f"keeping up: {written} step events written at {rate:g}/s; while keys were pressed the monitor folded "
          f"{live['ingested']} in {live['elapsed']:.1f} s ({live['ingested'] / live['elapsed']:.0f}/s), was at most "
          f"{max(live['lags']):.2f} s behind the file (median {statistics.median(live['lags']):.2f} s), and ended at "
          f"step {live['final_step']}/{written}")
    print(f"key latency (tab switch, {PRESSES} presses): idle median {idle_median * 1000:.1f} ms "
          f"(p95 {sorted(baseline)[int(PRESSES * 0.95) - 1] * 1000:.1f}), under {rate:g} events/s median "
          f"{live_median * 1000:.1f} ms (p95 {sorted(live['latency'])[int(PRESSES * 0.95) - 1] * 1000:.1f}) "
          f"-> {live_median / idle_median:.2f}x")


def write_history(run, steps: int) -> None:
    from trainer.contract.events import EventWriter

    with EventWriter(run.events) as events:
        events.emit("start", total_steps=steps, epochs=10, device="cpu")
        for step in range(1, steps + 1):
            events.emit("step", step=step, total_steps=steps, epoch=1 + step * 10 // (steps + 1),
                        loss=0.1 + (step % 97) / 1000, lr=1e-4, seconds_per_step=0.5)
        events.emit("done", step=steps, total_steps=steps, output="x.safetensors", seconds=1.0)


def replay(run):
    """Replay a whole run with the follower, as attaching does; returns the follower."""
    from loratui.runs.follower import RunFollower

    follower = RunFollower(run)
    while not follower.poll().caught_up:
        pass
    return follower


def replay_seconds(run) -> float:
    began = time.perf_counter()
    replay(run)
    return time.perf_counter() - began


def kept_bytes(run) -> tuple[int, object]:
    """The memory a replayed follower keeps (tracemalloc, after a collection), and the follower."""
    gc.collect()
    tracemalloc.start()
    follower = replay(run)
    gc.collect()
    kept, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return kept, follower


def plot_ms(follower) -> float:
    from loratui.monitor.plot import colours_from_theme, render_loss_plot
    from loratui.themes import LORATUI_THEME

    colours = colours_from_theme(LORATUI_THEME)
    series = follower.history.series(100)
    times = []
    for _ in range(10):
        began = time.perf_counter()
        render_loss_plot(series.steps, series.loss, series.smoothed, series.lr, 100, 20, colours)
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def bench_memory(history: int) -> None:
    # The buckets merge pairwise whenever they reach capacity, so their count saw-tooths between
    # half and all of it; twice the history is the fair comparison for "bounded".
    lengths = (10_000, 100_000, history, 2 * history)
    kept = {}
    with tempfile.TemporaryDirectory() as work:
        runs = {}
        for length in lengths:
            runs[length] = new_run(Path(work))
            write_history(runs[length], length)
        print(f"{history}-step events file: {runs[history].events.stat().st_size / 2**20:.0f} MiB")
        replay(runs[lengths[0]])  # imports and caches that happen once are not part of any figure
        for length in lengths:
            kept[length], follower = kept_bytes(runs[length])
            seconds = replay_seconds(runs[length])
            print(f"{length:>9} steps: the follower keeps {kept[length] / 1024:.0f} KiB, replays in {seconds:.2f} s "
                  f"({length / seconds:.0f} events/s), plot redraw (100x20) {plot_ms(follower):.1f} ms")
    print(f"memory at {2 * history} steps / at {history} steps: {kept[2 * history] / kept[history]:.2f}x "
          f"(at {history} / at 100,000: {kept[history] / kept[100_000]:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    if not args.skip_live:
        bench_live(args.rate, args.seconds)
    if not args.skip_memory:
        bench_memory(args.history)


if __name__ == "__main__":
    main()
