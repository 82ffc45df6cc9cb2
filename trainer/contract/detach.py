"""``python -m trainer.contract.detach LOG -- COMMAND…``: start COMMAND detached and print its pid.

COMMAND runs in a new session (so no terminal hang-up reaches it), reads from /dev/null and
appends its output to LOG. This helper exits at once, which hands COMMAND to the system's
init process: no part of loratui is its parent, so nothing loratui does can end it by accident.
"""

from __future__ import annotations

import subprocess
import sys


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m trainer.contract.detach LOG -- COMMAND…", file=sys.stderr)
        return 2
    log, command = argv[0], argv[2:]
    with open(log, "ab") as output:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
                                   start_new_session=True, close_fds=True)
    print(process.pid, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
