"""What every ``loratui`` subcommand shares: exit codes, the default config and ``--set``."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_CONFIG = Path("loratui.toml")
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def add_overrides(parser: argparse.ArgumentParser) -> None:
    """Give a command the ``--set SECTION.KEY=VALUE`` option (repeatable), read into ``overrides``."""
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one setting, e.g. --set training.batch_size=2 (repeatable)")
