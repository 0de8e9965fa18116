"""The ``harness`` command line: parses arguments, calls the library, prints, and maps errors to exit codes.

Only this package prints or exits. Heavy imports (torch, sentence-transformers) happen inside the commands
that need them, so ``harness compare`` starts fast and works where torch is not installed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from typing import Any, Callable, NoReturn, Optional, Sequence

from harness import __version__
from harness.cli import baseline_commands, commands, matrix_commands
from harness.cli.crash import internal_error_line, one_line, scrub, write_crash_file
from harness.config.environment import check_settings
from harness.errors import ExitCode, HarnessError

__all__ = ["main", "entrypoint", "EXIT_BROKEN_PIPE"]

#: exit code when stdout closed early (as a process killed by SIGPIPE: 128 + 13)
EXIT_BROKEN_PIPE = int(ExitCode.BROKEN_PIPE)


#: the epilog of every command's ``--help``: one vocabulary of exit codes (``harness.errors.ExitCode``)
EXIT_CODES_HELP = (
    "exit codes: 0 pass; 1 drift (only a verdict returns it: a model failed its tolerance, or a matrix cell could "
    "not be judged); 2 bad input (one line on stderr naming the source and the problem; nothing is written); "
    "3 internal error (a bug: one line naming a crash file with the details); 130 interrupted; 141 stdout closed early"
)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is the contract's one line (exit 2), pointing at ``--help`` for the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(ExitCode.BAD_INPUT, f"error: {self.prog}: {one_line(message)} (see '{self.prog} --help')\n")


#: the epilog of the commands that judge nothing (they never return 1)
EXIT_CODES_HELP_NO_VERDICT = (
    "exit codes: 0 done; 2 bad input (one line on stderr naming the source and the problem; nothing is written); "
    "3 internal error (a bug: one line naming a crash file with the details); 130 interrupted; 141 stdout closed "
    "early. This command judges nothing, so it never returns 1 (drift)"
)
#: the commands whose exit code carries a verdict (1: drift)
_JUDGING = ("harness", "harness compare", "harness check", "harness baseline", "harness baseline diff", "harness matrix",
            "harness matrix report", "harness matrix cell", "harness attribute", "harness attribute run",
            "harness attribute report")


def _with_exit_codes(parser: argparse.ArgumentParser) -> None:
    """Give ``parser`` and every subcommand under it its exit-code epilog."""
    codes = EXIT_CODES_HELP if parser.prog in _JUDGING else EXIT_CODES_HELP_NO_VERDICT
    parser.epilog = f"{parser.epilog}\n\n{codes}" if parser.epilog else codes
    for action in parser._actions:  # argparse keeps subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _with_exit_codes(child)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description="Embedding and reranking consistency harness.")
    parser.add_argument("--version", action="version", version=f"embedding-harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    commands.register(sub)
    baseline_commands.register(sub)
    matrix_commands.register(sub)
    _with_exit_codes(parser)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the CLI; returns the exit code (``ExitCode``). The one place where exceptions become exit codes:
    ``HarnessError`` is bad input (2, one line), ``KeyboardInterrupt`` 130, anything else a bug (3, one line and
    a crash file): only a verdict a command computed returns 1."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        try:
            args = _parser().parse_args(argv)
        except SystemExit as done:  # --help, --version (0) or a usage error (2, one line already printed)
            return done.code if isinstance(done.code, int) else ExitCode.BAD_INPUT
        check_settings()  # every HARNESS_* number, before any model loads or any file is read
        return int(args.func(args))
    except HarnessError as err:
        print(f"error: {one_line(scrub(str(err))) or type(err).__name__}", file=sys.stderr)
        return ExitCode.BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        raise
    except Exception as err:  # noqa: BLE001 - the contract: a bug is exit 3 with a crash file, never exit 1
        print(internal_error_line(err, write_crash_file(err, argv)), file=sys.stderr)
        return ExitCode.INTERNAL


def _exit_on_second_interrupt(signum: int, frame: object) -> None:
    """Ctrl-C while the interpreter shuts down (a library's atexit hook running): leave now, quietly."""
    os._exit(ExitCode.INTERRUPTED)


def _interrupt_again(previous: Callable[[Any], None]) -> Callable[[Any], None]:
    """An unraisable-exception hook that raises a lost Ctrl-C again: a KeyboardInterrupt that lands in a callback
    run from C (a weakref callback in importlib's locks, a ``__del__``) is printed as "Exception ignored" and
    dropped, and the command would carry on to exit 0; re-sent, it stops the command where it can."""
    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):  # sent from a thread: raised here, it is lost again
            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
            return
        previous(unraisable)
    return hook


def entrypoint() -> NoReturn:
    sys.unraisablehook = _interrupt_again(sys.unraisablehook)
    try:
        code = main(sys.argv[1:])
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (`harness compare A B | head -1`): quiet, and the conventional 128 + SIGPIPE,
        # never the drift code; stdout is pointed at /dev/null so the interpreter's final flush stays silent
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = EXIT_BROKEN_PIPE
    except KeyboardInterrupt:  # between main's return and the flush
        code = ExitCode.INTERRUPTED
    if code == ExitCode.INTERRUPTED:
        leave_interrupted()
    # torch and others run atexit hooks; a Ctrl-C during them would print a KeyboardInterrupt traceback
    with contextlib.suppress(ValueError):  # not the main thread (embedded use)
        signal.signal(signal.SIGINT, _exit_on_second_interrupt)
    sys.exit(code)


def leave_interrupted() -> NoReturn:
    """Exit 130 now, skipping the interpreter's shutdown: a Ctrl-C that lands while a library runs Python code
    from C (pybind11's exec at import, CPython's run_eval_code_obj) leaves a flag that makes the interpreter kill
    itself with SIGINT at shutdown (status -2) even though the interrupt was handled here."""
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(ExitCode.INTERRUPTED)
