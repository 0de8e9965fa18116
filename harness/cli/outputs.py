"""Where a verdict goes besides the terminal: ``--json``, ``--markdown``, ``--junit`` files, or ``-`` for stdout.

When stdout carries a machine-readable verdict the human one moves to stderr, so a pipe reads one document. Every
output path is checked before any work (``check_outputs``) and written atomically after the verdict.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any, Dict, Iterable, List, Optional, TextIO, Tuple

from harness.errors import ExitCode, HarnessError
from harness.fsio import check_output, write_text

if TYPE_CHECKING:
    from harness.verdict import Comparison

__all__ = ["OUTPUT_DESTS", "STDOUT", "add_output_options", "check_outputs", "emit_verdict", "human_stream", "write_outputs"]

#: the path that means standard output
STDOUT = "-"
#: (option, dest, what it writes)
_OUTPUTS: Tuple[Tuple[str, str, str], ...] = (
    ("--json", "json", "the full verdict as JSON"),
    ("--markdown", "markdown", "the verdict as a Markdown summary (a PR comment, a job summary)"),
    ("--junit", "junit", "the verdict as JUnit XML (one test case per model, for CI test reports)"),
)
#: the ``argparse`` destinations of the output options (all ``write_outputs`` and ``human_stream`` read)
OUTPUT_DESTS = tuple(dest for _, dest, _ in _OUTPUTS)


def add_output_options(parser: argparse.ArgumentParser) -> None:
    """``--json/--markdown/--junit PATH``; ``-`` writes to stdout (the human verdict then goes to stderr)."""
    for option, dest, what in _OUTPUTS:
        parser.add_argument(option, dest=dest, metavar="PATH",
                            help=f"also write {what} to PATH ('-': stdout, the human verdict then goes to stderr)")


def _given(args: argparse.Namespace) -> List[Tuple[str, str]]:
    return [(option, getattr(args, dest)) for option, dest, _ in _OUTPUTS if getattr(args, dest, None)]


def check_outputs(args: argparse.Namespace, inputs: Iterable[Tuple[str, Any]] = (),
                  files: Iterable[Tuple[str, Any]] = ()) -> None:
    """Refuse, before any work: two outputs on stdout (their documents would interleave), two outputs onto one
    file, and any output file ``fsio.check_output`` refuses. ``inputs`` are the command's ``(name, path)`` inputs;
    ``files`` its other outputs (``("--out", path)``)."""
    given = _given(args)
    on_stdout = [option for option, path in given if str(path) == STDOUT]
    if len(on_stdout) > 1:
        raise HarnessError(f"{' and '.join(on_stdout)}: only one output can go to stdout ('-')")
    inputs = [(name, path) for name, path in inputs if path is not None]
    outputs = [(option, path) for option, path in [*files, *given] if path is not None and str(path) != STDOUT]
    seen: Dict[str, str] = {}
    for option, path in outputs:
        check_output(path, option, inputs)
        key = os.path.abspath(path)
        if key in seen:
            raise HarnessError(f"{seen[key]} and {option}: both write {path}; give each output its own file")
        seen[key] = option


def human_stream(args: argparse.Namespace) -> TextIO:
    """stderr when a machine-readable verdict takes stdout, else stdout."""
    return sys.stderr if any(str(path) == STDOUT for _, path in _given(args)) else sys.stdout


def _render(option: str, comparison: Comparison) -> str:
    """``--json``: the verdict document (``Comparison.serialize()``); ``--markdown``, ``--junit``: the matrix
    report's renderers, of a report with one cell (so a comparison reads as a matrix cell does)."""
    if option == "--json":
        return json.dumps(comparison.serialize(), indent=2, default=str) + "\n"
    from harness.report.junit import render_junit
    from harness.report.markdown import render_markdown
    from harness.report.matrix_report import ReportCell, build_matrix_report
    from harness.verdict import CellStatus

    cell = ReportCell(comparison.label or "compare", status=CellStatus.parse(comparison.status),
                      comparison=comparison.serialize())
    report = build_matrix_report("compare", comparison.baseline, [cell])
    return render_markdown(report) if option == "--markdown" else render_junit(report)


def emit_verdict(args: argparse.Namespace, comparison: Comparison, text: str, head: Iterable[str] = ()) -> int:
    """Write the outputs asked for, print ``head``, the verdict ``text`` and its notes (a file compared with
    itself) to the human stream; the exit code of the verdict."""
    write_outputs(args, comparison)
    for line in [*head, text, *(f"note: {note}" for note in comparison.notes)]:
        print(line, file=human_stream(args))
    return ExitCode.OK if comparison else ExitCode.DRIFT


def write_outputs(args: argparse.Namespace, comparison: Comparison, stdout: Optional[TextIO] = None) -> None:
    """Write every output asked for: to its file, or to stdout for ``-``."""
    for option, path in _given(args):
        text = _render(option, comparison)
        if str(path) == STDOUT:
            (stdout or sys.stdout).write(text)
        else:
            write_text(path, text)
