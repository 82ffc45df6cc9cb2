"""``python -m trainer.launcher ACCELERATE-LAUNCH-ARGS``: ``accelerate launch``, stopped cleanly.

The launcher of a multi-process run is the run's process: the app records its pid and sends it
SIGTERM to stop. Torch's launcher passes the signal on to every trainer, waits for them (they
save a checkpoint and exit 0), and then raises the signal as an exception, which would end the
launcher with a traceback and status 1 although the stop went as asked. accelerate 1.16 and later
turn that exception into ``sys.exit(128 + signal)`` (143 for SIGTERM) themselves. Here either form
is a normal end; everything else (a trainer that failed) keeps accelerate's own exit status.
"""

from __future__ import annotations

import signal
import sys

STOP_STATUSES = frozenset({128 + signal.SIGTERM, 128 + signal.SIGINT})
"""The exit statuses accelerate >= 1.16 gives a launch stopped by SIGTERM or Ctrl-C."""


def main(argv: list[str] | None = None) -> int:
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.api import SignalException

    args = launch_command_parser().parse_args(argv)
    try:
        launch_command(args)
    except SignalException as exc:
        print(f"Stopped on request ({exc}); the trainers were passed the signal.", file=sys.stderr)
    except SystemExit as exc:
        if exc.code not in STOP_STATUSES:
            raise
        print(f"Stopped on request (exit status {exc.code}); the trainers were passed the signal.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
