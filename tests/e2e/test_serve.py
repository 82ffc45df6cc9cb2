"""`loratui serve`: the app in a browser tab, listening on loopback only.

The server runs as a real child process; a websocket client plays the browser tab.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest

from loratui.cli.serve import app_command, is_loopback, serve_main


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening(port: int) -> list[str]:
    """Local addresses of every TCP socket listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, _remote, state = line.split()[1:4]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A = LISTEN
                found.append(address)
    return found


def _start_server(folder: Path, *args: str) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "loratui", "serve", "--port", str(port), *args], cwd=folder,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               start_new_session=True)
    deadline = time.monotonic() + 60
    while not _listening(port):
        assert process.poll() is None, process.stdout.read().decode()
        assert time.monotonic() < deadline, "the server never listened"
        time.sleep(0.1)
    return process, port


def _stop_server(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


@pytest.fixture
def server(tmp_path):
    process, port = _start_server(tmp_path)
    yield port
    _stop_server(process)


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_the_server_listens_on_loopback_only(server):
    addresses = _listening(server)
    # 0100007F is 127.0.0.1 as the kernel prints it; a wildcard would be 00000000 (or :: on tcp6).
    assert addresses == ["0100007F"], addresses


async def _read_tab(port: int, wanted: bytes, timeout: float = 60) -> bytes:
    received = b""
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{port}/") as page:
            assert page.status == 200
            assert f"ws://127.0.0.1:{port}/ws" in await page.text()
        async with session.ws_connect(f"http://127.0.0.1:{port}/ws?width=100&height=30") as tab:
            deadline = time.monotonic() + timeout
            while wanted not in received and time.monotonic() < deadline:
                try:
                    message = await tab.receive(timeout=max(0.1, deadline - time.monotonic()))
                except asyncio.TimeoutError:
                    break
                if message.type == aiohttp.WSMsgType.BINARY:
                    received += message.data
                elif message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                    break
    return received


def test_a_browser_tab_gets_the_app(server):
    received = asyncio.run(_read_tab(server, b"Checklist"))
    assert b"Checklist" in received, received[-2000:]


def test_the_command_quotes_every_part_for_the_shell(tmp_path):
    config = tmp_path / "my config; rm -rf ~.toml"
    command = app_command(config, ["output.name=a b"])
    assert "'" in command and "; rm" not in command.replace(f"'{config}'", "")
    assert command.endswith("--set 'output.name=a b'")


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("127.0.0.2", True), ("0.0.0.0", False), ("192.168.1.5", False),
                                            ("example.org", False)])
def test_loopback_addresses_are_recognised(host, loopback):
    assert is_loopback(host) is loopback


def test_a_busy_port_is_a_clear_message(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert serve_main(["--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err and "--port" in err


def test_a_missing_config_is_named(tmp_path, capsys):
    assert serve_main([str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: no such file" in capsys.readouterr().err


def _app_processes(server_pid: int) -> list[int]:
    """Pids of the app processes the server started (its children running `-m loratui` without `serve`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if b"loratui" in argv and b"serve" not in argv and parent in (server_pid, *_children(server_pid)):
            found.append(int(entry.name))
    return found


def _children(pid: int) -> list[int]:
    try:
        return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()]
    except OSError:
        return []


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's process table")
def test_closing_the_tab_ends_its_app_but_never_the_training_it_started(tmp_path, tiny_sd15):
    from loratui.demo import demo_config, write_dataset
    from loratui.runs.registry import registered_runs
    from tests.trainer.helpers import wait_for
    from trainer.contract.config.schema import with_value
    from trainer.contract.config.toml_io import save_config
    from trainer.contract.events import read_events

    write_dataset(tmp_path / "dataset")
    config_path = tmp_path / "loratui.toml"
    # 60 steps: long enough to be mid-run when the tab closes, short enough for the suite.
    config = with_value(with_value(demo_config(), "model.base", str(tiny_sd15)), "training.epochs", 4)
    save_config(with_value(config, "dataset.repeats", 5), config_path)
    process, port = _start_server(tmp_path, str(config_path))

    def steps(run: Path) -> int:
        return sum(1 for e in read_events(run / "events.jsonl") if e["type"] == "step")

    async def start_training_from_a_tab() -> list[int]:
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{port}/ws?width=100&height=30") as tab:
                shown = b""
                while b"Checklist" not in shown:
                    message = await tab.receive(timeout=60)
                    if isinstance(message.data, bytes):
                        shown += message.data
                await tab.send_json(["stdin", "\x1bOS"])  # F4: the training screen
                for _attempt in range(30):
                    await asyncio.sleep(2)
                    if registered_runs():
                        break
                    await tab.send_json(["stdin", "s"])
                    # This short run is one the guide calls a danger (too few steps): the start asks first.
                    await asyncio.sleep(1)
                    await tab.send_json(["stdin", "y"])
                started = await asyncio.to_thread(
                    wait_for, lambda: registered_runs() and steps(registered_runs()[0]) >= 2, 180)
                assert started, "the tab never started a run"
                apps = _app_processes(process.pid)
                assert apps, "no app process behind the tab"
        return apps  # leaving the block closed the tab

    try:
        apps = asyncio.run(start_training_from_a_tab())
        assert wait_for(lambda: not any(Path(f"/proc/{pid}").exists() for pid in apps), timeout=30), \
            "the tab's app outlived the tab"
        run = registered_runs()[0]
        closed_at = steps(run)
        assert wait_for(lambda: any(e["type"] == "done" for e in read_events(run / "events.jsonl")), timeout=300), \
            (run / "trainer.log").read_text()[-3000:]
        total = next(e for e in read_events(run / "events.jsonl") if e["type"] == "start")["total_steps"]
        assert closed_at < total and steps(run) == total
    finally:
        _stop_server(process)
