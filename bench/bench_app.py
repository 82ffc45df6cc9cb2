"""The app's start-up: time to the first screen in a real terminal, resident memory, and no torch.

    python bench/bench_app.py [--repeat 3] [--history 100000]

Each program runs in a pseudo-terminal (100×32, TERM=xterm-256color) exactly as over SSH, and
the clock runs from exec until a known string of its first screen has been written to the
terminal (escape sequences stripped); its memory is read from /proc/PID/status then. Measured in
one session, median of ``--repeat`` starts each:

1. the import floor: ``python -c "import textual"`` (to exit);
2. a minimal Textual app (one Static) to its first frame: the least any Textual app costs;
3. ``loratui`` in an empty folder, to the checklist screen ("Before you start");
4. ``loratui attach RUN`` on a finished run of ``--history`` step events: to the train screen's
   first frame, and until the whole history is replayed and the run shows "Finished".

Each time is also given as a ratio to the floor and to the minimal app, and each memory figure
as a ratio to the minimal app. Last, the wall between the app and the ML stack is checked twice:
no torch library is mapped into the running app's memory (/proc/PID/maps), and a headless run of
the app through all four screens and the attached run leaves torch, diffusers, transformers and
accelerate out of ``sys.modules``.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import re
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
COLUMNS, LINES = 100, 32
ANSI = re.compile(rb"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1bP[^\x1b]*\x1b\\|\x1b[@-Z\\-_=>]")
HEAVY = ("torch", "diffusers", "transformers", "accelerate", "bitsandbytes")
MAPPED_HEAVY = (b"libtorch", b"libc10", b"/torch/lib/")
MINIMAL_APP = ("from textual.app import App\nfrom textual.widgets import Static\n"
               "class Minimal(App):\n    def compose(self):\n        yield Static('minimal first frame')\n"
               "Minimal().run()\n")


class Terminal:
    """A program running in a pseudo-terminal, with its output drained (and searched) by a thread."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
        self.master = master
        self.text = b""
        self._carry = b""
        self.seen: dict[bytes, float] = {}
        self._lock = threading.Lock()
        self.began = time.perf_counter()
        # A session of its own with the terminal as its controlling terminal, as a login shell gives it.
        self.process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env,
                                        preexec_fn=_take_terminal, close_fds=True)
        os.close(slave)
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        # Keeps reading to the end: a terminal nobody reads fills up and blocks the program.
        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.5)
                if not ready:
                    if self.process.poll() is not None:
                        return
                    continue
                chunk = os.read(self.master, 65536)
            except OSError:  # the program closed the terminal (EIO)
                return
            if not chunk:
                return
            now = time.perf_counter()
            chunk, self._carry = self._carry + chunk, b""
            cut = chunk.rfind(b"\x1b")
            if cut != -1 and len(chunk) - cut < 64 and not ANSI.match(chunk, cut):
                chunk, self._carry = chunk[:cut], chunk[cut:]  # an escape sequence split between reads
            with self._lock:
                self.text = (self.text + ANSI.sub(b"", chunk))[-200_000:]
                for wanted in list(self._wanted):
                    if wanted not in self.seen and wanted in self.text:
                        self.seen[wanted] = now

    _wanted: tuple[bytes, ...] = ()

    def wait_for(self, marker: str, timeout: float = 60.0) -> float:
        """Seconds from exec until ``marker`` was written to the terminal."""
        wanted = marker.encode()
        with self._lock:
            self._wanted = (*self._wanted, wanted)
            if wanted in self.text and wanted not in self.seen:
                self.seen[wanted] = time.perf_counter()
        deadline = time.monotonic() + timeout
        while wanted not in self.seen:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{marker!r} never appeared (exit {self.process.poll()}); the screen showed:\n"
                                 f"{self.text[-2000:].decode(errors='replace')}")
            time.sleep(0.002)
        return self.seen[wanted] - self.began

    def memory(self) -> dict[str, int]:
        """VmRSS and VmHWM of the program now, in bytes."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
        return fields

    def heavy_libraries_mapped(self) -> list[str]:
        """Torch's shared libraries mapped into the program's memory (none, for the app)."""
        maps = Path(f"/proc/{self.process.pid}/maps").read_bytes()
        return sorted({line.split()[-1].decode() for line in maps.splitlines()
                       if any(name in line for name in MAPPED_HEAVY)})

    def quit(self) -> None:
        """Ctrl-Q (the app's quit key), then SIGTERM, then SIGKILL."""
        for attempt in range(3):
            try:
                if attempt == 0:
                    os.write(self.master, b"\x11")
                else:
                    self.process.send_signal(signal.SIGTERM if attempt == 1 else signal.SIGKILL)
                self.process.wait(timeout=5)
                break
            except (OSError, subprocess.TimeoutExpired):
                continue
        self._reader.join(timeout=5)
        os.close(self.master)


def _take_terminal() -> None:
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def environment(home: Path) -> dict[str, str]:
    """A plain SSH session's environment, with the app's state kept in ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEXTUAL")}
    env.update(TERM="xterm-256color", COLORTERM="truecolor", XDG_STATE_HOME=str(home / "state"),
               XDG_CACHE_HOME=str(home / "cache"), XDG_CONFIG_HOME=str(home / "config"))
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    return env


def median_start(repeat: int, command: list[str], cwd: Path, env: dict[str, str], marker: str,
                 then: str | None = None) -> dict:
    """Median seconds to ``marker`` (and to ``then``) over ``repeat`` starts, with memory and mapped libraries."""
    firsts, thens, memories, mapped = [], [], [], set()
    for _ in range(repeat):
        terminal = Terminal(command, cwd, env)
        try:
            firsts.append(terminal.wait_for(marker))
            memory = terminal.memory()
            if then is not None:
                thens.append(terminal.wait_for(then))
                memory = {**terminal.memory(), "first_VmRSS": memory["VmRSS"]}
            memories.append(memory)
            mapped.update(terminal.heavy_libraries_mapped())
        finally:
            terminal.quit()
    middle = sorted(memories, key=lambda m: m["VmRSS"])[len(memories) // 2]
    return {"first": statistics.median(firsts), "then": statistics.median(thens) if thens else None,
            "memory": middle, "mapped": sorted(mapped)}


def floor_seconds(repeat: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import textual"], check=True, env=env, stdin=subprocess.DEVNULL)
        times.append(time.perf_counter() - began)
    return statistics.median(times)


HEADLESS_CHECK = """
import asyncio, json, sys
from pathlib import Path
from loratui.app import LoraTuiApp

async def main():
    app = LoraTuiApp(gpus=[])
    async with app.run_test(size=(100, 32)) as pilot:
        for mode in ("checklist", "dataset", "setup", "train"):
            app.switch_mode(mode)
            await pilot.pause(0.2)
    app = LoraTuiApp(attach=Path(sys.argv[1]), gpus=[])
    async with app.run_test(size=(100, 32)) as pilot:
        while app.screen.run is None or app.screen.monitor.state.phase != "done":
            await pilot.pause(0.05)
        await pilot.pause(1.2)  # the plot redraws at most once a second
asyncio.run(main())
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2].split(","))))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--history", type=int, default=100_000, help="step events in the run attached to")
    args = parser.parse_args()

    from bench_monitor import new_run, write_history

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        home = Path(tmp)
        (home / "empty").mkdir()
        env = environment(home)
        run = new_run(home / "runs")
        write_history(run, args.history)
        size = run.events.stat().st_size / 2 ** 20

        floor = floor_seconds(args.repeat, env)
        minimal = median_start(args.repeat, [sys.executable, "-c", MINIMAL_APP], home / "empty", env,
                               "minimal first frame")
        app = median_start(args.repeat, [sys.executable, "-m", "loratui"], home / "empty", env, "Before you start")
        attach = median_start(args.repeat, [sys.executable, "-m", "loratui", "attach", str(run.root)],
                              home / "empty", env, "path/to/config.toml", then="Finished")
        check = subprocess.run([sys.executable, "-c", HEADLESS_CHECK, str(run.root), ",".join(HEAVY)], env=env,
                               cwd=home / "empty", capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if check.returncode != 0:
            raise SystemExit(f"the headless check failed:\n{check.stderr[-3000:]}")
        imported = json.loads(check.stdout.strip().splitlines()[-1])

    mib = 2 ** 20
    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, Textual {_textual_version()}, "
          f"terminal {COLUMNS}×{LINES}, median of {args.repeat} starts; load average (1 min) before "
          f"{load_before[0]:.2f}, after {os.getloadavg()[0]:.2f}\n")
    print("| measurement | seconds | × import floor | × minimal app |\n|---|---|---|---|")
    rows = [("`python -c \"import textual\"` (import floor)", floor),
            ("minimal Textual app: exec → first frame", minimal["first"]),
            ("`loratui`: exec → checklist painted", app["first"]),
            (f"`loratui attach` ({args.history:,}-step run): exec → first frame", attach["first"]),
            (f"`loratui attach`: exec → whole history replayed (\"Finished\", {size:.0f} MiB of events)",
             attach["then"])]
    for name, seconds in rows:
        print(f"| {name} | {seconds:.2f} | {seconds / floor:.1f} | {seconds / minimal['first']:.2f} |")
    base = minimal["memory"]["VmRSS"]
    print("\n| resident memory (VmRSS) | MiB | × minimal app |\n|---|---|---|")
    for name, value in (("minimal Textual app, first frame", base),
                        ("`loratui`, checklist painted", app["memory"]["VmRSS"]),
                        ("`loratui attach`, first frame", attach["memory"]["first_VmRSS"]),
                        (f"`loratui attach`, {args.history:,} steps replayed", attach["memory"]["VmRSS"]),
                        ("`loratui attach`, peak so far (VmHWM)", attach["memory"]["VmHWM"])):
        print(f"| {name} | {value / mib:.0f} | {value / base:.2f} |")
    mapped = sorted(set(app["mapped"]) | set(attach["mapped"]))
    print(f"\ntorch libraries mapped into the running app: {', '.join(mapped) if mapped else 'none'}")
    print(f"ML modules in sys.modules after a headless tour of all four screens and the attached run: "
          f"{', '.join(imported) if imported else 'none'}")
    return 1 if mapped or imported else 0


def _textual_version() -> str:
    from importlib.metadata import version

    return version("textual")


if __name__ == "__main__":
    sys.exit(main())
