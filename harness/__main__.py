"""``python -m harness`` and the ``harness`` console script.

The CLI is imported here, inside the interrupt contract: a Ctrl-C while numpy and pyarrow are still importing (a
second or more on a loaded machine) exits 130 with one line, as it does once a command runs, never a traceback."""

from __future__ import annotations

import os
import sys
from typing import NoReturn


def entrypoint() -> NoReturn:
    try:
        from harness.cli import entrypoint as run_cli
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.stderr.flush()
        os._exit(130)  # ExitCode.INTERRUPTED (not imported yet), as harness.cli.leave_interrupted leaves
    run_cli()


if __name__ == "__main__":
    entrypoint()
