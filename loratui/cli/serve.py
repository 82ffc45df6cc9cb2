"""``loratui serve``: the app in a browser tab, through textual-serve.

Each browser tab gets its own app process, started by textual-serve and ended when the tab
closes. That is safe because the app never owns a training run: training is a detached process
of its own (see loratui/runs/launch.py), so closing the tab, like dropping an SSH link, stops nothing.

The server has no login. It binds to 127.0.0.1 unless told otherwise, so it is reachable only
from the box itself; from a laptop, forward the port over SSH
(``ssh -L 8000:127.0.0.1:8000 box``) and open http://127.0.0.1:8000.
"""

from __future__ import annotations

import argparse
import ipaddress
import shlex
import socket
import sys
from pathlib import Path

from loratui.cli.common import DEFAULT_CONFIG, EXIT_BAD_INPUT, EXIT_OK, add_overrides

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def serve_parser() -> argparse.ArgumentParser:
    """The ``loratui serve`` command line."""
    parser = argparse.ArgumentParser(prog="loratui serve", description=(
        "Serve the app to a browser tab. It listens on 127.0.0.1 only (reach it through SSH port "
        "forwarding); closing the tab never stops a training run."))
    parser.add_argument("config", nargs="?", type=Path,
                        help="the training config each tab opens (default: ./loratui.toml when it exists)")
    add_overrides(parser)
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help="address to listen on (default 127.0.0.1). Anything else lets whoever "
                             "reaches the port drive the box: there is no login")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to listen on (default {DEFAULT_PORT})")
    parser.add_argument("--public-url", default=None,
                        help="the address the browser uses, when it differs from http://HOST:PORT "
                             "(e.g. a forwarded port with another number)")
    return parser


def is_loopback(host: str) -> bool:
    """Whether ``host`` names only this machine (127.0.0.0/8, ::1 or localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def app_command(config: Path | None, overrides: list[str]) -> str:
    """The shell command textual-serve runs for each tab.

    textual-serve starts it through a shell, so every part is quoted: a config path with spaces
    or shell characters is passed as one argument and never interpreted.
    """
    argv = [sys.executable, "-m", "loratui"]
    if config is not None:
        argv.append(str(config.resolve()))
    for override in overrides:
        argv += ["--set", override]
    return shlex.join(argv)


def _port_problem(host: str, port: int) -> str | None:
    """Why the server could not listen on host:port, or None when it can."""
    if not 0 < port < 65536:
        return f"--port must be between 1 and 65535; it is {port}."
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except socket.gaierror:
        return f"--host {host} is not an address of this machine."
    except OSError as exc:
        return f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another with --port."
    return None


def serve_main(argv: list[str]) -> int:
    """Entry point of ``loratui serve``."""
    args = serve_parser().parse_args(argv)
    config = args.config
    if config is None and DEFAULT_CONFIG.is_file():
        config = DEFAULT_CONFIG
    if config is not None and not config.exists():
        print(f"loratui serve: {config}: no such file", file=sys.stderr)
        return EXIT_BAD_INPUT
    problem = _port_problem(args.host, args.port)
    if problem:
        print(f"loratui serve: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not is_loopback(args.host):
        print(f"loratui serve: listening on {args.host}, not only on this machine: anyone who can reach "
              f"port {args.port} controls training on this box. Prefer SSH port forwarding.", file=sys.stderr)

    from textual_serve.server import Server

    url_host = f"[{args.host}]" if ":" in args.host else args.host
    server = Server(app_command(config, args.overrides), host=args.host, port=args.port, title="loratui",
                    public_url=args.public_url or f"http://{url_host}:{args.port}")
    print(f"loratui serve: open {server.public_url} (from a laptop: ssh -L {args.port}:127.0.0.1:{args.port} "
          f"THIS_BOX, then the same address). Ctrl-C stops serving; runs keep training.", flush=True)
    server.serve()
    return EXIT_OK
