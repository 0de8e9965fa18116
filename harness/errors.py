"""Errors the harness raises on bad input, and the exit codes the CLI maps them to.

Every ``HarnessError`` renders as one user-facing line (``str(err)``) that names the file or model and the
problem. Real bugs are not wrapped: they surface as tracebacks.
"""

from __future__ import annotations

import enum

__all__ = [
    "ExitCode",
    "HarnessError",
    "CorpusError",
    "ResultsFileError",
    "SchemaMismatch",
    "BaselineMissing",
    "BaselineExists",
    "ModelLoadError",
    "PolicyError",
    "IncompatibleInputs",
    "StorageError",
    "first_line",
]


class ExitCode(enum.IntEnum):
    """Process exit codes of the ``harness`` CLI (one place, so scripts can rely on them)."""

    OK = 0
    DRIFT = 1
    BAD_INPUT = 2
    INTERRUPTED = 130


class HarnessError(Exception):
    """Base for every error caused by the user's input or environment (exit code 2)."""


class CorpusError(HarnessError):
    """A corpus file is missing, malformed, or inconsistent (duplicate ids, unknown ids)."""


class ResultsFileError(HarnessError):
    """A results/baseline parquet file cannot be read, or is not a harness results file."""


class SchemaMismatch(ResultsFileError):
    """A results file was written with a schema version this harness cannot read."""


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
