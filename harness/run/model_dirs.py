"""Where a matrix cell finds its models' files, as one JSON line: ``python -m harness.run.model_dirs CONFIG ID...``.

A server cell (``harness.matrix.served_cell``) starts its server on the model directories the *cell* sees (a
``source = "package"`` model is the copy installed in the cell), so it asks the cell's own Python. The matrix
never imports the runner (nox's Python has none of its dependencies): it runs this module by subprocess, and
this module is an ordinary, linted part of the package instead of a program kept in a string.

``CONFIG`` is the matrix's ``--config`` ("" for none). Prints ``{"<id>": "<directory>", ...}``; bad input
(an unknown model, a missing package) is one ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import json
import sys
from typing import Dict, List, Optional, Sequence

from harness.config.project import project_registry
from harness.errors import ExitCode, HarnessError
from harness.run.resolve import resolve_model_dir

__all__ = ["model_directories", "main"]


def model_directories(config: Optional[str], model_ids: Sequence[str]) -> Dict[str, str]:
    """Each selected model id and the directory of its files in this environment (never the network)."""
    registry = project_registry(config or None)
    return {spec.id: str(resolve_model_dir(spec, registry=registry)[0]) for spec in registry.select(list(model_ids))}


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        print("error: usage: python -m harness.run.model_dirs CONFIG [MODEL_ID ...]", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    try:
        found = model_directories(args[0], args[1:])
    except HarnessError as err:
        print(f"error: {err}", file=sys.stderr)
        return int(ExitCode.BAD_INPUT)
    except KeyboardInterrupt:
        return int(ExitCode.INTERRUPTED)
    print(json.dumps(found))
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
