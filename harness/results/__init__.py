"""The results format: the one contract between the runner and the comparator.

``schema`` names the columns and metadata key, ``writer`` is the only code that writes results files,
``reader`` reads them lazily, ``meta`` gives typed views of their metadata, ``storage`` opens URIs, ``frame``
turns one into a pandas DataFrame (``read_frame``; pandas imported only then).
"""

import os as _os
from typing import Any as _Any
from typing import Optional as _Optional
from typing import Sequence as _Sequence

from harness.fsio import atomic_output
from harness.results.meta import CorpusMeta, ModelRecord, Provenance, ResultsMeta, RunMeta, SideSettings
from harness.results.reader import ResultsFile, arrow_to_numpy, single_chunk
from harness.results.schema import COLUMNS, METADATA_KEY, SCHEMA_VERSION, ModelRows, pair_item_id, split_pair_item_id
from harness.results.writer import ResultsWriter, rewrite_metadata, rewrite_model, write_results

__all__ = [
    "SCHEMA_VERSION",
    "METADATA_KEY",
    "COLUMNS",
    "CorpusMeta",
    "ModelRecord",
    "ModelRows",
    "Provenance",
    "ResultsFile",
    "ResultsMeta",
    "ResultsWriter",
    "RunMeta",
    "SideSettings",
    "arrow_to_numpy",
    "atomic_output",
    "pair_item_id",
    "read_frame",
    "rewrite_metadata",
    "rewrite_model",
    "single_chunk",
    "split_pair_item_id",
    "write_results",
]


def read_frame(path: "str | _os.PathLike[str]", models: _Optional[_Sequence[str]] = None) -> _Any:
    """A results file as a tidy ``pandas.DataFrame``: ``ResultsFile(path).to_pandas(models)``."""
    return ResultsFile(path).to_pandas(models)
