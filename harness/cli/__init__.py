"""The ``harness`` command line: parses arguments, calls the library, prints, and maps errors to exit codes.

Only this package prints or exits. Heavy imports (torch, sentence-transformers) happen inside the commands
that need them, so ``harness compare`` starts fast and works where torch is not installed.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from harness import __version__
from harness.cli import baseline_commands, commands, matrix_commands
from harness.errors import ExitCode, HarnessError

__all__ = ["main", "entrypoint", "EXIT_BROKEN_PIPE"]

#: exit code when stdout closed early (as a process killed by SIGPIPE: 128 + 13)
EXIT_BROKEN_PIPE = 141


#: the epilog of every command's ``--help``: one vocabulary of exit codes (``harness.errors.ExitCode``)
EXIT_CODES_HELP = (
    "exit codes: 0 pass, 1 drift (a model failed its tolerance, or a matrix cell could not be judged), "
    "2 bad input (one line on stderr naming the file and the problem; nothing is written), 130 interrupted, "
    "141 stdout closed early"
)


def _with_exit_codes(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and every subcommand under it the exit-code epilog."""
    parser.epilog = f"{parser.epilog}\n\n{EXIT_CODES_HELP}" if parser.epilog else EXIT_CODES_HELP
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _with_exit_codes(child)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="Embedding and reranking consistency harness.")
    parser.add_argument("--version", action="version", version=f"embedding-harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    commands.register(sub)
    baseline_commands.register(sub)
    matrix_commands.register(sub)
    _with_exit_codes(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the exit code (0 pass, 1 drift, 2 bad input, 130 interrupted)."""
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args))
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED


def entrypoint() -> None:
    try:
        code = main(sys.argv[1:])
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (`harness compare A B | head -1`): quiet, and the conventional 128 + SIGPIPE,
        # never the drift code; stdout is pointed at /dev/null so the interpreter's final flush stays silent
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_BROKEN_PIPE
    sys.exit(code)
