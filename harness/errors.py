"""Errors the harness raises on bad input, and the exit codes the CLI maps them to.

Every ``HarnessError`` is one line naming the file or model and the problem; anything else escaping a command
is a bug (exit 3, never 1, which only a drift verdict may return).
"""

from __future__ import annotations

import enum
import re

__all__ = [
    "ExitCode",
    "HarnessError",
    "CorpusError",
    "ResultsFileError",
    "UnusableValues",
    "SchemaMismatch",
    "BaselineMissing",
    "BaselineExists",
    "ModelLoadError",
    "PolicyError",
    "IncompatibleInputs",
    "StorageError",
    "first_line",
    "escape_breaks",
    "squeeze",
]


class ExitCode(enum.IntEnum):
    """Process exit codes of the ``harness`` CLI (one place, so scripts can rely on them)."""

    OK = 0
    #: only a verdict returns it: a model failed its tolerance, or a matrix cell could not be judged
    DRIFT = 1
    #: one line on stderr naming the source and the problem; nothing was written
    BAD_INPUT = 2
    #: a bug: one line on stderr naming a crash file that holds the traceback
    INTERNAL = 3
    #: Ctrl-C / SIGINT
    INTERRUPTED = 130
    #: stdout closed early (``harness compare A B | head -1``), as a process killed by SIGPIPE: 128 + 13
    BROKEN_PIPE = 141


class HarnessError(Exception):
    """Base for every error caused by the user's input or environment (exit code 2)."""


class CorpusError(HarnessError):
    """A corpus file is missing, malformed, or inconsistent (duplicate ids, unknown ids)."""


class ResultsFileError(HarnessError):
    """A results/baseline parquet file cannot be read, or is not a harness results file."""


class SchemaMismatch(ResultsFileError):
    """A results file was written with a schema version this harness cannot read."""


class UnusableValues(ResultsFileError):
    """Rows whose values cannot be judged (NaN/Inf, all-zero vectors): what a corrupted page can also look like."""


class BaselineMissing(HarnessError):
    """The requested baseline file does not exist."""


class BaselineExists(HarnessError):
    """Refusing to overwrite an existing baseline without ``--force``."""


class ModelLoadError(HarnessError):
    """A model cannot be resolved or loaded (unknown id, not in cache, no weights)."""


class PolicyError(HarnessError):
    """A tolerance policy file is malformed."""


class IncompatibleInputs(HarnessError):
    """Two results files cannot be compared (different corpus or different models)."""


class StorageError(HarnessError):
    """A URI that no installed filesystem can open or read (the message names the URI and why)."""


def first_line(err: BaseException) -> str:
    """An exception's first line of text (library errors run long), or its type name when it has none."""
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


#: line breaks and other control characters: one in a key or name quoted from a file would split an error line
_BREAKS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def escape_breaks(text: str) -> str:
    """``text`` with line breaks and control characters escaped (``\\n``): keys and names from a user's file go
    into one-line errors."""
    return _BREAKS.sub(lambda m: repr(m.group())[1:-1], text)


def squeeze(text: object, limit: int = 200) -> str:
    """``text`` on one line (each run of whitespace one space), cut to ``limit`` characters: what a server or a
    library said can be anything."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."
