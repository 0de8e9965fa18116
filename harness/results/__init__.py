"""The results format: the one contract between the runner and the comparator (see ``harness.results.reader``)."""

from harness.results.reader import (
    COLUMNS,
    METADATA_KEY,
    SCHEMA_VERSION,
    ModelRows,
    ResultsFile,
    ResultsWriter,
    atomic_output,
    write_results,
)

__all__ = ["SCHEMA_VERSION", "METADATA_KEY", "COLUMNS", "ModelRows", "ResultsFile", "ResultsWriter", "atomic_output",
           "write_results"]
